//! The databases layer: RDS PostgreSQL, a DocumentDB cluster and an ElastiCache Redis
//! replication group, each in the private subnets behind the databases security group,
//! encrypted with its own customer-managed key, with credentials in Secrets Manager.
//!
//! The three stores are independent: the state machine runs them in parallel, each with
//! its own poll loop, so every action handles exactly one store. `ensure-*` creates what
//! is missing and returns at once; `status-*` only looks. Both report `ready: false`
//! until the store is available.

mod documentdb;
mod postgres;
mod redis;
mod secrets;

use std::sync::Arc;

use apiary_core::naming::{Layer, Names, TAG_ROLE};
use apiary_core::outputs::Layers;
use apiary_core::spec::DeploymentSpec;
use apiary_core::step::{Recorder, StepInput, StepLog};
use apiary_core::{Error, Result};
use serde_json::{Value, json};

pub use documentdb::{DOCDB_ENGINE_VERSION, DOCDB_PARAMETER_FAMILY, DOCDB_PORT};
pub use postgres::{POSTGRES_ENGINE_VERSION, POSTGRES_PARAMETER_FAMILY, POSTGRES_PORT};
pub use redis::{REDIS_ENGINE_VERSION, REDIS_PORT};

pub struct Deps {
    pub rds: aws_sdk_rds::Client,
    pub docdb: aws_sdk_docdb::Client,
    pub elasticache: aws_sdk_elasticache::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub recorder: Arc<dyn Recorder>,
}

impl Deps {
    pub fn new(config: &aws_config::SdkConfig, recorder: Arc<dyn Recorder>) -> Self {
        Deps {
            rds: apiary_core::client!(aws_sdk_rds, config),
            docdb: apiary_core::client!(aws_sdk_docdb, config),
            elasticache: apiary_core::client!(aws_sdk_elasticache, config),
            secrets: apiary_core::client!(aws_sdk_secretsmanager, config),
            recorder,
        }
    }
}

/// The data store an action is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Postgres,
    DocumentDb,
    Redis,
}

impl Store {
    fn as_str(self) -> &'static str {
        match self {
            Store::Postgres => "postgres",
            Store::DocumentDb => "documentdb",
            Store::Redis => "redis",
        }
    }
}

/// `ensure-<store>` or `status-<store>`.
fn parse_action(action: &str) -> Result<(Store, bool)> {
    let (verb, store) = action.split_once('-').unwrap_or((action, ""));
    let create = match verb {
        "ensure" => true,
        "status" => false,
        _ => return Err(unknown_action(action)),
    };
    let store = match store {
        "postgres" => Store::Postgres,
        "documentdb" => Store::DocumentDb,
        "redis" => Store::Redis,
        _ => return Err(unknown_action(action)),
    };
    Ok((store, create))
}

fn unknown_action(action: &str) -> Error {
    Error::invalid_input(format!(
        "databases: unknown action {action:?}; expected ensure-<store> or status-<store> \
         with <store> one of postgres, documentdb, redis"
    ))
}

/// What one action of one store hands to its submodule.
pub(crate) struct Step<'a> {
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

impl Step<'_> {
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
    pub identifier: String,
    /// Empty until AWS assigns the endpoint.
    pub host: String,
    pub port: u16,
    /// Empty until the credentials secret exists.
    pub secret_arn: String,
    /// The store's own status word (`available`, `creating`, ...), or `missing`.
    pub status: String,
    pub ready: bool,
    /// Resources a `status` call looked for and did not find.
    pub missing: Vec<String>,
}

pub(crate) enum Outcome {
    /// The spec turns this store off.
    Disabled,
    /// The AWS endpoint cannot build this store (the local emulator and DocumentDB):
    /// nothing pretends it exists.
    NotEmulated {
        identifier: String,
        reason: String,
    },
    Store(Report),
}

#[tracing::instrument(name = "databases", skip_all, fields(deployment, action))]
pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    let input = StepInput::from_event(event)?;
    let (store, create) = parse_action(&input.action)?;
    let spec = input.spec()?;
    tracing::Span::current()
        .record("deployment", spec.name.as_str())
        .record("action", input.action.as_str());
    let names = Names::new(&spec.name);
    let log = StepLog::new(deps.recorder.as_ref(), &spec.name, Layer::Databases, &input);
    let step = Step {
        deps,
        spec: &spec,
        names: &names,
        layers: &input.layers,
        log: &log,
        create,
    };
    let enabled = match store {
        Store::Postgres => true,
        Store::DocumentDb => spec.databases.documentdb,
        Store::Redis => spec.databases.redis,
    };
    let outcome = if !enabled {
        Outcome::Disabled
    } else {
        // Boxed: each store's future is deep enough to exceed the compiler's layout
        // query depth when nested inline in the Lambda runtime's future.
        match store {
            Store::Postgres => Outcome::Store(Box::pin(postgres::run(&step)).await?),
            Store::DocumentDb => Box::pin(documentdb::run(&step)).await?,
            Store::Redis => Outcome::Store(Box::pin(redis::run(&step)).await?),
        }
    };

    let (word, detail) = match &outcome {
        Outcome::Disabled => (
            "disabled",
            Some(format!("{} is off in the spec", store.as_str())),
        ),
        Outcome::NotEmulated { reason, .. } => ("not-emulated", Some(reason.clone())),
        Outcome::Store(report) => {
            let word = if create {
                log.ensure_outcome()
            } else if report.ready {
                "ready"
            } else if !report.missing.is_empty() {
                "missing"
            } else {
                "not-ready"
            };
            let detail = (!report.missing.is_empty())
                .then(|| format!("missing: {}", report.missing.join(", ")))
                .or_else(|| (!report.ready).then(|| format!("status {}", report.status)));
            (word, detail)
        }
    };
    log.finish(word, detail).await?;
    Ok(output(outcome, log.created_ids()))
}

/// The action's result: the store's `DatastoreEndpoint` fields plus `ready`, or
/// `{"ready": true, "enabled": false}` for a store the spec turns off.
fn output(outcome: Outcome, created: Vec<String>) -> Value {
    match outcome {
        Outcome::Disabled => json!({"ready": true, "enabled": false}),
        Outcome::NotEmulated { identifier, reason } => json!({
            "ready": true,
            "enabled": true,
            "emulated": false,
            "identifier": identifier,
            "reason": reason,
            "created": created,
        }),
        Outcome::Store(report) => {
            let mut value = json!({
                "identifier": report.identifier,
                "host": report.host,
                "port": report.port,
                "secret_arn": report.secret_arn,
                "ready": report.ready,
                "enabled": true,
                "status": report.status,
                "created": created,
            });
            if !report.missing.is_empty() {
                value["missing"] = json!(report.missing);
            }
            value
        }
    }
}

/// The layer tags plus the resource's role, as (key, value) pairs.
pub(crate) fn tag_pairs(names: &Names, role: &str) -> Vec<(String, String)> {
    let mut tags = names.tags(Layer::Databases);
    tags.push((TAG_ROLE.to_owned(), role.to_owned()));
    tags
}

#[cfg(test)]
mod tests;
