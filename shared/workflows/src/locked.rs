//! The frame every workflow that changes a deployment shares: read the input's options,
//! validate the spec, take the deployment's lock (waiting for it, bounded, when the input
//! asks to queue), run the body, record the outcome and release the lock; on any failure
//! record it, release the lock and fail with the cause.

use apiary_core::ErrorName;
use serde_json::{Map, Value, json};

use crate::flow::{
    DEPLOYMENT_NAME, FAILURE, FAILURE_PATH, Flow, Task, duration, start_states, wait_states,
};
use crate::function::Function;

/// What the execution's input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A deployment spec (`{"spec": ...}`): provision, the only way a spec enters the
    /// state table. Validate checks it; Lock stores it.
    Spec,
    /// A stored deployment and the workflow's own fields (`{"deployment": "<name>",
    /// ...}`): the day-2 workflows. Validate (`validate-input`) checks the fields with the
    /// workflow's typed input (`apiary_core::inputs`) and that the deployment exists;
    /// the normalized input is kept at `$.input` for the body's steps, and `$.result`
    /// starts empty for them to fill: the execution returns it.
    Deployment,
}

/// How a successful run is recorded and what the execution returns.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// The Task that records it: `MarkReady`.
    pub state: &'static str,
    /// The control function's action: `ready`.
    pub action: &'static str,
    pub comment: &'static str,
    /// The last state, whose output is the execution's: `Provisioned`. Its `status` is
    /// the one the control function recorded (`READY`, `WAITING_FOR_DNS_VALIDATION`).
    pub done: &'static str,
}

impl Outcome {
    /// A day-2 workflow's outcome: `finish` journals the success (and marks a torn-down
    /// deployment DELETED); the execution returns `{"deployment", "workflow", "status",
    /// "result"}`.
    pub const fn finish() -> Outcome {
        Outcome {
            state: "Record",
            action: "finish",
            comment: "Journal the workflow's success; the deployment's status changes only for teardown (DELETED)",
            done: "Done",
        }
    }
}

/// A workflow that holds the deployment's lock while its body runs.
#[derive(Debug)]
pub struct Locked {
    /// The workflow's name, as the journal and the lock record it: `provision`.
    pub name: &'static str,
    pub comment: String,
    /// The execution's `TimeoutSeconds`. The budget test proves the longest path fits in
    /// 90 % of it; the control function's lock lease must cover it.
    pub timeout_seconds: u64,
    /// Waits (seconds) between tries for a lock another workflow holds, when the input
    /// says `"queue": true`; its length is the number of tries after the first.
    pub lock_wait: &'static [u64],
    pub body: Flow,
    pub input: Input,
    pub outcome: Outcome,
}

impl Locked {
    /// The state machine definition.
    pub fn definition(self) -> Value {
        let workflow = json!({"workflow": self.name});
        let mut states = Map::new();
        let mut add = |name: &str, state: Value| {
            let previous = states.insert(name.to_owned(), state);
            assert!(previous.is_none(), "two states are named {name}");
        };

        let (defaults, defaults_comment) = match self.input {
            Input::Spec => (
                json!({"queue": false}),
                "Options the input may leave out: queue (wait for another workflow's lock instead of failing at once), false by default",
            ),
            Input::Deployment => (
                json!({"queue": false, "deployment": ""}),
                "Options the input may leave out: queue (wait for another workflow's lock instead of failing at once), false by default. A missing deployment is refused by Validate",
            ),
        };
        let mut polls = Map::new();
        for counter in
            std::iter::once("Lock").chain(self.body.counters().iter().map(String::as_str))
        {
            polls.insert(counter.to_owned(), json!({"n": 0}));
        }
        let init = match self.input {
            Input::Spec => {
                json!({"spec.$": "$.merged.spec", "queue.$": "$.merged.queue", "polls": polls})
            }
            Input::Deployment => json!({
                "given.$": "$.merged",
                "queue.$": "$.merged.queue",
                "polls": polls,
                "result": {}
            }),
        };
        for (name, state) in start_states(
            defaults_comment,
            defaults,
            Some("One round counter per bounded loop"),
            init,
            "Validate",
        ) {
            add(name, state);
        }

        let validate = match self.input {
            Input::Spec => Task::new(
                "Validate",
                Function::Control,
                json!({"action": "validate", "spec.$": "$.spec", "execution_id.$": "$$.Execution.Id"}),
            )
            .comment("Reject a bad spec before anything is changed")
            .keep(json!({"name.$": "$.deployment"}), "$.deployment"),
            Input::Deployment => Task::new(
                "Validate",
                Function::Control,
                json!({
                    "action": "validate-input",
                    "deployment.$": "$.given.deployment",
                    "execution_id.$": "$$.Execution.Id",
                    "options": {"workflow": self.name, "input.$": "$.given"}
                }),
            )
            .comment("Reject a bad input, or a deployment with no record, before anything is changed")
            .keep(
                json!({"name.$": "$.deployment", "input.$": "$.input"}),
                "$.validated",
            ),
        }
        .catch(&["States.ALL"], json!(FAILURE), "Rejected");
        match self.input {
            Input::Spec => add("Validate", with_next(validate.state(), "Lock")),
            Input::Deployment => {
                add("Validate", with_next(validate.state(), "Validated"));
                add(
                    "Validated",
                    json!({
                        "Type": "Pass",
                        "Comment": "The checked input, where the steps read it ($.input), and an empty result for them to fill",
                        "Parameters": {
                            "deployment": {"name.$": "$.validated.name"},
                            "input.$": "$.validated.input",
                            "queue.$": "$.queue",
                            "polls.$": "$.polls",
                            "result": {}
                        },
                        "Next": "Lock"
                    }),
                );
            }
        }
        add(
            "Rejected",
            json!({
                "Type": "Fail",
                "Comment": "Nothing was changed and no lock was taken",
                "ErrorPath": "$.failure.Error",
                "CausePath": "$.failure.Cause"
            }),
        );

        let (body_start, body) = self.body.finish(self.outcome.state);
        let mut lock_parameters = Map::new();
        lock_parameters.insert("action".into(), json!("lock"));
        if self.input == Input::Spec {
            lock_parameters.insert("spec.$".into(), json!("$.spec"));
        }
        lock_parameters.insert("deployment.$".into(), json!(DEPLOYMENT_NAME));
        lock_parameters.insert("execution_id.$".into(), json!("$$.Execution.Id"));
        let mut options = workflow.clone();
        if self.input == Input::Spec {
            // When this run started: a provision that waited for a teardown's lock must
            // not re-create what the teardown removed meanwhile (the control function
            // compares it with the record's last change).
            options["started_at.$"] = json!("$$.Execution.StartTime");
        }
        lock_parameters.insert("options".into(), options);
        let lock = Task::new("Lock", Function::Control, Value::Object(lock_parameters))
            .comment(
                "One workflow per deployment at a time; stores the validated spec for the steps",
            )
            .catch(&[ErrorName::Conflict.as_str()], json!(FAILURE), "LockBusy?")
            .catch(&["States.ALL"], json!(FAILURE), "Rejected");
        add("Lock", with_next(lock.state(), &body_start));
        let tries = self.lock_wait.len();
        let waited = duration(self.lock_wait.iter().sum());
        add(
            "LockBusy?",
            json!({
                "Type": "Choice",
                "Comment": format!("Another workflow holds the lock: when the input asks to queue (the launch resource does), try again at most {tries} times over {waited}; else fail at once"),
                "Choices": [
                    {
                        "And": [
                            {"Variable": "$.queue", "BooleanEquals": true},
                            {"Variable": "$.polls.Lock.n", "NumericLessThan": tries}
                        ],
                        "Next": "LockWait"
                    },
                    {"Variable": "$.queue", "BooleanEquals": true, "Next": "LockTimedOut"}
                ],
                "Default": "Rejected"
            }),
        );
        for (name, state) in wait_states("Lock", self.lock_wait, "Lock") {
            add(&name, state);
        }
        add(
            "LockTimedOut",
            json!({
                "Type": "Pass",
                "Parameters": {
                    "Error": ErrorName::Timeout.as_str(),
                    "Cause.$": format!("States.Format('waited {waited} for the deployment lock and another workflow still holds it: {{}}', $.failure.Cause)")
                },
                "ResultPath": FAILURE,
                "Next": "Rejected"
            }),
        );

        for (name, state) in body {
            add(&name, state);
        }

        let outcome = self.outcome;
        let kept = match self.input {
            Input::Spec => json!({"status.$": "$.status", "layers.$": "$.layers"}),
            Input::Deployment => json!({"status.$": "$.status"}),
        };
        let mark = Task::step(outcome.state, Function::Control, outcome.action)
            .comment(outcome.comment)
            .options(workflow.clone())
            .keep(kept, "$.marked")
            .catch(&["States.ALL"], json!(FAILURE), FAILURE_PATH);
        add(outcome.state, with_next(mark.state(), "Unlock"));
        let unlock = Task::step("Unlock", Function::Control, "unlock")
            .comment(
                "Release the lock. The outcome is already recorded: should this keep failing, the lock's lease frees it",
            )
            .options(workflow.clone());
        add("Unlock", with_next(unlock.state(), outcome.done));
        let returned = match self.input {
            Input::Spec => json!({
                "deployment.$": DEPLOYMENT_NAME,
                "status.$": "$.marked.status",
                "layers.$": "$.marked.layers"
            }),
            Input::Deployment => json!({
                "deployment.$": DEPLOYMENT_NAME,
                "workflow": self.name,
                "status.$": "$.marked.status",
                "result.$": "$.result"
            }),
        };
        add(
            outcome.done,
            json!({"Type": "Pass", "Parameters": returned, "End": true}),
        );

        let mut failure = json!({"workflow": self.name});
        failure["failure.$"] = json!(FAILURE);
        let record = Task::step(FAILURE_PATH, Function::Control, "fail")
            .comment("Journal the failure and mark the deployment failed")
            .options(failure)
            .catch(&["States.ALL"], Value::Null, "UnlockAfterFailure");
        add(
            FAILURE_PATH,
            with_next(record.state(), "UnlockAfterFailure"),
        );
        let unlock = Task::step("UnlockAfterFailure", Function::Control, "unlock")
            .comment("Release the lock so a fixed spec can be re-run")
            .options(workflow)
            .catch(&["States.ALL"], Value::Null, "Failed");
        add("UnlockAfterFailure", with_next(unlock.state(), "Failed"));
        add(
            "Failed",
            json!({
                "Type": "Fail",
                "Comment": "Fails with the error and cause of the step that failed",
                "ErrorPath": "$.failure.Error",
                "CausePath": "$.failure.Cause"
            }),
        );

        json!({
            "Comment": self.comment,
            "StartAt": "Defaults",
            "TimeoutSeconds": self.timeout_seconds,
            "States": states
        })
    }
}

fn with_next(mut state: Value, next: &str) -> Value {
    state["Next"] = json!(next);
    state
}
