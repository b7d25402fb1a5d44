//! The steps of two day-2 workflows over the deployment's data stores.
//!
//! **backup**: `plan` (the run's stores, from the validated input) -> `snapshot` /
//! `snapshot-status` (native snapshots: RDS `CreateDBSnapshot`, DocumentDB
//! `CreateDBClusterSnapshot`, ElastiCache `CreateSnapshot`; tagged with the deployment,
//! the store, the sentinel id and `apiary:backup`) -> `copy-dr` / `copy-status` (when
//! `backup.dr_region` is set: RDS and DocumentDB copies re-encrypted with the DR-region
//! key; Redis, which has no cross-region copy, exported into the storage layer's export
//! bucket, which S3 replicates into its DR twin) -> `prune`
//! (older than `backup.retention_days`, never the newest good one, only what this
//! workflow tagged) -> `ledger` (the RPO ledger: per store and region the newest
//! restorable point, its age and its sentinel id, kept in the state table).
//!
//! **restore-test**: `plan` -> `cleanup` (leftovers of crashed runs) -> `restore` /
//! `restore-status` (the newest snapshot into a scratch store in the private subnets,
//! behind a scratch security group that admits only the control plane's group, on the
//! smallest class, with a fresh master password in a scratch secret) -> the verifier
//! reads the sentinel back -> `report` (journal, EventBridge, CloudWatch) -> `cleanup`
//! (every scratch resource, found by its tag).
//!
//! Every step finds what it made by a deterministic name (derived from the execution
//! id, kept in the run's plan) or by tag before creating anything, so a retried or
//! re-run step never duplicates.

mod cleanup;
mod copy;
mod engine;
mod ledger;
mod plan;
mod presign;
mod prune;
mod report;
mod restore;
mod scratch;
mod snapshot;

use std::sync::Arc;

use apiary_core::Result;
use apiary_core::naming::Layer;
use apiary_core::step::{self, Done, Recorder, Step, StepContext};
use async_trait::async_trait;
use aws_config::{Region, SdkConfig};
use aws_sdk_rds::config::SharedCredentialsProvider;
use serde::Deserialize;
use serde_json::Value;

pub use apiary_core::inputs::backup::StoreName;
pub use copy::DR_KEY_SCOPE;
pub use engine::{
    BACKUP_VALUE, Clients, Replicas, Snapshot, TAG_BACKUP, TAG_RUN, TAG_SCRATCH, TAG_SENTINEL,
    TAG_STORE, source_of,
};
pub use ledger::SLOT as LEDGER_SLOT;
pub use plan::Plan;

/// The AWS clients of one region: the DR region's, for copies and their pruning.
#[derive(Clone, Debug)]
pub struct Regional {
    pub region: String,
    pub rds: aws_sdk_rds::Client,
    pub docdb: aws_sdk_docdb::Client,
    pub kms: aws_sdk_kms::Client,
    /// The DR export bucket's (Redis backups' replicas).
    pub s3: aws_sdk_s3::Client,
}

/// Builds the clients of a region (the DR region is known only from the spec).
pub type RegionalClients = Arc<dyn Fn(&str) -> Regional + Send + Sync>;

pub struct Deps {
    pub rds: aws_sdk_rds::Client,
    pub docdb: aws_sdk_docdb::Client,
    pub elasticache: aws_sdk_elasticache::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub s3: aws_sdk_s3::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub regional: RegionalClients,
    /// Signs DocumentDB's cross-region copy request (`PreSignedUrl`).
    pub credentials: Option<SharedCredentialsProvider>,
    /// The clients talk to an endpoint override (the local emulator): an operation the
    /// emulator does not implement is reported as not emulated instead of failing.
    pub emulator: bool,
    pub recorder: Arc<dyn Recorder>,
}

/// The clients of any region, with `config`'s credentials and endpoint.
pub fn regional_clients(config: &SdkConfig) -> RegionalClients {
    let base = config.clone();
    Arc::new(move |region: &str| {
        let config = base
            .to_builder()
            .region(Region::new(region.to_owned()))
            .build();
        Regional {
            region: region.to_owned(),
            rds: apiary_core::client!(aws_sdk_rds, &config),
            docdb: apiary_core::client!(aws_sdk_docdb, &config),
            kms: apiary_core::client!(aws_sdk_kms, &config),
            s3: apiary_core::aws::s3_client(&config),
        }
    })
}

impl Deps {
    pub fn new(config: &SdkConfig, recorder: Arc<dyn Recorder>) -> Self {
        let regional = regional_clients(config);
        Deps {
            rds: apiary_core::client!(aws_sdk_rds, config),
            docdb: apiary_core::client!(aws_sdk_docdb, config),
            elasticache: apiary_core::client!(aws_sdk_elasticache, config),
            ec2: apiary_core::client!(aws_sdk_ec2, config),
            secrets: apiary_core::client!(aws_sdk_secretsmanager, config),
            s3: apiary_core::aws::s3_client(config),
            events: apiary_core::client!(aws_sdk_eventbridge, config),
            cloudwatch: apiary_core::client!(aws_sdk_cloudwatch, config),
            regional,
            credentials: config.credentials_provider(),
            emulator: config.endpoint_url().is_some(),
            recorder,
        }
    }
}

/// What the state machines ask of this function, spelled as they send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Action {
    /// Both workflows: keep the run's stores (from `options.input`) for its later steps.
    #[serde(rename = "plan")]
    Plan,
    #[serde(rename = "snapshot")]
    Snapshot,
    #[serde(rename = "snapshot-status")]
    SnapshotStatus,
    #[serde(rename = "copy-dr")]
    CopyDr,
    #[serde(rename = "copy-status")]
    CopyStatus,
    #[serde(rename = "prune")]
    Prune,
    #[serde(rename = "ledger")]
    Ledger,
    #[serde(rename = "restore")]
    Restore,
    #[serde(rename = "restore-status")]
    RestoreStatus,
    #[serde(rename = "cleanup")]
    Cleanup,
    #[serde(rename = "report")]
    Report,
}

impl Action {
    /// The workflow an action belongs to (`plan` says in its options).
    fn workflow(self) -> Option<&'static str> {
        match self {
            Action::Plan => None,
            Action::Snapshot
            | Action::SnapshotStatus
            | Action::CopyDr
            | Action::CopyStatus
            | Action::Prune
            | Action::Ledger => Some(plan::BACKUP),
            Action::Restore | Action::RestoreStatus | Action::Cleanup | Action::Report => {
                Some(plan::RESTORE_TEST)
            }
        }
    }
}

impl step::Action for Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Plan => "plan",
            Action::Snapshot => "snapshot",
            Action::SnapshotStatus => "snapshot-status",
            Action::CopyDr => "copy-dr",
            Action::CopyStatus => "copy-status",
            Action::Prune => "prune",
            Action::Ledger => "ledger",
            Action::Restore => "restore",
            Action::RestoreStatus => "restore-status",
            Action::Cleanup => "cleanup",
            Action::Report => "report",
        }
    }

    fn mutates(self) -> bool {
        !matches!(
            self,
            Action::SnapshotStatus | Action::CopyStatus | Action::Ledger
        )
    }
}

#[async_trait]
impl Step for Deps {
    // Snapshots and scratch copies are the data stores' own: the inventory files them
    // under the databases layer; the journal under the workflow (`journal_step`).
    const LAYER: Layer = Layer::Databases;
    type Action = Action;
    type Output = Value;

    async fn run(&self, step: &StepContext<'_, Action>) -> Result<Done<Value>> {
        // Boxed: each action's future is deep.
        match step.action {
            Action::Plan => Box::pin(plan::run(self, step)).await,
            Action::Snapshot => Box::pin(snapshot::run(self, step, true)).await,
            Action::SnapshotStatus => Box::pin(snapshot::run(self, step, false)).await,
            Action::CopyDr => Box::pin(copy::run(self, step, true)).await,
            Action::CopyStatus => Box::pin(copy::run(self, step, false)).await,
            Action::Prune => Box::pin(prune::run(self, step)).await,
            Action::Ledger => Box::pin(ledger::run(self, step)).await,
            Action::Restore => Box::pin(restore::run(self, step, true)).await,
            Action::RestoreStatus => Box::pin(restore::run(self, step, false)).await,
            Action::Cleanup => Box::pin(scratch::cleanup(self, step)).await,
            Action::Report => Box::pin(report::run(self, step)).await,
        }
    }

    fn state(&self) -> &dyn Recorder {
        self.recorder.as_ref()
    }

    fn journal_step(&self, options: &serde_json::Map<String, Value>) -> String {
        options
            .get("workflow")
            .and_then(Value::as_str)
            .filter(|w| [plan::BACKUP, plan::RESTORE_TEST].contains(w))
            .unwrap_or(plan::BACKUP)
            .to_owned()
    }
}

/// Runs one backup or restore-test action for a Lambda event.
pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    let event = with_workflow(event);
    step::run(deps, event).await
}

/// Files every action's journal entry under its workflow: the actions of one workflow
/// say which it is by themselves; `plan` says in its options.
fn with_workflow(mut event: Value) -> Value {
    let action = event
        .get("action")
        .cloned()
        .and_then(|a| serde_json::from_value::<Action>(a).ok());
    if let Some(workflow) = action.and_then(Action::workflow)
        && let Some(object) = event.as_object_mut()
    {
        let options = object
            .entry("options")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(options) = options.as_object_mut() {
            options
                .entry("workflow")
                .or_insert_with(|| Value::String(workflow.to_owned()));
        }
    }
    event
}

#[cfg(test)]
mod tests;
