//! The handle-alert workflow: one EventBridge event of the deployment, read, acted on by
//! its runbook (bounded and journaled) and told to a person.
//!
//! ```text
//! {"deployment": "<name>", "rule": "<rule>", "event": <EventBridge event>}
//!   -> Triage (control alert-triage: classify; claim the event id; record an alarm's
//!      state change, closing its record on OK)
//!   -> Duplicate? -- already handled by another execution --> AlreadyHandled
//!   -> Runbook?
//!        raise-storage -> RaiseStorage (databases: allocated storage within the ceiling)
//!        key-state     -> KeyState (operate keys-check: the one key-state policy, which
//!                         cancels a deletion of this deployment's key)
//!        otherwise     -> (nothing to do but record)
//!   -> Notify (control alert-notify: the alerts topic, unless the alarm told a person
//!      already and nothing acted)
//!   -> RunbookFailed? -- the runbook failed --> Failed (the execution fails with
//!      the runbook's error, after the person was told)
//!   -> Handled
//! ```
//!
//! It takes no lock: reading, recording and telling never conflict with a running
//! workflow, and its runbooks change only what no other workflow lowers or undoes (RDS
//! allocated storage; a key deletion, cancelled). A runbook that meets the instance busy
//! retries as every Task does; one that cannot act (storage at its ceiling, a key left
//! disabled) fails after the person was told why.

use serde_json::{Value, json};

use crate::flow::{Task, start_states};
use crate::function::Function;

pub const NAME: &str = apiary_core::alerts::WORKFLOW;

/// Each state runs once; the longest path is the triage, one runbook and the
/// notification, every attempt of each running to its timeout: about 40 minutes.
pub const TIMEOUT_SECONDS: u64 = 3600;

pub fn definition() -> Value {
    let workflow = json!(NAME);
    let step = |name: &str, function: Function, action: &str, options: Value| {
        Task::new(
            name,
            function,
            json!({
                "action": action,
                "deployment.$": "$.deployment",
                "execution_id.$": "$$.Execution.Id"
            }),
        )
        .options(options)
    };
    let triage = step(
        "Triage",
        Function::Control,
        "alert-triage",
        json!({"workflow": workflow, "event.$": "$.event"}),
    )
    .comment("Read the event, claim its id (a redelivered event acts once), record an alarm's state change (OK closes its record), pick the runbook")
    .keep(
        json!({"alert.$": "$.alert", "runbook.$": "$.runbook", "duplicate.$": "$.duplicate"}),
        "$.triage",
    );
    let runbook_catch = |task: Task| task.catch(&["States.ALL"], json!("$.failure"), "Notify");
    let raise = runbook_catch(
        step(
            "RaiseStorage",
            Function::Databases,
            "raise-storage",
            json!({"workflow": workflow}),
        )
        .comment("RDS reported low storage: raise the PostgreSQL instance's allocated storage by a quarter, within its ceiling")
        .keep(json!({"detail.$": "$.detail", "before_gib.$": "$.before_gib", "after_gib.$": "$.after_gib", "ceiling_gib.$": "$.ceiling_gib"}), "$.outcome"),
    );
    let key_state = runbook_catch(
        step(
            "KeyState",
            Function::Operate,
            "keys",
            json!({"workflow": workflow, "input": {"scope": "keys-check", "on_demand": false}}),
        )
        .comment("A key of this deployment was scheduled for deletion: the key-state policy cancels the deletion and, as KMS leaves the key disabled, refuses until a person enables it")
        .keep(json!({"keys.$": "$.keys"}), "$.outcome"),
    );
    let notify = step(
        "Notify",
        Function::Control,
        "alert-notify",
        json!({
            "workflow": workflow,
            "alert.$": "$.triage.alert",
            "outcome.$": "$.outcome",
            "failure.$": "$.failure"
        }),
    )
    .comment("Tell a person on the alerts topic what happened and what the runbook did, unless the alarm already did and nothing acted")
    .keep(
        json!({"notified.$": "$.notified", "why.$": "$.why"}),
        "$.notified",
    );

    let mut states = serde_json::Map::new();
    for (name, state) in start_states(
        "Fields the input may leave out; Triage refuses a missing deployment or event by name",
        json!({"deployment": "", "rule": "", "event": null}),
        None,
        json!({
            "deployment.$": "$.merged.deployment",
            "rule.$": "$.merged.rule",
            "event.$": "$.merged.event",
            "outcome": null,
            "failure": null
        }),
        triage.name(),
    ) {
        states.insert(name.into(), state);
    }
    let mut place = |task: &Task, next: &str| {
        let mut state = task.state();
        state["Next"] = json!(next);
        states.insert(task.name().to_owned(), state);
    };
    place(&triage, "Duplicate?");
    place(&raise, notify.name());
    place(&key_state, notify.name());
    place(&notify, "RunbookFailed?");
    states.insert(
        "Duplicate?".into(),
        json!({
            "Type": "Choice",
            "Comment": "Another execution claimed this event id first: it acted; this one does nothing",
            "Choices": [{"Variable": "$.triage.duplicate", "BooleanEquals": true, "Next": "AlreadyHandled"}],
            "Default": "Runbook?"
        }),
    );
    states.insert(
        "AlreadyHandled".into(),
        json!({
            "Type": "Pass",
            "Parameters": {"deployment.$": "$.deployment", "duplicate": true, "alert.$": "$.triage.alert"},
            "End": true
        }),
    );
    states.insert(
        "Runbook?".into(),
        json!({
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.triage.runbook", "StringEquals": "raise-storage", "Next": raise.name()},
                {"Variable": "$.triage.runbook", "StringEquals": "key-state", "Next": key_state.name()}
            ],
            "Default": notify.name()
        }),
    );
    states.insert(
        "RunbookFailed?".into(),
        json!({
            "Type": "Choice",
            "Choices": [{"Not": {"Variable": "$.failure", "IsNull": true}, "Next": "Failed"}],
            "Default": "Handled"
        }),
    );
    states.insert(
        "Failed".into(),
        json!({
            "Type": "Fail",
            "Comment": "The runbook could not act; the person was told why",
            "ErrorPath": "$.failure.Error",
            "CausePath": "$.failure.Cause"
        }),
    );
    states.insert(
        "Handled".into(),
        json!({
            "Type": "Pass",
            "Parameters": {
                "deployment.$": "$.deployment",
                "duplicate": false,
                "alert.$": "$.triage.alert",
                "runbook.$": "$.triage.runbook",
                "outcome.$": "$.outcome",
                "notified.$": "$.notified"
            },
            "End": true
        }),
    );
    json!({
        "Comment": "React to one event of the deployment: an alarm's state change, an RDS, DocumentDB or ElastiCache event, an AWS Health event, a key scheduled for deletion or disabled, a failed backup or restore test. Input {\"deployment\": \"<name>\", \"event\": <the EventBridge event>} (the stack's rules add \"rule\"). A redelivered event acts once. Generated from shared/workflows/src/handle_alert.rs by `apiary workflows generate`: change the Rust, not this file",
        "StartAt": "Defaults",
        "TimeoutSeconds": TIMEOUT_SECONDS,
        "States": states
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_ends_before_any_runbook_and_failures_are_told_first() {
        let definition = definition();
        let states = &definition["States"];
        assert_eq!(states["Triage"]["Next"], "Duplicate?");
        assert_eq!(states["Duplicate?"]["Choices"][0]["Next"], "AlreadyHandled");
        for runbook in ["RaiseStorage", "KeyState"] {
            assert_eq!(states[runbook]["Next"], "Notify", "{runbook}");
            assert_eq!(states[runbook]["Catch"][0]["Next"], "Notify", "{runbook}");
        }
        assert_eq!(states["Notify"]["Next"], "RunbookFailed?");
    }
}
