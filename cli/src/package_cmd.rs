//! `apiary package`: the command line of [`apiary::package`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use apiary::package::{self, Arch, Options};
use apiary_core::aws::ProcessEnv;
use apiary_core::local::project_root;

#[derive(clap::Args)]
pub struct PackageArgs {
    /// S3 bucket for the artifacts, in the region the stack will be created in
    #[arg(long)]
    bucket: String,
    /// Key prefix, ending in `/` [default: apiary/<version>-<hash of the artifacts>/]
    #[arg(long)]
    prefix: Option<String>,
    /// Lambda architecture to build for: arm64 (Graviton) or x86_64
    #[arg(long, default_value = "arm64")]
    arch: Arch,
    /// Skip the build and zip DIR/<function>/bootstrap (cargo-lambda's target/lambda layout)
    #[arg(long, value_name = "DIR")]
    prebuilt: Option<PathBuf>,
    /// Where to write the zips [default: <cargo target dir>/apiary-package/<arch>]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// AWS region of the bucket and the stack (else AWS_REGION or the profile's region)
    #[arg(long)]
    region: Option<String>,
    /// AWS endpoint to use instead of AWS, e.g. the local emulator (also AWS_ENDPOINT_URL)
    #[arg(long)]
    endpoint: Option<String>,
    /// Stack name for the console link [default: apiary-<DeploymentName>]
    #[arg(long)]
    stack_name: Option<String>,
    /// A template parameter to fill in on the console page (repeatable), e.g. Domain=hh.example.com
    #[arg(long = "parameter", value_name = "KEY=VALUE")]
    parameters: Vec<String>,
    /// PEM bundle of the database CAs the verifier trusts: AWS's RDS global-bundle.pem
    /// followed by the Amazon root CAs (see the README, "TLS trust")
    #[arg(long, value_name = "FILE")]
    database_ca_bundle: Option<PathBuf>,
}

pub async fn run(args: PackageArgs) -> anyhow::Result<ExitCode> {
    let root = project_root(&ProcessEnv)
        .context("cannot find the Apiary repository; run from inside it or set APIARY_ROOT")?;
    let options = Options {
        root,
        bucket: args.bucket,
        prefix: args.prefix,
        arch: args.arch,
        prebuilt: args.prebuilt,
        out: args.out,
        region: args.region,
        endpoint: args.endpoint,
        stack_name: args.stack_name,
        parameters: args.parameters,
        database_ca_bundle: args.database_ca_bundle,
    };
    let packaged = package::package(&options, &ProcessEnv, &mut std::io::stderr()).await?;
    println!();
    print!("{}", packaged.render());
    Ok(ExitCode::SUCCESS)
}
