//! Building the functions for Lambda with cargo-lambda, and checking the binaries.
//!
//! cargo-lambda (pinned, from PyPI, with the zig linker it depends on) is installed into
//! the project's `.venv` by `scripts/install-packaging`. It cross-compiles with zig, but
//! the Rust standard library for the target must be installed (`rustup target add`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, bail};
use apiary_core::aws::Env;

/// The Lambda instruction set the functions are built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Arm64,
    X86_64,
}

impl Arch {
    /// The name Lambda and the template's FunctionArchitecture use.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::X86_64 => "x86_64",
        }
    }

    /// The Rust target cargo-lambda builds for.
    pub fn rust_target(self) -> &'static str {
        match self {
            Arch::Arm64 => "aarch64-unknown-linux-gnu",
            Arch::X86_64 => "x86_64-unknown-linux-gnu",
        }
    }

    /// cargo-lambda's shortcut flag for the target.
    fn cargo_lambda_flag(self) -> &'static str {
        match self {
            Arch::Arm64 => "--arm64",
            Arch::X86_64 => "--x86-64",
        }
    }

    fn other(self) -> Arch {
        match self {
            Arch::Arm64 => Arch::X86_64,
            Arch::X86_64 => Arch::Arm64,
        }
    }

    /// ELF `e_machine`.
    fn elf_machine(self) -> u16 {
        match self {
            Arch::Arm64 => 183,
            Arch::X86_64 => 62,
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            "x86_64" | "x86-64" | "amd64" => Ok(Arch::X86_64),
            other => Err(format!(
                "unknown architecture {other:?}; use arm64 or x86_64"
            )),
        }
    }
}

/// The project's virtual environment: `APIARY_VENV`, else `<root>/.venv` (as the scripts).
pub fn venv(root: &Path, env: &dyn Env) -> PathBuf {
    env.var("APIARY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv"))
}

/// The cargo-lambda executable: the pinned one in the venv, else one on `PATH`.
pub fn find_cargo_lambda(venv: &Path, env: &dyn Env) -> anyhow::Result<PathBuf> {
    let pinned = venv.join("bin").join("cargo-lambda");
    if pinned.is_file() {
        return Ok(pinned);
    }
    if let Some(path) = env.var("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("cargo-lambda");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "cargo-lambda is not installed (looked in {} and on PATH); run \
         scripts/install-packaging, which installs the pinned cargo-lambda and its zig \
         linker into {}, or pass --prebuilt DIR with a DIR/<function>/bootstrap per function",
        venv.join("bin").display(),
        venv.display()
    )
}

/// Fails unless the Rust standard library for `arch` is installed: cargo-lambda would
/// otherwise fail minutes into the build.
pub fn require_target(arch: Arch, installed: &[String]) -> anyhow::Result<()> {
    let target = arch.rust_target();
    if installed.iter().any(|t| t == target) {
        return Ok(());
    }
    bail!(
        "building for {arch} needs the Rust target {target}, which is not installed \
         (installed: {}); run `rustup target add {target}`, or package for the other \
         architecture with `--arch {}`",
        if installed.is_empty() {
            "none".to_owned()
        } else {
            installed.join(", ")
        },
        arch.other()
    )
}

/// The targets whose standard library is installed: `rustup target list --installed`,
/// or the sysroot's `lib/rustlib` folders for a toolchain without rustup.
pub fn installed_targets() -> anyhow::Result<Vec<String>> {
    match std::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    {
        Ok(output) if output.status.success() => {
            return Ok(String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect());
        }
        Ok(output) => bail!(
            "`rustup target list --installed` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(_) => {} // no rustup: ask rustc
    }
    let output = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("running `rustc --print sysroot` (neither rustup nor rustc found?)")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let rustlib = sysroot.join("lib").join("rustlib");
    let mut targets = Vec::new();
    for entry in std::fs::read_dir(&rustlib)
        .with_context(|| format!("reading {}", rustlib.display()))?
        .flatten()
    {
        if entry.path().join("lib").is_dir() {
            targets.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(targets)
}

/// One `cargo lambda build` for every function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    /// `PATH` for the child: the venv's `bin` first, so cargo-lambda finds the zig that
    /// came with it (`python3 -m ziglang`).
    pub path: OsString,
}

impl BuildCommand {
    pub fn new(
        cargo_lambda: &Path,
        root: &Path,
        venv: &Path,
        arch: Arch,
        functions: &[String],
        lambda_dir: &Path,
        current_path: Option<&str>,
    ) -> anyhow::Result<BuildCommand> {
        let mut args: Vec<OsString> = ["lambda", "build", "--release", arch.cargo_lambda_flag()]
            .into_iter()
            .map(OsString::from)
            .collect();
        args.push("--lambda-dir".into());
        args.push(lambda_dir.into());
        for function in functions {
            args.push("--package".into());
            args.push(function.into());
        }
        let dirs = std::iter::once(venv.join("bin"))
            .chain(current_path.into_iter().flat_map(std::env::split_paths));
        let path = std::env::join_paths(dirs).context("building PATH for cargo-lambda")?;
        Ok(BuildCommand {
            program: cargo_lambda.to_path_buf(),
            args,
            cwd: root.to_path_buf(),
            path,
        })
    }

    /// The command as a shell line, for the log.
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs the build with its output going straight to this terminal.
    pub async fn run(&self) -> anyhow::Result<()> {
        let status = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .current_dir(&self.cwd)
            .env("PATH", &self.path)
            .status()
            .await
            .with_context(|| format!("starting {}", self.program.display()))?;
        if !status.success() {
            bail!(
                "`{}` failed ({status}); its output is above",
                self.display()
            );
        }
        Ok(())
    }
}

/// Checks that a bootstrap can run on `arch`: an ELF binary must be for that machine. A
/// file that is not ELF (a script with a `#!` line) runs on either.
pub fn check_bootstrap(path: &Path, binary: &[u8], arch: Arch) -> anyhow::Result<()> {
    if binary.is_empty() {
        bail!("{} is empty", path.display());
    }
    if !binary.starts_with(b"\x7fELF") {
        return Ok(());
    }
    let Some(machine) = binary.get(18..20) else {
        bail!("{} is a truncated ELF file", path.display());
    };
    let machine = match binary.get(5) {
        Some(2) => u16::from_be_bytes([machine[0], machine[1]]),
        _ => u16::from_le_bytes([machine[0], machine[1]]),
    };
    if machine == arch.elf_machine() {
        return Ok(());
    }
    let built_for = if machine == arch.other().elf_machine() {
        arch.other().to_string()
    } else {
        format!("ELF machine {machine}")
    };
    bail!(
        "{} is built for {built_for}, but the package is for {arch} (--arch); \
         Lambda could not start it",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn strings(command: &BuildCommand) -> Vec<String> {
        command
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn one_release_build_for_every_function_per_architecture() {
        let functions = ["keys".to_owned(), "network".to_owned()];
        let arm = BuildCommand::new(
            Path::new("/repo/.venv/bin/cargo-lambda"),
            Path::new("/repo"),
            Path::new("/repo/.venv"),
            Arch::Arm64,
            &functions,
            Path::new("/t/lambda"),
            Some("/usr/bin:/bin"),
        )
        .unwrap();
        assert_eq!(
            strings(&arm),
            [
                "lambda",
                "build",
                "--release",
                "--arm64",
                "--lambda-dir",
                "/t/lambda",
                "--package",
                "keys",
                "--package",
                "network"
            ]
        );
        assert_eq!(arm.program, Path::new("/repo/.venv/bin/cargo-lambda"));
        assert_eq!(arm.cwd, Path::new("/repo"));
        assert_eq!(arm.path, OsString::from("/repo/.venv/bin:/usr/bin:/bin"));
        assert_eq!(
            arm.display(),
            "/repo/.venv/bin/cargo-lambda lambda build --release --arm64 --lambda-dir /t/lambda \
             --package keys --package network"
        );

        let x86 = BuildCommand::new(
            Path::new("cargo-lambda"),
            Path::new("/repo"),
            Path::new("/v"),
            Arch::X86_64,
            &functions[..1],
            Path::new("/t/lambda"),
            None,
        )
        .unwrap();
        assert_eq!(
            strings(&x86),
            [
                "lambda",
                "build",
                "--release",
                "--x86-64",
                "--lambda-dir",
                "/t/lambda",
                "--package",
                "keys"
            ]
        );
        assert_eq!(x86.path, OsString::from("/v/bin"));
    }

    #[test]
    fn arm64_without_its_rust_target_says_how_to_get_it() {
        let installed = vec!["x86_64-unknown-linux-gnu".to_owned()];
        let err = require_target(Arch::Arm64, &installed)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rustup target add aarch64-unknown-linux-gnu"),
            "{err}"
        );
        assert!(err.contains("--arch x86_64"), "{err}");
        assert!(err.contains("installed: x86_64-unknown-linux-gnu"), "{err}");
        require_target(Arch::X86_64, &installed).unwrap();
        let both = vec![
            "aarch64-unknown-linux-gnu".to_owned(),
            "x86_64-unknown-linux-gnu".to_owned(),
        ];
        require_target(Arch::Arm64, &both).unwrap();
        let err = require_target(Arch::X86_64, &[]).unwrap_err().to_string();
        assert!(
            err.contains("installed: none") && err.contains("--arch arm64"),
            "{err}"
        );
    }

    #[test]
    fn cargo_lambda_is_found_in_the_venv_then_on_path_else_explained() {
        let dir = std::env::temp_dir().join(format!("apiary-cl-{}", uuid::Uuid::new_v4().simple()));
        let venv = dir.join("venv");
        let elsewhere = dir.join("elsewhere");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        let path = std::env::join_paths([&elsewhere])
            .unwrap()
            .into_string()
            .unwrap();
        let env = HashMap::from([("PATH".to_owned(), path)]);

        let err = find_cargo_lambda(&venv, &env).unwrap_err().to_string();
        assert!(err.contains("scripts/install-packaging"), "{err}");
        assert!(err.contains("--prebuilt"), "{err}");

        std::fs::write(elsewhere.join("cargo-lambda"), "").unwrap();
        assert_eq!(
            find_cargo_lambda(&venv, &env).unwrap(),
            elsewhere.join("cargo-lambda")
        );

        std::fs::write(venv.join("bin/cargo-lambda"), "").unwrap();
        assert_eq!(
            find_cargo_lambda(&venv, &env).unwrap(),
            venv.join("bin/cargo-lambda")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_venv_follows_apiary_venv() {
        let root = Path::new("/repo");
        assert_eq!(
            venv(root, &HashMap::<String, String>::new()),
            Path::new("/repo/.venv")
        );
        let env = HashMap::from([("APIARY_VENV".to_owned(), "/opt/venv".to_owned())]);
        assert_eq!(venv(root, &env), Path::new("/opt/venv"));
    }

    /// The first 20 bytes of a 64-bit little-endian ELF header for `machine`.
    fn elf(machine: u16) -> Vec<u8> {
        let mut header = b"\x7fELF\x02\x01\x01\x00".to_vec();
        header.extend_from_slice(&[0; 8]);
        header.extend_from_slice(&2u16.to_le_bytes()); // e_type: executable
        header.extend_from_slice(&machine.to_le_bytes());
        header
    }

    #[test]
    fn a_binary_for_the_other_architecture_is_refused() {
        let path = Path::new("lambda/keys/bootstrap");
        check_bootstrap(path, &elf(183), Arch::Arm64).unwrap();
        check_bootstrap(path, &elf(62), Arch::X86_64).unwrap();
        let err = check_bootstrap(path, &elf(62), Arch::Arm64)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("built for x86_64, but the package is for arm64"),
            "{err}"
        );
        let err = check_bootstrap(path, &elf(40), Arch::Arm64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ELF machine 40"), "{err}");
        // Scripts run anywhere; empty files nowhere.
        check_bootstrap(path, b"#!/bin/sh\necho hi\n", Arch::Arm64).unwrap();
        assert!(check_bootstrap(path, b"", Arch::X86_64).is_err());
        assert!(check_bootstrap(path, b"\x7fELF\x02", Arch::X86_64).is_err());
    }

    #[test]
    fn architectures_parse_and_print_as_lambda_names() {
        assert_eq!("arm64".parse::<Arch>().unwrap(), Arch::Arm64);
        assert_eq!("x86_64".parse::<Arch>().unwrap(), Arch::X86_64);
        assert_eq!(Arch::X86_64.to_string(), "x86_64");
        assert!("riscv".parse::<Arch>().is_err());
    }
}
