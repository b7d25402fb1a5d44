//! The upgrade workflow's record steps.
//!
//! - `upgrade-plan`: the record before and after the validated input. Refuses, before
//!   anything is changed, a Kubernetes version that skips a minor version or goes down,
//!   and (for a version that moves) a deployment without a backup of every data store
//!   newer than a day (`apiary_core::inputs::upgrade::backup_gate`, over the backup
//!   workflow's ledger in the state table).
//! - `upgrade-record`: writes the new image or version into the stored spec, computed
//!   again from the validated input and the record, never from a spec in the event. For
//!   an image it first keeps `{"from", "to", "execution_id"}` in the `upgrade.image`
//!   slot, which is where the rollback finds the previous image. Run again it finds the
//!   record written and writes nothing.
//! - `upgrade-revert`: after a failed rollout, puts back the image this execution
//!   replaced (read from the slot, never from the event). A run that changed no recorded
//!   image (a rerun after the record was written) has nothing to put back and says so.

use apiary_core::inputs::upgrade::{self, IMAGE_SLOT, Kind, Plan, UpgradeInput};
use apiary_core::step::{Done, StepContext};
use apiary_core::store::DeploymentRecord;
use apiary_core::{Error, Result};
use chrono::Utc;
use serde::Serialize;
use serde_json::{Value, json};

use crate::scale::{record_of, store_spec};
use crate::{ControlAction, ControlOutput, Deps};

const NOTHING: &str = "nothing to upgrade";

/// What the three steps return.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeOutput {
    pub kind: Kind,
    pub before: String,
    pub after: String,
    /// Whether the record changes (plan), changed (record) or was put back (revert).
    pub changes: bool,
    /// The backups the gate accepted (a version that moves).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub backups: Value,
    pub detail: String,
}

fn output(plan: &Plan, changes: bool, detail: String) -> UpgradeOutput {
    UpgradeOutput {
        kind: plan.kind,
        before: plan.before.clone(),
        after: plan.after.clone(),
        changes,
        backups: plan.backups.clone(),
        detail,
    }
}

fn what(kind: Kind) -> &'static str {
    match kind {
        Kind::Image => "ingestion image",
        Kind::KubernetesVersion => "Kubernetes version",
    }
}

/// The checked input every step reads, and the record it reads it over.
async fn input_and_record(
    deps: &Deps,
    step: &StepContext<'_, ControlAction>,
) -> Result<(UpgradeInput, DeploymentRecord)> {
    let input = apiary_core::inputs::from_options(upgrade::WORKFLOW, &step.options)?;
    let record = record_of(deps, &step.spec.name, NOTHING).await?;
    Ok((input, record))
}

fn done(out: UpgradeOutput) -> Done<ControlOutput> {
    let detail = out.detail.clone();
    Done::ready(ControlOutput::Upgraded(out)).with_detail(detail)
}

/// `upgrade-plan`: reads the record, the ledger and the input.
pub(crate) async fn plan(
    deps: &Deps,
    step: &StepContext<'_, ControlAction>,
) -> Result<Done<ControlOutput>> {
    let (input, record) = input_and_record(deps, step).await?;
    let deployment = &step.spec.name;
    let ledger = match input.kind() {
        Kind::KubernetesVersion => deps
            .store
            .layer_outputs(deployment)
            .await?
            .remove(apiary_core::outputs::BACKUP_LEDGER_SLOT),
        Kind::Image => None,
    };
    let plan = input.plan(&record.spec, ledger.as_ref(), Utc::now())?;
    let detail = if plan.changes {
        format!(
            "planned: {} {} -> {}",
            what(plan.kind),
            plan.before,
            plan.after
        )
    } else {
        format!(
            "planned: the record already has {} {}; the run converges the cluster to it",
            what(plan.kind),
            plan.after
        )
    };
    Ok(done(output(&plan, plan.changes, detail)))
}

/// `upgrade-record`: the new image or version into the stored spec.
pub(crate) async fn record(
    deps: &Deps,
    step: &StepContext<'_, ControlAction>,
) -> Result<Done<ControlOutput>> {
    let (input, record) = input_and_record(deps, step).await?;
    let deployment = &step.spec.name;
    let plan = input.plan_ungated(&record.spec)?;
    if !plan.changes {
        let detail = format!("already recorded: {} {}", what(plan.kind), plan.after);
        return Ok(done(output(&plan, false, detail)));
    }
    let mut spec = record.spec.clone();
    match plan.kind {
        Kind::Image => {
            // The previous image is kept before the record changes: the rollback reads
            // it from here, for this execution only.
            deps.store
                .put_output(
                    deployment,
                    IMAGE_SLOT,
                    &json!({"from": plan.before, "to": plan.after, "execution_id": step.execution_id}),
                )
                .await?;
            spec.workloads.ingestion_image = plan.after.clone();
        }
        Kind::KubernetesVersion => spec.cluster.version = plan.after.clone(),
    }
    store_spec(deps, &spec, record.status).await?;
    let detail = format!(
        "recorded: {} {} -> {}",
        what(plan.kind),
        plan.before,
        plan.after
    );
    Ok(done(output(&plan, true, detail)))
}

/// `upgrade-revert`: the image this execution replaced, back into the record.
pub(crate) async fn revert(
    deps: &Deps,
    step: &StepContext<'_, ControlAction>,
) -> Result<Done<ControlOutput>> {
    let (input, record) = input_and_record(deps, step).await?;
    let deployment = &step.spec.name;
    let recorded = record.spec.workloads.ingestion_image.clone();
    let unchanged = |detail: String| UpgradeOutput {
        kind: input.kind(),
        before: recorded.clone(),
        after: recorded.clone(),
        changes: false,
        backups: Value::Null,
        detail,
    };
    if input.kind() != Kind::Image {
        return Ok(done(unchanged(
            "nothing to roll back: a Kubernetes version cannot be put back".to_owned(),
        )));
    }
    let slot = deps
        .store
        .layer_outputs(deployment)
        .await?
        .remove(IMAGE_SLOT);
    let field = |name: &str| {
        slot.as_ref()
            .and_then(|s| s.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let (from, to, by) = (field("from"), field("to"), field("execution_id"));
    let (Some(from), Some(to)) = (from, to) else {
        return Ok(done(unchanged(format!(
            "nothing to roll back: no upgrade changed the recorded image ({recorded})"
        ))));
    };
    if by.as_deref() != Some(step.execution_id.as_str()) {
        return Ok(done(unchanged(format!(
            "nothing to roll back: this run changed no recorded image (it found {recorded} \
             already recorded); run upgrade with the previous image to go back"
        ))));
    }
    if recorded == from {
        // A retry after the write: already put back.
        return Ok(done(UpgradeOutput {
            changes: true,
            before: to,
            ..unchanged(format!("rolled back: the record already has {from} again"))
        }));
    }
    if recorded != to {
        return Err(Error::Conflict(format!(
            "the recorded image is {recorded}, neither the one this run rolled out ({to}) nor \
             the one it replaced ({from}): something else changed it, so it is left as is"
        )));
    }
    let mut spec = record.spec.clone();
    spec.workloads.ingestion_image = from.clone();
    store_spec(deps, &spec, record.status).await?;
    Ok(done(UpgradeOutput {
        kind: Kind::Image,
        before: to.clone(),
        after: from.clone(),
        changes: true,
        backups: Value::Null,
        detail: format!("rolled back the record: ingestion image {to} -> {from}"),
    }))
}
