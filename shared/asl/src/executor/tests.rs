//! Whole executions: history shapes recorded from AWS, data flow, errors and time.

mod flow;
mod parity;
mod tasks;

use std::collections::HashMap;

use serde_json::{Value, json};

use super::*;

pub(super) async fn run_with(
    definition: Value,
    input: Value,
    options: ExecutionOptions,
) -> ExecutionResult {
    let machine = StateMachine::load(&definition.to_string(), &HashMap::new())
        .unwrap_or_else(|e| panic!("{e}"));
    machine.execute(input, options).await
}

pub(super) async fn run(definition: Value, input: Value) -> ExecutionResult {
    let options = ExecutionOptions {
        execution_name: Some("exec".into()),
        state_machine_name: "machine".into(),
        seed: Some(7),
        ..Default::default()
    };
    run_with(definition, input, options).await
}

pub(super) fn types(result: &ExecutionResult) -> Vec<&str> {
    result
        .history
        .iter()
        .map(|e| e.event_type.as_str())
        .collect()
}

pub(super) fn previous(result: &ExecutionResult) -> Vec<u64> {
    result.history.iter().map(|e| e.previous_event_id).collect()
}

pub(super) fn details<'a>(result: &'a ExecutionResult, event_type: &str) -> &'a Value {
    &result
        .history
        .iter()
        .find(|e| e.event_type == event_type)
        .and_then(|e| e.details.as_ref())
        .unwrap_or_else(|| panic!("no {event_type} with details in {:?}", types(result)))
        .1
}

#[tokio::test]
async fn pass_state_history_matches_aws() {
    let result = run(
        json!({"StartAt": "State_1", "States": {"State_1": {"Type": "Pass", "Result": {"Arg1": "argument1"}, "End": true}}}),
        json!({}),
    )
    .await;
    assert_eq!(result.status, ExecutionStatus::Succeeded);
    assert_eq!(result.output, Some(json!({"Arg1": "argument1"})));
    assert_eq!(
        types(&result),
        [
            "ExecutionStarted",
            "PassStateEntered",
            "PassStateExited",
            "ExecutionSucceeded"
        ]
    );
    assert_eq!(previous(&result), [0, 0, 2, 3]);
    let history = result.history_json();
    assert_eq!(
        history["events"][2]["stateExitedEventDetails"],
        json!({"name": "State_1", "output": "{\"Arg1\":\"argument1\"}", "outputDetails": {"truncated": false}})
    );
    assert_eq!(
        history["events"][0]["executionStartedEventDetails"]["roleArn"],
        json!("arn:aws:iam::123456789012:role/service-role/StepFunctions-machine-role")
    );
}

#[tokio::test]
async fn arns_are_built_as_aws_builds_them() {
    let result = run(
        json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}),
        json!({}),
    )
    .await;
    assert_eq!(
        result.state_machine_arn,
        "arn:aws:states:us-east-1:123456789012:stateMachine:machine"
    );
    assert_eq!(
        result.execution_arn,
        "arn:aws:states:us-east-1:123456789012:execution:machine:exec"
    );
    let described = result.describe();
    assert_eq!(described["status"], "SUCCEEDED");
    assert_eq!(described["output"], "{}");
    assert!(described.get("error").is_none());
}

#[tokio::test]
async fn unnamed_executions_get_a_seeded_uuid() {
    let definition = json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}});
    let options = || ExecutionOptions {
        seed: Some(42),
        ..Default::default()
    };
    let a = run_with(definition.clone(), json!({}), options()).await;
    let b = run_with(definition, json!({}), options()).await;
    assert_eq!(a.name, b.name);
    assert_eq!(a.name.len(), 36);
}

#[tokio::test]
async fn fail_state_reports_error_and_cause() {
    let result = run(
        json!({"StartAt": "FailState", "States": {"FailState": {"Type": "Fail", "Error": "SomeFailure", "Cause": "why"}}}),
        json!({}),
    )
    .await;
    assert_eq!(result.status, ExecutionStatus::Failed);
    assert_eq!(result.error.as_deref(), Some("SomeFailure"));
    assert_eq!(result.cause.as_deref(), Some("why"));
    assert_eq!(
        types(&result),
        ["ExecutionStarted", "FailStateEntered", "ExecutionFailed"]
    );
    assert_eq!(previous(&result), [0, 0, 2]);
}

#[tokio::test]
async fn empty_fail_state_has_empty_details() {
    let result = run(
        json!({"StartAt": "F", "States": {"F": {"Type": "Fail"}}}),
        json!({}),
    )
    .await;
    assert_eq!(details(&result, "ExecutionFailed"), &json!({}));
    assert_eq!(result.error, None);
    assert_eq!(result.cause, None);
}

#[tokio::test]
async fn fail_paths_and_intrinsics() {
    let result = run(
        json!({"StartAt": "F", "States": {"F": {"Type": "Fail", "ErrorPath": "$.Error",
            "CausePath": "States.Format('This is a custom error message for {}, caused by {}.', $.Error, $.Cause)"}}}),
        json!({"Error": "error string", "Cause": "cause string"}),
    )
    .await;
    assert_eq!(result.error.as_deref(), Some("error string"));
    assert_eq!(
        result.cause.as_deref(),
        Some("This is a custom error message for error string, caused by cause string.")
    );
}

#[tokio::test]
async fn parallel_branches_chain_their_own_events() {
    let result = run(
        json!({"StartAt": "P", "States": {
            "P": {"Type": "Parallel", "Branches": [
                {"StartAt": "A1", "States": {"A1": {"Type": "Pass", "Next": "A2"}, "A2": {"Type": "Pass", "End": true}}},
                {"StartAt": "B1", "States": {"B1": {"Type": "Pass", "Next": "B2"}, "B2": {"Type": "Pass", "End": true}}}
            ], "Next": "After"},
            "After": {"Type": "Pass", "End": true}}}),
        json!({"x": "a"}),
    )
    .await;
    assert_eq!(result.status, ExecutionStatus::Succeeded);
    assert_eq!(result.history.len(), 16);
    assert_eq!(
        &types(&result)[..3],
        [
            "ExecutionStarted",
            "ParallelStateEntered",
            "ParallelStateStarted"
        ]
    );
    assert_eq!(
        &types(&result)[11..],
        [
            "ParallelStateSucceeded",
            "ParallelStateExited",
            "PassStateEntered",
            "PassStateExited",
            "ExecutionSucceeded"
        ]
    );
    let by_name = |t: &str, n: &str| {
        result
            .history
            .iter()
            .find(|e| e.event_type == t && e.state_name() == Some(n))
            .unwrap()
    };
    for branch in ["A", "B"] {
        let first = by_name("PassStateEntered", &format!("{branch}1"));
        assert_eq!(first.previous_event_id, 3);
        let exited = by_name("PassStateExited", &format!("{branch}1"));
        assert_eq!(exited.previous_event_id, first.id);
        assert_eq!(
            by_name("PassStateEntered", &format!("{branch}2")).previous_event_id,
            exited.id
        );
    }
    assert_eq!(result.history[11].previous_event_id, 11);
    assert_eq!(result.history[12].previous_event_id, 11);
    assert_eq!(
        details(&result, "ParallelStateExited")["output"],
        json!(r#"[{"x":"a"},{"x":"a"}]"#)
    );
}

#[tokio::test]
async fn runtime_error_in_a_branch_fails_the_execution_directly() {
    let result = run(
        json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": [
            {"StartAt": "Fast", "States": {"Fast": {"Type": "Pass", "Parameters": {"m.$": "$.nope"}, "End": true}}}
        ], "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "C"}], "End": true},
        "C": {"Type": "Pass", "End": true}}}),
        json!({"x": "a"}),
    )
    .await;
    assert_eq!(
        types(&result),
        [
            "ExecutionStarted",
            "ParallelStateEntered",
            "ParallelStateStarted",
            "PassStateEntered",
            "ExecutionFailed"
        ]
    );
    assert_eq!(previous(&result), [0, 0, 2, 3, 4]);
    assert_eq!(result.error.as_deref(), Some("States.Runtime"));
    assert_eq!(
        result.cause.as_deref(),
        Some(
            "An error occurred while executing the state 'Fast' (entered at the event id #4). The JSONPath '$.nope' specified for the field 'm.$' could not be found in the input '{\"x\":\"a\"}'"
        )
    );
}

#[tokio::test]
async fn fail_state_in_a_branch_leaves_a_parallel_failed_event() {
    let result = run(
        json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": [
            {"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "MyError", "Cause": "my cause"}}}
        ], "End": true}}}),
        json!({"x": "a"}),
    )
    .await;
    assert_eq!(
        types(&result),
        [
            "ExecutionStarted",
            "ParallelStateEntered",
            "ParallelStateStarted",
            "FailStateEntered",
            "ParallelStateFailed",
            "ExecutionFailed"
        ]
    );
    assert_eq!(previous(&result), [0, 0, 2, 3, 4, 5]);
    assert_eq!(
        details(&result, "ExecutionFailed"),
        &json!({"error": "MyError", "cause": "my cause"})
    );
}

#[tokio::test]
async fn retried_parallel_starts_again() {
    let result = run(
        json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": [
            {"StartAt": "Boom", "States": {"Boom": {"Type": "Fail", "Error": "MyError", "Cause": "my cause"}}}
        ], "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 1, "IntervalSeconds": 1}], "End": true}}}),
        json!({}),
    )
    .await;
    assert_eq!(
        types(&result),
        [
            "ExecutionStarted",
            "ParallelStateEntered",
            "ParallelStateStarted",
            "FailStateEntered",
            "ParallelStateStarted",
            "FailStateEntered",
            "ParallelStateFailed",
            "ExecutionFailed"
        ]
    );
    assert_eq!(previous(&result), [0, 0, 2, 3, 4, 5, 6, 7]);
}

#[tokio::test]
async fn parallel_result_selector_failure_is_the_parallels_own() {
    let result = run(
        json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": [
            {"StartAt": "Ok", "States": {"Ok": {"Type": "Pass", "End": true}}}
        ], "ResultSelector": {"m.$": "$.nope"}, "End": true}}}),
        json!({"x": "a"}),
    )
    .await;
    assert_eq!(
        types(&result),
        [
            "ExecutionStarted",
            "ParallelStateEntered",
            "ParallelStateStarted",
            "PassStateEntered",
            "PassStateExited",
            "ParallelStateSucceeded",
            "ExecutionFailed"
        ]
    );
    assert_eq!(previous(&result), [0, 0, 2, 3, 4, 5, 6]);
    assert_eq!(
        result.cause.as_deref(),
        Some(
            "An error occurred while executing the state 'P' (entered at the event id #2). The JSONPath '$.nope' specified for the field 'm.$' could not be found in the input '[{\"x\":\"a\"}]'"
        )
    );
}

#[tokio::test]
async fn map_iterations_chain_under_iteration_events() {
    let result = run(
        json!({"StartAt": "M", "States": {
            "M": {"Type": "Map", "ItemsPath": "$.items", "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"},
                "StartAt": "I1", "States": {"I1": {"Type": "Pass", "Next": "I2"}, "I2": {"Type": "Pass", "End": true}}},
              "Next": "After"},
            "After": {"Type": "Pass", "End": true}}}),
        json!({"items": [1, 2]}),
    )
    .await;
    assert_eq!(result.status, ExecutionStatus::Succeeded);
    assert_eq!(result.history.len(), 20);
    assert_eq!(details(&result, "MapStateStarted"), &json!({"length": 2}));
    for event in result
        .history
        .iter()
        .filter(|e| e.event_type == "MapIterationStarted")
    {
        assert_eq!(event.previous_event_id, 3);
    }
    assert_eq!(result.history[14].event_type, "MapIterationSucceeded");
    assert_eq!(result.history[15].event_type, "MapStateSucceeded");
    assert_eq!(result.history[15].previous_event_id, 15);
    assert_eq!(result.history[16].previous_event_id, 15);
    assert_eq!(details(&result, "MapStateExited")["output"], json!("[1,2]"));
    assert_eq!(details(&result, "MapIterationStarted")["name"], json!("M"));
}

#[tokio::test]
async fn empty_map_exits_from_its_started_event() {
    let result = run(
        json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items",
            "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}, "End": true}}}),
        json!({"items": []}),
    )
    .await;
    assert_eq!(
        types(&result),
        [
            "ExecutionStarted",
            "MapStateEntered",
            "MapStateStarted",
            "MapStateSucceeded",
            "MapStateExited",
            "ExecutionSucceeded"
        ]
    );
    assert_eq!(previous(&result), [0, 0, 2, 3, 3, 5]);
    assert_eq!(result.output, Some(json!([])));
}

#[tokio::test]
async fn runtime_error_in_a_map_iteration_leaves_no_failed_events() {
    let result = run(
        json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 1,
            "ItemProcessor": {"StartAt": "Fast", "States": {"Fast": {"Type": "Pass", "Parameters": {"m.$": "$.nope"}, "End": true}}},
            "End": true}}}),
        json!({"items": [1, 2]}),
    )
    .await;
    assert_eq!(
        types(&result),
        [
            "ExecutionStarted",
            "MapStateEntered",
            "MapStateStarted",
            "MapIterationStarted",
            "PassStateEntered",
            "ExecutionFailed"
        ]
    );
    assert_eq!(previous(&result), [0, 0, 2, 3, 4, 5]);
    assert!(
        result
            .cause
            .unwrap()
            .ends_with("could not be found in the input '1'")
    );
}

#[tokio::test]
async fn failing_map_iteration_leaves_iteration_and_state_failed_events() {
    let result = run(
        json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 1,
            "ItemProcessor": {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E"}}}, "End": true}}}),
        json!({"items": [1, 2]}),
    )
    .await;
    assert_eq!(
        types(&result),
        [
            "ExecutionStarted",
            "MapStateEntered",
            "MapStateStarted",
            "MapIterationStarted",
            "FailStateEntered",
            "MapIterationFailed",
            "MapStateFailed",
            "ExecutionFailed"
        ]
    );
    assert_eq!(previous(&result), [0, 0, 2, 3, 4, 5, 5, 7]);
    assert_eq!(
        details(&result, "MapIterationFailed"),
        &json!({"name": "M", "index": 0})
    );
}

#[tokio::test]
async fn choice_without_a_match_fails_as_aws_does() {
    let result = run(
        json!({"StartAt": "C", "States": {
            "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "StringEquals": "never", "Next": "Done"}]},
            "Done": {"Type": "Pass", "End": true}}}),
        json!({"x": "a"}),
    )
    .await;
    assert_eq!(
        types(&result),
        ["ExecutionStarted", "ChoiceStateEntered", "ExecutionFailed"]
    );
    assert_eq!(
        details(&result, "ExecutionFailed"),
        &json!({"error": "States.Runtime", "cause": "An error occurred while executing the state 'C' (entered at the event id #2). Failed to transition out of the state. The state does not point to a next state."})
    );
}

#[tokio::test]
async fn listener_sees_every_event_as_it_is_appended() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let options = ExecutionOptions {
        listener: Some(Arc::new(move |e: &HistoryEvent| {
            sink.lock().unwrap().push((e.id, e.event_type.clone()));
        })),
        ..Default::default()
    };
    let result = run_with(
        json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Succeed"}}}),
        json!({}),
        options,
    )
    .await;
    let seen = seen.lock().unwrap().clone();
    let expected: Vec<(u64, String)> = result
        .history
        .iter()
        .map(|e| (e.id, e.event_type.clone()))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(seen.len(), 6);
}
