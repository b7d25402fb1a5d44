//! The control steps of every workflow: validate a spec, take the deployment's lock (the
//! only step that stores a spec), mark the deployment ready or failed, release the lock;
//! and the cleanup after a run that ended without its own unlock (timed out, stopped).
//!
//! A dead run never blocks the next: the lock's owner is the execution ARN on AWS and
//! `local:<host>:<pid>:<start time>:<execution>` locally, and the lock step takes over a
//! held lock only when its holder is not running ([`Runs`]), so two live runs never
//! both hold it.

mod alerts;
pub mod certificate;
mod cleanup;
mod drift;
mod lock;
mod pool;
mod runs;
mod scale;
mod upgrade;

use std::collections::BTreeMap;
use std::sync::Arc;

use apiary_core::naming::Layer;
use apiary_core::spec::DeploymentSpec;
use apiary_core::step::{Action, Done, Recorder, Step, StepContext};
use apiary_core::store::{DeploymentStatus, JournalEntry, Resource, Store};
use apiary_core::{Error, Result};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use alerts::{ALERT_TOPIC_ENV, Notifier};
pub use cleanup::{
    Cleaned, DETAIL_TYPE, Ended, RunEnd, SOURCE, cleanup, deployment_of, parse_event, workflow_of,
};
pub use runs::{
    LocalRuns, PROVISION_STATE_MACHINE_ENV, Runs, StepFunctionsRuns, execution_name,
    is_execution_arn,
};

/// How long a lock lasts when its holder's liveness cannot be checked (a manual owner, a
/// local run on another host): at least the longest workflow timeout, so that a live
/// run's lock never runs out under it (a test checks it against every state machine).
/// A holder whose liveness can be checked is taken over as soon as it is not running,
/// however long its lease.
pub const LOCK_LEASE_HOURS: i64 = 36;

/// The workflow a step runs in when its options name none.
pub const DEFAULT_WORKFLOW: &str = "provision";

pub struct Deps {
    pub store: Store,
    pub runs: Arc<dyn Runs>,
    /// The stack's deployment (`APIARY_DEPLOYMENT`): what an event that names no
    /// deployment (ACM's certificate-issued event) is about.
    pub deployment: Option<String>,
    /// The alerts topic handle-alert publishes to (`APIARY_ALERT_TOPIC_ARN`).
    pub notifier: Option<Notifier>,
}

impl Deps {
    /// `runs`: [`StepFunctionsRuns`] in the Lambda, [`LocalRuns`] in local runs.
    pub fn new(store: Store, runs: Arc<dyn Runs>) -> Self {
        Deps {
            store,
            runs,
            deployment: None,
            notifier: None,
        }
    }

    /// Where handle-alert's notifications go.
    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        self.notifier = Some(notifier);
        self
    }

    /// The deployment of the stack this function belongs to.
    pub fn with_deployment(mut self, deployment: impl Into<String>) -> Self {
        self.deployment = Some(deployment.into());
        self
    }
}

/// The environment variable naming the stack's deployment.
pub const DEPLOYMENT_ENV: &str = "APIARY_DEPLOYMENT";

/// The control actions, as the state machines spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ControlAction {
    #[serde(rename = "validate")]
    Validate,
    /// A day-2 workflow's input, checked against the workflow's typed input
    /// (`apiary_core::inputs`) for a deployment that has a record.
    #[serde(rename = "validate-input")]
    ValidateInput,
    #[serde(rename = "lock")]
    Lock,
    #[serde(rename = "ready")]
    Ready,
    /// A day-2 workflow's success.
    #[serde(rename = "finish")]
    Finish,
    #[serde(rename = "fail")]
    Fail,
    #[serde(rename = "unlock")]
    Unlock,
    /// scale-pools: the pools before and after its input, over the record.
    #[serde(rename = "scale-plan")]
    ScalePlan,
    /// scale-pools: the new pools written into the stored spec.
    #[serde(rename = "scale-record")]
    ScaleRecord,
    /// upgrade: the record before and after its input; the version and backup gates.
    #[serde(rename = "upgrade-plan")]
    UpgradePlan,
    /// upgrade: the new image or version written into the stored spec.
    #[serde(rename = "upgrade-record")]
    UpgradeRecord,
    /// upgrade: after a failed rollout, the image this run replaced back in the record.
    #[serde(rename = "upgrade-revert")]
    UpgradeRevert,
    /// drift: start a provision with the recorded spec to converge what drifted.
    #[serde(rename = "drift-repair")]
    DriftRepair,
    /// handle-alert: read the event, claim it, record an alarm's change, pick a runbook.
    #[serde(rename = "alert-triage")]
    AlertTriage,
    /// handle-alert: tell a person what happened and what the runbook did.
    #[serde(rename = "alert-notify")]
    AlertNotify,
    /// handle-alert's runbook for the ingestion pool at its limit: start scale-pools.
    #[serde(rename = "alert-scale-pool")]
    AlertScalePool,
}

impl Action for ControlAction {
    fn as_str(self) -> &'static str {
        match self {
            ControlAction::Validate => "validate",
            ControlAction::ValidateInput => "validate-input",
            ControlAction::Lock => "lock",
            ControlAction::Ready => "ready",
            ControlAction::Finish => "finish",
            ControlAction::Fail => "fail",
            ControlAction::Unlock => "unlock",
            ControlAction::ScalePlan => "scale-plan",
            ControlAction::ScaleRecord => "scale-record",
            ControlAction::UpgradePlan => "upgrade-plan",
            ControlAction::UpgradeRecord => "upgrade-record",
            ControlAction::UpgradeRevert => "upgrade-revert",
            ControlAction::DriftRepair => "drift-repair",
            ControlAction::AlertTriage => "alert-triage",
            ControlAction::AlertNotify => "alert-notify",
            ControlAction::AlertScalePool => "alert-scale-pool",
        }
    }
    /// None changes a resource: they change the deployment's record and lock only.
    fn mutates(self) -> bool {
        false
    }
    /// A new spec comes in through validate (checked, never stored) and lock (stored).
    fn accepts_spec(self) -> bool {
        matches!(self, ControlAction::Validate | ControlAction::Lock)
    }
}

impl ControlAction {
    /// Whether the kit journals this action's outcome. Validate writes nothing at all (a
    /// rejected or merely checked spec or input leaves no trace in the table), and fail
    /// writes its own entry, which carries the failure's cause.
    fn kit_journals(self) -> bool {
        !matches!(
            self,
            ControlAction::Validate | ControlAction::ValidateInput | ControlAction::Fail
        )
    }
}

/// What each action returns (besides the kit's `ready` and `created`).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ControlOutput {
    Validated {
        deployment: String,
        /// The spec with its defaults filled in.
        spec: Box<DeploymentSpec>,
    },
    InputValidated {
        deployment: String,
        /// The workflow's input with its defaults filled in, as its steps read it.
        input: Value,
    },
    Locked {
        owner: String,
        expires_at: DateTime<Utc>,
        /// The run whose lock this one took over, because it was not running.
        #[serde(skip_serializing_if = "Option::is_none")]
        took_over_from: Option<String>,
    },
    Ready {
        status: DeploymentStatus,
        /// Every saved step output, all fields kept (a store's `emulated: false`, where
        /// the workloads went): the workflow's result.
        layers: Value,
    },
    Finished {
        status: DeploymentStatus,
    },
    Failed {
        status: DeploymentStatus,
    },
    Unlocked {
        released: bool,
    },
    /// scale-pools' plan or record.
    Scaled(scale::ScaleOutput),
    Upgraded(upgrade::UpgradeOutput),
    Repaired(drift::Repair),
    /// handle-alert's triage.
    Triaged(alerts::Triage),
    Notified(alerts::Notified),
    PoolRaised(pool::PoolRaise),
}

/// The failure a workflow's Catch hands to `fail`.
#[derive(Debug, Deserialize)]
struct Failure {
    #[serde(rename = "Error", default)]
    error: String,
    #[serde(rename = "Cause", default)]
    cause: String,
}

/// The function's entry: an EventBridge event (it has a `detail-type`) is a run that
/// ended, cleaned up after, or ACM's certificate-issued event (`certificate`); anything
/// else is a step of a workflow.
pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    // Boxed, as the kit boxes a step: each entry is one deep future.
    if event.get("detail-type").is_some() {
        if event.get("source").and_then(Value::as_str) == Some(certificate::SOURCE) {
            return Box::pin(certificate::from_event(deps, event)).await;
        }
        return Box::pin(cleanup::from_event(deps, event)).await;
    }
    // The kit parses the event and refuses a bad action; this only picks how to journal.
    let action = event
        .get("action")
        .and_then(|a| ControlAction::deserialize(a).ok());
    let step = Control {
        deps,
        state: StepState {
            store: &deps.store,
            journal: action.is_none_or(ControlAction::kit_journals),
        },
        spec_in_event: event.get("spec").is_some_and(|spec| !spec.is_null()),
    };
    Box::pin(apiary_core::step::run(&step, event)).await
}

/// One invocation's step: the kit sees neither whether the spec came in the event nor
/// which actions it should not journal, so both are decided here, from the event.
struct Control<'a> {
    deps: &'a Deps,
    state: StepState<'a>,
    spec_in_event: bool,
}

/// The state table as the kit sees it, with the kit's journal entry kept or left out.
struct StepState<'a> {
    store: &'a Store,
    journal: bool,
}

#[async_trait]
impl Recorder for StepState<'_> {
    async fn spec(&self, deployment: &str) -> Result<Option<DeploymentSpec>> {
        Recorder::spec(self.store, deployment).await
    }
    async fn outputs(&self, deployment: &str) -> Result<BTreeMap<String, Value>> {
        Recorder::outputs(self.store, deployment).await
    }
    async fn save_output(&self, deployment: &str, slot: &str, output: &Value) -> Result<()> {
        Recorder::save_output(self.store, deployment, slot, output).await
    }
    async fn resource(&self, deployment: &str, resource: &Resource) -> Result<()> {
        Recorder::resource(self.store, deployment, resource).await
    }
    async fn inventory(&self, deployment: &str) -> Result<Vec<Resource>> {
        Recorder::inventory(self.store, deployment).await
    }
    async fn journal(&self, entry: &JournalEntry) -> Result<()> {
        if self.journal {
            Recorder::journal(self.store, entry).await
        } else {
            Ok(())
        }
    }
}

/// A provision that started before a teardown of its deployment ended (it queued behind
/// the teardown's lock: a stack update, a drift repair, the certificate rule) would
/// re-create what the teardown removed, whether the teardown finished (DELETED) or
/// failed halfway (FAILED by the teardown), while the stack that asked for it may be
/// going away. Refused, naming both times; a provision started after the teardown
/// ended re-creates or repairs the deployment as asked. Without `started_at` (an older
/// state machine) nothing is checked.
async fn refuse_resurrection(
    store: &Store,
    record: &apiary_core::store::DeploymentRecord,
    options: &Map<String, Value>,
) -> Result<()> {
    let Some(given) = options.get("started_at").and_then(Value::as_str) else {
        return Ok(());
    };
    let Ok(started) = chrono::DateTime::parse_from_rfc3339(given) else {
        tracing::warn!(
            started_at = given,
            "not a timestamp: the run's start is not compared"
        );
        return Ok(());
    };
    if started >= record.updated_at {
        return Ok(());
    }
    let what = match record.status {
        DeploymentStatus::Deleted => "torn down",
        DeploymentStatus::Failed
            if last_failed_by(store, &record.name).await?.as_deref()
                == Some(apiary_core::inputs::teardown::WORKFLOW) =>
        {
            "partly torn down (the teardown failed)"
        }
        _ => return Ok(()),
    };
    Err(Error::invalid_input(format!(
        "deployment {} was {what} at {}, after this provision started at {} (it waited for \
         the teardown's lock): it would re-create what the teardown removed. Nothing was \
         changed; start provision again to re-create the deployment",
        record.name,
        record.updated_at.to_rfc3339(),
        started.to_rfc3339()
    )))
}

/// The workflow a step belongs to (`provision`, `teardown`, ...), from its options.
fn workflow(options: &Map<String, Value>) -> &str {
    options
        .get("workflow")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_WORKFLOW)
}

#[async_trait]
impl Step for Control<'_> {
    const LAYER: Layer = Layer::Control;
    type Action = ControlAction;
    type Output = ControlOutput;

    async fn run(&self, step: &StepContext<'_, ControlAction>) -> Result<Done<ControlOutput>> {
        if let Some(named) = step.options.get("workflow")
            && !named.is_string()
        {
            return Err(Error::invalid_input(format!(
                "step input field `options.workflow`: expected a workflow name, found {named}"
            )));
        }
        let output = match step.action {
            ControlAction::Validate => ControlOutput::Validated {
                deployment: step.spec.name.clone(),
                spec: Box::new(step.spec.clone()),
            },
            ControlAction::ValidateInput => {
                let Some(workflow) = step.options.get("workflow").and_then(Value::as_str) else {
                    return Err(Error::invalid_input(
                        "step input field `options.workflow` is missing: validate-input checks \
                         the input of the workflow it names",
                    ));
                };
                let given = step.options.get("input").cloned().unwrap_or(Value::Null);
                ControlOutput::InputValidated {
                    deployment: step.spec.name.clone(),
                    input: apiary_core::inputs::parse(workflow, &step.spec.name, &given)?,
                }
            }
            ControlAction::Lock => self.lock(step).await?,
            ControlAction::Ready => {
                self.require_holder(step).await?;
                return self.ready(step).await;
            }
            ControlAction::Finish => {
                self.require_holder(step).await?;
                self.finish(step).await?
            }
            ControlAction::Fail => {
                self.require_holder(step).await?;
                self.fail(step).await?
            }
            ControlAction::Unlock => {
                let owner = self.deps.runs.owner(&step.execution_id);
                self.deps
                    .store
                    .release_lock(&step.spec.name, &owner)
                    .await?;
                ControlOutput::Unlocked { released: true }
            }
            ControlAction::ScalePlan => return scale::plan(self.deps, step).await,
            ControlAction::ScaleRecord => {
                self.require_holder(step).await?;
                return scale::record(self.deps, step).await;
            }
            ControlAction::UpgradePlan => return upgrade::plan(self.deps, step).await,
            ControlAction::UpgradeRecord => {
                self.require_holder(step).await?;
                return upgrade::record(self.deps, step).await;
            }
            ControlAction::UpgradeRevert => {
                self.require_holder(step).await?;
                return upgrade::revert(self.deps, step).await;
            }
            ControlAction::DriftRepair => return drift::repair(self.deps, step).await,
            ControlAction::AlertTriage => return alerts::triage(self.deps, step).await,
            ControlAction::AlertNotify => return alerts::notify(self.deps, step).await,
            ControlAction::AlertScalePool => return pool::scale_pool(self.deps, step).await,
        };
        Ok(Done::ready(output))
    }

    fn state(&self) -> &dyn Recorder {
        &self.state
    }

    fn journal_step(&self, options: &Map<String, Value>) -> String {
        workflow(options).to_owned()
    }
}

impl Control<'_> {
    /// Takes the lock (taking it over from a run that is not running), then stores the
    /// event's spec: the only place a spec enters the table. Without one, the stored
    /// record is used and only its status follows the workflow.
    async fn lock(&self, step: &StepContext<'_, ControlAction>) -> Result<ControlOutput> {
        let deps = self.deps;
        let deployment = step.spec.name.as_str();
        let workflow = workflow(&step.options);
        let owner = deps.runs.owner(&step.execution_id);
        let now = Utc::now();
        let mut spec = step.spec.clone();
        if self.spec_in_event {
            // The record is the source of truth: a field that cannot change in place is
            // refused by name before the lock is taken or anything is changed. The pools
            // scale-pools recorded are kept when the new spec leaves them out (a stack
            // update's parameters have none), so a provision never lowers them.
            if let Some(record) = deps.store.get_deployment(deployment).await? {
                refuse_resurrection(&deps.store, &record, &step.options).await?;
                if record.status != DeploymentStatus::Deleted {
                    apiary_core::spec::pools::carry_over(
                        &record.spec.cluster.pools,
                        &mut spec.cluster.pools,
                    );
                    apiary_core::spec::check_change(&record.spec, &spec)?;
                }
            }
        }
        let taken = lock::take(
            &deps.store,
            deps.runs.as_ref(),
            deployment,
            &owner,
            Duration::hours(LOCK_LEASE_HOURS),
            now,
        )
        .await?;
        if let Some(previous) = &taken.took_over_from {
            tracing::warn!(previous, "took over the lock of a run that is not running");
            lock::journal_takeover(
                &deps.store,
                deployment,
                &step.execution_id,
                workflow,
                previous,
            )
            .await;
        }
        let status = match workflow {
            apiary_core::inputs::teardown::WORKFLOW => Some(DeploymentStatus::TearingDown),
            "provision" => Some(DeploymentStatus::Provisioning),
            _ => None,
        };
        if self.spec_in_event {
            let status = status.unwrap_or(DeploymentStatus::Provisioning);
            deps.store.put_deployment(&spec, status, now).await?;
        } else if let Some(status) = status {
            deps.store.set_status(deployment, status, now).await?;
        }
        Ok(ControlOutput::Locked {
            owner: taken.lock.owner,
            expires_at: taken.lock.expires_at,
            took_over_from: taken.took_over_from,
        })
    }

    /// Marks the deployment READY, or WAITING_FOR_DNS_VALIDATION while the dns layer's
    /// certificate is not ISSUED (its validation records are in that layer's output): the
    /// run still succeeds, every layer being built, but nothing claims an HTTPS endpoint
    /// that cannot serve. A workflow that built no dns layer has no certificate to wait for.
    async fn ready(&self, step: &StepContext<'_, ControlAction>) -> Result<Done<ControlOutput>> {
        let waiting = step
            .layers
            .dns
            .as_ref()
            .filter(|dns| !dns.certificate_issued());
        let status = serving_status(step);
        let deployment = step.spec.name.as_str();
        self.deps
            .store
            .set_status(deployment, status, Utc::now())
            .await?;
        let outputs = self.deps.store.layer_outputs(deployment).await?;
        let done = Done::ready(ControlOutput::Ready {
            status,
            layers: apiary_core::step::assemble_value(outputs)?,
        });
        Ok(match waiting {
            Some(dns) => done.with_detail(format!(
                "{}: certificate {} for {} is {}; its DNS validation records are in the dns layer's output",
                status.as_str(),
                dns.certificate_arn,
                dns.domain,
                dns.certificate_status.as_deref().unwrap_or("of unknown status")
            )),
            None => done,
        })
    }

    /// Only the run that holds the lock records an outcome. A run redriven after its
    /// lock was released (or taken over, its holder judged dead) would otherwise mark the
    /// deployment READY or FAILED over a newer run's work: it is refused, and its own
    /// failure path leaves the record alone for the same reason.
    async fn require_holder(&self, step: &StepContext<'_, ControlAction>) -> Result<()> {
        let deployment = step.spec.name.as_str();
        let owner = self.deps.runs.owner(&step.execution_id);
        let held = self.deps.store.current_lock(deployment).await?;
        match held {
            Some(lock) if lock.owner == owner => Ok(()),
            Some(lock) => Err(Error::Conflict(format!(
                "this run ({owner}) no longer holds the lock of deployment {deployment}: {} \
                 holds it, so this run's outcome is not recorded",
                lock.owner
            ))),
            None => Err(Error::Conflict(format!(
                "this run ({owner}) no longer holds the lock of deployment {deployment} (it \
                 was released, e.g. after the run was stopped and redriven), so its outcome \
                 is not recorded; start a new execution"
            ))),
        }
    }

    /// A day-2 workflow succeeded (the kit journals it). Only teardown changes the
    /// deployment's status (DELETED); backups, tests and rotations leave it as it was.
    async fn finish(&self, step: &StepContext<'_, ControlAction>) -> Result<ControlOutput> {
        let deployment = step.spec.name.as_str();
        let store = &self.deps.store;
        let workflow = workflow(&step.options);
        let status = if workflow == apiary_core::inputs::teardown::WORKFLOW {
            store
                .set_status(deployment, DeploymentStatus::Deleted, Utc::now())
                .await?;
            DeploymentStatus::Deleted
        } else {
            let current = current_status(store, deployment).await?;
            if MARKS_FAILED.contains(&workflow)
                && current == DeploymentStatus::Failed
                && last_failed_by(store, deployment).await?.as_deref() == Some(workflow)
            {
                // A workflow that marked the deployment FAILED clears it when it
                // succeeds, as provision's `ready` does; a failure another workflow left
                // (a provision that stopped halfway) stays until that one succeeds.
                let status = serving_status(step);
                store.set_status(deployment, status, Utc::now()).await?;
                status
            } else {
                current
            }
        };
        Ok(ControlOutput::Finished { status })
    }

    /// Journals the failure with its cause. A workflow that changes the data plane
    /// (provision, teardown, upgrade) marks the deployment FAILED; a failed backup,
    /// test or rotation leaves the data plane as it was, and its status with it.
    async fn fail(&self, step: &StepContext<'_, ControlAction>) -> Result<ControlOutput> {
        let failure = step
            .options
            .get("failure")
            .map(|value| {
                Failure::deserialize(value).map_err(|e| {
                    Error::invalid_input(format!("step input field `options.failure`: {e}"))
                })
            })
            .transpose()?;
        let store = &self.deps.store;
        let deployment = step.spec.name.as_str();
        let refused = workflow(&step.options) == apiary_core::inputs::upgrade::WORKFLOW
            && failure
                .as_ref()
                .is_some_and(|f| REFUSALS.contains(&f.error.as_str()));
        let status = if MARKS_FAILED.contains(&workflow(&step.options)) && !refused {
            // The kit loaded the spec from the record, so there is one to mark.
            store
                .set_status(deployment, DeploymentStatus::Failed, Utc::now())
                .await?;
            DeploymentStatus::Failed
        } else {
            current_status(store, deployment).await?
        };
        let entry = JournalEntry {
            deployment: deployment.to_owned(),
            execution_id: step.execution_id.clone(),
            step: workflow(&step.options).to_owned(),
            action: ControlAction::Fail.as_str().to_owned(),
            outcome: "failed".to_owned(),
            resource_ids: Vec::new(),
            detail: failure.map(|f| format!("{}: {}", f.error, f.cause)),
            at: Utc::now(),
        };
        store.append_journal(&entry).await?;
        Ok(ControlOutput::Failed { status })
    }
}

/// The workflows whose failure leaves the data plane in an unknown state: the deployment
/// is marked FAILED until a run of one of them succeeds.
pub const MARKS_FAILED: [&str; 3] = ["provision", "teardown", "upgrade"];

/// Errors the upgrade's steps raise only to refuse before changing anything (a version
/// that skips one, no fresh backup, upgrade insights in ERROR, a node group behind the
/// control plane): the data plane is as it was, and so is its status. A failed rollout
/// fails with its own error (the rollback keeps it), so it still marks FAILED.
const REFUSALS: [&str; 2] = ["Apiary.InvalidInput", "Apiary.Conflict"];

/// The workflow of the newest failure recorded in the journal.
async fn last_failed_by(store: &Store, deployment: &str) -> Result<Option<String>> {
    Ok(store
        .journal(deployment)
        .await?
        .into_iter()
        .filter(|e| e.action == ControlAction::Fail.as_str())
        .max_by_key(|e| e.at)
        .map(|e| e.step))
}

/// READY, or WAITING_FOR_DNS_VALIDATION while the dns layer's certificate is not ISSUED.
fn serving_status(step: &StepContext<'_, ControlAction>) -> DeploymentStatus {
    match &step.layers.dns {
        Some(dns) if !dns.certificate_issued() => DeploymentStatus::WaitingForDnsValidation,
        _ => DeploymentStatus::Ready,
    }
}

async fn current_status(store: &Store, deployment: &str) -> Result<DeploymentStatus> {
    let record = store.get_deployment(deployment).await?.ok_or_else(|| {
        Error::invalid_input(format!(
            "deployment {deployment} has no record in the state table"
        ))
    })?;
    Ok(record.status)
}

#[cfg(test)]
mod tests;
