//! The restore-test workflow: proves the newest backups come back, with their data.
//!
//! ```text
//! validate-input ({"stores": [...]} optional) -> lock
//!   -> plan -> cleanup of leftovers (scratch resources of a crashed run; polled)
//!   -> restore (the newest snapshot of each store into a scratch copy; polled)
//!   -> verify (verifier: read the sentinel back, each store)
//!   -> report (journal, EventBridge, CloudWatch; fails when a check failed)
//!   -> cleanup (every scratch resource; polled) -> finish -> unlock
//! ```
//!
//! Scratch resources are ALWAYS removed: any failure from the plan to the verification
//! goes to ReportAfterFailure (the failure is reported as a failed test) and then to
//! CleanupAfterFailure, a bounded cleanup loop of its own, before the frame records the
//! failure; a failed report (a failed check) goes to CleanupAfterFailure directly. A
//! cleanup that cannot finish (a store still deleting at its bound) leaves the rest to
//! the next run's first cleanup, which finds everything by its `apiary:scratch` tag.
//!
//! Bounds from AWS-TIMINGS.md: RDS restores take ~6-10 minutes (plus the fresh password,
//! a few more), DocumentDB a cluster then an instance (~10-15), Redis ~7-12: restores
//! are polled for an hour. Deletes: RDS 4-6 minutes, DocumentDB instance ~7 then
//! cluster 1-4, Redis 3-6, then the security group once the stores' network interfaces
//! are released: cleanups are polled for about half an hour.

use serde_json::{Value, json};

use crate::flow::{FAILURE, FAILURE_PATH, Flow, Poll, Task};
use crate::function::Function;
use crate::locked::{Input, Locked, Outcome};

pub const NAME: &str = apiary_core::inputs::restore_test::WORKFLOW;

/// A weekly run waits for another workflow (a backup) up to about 40 minutes when its
/// input asks to queue (the schedule's does).
pub const LOCK_WAIT: &[u64] = &[60, 120, 300, 600, 600, 600];

pub const STORES: [(&str, &str); 3] = [
    ("postgres", "Postgres"),
    ("documentdb", "DocumentDb"),
    ("redis", "Redis"),
];

/// Scratch resources a crashed earlier run left. Bound 33 minutes.
pub const LEFTOVERS: Poll = Poll {
    name: "CleanupLeftovers",
    function: Function::Backup,
    ensure: "cleanup",
    status: "cleanup",
    what: "the removal of an earlier run's scratch resources",
    schedule: &[60, 120, 300, 600, 900],
};

/// RDS ~6-10 min, DocumentDB ~10-15, Redis ~7-12. Bound 1 hour.
pub const RESTORE: Poll = Poll {
    name: "Restore",
    function: Function::Backup,
    ensure: "restore",
    status: "restore-status",
    what: "the scratch restores",
    schedule: &[480, 240, 300, 600, 900, 1080],
};

/// This run's scratch resources. Bound 34 minutes.
pub const CLEANUP: Poll = Poll {
    name: "Cleanup",
    function: Function::Backup,
    ensure: "cleanup",
    status: "cleanup",
    what: "the removal of the scratch resources",
    schedule: &[120, 120, 300, 600, 900],
};

/// The cleanup on the failure path: its own loop (same bound) with its own counter.
pub const CLEANUP_AFTER_FAILURE: &str = "CleanupAfterFailure";
pub const CLEANUP_AFTER_FAILURE_SCHEDULE: &[u64] = &[60, 120, 300, 600, 900];
pub const REPORT_AFTER_FAILURE: &str = "ReportAfterFailure";

/// 10 hours: the longest path (the lock wait, every retry, the poll loops and the
/// failure path's cleanup to their bounds) is 30,880 s (8.6 hours); see the budget test.
/// A run takes about an hour.
pub const TIMEOUT_SECONDS: u64 = 10 * 3600;

/// States whose failure must pass through the scratch cleanup (everything from the plan
/// to the verification; the final cleanup and the frame's own states are not).
fn needs_cleanup(state: &str) -> bool {
    state == "Plan"
        || state.starts_with("CleanupLeftovers")
        || state.starts_with("Restore")
        || state.starts_with("Verify")
}

pub fn definition() -> Value {
    let mut body = Flow::new()
        .task(
            Task::step("Plan", Function::Backup, "plan")
                .comment("The run's stores (from the checked input) and the id its scratch resources are named by")
                .options(json!({"input.$": "$.input", "workflow": NAME})),
        )
        .poll(LEFTOVERS)
        .poll(RESTORE);
    for (store, title) in STORES {
        body = body.task(
            Task::step(&format!("Verify{title}"), Function::Verifier, "verify-restore")
                .comment(format!("Connect to the scratch {store} over TLS with its own credentials and read the sentinel back (a store this run does not test answers skipped; locally: not possible, never passed)"))
                .options(json!({"store": store}))
                .keep(json!({"output.$": "$"}), &format!("$.result.verify_{store}")),
        );
    }
    let body = body
        .task(
            Task::step("Report", Function::Backup, "report")
                .comment("RTO and RPO per store and the verdict: journal, EventBridge (source apiary), CloudWatch (Apiary/RestoreTest). Fails when a check failed, after its cleanup")
                .options(json!({"verification.$": "$.result", "workflow": NAME}))
                .keep(
                    json!({"passed.$": "$.passed", "data_check.$": "$.data_check", "stores.$": "$.stores"}),
                    "$.result.report",
                ),
        )
        .poll(CLEANUP);
    let mut definition = Locked {
        name: NAME,
        comment: "Restore the newest backups into scratch copies, read each store's sentinel back, report RTO/RPO and the verdict, and always delete the scratch copies. Input {\"stores\": [\"postgres\", \"documentdb\", \"redis\"]} (optional: every store the spec enables). Generated from shared/workflows/src/restore_test.rs by `apiary workflows generate`: change the Rust, not this file".into(),
        timeout_seconds: TIMEOUT_SECONDS,
        lock_wait: LOCK_WAIT,
        body,
        input: Input::Deployment,
        outcome: Outcome::finish(),
    }
    .definition();
    always_clean_up(&mut definition);
    definition
}

/// Routes every failure that may leave scratch resources through ReportAfterFailure and
/// CleanupAfterFailure before the frame's failure path.
fn always_clean_up(definition: &mut Value) {
    let states = definition["States"]
        .as_object_mut()
        .expect("a definition has states");
    for (name, state) in states.iter_mut() {
        // The report has reported already: its failure (a failed check) goes straight
        // to the cleanup.
        let next = match name.as_str() {
            "Report" => CLEANUP_AFTER_FAILURE,
            name if needs_cleanup(name) => REPORT_AFTER_FAILURE,
            _ => continue,
        };
        if let Some(catchers) = state.get_mut("Catch").and_then(Value::as_array_mut) {
            for catcher in catchers {
                if catcher["Next"] == FAILURE_PATH {
                    catcher["Next"] = json!(next);
                }
            }
        }
        // A poll loop's timeout: a Pass that sets the failure and goes to the failure path.
        if state["Next"] == FAILURE_PATH && state["Type"] == "Pass" {
            state["Next"] = json!(next);
        }
    }

    let mut report = Task::step(REPORT_AFTER_FAILURE, Function::Backup, "report")
        .comment("Report the failure as a failed restore test (journal, event, metric Passed=0)")
        .options(json!({"failure.$": FAILURE, "verification.$": "$.result", "workflow": NAME}))
        .catch(&["States.ALL"], Value::Null, CLEANUP_AFTER_FAILURE)
        .state();
    report["Next"] = json!(CLEANUP_AFTER_FAILURE);

    let name = CLEANUP_AFTER_FAILURE;
    let ready = format!("{name}Ready?");
    let mut cleanup = Task::step(name, Function::Backup, "cleanup")
        .comment("Delete every scratch resource before the failure is recorded")
        .keep(json!({"ready.$": "$.ready"}), &format!("$.results.{name}"))
        .catch(&["States.ALL"], Value::Null, FAILURE_PATH)
        .state();
    cleanup["Next"] = json!(ready);
    let polls = CLEANUP_AFTER_FAILURE_SCHEDULE.len();
    let bound = crate::flow::duration(CLEANUP_AFTER_FAILURE_SCHEDULE.iter().sum());
    let choice = json!({
        "Type": "Choice",
        "Comment": format!("Clean, or wait and clean again: at most {polls} rounds over {bound}; what is left then goes to the next run's leftover cleanup"),
        "Choices": [
            {"Variable": format!("$.results.{name}.ready"), "BooleanEquals": true, "Next": FAILURE_PATH},
            {"Variable": format!("$.polls.{name}.n"), "NumericGreaterThanEquals": polls, "Next": FAILURE_PATH}
        ],
        "Default": format!("{name}Wait")
    });
    let [wait, sleep] = crate::flow::wait_states(name, CLEANUP_AFTER_FAILURE_SCHEDULE, name);
    states.insert(REPORT_AFTER_FAILURE.to_owned(), report);
    states.insert(name.to_owned(), cleanup);
    states.insert(ready, choice);
    states.insert(wait.0, wait.1);
    states.insert(sleep.0, sleep.1);
    // The loop's counter starts at 0 with the others.
    states["Init"]["Parameters"]["polls"][name] = json!({"n": 0});
}
