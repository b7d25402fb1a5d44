//! Apiary's workflows, written once in Rust. `apiary workflows generate` writes each as
//! `statemachines/<name>.asl.json`: plain Amazon States Language that customers read in
//! the Step Functions console, so the generated file keeps comments and stable state
//! names. The tests prove that the files on disk are exactly what this crate generates,
//! and that every workflow's longest path fits its time and history budgets.
//!
//! # Building blocks
//!
//! - [`Task`]: a Task state that calls a function the step kit's way
//!   (`{"action", "deployment", "execution_id"}`; the function loads the spec and the
//!   earlier layers' outputs from the state table), with the function's timeout and the
//!   one [`retry_policy`].
//! - [`Poll`]: a slow resource, polled in a bounded loop: `X` (create what is missing,
//!   return at once) -> `X Ready?` -> `XWait` (count, take the next wait from a growing
//!   schedule) -> `XSleep` -> `XPoll` -> `X Ready?`; after the last poll `XTimedOut` sets
//!   `$.failure` to `Apiary.Timeout` with a cause naming the resource and the bound.
//! - [`Flow`]: tasks, poll loops and Parallels chained in order; inside a Parallel
//!   branch ([`Flow::branch`]) a failure ends the branch and the Parallel catches it.
//! - [`Locked`]: the frame of a workflow that changes a deployment: Defaults/Options/
//!   Init, Validate (-> Rejected), Lock (with a bounded wait when the input says
//!   `"queue": true`), the body, the outcome (MarkReady), Unlock; and the failure path
//!   RecordFailure -> UnlockAfterFailure -> Failed. Its [`Input`] is a spec (provision)
//!   or a stored deployment and the workflow's own fields (the day-2 workflows, whose
//!   Validate is the control function's `validate-input` and whose outcome is
//!   [`Outcome::finish`]).
//!
//! A new workflow is a function in its own module that builds a [`Flow`] and wraps it in
//! [`Locked`] (see [`provision`]), plus a line in [`all`].
//!
//! # Retries
//!
//! Every Task retries the transient errors (`Apiary.Retryable`, `Apiary.NotReady`,
//! Lambda's service errors) 4 times with backoff 5 s doubling, at most 60 s per wait,
//! FULL jitter. It also retries `States.Timeout` (its `TimeoutSeconds`, which equals the
//! function's own Lambda timeout, ran out) once: every step is idempotent, finding what
//! an earlier attempt made before creating anything, so running it again is safe and
//! usually completes what a slow AWS call left; a second timeout means the step cannot
//! finish in its time, and retrying further would only spend the workflow's budget.
//! Nothing else is retried: a step that cannot succeed fails fast.
//!
//! # Budgets
//!
//! [`budget::worst_case`] computes the longest path from the generated definition: every
//! Task using all its retries with each attempt running to its timeout, every poll loop
//! and the lock wait running to its bound, Parallel branches taking the slowest one's
//! time and all of their events. The tests require it to fit in 90 % of the execution's
//! `TimeoutSeconds` and under 20,000 history events (AWS fails an execution at 25,000).
//! A workflow that holds the deployment's lock must not lose it while it runs, so the
//! control function's lock lease must be at least [`longest_timeout_seconds`].

pub mod backup;
pub mod budget;
pub mod drift;
mod flow;
mod function;
pub mod handle_alert;
mod locked;
pub mod phone_home;
pub mod provision;
pub mod restore_test;
pub mod rotate_keys;
pub mod scale_pools;
pub mod stack_delete;
pub mod teardown;
pub mod upgrade;

use serde_json::Value;

pub use flow::{Flow, Poll, Task, duration};
pub use function::{Function, TRANSIENT, retry_policy};
pub use locked::{Input, Locked, Outcome};

/// One workflow: a state machine definition and the file it is written to.
#[derive(Debug, Clone)]
pub struct Workflow {
    /// `provision`: the file is `statemachines/provision.asl.json`.
    pub name: &'static str,
    pub definition: Value,
}

impl Workflow {
    pub fn file_name(&self) -> String {
        format!("{}.asl.json", self.name)
    }

    /// The file's contents: pretty-printed JSON with a trailing newline.
    pub fn render(&self) -> String {
        let mut text = serde_json::to_string_pretty(&self.definition)
            .expect("a definition built from JSON values serialises");
        text.push('\n');
        text
    }

    /// The execution's `TimeoutSeconds`.
    pub fn timeout_seconds(&self) -> u64 {
        self.definition["TimeoutSeconds"]
            .as_u64()
            .expect("every workflow sets TimeoutSeconds")
    }
}

/// Every workflow, in file name order.
pub fn all() -> Vec<Workflow> {
    vec![
        Workflow {
            name: backup::NAME,
            definition: backup::definition(),
        },
        Workflow {
            name: drift::NAME,
            definition: drift::definition(),
        },
        Workflow {
            name: handle_alert::NAME,
            definition: handle_alert::definition(),
        },
        Workflow {
            name: phone_home::NAME,
            definition: phone_home::definition(),
        },
        Workflow {
            name: "provision",
            definition: provision::definition(),
        },
        Workflow {
            name: restore_test::NAME,
            definition: restore_test::definition(),
        },
        Workflow {
            name: rotate_keys::NAME,
            definition: rotate_keys::definition(),
        },
        Workflow {
            name: scale_pools::NAME,
            definition: scale_pools::definition(),
        },
        Workflow {
            name: stack_delete::NAME,
            definition: stack_delete::definition(),
        },
        Workflow {
            name: "teardown",
            definition: teardown::definition(),
        },
        Workflow {
            name: upgrade::NAME,
            definition: upgrade::definition(),
        },
    ]
}

/// The longest `TimeoutSeconds` of any workflow: the lock lease must be at least this.
pub fn longest_timeout_seconds() -> u64 {
    all()
        .iter()
        .map(Workflow::timeout_seconds)
        .max()
        .unwrap_or_default()
}
