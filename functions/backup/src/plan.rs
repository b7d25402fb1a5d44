//! A run's plan: which stores it covers and the id every name it makes derives from.
//!
//! The first step of each workflow reads the validated input (`options.input`) and keeps
//! the plan in the state table (slot `<workflow>.plan`). The later steps, including the
//! poll loops, which carry no options, read it from there, and refuse a plan of another
//! execution: a step never acts on what an older run planned.

use apiary_core::inputs::backup::{BackupInput, StoreName};
use apiary_core::inputs::restore_test::RestoreTestInput;
use apiary_core::step::{Done, StepContext};
use apiary_core::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{Action, Deps};

pub const BACKUP: &str = "backup";
pub const RESTORE_TEST: &str = "restore-test";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub workflow: String,
    pub execution_id: String,
    /// 10 hex digits of a hash of the execution id: part of every name the run makes,
    /// so a retried step finds what an earlier attempt made.
    pub run: String,
    pub started_at: DateTime<Utc>,
    pub stores: Vec<StoreName>,
}

impl Plan {
    pub fn new(
        workflow: &str,
        execution_id: &str,
        stores: Vec<StoreName>,
        now: DateTime<Utc>,
    ) -> Self {
        Plan {
            workflow: workflow.to_owned(),
            execution_id: execution_id.to_owned(),
            run: run_id(execution_id),
            started_at: now,
            stores,
        }
    }
}

pub fn run_id(execution_id: &str) -> String {
    let digest = Sha256::digest(execution_id.as_bytes());
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

pub fn slot(workflow: &str) -> String {
    format!("{workflow}.plan")
}

pub(crate) async fn run(deps: &Deps, step: &StepContext<'_, Action>) -> Result<Done<Value>> {
    let workflow = step
        .options
        .get("workflow")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let stores = match workflow {
        BACKUP => apiary_core::inputs::from_options::<BackupInput>(BACKUP, &step.options)?.stores(),
        RESTORE_TEST => {
            apiary_core::inputs::from_options::<RestoreTestInput>(RESTORE_TEST, &step.options)?
                .stores()
        }
        other => {
            return Err(Error::invalid_input(format!(
                "step input field `options.workflow`: `{other}` is neither {BACKUP} nor {RESTORE_TEST}"
            )));
        }
    };
    let deployment = step.names.deployment();
    // The same execution keeps its first plan: its start time and run id name things.
    let plan = match stored(deps, deployment, workflow).await? {
        Some(plan) if plan.execution_id == step.execution_id && plan.stores == stores => plan,
        _ => Plan::new(workflow, &step.execution_id, stores, Utc::now()),
    };
    let value = serde_json::to_value(&plan).map_err(|e| Error::fatal(e.to_string()))?;
    deps.recorder
        .save_output(deployment, &slot(workflow), &value)
        .await?;
    Ok(Done::ready(json!({"plan": value})))
}

async fn stored(deps: &Deps, deployment: &str, workflow: &str) -> Result<Option<Plan>> {
    let outputs = deps.recorder.outputs(deployment).await?;
    outputs
        .get(&slot(workflow))
        .map(|value| {
            serde_json::from_value(value.clone())
                .map_err(|e| Error::fatal(format!("the stored {workflow} plan is unreadable: {e}")))
        })
        .transpose()
}

/// The plan of this execution; a step that runs without one was started out of order.
pub(crate) async fn load(
    deps: &Deps,
    step: &StepContext<'_, Action>,
    workflow: &str,
) -> Result<Plan> {
    match stored(deps, step.names.deployment(), workflow).await? {
        Some(plan) if plan.execution_id == step.execution_id => Ok(plan),
        Some(plan) => Err(Error::invalid_input(format!(
            "the stored {workflow} plan belongs to execution {}, not {}: the workflow's plan \
             step runs first",
            plan.execution_id, step.execution_id
        ))),
        None => Err(Error::invalid_input(format!(
            "deployment {} has no {workflow} plan: the workflow's plan step runs first",
            step.names.deployment()
        ))),
    }
}
