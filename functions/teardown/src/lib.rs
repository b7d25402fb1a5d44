//! The teardown function: removes a deployment's data plane, in the order that works,
//! and ends with a receipt. Its role is the only one with Delete* rights.
//!
//! Every action is idempotent and resumable: it finds what is left by tag, by the
//! deterministic names and by VPC/subnet membership, deletes it ("already gone" is
//! success) and reports what it still waits for, so that the workflow polls it again.
//! What an action removed is kept in the state table (`teardown.<action>`) across polls
//! and re-runs of the same data plane, for the receipt.

mod backups;
mod buckets;
mod cluster;
mod dns;
mod iam;
mod keys;
mod network;
mod ownership;
mod receipt;
mod report;
mod snapshots;
mod stores;
mod sweep;

use std::sync::Arc;

use apiary_core::aws::Env;
use apiary_core::inputs::teardown::TeardownInput;
use apiary_core::naming::Layer;
use apiary_core::step::{Action, Done, Recorder, Step, StepContext};
use apiary_core::{Error, Result};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value};

pub use ownership::Owner;
pub use report::{Kept, Report};

/// Everything the deployment's teardown reports keep on purpose (final snapshots, the
/// backups bucket, the keys that protect them): no longer in the inventory, still in
/// the account, and not leaked.
pub async fn kept(
    recorder: &dyn apiary_core::step::Recorder,
    deployment: &str,
) -> apiary_core::Result<Vec<Kept>> {
    Ok(report::all(recorder, deployment)
        .await?
        .into_iter()
        .flat_map(|(_, part)| part.kept)
        .collect())
}

/// The environment variable naming the control plane's in-VPC functions, comma
/// separated: the same list the network function attaches (and this one detaches).
pub const IN_VPC_FUNCTIONS_ENV: &str = "APIARY_IN_VPC_FUNCTIONS";

/// The functions [`IN_VPC_FUNCTIONS_ENV`] names, in order, without blanks.
pub fn in_vpc_functions(env: &dyn Env) -> Vec<String> {
    env.var(IN_VPC_FUNCTIONS_ENV)
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub struct Deps {
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// The control plane's log group.
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub eks: aws_sdk_eks::Client,
    pub rds: aws_sdk_rds::Client,
    pub docdb: aws_sdk_docdb::Client,
    pub elasticache: aws_sdk_elasticache::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub s3: aws_sdk_s3::Client,
    pub kms: aws_sdk_kms::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub route53: aws_sdk_route53::Client,
    pub acm: aws_sdk_acm::Client,
    pub iam: aws_sdk_iam::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub cloudtrail: aws_sdk_cloudtrail::Client,
    pub tagging: aws_sdk_resourcegroupstagging::Client,
    pub sts: aws_sdk_sts::Client,
    /// The DR region's clients (the backup workflow's copies and key).
    pub regional: backup::RegionalClients,
    pub recorder: Arc<dyn Recorder>,
    /// The control plane's functions attached to the data plane's subnets.
    pub in_vpc_functions: Vec<String>,
    /// The endpoint is the local emulator (plain HTTP): see `buckets` and `stores`.
    pub emulator: bool,
}

impl Deps {
    pub fn new(config: &aws_config::SdkConfig, recorder: Arc<dyn Recorder>) -> Self {
        use apiary_core::client;
        Deps {
            cloudwatch: client!(aws_sdk_cloudwatch, config),
            logs: client!(aws_sdk_cloudwatchlogs, config),
            ec2: client!(aws_sdk_ec2, config),
            eks: client!(aws_sdk_eks, config),
            rds: client!(aws_sdk_rds, config),
            docdb: client!(aws_sdk_docdb, config),
            elasticache: client!(aws_sdk_elasticache, config),
            elb: client!(aws_sdk_elasticloadbalancingv2, config),
            s3: apiary_core::aws::s3_client(config),
            kms: client!(aws_sdk_kms, config),
            secrets: client!(aws_sdk_secretsmanager, config),
            route53: client!(aws_sdk_route53, config),
            acm: client!(aws_sdk_acm, config),
            iam: client!(aws_sdk_iam, config),
            lambda: client!(aws_sdk_lambda, config),
            sqs: client!(aws_sdk_sqs, config),
            events: client!(aws_sdk_eventbridge, config),
            cloudtrail: client!(aws_sdk_cloudtrail, config),
            tagging: client!(aws_sdk_resourcegroupstagging, config),
            sts: client!(aws_sdk_sts, config),
            regional: backup::regional_clients(config),
            recorder,
            in_vpc_functions: Vec::new(),
            emulator: config
                .endpoint_url()
                .is_some_and(|u| u.starts_with("http://")),
        }
    }

    /// The control plane's in-VPC functions to detach before the network goes.
    pub fn with_in_vpc_functions(mut self, functions: Vec<String>) -> Self {
        self.in_vpc_functions = functions;
        self
    }
}

/// The teardown's actions, in the order the workflow runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TeardownAction {
    /// Final snapshots of every store (kept, with the keys that protect them).
    #[serde(rename = "snapshots")]
    Snapshots,
    /// The node group(s), then the EKS cluster, then Karpenter's queue and rules.
    #[serde(rename = "cluster")]
    Cluster,
    /// What controllers made and nothing recorded: instances, load balancers, target
    /// groups, security groups, volumes, network interfaces.
    #[serde(rename = "sweep")]
    Sweep,
    /// RDS, DocumentDB, ElastiCache (deletion protection lifted here), their groups.
    #[serde(rename = "stores")]
    Stores,
    /// Secrets Manager secrets.
    #[serde(rename = "secrets")]
    Secrets,
    /// S3 buckets, emptied with their versions; the backups bucket only when asked.
    #[serde(rename = "buckets")]
    Buckets,
    /// The private hosted zone and the certificate.
    #[serde(rename = "dns")]
    Dns,
    /// Detaches the control plane's in-VPC functions and waits for their interfaces.
    #[serde(rename = "detach")]
    Detach,
    /// Endpoints, NAT gateways, addresses, gateways, subnets, routes, groups, the VPC.
    #[serde(rename = "network")]
    Network,
    /// IAM roles and instance profiles.
    #[serde(rename = "iam")]
    Iam,
    /// The backup workflow's snapshots (kept, or deleted with `delete_backups`), then the
    /// KMS keys: scheduled for deletion, except those protecting what is kept.
    #[serde(rename = "keys")]
    Keys,
    /// The final scan by tag, and the receipt.
    #[serde(rename = "receipt")]
    Receipt,
}

impl TeardownAction {
    pub const ALL: [TeardownAction; 12] = [
        TeardownAction::Snapshots,
        TeardownAction::Cluster,
        TeardownAction::Sweep,
        TeardownAction::Stores,
        TeardownAction::Secrets,
        TeardownAction::Buckets,
        TeardownAction::Dns,
        TeardownAction::Detach,
        TeardownAction::Network,
        TeardownAction::Iam,
        TeardownAction::Keys,
        TeardownAction::Receipt,
    ];
}

impl Action for TeardownAction {
    fn as_str(self) -> &'static str {
        match self {
            TeardownAction::Snapshots => "snapshots",
            TeardownAction::Cluster => "cluster",
            TeardownAction::Sweep => "sweep",
            TeardownAction::Stores => "stores",
            TeardownAction::Secrets => "secrets",
            TeardownAction::Buckets => "buckets",
            TeardownAction::Dns => "dns",
            TeardownAction::Detach => "detach",
            TeardownAction::Network => "network",
            TeardownAction::Iam => "iam",
            TeardownAction::Keys => "keys",
            TeardownAction::Receipt => "receipt",
        }
    }
    fn mutates(self) -> bool {
        self != TeardownAction::Receipt
    }
}

pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    apiary_core::step::run(deps, event).await
}

/// What one action of a teardown works with.
pub struct Work<'a> {
    pub deps: &'a Deps,
    pub step: &'a StepContext<'a, TeardownAction>,
    pub input: TeardownInput,
    pub owner: Owner,
    /// What earlier calls of this action removed (same data plane), and this call adds.
    pub report: Report,
}

#[async_trait]
impl Step for Deps {
    const LAYER: Layer = Layer::Control;
    type Action = TeardownAction;
    type Output = Value;

    async fn run(&self, step: &StepContext<'_, TeardownAction>) -> Result<Done<Value>> {
        let input = teardown_input(&step.spec.name, &step.options)?;
        let owner = Owner::of(&step.spec, &step.names, &step.layers);
        let slot = report::slot(step.action);
        let previous = report::previous(self.recorder.as_ref(), &step.spec.name, &slot).await?;
        let mut work = Work {
            deps: self,
            step,
            input,
            report: previous.continued(&owner.incarnation),
            owner,
        };
        let pending = match step.action {
            TeardownAction::Snapshots => snapshots::run(&mut work).await?,
            TeardownAction::Cluster => cluster::run(&mut work).await?,
            TeardownAction::Sweep => sweep::run(&mut work).await?,
            TeardownAction::Stores => stores::run(&mut work).await?,
            TeardownAction::Secrets => stores::secrets(&mut work).await?,
            TeardownAction::Buckets => buckets::run(&mut work).await?,
            TeardownAction::Dns => dns::run(&mut work).await?,
            TeardownAction::Detach => network::detach(&mut work).await?,
            TeardownAction::Network => network::run(&mut work).await?,
            TeardownAction::Iam => iam::run(&mut work).await?,
            TeardownAction::Keys => keys::run(&mut work).await?,
            TeardownAction::Receipt => return receipt::run(&mut work).await,
        };
        let report = serde_json::to_value(&work.report)
            .map_err(|e| Error::fatal(format!("the teardown report does not serialise: {e}")))?;
        // Saved on every call, ready or not: a later poll or a re-run after a crash
        // continues the list instead of losing what was removed before.
        self.recorder
            .save_output(&step.spec.name, &slot, &report)
            .await?;
        let detail = format!(
            "removed so far: {}; kept: {}",
            work.report.removed.len(),
            work.report.kept.len()
        );
        Ok(Done::pending(report, pending).with_detail(detail))
    }

    fn state(&self) -> &dyn Recorder {
        self.recorder.as_ref()
    }

    fn journal_step(&self, _options: &Map<String, Value>) -> String {
        "teardown".to_owned()
    }
}

/// The workflow's validated input, as the frame hands it to every step. A step called
/// without it (by hand) must still name the deployment: the same check as the workflow's.
fn teardown_input(deployment: &str, options: &Map<String, Value>) -> Result<TeardownInput> {
    let input = options.get("input").cloned().unwrap_or(Value::Null);
    if input.is_null() {
        return Err(Error::invalid_input(
            "step input field `options.input` is missing: a teardown step needs the \
             workflow's input ({\"confirm\": \"<deployment>\"})",
        ));
    }
    TeardownInput::parse(deployment, input)
}

#[cfg(test)]
mod tests;
