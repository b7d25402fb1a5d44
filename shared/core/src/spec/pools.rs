//! `cluster.pools`: the node pools' limits as the scale-pools workflow last set them.
//!
//! The record is the source of truth for the pools: scale-pools writes its result here,
//! [`DeploymentSpec::sizing`](super::DeploymentSpec::sizing) applies it over the size
//! preset, and provision renders the ingestion NodePool and sizes the system node group
//! from it, so a later provision never lowers a scaled pool. A provision spec that leaves
//! `cluster.pools` out keeps the record's ([`carry_over`]); one that sets it differently
//! is refused ([`check_change`]) naming the field: scale-pools owns it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Problem, Sizing};

/// The workflow that owns `cluster.pools`.
pub const OWNER: &str = "scale-pools";

/// The most nodes one EKS managed node group may have: the "Nodes per managed node group"
/// quota, 450 in every region by default (Amazon EKS User Guide, "Amazon EKS service
/// quotas"). It is adjustable by a quota request; a system node group never needs more.
pub const MAX_NODEGROUP_NODES: i32 = 450;

/// The disruption budget of a frozen pool: no voluntary disruption at all.
pub const FROZEN_BUDGET: &str = "0";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolsSpec {
    /// The ingestion pods' Karpenter NodePool.
    #[serde(default, skip_serializing_if = "IngestionPool::is_empty")]
    pub ingestion: IngestionPool,
    /// The managed node group of the system workloads.
    #[serde(default, skip_serializing_if = "SystemPool::is_empty")]
    pub system: SystemPool,
}

/// The ingestion NodePool's limits and disruption budget. Unset: the size preset's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestionPool {
    /// vCPUs Karpenter may launch for the pool (`spec.limits.cpu`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    /// Memory Karpenter may launch for the pool, GiB (`spec.limits.memory`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_gib: Option<u32>,
    /// Nodes Karpenter may disrupt at once: a count (`"3"`) or a percentage (`"10%"`),
    /// as Karpenter's `spec.disruption.budgets[].nodes` takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption_budget: Option<String>,
    /// Frozen: limits 0 (no new nodes) and no voluntary disruption. `cpu` and
    /// `memory_gib` keep the limits the pool returns to when it is unfrozen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub frozen: bool,
}

/// The system node group's scaling configuration. Unset: the size preset's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemPool {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<i32>,
}

impl PoolsSpec {
    pub fn is_empty(&self) -> bool {
        self.ingestion.is_empty() && self.system.is_empty()
    }

    /// Applies the pools over the preset's sizing.
    pub fn apply(&self, sizing: &mut Sizing) {
        let ingestion = &self.ingestion;
        if let Some(cpu) = ingestion.cpu {
            sizing.karpenter_cpu_limit = cpu;
        }
        if let Some(memory) = ingestion.memory_gib {
            sizing.karpenter_memory_limit_gib = memory;
        }
        if ingestion.frozen {
            sizing.karpenter_cpu_limit = 0;
            sizing.karpenter_memory_limit_gib = 0;
        }
        let system = &self.system;
        if let Some(min) = system.min {
            sizing.nodes_min = min;
        }
        if let Some(max) = system.max {
            sizing.nodes_max = max;
        }
        if let Some(desired) = system.desired {
            sizing.nodes_desired = desired;
        }
        // A range moved by scale-pools without a desired size keeps the preset's inside it.
        sizing.nodes_desired = sizing
            .nodes_desired
            .clamp(sizing.nodes_min, sizing.nodes_max.max(sizing.nodes_min));
    }

    /// The ingestion NodePool's disruption budget (`nodes`): `default` unless set, `"0"`
    /// when frozen.
    pub fn disruption_budget<'a>(&'a self, default: &'a str) -> &'a str {
        if self.ingestion.frozen {
            FROZEN_BUDGET
        } else {
            self.ingestion
                .disruption_budget
                .as_deref()
                .unwrap_or(default)
        }
    }
}

impl IngestionPool {
    pub fn is_empty(&self) -> bool {
        *self == IngestionPool::default()
    }
}

impl SystemPool {
    pub fn is_empty(&self) -> bool {
        *self == SystemPool::default()
    }
}

/// Whether `text` is a disruption budget Karpenter accepts: the pattern of
/// `spec.disruption.budgets[].nodes` in the karpenter.sh/v1 NodePool CRD,
/// `^((100|[0-9]{1,2})%|[0-9]+)$` (a node count, or a percentage up to 100 %).
pub fn is_disruption_budget(text: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match text.strip_suffix('%') {
        Some(percent) => percent == "100" || (digits(percent) && percent.len() <= 2),
        None => digits(text),
    }
}

/// The problems of `pools` over the preset `preset`: limits above 0 unless frozen,
/// `min <= desired <= max`, `max` within EKS's managed node group quota, the budget as
/// Karpenter takes it.
pub fn check(pools: &PoolsSpec, preset: &Sizing) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut push = |path: &str, message: String| {
        problems.push(Problem {
            path: format!("cluster.pools.{path}"),
            message,
        })
    };
    let ingestion = &pools.ingestion;
    if !ingestion.frozen {
        for (field, value) in [("cpu", ingestion.cpu), ("memory_gib", ingestion.memory_gib)] {
            if value == Some(0) {
                push(
                    &format!("ingestion.{field}"),
                    "must be above 0: a limit of 0 launches no node; freeze the pool \
                     (scale-pools `freeze`) to stop it on purpose"
                        .to_owned(),
                );
            }
        }
    }
    if let Some(budget) = &ingestion.disruption_budget
        && !is_disruption_budget(budget)
    {
        push(
            "ingestion.disruption_budget",
            format!(
                "{budget:?} is not a Karpenter disruption budget: a node count (\"3\") or a \
                 percentage from 0% to 100% (\"10%\")"
            ),
        );
    }
    let system = &pools.system;
    for (field, value) in [
        ("min", system.min),
        ("max", system.max),
        ("desired", system.desired),
    ] {
        if let Some(n) = value
            && !(0..=MAX_NODEGROUP_NODES).contains(&n)
        {
            push(
                &format!("system.{field}"),
                format!(
                    "{n} is outside 0..={MAX_NODEGROUP_NODES} (EKS's nodes per managed node \
                     group quota)"
                ),
            );
        }
    }
    if system.max == Some(0) {
        push(
            "system.max",
            "must be above 0: the system workloads need a node".to_owned(),
        );
    }
    if !system.is_empty() {
        let min = system.min.unwrap_or(preset.nodes_min);
        let max = system.max.unwrap_or(preset.nodes_max);
        if min > max {
            let field = if system.min.is_some() { "min" } else { "max" };
            push(
                &format!("system.{field}"),
                format!("min {min} is above max {max}"),
            );
        }
        if let Some(desired) = system.desired
            && !(min..=max.max(min)).contains(&desired)
        {
            push(
                "system.desired",
                format!("{desired} is outside min..=max ({min}..={max})"),
            );
        }
    }
    problems
}

/// `new` with the record's pools when it sets none: a provision (a stack update, whose
/// parameters have no pools) keeps what scale-pools set.
pub fn carry_over(stored: &PoolsSpec, new: &mut PoolsSpec) {
    if new.is_empty() {
        *new = stored.clone();
    }
}

/// The pool fields of `new` that differ from the record's, each naming its path: only
/// scale-pools changes them.
pub fn check_change(stored: &PoolsSpec, new: &PoolsSpec) -> Vec<Problem> {
    let (a, b) = (
        serde_json::to_value(stored).unwrap_or_default(),
        serde_json::to_value(new).unwrap_or_default(),
    );
    let mut problems = Vec::new();
    for pool in ["ingestion", "system"] {
        let fields = |v: &serde_json::Value| {
            v.get(pool)
                .and_then(serde_json::Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let (was, now) = (fields(&a), fields(&b));
        let mut keys: Vec<&String> = was.keys().chain(now.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let (from, to) = (was.get(key), now.get(key));
            if from != to {
                let show = |v: Option<&serde_json::Value>| {
                    v.map(ToString::to_string)
                        .unwrap_or_else(|| "unset".to_owned())
                };
                problems.push(Problem {
                    path: format!("cluster.pools.{pool}.{key}"),
                    message: format!(
                        "cannot change from {} to {} in a provision: the {OWNER} workflow \
                         owns the pools and records them; run {OWNER}, or leave \
                         cluster.pools out to keep the recorded pools",
                        show(from),
                        show(to)
                    ),
                });
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SizePreset;
    use serde_json::json;

    fn pools(value: serde_json::Value) -> PoolsSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn budgets_follow_karpenters_pattern() {
        for ok in ["0", "3", "10%", "0%", "100%", "25"] {
            assert!(is_disruption_budget(ok), "{ok}");
        }
        for bad in ["", "%", "101%", "110%", "-1", "1.5", "10 %", "ten", "100%%"] {
            assert!(!is_disruption_budget(bad), "{bad}");
        }
    }

    #[test]
    fn the_pools_apply_over_the_preset() {
        let mut sizing = SizePreset::Small.sizing();
        pools(json!({"ingestion": {"cpu": 96}, "system": {"min": 4, "max": 12}}))
            .apply(&mut sizing);
        assert_eq!(sizing.karpenter_cpu_limit, 96);
        assert_eq!(
            sizing.karpenter_memory_limit_gib, 256,
            "unset: the preset's"
        );
        assert_eq!((sizing.nodes_min, sizing.nodes_max), (4, 12));
        assert_eq!(
            sizing.nodes_desired, 4,
            "the preset's 3 clamped into 4..=12"
        );

        let mut frozen = SizePreset::Small.sizing();
        let spec = pools(json!({"ingestion": {"cpu": 96, "frozen": true}}));
        spec.apply(&mut frozen);
        assert_eq!(
            (
                frozen.karpenter_cpu_limit,
                frozen.karpenter_memory_limit_gib
            ),
            (0, 0)
        );
        assert_eq!(spec.disruption_budget("10%"), "0");
        assert_eq!(PoolsSpec::default().disruption_budget("10%"), "10%");
    }

    #[test]
    fn bad_pools_are_refused_by_field() {
        let preset = SizePreset::Small.sizing();
        let problems = check(
            &pools(json!({
                "ingestion": {"cpu": 0, "disruption_budget": "110%"},
                "system": {"min": 5, "max": 500, "desired": 2}
            })),
            &preset,
        );
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "cluster.pools.ingestion.cpu",
                "cluster.pools.ingestion.disruption_budget",
                "cluster.pools.system.max",
                "cluster.pools.system.desired"
            ]
        );
        let inverted = check(&pools(json!({"system": {"min": 11}})), &preset);
        assert_eq!(inverted[0].path, "cluster.pools.system.min", "{inverted:?}");
        assert!(
            check(
                &pools(json!({"ingestion": {"cpu": 0, "memory_gib": 0, "frozen": true}})),
                &preset
            )
            .is_empty(),
            "a frozen pool's limits are 0"
        );
    }

    #[test]
    fn a_provision_keeps_or_must_match_the_recorded_pools() {
        let stored = pools(json!({"ingestion": {"cpu": 96}}));
        let mut omitted = PoolsSpec::default();
        carry_over(&stored, &mut omitted);
        assert_eq!(omitted, stored);
        assert!(check_change(&stored, &omitted).is_empty());
        let problems = check_change(&stored, &pools(json!({"ingestion": {"cpu": 64}})));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "cluster.pools.ingestion.cpu");
        assert!(problems[0].message.contains("scale-pools"), "{problems:?}");
    }
}
