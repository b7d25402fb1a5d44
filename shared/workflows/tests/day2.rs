//! The day-2 frame (`Input::Deployment`): a stored deployment and the workflow's own
//! input, checked by `validate-input` before the lock; the checked input reaches the
//! body's steps at `$.input`, and the body's results come back in the output.

use crate::common;

use apiary_asl::ExecutionStatus;
use apiary_workflows::{Flow, Function, Input, Locked, Outcome, Task, Workflow};
use common::Script;
use serde_json::json;

fn workflow() -> Workflow {
    let body = Flow::new().task(
        Task::step("Work", Function::Keys, "work")
            .options(json!({"input.$": "$.input"}))
            .keep(json!({"ready.$": "$.ready"}), "$.result.work"),
    );
    Workflow {
        name: "frame-test",
        definition: Locked {
            name: "frame-test",
            comment: "a day-2 frame under test".into(),
            timeout_seconds: 3600,
            lock_wait: &[60],
            body,
            input: Input::Deployment,
            outcome: Outcome::finish(),
        }
        .definition(),
    }
}

#[tokio::test]
async fn the_checked_input_reaches_the_steps_and_the_result_comes_back() {
    let (result, calls) = common::run(
        &workflow(),
        json!({"deployment": "acme", "confirm": "acme"}),
        Script::default(),
    )
    .await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{}",
        result.describe()
    );
    assert_eq!(
        result.output,
        Some(json!({
            "deployment": "acme",
            "workflow": "frame-test",
            "status": "READY",
            "result": {"work": {"ready": true}}
        }))
    );
    let calls = calls.lock().unwrap();
    let sent: Vec<(&str, &str)> = calls
        .iter()
        .map(|(f, e)| (f.as_str(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        sent,
        [
            ("control", "validate-input"),
            ("control", "lock"),
            ("keys", "work"),
            ("control", "finish"),
            ("control", "unlock")
        ]
    );
    let validate = &calls[0].1;
    assert_eq!(validate["deployment"], "acme");
    assert_eq!(
        validate["options"],
        json!({"workflow": "frame-test", "input": {"deployment": "acme", "confirm": "acme", "queue": false}})
    );
    let lock = &calls[1].1;
    assert!(
        lock.get("spec").is_none(),
        "a day-2 lock stores no spec: {lock}"
    );
    assert_eq!(lock["options"], json!({"workflow": "frame-test"}));
    assert_eq!(calls[2].1["options"], json!({"input": {"confirm": "acme"}}));
    for (_, event) in calls.iter().skip(3) {
        assert_eq!(event["options"]["workflow"], "frame-test", "{event}");
    }
}

#[tokio::test]
async fn a_missing_deployment_or_a_bad_input_is_rejected_before_the_lock() {
    let (result, calls) =
        common::run(&workflow(), json!({"confirm": "acme"}), Script::default()).await;
    assert_eq!(result.status, ExecutionStatus::Failed);
    assert_eq!(result.error.as_deref(), Some("Apiary.InvalidInput"));
    let (result, calls_bad) = common::run(
        &workflow(),
        json!({"deployment": "acme", "confirm": "nope"}),
        Script {
            failing: Some(("control", "validate-input", "Apiary.InvalidInput")),
            ..Script::default()
        },
    )
    .await;
    assert_eq!(result.status, ExecutionStatus::Failed);
    assert_eq!(result.error.as_deref(), Some("Apiary.InvalidInput"));
    for calls in [calls, calls_bad] {
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 1, "only validate-input runs: {calls:?}");
        assert_eq!(calls[0].1["action"], "validate-input");
    }
}

#[tokio::test]
async fn a_failed_step_is_recorded_and_unlocked_under_the_workflows_name() {
    let (result, calls) = common::run(
        &workflow(),
        json!({"deployment": "acme"}),
        Script {
            failing: Some(("keys", "work", "Apiary.Fatal")),
            ..Script::default()
        },
    )
    .await;
    assert_eq!(result.status, ExecutionStatus::Failed);
    assert_eq!(result.error.as_deref(), Some("Apiary.Fatal"));
    let calls = calls.lock().unwrap();
    let tail: Vec<(&str, &serde_json::Value)> = calls
        .iter()
        .skip(3)
        .map(|(_, e)| (e["action"].as_str().unwrap(), &e["options"]["workflow"]))
        .collect();
    assert_eq!(
        tail,
        [
            ("fail", &json!("frame-test")),
            ("unlock", &json!("frame-test"))
        ]
    );
}
