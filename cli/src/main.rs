//! `apiary`: the Apiary command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod asl;
mod bench_cmd;
mod chaos_cmd;
mod local_cmd;
mod package_cmd;
mod publish_cmd;
mod spec;
mod status_cmd;
mod workflows_cmd;

#[derive(Parser)]
#[command(
    name = "apiary",
    version,
    about = "Install, operate and remove a HoneyHive data plane in your AWS account"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write, check and document deployment specs
    Spec {
        #[command(subcommand)]
        command: spec::SpecCommand,
    },
    /// Run workflows on this machine against the local AWS emulator
    Local {
        #[command(subcommand)]
        command: local_cmd::LocalCommand,
    },
    /// Validate and run Amazon States Language state machines locally
    Asl {
        #[command(subcommand)]
        command: asl::AslCommand,
    },
    /// Generate the state machines from their Rust description, or check them
    Workflows {
        #[command(subcommand)]
        command: workflows_cmd::WorkflowsCommand,
    },
    /// Build the functions for Lambda, upload them with the state machines and the
    /// template to S3, and print the console link that creates the stack
    Package(package_cmd::PackageArgs),
    /// Publish one packaged build as an immutable release to an artifact bucket per
    /// region, and write the customers' launch links and launch.html
    Publish(publish_cmd::PublishArgs),
    /// Show a deployment's status, lock holder, last journal entry per layer and pending
    /// DNS validation records, from the state table (locally or on AWS)
    Status(status_cmd::StatusArgs),
    /// Provision, every day-2 workflow and teardown through a proxy that injects AWS's
    /// faults and timing, once per seed, re-running failed workflows; reports leaked and
    /// duplicate resources (the emulator is emptied before each seed)
    Chaos(chaos_cmd::ChaosArgs),
    /// Benchmarks against AWS's timing
    Bench {
        #[command(subcommand)]
        command: bench_cmd::BenchCommand,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Spec { command } => spec::run(command),
        Command::Asl { command } => asl::run(command).await,
        Command::Local { command } => local_cmd::run(command).await,
        Command::Workflows { command } => workflows_cmd::run(command),
        Command::Package(args) => package_cmd::run(args).await,
        Command::Publish(args) => publish_cmd::run(args).await,
        Command::Status(args) => status_cmd::run(args).await,
        Command::Chaos(args) => chaos_cmd::run(args).await,
        Command::Bench { command } => bench_cmd::run(command).await,
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
