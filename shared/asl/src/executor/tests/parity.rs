//! Behaviour checked against AWS's documentation and executions recorded on AWS: the
//! context object, legacy Map fields, variables in Map iterations, Wait SecondsPath,
//! bracket notation and the state machine's own TimeoutSeconds.

use serde_json::json;

use super::*;

fn pass(state: Value) -> Value {
    let mut state = state;
    state["Type"] = json!("Pass");
    state["End"] = json!(true);
    json!({"StartAt": "S", "States": {"S": state}})
}

/// The context object as a recorded Pass state sees it (`InputPath: "$$"`).
#[tokio::test]
async fn whole_context_object_as_input_path_has_aws_shape() {
    let result = run(pass(json!({"InputPath": "$$"})), json!({"input-value": 0})).await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        result.cause
    );
    let output = result.output.unwrap();
    let keys: Vec<&String> = output.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["Execution", "StateMachine", "State"]);
    let execution: Vec<&String> = output["Execution"].as_object().unwrap().keys().collect();
    assert_eq!(
        execution,
        [
            "Id",
            "Input",
            "StartTime",
            "Name",
            "RoleArn",
            "RedriveCount"
        ]
    );
    assert_eq!(output["Execution"]["Input"], json!({"input-value": 0}));
    assert_eq!(output["Execution"]["RedriveCount"], json!(0));
    assert_eq!(
        output["StateMachine"],
        json!({"Id": "arn:aws:states:us-east-1:123456789012:stateMachine:machine", "Name": "machine"})
    );
    let state: Vec<&String> = output["State"].as_object().unwrap().keys().collect();
    assert_eq!(state, ["Name", "EnteredTime"]);
    assert_eq!(output["State"]["Name"], json!("S"));
}

#[tokio::test]
async fn whole_context_object_as_output_path() {
    let result = run(pass(json!({"OutputPath": "$$"})), json!({"a": 1})).await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        result.cause
    );
    let output = result.output.unwrap();
    assert_eq!(output["Execution"]["Input"], json!({"a": 1}));
    assert_eq!(output["State"]["Name"], json!("S"));
    let result = run(
        pass(json!({"OutputPath": "$$.Execution.Input"})),
        json!({"a": 1}),
    )
    .await;
    assert_eq!(result.output, Some(json!({"a": 1})));
}

#[tokio::test]
async fn states_that_can_retry_see_a_retry_count() {
    let result = run(
        json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true,
            "Parameters": {"state.$": "$$.State"},
            "Branches": [{"StartAt": "B", "States": {"B": {"Type": "Pass", "End": true}}}]}}}),
        json!({}),
    )
    .await;
    let output = result.output.unwrap();
    let keys: Vec<&String> = output[0]["state"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["Name", "EnteredTime", "RetryCount"]);
}

#[tokio::test]
async fn legacy_iterator_accepts_processor_config() {
    let result = run(
        json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
            "Iterator": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "I",
                "States": {"I": {"Type": "Pass", "End": true}}}}}}),
        json!([1, 2]),
    )
    .await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        result.cause
    );
    assert_eq!(result.output, Some(json!([1, 2])));
}

#[tokio::test]
async fn map_iterations_read_outer_variables() {
    let result = run(
        json!({"StartAt": "Set", "States": {
            "Set": {"Type": "Pass", "Assign": {"factor": 10, "limit": 1}, "Next": "M"},
            "M": {"Type": "Map", "End": true, "MaxConcurrencyPath": "$limit",
                "ItemSelector": {"v.$": "$$.Map.Item.Value", "f.$": "$factor"},
                "ItemProcessor": {"StartAt": "I", "States": {
                    "I": {"Type": "Pass", "Parameters": {"v.$": "$.v", "f.$": "$factor",
                        "sum.$": "States.MathAdd($.v, $factor)"}, "End": true}}}}}}),
        json!([1, 2]),
    )
    .await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        result.cause
    );
    assert_eq!(
        result.output,
        Some(json!([{"v": 1, "f": 10, "sum": 11}, {"v": 2, "f": 10, "sum": 12}]))
    );
}

#[tokio::test]
async fn seconds_path_with_a_fraction_is_a_runtime_error() {
    let result = run(
        json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "SecondsPath": "$.s", "End": true}}}),
        json!({"s": 1.5}),
    )
    .await;
    assert_eq!(result.status, ExecutionStatus::Failed);
    assert_eq!(result.error.as_deref(), Some("States.Runtime"));
    assert_eq!(
        result.cause.as_deref(),
        Some(
            "An error occurred while executing the state 'W' (entered at the event id #2). The SecondsPath parameter cannot be parsed as a long value: $.s == 1.5"
        )
    );
    assert_eq!(
        types(&result),
        ["ExecutionStarted", "WaitStateEntered", "ExecutionFailed"]
    );
}

#[tokio::test]
async fn seconds_path_with_a_negative_value_is_a_runtime_error() {
    let result = run(
        json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "SecondsPath": "$.s", "End": true}}}),
        json!({"s": -1}),
    )
    .await;
    assert_eq!(result.error.as_deref(), Some("States.Runtime"));
    assert!(
        result
            .cause
            .as_deref()
            .unwrap()
            .ends_with("The SecondsPath parameter references a negative value: $.s == -1"),
        "{:?}",
        result.cause
    );
}

#[tokio::test]
async fn bracket_notation_with_escaped_quotes_and_backslashes() {
    let input = json!({"it's": 1, "back\\slash": 2, "say \"hi\"": 3});
    let result = run(
        pass(json!({"Parameters": {
            "a.$": "$['it\\'s']",
            "b.$": "$['back\\\\slash']",
            "c.$": "$[\"say \\\"hi\\\"\"]",
            "d.$": "States.Array($['it\\'s'], $['back\\\\slash'])"
        }})),
        input,
    )
    .await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        result.cause
    );
    assert_eq!(
        result.output,
        Some(json!({"a": 1, "b": 2, "c": 3, "d": [1, 2]}))
    );
}

#[tokio::test]
async fn result_path_in_bracket_notation_with_an_escaped_quote() {
    let result = run(
        pass(json!({"Result": 5, "ResultPath": "$['it\\'s']"})),
        json!({}),
    )
    .await;
    assert_eq!(result.output, Some(json!({"it's": 5})));
}

/// Recorded on AWS: DescribeExecution of an execution that ran past the state machine's
/// TimeoutSeconds has status TIMED_OUT and neither error nor cause.
#[tokio::test]
async fn state_machine_timeout_reports_as_aws_does() {
    let result = run(
        json!({"TimeoutSeconds": 5, "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": true}}}),
        json!({}),
    )
    .await;
    assert_eq!(result.status, ExecutionStatus::TimedOut);
    assert_eq!(result.error, None);
    assert_eq!(result.cause, None);
    let describe = result.describe();
    assert_eq!(describe["status"], "TIMED_OUT");
    assert!(describe.get("error").is_none() && describe.get("cause").is_none());
    assert_eq!(
        types(&result),
        ["ExecutionStarted", "WaitStateEntered", "ExecutionTimedOut"]
    );
    assert_eq!(previous(&result), [0, 0, 2]);
    let history = result.history_json();
    assert_eq!(
        history["events"][2]["executionTimedOutEventDetails"],
        json!({})
    );
    let took = result.stop_date - result.start_date;
    assert!(
        took >= chrono::Duration::seconds(5) && took < chrono::Duration::seconds(6),
        "{took}"
    );
}

/// A Pass state's recorded context object has no `State.RetryCount`, so a path to it
/// matches nothing there.
#[tokio::test]
async fn pass_state_has_no_retry_count() {
    let result = run(
        pass(json!({"Parameters": {"retry.$": "$$.State.RetryCount"}})),
        json!({}),
    )
    .await;
    assert_eq!(result.error.as_deref(), Some("States.Runtime"));
    let result = run(
        json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "f", "Payload": {"retry.$": "$$.State.RetryCount"}},
            "Retry": [{"ErrorEquals": ["States.ALL"], "MaxAttempts": 0}],
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Done"}], "End": true},
            "Done": {"Type": "Succeed"}}}),
        json!({}),
    )
    .await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        result.cause
    );
}

/// Recorded on AWS: `States.Format('... fst={} and snd={}.', $$.Execution.Name,
/// $$.StateMachine)` renders the object as `{Id=..., Name=...}`.
#[tokio::test]
async fn intrinsics_read_context_paths_in_executions() {
    let result = run(
        pass(json!({"Parameters": {
            "f.$": "States.Format('fst={} and snd={}.', $$.Execution.Name, $$.StateMachine)",
            "n.$": "States.ArrayGetItem(States.StringSplit($$.Execution.Input.csv, ','), 1)",
            "whole.$": "States.ArrayLength(States.Array($$, $$.State))"
        }})),
        json!({"csv": "a,b,c"}),
    )
    .await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        result.cause
    );
    assert_eq!(
        result.output,
        Some(json!({
            "f": "fst=exec and snd={Id=arn:aws:states:us-east-1:123456789012:stateMachine:machine, Name=machine}.",
            "n": "b",
            "whole": 2
        }))
    );
    let result = run(
        json!({"StartAt": "M", "States": {"M": {"Type": "Map", "End": true,
            "ItemSelector": {"k.$": "States.Format('{}:{}', $$.Map.Item.Index, $$.Map.Item.Value)"},
            "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}}}}),
        json!(["x", "y"]),
    )
    .await;
    assert_eq!(result.output, Some(json!([{"k": "0:x"}, {"k": "1:y"}])));
}

#[tokio::test]
async fn nested_map_reads_variables_of_every_enclosing_scope() {
    let result = run(
        json!({"StartAt": "Set", "States": {
            "Set": {"Type": "Pass", "Assign": {"rows": [[1, 2], [3]], "max": 2, "tag": "t"}, "Next": "Outer"},
            "Outer": {"Type": "Map", "End": true, "ItemsPath": "$rows", "MaxConcurrencyPath": "$max",
                "ItemProcessor": {"StartAt": "Mark", "States": {
                    "Mark": {"Type": "Pass", "Assign": {"row.$": "$"}, "Next": "Inner"},
                    "Inner": {"Type": "Map", "End": true, "ItemsPath": "$row", "MaxConcurrencyPath": "$max",
                        "ItemProcessor": {"StartAt": "Leaf", "States": {
                            "Leaf": {"Type": "Pass", "End": true,
                                "Parameters": {"v.$": "$", "tag.$": "$tag", "n.$": "States.ArrayLength($row)"}}}}}}}}}}),
        json!({}),
    )
    .await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        result.cause
    );
    assert_eq!(
        result.output,
        Some(json!([
            [{"v": 1, "tag": "t", "n": 2}, {"v": 2, "tag": "t", "n": 2}],
            [{"v": 3, "tag": "t", "n": 1}]
        ]))
    );
}
