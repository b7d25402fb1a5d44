//! `alert-scale-pool`: handle-alert's runbook for the ingestion pool at its limit (the
//! stack's `pool-ingestion-at-limit` alarm, fed by the workloads function's
//! `pool-usage`). It changes nothing itself: it starts scale-pools with the size
//! preset's limits, queued behind any running workflow, so the raise takes the lock,
//! is planned, recorded and applied like any scale-pools run (and journaled there).
//!
//! It refuses, and the person is told why, when only a person can decide: a frozen pool
//! is at its limit on purpose, and one already at the preset's ceiling needs a larger
//! size or scale-pools with `allow_beyond_preset`. The execution is named after the
//! handle-alert run, so a retried step starts nothing twice.

use apiary_core::inputs::scale_pools::Pool;
use apiary_core::spec::DeploymentSpec;
use apiary_core::step::{Done, StepContext};
use apiary_core::{Error, Result};
use serde::Serialize;
use serde_json::{Value, json};

use crate::{ControlAction, ControlOutput, Deps};

#[derive(Debug, Clone, Serialize)]
pub struct PoolRaise {
    /// The scale-pools input started (or that would be, where runs cannot start).
    pub input: Value,
    /// The scale-pools execution, when runs can be started from here.
    pub execution: Option<String>,
    pub detail: String,
}

/// The scale-pools input that raises the ingestion pool to its size preset's limits,
/// or why there is nothing the runbook may do.
pub fn raise(spec: &DeploymentSpec) -> std::result::Result<Value, String> {
    let pool = &spec.cluster.pools.ingestion;
    if pool.frozen {
        return Err(
            "the ingestion pool is frozen (scale-pools `freeze`): it is at its limit on \
             purpose, and only a person unfreezes it ({\"pool\": \"ingestion\", \"freeze\": false})"
                .to_owned(),
        );
    }
    let preset = spec.size.sizing();
    let now = spec.sizing();
    let mut input = json!({
        "deployment": spec.name,
        "queue": true,
        "pool": Pool::Ingestion.as_str(),
    });
    // Only what is below the preset: a limit set beyond it on purpose (scale-pools
    // with `allow_beyond_preset`) is neither lowered nor sent again, where scale-pools
    // would refuse it without that flag.
    if now.karpenter_cpu_limit < preset.karpenter_cpu_limit {
        input["cpu"] = json!(preset.karpenter_cpu_limit);
    }
    if now.karpenter_memory_limit_gib < preset.karpenter_memory_limit_gib {
        input["memory_gib"] = json!(preset.karpenter_memory_limit_gib);
    }
    if input.get("cpu").is_none() && input.get("memory_gib").is_none() {
        return Err(format!(
            "the ingestion pool's limits (cpu {}, memory {} GiB) already reach the {} size \
             preset's ceiling (cpu {}, memory {} GiB): a person decides between a larger \
             size and scale-pools with `allow_beyond_preset`",
            now.karpenter_cpu_limit,
            now.karpenter_memory_limit_gib,
            spec.size.as_str(),
            preset.karpenter_cpu_limit,
            preset.karpenter_memory_limit_gib
        ));
    }
    Ok(input)
}

/// A name Step Functions accepts (at most 80 of `[A-Za-z0-9_-]`), from the handle-alert
/// run's: a retry names the same execution.
fn execution_name(alert_execution: &str) -> String {
    crate::drift::started_by("pool-at-limit-", alert_execution)
}

pub(crate) async fn scale_pool(
    deps: &Deps,
    step: &StepContext<'_, ControlAction>,
) -> Result<Done<ControlOutput>> {
    let deployment = step.spec.name.as_str();
    let record = crate::scale::record_of(deps, deployment, "no pool to scale").await?;
    let input = raise(&record.spec).map_err(Error::Conflict)?;
    let name = execution_name(&step.execution_id);
    let execution = deps.runs.start("scale-pools", &name, &input).await?;
    let detail = match &execution {
        Some(execution) => format!(
            "started scale-pools {execution} to raise the ingestion pool to cpu {}, memory \
             {} GiB (the size preset's limits)",
            input["cpu"], input["memory_gib"]
        ),
        None => format!(
            "runs cannot be started from here: run scale-pools with {input} to raise the \
             ingestion pool to the size preset's limits"
        ),
    };
    Ok(Done::ready(ControlOutput::PoolRaised(PoolRaise {
        input,
        execution,
        detail: detail.clone(),
    }))
    .with_detail(detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pools: Value) -> DeploymentSpec {
        DeploymentSpec::parse(&json!({
            "name": "acme", "dns": {"domain": "hh.example.com"}, "cluster": {"pools": pools}
        }))
        .unwrap()
    }

    #[test]
    fn a_lowered_pool_is_raised_to_the_preset_and_no_further() {
        let preset = apiary_core::spec::SizePreset::Small.sizing();
        let input = raise(&spec(json!({"ingestion": {"cpu": 16}}))).unwrap();
        assert_eq!(input["pool"], "ingestion");
        assert_eq!(input["cpu"], json!(preset.karpenter_cpu_limit));
        assert!(input.get("memory_gib").is_none(), "memory is at the preset");
        assert_eq!(input["queue"], true, "it waits for a running workflow");
        // The input is one scale-pools accepts as it is.
        let parsed = apiary_core::inputs::parse("scale-pools", "acme", &input).unwrap();
        assert!(parsed.get("allow_beyond_preset").is_none_or(|v| v == false));
        // A limit set beyond the preset on purpose is not sent again (scale-pools would
        // refuse it without `allow_beyond_preset`); only the one below is raised.
        let mixed = spec(json!({"ingestion": {"cpu": 999, "memory_gib": 16}}));
        let input = raise(&mixed).unwrap();
        assert!(input.get("cpu").is_none(), "{input}");
        assert_eq!(
            input["memory_gib"],
            json!(preset.karpenter_memory_limit_gib)
        );
        let plan = apiary_core::inputs::read::<apiary_core::inputs::scale_pools::ScalePoolsInput>(
            "scale-pools",
            apiary_core::inputs::parse("scale-pools", "acme", &input).unwrap(),
        )
        .unwrap()
        .plan(&mixed);
        assert!(plan.is_ok(), "scale-pools plans it: {plan:?}");
    }

    #[test]
    fn a_frozen_pool_or_one_at_the_ceiling_is_left_to_a_person() {
        let frozen = raise(&spec(json!({"ingestion": {"frozen": true}}))).unwrap_err();
        assert!(frozen.contains("frozen"), "{frozen}");
        let at_ceiling = raise(&spec(json!({}))).unwrap_err();
        assert!(at_ceiling.contains("size preset's ceiling"), "{at_ceiling}");
        let beyond = raise(&spec(
            json!({"ingestion": {"cpu": 999, "memory_gib": 9999}}),
        ))
        .unwrap_err();
        assert!(beyond.contains("allow_beyond_preset"), "{beyond}");
    }

    #[test]
    fn a_retry_names_the_same_execution_within_step_functions_limits() {
        let arn = "arn:aws:states:us-west-2:123456789012:execution:apiary-acme-handle-alert:0f8e2c1a-2b3c";
        assert_eq!(execution_name(arn), "pool-at-limit-0f8e2c1a-2b3c");
        assert!(execution_name(&format!("x:{}", "a".repeat(200))).len() <= 80);
    }
}
