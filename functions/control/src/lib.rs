//! The control steps of every workflow: validate the spec, take and release the
//! deployment lock, and record the outcome (ready, or failed with its cause).

use apiary_core::spec::DeploymentSpec;
use apiary_core::store::{DeploymentStatus, JournalEntry, Store};
use apiary_core::{Error, Result};
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

/// How long a workflow holds the lock before another may take it over. Longer than any
/// provision run (EKS and RDS take under an hour), short enough that a crashed run does
/// not block the deployment for a day.
pub const LOCK_LEASE_HOURS: i64 = 3;

pub struct Deps {
    pub store: Store,
}

impl Deps {
    pub fn new(store: Store) -> Self {
        Deps { store }
    }
}

#[derive(Debug, Deserialize)]
struct ControlInput {
    action: String,
    spec: Value,
    #[serde(default)]
    execution_id: Option<String>,
    /// The workflow, for the journal (`provision`, `teardown`, ...).
    #[serde(default)]
    workflow: Option<String>,
    /// The Catch output of the failed step: `{"Error": ..., "Cause": ...}`.
    #[serde(default)]
    failure: Option<Failure>,
}

#[derive(Debug, Deserialize)]
struct Failure {
    #[serde(rename = "Error", default)]
    error: String,
    #[serde(rename = "Cause", default)]
    cause: String,
}

#[tracing::instrument(name = "deployment", skip_all, fields(action))]
pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    let input: ControlInput = serde_path_to_error::deserialize(event).map_err(|e| {
        Error::invalid_input(format!("step input field `{}`: {}", e.path(), e.inner()))
    })?;
    tracing::Span::current().record("action", input.action.as_str());
    // Validation comes first and touches nothing: a bad spec changes no state at all.
    let spec = DeploymentSpec::parse(&input.spec)?;
    let owner = input
        .execution_id
        .clone()
        .unwrap_or_else(|| "manual".to_owned());
    let workflow = input
        .workflow
        .clone()
        .unwrap_or_else(|| "provision".to_owned());
    let now = Utc::now();
    let store = &deps.store;
    let journal = |outcome: &str, detail: Option<String>| JournalEntry {
        deployment: spec.name.clone(),
        execution_id: owner.clone(),
        step: workflow.clone(),
        action: input.action.clone(),
        outcome: outcome.to_owned(),
        resource_ids: Vec::new(),
        detail,
        at: now,
    };
    match input.action.as_str() {
        "validate" => {
            let spec_json = serde_json::to_value(&spec).map_err(|e| Error::fatal(e.to_string()))?;
            Ok(spec_json)
        }
        "lock" => {
            let lock = store
                .acquire_lock(&spec.name, &owner, Duration::hours(LOCK_LEASE_HOURS), now)
                .await?;
            let status = if workflow == "teardown" {
                DeploymentStatus::TearingDown
            } else {
                DeploymentStatus::Provisioning
            };
            if workflow == "provision" || workflow == "teardown" {
                store.put_deployment(&spec, status, now).await?;
            }
            store.append_journal(&journal("locked", None)).await?;
            Ok(json!({"owner": lock.owner, "expires_at": lock.expires_at}))
        }
        "ready" => {
            store
                .set_status(&spec.name, DeploymentStatus::Ready, now)
                .await?;
            store.append_journal(&journal("succeeded", None)).await?;
            Ok(json!({"status": DeploymentStatus::Ready.as_str()}))
        }
        "fail" => {
            let failure = input.failure.as_ref();
            let detail = failure.map(|f| format!("{}: {}", f.error, f.cause));
            if store.get_deployment(&spec.name).await?.is_some() {
                store
                    .set_status(&spec.name, DeploymentStatus::Failed, now)
                    .await?;
            }
            store.append_journal(&journal("failed", detail)).await?;
            Ok(json!({"status": DeploymentStatus::Failed.as_str()}))
        }
        "unlock" => {
            store.release_lock(&spec.name, &owner).await?;
            Ok(json!({"released": true}))
        }
        other => Err(Error::invalid_input(format!(
            "deployment: unknown action {other:?}; expected validate, lock, ready, fail or unlock"
        ))),
    }
}
