use serde_json::{Value, json};

use super::*;
use crate::path::{ContextObject, Scope};

fn rule(value: Value) -> Result<ChoiceRule, Vec<ValidationError>> {
    let mut errors = Vec::new();
    let parsed = parse_rule(&value, "/States/C/Choices/0", &mut errors);
    if errors.is_empty() {
        Ok(parsed.unwrap())
    } else {
        Err(errors)
    }
}

fn check(condition: Value, input: Value) -> Result<bool, StatesError> {
    let mut condition = condition;
    condition["Next"] = json!("N");
    let parsed = rule(condition).unwrap_or_else(|e| panic!("{e:?}"));
    let context = ContextObject::default();
    let vars = Scope::root();
    let env = Env {
        input: &input,
        context: &context,
        vars: &vars,
    };
    evaluate(&parsed.condition, &env)
}

fn yes(condition: Value, input: Value) {
    assert!(
        check(condition.clone(), input.clone()).unwrap(),
        "{condition} on {input}"
    );
}

fn no(condition: Value, input: Value) {
    assert!(
        !check(condition.clone(), input.clone()).unwrap(),
        "{condition} on {input}"
    );
}

#[test]
fn string_comparisons() {
    let input = json!({"s": "b", "t": "b"});
    yes(
        json!({"Variable": "$.s", "StringEquals": "b"}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.s", "StringLessThan": "c"}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.s", "StringGreaterThan": "a"}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.s", "StringLessThanEquals": "b"}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.s", "StringGreaterThanEquals": "b"}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.s", "StringEqualsPath": "$.t"}),
        input.clone(),
    );
    no(
        json!({"Variable": "$.s", "StringLessThanPath": "$.t"}),
        input.clone(),
    );
    no(json!({"Variable": "$.s", "StringEquals": "B"}), input);
    no(
        json!({"Variable": "$.n", "StringEquals": "1"}),
        json!({"n": 1}),
    );
}

#[test]
fn numeric_comparisons() {
    let input = json!({"n": 5, "f": 5.0, "m": 7});
    yes(
        json!({"Variable": "$.n", "NumericEquals": 5}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.f", "NumericEquals": 5}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.n", "NumericLessThan": 5.5}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.n", "NumericGreaterThan": 4}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.n", "NumericLessThanEquals": 5}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.n", "NumericGreaterThanEquals": 5}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.n", "NumericLessThanPath": "$.m"}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.m", "NumericGreaterThanEqualsPath": "$.n"}),
        input.clone(),
    );
    no(
        json!({"Variable": "$.n", "NumericEqualsPath": "$.m"}),
        input,
    );
    no(
        json!({"Variable": "$.s", "NumericEquals": 1}),
        json!({"s": "1"}),
    );
}

#[test]
fn boolean_and_timestamp_comparisons() {
    let input = json!({"b": true, "t": "2024-01-01T00:00:00Z", "u": "2024-01-01T01:00:00+01:00", "x": "nope"});
    yes(
        json!({"Variable": "$.b", "BooleanEquals": true}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.b", "BooleanEqualsPath": "$.b"}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.t", "TimestampEquals": "2024-01-01T00:00:00Z"}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.t", "TimestampEqualsPath": "$.u"}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.t", "TimestampLessThan": "2024-01-02T00:00:00Z"}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.t", "TimestampGreaterThan": "2023-12-31T00:00:00Z"}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.t", "TimestampLessThanEquals": "2024-01-01T00:00:00Z"}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.t", "TimestampGreaterThanEqualsPath": "$.u"}),
        input.clone(),
    );
    no(
        json!({"Variable": "$.x", "TimestampEquals": "2024-01-01T00:00:00Z"}),
        input,
    );
}

#[test]
fn type_tests_and_presence() {
    let input = json!({"n": 1, "s": "x", "b": false, "z": null, "t": "2024-01-01T00:00:00Z"});
    yes(json!({"Variable": "$.z", "IsNull": true}), input.clone());
    yes(json!({"Variable": "$.n", "IsNull": false}), input.clone());
    yes(json!({"Variable": "$.n", "IsNumeric": true}), input.clone());
    yes(json!({"Variable": "$.s", "IsString": true}), input.clone());
    yes(json!({"Variable": "$.b", "IsBoolean": true}), input.clone());
    yes(
        json!({"Variable": "$.t", "IsTimestamp": true}),
        input.clone(),
    );
    no(
        json!({"Variable": "$.s", "IsTimestamp": true}),
        input.clone(),
    );
    yes(
        json!({"Variable": "$.missing", "IsPresent": false}),
        input.clone(),
    );
    yes(json!({"Variable": "$.z", "IsPresent": true}), input.clone());
    no(json!({"Variable": "$.missing", "IsPresent": true}), input);
}

#[test]
fn string_matches_wildcards_and_escapes() {
    assert!(string_matches("log-2024.txt", "log-*.txt"));
    assert!(string_matches("anything", "*"));
    assert!(string_matches("a*b", r"a\*b"));
    assert!(!string_matches("axb", r"a\*b"));
    assert!(string_matches(r"a\b", r"a\\b"));
    assert!(string_matches("abcabc", "*abc"));
    assert!(!string_matches("abc", "*abd"));
    assert!(string_matches("", "*"));
    yes(
        json!({"Variable": "$.f", "StringMatches": "*.log"}),
        json!({"f": "x.log"}),
    );
}

#[test]
fn and_or_not() {
    let input = json!({"a": 1, "b": "x"});
    yes(
        json!({"And": [{"Variable": "$.a", "NumericEquals": 1}, {"Variable": "$.b", "StringEquals": "x"}]}),
        input.clone(),
    );
    no(
        json!({"And": [{"Variable": "$.a", "NumericEquals": 1}, {"Variable": "$.b", "StringEquals": "y"}]}),
        input.clone(),
    );
    yes(
        json!({"Or": [{"Variable": "$.a", "NumericEquals": 2}, {"Variable": "$.b", "StringEquals": "x"}]}),
        input.clone(),
    );
    yes(
        json!({"Not": {"Variable": "$.a", "NumericEquals": 2}}),
        input.clone(),
    );
    yes(
        json!({"Not": {"And": [{"Variable": "$.nope", "IsPresent": true}]}}),
        input,
    );
}

#[test]
fn missing_variable_is_a_runtime_error() {
    let err = check(
        json!({"Variable": "$.missing", "StringEquals": "x"}),
        json!({}),
    )
    .unwrap_err();
    assert_eq!(err.error, "States.Runtime");
    assert_eq!(
        err.cause.unwrap(),
        "Invalid path '$.missing': The choice state's condition path references an invalid value."
    );
}

#[test]
fn malformed_rules_are_reported_at_their_pointer() {
    let errors = rule(json!({"Variable": "$.a", "Next": "N"})).unwrap_err();
    assert_eq!(errors[0].pointer, "/States/C/Choices/0");
    let errors = rule(json!({"Variable": "$.a", "StringEquals": 1, "Next": "N"})).unwrap_err();
    assert_eq!(errors[0].pointer, "/States/C/Choices/0/StringEquals");
    let errors =
        rule(json!({"Variable": "$.a", "StringEquals": "x", "NumericEquals": 1, "Next": "N"}))
            .unwrap_err();
    assert!(!errors.is_empty());
    let errors = rule(json!({"Variable": "$.a", "StringEquals": "x"})).unwrap_err();
    assert!(errors[0].message.contains("Next"));
    let errors =
        rule(json!({"And": [{"Variable": "$.a", "StringEquals": "x", "Next": "N"}], "Next": "N"}))
            .unwrap_err();
    assert_eq!(errors[0].pointer, "/States/C/Choices/0/And/0/Next");
    let errors = rule(json!({"Variable": "$.a", "IsPresentPath": "$.b", "Next": "N"})).unwrap_err();
    assert!(!errors.is_empty());
    let errors = rule(json!({"Condition": "{% true %}", "Next": "N"})).unwrap_err();
    assert!(errors[0].message.contains("JSONata"));
    let errors =
        rule(json!({"Variable": "$.a", "TimestampEquals": "yesterday", "Next": "N"})).unwrap_err();
    assert_eq!(errors[0].pointer, "/States/C/Choices/0/TimestampEquals");
}
