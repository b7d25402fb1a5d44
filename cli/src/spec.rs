//! `apiary spec …`: validate a spec, print its JSON Schema, print an example.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use apiary_core::spec::{DeploymentSpec, SizePreset};
use clap::Subcommand;

/// Exit code for a spec that is not valid (distinct from usage and I/O errors).
pub const EXIT_INVALID: u8 = 2;

#[derive(Subcommand)]
pub enum SpecCommand {
    /// Check a spec (JSON, or the bootstrap stack's parameters map); lists every problem
    Validate {
        /// The spec file, or `-` for standard input
        file: PathBuf,
    },
    /// Print the JSON Schema of the deployment spec
    Schema,
    /// Print a complete example spec
    Example {
        #[arg(long, default_value = "small", value_parser = parse_size)]
        size: SizePreset,
    },
}

fn parse_size(text: &str) -> Result<SizePreset, String> {
    text.parse()
}

pub fn run(command: SpecCommand) -> anyhow::Result<ExitCode> {
    match command {
        SpecCommand::Validate { file } => validate(&file),
        SpecCommand::Schema => {
            println!(
                "{}",
                serde_json::to_string_pretty(&DeploymentSpec::json_schema())?
            );
            Ok(ExitCode::SUCCESS)
        }
        SpecCommand::Example { size } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&DeploymentSpec::example(size))?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn validate(file: &PathBuf) -> anyhow::Result<ExitCode> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the spec from standard input")?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    match DeploymentSpec::parse_str(&text) {
        Ok(spec) => {
            let sizing = spec.sizing();
            println!(
                "{}: valid. Deployment {} in {} ({} preset: {}-{} {} nodes, VPC {}, {} AZs)",
                file.display(),
                spec.name,
                spec.region,
                spec.size,
                sizing.nodes_min,
                sizing.nodes_max,
                sizing.node_instance_type,
                spec.network.vpc_cidr.as_deref().unwrap_or("?"),
                spec.network.az_count,
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            let n = errors.problems.len();
            eprintln!(
                "{}: invalid deployment spec, {n} problem{}:",
                file.display(),
                if n == 1 { "" } else { "s" }
            );
            for problem in &errors.problems {
                let path = if problem.path.is_empty() {
                    "(document)"
                } else {
                    &problem.path
                };
                eprintln!("  - {path}: {}", problem.message);
            }
            Ok(ExitCode::from(EXIT_INVALID))
        }
    }
}
