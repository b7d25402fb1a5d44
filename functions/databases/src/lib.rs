//! The databases layer: RDS PostgreSQL, a DocumentDB cluster and an ElastiCache Redis
//! replication group, each in the private subnets behind the databases security group,
//! encrypted with its own customer-managed key, with credentials in Secrets Manager.
//!
//! The three stores are independent: the state machine runs them in parallel, each with
//! its own poll loop, so every action handles exactly one store. `ensure-*` creates what
//! is missing and returns at once; `status-*` only looks. Both report `ready: false`
//! until the store is available, and both keep the store's output for later layers once
//! it is (the poll loop's last `status-*` is the one that sees it ready).

pub mod alarms;
mod documentdb;
mod postgres;
pub use postgres::Raised;
mod readiness;
mod redis;
mod secrets;

use std::sync::Arc;

use apiary_core::naming::{Layer, Names, TAG_ROLE};
use apiary_core::outputs::{DatastoreEndpoint, Layers};
use apiary_core::spec::DeploymentSpec;
use apiary_core::step::{self, Done, Recorder, Step, StepContext, StepLog};
use apiary_core::{Error, Result};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use documentdb::documentdb_parameter_group;
pub use documentdb::{DOCDB_ENGINE_VERSION, DOCDB_PARAMETER_FAMILY, DOCDB_PORT};
pub use postgres::{
    POSTGRES_ENGINE_VERSION, POSTGRES_PARAMETER_FAMILY, POSTGRES_PORT, postgres_parameter_group,
};
pub use redis::{REDIS_ENGINE_VERSION, REDIS_PORT};

pub struct Deps {
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// The alerts topic the data-plane alarms tell (`APIARY_ALERT_TOPIC_ARN`).
    pub alert_topic: Option<String>,
    /// The clients talk to an endpoint override (the local emulator), where a call the
    /// emulator cannot answer is reported as not emulated.
    pub emulator: bool,
    pub rds: aws_sdk_rds::Client,
    pub docdb: aws_sdk_docdb::Client,
    pub elasticache: aws_sdk_elasticache::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub recorder: Arc<dyn Recorder>,
}

impl Deps {
    pub fn new(config: &aws_config::SdkConfig, recorder: Arc<dyn Recorder>) -> Self {
        Deps {
            cloudwatch: apiary_core::client!(aws_sdk_cloudwatch, config),
            alert_topic: None,
            emulator: config.endpoint_url().is_some(),
            rds: apiary_core::client!(aws_sdk_rds, config),
            docdb: apiary_core::client!(aws_sdk_docdb, config),
            elasticache: apiary_core::client!(aws_sdk_elasticache, config),
            secrets: apiary_core::client!(aws_sdk_secretsmanager, config),
            recorder,
        }
    }

    /// The topic the data-plane alarms tell.
    pub fn with_alert_topic(mut self, topic: impl Into<String>) -> Self {
        self.alert_topic = Some(topic.into());
        self
    }
}

/// What the state machine asks of this function, spelled as it sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Action {
    #[serde(rename = "ensure-postgres")]
    EnsurePostgres,
    #[serde(rename = "status-postgres")]
    StatusPostgres,
    #[serde(rename = "ensure-documentdb")]
    EnsureDocumentDb,
    #[serde(rename = "status-documentdb")]
    StatusDocumentDb,
    #[serde(rename = "ensure-redis")]
    EnsureRedis,
    #[serde(rename = "status-redis")]
    StatusRedis,
    /// handle-alert's low-storage runbook: the PostgreSQL instance's allocated storage
    /// raised within its ceiling.
    #[serde(rename = "raise-storage")]
    RaiseStorage,
    /// The data stores' alarms (see [`alarms`]).
    #[serde(rename = "ensure-alarms")]
    EnsureAlarms,
}

impl Action {
    fn datastore(self) -> Datastore {
        match self {
            Action::EnsurePostgres
            | Action::StatusPostgres
            | Action::RaiseStorage
            | Action::EnsureAlarms => Datastore::Postgres,
            Action::EnsureDocumentDb | Action::StatusDocumentDb => Datastore::DocumentDb,
            Action::EnsureRedis | Action::StatusRedis => Datastore::Redis,
        }
    }
}

impl step::Action for Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::EnsurePostgres => "ensure-postgres",
            Action::StatusPostgres => "status-postgres",
            Action::EnsureDocumentDb => "ensure-documentdb",
            Action::StatusDocumentDb => "status-documentdb",
            Action::EnsureRedis => "ensure-redis",
            Action::StatusRedis => "status-redis",
            Action::RaiseStorage => "raise-storage",
            Action::EnsureAlarms => "ensure-alarms",
        }
    }

    /// Both actions of a store keep its output: the poll loop ends on a `status-*` that
    /// finally sees the store ready.
    fn slot(self) -> Option<&'static str> {
        if matches!(self, Action::RaiseStorage | Action::EnsureAlarms) {
            // Its output is what it did, not the store's endpoint.
            return None;
        }
        Some(match self.datastore() {
            Datastore::Postgres => "databases.postgres",
            Datastore::DocumentDb => "databases.documentdb",
            Datastore::Redis => "databases.redis",
        })
    }

    fn mutates(self) -> bool {
        matches!(
            self,
            Action::EnsurePostgres
                | Action::EnsureDocumentDb
                | Action::EnsureRedis
                | Action::RaiseStorage
                | Action::EnsureAlarms
        )
    }
}

/// The data store an action is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Datastore {
    Postgres,
    DocumentDb,
    Redis,
}

impl Datastore {
    fn as_str(self) -> &'static str {
        match self {
            Datastore::Postgres => "postgres",
            Datastore::DocumentDb => "documentdb",
            Datastore::Redis => "redis",
        }
    }

    /// PostgreSQL is always built; the other two follow the spec.
    fn enabled(self, spec: &DeploymentSpec) -> bool {
        match self {
            Datastore::Postgres => true,
            Datastore::DocumentDb => spec.databases.documentdb,
            Datastore::Redis => spec.databases.redis,
        }
    }
}

/// What an action returns and, once ready, keeps for later layers. The kept shapes of a
/// store that is off or not emulated read back as "no endpoint" (`DatabasesOutput`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum DatastoreOutput {
    /// The store exists (or is on its way): its endpoint, empty fields until AWS assigns
    /// them, and its own status word (`available`, `creating`, ..., or `missing`).
    Built {
        #[serde(flatten)]
        endpoint: DatastoreEndpoint,
        enabled: bool,
        status: String,
    },
    /// The spec turns this store off: `{"enabled": false}`.
    Disabled { enabled: bool },
    /// The AWS endpoint cannot build this store (the local emulator and DocumentDB):
    /// nothing pretends it exists.
    NotEmulated {
        enabled: bool,
        emulated: bool,
        identifier: String,
        reason: String,
    },
    /// handle-alert's low-storage runbook.
    Raised(postgres::Raised),
    /// The data stores' alarms.
    Alarms(alarms::AlarmsReport),
}

impl DatastoreOutput {
    fn disabled() -> Self {
        DatastoreOutput::Disabled { enabled: false }
    }

    pub(crate) fn not_emulated(identifier: String, reason: String) -> Self {
        DatastoreOutput::NotEmulated {
            enabled: true,
            emulated: false,
            identifier,
            reason,
        }
    }
}

/// What one action of one store hands to its submodule.
pub(crate) struct Work<'a> {
    pub deps: &'a Deps,
    pub spec: &'a DeploymentSpec,
    pub names: &'a Names,
    pub layers: &'a Layers,
    pub log: &'a StepLog<'a>,
    /// `ensure`: create what is missing. `status`: only look.
    pub create: bool,
}

/// What an `ensure` needs from earlier layers, checked before any AWS call.
pub(crate) struct Inputs {
    /// ARN of the store's own KMS key (scope `rds`, `docdb` or `redis`).
    pub key_arn: String,
    /// ARN of the `app` key, for secrets Apiary writes itself.
    pub app_key_arn: String,
    pub subnet_ids: Vec<String>,
    pub security_group: String,
}

impl Work<'_> {
    pub(crate) fn inputs(&self, key_scope: &str) -> Result<Inputs> {
        let keys = self.layers.keys()?;
        let network = self.layers.network()?;
        let subnet_ids = network.private_subnet_ids();
        if subnet_ids.len() < 2 {
            return Err(Error::invalid_input(format!(
                "layers.network has {} private subnets; the databases need at least 2 in different AZs",
                subnet_ids.len()
            )));
        }
        let security_group = network.security_groups.databases.clone();
        if security_group.is_empty() {
            return Err(Error::invalid_input(
                "layers.network.security_groups.databases is empty",
            ));
        }
        Ok(Inputs {
            key_arn: keys.key(key_scope)?.arn.clone(),
            app_key_arn: keys.key("app")?.arn.clone(),
            subnet_ids,
            security_group,
        })
    }
}

/// What an action found or made for one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    /// Host empty until AWS assigns the endpoint; secret ARN empty until the credentials
    /// secret exists.
    pub endpoint: DatastoreEndpoint,
    /// The store's own status word (`available`, `creating`, ...), or `missing`.
    pub status: String,
    /// What the store still waits for (`RDS instance ... is creating`).
    pub pending: Vec<String>,
    /// Resources a `status` call looked for and did not find.
    pub missing: Vec<String>,
}

impl Report {
    /// A `status` that found no store: `missing` names what is absent.
    pub(crate) fn missing(
        identifier: String,
        port: u16,
        secret_arn: Option<String>,
        missing: Vec<String>,
    ) -> Self {
        Report {
            endpoint: DatastoreEndpoint {
                identifier,
                host: String::new(),
                port,
                secret_arn: secret_arn.unwrap_or_default(),
                app_secret_arn: None,
            },
            status: "missing".to_owned(),
            pending: Vec::new(),
            missing,
        }
    }

    pub(crate) fn done(self) -> Done<DatastoreOutput> {
        let output = DatastoreOutput::Built {
            endpoint: self.endpoint,
            enabled: true,
            status: self.status,
        };
        if self.missing.is_empty() {
            Done::pending(output, self.pending)
        } else {
            Done::missing(output, self.missing)
        }
    }
}

#[async_trait]
impl Step for Deps {
    const LAYER: Layer = Layer::Databases;
    type Action = Action;
    type Output = DatastoreOutput;

    async fn run(&self, step: &StepContext<'_, Action>) -> Result<Done<DatastoreOutput>> {
        let datastore = step.action.datastore();
        if !datastore.enabled(&step.spec) {
            return Ok(Done::ready(DatastoreOutput::disabled())
                .with_detail(format!("{} is off in the spec", datastore.as_str())));
        }
        let work = Work {
            deps: self,
            spec: &step.spec,
            names: &step.names,
            layers: &step.layers,
            log: &step.log,
            create: step::Action::mutates(step.action),
        };
        if step.action == Action::EnsureAlarms {
            let report = Box::pin(alarms::ensure(&work)).await?;
            let detail = report.detail();
            return Ok(Done::ready(DatastoreOutput::Alarms(report)).with_detail(detail));
        }
        if step.action == Action::RaiseStorage {
            let raised = Box::pin(postgres::raise_storage(&work)).await?;
            let detail = raised.detail.clone();
            return Ok(Done::ready(DatastoreOutput::Raised(raised)).with_detail(detail));
        }
        // Boxed: each store's future is deep enough to exceed the compiler's layout
        // query depth when nested inline in the Lambda runtime's future.
        Ok(match datastore {
            Datastore::Postgres => Box::pin(postgres::run(&work)).await?.done(),
            Datastore::DocumentDb => Box::pin(documentdb::run(&work)).await?,
            Datastore::Redis => Box::pin(redis::run(&work)).await?,
        })
    }

    fn state(&self) -> &dyn Recorder {
        self.recorder.as_ref()
    }
}

/// Runs one databases action for a Lambda event.
pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    step::run(deps, event).await
}

/// The layer tags plus the resource's role, as (key, value) pairs.
pub(crate) fn tag_pairs(names: &Names, role: &str) -> Vec<(String, String)> {
    let mut tags = names.tags(Layer::Databases);
    tags.push((TAG_ROLE.to_owned(), role.to_owned()));
    tags
}

#[cfg(test)]
mod tests;
