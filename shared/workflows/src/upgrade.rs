//! The upgrade workflow: the ingestion image, or the Kubernetes version one minor step,
//! moved forward and written into the deployment's record.
//!
//! ```text
//! validate-input ({"image": ...} | {"kubernetes_version": "1.x"}) -> lock
//!   -> Plan (control upgrade-plan: before/after over the record; a skipped or lower
//!      version refused; a version needs a backup of every store newer than a day)
//!   -> Kind?
//!      image:   RecordImage (control upgrade-record: the image into the record, the one
//!               it replaces kept) -> RollImage (workloads: apply from the record, polled
//!               until rolled out and serving)
//!                 on failure -> RevertImage (control upgrade-revert: the previous image
//!                 back in the record) -> Reverted? -> RollBack (workloads: apply,
//!                 polled) -> the failure path, failing with the rollout's cause and
//!                 what the rollback did
//!      version: Insights (cluster: EKS upgrade insights in ERROR refuse)
//!               -> ControlPlane (cluster: UpdateClusterVersion, polled)
//!               -> RecordVersion (control upgrade-record: the version into the record)
//!               -> Nodegroup (cluster: UpdateNodegroupVersion, polled)
//!               -> Addons (cluster: add-ons to versions compatible with it, polled)
//!   -> finish -> unlock
//! ```
//!
//! Each function step also skips the kind of upgrade its input does not ask for, should
//! it be invoked outside this order. The image is recorded
//! before the roll (the rollback puts the previous one back); the version after the
//! control plane moved, since that cannot be undone, and before the node group and the
//! add-ons follow it. A run that stops is finished by running it again with the same
//! input: the plan finds the record written and the steps converge to it.

use serde_json::{Value, json};

use crate::flow::{FAILURE, FAILURE_PATH, Flow, Poll, Task, keep_in_result};
use crate::function::Function;
use crate::locked::{Input, Locked, Outcome};

pub const NAME: &str = apiary_core::inputs::upgrade::WORKFLOW;

/// A run started while another workflow holds the lock waits up to about 8 minutes when
/// its input asks to queue.
pub const LOCK_WAIT: &[u64] = &[60, 120, 300];

/// EKS control-plane upgrades took 20-25 minutes historically, 8-15 recently, and
/// occasionally about an hour. Bound 2 hours.
pub const CONTROL_PLANE: Poll = Poll {
    name: "ControlPlane",
    function: Function::Cluster,
    ensure: "upgrade-control-plane",
    status: "upgrade-control-plane",
    what: "the EKS control plane at the new Kubernetes version",
    schedule: &[
        60, 120, 180, 300, 300, 600, 600, 600, 900, 900, 900, 900, 840,
    ],
};

/// The ingestion rollout of the new image and healthy targets behind the load balancer:
/// provision's bound for the same wait.
pub const ROLL_IMAGE: Poll = Poll {
    name: "RollImage",
    function: Function::Workloads,
    ensure: "upgrade-image",
    status: "upgrade-image-status",
    what: "the ingestion rollout of the new image",
    schedule: crate::provision::WORKLOADS.schedule,
};

/// The rollout back to the previous image.
pub const ROLL_BACK: Poll = Poll {
    name: "RollBack",
    function: Function::Workloads,
    ensure: "rollback-image",
    status: "rollback-image-status",
    what: "the ingestion rollout back to the previous image",
    schedule: crate::provision::WORKLOADS.schedule,
};

/// A managed node group replaces one node at a time, about 5 minutes each: the largest
/// preset's system group (50 to 200 nodes) can take most of a day. Bound 9.7 hours: a run
/// that reaches it fails with `Apiary.Timeout` while EKS goes on replacing nodes, and a
/// rerun with the same input waits for the update it finds in progress.
pub const NODEGROUP: Poll = Poll {
    name: "Nodegroup",
    function: Function::Cluster,
    ensure: "upgrade-nodegroup",
    status: "upgrade-nodegroup",
    what: "the system node group at the new Kubernetes version",
    schedule: &[
        300, 900, 1800, 3600, 3600, 3600, 3600, 3600, 3600, 3600, 3600, 3000,
    ],
};

/// An add-on update takes under a minute once nodes run it. Bound 30 minutes.
pub const ADDONS: Poll = Poll {
    name: "Addons",
    function: Function::Cluster,
    ensure: "upgrade-addons",
    status: "upgrade-addons",
    what: "the cluster's add-ons at versions for the new Kubernetes version",
    schedule: &[30, 60, 120, 300, 600, 690],
};

/// The execution's bound: 36 hours, the lock lease. The longest path (the lock wait, every
/// Task using all its retries with each attempt running to its timeout, the version
/// path's three loops to their bounds) is about 31 hours, most of it the cluster
/// function's 300 s timeout on every poll; see the budget test. A normal version upgrade
/// takes under an hour plus about 5 minutes per system node; an image, minutes.
pub const TIMEOUT_SECONDS: u64 = 36 * 3600;

/// Where the revert step keeps what it did, beside the rollout's failure at `$.failure`.
const ROLLBACK: &str = "$.rollback";
/// Where a failed rollback keeps its own failure.
const ROLLBACK_FAILURE: &str = "$.rollback_failure";
/// What a failure without an error or a cause reads as.
const FAILURE_DEFAULT: &str = "$.failure_default";
/// The rollout's failure over those defaults.
const ROLLOUT: &str = "$.rollout";
/// The first state after a failed rollout.
const ROLLOUT_FAILED: &str = "RolloutFailed";

pub fn definition() -> Value {
    let input = || Some(json!({"input.$": "$.input"}));
    let options = || json!({"input.$": "$.input", "workflow": NAME});
    let record = |name: &str, comment: &str| {
        Task::step(name, Function::Control, "upgrade-record")
            .comment(comment)
            .options(options())
    };
    // The Kubernetes version path; the image path is a branch after the plan.
    let body = Flow::new()
        .task(
            Task::step("Plan", Function::Control, "upgrade-plan")
                .comment("The record before and after the input; a Kubernetes version that skips a minor version or goes down, or one without a backup of every data store newer than a day, is refused here, before any change")
                .options(options())
                .keep(
                    json!({"kind.$": "$.kind", "before.$": "$.before", "after.$": "$.after", "changes.$": "$.changes"}),
                    "$.result.plan",
                ),
        )
        .task(
            Task::step("Insights", Function::Cluster, "upgrade-insights")
                .comment("EKS's upgrade insights for the target version: any in ERROR refuses the upgrade before the control plane moves")
                .options(json!({"input.$": "$.input"})),
        )
        .poll_with(CONTROL_PLANE, input())
        .task(record(
            "RecordVersion",
            "The control plane runs the new version, which cannot be undone: write it into the deployment's record before the node group and the add-ons follow it",
        ))
        .poll_with(NODEGROUP, input())
        .poll_with(ADDONS, input());
    let image = Flow::new()
        .task(record(
            "RecordImage",
            "Write the new image into the deployment's record (the image it replaces is kept for the rollback), then roll the pods to it",
        ))
        .poll_with(ROLL_IMAGE, input());
    let outcome = Outcome::finish();
    let mut definition = Locked {
        name: NAME,
        comment: "Upgrade the deployment: the ingestion pods to a new pinned image (rolled back automatically when the rollout fails), or Kubernetes one minor version up (control plane, then the system node group and the add-ons; EKS Auto Mode rolls its own nodes). Input {\"image\": \"public.ecr.aws/honeyhive/ingestion:1.1.0\"} | {\"kubernetes_version\": \"1.34\"}. The result is written into the deployment's record. Generated from shared/workflows/src/upgrade.rs by `apiary workflows generate`: change the Rust, not this file".into(),
        timeout_seconds: TIMEOUT_SECONDS,
        lock_wait: LOCK_WAIT,
        body,
        input: Input::Deployment,
        outcome,
    }
    .definition();
    add_branch(&mut definition, image, outcome.state);
    for (poll, key) in [
        (CONTROL_PLANE.name, "control_plane"),
        (NODEGROUP.name, "nodegroup"),
        (ADDONS.name, "addons"),
    ] {
        keep_in_result(
            &mut definition,
            poll,
            key,
            json!({"ready.$": "$.ready", "upgrade.$": "$.upgrade"}),
        );
    }
    keep_in_result(
        &mut definition,
        ROLL_IMAGE.name,
        "image",
        json!({"ready.$": "$.ready", "detail.$": "$.detail"}),
    );
    roll_back_failed_rollouts(&mut definition);
    definition
}

/// The Choice after the plan: an image upgrade takes the `image` branch (record, roll),
/// which joins the frame at `join`; a version upgrade goes on to the insights.
fn add_branch(definition: &mut Value, image: Flow, join: &str) {
    let states = definition["States"]
        .as_object_mut()
        .expect("a definition has states");
    let counters: Vec<String> = image.counters().to_vec();
    let (start, added) = image.finish(join);
    let after_plan = states["Plan"]["Next"].clone();
    assert_eq!(after_plan, "Insights", "the version path follows the plan");
    states["Plan"]["Next"] = json!(KIND_CHOICE);
    states.insert(
        KIND_CHOICE.to_owned(),
        json!({
            "Type": "Choice",
            "Comment": "An image rolls the pods; a Kubernetes version moves the control plane, the node group and the add-ons",
            "Choices": [
                {"Variable": "$.result.plan.kind", "StringEquals": "image", "Next": start}
            ],
            "Default": after_plan
        }),
    );
    for (name, state) in added {
        let previous = states.insert(name.clone(), state);
        assert!(previous.is_none(), "two states are named {name}");
    }
    for counter in counters {
        states["Init"]["Parameters"]["polls"][&counter] = json!({"n": 0});
    }
}

/// The Choice between the two kinds of upgrade.
pub const KIND_CHOICE: &str = "Kind?";

/// Sends every failure of the image rollout (either Task, or the loop's bound) to the
/// rollback instead of straight to the failure path. The rollback puts the previous
/// image back in the record, applies it and waits for it, then joins the failure path
/// with the rollout's error and a cause that says what the rollback did; a failed
/// rollback says that too.
fn roll_back_failed_rollouts(definition: &mut Value) {
    let states = definition["States"]
        .as_object_mut()
        .expect("a definition has states");
    let revert = "RevertImage";
    for task in [
        ROLL_IMAGE.name.to_owned(),
        format!("{}Poll", ROLL_IMAGE.name),
    ] {
        let catchers = states[&task]["Catch"]
            .as_array_mut()
            .expect("every Task catches its failures");
        let all = catchers.last_mut().expect("the catch-all is last");
        assert_eq!(all["Next"], FAILURE_PATH, "{task}");
        all["Next"] = json!(ROLLOUT_FAILED);
    }
    let timed_out = &mut states[&format!("{}TimedOut", ROLL_IMAGE.name)];
    assert_eq!(timed_out["Next"], FAILURE_PATH);
    timed_out["Next"] = json!(ROLLOUT_FAILED);
    // A caught error need not carry a Cause, and States.Format fails the whole execution
    // (uncatchably, leaving the lock held) on a missing path: every failure the
    // rollback's messages read is merged over these defaults first.
    states.insert(
        ROLLOUT_FAILED.to_owned(),
        json!({
            "Type": "Pass",
            "Comment": "The rollout failed: what a failure without an error or a cause reads as",
            "Parameters": {"Error": "States.Runtime", "Cause": "no cause given"},
            "ResultPath": FAILURE_DEFAULT,
            "Next": "RolloutFailure"
        }),
    );
    states.insert(
        "RolloutFailure".to_owned(),
        json!({
            "Type": "Pass",
            "Parameters": {"merged.$": format!("States.JsonMerge({FAILURE_DEFAULT}, {FAILURE}, false)")},
            "ResultPath": ROLLOUT,
            "Next": revert
        }),
    );

    let rollback = Flow::new()
        .task(
            Task::step(revert, Function::Control, "upgrade-revert")
                .comment("The rollout failed: put the image this run replaced back in the record (from the state table, never the event)")
                .options(json!({"input.$": "$.input", "workflow": NAME}))
                .keep(
                    json!({"changes.$": "$.changes", "after.$": "$.after", "detail.$": "$.detail"}),
                    ROLLBACK,
                ),
        )
        .poll_with(ROLL_BACK, Some(json!({"input.$": "$.input"})));
    let (start, mut added) = rollback.finish("RolledBack");
    assert_eq!(start, revert);
    // Nothing to put back (a rerun found the image already recorded): skip the apply.
    added[revert]["Next"] = json!("Reverted?");
    added.insert(
        "Reverted?".to_owned(),
        json!({
            "Type": "Choice",
            "Comment": "Roll back only when this run changed the recorded image",
            "Choices": [{"Variable": format!("{ROLLBACK}.changes"), "BooleanEquals": true, "Next": ROLL_BACK.name}],
            "Default": "NotRolledBack"
        }),
    );
    // The rollback's own failures keep the rollout's failure and add theirs.
    for (name, state) in added.iter_mut() {
        if let Some(catchers) = state.get_mut("Catch").and_then(Value::as_array_mut) {
            for catcher in catchers {
                assert_eq!(catcher["Next"], FAILURE_PATH, "{name}");
                catcher["ResultPath"] = json!(ROLLBACK_FAILURE);
                catcher["Next"] = json!("RollBackFailure");
            }
        }
        if name == &format!("{}TimedOut", ROLL_BACK.name) {
            state["ResultPath"] = json!(ROLLBACK_FAILURE);
            state["Next"] = json!("RollBackFailure");
        }
    }
    added.insert(
        "RollBackFailure".to_owned(),
        json!({
            "Type": "Pass",
            "Parameters": {"merged.$": format!("States.JsonMerge({FAILURE_DEFAULT}, {ROLLBACK_FAILURE}, false)")},
            "ResultPath": ROLLBACK_FAILURE,
            "Next": "RollBackFailed"
        }),
    );
    let rolled_back = |comment: &str, cause: &str, args: &str| {
        json!({
            "Type": "Pass",
            "Comment": comment,
            "Parameters": {
                "Error.$": format!("{ROLLOUT}.merged.Error"),
                "Cause.$": format!("States.Format('{cause}', {args})")
            },
            "ResultPath": FAILURE,
            "Next": FAILURE_PATH
        })
    };
    added.insert(
        "RolledBack".to_owned(),
        rolled_back(
            "The previous image runs again; the run fails with the rollout's cause",
            "the rollout of the new image failed: {} It was rolled back: {}, and that rollout is complete.",
            &format!("{ROLLOUT}.merged.Cause, {ROLLBACK}.detail"),
        ),
    );
    added.insert(
        "NotRolledBack".to_owned(),
        rolled_back(
            "Nothing to roll back; the run fails with the rollout's cause",
            "the rollout of the new image failed: {} {}",
            &format!("{ROLLOUT}.merged.Cause, {ROLLBACK}.detail"),
        ),
    );
    added.insert(
        "RollBackFailed".to_owned(),
        rolled_back(
            "The rollback failed too: both causes",
            "the rollout of the new image failed: {} Rolling back failed too: {}",
            &format!("{ROLLOUT}.merged.Cause, {ROLLBACK_FAILURE}.merged.Cause"),
        ),
    );
    for (name, state) in added {
        let previous = states.insert(name.clone(), state);
        assert!(previous.is_none(), "two states are named {name}");
    }
    // The rollback loop's counter starts with the others.
    states["Init"]["Parameters"]["polls"][ROLL_BACK.name] = json!({"n": 0});
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_takes_its_own_branch_after_the_plan() {
        let definition = definition();
        let states = &definition["States"];
        assert_eq!(states["Plan"]["Next"], KIND_CHOICE);
        let choice = &states[KIND_CHOICE];
        assert_eq!(choice["Choices"][0]["Next"], "RecordImage");
        assert_eq!(choice["Default"], "Insights");
        assert_eq!(states["RecordImage"]["Next"], "RollImage");
        assert_eq!(states["RollImageReady?"]["Choices"][0]["Next"], "Record");
        assert_eq!(states["AddonsReady?"]["Choices"][0]["Next"], "Record");
        assert_eq!(
            states["Init"]["Parameters"]["polls"]["RollImage"],
            json!({"n": 0})
        );
    }

    #[test]
    fn every_rollout_failure_goes_to_the_rollback() {
        let definition = definition();
        let states = &definition["States"];
        for task in ["RollImage", "RollImagePoll"] {
            let catchers = states[task]["Catch"].as_array().unwrap();
            assert_eq!(catchers.last().unwrap()["Next"], ROLLOUT_FAILED, "{task}");
        }
        assert_eq!(states["RollImageTimedOut"]["Next"], ROLLOUT_FAILED);
        assert_eq!(states["RolloutFailure"]["Next"], "RevertImage");
        assert_eq!(states["RevertImage"]["Next"], "Reverted?");
        assert_eq!(states["RollBackReady?"]["Choices"][0]["Next"], "RolledBack");
        for end in ["RolledBack", "NotRolledBack", "RollBackFailed"] {
            assert_eq!(states[end]["Next"], FAILURE_PATH, "{end}");
        }
        for task in ["RevertImage", "RollBack", "RollBackPoll"] {
            let catchers = states[task]["Catch"].as_array().unwrap();
            assert!(
                catchers
                    .iter()
                    .all(|c| c["Next"] == "RollBackFailure" && c["ResultPath"] == ROLLBACK_FAILURE),
                "{task}: {catchers:?}"
            );
        }
        // Every other Task still fails straight to the failure path.
        assert_eq!(
            states["ControlPlane"]["Catch"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()["Next"],
            FAILURE_PATH
        );
        assert_eq!(
            states["Init"]["Parameters"]["polls"]["RollBack"],
            json!({"n": 0})
        );
    }
}
