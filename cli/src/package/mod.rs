//! `apiary package`: build every function for Lambda, zip each as `bootstrap`, upload
//! the zips, the state machine files and the template to an S3 bucket, and give the
//! console link that creates the bootstrap stack from them.
//!
//! Order matters: everything that can be checked locally (the template against the
//! code, the state machines, the options, the toolchain) and then the bucket is checked
//! before anything is built, written or uploaded. The template is uploaded last, so it
//! never points at artifacts that are not there yet.

pub mod archive;
pub mod build;
pub mod figures;
pub mod options;
pub mod plan;
pub mod upload;
pub mod url;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use apiary_core::aws::{AwsSettings, Env};
use sha2::{Digest, Sha256};

pub use build::Arch;
pub use upload::{Outcome, Uploaded};

use plan::{ARTIFACT_BUCKET, ARTIFACT_PREFIX, FUNCTION_ARCHITECTURE};
use upload::{Artifact, human_size};

/// The object key of the template under the prefix.
pub const TEMPLATE_KEY: &str = "bootstrap.yaml";

/// What `apiary package` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The repository: `functions/`, `statemachines/`, `infra-bootstrap/`.
    pub root: PathBuf,
    pub bucket: String,
    /// Key prefix ending in `/`; default `apiary/<version>-<hash of the artifacts>/`.
    pub prefix: Option<String>,
    pub arch: Arch,
    /// Use `DIR/<function>/bootstrap` instead of building.
    pub prebuilt: Option<PathBuf>,
    /// Where the zips are written; default under the cargo target directory.
    pub out: Option<PathBuf>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    /// Default `apiary-<DeploymentName>`.
    pub stack_name: Option<String>,
    /// `Key=Value` for the quick-create link.
    pub parameters: Vec<String>,
    /// The PEM bundle of database CAs the verifier's package carries.
    pub database_ca_bundle: Option<PathBuf>,
}

/// Which Rust targets are installed: asked of rustup, or of a test.
pub trait Toolchain {
    fn installed_targets(&self) -> anyhow::Result<Vec<String>>;
}

/// The toolchain of this machine.
pub struct Rustup;

impl Toolchain for Rustup {
    fn installed_targets(&self) -> anyhow::Result<Vec<String>> {
        build::installed_targets()
    }
}

/// What was packaged, and where to go next.
#[derive(Debug, Clone)]
pub struct Packaged {
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    pub arch: Arch,
    pub stack_name: String,
    /// Every object, in upload order (the template last).
    pub objects: Vec<Uploaded>,
    /// The zips as written to the out folder.
    pub zips: Vec<PathBuf>,
    /// The template on S3 (the URL CloudFormation reads).
    pub template_url: String,
    pub quick_create_url: String,
    /// The template on the endpoint, when one was used instead of AWS.
    pub endpoint_template_url: Option<String>,
    /// Template parameters with no default and no `--parameter`: to fill in on the page.
    pub parameters_to_fill: Vec<String>,
}

impl Packaged {
    /// The summary `apiary package` prints last.
    pub fn render(&self) -> String {
        let uploaded = self
            .objects
            .iter()
            .filter(|o| o.outcome == Outcome::Uploaded)
            .count();
        let unchanged = self.objects.len() - uploaded;
        let mut out = format!(
            "Packaged for {} into s3://{}/{} ({uploaded} uploaded, {unchanged} already there).\n\n",
            self.arch, self.bucket, self.prefix
        );
        if let Some(endpoint_url) = &self.endpoint_template_url {
            out.push_str(&format!(
                "The artifacts went to the endpoint, not to AWS; the template is at\n  {endpoint_url}\n\
                 The link below is for the same bucket and prefix on AWS.\n\n"
            ));
        }
        out.push_str(&format!(
            "Create the stack {} in {}: open this link, review the parameters, acknowledge that \
             the stack creates IAM roles with custom names, and choose Create stack:\n  {}\n\n\
             Template: {}\n",
            self.stack_name, self.region, self.quick_create_url, self.template_url
        ));
        if !self.parameters_to_fill.is_empty() {
            out.push_str(&format!(
                "Fill in on that page (no default): {} (or pass --parameter Key=Value)\n",
                self.parameters_to_fill.join(", ")
            ));
        }
        out
    }
}

/// Packages with this machine's toolchain.
pub async fn package(
    options: &Options,
    env: &dyn Env,
    log: &mut dyn Write,
) -> anyhow::Result<Packaged> {
    package_with(options, env, &Rustup, log).await
}

pub async fn package_with(
    options: &Options,
    env: &dyn Env,
    toolchain: &dyn Toolchain,
    log: &mut dyn Write,
) -> anyhow::Result<Packaged> {
    // 1. Everything local, before any call or change.
    let plan = plan::plan(&options.root)?;
    let checked = options::check_options(&plan, options)?;
    let extras = archive::Extras::load(&plan.functions, options.database_ca_bundle.as_deref())?;
    let machines: Vec<&str> = plan
        .state_machines
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    writeln!(
        log,
        "packaging for {}: {} functions ({}), state machines ({}), {}",
        options.arch,
        plan.functions.len(),
        plan.functions.join(", "),
        machines.join(", "),
        plan::TEMPLATE,
    )?;
    let target_dir = target_dir(&options.root, env);
    let source = match &options.prebuilt {
        Some(dir) => {
            let bootstraps = read_bootstraps(dir, &plan.functions, options.arch)?;
            Bootstraps::Ready(bootstraps)
        }
        None => {
            let (command, lambda_dir) =
                build_command(&options.root, env, toolchain, options.arch, &plan.functions)?;
            Bootstraps::Build {
                command,
                lambda_dir,
            }
        }
    };

    // 2. The bucket, in the region the stack will be in.
    let config = apiary_core::aws::load(&settings(options, env)).await;
    let Some(region) = config.region().map(|r| r.to_string()) else {
        bail!("no AWS region: pass --region or set AWS_REGION");
    };
    let s3 = apiary_core::aws::s3_client(&config);
    upload::check_bucket(&s3, &options.bucket, &region).await?;
    writeln!(log, "bucket {} is in {region}", options.bucket)?;

    // 3. Build (unless prebuilt), then zip.
    let bootstraps = match source {
        Bootstraps::Ready(bootstraps) => bootstraps,
        Bootstraps::Build {
            command,
            lambda_dir,
        } => {
            writeln!(log, "building: {}", command.display())?;
            log.flush()?;
            command.run().await?;
            read_bootstraps(&lambda_dir, &plan.functions, options.arch)?
        }
    };
    let out_dir = options.out.clone().unwrap_or_else(|| {
        target_dir
            .join("apiary-package")
            .join(options.arch.as_str())
    });
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let mut artifacts = Vec::new();
    let mut zips = Vec::new();
    for (function, binary) in &bootstraps {
        let zip = extras
            .function_zip(function, binary)
            .with_context(|| format!("zipping the {function} bootstrap"))?;
        let path = out_dir.join(format!("{function}.zip"));
        std::fs::write(&path, &zip).with_context(|| format!("writing {}", path.display()))?;
        writeln!(
            log,
            "zipped {function}: bootstrap {} -> {} ({})",
            human_size(binary.len()),
            human_size(zip.len()),
            path.display()
        )?;
        artifacts.push(Artifact::new(format!("functions/{function}.zip"), zip));
        zips.push(path);
    }
    for file in &plan.state_machines {
        artifacts.push(Artifact::new(
            format!("statemachines/{}", file.name),
            file.text.clone().into_bytes(),
        ));
    }
    // The template's Release mapping names this bucket for this region: a stack in a
    // region the published releases do not cover still resolves its (unused) mapping.
    let buckets = std::collections::BTreeMap::from([(region.clone(), options.bucket.clone())]);
    let template = crate::publish::template::release_template(
        &plan.template,
        &crate::publish::template::Release {
            buckets: &buckets,
            prefix: None,
            arch: None,
        },
    )?;
    artifacts.push(Artifact::new(TEMPLATE_KEY, template.into_bytes()));

    // 4. Upload under the prefix, the template last.
    let prefix = match &options.prefix {
        Some(prefix) => prefix.clone(),
        None => default_prefix(env!("CARGO_PKG_VERSION"), &artifacts),
    };
    writeln!(log, "uploading to s3://{}/{prefix}", options.bucket)?;
    let objects =
        upload::upload(&s3, &options.bucket, &prefix, &artifacts, TEMPLATE_KEY, log).await?;

    // 5. Where to go next.
    let template_key = format!("{prefix}{TEMPLATE_KEY}");
    let template_url = url::s3_object_url(&options.bucket, &region, &template_key);
    let mut parameters = vec![
        (ARTIFACT_BUCKET.to_owned(), options.bucket.clone()),
        (ARTIFACT_PREFIX.to_owned(), prefix.clone()),
        (FUNCTION_ARCHITECTURE.to_owned(), options.arch.to_string()),
    ];
    parameters.extend(checked.parameters.iter().cloned());
    let quick_create_url =
        url::quick_create_url(&region, &template_url, &checked.stack_name, &parameters);
    let endpoint_template_url = config
        .endpoint_url()
        .map(|endpoint| url::endpoint_object_url(endpoint, &options.bucket, &template_key));
    let parameters_to_fill = plan
        .parameters
        .iter()
        .filter(|(name, p)| p.default.is_none() && !parameters.iter().any(|(k, _)| k == *name))
        .map(|(name, _)| name.clone())
        .collect();
    Ok(Packaged {
        bucket: options.bucket.clone(),
        prefix,
        region,
        arch: options.arch,
        stack_name: checked.stack_name,
        objects,
        zips,
        template_url,
        quick_create_url,
        endpoint_template_url,
        parameters_to_fill,
    })
}

enum Bootstraps {
    Ready(Vec<(String, Vec<u8>)>),
    Build {
        command: build::BuildCommand,
        lambda_dir: PathBuf,
    },
}

/// The AWS settings from the environment, with `--region` and `--endpoint` on top.
fn settings(options: &Options, env: &dyn Env) -> AwsSettings {
    aws_settings(env, options.region.as_deref(), options.endpoint.as_deref())
}

/// The AWS settings from `env`, with a region and an endpoint given on the command line
/// on top.
pub(crate) fn aws_settings(
    env: &dyn Env,
    region: Option<&str>,
    endpoint: Option<&str>,
) -> AwsSettings {
    struct Overrides<'a> {
        env: &'a dyn Env,
        region: Option<&'a str>,
        endpoint: Option<&'a str>,
    }
    impl Env for Overrides<'_> {
        fn var(&self, key: &str) -> Option<String> {
            let given = match key {
                "AWS_REGION" => self.region,
                "AWS_ENDPOINT_URL" => self.endpoint,
                _ => None,
            };
            given.map(str::to_owned).or_else(|| self.env.var(key))
        }
    }
    AwsSettings::from_env(&Overrides {
        env,
        region,
        endpoint,
    })
}

/// The cargo target directory: `CARGO_TARGET_DIR`, else `<root>/target`.
/// The one `cargo lambda build` of `functions` for `arch` (release, as they are
/// packaged), and the folder it writes `<function>/bootstrap` into. Fails before
/// anything runs when cargo-lambda or the Rust target is missing.
pub fn build_command(
    root: &Path,
    env: &dyn Env,
    toolchain: &dyn Toolchain,
    arch: Arch,
    functions: &[String],
) -> anyhow::Result<(build::BuildCommand, PathBuf)> {
    let venv = build::venv(root, env);
    let cargo_lambda = build::find_cargo_lambda(&venv, env)?;
    build::require_target(arch, &toolchain.installed_targets()?)?;
    let lambda_dir = target_dir(root, env).join("lambda").join(arch.as_str());
    let command = build::BuildCommand::new(
        &cargo_lambda,
        root,
        &venv,
        arch,
        functions,
        &lambda_dir,
        env.var("PATH").as_deref(),
    )?;
    Ok((command, lambda_dir))
}

pub(crate) fn target_dir(root: &Path, env: &dyn Env) -> PathBuf {
    match env.var("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// `DIR/<function>/bootstrap` for every function, each checked for `arch`.
pub(crate) fn read_bootstraps(
    dir: &Path,
    functions: &[String],
    arch: Arch,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut missing = Vec::new();
    let mut out = Vec::new();
    for function in functions {
        let path = dir.join(function).join("bootstrap");
        match std::fs::read(&path) {
            Ok(binary) => {
                build::check_bootstrap(&path, &binary, arch)?;
                out.push((function.clone(), binary));
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                missing.push(path.display().to_string());
            }
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        }
    }
    if !missing.is_empty() {
        bail!(
            "no bootstrap for {} of {} functions in {}: {}",
            missing.len(),
            functions.len(),
            dir.display(),
            missing.join(", ")
        );
    }
    Ok(out)
}

/// `apiary/<version>-<12 hex digits>/`: the digits hash every artifact's name and bytes,
/// so each distinct build gets keys of its own and a stack update that points at them
/// really replaces the code (CloudFormation updates a Lambda only when its S3 key
/// changes), while packaging the same build again gives the same keys.
pub fn default_prefix(version: &str, artifacts: &[Artifact]) -> String {
    let mut sorted: Vec<&Artifact> = artifacts.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut hasher = Sha256::new();
    for artifact in sorted {
        hasher.update(artifact.name.as_bytes());
        hasher.update([0]);
        hasher.update(artifact.sha256());
    }
    let digest = hasher.finalize();
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let version: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("apiary/{version}-{hex}/")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::plan::tests::consistent;
    use super::*;

    struct Installed(Vec<&'static str>);

    impl Toolchain for Installed {
        fn installed_targets(&self) -> anyhow::Result<Vec<String>> {
            Ok(self.0.iter().map(|t| (*t).to_owned()).collect())
        }
    }

    pub(crate) fn options(root: &Path) -> Options {
        Options {
            root: root.to_path_buf(),
            bucket: "acme-artifacts".into(),
            prefix: None,
            arch: Arch::Arm64,
            prebuilt: None,
            out: None,
            region: Some("us-west-2".into()),
            // Nothing listens here: a test that got as far as S3 would fail.
            endpoint: Some("http://127.0.0.1:9".into()),
            stack_name: None,
            database_ca_bundle: None,
            parameters: Vec::new(),
        }
    }

    /// An env whose venv holds a (never run) cargo-lambda.
    fn env_with_cargo_lambda(root: &Path) -> HashMap<String, String> {
        let venv = root.join("venv");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::write(venv.join("bin/cargo-lambda"), "").unwrap();
        HashMap::from([
            ("APIARY_VENV".to_owned(), venv.display().to_string()),
            ("PATH".to_owned(), "/nonexistent".to_owned()),
        ])
    }

    #[tokio::test]
    async fn arm64_without_its_target_stops_before_any_call() {
        let fixture = consistent();
        let env = env_with_cargo_lambda(&fixture.root);
        let mut log = Vec::new();
        let err = package_with(
            &options(&fixture.root),
            &env,
            &Installed(vec!["x86_64-unknown-linux-gnu"]),
            &mut log,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("rustup target add aarch64-unknown-linux-gnu"),
            "{err}"
        );
        assert!(err.contains("--arch x86_64"), "{err}");
        assert!(!fixture.root.join("target").exists(), "nothing was written");
    }

    #[tokio::test]
    async fn no_cargo_lambda_says_how_to_install_it() {
        let fixture = consistent();
        let env = HashMap::from([
            (
                "APIARY_VENV".to_owned(),
                fixture.root.join("no-venv").display().to_string(),
            ),
            ("PATH".to_owned(), "/nonexistent".to_owned()),
        ]);
        let err = package_with(
            &options(&fixture.root),
            &env,
            &Installed(vec!["aarch64-unknown-linux-gnu"]),
            &mut Vec::new(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("cargo-lambda is not installed"), "{err}");
        assert!(err.contains("scripts/install-packaging"), "{err}");
    }

    #[tokio::test]
    async fn bad_options_are_listed_together_before_any_call() {
        let fixture = consistent();
        let mut options = options(&fixture.root);
        options.bucket = "Not_A_Bucket".into();
        options.prefix = Some("no-slash".into());
        options.stack_name = Some("9lives".into());
        options.parameters = vec!["Nope=1".into()];
        let err = package_with(
            &options,
            &HashMap::<String, String>::new(),
            &Installed(vec![]),
            &mut Vec::new(),
        )
        .await
        .unwrap_err();
        let problems = err.downcast::<plan::Problems>().unwrap().problems;
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("--bucket"));
        assert!(problems[1].contains("--prefix"));
        assert!(problems[2].contains("--parameter Nope"));
        assert!(problems[3].contains("--stack-name"));
    }

    #[tokio::test]
    async fn missing_prebuilt_bootstraps_are_named() {
        let fixture = consistent();
        let prebuilt = fixture.root.join("prebuilt");
        std::fs::create_dir_all(prebuilt.join("keys")).unwrap();
        std::fs::write(prebuilt.join("keys/bootstrap"), "#!/bin/sh\n").unwrap();
        let mut options = options(&fixture.root);
        options.prebuilt = Some(prebuilt.clone());
        let err = package_with(
            &options,
            &HashMap::<String, String>::new(),
            &Installed(vec![]),
            &mut Vec::new(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("no bootstrap for 1 of 2 functions"), "{err}");
        assert!(err.contains("network/bootstrap"), "{err}");
    }

    #[test]
    fn the_default_prefix_hashes_names_and_bytes() {
        let artifacts = vec![
            Artifact::new("functions/keys.zip", b"zip".to_vec()),
            Artifact::new("bootstrap.yaml", b"template".to_vec()),
        ];
        let prefix = default_prefix("0.1.0", &artifacts);
        assert!(
            prefix.starts_with("apiary/0.1.0-") && prefix.ends_with('/'),
            "{prefix}"
        );
        assert_eq!(prefix.len(), "apiary/0.1.0-".len() + 12 + 1);
        options::check_prefix(&prefix).unwrap();
        // Order does not matter; content and names do.
        let reversed: Vec<Artifact> = artifacts.iter().rev().cloned().collect();
        assert_eq!(default_prefix("0.1.0", &reversed), prefix);
        let mut changed = artifacts.clone();
        changed[0].body = b"zip2".to_vec();
        assert_ne!(default_prefix("0.1.0", &changed), prefix);
        let mut renamed = artifacts.clone();
        renamed[0].name = "functions/dns.zip".into();
        assert_ne!(default_prefix("0.1.0", &renamed), prefix);
        // A version with build metadata still fits the template's pattern.
        options::check_prefix(&default_prefix("1.0.0+build.5", &artifacts)).unwrap();
    }

    #[test]
    fn region_and_endpoint_flags_win_over_the_environment() {
        let fixture = consistent();
        let env = HashMap::from([
            ("AWS_REGION".to_owned(), "eu-west-1".to_owned()),
            (
                "AWS_ENDPOINT_URL".to_owned(),
                "http://127.0.0.1:1".to_owned(),
            ),
        ]);
        let mut options = options(&fixture.root);
        let settings = settings(&options, &env);
        assert_eq!(settings.region.as_deref(), Some("us-west-2"));
        assert_eq!(settings.endpoint_url.as_deref(), Some("http://127.0.0.1:9"));
        assert!(settings.local_credentials);
        options.region = None;
        options.endpoint = None;
        let settings = super::settings(&options, &env);
        assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
        assert_eq!(settings.endpoint_url.as_deref(), Some("http://127.0.0.1:1"));
    }

    #[test]
    fn the_target_dir_follows_cargo() {
        let root = Path::new("/repo");
        assert_eq!(
            target_dir(root, &HashMap::<String, String>::new()),
            Path::new("/repo/target")
        );
        let env = HashMap::from([("CARGO_TARGET_DIR".to_owned(), "/cache/t".to_owned())]);
        assert_eq!(target_dir(root, &env), Path::new("/cache/t"));
        let env = HashMap::from([("CARGO_TARGET_DIR".to_owned(), "t2".to_owned())]);
        assert_eq!(target_dir(root, &env), Path::new("/repo/t2"));
    }
}
