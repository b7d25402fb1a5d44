//! The scale-pools workflow's record steps.
//!
//! - `scale-plan`: the pools before and after the validated input, over the stored
//!   record; refuses (`Apiary.InvalidInput`, naming the field) a limit beyond the size
//!   preset's ceiling without `allow_beyond_preset`, before anything is changed. A dry
//!   run ends with this plan.
//! - `scale-record`: writes the new pools into the stored spec, computed again from the
//!   validated input and the record, never from a spec in the event. Run again (a retry,
//!   or a new run after a crash), it finds the pools recorded and writes nothing. The
//!   record is written before the cluster is changed: should the run stop after it, a
//!   rerun or the next provision converges the cluster to the record.

use apiary_core::inputs::scale_pools::{self, Plan, ScalePoolsInput};
use apiary_core::step::{Done, StepContext};
use apiary_core::store::{DeploymentRecord, DeploymentStatus};
use apiary_core::{Error, Result};
use chrono::Utc;
use serde::Serialize;
use serde_json::Value;

use crate::{ControlAction, ControlOutput, Deps};

/// What `scale-plan` and `scale-record` return.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleOutput {
    pub pool: &'static str,
    /// The pool's effective limits before and after.
    pub before: Value,
    pub after: Value,
    pub dry_run: bool,
    /// Whether the record changes (plan) or changed (record).
    pub changes: bool,
    /// `cluster.pools` as recorded after the change.
    pub pools: Value,
}

fn output(plan: &Plan, dry_run: bool, changes: bool) -> ScaleOutput {
    ScaleOutput {
        pool: plan.pool.as_str(),
        before: plan.limits_before.clone(),
        after: plan.limits_after.clone(),
        dry_run,
        changes,
        pools: serde_json::to_value(&plan.after).unwrap_or_default(),
    }
}

fn journal_detail(plan: &Plan, verb: &str) -> String {
    format!(
        "{} pool {}: before {} after {}",
        verb,
        plan.pool.as_str(),
        plan.limits_before,
        plan.limits_after
    )
}

/// The deployment's record, refused when teardown removed (or is removing) its cluster:
/// there is nothing to change there (`what`: "no pools to scale"), and the record must
/// not say otherwise.
pub(crate) async fn record_of(
    deps: &Deps,
    deployment: &str,
    what: &str,
) -> Result<DeploymentRecord> {
    let record = deps
        .store
        .get_deployment(deployment)
        .await?
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "deployment {deployment} has no record in the state table"
            ))
        })?;
    if matches!(
        record.status,
        DeploymentStatus::Deleted | DeploymentStatus::TearingDown
    ) {
        return Err(Error::Conflict(format!(
            "deployment {deployment} is {}: it has {what}; provision it again first",
            record.status.as_str()
        )));
    }
    Ok(record)
}

/// Writes a day-2 workflow's change into the record: the spec as a provision would
/// store it, checked as a whole once more, with the deployment's status unchanged.
pub(crate) async fn store_spec(
    deps: &Deps,
    spec: &apiary_core::spec::DeploymentSpec,
    status: DeploymentStatus,
) -> Result<()> {
    let checked = apiary_core::spec::DeploymentSpec::parse(
        &serde_json::to_value(spec).map_err(|e| Error::fatal(e.to_string()))?,
    )
    .map_err(Error::InvalidSpec)?;
    deps.store
        .put_deployment(&checked, status, Utc::now())
        .await?;
    Ok(())
}

const NOTHING: &str = "no pools to scale";

/// `scale-plan`: reads the record and the input.
pub(crate) async fn plan(
    deps: &Deps,
    step: &StepContext<'_, ControlAction>,
) -> Result<Done<ControlOutput>> {
    let input: ScalePoolsInput =
        apiary_core::inputs::from_options(scale_pools::WORKFLOW, &step.options)?;
    let record = record_of(deps, &step.spec.name, NOTHING).await?;
    let plan = input.plan(&record.spec)?;
    let verb = if input.dry_run {
        "dry run, nothing changed:"
    } else {
        "planned:"
    };
    Ok(Done::ready(ControlOutput::Scaled(output(
        &plan,
        input.dry_run,
        plan.changes,
    )))
    .with_detail(journal_detail(&plan, verb)))
}

/// `scale-record`: the new pools into the stored spec.
pub(crate) async fn record(
    deps: &Deps,
    step: &StepContext<'_, ControlAction>,
) -> Result<Done<ControlOutput>> {
    let input: ScalePoolsInput =
        apiary_core::inputs::from_options(scale_pools::WORKFLOW, &step.options)?;
    if input.dry_run {
        return Err(Error::invalid_input(
            "scale-pools input field `dry_run`: a dry run records nothing; the workflow \
             ends after its plan",
        ));
    }
    let record = record_of(deps, &step.spec.name, NOTHING).await?;
    let plan = input.plan(&record.spec)?;
    if plan.changes {
        let mut spec = record.spec.clone();
        spec.cluster.pools = plan.after.clone();
        store_spec(deps, &spec, record.status).await?;
    }
    let verb = if plan.changes {
        "recorded"
    } else {
        "already recorded"
    };
    Ok(
        Done::ready(ControlOutput::Scaled(output(&plan, false, plan.changes)))
            .with_detail(journal_detail(&plan, verb)),
    )
}
