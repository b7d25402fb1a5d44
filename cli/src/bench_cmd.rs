//! `apiary bench provision`: the provision workflow against AWS's timing, measured
//! against the longest chain of dependent resources it created (`apiary::chaos::bench`).
//!
//! Exit codes: 0 the run succeeded; 1 it did not; 2 refused; 3 the emulator could not be
//! started or reached.

use std::path::PathBuf;
use std::process::ExitCode;

use apiary::chaos::{Options, bench};
use apiary_core::aws::ProcessEnv;
use apiary_core::local::project_root;
use clap::{Args, Subcommand};

use crate::local_cmd::{
    EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_REFUSED, emulator_to_empty, endpoint_or_emulator,
    spec_or_demo,
};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Provision against AWS's timing (each slow resource creating for its AWS duration
    /// divided by the time scale, on the engine's real-time clock at the same scale);
    /// prints per layer when it started, when AWS would have had it ready, when the
    /// workflow went on, and `provision wall <s>s critical-path <s>s ratio <x>`
    Provision(ProvisionArgs),
}

#[derive(Args)]
pub struct ProvisionArgs {
    /// Workflow seconds per real second (Step Functions' one-second `Wait` granularity
    /// makes finer than about 20 unfaithful on AWS)
    #[arg(long, default_value_t = 20.0)]
    time_scale: f64,
    /// An emulator on this machine to use instead of starting one; it is EMPTIED first
    #[arg(long)]
    endpoint: Option<String>,
    /// Deployment spec; default: the small demo spec
    #[arg(long)]
    spec: Option<PathBuf>,
}

pub async fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    let BenchCommand::Provision(args) = command;
    Ok(ExitCode::from(provision(args).await))
}

async fn provision(args: ProvisionArgs) -> u8 {
    let Some(root) = project_root(&ProcessEnv) else {
        eprintln!(
            "error: cannot find the project (a folder with scripts/emulator); nothing was started"
        );
        return EXIT_REFUSED;
    };
    if !(args.time_scale.is_finite() && args.time_scale >= 1.0) {
        eprintln!(
            "error: --time-scale {} must be 1 or more; nothing was started",
            args.time_scale
        );
        return EXIT_REFUSED;
    }
    let spec = match spec_or_demo(args.spec.as_deref()) {
        Ok(spec) => spec,
        Err(code) => return code,
    };
    let endpoint = match emulator_to_empty(args.endpoint.as_deref()) {
        Ok(endpoint) => endpoint,
        Err(code) => return code,
    };
    let (endpoint, _emulator) = match endpoint_or_emulator(endpoint, &root) {
        Ok(connected) => connected,
        Err(code) => return code,
    };
    let mut options = Options::new(&endpoint, &root, spec);
    options.workflows = vec!["provision".to_owned()];
    eprintln!(
        "bench: provision at time scale {} (1 real second = {} AWS seconds) against {endpoint}",
        args.time_scale, args.time_scale
    );
    match bench::provision(&options, args.time_scale).await {
        Ok(figures) => {
            println!("{}", figures.render());
            if figures.succeeded { 0 } else { EXIT_FAILED }
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            EXIT_ENVIRONMENT
        }
    }
}
