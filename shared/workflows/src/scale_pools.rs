//! The scale-pools workflow: new limits for the ingestion NodePool or the system node
//! group, recorded in the deployment's record and then applied.
//!
//! ```text
//! validate-input ({"pool": "ingestion"|"system", ...}) -> lock
//!   -> Plan (control scale-plan: before/after over the record; beyond the preset refused)
//!   -> DryRun? -- dry_run --> finish (the plan is the result; nothing changed)
//!   -> RecordPools (control scale-record: the new pools into the stored spec)
//!   -> ScaleNodePool (workloads: server-side apply of the NodePool rendered from the
//!      record, polled until it reads back with the new limits)
//!   -> ScaleNodegroup (cluster: UpdateNodegroupConfig, polled until ACTIVE with the new
//!      scaling configuration)
//!   -> finish -> unlock
//! ```
//!
//! The record is written before the cluster is changed: a run that stops after it leaves
//! record and cluster for a rerun (which finds the record written and applies) or the
//! next provision (which renders the pools from the record) to converge. Each apply step
//! skips the pool the input does not name.

use serde_json::{Value, json};

use crate::flow::{Flow, Poll, Task, keep_in_result};
use crate::function::Function;
use crate::locked::{Input, Locked, Outcome};

pub const NAME: &str = apiary_core::inputs::scale_pools::WORKFLOW;

/// A run started while another workflow holds the lock waits, when its input asks to
/// queue, up to about 13 hours: longer than a backup holds the lock while its snapshots
/// and DR copies poll to their bounds (about 12 hours). handle-alert's pool-at-limit
/// runbook queues its run: the at-limit alarm sends one event when it fires and none
/// while it stays in ALARM, so a run that gave up behind a backup would leave the pool at
/// its limit until a person stepped in. Minutes apart at first (most holds are short),
/// then hourly.
pub const LOCK_WAIT: &[u64] = &[
    60, 120, 300, 600, 1200, 1800, 3600, 3600, 3600, 3600, 3600, 3600, 3600, 3600, 3600, 3600,
    3600, 3600,
];

/// The Choice that ends a dry run after its plan.
pub const DRY_RUN_CHOICE: &str = "DryRun?";

/// Karpenter reads a NodePool's new limits at once; the apply and its read-back are one
/// call. Polled briefly in case the API server is slow to answer. Bound 5 minutes.
pub const NODE_POOL: Poll = Poll {
    name: "ScaleNodePool",
    function: Function::Workloads,
    ensure: "scale-nodepool",
    status: "scale-nodepool",
    what: "the ingestion NodePool reporting its new limits",
    schedule: &[10, 20, 30, 60, 180],
};

/// EKS applies a scaling configuration change in a minute or two (the node group is
/// UPDATING meanwhile), and refuses a new update while another is in progress: each poll
/// is the same idempotent step, which sends the update once the group is ACTIVE and
/// reports ready when it shows the new sizes. Bound 45 minutes.
pub const NODEGROUP: Poll = Poll {
    name: "ScaleNodegroup",
    function: Function::Cluster,
    ensure: "scale-nodegroup",
    status: "scale-nodegroup",
    what: "the system node group reporting its new scaling configuration",
    schedule: &[15, 30, 60, 120, 300, 600, 600, 975],
};

/// 30 hours: the longest path (the 13-hour lock wait, every Task using all its retries
/// with each attempt running to its timeout, both poll loops to their bound) is about
/// 25.5 hours, most of the rest the workloads function's 600 s timeout on every poll; see
/// the budget test. A normal run takes minutes. Under the 36-hour lock lease.
pub const TIMEOUT_SECONDS: u64 = 30 * 3600;

pub fn definition() -> Value {
    let input = || Some(json!({"input.$": "$.input"}));
    let body = Flow::new()
        .task(
            Task::step("Plan", Function::Control, "scale-plan")
                .comment("The pool's limits before and after the input, over the recorded spec; a limit beyond the size preset's ceiling without allow_beyond_preset is refused here, before any change")
                .options(json!({"input.$": "$.input", "workflow": NAME}))
                .keep(
                    json!({"pool.$": "$.pool", "before.$": "$.before", "after.$": "$.after", "dry_run.$": "$.dry_run", "changes.$": "$.changes"}),
                    "$.result.plan",
                ),
        )
        .task(
            Task::step("RecordPools", Function::Control, "scale-record")
                .comment("Write the new pools into the deployment's record (cluster.pools), from the checked input; a provision renders them from there and never lowers them")
                .options(json!({"input.$": "$.input", "workflow": NAME})),
        )
        .poll_with(NODE_POOL, input())
        .poll_with(NODEGROUP, input());
    let mut definition = Locked {
        name: NAME,
        comment: "Scale a node pool of the deployment: the ingestion NodePool's Karpenter limits and disruption budget, or the system node group's min/max/desired. Input {\"pool\": \"ingestion\", \"cpu\": 96, \"memory_gib\": 384, \"disruption_budget\": \"10%\"} | {\"pool\": \"ingestion\", \"freeze\": true} | {\"pool\": \"system\", \"min\": 3, \"max\": 12, \"desired\": 4}, with \"allow_beyond_preset\": true to exceed the size preset's ceiling and \"dry_run\": true to see the change without making it. Generated from shared/workflows/src/scale_pools.rs by `apiary workflows generate`: change the Rust, not this file".into(),
        timeout_seconds: TIMEOUT_SECONDS,
        lock_wait: LOCK_WAIT,
        body,
        input: Input::Deployment,
        outcome: Outcome::finish(),
    }
    .definition();
    end_dry_runs_after_the_plan(&mut definition);
    keep_in_result(
        &mut definition,
        NODE_POOL.name,
        "nodepool",
        json!({"ready.$": "$.ready", "skipped.$": "$.skipped", "verified.$": "$.verified", "detail.$": "$.detail"}),
    );
    keep_in_result(
        &mut definition,
        NODEGROUP.name,
        "nodegroup",
        json!({"ready.$": "$.ready", "scaling.$": "$.scaling"}),
    );
    definition
}

/// Puts the dry-run Choice between Plan and RecordPools: a dry run goes from its plan
/// straight to the frame's Record (finish), so no step after the plan runs.
fn end_dry_runs_after_the_plan(definition: &mut Value) {
    let states = definition["States"]
        .as_object_mut()
        .expect("a definition has states");
    let after_plan = states["Plan"]["Next"].clone();
    assert_eq!(
        after_plan, "RecordPools",
        "the plan is followed by the record"
    );
    let finish = Outcome::finish().state;
    states["Plan"]["Next"] = json!(DRY_RUN_CHOICE);
    states.insert(
        DRY_RUN_CHOICE.to_owned(),
        json!({
            "Type": "Choice",
            "Comment": "A dry run ends with its plan: nothing is recorded or applied",
            "Choices": [
                {"Variable": "$.input.dry_run", "BooleanEquals": true, "Next": finish}
            ],
            "Default": after_plan
        }),
    );
}

#[cfg(test)]
mod tests {
    /// handle-alert's pool runbook queues its run and gets no second event while the
    /// alarm stays in ALARM: the run must outwait a backup polling its snapshots and DR
    /// copies to their bounds, the longest the lock is held in the normal course.
    #[test]
    fn a_queued_run_outwaits_a_backup_at_its_poll_bounds() {
        let backup: u64 = [crate::backup::SNAPSHOTS, crate::backup::DR_COPIES]
            .iter()
            .map(|poll| poll.schedule.iter().sum::<u64>())
            .sum();
        let waits: u64 = super::LOCK_WAIT.iter().sum();
        assert!(
            waits > backup,
            "scale-pools waits {waits} s for the lock, a backup may hold it {backup} s"
        );
    }

    use super::*;

    #[test]
    fn a_dry_run_goes_from_the_plan_to_finish() {
        let definition = definition();
        let states = &definition["States"];
        assert_eq!(states["Plan"]["Next"], DRY_RUN_CHOICE);
        let choice = &states[DRY_RUN_CHOICE];
        assert_eq!(choice["Choices"][0]["Variable"], "$.input.dry_run");
        assert_eq!(choice["Choices"][0]["Next"], "Record");
        assert_eq!(states["Record"]["Parameters"]["action"], "finish");
        assert_eq!(choice["Default"], "RecordPools");
        assert_eq!(states["RecordPools"]["Next"], NODE_POOL.name);
    }

    #[test]
    fn the_apply_steps_report_in_the_result_and_their_loops_read_it() {
        let definition = definition();
        let states = &definition["States"];
        for (poll, key) in [(NODE_POOL.name, "nodepool"), (NODEGROUP.name, "nodegroup")] {
            let path = format!("$.result.{key}");
            assert_eq!(states[poll]["ResultPath"], json!(path));
            assert_eq!(states[&format!("{poll}Poll")]["ResultPath"], json!(path));
            assert_eq!(
                states[&format!("{poll}Ready?")]["Choices"][0]["Variable"],
                json!(format!("{path}.ready"))
            );
        }
    }
}
