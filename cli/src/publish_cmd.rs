//! `apiary publish`: the command line of [`apiary::publish`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use apiary::package::Arch;
use apiary::publish::{self, Options, Source, policy::Readers};
use apiary_core::aws::ProcessEnv;
use apiary_core::local::project_root;

#[derive(clap::Args)]
pub struct PublishArgs {
    /// The zips `apiary package` wrote (its --out folder: <function>.zip)
    #[arg(long, value_name = "DIR", conflicts_with = "prebuilt")]
    from: Option<PathBuf>,
    /// Bootstraps built elsewhere: DIR/<function>/bootstrap (cargo-lambda's layout)
    #[arg(long, value_name = "DIR")]
    prebuilt: Option<PathBuf>,
    /// The release's version; its keys are releases/<version>/ [default: the workspace's]
    #[arg(long)]
    version: Option<String>,
    /// Lambda architecture the build is for (checked in every bootstrap)
    #[arg(long, default_value = "arm64")]
    arch: Arch,
    /// A region to publish to (repeatable) [default: every region of the template's Release mapping]
    #[arg(long = "region", value_name = "REGION")]
    regions: Vec<String>,
    /// Name the buckets <PREFIX>-<region> [default: the buckets of the template's Release mapping]
    #[arg(long, value_name = "PREFIX")]
    bucket_prefix: Option<String>,
    /// Only accounts of this AWS Organization may read releases (aws:PrincipalOrgID);
    /// the buckets stay non-public
    #[arg(long, value_name = "o-...", conflicts_with = "public")]
    organization_id: Option<String>,
    /// Any AWS account may read releases: the bucket policies are public, so S3 Block
    /// Public Access is relaxed for these buckets (policies only; ACLs stay blocked)
    #[arg(long)]
    public: bool,
    /// AWS endpoint to use instead of AWS, e.g. the local emulator (also AWS_ENDPOINT_URL)
    #[arg(long)]
    endpoint: Option<String>,
    /// Where to write launch.html [default: <cargo target dir>/apiary-publish/<version>]
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Stack name in the links [default: apiary-<DeploymentName default>]
    #[arg(long)]
    stack_name: Option<String>,
    /// With --prebuilt: PEM bundle of the database CAs the verifier trusts (AWS's RDS
    /// global-bundle.pem followed by the Amazon root CAs; see the README, "TLS trust")
    #[arg(long, value_name = "FILE", requires = "prebuilt")]
    database_ca_bundle: Option<PathBuf>,
}

pub async fn run(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let root = project_root(&ProcessEnv)
        .context("cannot find the Apiary repository; run from inside it or set APIARY_ROOT")?;
    let source = match (args.from, args.prebuilt) {
        (Some(dir), None) => Source::Zips(dir),
        (None, Some(dir)) => Source::Prebuilt(dir),
        _ => bail!("say where the build is: --from DIR (apiary package's zips) or --prebuilt DIR"),
    };
    let readers = match (args.organization_id, args.public) {
        (Some(id), false) => Readers::Organization(id),
        (None, true) => Readers::AnyAccount,
        _ => bail!(
            "say who may read the release: --organization-id o-... (the accounts of one AWS \
             Organization; preferred) or --public (any AWS account)"
        ),
    };
    let options = Options {
        root,
        version: args
            .version
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
        source,
        arch: args.arch,
        regions: args.regions,
        bucket_prefix: args.bucket_prefix,
        readers,
        endpoint: args.endpoint,
        out: args.out,
        stack_name: args.stack_name,
        database_ca_bundle: args.database_ca_bundle,
    };
    let published = publish::publish(&options, &ProcessEnv, &mut std::io::stderr()).await?;
    println!();
    print!("{}", published.render());
    Ok(ExitCode::SUCCESS)
}
