//! The stack-delete workflow: keeps CloudFormation waiting while the teardown that a
//! stack delete started runs (the bootstrap stack's `OnStackDelete=Teardown`), and has
//! the launch function answer once it has ended.
//!
//! ```text
//! {"request_id": "<the Delete request's id>"}
//!   -> Watch (launch: has the teardown ended? then answer CloudFormation)
//!   -> Answered? -> WatchWait -> WatchSleep -> Watch ...
//!   -> Answered
//!   (after the last poll -> WatchTimedOut; any failure -> Failed)
//! ```
//!
//! The launch function keeps the answer (its presigned URL is a credential) in the state
//! table, so the execution's input and history carry only the request's id. It answers
//! SUCCESS when the teardown succeeded, FAILED with the cause when it failed, and FAILED
//! with the execution's link once the deadline it set has passed (CloudFormation waits for
//! a custom resource at most an hour). This workflow only asks it, every minute; it takes
//! no lock and changes nothing.

use serde_json::{Value, json};

use crate::flow::{Task, duration, start_states, wait_states};
use crate::function::Function;

pub const NAME: &str = "stack-delete";

/// A poll a minute: the function answers at its deadline (55 minutes), so 70 polls
/// outlast it with room for the Tasks' retries.
const SCHEDULE: [u64; 70] = [60; 70];

/// The worst case (every Task using every retry on every poll) fits in 90 % of it; the
/// usual run ends within the hour.
pub const TIMEOUT_SECONDS: u64 = 12 * 3600;

pub fn definition() -> Value {
    let watch = Task::new(
        "Watch",
        Function::Launch,
        json!({"watch_stack_delete": {"request_id.$": "$.request_id"}}),
    )
    .comment("Has the teardown ended (or the deadline passed)? If so, answer CloudFormation and say done")
    .keep(json!({"done.$": "$.done", "status.$": "$.status"}), "$.watch")
    .catch(&["States.ALL"], json!("$.failure"), "Failed");
    let mut states = serde_json::Map::new();
    for (name, state) in start_states(
        "The launch function refuses a missing request id by name",
        json!({"request_id": ""}),
        None,
        json!({"request_id.$": "$.merged.request_id", "polls": {"Watch": {"n": 0}}}),
        watch.name(),
    ) {
        states.insert(name.into(), state);
    }
    let mut state = watch.state();
    state["Next"] = json!("Answered?");
    states.insert(watch.name().to_owned(), state);
    let bound = duration(SCHEDULE.iter().sum());
    states.insert(
        "Answered?".into(),
        json!({
            "Type": "Choice",
            "Comment": format!("Answered, or wait a minute and ask again: at most {} polls over {bound}, then Apiary.Timeout", SCHEDULE.len()),
            "Choices": [
                {"Variable": "$.watch.done", "BooleanEquals": true, "Next": "Answered"},
                {"Variable": "$.polls.Watch.n", "NumericGreaterThanEquals": SCHEDULE.len(), "Next": "WatchTimedOut"}
            ],
            "Default": "WatchWait"
        }),
    );
    for (name, state) in wait_states("Watch", &SCHEDULE, "Watch") {
        states.insert(name, state);
    }
    states.insert(
        "Answered".into(),
        json!({
            "Type": "Pass",
            "Parameters": {"request_id.$": "$.request_id", "answer.$": "$.watch.status"},
            "End": true
        }),
    );
    states.insert(
        "WatchTimedOut".into(),
        json!({
            "Type": "Fail",
            "Comment": "The launch function never said done: CloudFormation's own timeout (the Launch resource's ServiceTimeout) fails the stack delete",
            "Error": apiary_core::ErrorName::Timeout.as_str(),
            "Cause": format!("the stack delete's answer was not given after {} polls over {bound}; see the launch function's log", SCHEDULE.len())
        }),
    );
    states.insert(
        "Failed".into(),
        json!({
            "Type": "Fail",
            "Comment": "The launch function could not check or answer; CloudFormation's own timeout fails the stack delete",
            "ErrorPath": "$.failure.Error",
            "CausePath": "$.failure.Cause"
        }),
    );
    json!({
        "Comment": "Internal: started by the launch function when the bootstrap stack is deleted with OnStackDelete=Teardown. Waits for the teardown execution it started and has the launch function answer CloudFormation. Input {\"request_id\": \"<CloudFormation request id>\"}. Generated from shared/workflows/src/stack_delete.rs by `apiary workflows generate`: change the Rust, not this file",
        "StartAt": "Defaults",
        "TimeoutSeconds": TIMEOUT_SECONDS,
        "States": states
    })
}
