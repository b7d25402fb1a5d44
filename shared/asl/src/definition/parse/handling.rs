//! Retry and Catch lists.

use serde_json::{Map, Value};

use super::fields::{positive_integer, result_path};
use super::{Errors, JSONATA_FIELDS, at, err};
use crate::definition::{Catcher, Retrier, parse_assign};
use crate::error::names;

pub(super) fn error_equals(
    map: &Map<String, Value>,
    pointer: &str,
    errors: &mut Errors,
) -> Vec<String> {
    let here = at(pointer, "ErrorEquals");
    let Some(items) = map
        .get("ErrorEquals")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    else {
        err(
            errors,
            &here,
            "ErrorEquals must be a non-empty array of error names",
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.as_str() {
            Some(name) => out.push(name.to_string()),
            None => err(
                errors,
                &format!("{here}/{i}"),
                "An error name must be a string",
            ),
        }
    }
    if out.iter().any(|e| e == names::ALL) && out.len() > 1 {
        err(errors, &here, "States.ALL must appear alone in ErrorEquals");
    }
    out
}

/// `States.ALL` only in the last entry of a Retry or Catch list.
pub(super) fn check_all_is_last(lists: &[Vec<String>], pointer: &str, errors: &mut Errors) {
    for (i, list) in lists.iter().enumerate() {
        if i + 1 < lists.len() && list.iter().any(|e| e == names::ALL) {
            err(
                errors,
                &format!("{pointer}/{i}/ErrorEquals"),
                "States.ALL must appear only in the last entry",
            );
        }
    }
}

pub(super) fn retriers(value: &Value, pointer: &str, errors: &mut Errors) -> Vec<Retrier> {
    let Some(items) = value.as_array() else {
        err(errors, pointer, "Retry must be an array");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let here = format!("{pointer}/{i}");
        let Some(map) = item.as_object() else {
            err(errors, &here, "A retrier must be an object");
            continue;
        };
        for key in map.keys() {
            if !matches!(
                key.as_str(),
                "ErrorEquals"
                    | "IntervalSeconds"
                    | "MaxAttempts"
                    | "BackoffRate"
                    | "MaxDelaySeconds"
                    | "JitterStrategy"
                    | "Comment"
            ) {
                err(
                    errors,
                    &at(&here, key),
                    format!("Field '{key}' is not supported in a retrier"),
                );
            }
        }
        let error_equals = error_equals(map, &here, errors);
        let interval_seconds = map
            .get("IntervalSeconds")
            .and_then(|v| {
                positive_integer(v, &at(&here, "IntervalSeconds"), "IntervalSeconds", errors)
            })
            .map_or(1.0, |n| n as f64);
        let max_attempts = match map.get("MaxAttempts") {
            None => 3,
            Some(v) => v.as_u64().unwrap_or_else(|| {
                err(
                    errors,
                    &at(&here, "MaxAttempts"),
                    "MaxAttempts must be a non-negative integer",
                );
                0
            }),
        };
        let backoff_rate = match map.get("BackoffRate") {
            None => 2.0,
            Some(v) => match v.as_f64() {
                Some(n) if n >= 1.0 => n,
                _ => {
                    err(
                        errors,
                        &at(&here, "BackoffRate"),
                        "BackoffRate must be a number greater than or equal to 1.0",
                    );
                    2.0
                }
            },
        };
        let max_delay_seconds = map
            .get("MaxDelaySeconds")
            .and_then(|v| {
                positive_integer(v, &at(&here, "MaxDelaySeconds"), "MaxDelaySeconds", errors)
            })
            .map(|n| n as f64);
        let jitter_full = match map.get("JitterStrategy") {
            None => false,
            Some(Value::String(s)) if s == "FULL" => true,
            Some(Value::String(s)) if s == "NONE" => false,
            Some(_) => {
                err(
                    errors,
                    &at(&here, "JitterStrategy"),
                    "JitterStrategy must be FULL or NONE",
                );
                false
            }
        };
        out.push(Retrier {
            error_equals,
            interval_seconds,
            max_attempts,
            backoff_rate,
            max_delay_seconds,
            jitter_full,
        });
    }
    let lists: Vec<Vec<String>> = out.iter().map(|r| r.error_equals.clone()).collect();
    check_all_is_last(&lists, pointer, errors);
    out
}

pub(super) fn catchers(value: &Value, pointer: &str, errors: &mut Errors) -> Vec<Catcher> {
    let Some(items) = value.as_array() else {
        err(errors, pointer, "Catch must be an array");
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let here = format!("{pointer}/{i}");
        let Some(map) = item.as_object() else {
            err(errors, &here, "A catcher must be an object");
            continue;
        };
        for key in map.keys() {
            if !matches!(
                key.as_str(),
                "ErrorEquals" | "ResultPath" | "Next" | "Assign" | "Comment"
            ) {
                let message = if JSONATA_FIELDS.contains(&key.as_str()) {
                    format!(
                        "Field '{key}' is only supported in JSONata states, which this engine does not support"
                    )
                } else {
                    format!("Field '{key}' is not supported in a catcher")
                };
                err(errors, &at(&here, key), message);
            }
        }
        let error_equals = error_equals(map, &here, errors);
        let result_path = result_path(map.get("ResultPath"), &at(&here, "ResultPath"), errors);
        let assign = map
            .get("Assign")
            .map(|v| parse_assign(v, &at(&here, "Assign"), errors));
        let next = match map.get("Next") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                err(errors, &here, "A catcher must have a string 'Next'");
                continue;
            }
        };
        out.push(Catcher {
            error_equals,
            result_path,
            next,
            assign,
        });
    }
    let lists: Vec<Vec<String>> = out.iter().map(|c| c.error_equals.clone()).collect();
    check_all_is_last(&lists, pointer, errors);
    out
}
