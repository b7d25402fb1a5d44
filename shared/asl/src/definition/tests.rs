use serde_json::{Value, json};

use super::*;

fn problems(definition: Value) -> Vec<(String, String)> {
    match StateMachine::load(&definition.to_string(), &HashMap::new()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors
            .0
            .into_iter()
            .map(|e| (e.pointer, e.message))
            .collect(),
    }
}

fn pointers(definition: Value) -> Vec<String> {
    problems(definition).into_iter().map(|(p, _)| p).collect()
}

fn one_state(state: Value) -> Value {
    json!({"StartAt": "S", "States": {"S": state}})
}

#[test]
fn a_full_definition_loads() {
    let definition = json!({
        "Comment": "all the things",
        "Version": "1.0",
        "TimeoutSeconds": 3600,
        "QueryLanguage": "JSONPath",
        "StartAt": "Task",
        "States": {
            "Task": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "${KeysFunction}", "Payload.$": "$"},
                "ResultSelector": {"p.$": "$.Payload"}, "ResultPath": "$.r", "TimeoutSeconds": 30, "HeartbeatSeconds": 10,
                "Retry": [{"ErrorEquals": ["Apiary.Retryable"], "IntervalSeconds": 2, "MaxAttempts": 5, "BackoffRate": 1.5,
                           "MaxDelaySeconds": 20, "JitterStrategy": "FULL"},
                          {"ErrorEquals": ["States.ALL"]}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}],
                "Next": "Choose"},
            "Choose": {"Type": "Choice", "Choices": [
                {"And": [{"Variable": "$.r.p.ready", "BooleanEquals": true}, {"Not": {"Variable": "$.x", "IsPresent": true}}], "Next": "Fan"}],
                "Default": "Poll"},
            "Poll": {"Type": "Wait", "SecondsPath": "$.delay", "Next": "Task"},
            "Fan": {"Type": "Parallel", "Branches": [
                {"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 4,
                    "ItemProcessor": {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "I", "States": {"I": {"Type": "Pass", "End": true}}},
                    "End": true}}}
            ], "Next": "Done"},
            "Done": {"Type": "Succeed"},
            "Failed": {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}
        }
    });
    let subs = HashMap::from([("KeysFunction".to_string(), "keys".to_string())]);
    let machine =
        StateMachine::load(&definition.to_string(), &subs).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        machine.definition()["States"]["Task"]["Parameters"]["FunctionName"],
        "keys"
    );
    let mut names = machine.state_names();
    names.sort_unstable();
    assert_eq!(names, ["Choose", "Done", "Failed", "Fan", "Poll", "Task"]);
}

#[test]
fn invalid_json_is_reported() {
    let errors = StateMachine::load("{nope", &HashMap::new()).unwrap_err();
    assert!(errors.0[0].message.contains("not valid JSON"));
}

#[test]
fn missing_placeholders_are_reported() {
    let errors = StateMachine::load(
        r#"{"StartAt":"S","States":{"S":{"Type":"Task","Resource":"${Fn}","End":true}}}"#,
        &HashMap::new(),
    )
    .unwrap_err();
    assert_eq!(errors.0[0].pointer, "/States/S/Resource");
}

#[test]
fn unknown_fields_are_rejected() {
    assert_eq!(
        pointers(one_state(json!({"Type": "Pass", "End": true, "Bogus": 1}))),
        ["/States/S/Bogus"]
    );
    assert_eq!(
        pointers(json!({"StartAt": "S", "Extra": 1, "States": {"S": {"Type": "Succeed"}}})),
        ["/Extra"]
    );
    assert_eq!(
        pointers(one_state(json!({"Type": "Succeed", "Next": "S"}))),
        ["/States/S/Next"]
    );
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": true,
            "Retry": [{"ErrorEquals": ["X"], "Bogus": 1}]})
        )),
        ["/States/S/Retry/0/Bogus"]
    );
    assert_eq!(
        pointers(one_state(json!({"Type": "Nope"}))),
        ["/States/S/Type"]
    );
}

#[test]
fn dangling_and_missing_transitions() {
    assert_eq!(
        pointers(one_state(json!({"Type": "Pass", "Next": "Nowhere"}))),
        ["/States/S/Next"]
    );
    assert_eq!(pointers(one_state(json!({"Type": "Pass"}))), ["/States/S"]);
    assert_eq!(
        pointers(one_state(json!({"Type": "Pass", "Next": "S", "End": true}))),
        ["/States/S"]
    );
    assert_eq!(
        pointers(json!({"StartAt": "Missing", "States": {"S": {"Type": "Succeed"}}})),
        ["/StartAt"]
    );
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Choice", "Choices": [{"Variable": "$.a", "IsNull": true, "Next": "X"}], "Default": "Y"})
        )),
        ["/States/S/Choices/0/Next", "/States/S/Default"]
    );
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": true,
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "X"}]})
        )),
        ["/States/S/Catch/0/Next"]
    );
}

#[test]
fn unreachable_states_are_reported() {
    assert_eq!(
        pointers(
            json!({"StartAt": "A", "States": {"A": {"Type": "Succeed"}, "Orphan": {"Type": "Succeed"}}})
        ),
        ["/States/Orphan"]
    );
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Parallel", "End": true, "Branches": [
            {"StartAt": "A", "States": {"A": {"Type": "Succeed"}, "B": {"Type": "Succeed"}}}]})
        )),
        ["/States/S/Branches/0/States/B"]
    );
}

#[test]
fn states_all_must_be_alone_and_last() {
    let task = |retry: Value| {
        one_state(
            json!({"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": true, "Retry": retry}),
        )
    };
    assert_eq!(
        pointers(task(json!([{"ErrorEquals": ["States.ALL", "X"]}]))),
        ["/States/S/Retry/0/ErrorEquals"]
    );
    assert_eq!(
        pointers(task(
            json!([{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}])
        )),
        ["/States/S/Retry/0/ErrorEquals"]
    );
    assert_eq!(
        pointers(task(json!([{"ErrorEquals": []}]))),
        ["/States/S/Retry/0/ErrorEquals"]
    );
}

#[test]
fn bad_paths_and_intrinsics_are_reported() {
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Pass", "End": true, "InputPath": "$.a["})
        )),
        ["/States/S/InputPath"]
    );
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Pass", "End": true, "ResultPath": "$.a[*]"})
        )),
        ["/States/S/ResultPath"]
    );
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Pass", "End": true, "ResultPath": "$$.a"})
        )),
        ["/States/S/ResultPath"]
    );
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Pass", "End": true, "Parameters": {"a.$": "States.Unknown()"}})
        )),
        ["/States/S/Parameters/a.$"]
    );
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Pass", "End": true, "Parameters": {"a": {"b.$": "no-dollar"}}})
        )),
        ["/States/S/Parameters/a/b.$"]
    );
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Pass", "End": true, "Assign": {"bad-name": 1}})
        )),
        ["/States/S/Assign/bad-name"]
    );
}

#[test]
fn unsupported_features_are_rejected_clearly() {
    let found = problems(
        json!({"QueryLanguage": "JSONata", "StartAt": "S", "States": {"S": {"Type": "Succeed"}}}),
    );
    assert_eq!(found[0].0, "/QueryLanguage");
    assert!(found[0].1.contains("JSONata"));
    let found = problems(one_state(
        json!({"Type": "Pass", "End": true, "Output": "{% 1 %}"}),
    ));
    assert!(found[0].1.contains("JSONata"));
    let found = problems(one_state(json!({"Type": "Map", "End": true,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "I", "States": {"I": {"Type": "Succeed"}}}})));
    assert!(
        found
            .iter()
            .any(|(p, m)| p == "/States/S/ItemProcessor/ProcessorConfig/Mode"
                && m.contains("Distributed"))
    );
    let found = problems(one_state(
        json!({"Type": "Map", "End": true, "ItemReader": {},
        "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}}),
    ));
    assert_eq!(found[0].0, "/States/S/ItemReader");
    let found = problems(one_state(
        json!({"Type": "Task", "Resource": "arn:aws:states:::ecs:runTask.sync", "End": true}),
    ));
    assert!(found[0].1.contains(".sync"));
}

#[test]
fn field_values_are_checked() {
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Wait", "Seconds": 1, "Timestamp": "2024-01-01T00:00:00Z", "End": true})
        )),
        ["/States/S"]
    );
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Wait", "Seconds": -1, "End": true})
        )),
        ["/States/S/Seconds"]
    );
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Fail", "Error": "E", "ErrorPath": "$.e"})
        )),
        ["/States/S"]
    );
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": true,
            "TimeoutSeconds": 10, "HeartbeatSeconds": 10})
        )),
        ["/States/S/HeartbeatSeconds"]
    );
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": true,
            "TimeoutSeconds": 10, "TimeoutSecondsPath": "$.t"})
        )),
        ["/States/S"]
    );
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:1:function:f", "End": true,
            "Retry": [{"ErrorEquals": ["X"], "BackoffRate": 0.5, "IntervalSeconds": 0}]})
        )),
        [
            "/States/S/Retry/0/IntervalSeconds",
            "/States/S/Retry/0/BackoffRate"
        ]
    );
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Task", "Resource": "not-an-arn", "End": true})
        )),
        ["/States/S/Resource"]
    );
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Parallel", "Branches": [], "End": true})
        )),
        ["/States/S/Branches"]
    );
    assert_eq!(
        pointers(one_state(
            json!({"Type": "Map", "End": true, "MaxConcurrency": -1,
            "ItemProcessor": {"StartAt": "I", "States": {"I": {"Type": "Succeed"}}}})
        )),
        ["/States/S/MaxConcurrency"]
    );
    assert_eq!(pointers(json!({"StartAt": "S", "States": {}})), ["/States"]);
    assert_eq!(
        pointers(json!({"States": {"S": {"Type": "Succeed"}}})),
        [""]
    );
}

#[test]
fn validate_reports_every_problem() {
    let errors = validate(
        &json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B", "Bogus": 1}, "C": {"Type": "Pass"}}}).to_string(),
        &HashMap::new(),
    )
    .unwrap_err();
    let pointers: Vec<&str> = errors.errors().iter().map(|e| e.pointer.as_str()).collect();
    assert_eq!(pointers, ["/States/A/Bogus", "/States/C", "/States/A/Next"]);
}
