//! `drift-repair`: the drift workflow found differences and its input asked to repair
//! them: start a provision with the recorded spec, queued behind any running workflow.
//! Provision converges every layer to the record; nothing here decides what to change.
//! The execution's name comes from the drift run's, so a retried step starts nothing
//! twice (Step Functions refuses a second execution of a name). The step kit journals
//! what was started under the drift workflow.

use apiary_core::Result;
use apiary_core::step::{Done, StepContext};
use serde::Serialize;
use serde_json::json;

use crate::{ControlAction, ControlOutput, Deps};

#[derive(Debug, Clone, Serialize)]
pub struct Repair {
    /// The provision execution started, if runs can be started from here.
    pub execution: Option<String>,
    pub detail: String,
}

/// A name Step Functions accepts (at most 80 of `[A-Za-z0-9_-]`), from the drift run's.
pub fn execution_name(drift_execution: &str) -> String {
    started_by("drift-repair-", drift_execution)
}

/// The name of an execution a step starts: `prefix` and the starting run's id, at most
/// 80 of `[A-Za-z0-9_-]`, the same on every retry of the step.
pub(crate) fn started_by(prefix: &str, execution: &str) -> String {
    let tail = execution.rsplit(':').next().unwrap_or(execution);
    let id: String = tail
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    let start = id.len().saturating_sub(80 - prefix.len());
    format!("{prefix}{}", &id[start..])
}

pub(crate) async fn repair(
    deps: &Deps,
    step: &StepContext<'_, ControlAction>,
) -> Result<Done<ControlOutput>> {
    let deployment = step.spec.name.as_str();
    let record = crate::scale::record_of(deps, deployment, "nothing to repair").await?;
    let name = execution_name(&step.execution_id);
    let input = json!({"spec": record.spec, "queue": true});
    let execution = deps.runs.start("provision", &name, &input).await?;
    let detail = match &execution {
        Some(execution) => format!("started provision {execution} to converge to the record"),
        None => "runs cannot be started from here: run provision (`apiary local provision`) to \
                 converge to the record"
            .to_owned(),
    };
    Ok(Done::ready(ControlOutput::Repaired(Repair {
        execution,
        detail: detail.clone(),
    }))
    .with_detail(detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provision_is_named_after_the_drift_run_within_step_functions_limits() {
        let arn = "arn:aws:states:us-west-2:123456789012:execution:apiary-demo-drift:0f8e2c1a-2b3c-4d5e-8f90-123456789abc";
        let name = execution_name(arn);
        assert_eq!(name, "drift-repair-0f8e2c1a-2b3c-4d5e-8f90-123456789abc");
        assert_eq!(
            execution_name(arn),
            name,
            "a retry names the same execution"
        );
        let long = format!("{}:{}", "arn:x", "a".repeat(200));
        assert!(execution_name(&long).len() <= 80);
    }
}
