//! What a run that ended without its own unlock leaves behind, cleared: a timed-out
//! execution skips every Catch, and a stopped one runs nothing more, so neither releases
//! its lock nor marks its deployment failed. Step Functions reports both (and every
//! failure) to EventBridge, whose rule invokes this; the local runner calls [`cleanup`]
//! itself when a run ends so or is interrupted.

use std::fmt;
use std::str::FromStr;

use apiary_core::store::{DeploymentStatus, JournalEntry};
use apiary_core::{Error, Result};
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Deps;

/// The EventBridge source and detail type of a Step Functions execution's status change.
pub const SOURCE: &str = "aws.states";
pub const DETAIL_TYPE: &str = "Step Functions Execution Status Change";

/// How long the cleanup holds a dead run's lock while it marks the deployment: short, so
/// that a cleanup that dies midway blocks the next run for minutes only.
const CLEANUP_LEASE_MINUTES: i64 = 5;

/// How a run ended, of the ends that skip the workflow's own unlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RunEnd {
    #[serde(rename = "FAILED")]
    Failed,
    #[serde(rename = "TIMED_OUT")]
    TimedOut,
    #[serde(rename = "ABORTED")]
    Aborted,
}

impl RunEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            RunEnd::Failed => "FAILED",
            RunEnd::TimedOut => "TIMED_OUT",
            RunEnd::Aborted => "ABORTED",
        }
    }

    /// The journal's outcome for the end.
    fn outcome(self) -> &'static str {
        match self {
            RunEnd::Failed => "failed",
            RunEnd::TimedOut => "timed-out",
            RunEnd::Aborted => "aborted",
        }
    }
}

impl fmt::Display for RunEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunEnd {
    type Err = Error;

    fn from_str(status: &str) -> Result<Self> {
        [RunEnd::Failed, RunEnd::TimedOut, RunEnd::Aborted]
            .into_iter()
            .find(|end| end.as_str() == status)
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "execution status {status:?}: only FAILED, TIMED_OUT and ABORTED runs are \
                     cleaned up"
                ))
            })
    }
}

/// The `detail` of a "Step Functions Execution Status Change" event (the fields used).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionStatusChange {
    pub execution_arn: String,
    #[serde(default)]
    pub state_machine_arn: Option<String>,
    pub status: String,
    /// The execution's input as JSON text; left out (null) when the input and output
    /// together exceed what an event may carry (`inputDetails.included` is then false).
    #[serde(default)]
    pub input: Option<String>,
    #[serde(default)]
    pub input_details: Option<InputDetails>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct InputDetails {
    #[serde(default = "included_by_default")]
    pub included: bool,
}

fn included_by_default() -> bool {
    true
}

/// A cleanup event, checked: an execution that ended without its own unlock.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub execution_arn: String,
    pub end: RunEnd,
    /// The execution's input, when the event carried it.
    pub input: Option<Value>,
}

/// Reads an EventBridge event, naming what is not a Step Functions status change this
/// cleans up after.
pub fn parse_event(event: Value) -> Result<Ended> {
    let event: EventBridgeEvent<Value> = serde_json::from_value(event)
        .map_err(|e| Error::invalid_input(format!("EventBridge event: {e}")))?;
    if event.source != SOURCE || event.detail_type != DETAIL_TYPE {
        return Err(Error::invalid_input(format!(
            "unrecognised EventBridge event: source {:?}, detail-type {:?} (expected {SOURCE:?}, \
             {DETAIL_TYPE:?})",
            event.source, event.detail_type
        )));
    }
    let detail = parse_detail(event.detail)?;
    let end = detail.status.parse()?;
    let included = detail.input_details.as_ref().is_none_or(|d| d.included);
    let input = match (&detail.input, included) {
        (Some(text), true) => serde_json::from_str(text).ok(),
        _ => None,
    };
    Ok(Ended {
        execution_arn: detail.execution_arn,
        end,
        input,
    })
}

fn parse_detail(detail: Value) -> Result<ExecutionStatusChange> {
    serde_json::from_value(detail).map_err(|e| {
        Error::invalid_input(format!(
            "the detail of a Step Functions status change event: {e}"
        ))
    })
}

/// The deployment an execution worked on, from its input: `spec.name` (or the
/// parameters map's `spec.DeploymentName`, as the bootstrap stack starts provision), else
/// `deployment`.
pub fn deployment_of(input: &Value) -> Option<String> {
    let spec = &input["spec"];
    [&spec["name"], &spec["DeploymentName"], &input["deployment"]]
        .into_iter()
        .filter_map(Value::as_str)
        .find(|name| !name.is_empty())
        .map(str::to_owned)
}

/// The workflow an execution ran: its state machine's name after the last `-`
/// (`apiary-acme-provision` and, locally, `apiary-provision` are `provision`).
pub fn workflow_of(execution_arn: &str) -> String {
    let parts: Vec<&str> = execution_arn.split(':').collect();
    let machine = parts
        .iter()
        .position(|p| *p == "execution")
        .and_then(|i| parts.get(i + 1))
        .copied()
        .unwrap_or("workflow");
    machine
        .rsplit_once('-')
        .map_or(machine, |(_, workflow)| workflow)
        .to_owned()
}

/// What the cleanup found and did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cleaned {
    pub execution_arn: String,
    pub status: RunEnd,
    /// `None` when the execution's input names no deployment (it was rejected before
    /// it could lock one).
    pub deployment: Option<String>,
    /// Whether the ended run still held the lock, now released.
    pub released: bool,
    /// Whether its deployment was left PROVISIONING or TEARING_DOWN and is now FAILED.
    pub marked_failed: bool,
}

/// The EventBridge entry: the event's execution, cleaned up after.
pub async fn from_event(deps: &Deps, event: Value) -> Result<Value> {
    let ended = parse_event(event)?;
    let input = match ended.input {
        Some(input) => input,
        // Left out of the event (too large): Step Functions still has it.
        None => deps
            .runs
            .input(&ended.execution_arn)
            .await?
            .unwrap_or(Value::Null),
    };
    let cleaned = cleanup(deps, &ended.execution_arn, ended.end.as_str(), &input).await?;
    serde_json::to_value(&cleaned)
        .map_err(|e| Error::fatal(format!("cleanup output does not serialise: {e}")))
}

/// Clears what the run of `execution_arn`, which ended with `status` (`FAILED`,
/// `TIMED_OUT` or `ABORTED`, as Step Functions says), left: if it still holds its
/// deployment's lock, marks the deployment FAILED when the run left it PROVISIONING or
/// TEARING_DOWN, and releases the lock; then journals the end. A lock that another run
/// holds (it took over, or the run had released it and another took it) is left alone.
///
/// The local runner calls this when a run ends FAILED, TIMED_OUT or ABORTED (Ctrl-C).
pub async fn cleanup(
    deps: &Deps,
    execution_arn: &str,
    status: &str,
    input: &Value,
) -> Result<Cleaned> {
    let end: RunEnd = status.parse()?;
    let mut cleaned = Cleaned {
        execution_arn: execution_arn.to_owned(),
        status: end,
        deployment: deployment_of(input),
        released: false,
        marked_failed: false,
    };
    let Some(deployment) = cleaned.deployment.clone() else {
        tracing::info!(execution_arn, %end, "the execution's input names no deployment");
        return Ok(cleaned);
    };
    let store = &deps.store;
    let owner = deps.runs.owner(execution_arn);
    // The deployment is marked only while the cleanup holds the lock in its own name, so
    // that no new run sets its status in between. A short lease: a cleanup that dies
    // midway blocks for minutes only, and its retry finds the lock in its name and goes on.
    let cleaner = format!("cleanup:{owner}");
    let holder = store
        .current_lock(&deployment)
        .await?
        .map(|lock| lock.owner)
        .filter(|holder| *holder == owner || *holder == cleaner);
    if let Some(holder) = holder {
        let lease = Duration::minutes(CLEANUP_LEASE_MINUTES);
        // The ended run's lock passes to the cleanup in one write (never free in between,
        // so a crash here leaves it in the cleanup's name for its retry, not lost); a lock
        // already in the cleanup's name is an earlier attempt's, which died before the end.
        cleaned.released = holder == cleaner
            || match store
                .transfer_lock(&deployment, &owner, &cleaner, lease, Utc::now())
                .await
            {
                Ok(_) => true,
                // Changed hands since it was read: no longer the ended run's.
                Err(Error::Conflict(_)) => false,
                Err(err) => return Err(err),
            };
        if cleaned.released {
            let in_progress = store.get_deployment(&deployment).await?.is_some_and(|r| {
                matches!(
                    r.status,
                    DeploymentStatus::Provisioning | DeploymentStatus::TearingDown
                )
            });
            if in_progress {
                store
                    .set_status(&deployment, DeploymentStatus::Failed, Utc::now())
                    .await?;
                cleaned.marked_failed = true;
            }
            store.release_lock(&deployment, &cleaner).await?;
        }
    }
    // A FAILED run that caught its failure journaled and unlocked itself; every other end
    // has no entry of its own. A deployment with no record was never locked: nothing to file.
    let journal = cleaned.released || end != RunEnd::Failed;
    if journal && store.get_deployment(&deployment).await?.is_some() {
        let entry = JournalEntry {
            deployment: deployment.clone(),
            execution_id: execution_arn.to_owned(),
            step: workflow_of(execution_arn),
            action: "cleanup".to_owned(),
            outcome: end.outcome().to_owned(),
            resource_ids: Vec::new(),
            detail: Some(describe(&cleaned)),
            at: Utc::now(),
        };
        store.append_journal(&entry).await?;
    }
    tracing::info!(
        execution_arn,
        deployment = deployment.as_str(),
        %end,
        released = cleaned.released,
        marked_failed = cleaned.marked_failed,
        "cleaned up after the run"
    );
    Ok(cleaned)
}

fn describe(cleaned: &Cleaned) -> String {
    let mut text = format!(
        "{} ended {}",
        cleaned.execution_arn,
        cleaned.status.as_str()
    );
    match (cleaned.released, cleaned.marked_failed) {
        (true, true) => text.push_str("; released its lock and marked the deployment FAILED"),
        (true, false) => text.push_str("; released its lock"),
        _ => text.push_str("; it held no lock"),
    }
    text
}

#[cfg(test)]
mod tests;
