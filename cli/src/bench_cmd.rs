//! `apiary bench provision`: the provision workflow against AWS's timing, measured
//! against the longest chain of dependent resources it created (`apiary::chaos::bench`).
//! `apiary bench functions`: each function's zip size and cold start
//! (`apiary::package::figures`).
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
    /// Each function as it is packaged (release, x86_64, built by cargo-lambda as
    /// `apiary package` does): one line per function, `<name> zip <bytes> init <ms>`, its
    /// zip's size and its cold start (process start to its first request for an
    /// invocation, to a Lambda Runtime API served here; the median of --runs starts)
    Functions(FunctionsArgs),
}

#[derive(Args)]
pub struct FunctionsArgs {
    /// Starts per function; the median is printed
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..=100))]
    runs: u64,
    /// Skip the build and measure DIR/<function>/bootstrap (cargo-lambda's layout)
    #[arg(long, value_name = "DIR")]
    prebuilt: Option<PathBuf>,
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
    Ok(ExitCode::from(match command {
        BenchCommand::Provision(args) => provision(args).await,
        BenchCommand::Functions(args) => functions(args).await,
    }))
}

/// The goals of issue #17: every zip at most 3 MB, every cold start at most 5 ms.
const ZIP_GOAL_BYTES: usize = 3_000_000;
const INIT_GOAL_MS: f64 = 5.0;

async fn functions(args: FunctionsArgs) -> u8 {
    let Some(root) = project_root(&ProcessEnv) else {
        eprintln!("error: cannot find the project (a folder with functions/); nothing was built");
        return EXIT_REFUSED;
    };
    let runs = usize::try_from(args.runs).unwrap_or(7);
    let figures = match apiary::package::figures::measure(
        &root,
        &ProcessEnv,
        args.prebuilt.as_deref(),
        runs,
        &mut std::io::stderr(),
    )
    .await
    {
        Ok(figures) => figures,
        Err(err) => {
            eprintln!("error: {err:#}");
            return EXIT_FAILED;
        }
    };
    for figure in &figures {
        println!("{}", figure.render());
    }
    let over_size: Vec<&str> = figures
        .iter()
        .filter(|f| f.zip_bytes > ZIP_GOAL_BYTES)
        .map(|f| f.function.as_str())
        .collect();
    let over_init: Vec<&str> = figures
        .iter()
        .filter(|f| f.init().as_secs_f64() * 1000.0 > INIT_GOAL_MS)
        .map(|f| f.function.as_str())
        .collect();
    eprintln!(
        "functions: {}; zips over {ZIP_GOAL_BYTES} bytes: {}; cold starts over {INIT_GOAL_MS} ms: {}",
        figures.len(),
        if over_size.is_empty() {
            "none".to_owned()
        } else {
            over_size.join(", ")
        },
        if over_init.is_empty() {
            "none".to_owned()
        } else {
            over_init.join(", ")
        },
    );
    0
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
