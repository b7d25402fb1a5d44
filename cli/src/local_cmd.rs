//! `apiary local …`: run workflows on this machine against the AWS emulator.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use apiary::local::{LocalEnv, Progress, summarize};
use apiary_asl::ExecutionStatus;
use apiary_core::aws::{AwsSettings, Env, ProcessEnv};
use apiary_core::local::{Emulator, project_root};
use apiary_core::spec::{DeploymentSpec, SizePreset};
use apiary_core::store::{DEFAULT_TABLE, Store};
use clap::Subcommand;
use serde_json::json;

#[derive(Subcommand)]
pub enum LocalCommand {
    /// Build a whole data plane against the local AWS emulator, with live progress
    Provision {
        /// Deployment spec (JSON or parameters map); default: the small example, named `demo`
        #[arg(long)]
        spec: Option<PathBuf>,
        /// AWS endpoint to use instead of starting an emulator (also AWS_ENDPOINT_URL)
        #[arg(long)]
        endpoint: Option<String>,
        /// Apply the workloads to this cluster instead of only rendering them
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Folder for local state (rendered manifests)
        #[arg(long, default_value = ".apiary")]
        state_dir: PathBuf,
        /// Write the execution and its full history (GetExecutionHistory shape) to this file
        #[arg(long)]
        history: Option<PathBuf>,
    },
}

pub async fn run(command: LocalCommand) -> anyhow::Result<ExitCode> {
    match command {
        LocalCommand::Provision {
            spec,
            endpoint,
            kubeconfig,
            state_dir,
            history,
        } => provision(spec, endpoint, kubeconfig, state_dir, history).await,
    }
}

fn demo_spec() -> DeploymentSpec {
    let mut spec = DeploymentSpec::example(SizePreset::Small);
    spec.name = "demo".into();
    spec.dns.domain = "honeyhive.demo.example.com".into();
    spec.network.vpc_cidr = None;
    DeploymentSpec::parse(&serde_json::to_value(spec).expect("spec serialises"))
        .expect("the demo spec is valid")
}

async fn provision(
    spec_file: Option<PathBuf>,
    endpoint: Option<String>,
    kubeconfig: Option<PathBuf>,
    state_dir: PathBuf,
    history: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    // The spec is checked before anything starts or changes.
    let spec = match &spec_file {
        None => demo_spec(),
        Some(file) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            match DeploymentSpec::parse_str(&text) {
                Ok(spec) => spec,
                Err(errors) => {
                    eprintln!(
                        "{}: invalid deployment spec; nothing was started:",
                        file.display()
                    );
                    for problem in &errors.problems {
                        eprintln!("  - {problem}");
                    }
                    return Ok(ExitCode::from(crate::spec::EXIT_INVALID));
                }
            }
        }
    };
    if let Some(path) = &kubeconfig
        && !path.is_file()
    {
        anyhow::bail!("--kubeconfig {}: no such file", path.display());
    }

    let endpoint = endpoint.or_else(|| ProcessEnv.var("AWS_ENDPOINT_URL"));
    let _emulator;
    let endpoint = match endpoint {
        Some(endpoint) => endpoint,
        None => {
            let root = project_root(&ProcessEnv).context("finding the project for the emulator")?;
            eprintln!("starting the local AWS emulator (first run installs it into .venv)…");
            let emulator = Emulator::start(&root)?;
            let url = emulator.endpoint().to_owned();
            eprintln!(
                "emulator at {url}; it stops when this command ends (run `scripts/emulator start` to keep one)"
            );
            _emulator = emulator;
            url
        }
    };
    let config = apiary_core::aws::load(&AwsSettings::local(&endpoint, &spec.region)).await;
    let store = Store::new(
        apiary_core::client!(aws_sdk_dynamodb, &config),
        DEFAULT_TABLE,
    );
    store
        .ensure_table()
        .await
        .context("creating the state table")?;
    let env = LocalEnv {
        config,
        store: store.clone(),
        state_dir,
        kubeconfig,
    };
    let root = project_root(&ProcessEnv).context("finding statemachines/")?;
    let machine = env.load(&root, "provision")?;

    eprintln!(
        "provisioning {} ({} preset, {}, VPC {}) against {endpoint}",
        spec.name,
        spec.size,
        spec.region,
        spec.network.vpc_cidr.as_deref().unwrap_or("?")
    );
    let progress = Progress::new();
    let execution_name = format!(
        "provision-{}-{}",
        spec.name,
        chrono::Utc::now().format("%Y%m%dT%H%M%S")
    );
    let input = json!({"spec": spec});
    let result = env
        .run(
            &machine,
            "provision",
            &spec.name,
            input,
            execution_name,
            Some(progress.listener()),
        )
        .await;
    let succeeded = result.status == ExecutionStatus::Succeeded;
    progress.finish(if succeeded { "done" } else { "stopped" });

    if let Some(path) = &history {
        let mut document = result.describe();
        document["events"] = result.history_json()["events"].clone();
        std::fs::write(path, serde_json::to_string_pretty(&document)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("\nexecution {}: {:?}", result.execution_arn, result.status);
    let layers = result.output.as_ref().map(|o| o["layers"].clone());
    let summary = summarize(&store, &spec.name, layers.as_ref()).await?;
    print!("{}", summary.render());
    if succeeded {
        println!("deployment {} is READY", spec.name);
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "provision FAILED: {}: {}",
            result.error.as_deref().unwrap_or("unknown error"),
            result.cause.as_deref().unwrap_or("")
        );
        println!(
            "fix the cause and run the same command again: finished layers are kept and not rebuilt"
        );
        Ok(ExitCode::FAILURE)
    }
}
