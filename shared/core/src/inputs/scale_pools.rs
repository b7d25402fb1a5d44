//! The scale-pools input: one pool and its new limits.
//!
//! - `{"pool": "ingestion", "cpu": 96, "memory_gib": 384, "disruption_budget": "5%"}`:
//!   the ingestion NodePool's Karpenter limits and disruption budget;
//! - `{"pool": "ingestion", "freeze": true}`: limits 0 and no voluntary disruption
//!   (`"freeze": false` unfreezes, back to the recorded limits);
//! - `{"pool": "system", "min": 3, "max": 12, "desired": 4}`: the system node group's
//!   scaling configuration;
//! - `"allow_beyond_preset": true` lets a limit exceed the size preset's ceiling;
//! - `"dry_run": true` reports the before and after and changes nothing.
//!
//! What needs no record is checked here, before the lock: fields of the other pool,
//! nothing to change, a budget Karpenter would refuse, a limit of 0 without `freeze`.
//! The preset's ceiling needs the stored spec: [`ScalePoolsInput::plan`] checks it in the
//! workflow's first step, before anything is changed.

use serde::{Deserialize, Serialize};

use crate::spec::pools::{self, IngestionPool, PoolsSpec, SystemPool};
use crate::spec::{DeploymentSpec, Sizing};
use crate::{Error, Result};

pub const WORKFLOW: &str = "scale-pools";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// The ingestion pods' Karpenter NodePool.
    Ingestion,
    /// The system workloads' EKS managed node group.
    System,
}

impl Pool {
    pub fn as_str(self) -> &'static str {
        match self {
            Pool::Ingestion => "ingestion",
            Pool::System => "system",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScalePoolsInput {
    pub pool: Pool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_gib: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption_budget: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<i32>,
    #[serde(default)]
    pub allow_beyond_preset: bool,
    #[serde(default)]
    pub dry_run: bool,
}

fn field_error(field: &str, message: impl std::fmt::Display) -> Error {
    Error::invalid_input(format!("{WORKFLOW} input field `{field}`: {message}"))
}

/// The pools before and after a scale-pools input, and the effective limits of both.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub pool: Pool,
    /// The recorded pools before the change.
    pub before: PoolsSpec,
    /// The pools to record.
    pub after: PoolsSpec,
    /// The pool's effective limits before and after (the preset's where unset).
    pub limits_before: serde_json::Value,
    pub limits_after: serde_json::Value,
    /// Whether the record changes at all (false: a rerun, or the same values again).
    pub changes: bool,
}

impl ScalePoolsInput {
    /// Checks what needs no record.
    pub fn check(self) -> Result<Self> {
        let foreign: &[(&str, bool)] = match self.pool {
            Pool::Ingestion => &[
                ("min", self.min.is_some()),
                ("max", self.max.is_some()),
                ("desired", self.desired.is_some()),
            ],
            Pool::System => &[
                ("cpu", self.cpu.is_some()),
                ("memory_gib", self.memory_gib.is_some()),
                ("disruption_budget", self.disruption_budget.is_some()),
                ("freeze", self.freeze.is_some()),
            ],
        };
        if let Some((field, _)) = foreign.iter().find(|(_, given)| *given) {
            let owner = match self.pool {
                Pool::Ingestion => "the system node group (pool `system`)",
                Pool::System => "the ingestion NodePool (pool `ingestion`)",
            };
            return Err(field_error(
                field,
                format!(
                    "does not apply to pool `{}`: it belongs to {owner}",
                    self.pool.as_str()
                ),
            ));
        }
        let changes_something = match self.pool {
            Pool::Ingestion => {
                self.cpu.is_some()
                    || self.memory_gib.is_some()
                    || self.disruption_budget.is_some()
                    || self.freeze.is_some()
            }
            Pool::System => self.min.is_some() || self.max.is_some() || self.desired.is_some(),
        };
        if !changes_something {
            let fields = match self.pool {
                Pool::Ingestion => "cpu, memory_gib, disruption_budget or freeze",
                Pool::System => "min, max or desired",
            };
            return Err(Error::invalid_input(format!(
                "{WORKFLOW} input: nothing to change for pool `{}`; give {fields}",
                self.pool.as_str()
            )));
        }
        if self.freeze == Some(true) {
            for (field, given) in [
                ("cpu", self.cpu.is_some()),
                ("memory_gib", self.memory_gib.is_some()),
                ("disruption_budget", self.disruption_budget.is_some()),
            ] {
                if given {
                    return Err(field_error(
                        field,
                        "cannot be set with `freeze: true`, which sets the limits to 0 and \
                         the disruption budget to no disruption",
                    ));
                }
            }
        }
        for (field, value) in [("cpu", self.cpu), ("memory_gib", self.memory_gib)] {
            if value == Some(0) {
                return Err(field_error(
                    field,
                    "must be above 0; to stop the pool launching nodes use `freeze: true`",
                ));
            }
        }
        if let Some(budget) = &self.disruption_budget
            && !pools::is_disruption_budget(budget)
        {
            return Err(field_error(
                "disruption_budget",
                format!(
                    "{budget:?} is not a Karpenter disruption budget: a node count (\"3\") \
                     or a percentage from 0% to 100% (\"10%\")"
                ),
            ));
        }
        for (field, value) in [
            ("min", self.min),
            ("max", self.max),
            ("desired", self.desired),
        ] {
            if let Some(n) = value
                && !(0..=pools::MAX_NODEGROUP_NODES).contains(&n)
            {
                return Err(field_error(
                    field,
                    format!(
                        "{n} is outside 0..={} (EKS's nodes per managed node group quota)",
                        pools::MAX_NODEGROUP_NODES
                    ),
                ));
            }
        }
        if self.max == Some(0) {
            return Err(field_error(
                "max",
                "must be above 0: the system workloads need a node",
            ));
        }
        Ok(self)
    }

    /// The pools after this input, over the record `spec`. Refuses, naming the field, a
    /// limit beyond the size preset's ceiling without `allow_beyond_preset`, and a result
    /// the spec's own validation refuses (e.g. `min` above the recorded `max`).
    pub fn plan(&self, spec: &DeploymentSpec) -> Result<Plan> {
        let before = spec.cluster.pools.clone();
        let preset = spec.size.sizing();
        let current = spec.sizing();
        let mut after = before.clone();
        match self.pool {
            Pool::Ingestion => {
                let pool = &mut after.ingestion;
                // The limits are recorded in full, so the record says what was set.
                pool.cpu = Some(self.cpu.or(pool.cpu).unwrap_or(preset.karpenter_cpu_limit));
                pool.memory_gib = Some(
                    self.memory_gib
                        .or(pool.memory_gib)
                        .unwrap_or(preset.karpenter_memory_limit_gib),
                );
                if let Some(budget) = &self.disruption_budget {
                    pool.disruption_budget = Some(budget.clone());
                }
                if let Some(freeze) = self.freeze {
                    pool.frozen = freeze;
                }
                if self.cpu.is_some() || self.memory_gib.is_some() {
                    // New limits for a frozen pool: it is meant to run again.
                    pool.frozen = false;
                }
            }
            Pool::System => {
                let min = self.min.unwrap_or(current.nodes_min);
                let max = self.max.unwrap_or(current.nodes_max);
                let desired = self
                    .desired
                    .unwrap_or_else(|| current.nodes_desired.clamp(min.min(max), max));
                after.system = SystemPool {
                    min: Some(min),
                    max: Some(max),
                    desired: Some(desired),
                };
            }
        }
        if !self.allow_beyond_preset {
            self.check_ceiling(&after, &preset)?;
        }
        let problems = pools::check(&after, &preset);
        if let Some(problem) = problems.first() {
            let field = problem
                .path
                .rsplit('.')
                .next()
                .unwrap_or(&problem.path)
                .to_owned();
            return Err(field_error(
                &field,
                format!("the result is not valid: {problem}"),
            ));
        }
        let mut sizing = preset;
        after.apply(&mut sizing);
        Ok(Plan {
            pool: self.pool,
            changes: after != before,
            limits_before: limits(self.pool, &current, &before),
            limits_after: limits(self.pool, &sizing, &after),
            before,
            after,
        })
    }

    /// The values this input sets, against the preset's ceiling (a value recorded
    /// earlier with `allow_beyond_preset` does not need it again for another change).
    fn check_ceiling(&self, after: &PoolsSpec, preset: &Sizing) -> Result<()> {
        let size = "the size preset";
        let over = |field: &str, value: u64, ceiling: u64| {
            field_error(
                field,
                format!(
                    "{value} is beyond {size}'s ceiling of {ceiling}; raise the size preset, \
                     or give `\"allow_beyond_preset\": true` to go beyond it on purpose"
                ),
            )
        };
        match self.pool {
            Pool::Ingestion => {
                let IngestionPool {
                    cpu, memory_gib, ..
                } = &after.ingestion;
                if let Some(cpu) = cpu.filter(|_| self.cpu.is_some())
                    && cpu > preset.karpenter_cpu_limit
                {
                    return Err(over(
                        "cpu",
                        u64::from(cpu),
                        u64::from(preset.karpenter_cpu_limit),
                    ));
                }
                if let Some(memory) = memory_gib.filter(|_| self.memory_gib.is_some())
                    && memory > preset.karpenter_memory_limit_gib
                {
                    return Err(over(
                        "memory_gib",
                        u64::from(memory),
                        u64::from(preset.karpenter_memory_limit_gib),
                    ));
                }
            }
            Pool::System => {
                let ceiling = preset.nodes_max;
                for (field, value) in [
                    ("max", after.system.max.filter(|_| self.max.is_some())),
                    (
                        "desired",
                        after.system.desired.filter(|_| self.desired.is_some()),
                    ),
                    ("min", after.system.min.filter(|_| self.min.is_some())),
                ] {
                    if let Some(n) = value
                        && n > ceiling
                    {
                        return Err(over(field, n as u64, ceiling as u64));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The pool's effective limits, as the journal and the plan show them.
fn limits(pool: Pool, sizing: &Sizing, pools: &PoolsSpec) -> serde_json::Value {
    match pool {
        Pool::Ingestion => serde_json::json!({
            "cpu": sizing.karpenter_cpu_limit,
            "memory_gib": sizing.karpenter_memory_limit_gib,
            "disruption_budget": pools.disruption_budget(DEFAULT_BUDGET),
            "frozen": pools.ingestion.frozen,
        }),
        Pool::System => serde_json::json!({
            "min": sizing.nodes_min,
            "max": sizing.nodes_max,
            "desired": sizing.nodes_desired,
        }),
    }
}

/// The ingestion NodePool's disruption budget when none is recorded (the workloads
/// function renders the same default).
pub const DEFAULT_BUDGET: &str = "10%";

/// Reads and normalizes a scale-pools input.
pub fn parse(input: serde_json::Value) -> Result<serde_json::Value> {
    let parsed: ScalePoolsInput = super::read(WORKFLOW, input)?;
    super::normalized(WORKFLOW, parsed.check()?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::spec::SizePreset;

    fn refused(input: serde_json::Value) -> String {
        parse(input.clone())
            .expect_err(&input.to_string())
            .to_string()
    }

    fn input(value: serde_json::Value) -> ScalePoolsInput {
        serde_json::from_value(parse(value).unwrap()).unwrap()
    }

    fn spec(pools: serde_json::Value) -> DeploymentSpec {
        DeploymentSpec::parse(&json!({
            "name": "acme", "dns": {"domain": "hh.example.com"}, "cluster": {"pools": pools}
        }))
        .unwrap()
    }

    #[test]
    fn a_valid_input_normalizes() {
        assert_eq!(
            parse(json!({"pool": "ingestion", "cpu": 32})).unwrap(),
            json!({"pool": "ingestion", "cpu": 32, "allow_beyond_preset": false, "dry_run": false})
        );
        assert!(parse(json!({"pool": "system", "max": 8, "dry_run": true})).is_ok());
        assert!(parse(json!({"pool": "ingestion", "freeze": true})).is_ok());
    }

    #[test]
    fn every_refusal_names_its_field() {
        for (input, field) in [
            (json!({"pool": "system", "cpu": 8}), "`cpu`"),
            (json!({"pool": "system", "memory_gib": 8}), "`memory_gib`"),
            (json!({"pool": "system", "freeze": true}), "`freeze`"),
            (
                json!({"pool": "system", "disruption_budget": "1"}),
                "`disruption_budget`",
            ),
            (json!({"pool": "ingestion", "min": 1}), "`min`"),
            (json!({"pool": "ingestion", "desired": 1}), "`desired`"),
            (json!({"pool": "ingestion", "cpu": 0}), "`cpu`"),
            (
                json!({"pool": "ingestion", "freeze": true, "cpu": 4}),
                "`cpu`",
            ),
            (
                json!({"pool": "ingestion", "disruption_budget": "110%"}),
                "`disruption_budget`",
            ),
            (json!({"pool": "system", "max": 451}), "`max`"),
            (json!({"pool": "system", "max": 0}), "`max`"),
            (json!({"pool": "system", "min": -1}), "`min`"),
            (json!({"pool": "gpu", "min": 1}), "`pool`"),
            (json!({"pool": "system", "maximum": 3}), "maximum"),
        ] {
            let err = refused(input.clone());
            assert!(err.contains(field), "{input}: {err}");
        }
        let err = refused(json!({"pool": "system"}));
        assert!(err.contains("nothing to change"), "{err}");
        let err = refused(json!({"pool": "ingestion", "dry_run": true}));
        assert!(err.contains("nothing to change"), "{err}");
        let err = refused(json!({"cpu": 4}));
        assert!(err.contains("pool"), "{err}");
    }

    #[test]
    fn beyond_the_preset_is_refused_unless_allowed() {
        let record = spec(json!({}));
        let err = input(json!({"pool": "ingestion", "cpu": 65}))
            .plan(&record)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`cpu`") && err.contains("ceiling of 64"),
            "{err}"
        );
        let err = input(json!({"pool": "system", "max": 11}))
            .plan(&record)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`max`"), "{err}");
        let plan = input(json!({"pool": "system", "max": 11, "allow_beyond_preset": true}))
            .plan(&record)
            .unwrap();
        assert_eq!(plan.after.system.max, Some(11));
        assert_eq!(plan.limits_after["max"], 11);
        assert!(
            input(json!({"pool": "ingestion", "memory_gib": 256}))
                .plan(&record)
                .is_ok(),
            "the ceiling itself is within the preset"
        );
        // Already beyond it (allowed before): another change needs no second allowance,
        // but raising it further does.
        let beyond = spec(json!({"ingestion": {"cpu": 96}}));
        assert!(
            input(json!({"pool": "ingestion", "disruption_budget": "5%"}))
                .plan(&beyond)
                .is_ok()
        );
        assert!(
            input(json!({"pool": "ingestion", "cpu": 128}))
                .plan(&beyond)
                .is_err()
        );
    }

    #[test]
    fn plans_start_from_the_record() {
        let record = spec(json!({"system": {"min": 3, "max": 8, "desired": 5}}));
        let plan = input(json!({"pool": "system", "min": 4}))
            .plan(&record)
            .unwrap();
        assert_eq!(
            plan.after.system,
            SystemPool {
                min: Some(4),
                max: Some(8),
                desired: Some(5)
            }
        );
        assert!(plan.changes);
        let err = input(json!({"pool": "system", "min": 9}))
            .plan(&record)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`min`"), "{err}");

        let frozen = input(json!({"pool": "ingestion", "freeze": true}))
            .plan(&spec(json!({})))
            .unwrap();
        assert_eq!(frozen.limits_after["cpu"], 0);
        assert_eq!(frozen.limits_after["disruption_budget"], "0");
        assert_eq!(
            frozen.after.ingestion.cpu,
            Some(SizePreset::Small.sizing().karpenter_cpu_limit),
            "the limits to return to are kept"
        );
        let record = spec(serde_json::to_value(&frozen.after).unwrap());
        let thawed = input(json!({"pool": "ingestion", "freeze": false}))
            .plan(&record)
            .unwrap();
        assert_eq!(thawed.limits_after["cpu"], 64);
        let same = input(json!({"pool": "ingestion", "freeze": false}))
            .plan(&spec(serde_json::to_value(&thawed.after).unwrap()))
            .unwrap();
        assert!(!same.changes, "a rerun changes nothing");
    }
}
