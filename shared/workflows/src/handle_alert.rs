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
//!        scale-pool    -> ScalePool (control alert-scale-pool: starts scale-pools with
//!                         the size preset's limits, which takes the lock and queues)
//!        restart-ingestion -> CredentialsSynced (workloads: every pod's mount holds the
//!                         store secrets' current versions; polled, as rotate-keys does)
//!                         -> RestartIngestion (workloads: a rolling restart, so the
//!                         environment reads the new value) -> IngestionRollout (polled)
//!                         Triage picks it only when there are pods to restart and
//!                         rotate-keys (which restarts them itself) is not running.
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
//! allocated storage; a key deletion, cancelled). The pool runbook changes nothing
//! itself: it starts scale-pools, which takes the lock like any workflow. The one exception is the restart: it
//! starts a rollout, which replaces one in progress (an upgrade's, whose status then
//! follows the newer one); triage skips it while rotate-keys runs or the deployment is
//! torn down. A runbook that meets the instance busy
//! retries as every Task does; one that cannot act (storage at its ceiling, a key left
//! disabled) fails after the person was told why.

use serde_json::{Value, json};

use crate::flow::{DEPLOYMENT_NAME, FAILURE_PATH, Flow, Task, start_states};
use crate::function::Function;
use crate::rotate_keys::{CREDENTIALS_SYNCED, ROLLOUT};

pub const NAME: &str = apiary_core::alerts::WORKFLOW;

/// Each state runs once but the restart runbook's sync wait; the longest path is the
/// triage, that wait (its polls, each attempt running to the workloads function's
/// timeout), the restart and the notification (the budget test computes it).
pub const TIMEOUT_SECONDS: u64 = 24 * 3600;

pub fn definition() -> Value {
    let workflow = json!(NAME);
    let step = |name: &str, function: Function, action: &str, options: Value| {
        Task::new(
            name,
            function,
            json!({
                "action": action,
                "deployment.$": DEPLOYMENT_NAME,
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
    let scale_pool = runbook_catch(
        step(
            "ScalePool",
            Function::Control,
            "alert-scale-pool",
            json!({"workflow": workflow}),
        )
        .comment("The ingestion pool has held 90% of its limits for 15 minutes: start scale-pools with the size preset's limits (queued behind any running workflow), unless the pool is frozen or already there")
        .keep(json!({"detail.$": "$.detail", "execution.$": "$.execution", "input.$": "$.input"}), "$.outcome"),
    );
    // The workloads actions read rotate-keys' input: its "secrets" scope is a restart's.
    let secrets = json!({"workflow": workflow, "input": {"scope": "secrets", "on_demand": false}});
    let restart = Flow::new()
        .poll_with(CREDENTIALS_SYNCED, Some(secrets.clone()))
        .task(
            Task::step("RestartIngestion", Function::Workloads, "restart")
                .comment("A store secret has a new current value and every pod's mount holds it: restart the ingestion pods so that their environment reads it")
                .options(secrets)
                .keep(
                    json!({"restarted.$": "$.restarted", "verified.$": "$.verified", "detail.$": "$.detail"}),
                    "$.outcome",
                ),
        )
        // The person hears "restarted" only once the new pods are up; a rollout that does
        // not come up (a credential the pods refuse) reaches them as the failure.
        .poll_with(ROLLOUT, None);
    let polls: serde_json::Map<String, Value> = restart
        .counters()
        .iter()
        .map(|c| (c.clone(), json!({"n": 0})))
        .collect();
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
            "deployment": {"name.$": "$.merged.deployment"},
            "rule.$": "$.merged.rule",
            "event.$": "$.merged.event",
            "outcome": null,
            "failure": null,
            "polls": polls,
            "results": {}
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
    place(&scale_pool, notify.name());
    place(&notify, "RunbookFailed?");
    let (restart_start, restart_states) = restart.finish(notify.name());
    states.extend(restart_states);
    states.insert(
        FAILURE_PATH.into(),
        json!({
            "Type": "Pass",
            "Comment": "The restart runbook failed or timed out (the error is in $.failure): tell the person",
            "Next": notify.name()
        }),
    );
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
            "Parameters": {"deployment.$": DEPLOYMENT_NAME, "duplicate": true, "alert.$": "$.triage.alert"},
            "End": true
        }),
    );
    states.insert(
        "Runbook?".into(),
        json!({
            "Type": "Choice",
            "Choices": [
                {"Variable": "$.triage.runbook", "StringEquals": "raise-storage", "Next": raise.name()},
                {"Variable": "$.triage.runbook", "StringEquals": "key-state", "Next": key_state.name()},
                {"Variable": "$.triage.runbook", "StringEquals": "scale-pool", "Next": scale_pool.name()},
                {"Variable": "$.triage.runbook", "StringEquals": "restart-ingestion", "Next": restart_start}
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
                "deployment.$": DEPLOYMENT_NAME,
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
        "Comment": "React to one event of the deployment: an alarm's state change, an RDS, DocumentDB or ElastiCache event, an AWS Health event, a key scheduled for deletion or disabled, a failed backup or restore test, a store secret's new current version. Input {\"deployment\": \"<name>\", \"event\": <the EventBridge event>} (the stack's rules add \"rule\"). A redelivered event acts once. Generated from shared/workflows/src/handle_alert.rs by `apiary workflows generate`: change the Rust, not this file",
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
        for runbook in ["RaiseStorage", "KeyState", "ScalePool"] {
            assert_eq!(states[runbook]["Next"], "Notify", "{runbook}");
            assert_eq!(states[runbook]["Catch"][0]["Next"], "Notify", "{runbook}");
        }
        assert_eq!(states["Notify"]["Next"], "RunbookFailed?");
    }

    /// A rotated store secret: the pods restart only after the sync wait says every
    /// mount holds it; any failure or timeout on the way reaches the person.
    #[test]
    fn a_restart_waits_for_the_secrets_driver_and_its_failures_are_told() {
        let definition = definition();
        let states = &definition["States"];
        let choice = states["Runbook?"]["Choices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["StringEquals"] == "restart-ingestion")
            .unwrap();
        assert_eq!(choice["Next"], "CredentialsSynced");
        assert_eq!(
            states["CredentialsSynced"]["Parameters"]["action"],
            "credentials-synced"
        );
        assert_eq!(
            states["CredentialsSynced"]["Parameters"]["options"]["input"]["scope"],
            "secrets"
        );
        let ready = states["CredentialsSyncedReady?"]["Choices"][0]["Next"].clone();
        assert_eq!(ready, "RestartIngestion");
        assert_eq!(states["RestartIngestion"]["Next"], "IngestionRollout");
        assert_eq!(
            states["IngestionRolloutReady?"]["Choices"][0]["Next"],
            "Notify"
        );
        assert_eq!(states["CredentialsSyncedTimedOut"]["Next"], FAILURE_PATH);
        for task in [
            "CredentialsSynced",
            "CredentialsSyncedPoll",
            "RestartIngestion",
        ] {
            assert_eq!(states[task]["Catch"][0]["Next"], FAILURE_PATH, "{task}");
            assert_eq!(
                states[task]["Parameters"]["deployment.$"], DEPLOYMENT_NAME,
                "{task}"
            );
        }
        assert_eq!(states[FAILURE_PATH]["Next"], "Notify");
        assert_eq!(
            states["Init"]["Parameters"]["polls"]["CredentialsSynced"]["n"],
            0
        );
    }
}
