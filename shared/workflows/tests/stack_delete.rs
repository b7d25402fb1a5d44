//! The stack-delete workflow in the engine: it asks the launch function until it says
//! done, then ends; it never runs unbounded, and a failure to ask ends it failed.

use apiary_asl::ExecutionStatus;
use apiary_workflows::{Workflow, stack_delete};
use serde_json::json;

use crate::common::{self, Script};

fn workflow() -> Workflow {
    Workflow {
        name: stack_delete::NAME,
        definition: stack_delete::definition(),
    }
}

fn asked(calls: &common::Calls) -> Vec<serde_json::Value> {
    calls
        .lock()
        .unwrap()
        .iter()
        .map(|(function, event)| {
            assert_eq!(function, "launch");
            event.clone()
        })
        .collect()
}

#[tokio::test]
async fn it_asks_until_the_answer_is_given() {
    let script = Script {
        polls_until_ready: [("Watch", 3)].into(),
        ..Script::default()
    };
    let (result, calls) = common::run(&workflow(), json!({"request_id": "r-1"}), script).await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{}",
        result.describe()
    );
    assert_eq!(
        result.output,
        Some(json!({"request_id": "r-1", "answer": "SUCCESS"}))
    );
    let asked = asked(&calls);
    assert_eq!(
        asked.len(),
        4,
        "three polls while running, one that answered"
    );
    for event in asked {
        assert_eq!(event, json!({"watch_stack_delete": {"request_id": "r-1"}}));
    }
}

#[tokio::test]
async fn it_gives_up_after_its_bound_with_a_named_error() {
    let script = Script {
        polls_until_ready: [("Watch", 1000)].into(),
        ..Script::default()
    };
    let (result, calls) = common::run(&workflow(), json!({"request_id": "r-2"}), script).await;
    assert_eq!(result.status, ExecutionStatus::Failed);
    assert_eq!(result.error.as_deref(), Some("Apiary.Timeout"));
    // The first ask and one per poll: bounded, and past the launch function's deadline
    // (55 minutes at one poll a minute).
    let asked = asked(&calls).len();
    assert!(asked > 55, "{asked}");
    assert_eq!(asked, 71);
}

#[tokio::test]
async fn a_launch_function_that_cannot_answer_fails_the_run_with_its_error() {
    let script = Script {
        failing: Some(("launch", "", "Apiary.InvalidInput")),
        ..Script::default()
    };
    let (result, _) = common::run(&workflow(), json!({"request_id": ""}), script).await;
    assert_eq!(result.status, ExecutionStatus::Failed);
    assert_eq!(result.error.as_deref(), Some("Apiary.InvalidInput"));
}
