//! Data flow fields, the context object, variables, Wait and the clocks.

use std::time::Duration;

use serde_json::json;

use super::*;

fn pass(state: Value) -> Value {
    let mut state = state;
    state["Type"] = json!("Pass");
    state["End"] = json!(true);
    json!({"StartAt": "S", "States": {"S": state}})
}

#[tokio::test]
async fn input_path_parameters_result_path_output_path() {
    let result = run(
        pass(json!({
            "InputPath": "$.in",
            "Parameters": {"sum.$": "States.MathAdd($.a, $.b)", "fixed": [1, {"x.$": "$.a"}]},
            "ResultPath": "$.deep.result",
            "OutputPath": "$.deep"
        })),
        json!({"in": {"a": 1, "b": 2}, "other": true}),
    )
    .await;
    assert_eq!(
        result.output,
        Some(json!({"result": {"sum": 3, "fixed": [1, {"x": 1}]}}))
    );
}

#[tokio::test]
async fn null_paths_discard_and_empty() {
    let result = run(
        pass(json!({"Result": "r", "ResultPath": null})),
        json!({"keep": 1}),
    )
    .await;
    assert_eq!(result.output, Some(json!({"keep": 1})));
    let result = run(pass(json!({"InputPath": null})), json!({"drop": 1})).await;
    assert_eq!(result.output, Some(json!({})));
    let result = run(pass(json!({"OutputPath": null})), json!({"drop": 1})).await;
    assert_eq!(result.output, Some(json!({})));
}

#[tokio::test]
async fn pass_result_wins_over_parameters_and_paths_select_arrays() {
    let result = run(
        pass(json!({"Result": {"a": 1}, "Parameters": {"b": 2}})),
        json!({}),
    )
    .await;
    assert_eq!(result.output, Some(json!({"a": 1})));
    let result = run(
        pass(json!({"InputPath": "$.items[?(@.n > 1)].n"})),
        json!({"items": [{"n": 1}, {"n": 2}, {"n": 3}]}),
    )
    .await;
    assert_eq!(result.output, Some(json!([2, 3])));
}

#[tokio::test]
async fn missing_input_path_is_a_runtime_error() {
    let result = run(pass(json!({"InputPath": "$.x.y"})), json!({})).await;
    assert_eq!(result.error.as_deref(), Some("States.Runtime"));
    assert_eq!(
        result.cause.as_deref(),
        Some(
            "An error occurred while executing the state 'S' (entered at the event id #2). Invalid path '$.x.y' : No results for path: $['x']['y']"
        )
    );
}

#[tokio::test]
async fn result_path_into_a_non_object_fails() {
    let result = run(
        pass(json!({"Result": 1, "ResultPath": "$.a.b"})),
        json!({"a": "text"}),
    )
    .await;
    assert_eq!(
        result.error.as_deref(),
        Some("States.ResultPathMatchFailure")
    );
}

#[tokio::test]
async fn context_object_fields() {
    let result = run(
        pass(json!({"Parameters": {
            "id.$": "$$.Execution.Id", "name.$": "$$.Execution.Name", "input.$": "$$.Execution.Input",
            "start.$": "$$.Execution.StartTime", "role.$": "$$.Execution.RoleArn",
            "state.$": "$$.State.Name", "entered.$": "$$.State.EnteredTime",
            "smId.$": "$$.StateMachine.Id", "smName.$": "$$.StateMachine.Name"}})),
        json!({"k": 1}),
    )
    .await;
    let out = result.output.unwrap();
    assert_eq!(
        out["id"],
        "arn:aws:states:us-east-1:123456789012:execution:machine:exec"
    );
    assert_eq!(out["name"], "exec");
    assert_eq!(out["input"], json!({"k": 1}));
    assert!(crate::timestamp::parse(out["start"].as_str().unwrap()).is_some());
    assert!(crate::timestamp::parse(out["entered"].as_str().unwrap()).is_some());
    assert_eq!(
        out["role"],
        "arn:aws:iam::123456789012:role/service-role/StepFunctions-machine-role"
    );
    assert_eq!(out["state"], "S");
    assert_eq!(
        out["smId"],
        "arn:aws:states:us-east-1:123456789012:stateMachine:machine"
    );
    assert_eq!(out["smName"], "machine");
}

#[tokio::test]
async fn map_item_selector_sees_the_item_in_the_context() {
    let result = run(
        json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items",
            "ItemSelector": {"i.$": "$$.Map.Item.Index", "v.$": "$$.Map.Item.Value", "all.$": "$.tag"},
            "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}, "End": true}}}),
        json!({"items": ["a", "b"], "tag": "t"}),
    )
    .await;
    assert_eq!(
        result.output,
        Some(json!([{"i": 0, "v": "a", "all": "t"}, {"i": 1, "v": "b", "all": "t"}]))
    );
}

#[tokio::test]
async fn legacy_iterator_and_parameters_still_work() {
    let result = run(
        json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrencyPath": "$.max",
            "Parameters": {"v.$": "$$.Map.Item.Value"},
            "Iterator": {"StartAt": "I", "States": {"I": {"Type": "Pass", "OutputPath": "$.v", "End": true}}},
            "ResultSelector": {"all.$": "$"}, "ResultPath": "$.out", "End": true}}}),
        json!({"items": [1, 2, 3], "max": 1}),
    )
    .await;
    assert_eq!(
        result.output,
        Some(json!({"items": [1, 2, 3], "max": 1, "out": {"all": [1, 2, 3]}}))
    );
}

#[tokio::test]
async fn items_path_must_be_an_array() {
    let result = run(
        json!({"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items",
            "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}}, "End": true}}}),
        json!({"items": "nope"}),
    )
    .await;
    assert_eq!(result.error.as_deref(), Some("States.Runtime"));
}

#[tokio::test]
async fn tolerated_failures_let_a_map_succeed() {
    let definition = |tolerance: Value| {
        let mut map = json!({"Type": "Map",
            "ItemProcessor": {"StartAt": "C", "States": {
                "C": {"Type": "Choice", "Choices": [{"Variable": "$", "NumericEquals": 0, "Next": "Bad"}], "Default": "Good"},
                "Bad": {"Type": "Fail", "Error": "E", "Cause": "c"},
                "Good": {"Type": "Pass", "End": true}}}, "End": true});
        for (k, v) in tolerance.as_object().unwrap() {
            map[k] = v.clone();
        }
        json!({"StartAt": "M", "States": {"M": map}})
    };
    let result = run(
        definition(json!({"ToleratedFailureCount": 1})),
        json!([1, 0, 2]),
    )
    .await;
    assert_eq!(result.status, ExecutionStatus::Succeeded);
    assert_eq!(
        result.output,
        Some(json!([1, {"Error": "E", "Cause": "c"}, 2]))
    );
    let result = run(
        definition(json!({"ToleratedFailurePercentage": 10})),
        json!([1, 0, 2]),
    )
    .await;
    assert_eq!(
        result.error.as_deref(),
        Some("States.ExceedToleratedFailureThreshold")
    );
    assert_eq!(
        result.cause.as_deref(),
        Some("The specified tolerated failure threshold was exceeded")
    );
    let result = run(definition(json!({})), json!([1, 0, 2])).await;
    assert_eq!(result.error.as_deref(), Some("E"));
}

#[tokio::test]
async fn variables_are_assigned_and_read_across_states_and_scopes() {
    let result = run(
        json!({"StartAt": "Set", "States": {
            "Set": {"Type": "Pass", "Result": {"n": 5}, "Assign": {"count.$": "$.n", "label": "fixed"}, "Next": "Fan"},
            "Fan": {"Type": "Parallel", "Branches": [{"StartAt": "Inner", "States": {"Inner": {"Type": "Pass",
                    "Parameters": {"seen.$": "$count", "label.$": "$label"}, "Assign": {"count": 99}, "End": true}}}],
                "Next": "After"},
            "After": {"Type": "Pass", "Parameters": {"count.$": "$count", "fmt.$": "States.Format('{}-{}', $label, $count)"}, "End": true}}}),
        json!({}),
    )
    .await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        result.cause
    );
    assert_eq!(result.output, Some(json!({"count": 5, "fmt": "fixed-5"})));
    let set_exit = result
        .history
        .iter()
        .find(|e| e.event_type == "PassStateExited" && e.state_name() == Some("Set"))
        .unwrap();
    let details = &set_exit.details.as_ref().unwrap().1;
    assert_eq!(
        details["assignedVariables"],
        json!({"count": "5", "label": "\"fixed\""})
    );
    assert_eq!(
        details["assignedVariablesDetails"],
        json!({"truncated": false})
    );
    let inner = result
        .history
        .iter()
        .find(|e| e.state_name() == Some("Inner") && e.event_type == "PassStateExited")
        .unwrap();
    assert_eq!(
        inner.details.as_ref().unwrap().1["output"],
        json!(r#"{"seen":5,"label":"fixed"}"#)
    );
}

#[tokio::test]
async fn reading_an_unset_variable_fails() {
    let result = run(pass(json!({"Parameters": {"x.$": "$nothing"}})), json!({})).await;
    assert_eq!(result.error.as_deref(), Some("States.Runtime"));
}

#[tokio::test]
async fn choice_assign_and_default() {
    let result = run(
        json!({"StartAt": "C", "States": {
            "C": {"Type": "Choice", "Assign": {"seen": true}, "Choices": [
                {"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big", "Assign": {"size": "big"}}],
                "Default": "Small"},
            "Big": {"Type": "Pass", "Parameters": {"size.$": "$size", "seen.$": "$seen"}, "End": true},
            "Small": {"Type": "Pass", "Result": "small", "End": true}}}),
        json!({"n": 11}),
    )
    .await;
    assert_eq!(result.output, Some(json!({"size": "big", "seen": true})));
    let result = run(
        json!({"StartAt": "C", "States": {
            "C": {"Type": "Choice", "Choices": [{"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"}], "Default": "Small"},
            "Big": {"Type": "Pass", "End": true},
            "Small": {"Type": "Pass", "Result": "small", "End": true}}}),
        json!({"n": 1}),
    )
    .await;
    assert_eq!(result.output, Some(json!("small")));
}

#[tokio::test]
async fn wait_states_pass_instantly_on_the_virtual_clock() {
    let real = std::time::Instant::now();
    let result = run(
        json!({"StartAt": "W1", "States": {
            "W1": {"Type": "Wait", "Seconds": 21600, "Next": "W2"},
            "W2": {"Type": "Wait", "SecondsPath": "$.s", "Next": "W3"},
            "W3": {"Type": "Wait", "TimestampPath": "$.t", "Next": "W4"},
            "W4": {"Type": "Wait", "Timestamp": "2000-01-01T00:00:00Z", "End": true}}}),
        json!({"s": 60, "t": "2000-01-01T00:00:00Z"}),
    )
    .await;
    assert!(real.elapsed() < Duration::from_secs(3));
    assert_eq!(result.status, ExecutionStatus::Succeeded);
    let took = result.stop_date - result.start_date;
    assert!(
        took >= chrono::Duration::seconds(21660) && took < chrono::Duration::seconds(21665),
        "{took}"
    );
    assert_eq!(
        types(&result)[1..3],
        ["WaitStateEntered", "WaitStateExited"]
    );
}

#[tokio::test]
async fn bad_seconds_path_is_a_runtime_error() {
    let result = run(
        json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "SecondsPath": "$.s", "End": true}}}),
        json!({"s": "soon"}),
    )
    .await;
    assert_eq!(result.error.as_deref(), Some("States.Runtime"));
}

#[tokio::test]
async fn state_machine_timeout_times_the_execution_out() {
    let result = run(
        json!({"TimeoutSeconds": 60, "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": true}}}),
        json!({}),
    )
    .await;
    assert_eq!(result.status, ExecutionStatus::TimedOut);
    assert_eq!(result.error, None);
    assert_eq!(
        types(&result),
        ["ExecutionStarted", "WaitStateEntered", "ExecutionTimedOut"]
    );
    assert_eq!(result.describe()["status"], "TIMED_OUT");
}

#[tokio::test]
async fn parallel_waits_overlap_in_virtual_time() {
    let wait = |s: u64| json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": s, "End": true}}});
    let result = run(
        json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": [wait(100), wait(300), wait(200)], "End": true}}}),
        json!({}),
    )
    .await;
    let took = result.stop_date - result.start_date;
    assert!(
        took >= chrono::Duration::seconds(300) && took < chrono::Duration::seconds(303),
        "{took}"
    );
}

#[tokio::test]
async fn real_time_clock_scales_waits() {
    let real = std::time::Instant::now();
    let result = run_with(
        json!({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 60, "End": true}}}),
        json!({}),
        ExecutionOptions {
            clock: crate::Clock::real_time(600.0),
            ..Default::default()
        },
    )
    .await;
    let took = real.elapsed();
    assert_eq!(result.status, ExecutionStatus::Succeeded);
    assert!(
        took >= Duration::from_millis(90) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[tokio::test]
async fn succeed_inside_a_branch_ends_only_the_branch() {
    let result = run(
        json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": [
            {"StartAt": "Done", "States": {"Done": {"Type": "Succeed", "OutputPath": "$.a"}}}], "Next": "After"},
            "After": {"Type": "Pass", "End": true}}}),
        json!({"a": 1}),
    )
    .await;
    assert_eq!(result.output, Some(json!([1])));
    assert!(types(&result).contains(&"SucceedStateExited"));
    assert_eq!(
        result.history.last().unwrap().previous_event_id,
        result.history.len() as u64 - 1
    );
}

#[tokio::test]
async fn aborted_branches_leave_the_virtual_clock_consistent() {
    let real = std::time::Instant::now();
    let result = run(
        json!({"StartAt": "P", "States": {
            "P": {"Type": "Parallel", "Branches": [
                {"StartAt": "Long", "States": {"Long": {"Type": "Wait", "Seconds": 86400, "End": true}}},
                {"StartAt": "Nested", "States": {"Nested": {"Type": "Parallel", "Branches": [
                    {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 50000, "End": true}}}], "End": true}}},
                {"StartAt": "Slow", "States": {"Slow": {"Type": "Wait", "Seconds": 10, "Next": "Boom"},
                    "Boom": {"Type": "Fail", "Error": "E"}}}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "After"}], "End": true},
            "After": {"Type": "Wait", "Seconds": 3600, "End": true}}}),
        json!({}),
    )
    .await;
    assert!(
        real.elapsed() < Duration::from_secs(3),
        "{:?}",
        real.elapsed()
    );
    assert_eq!(result.status, ExecutionStatus::Succeeded);
    let took = result.stop_date - result.start_date;
    assert!(
        took >= chrono::Duration::seconds(3610) && took < chrono::Duration::seconds(3615),
        "{took}"
    );
}

#[tokio::test]
async fn result_path_failures_are_catchable_by_the_state() {
    let definition = |catch_path: Value| {
        json!({"StartAt": "P", "States": {
            "P": {"Type": "Parallel", "Branches": [{"StartAt": "B", "States": {"B": {"Type": "Pass", "End": true}}}],
                "ResultPath": "$.x",
                "Catch": [{"ErrorEquals": ["States.ResultPathMatchFailure"], "ResultPath": catch_path, "Next": "Recover"}],
                "End": true},
            "Recover": {"Type": "Pass", "End": true}}})
    };
    let result = run(definition(json!("$")), json!("just-a-string")).await;
    assert_eq!(result.status, ExecutionStatus::Succeeded);
    assert_eq!(
        result.output.unwrap()["Error"],
        "States.ResultPathMatchFailure"
    );
    let result = run(definition(json!("$.error")), json!("just-a-string")).await;
    assert_eq!(
        result.error.as_deref(),
        Some("States.ResultPathMatchFailure")
    );
}
