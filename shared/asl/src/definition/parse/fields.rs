//! Parsing of the fields states share: paths, numbers, transitions, Wait and Fail.

use serde_json::{Map, Value};

use super::{Errors, at, err};
use crate::definition::{FailField, NumberField, PathField, ResultPathField, Transition, WaitFor};
use crate::path::{PathExpr, PathRoot};
use crate::template::{Template, parse_dynamic};

pub(super) fn template_field(
    value: &Value,
    pointer: &str,
    field: &str,
    errors: &mut Errors,
) -> Template {
    if !value.is_object() && field != "Parameters" {
        err(errors, pointer, format!("{field} must be an object"));
    }
    Template::compile(value, pointer, errors)
}

pub(super) fn path_field(
    map: &Map<String, Value>,
    field: &str,
    pointer: &str,
    errors: &mut Errors,
) -> PathField {
    match map.get(field) {
        None => PathField::Whole,
        Some(Value::Null) => PathField::Empty,
        Some(Value::String(s)) => match PathExpr::parse(s) {
            Ok(p) => PathField::Path(p),
            Err(e) => {
                err(
                    errors,
                    &at(pointer, field),
                    format!("The value for the field '{field}' must be a valid JSONPath: {e}"),
                );
                PathField::Whole
            }
        },
        Some(_) => {
            err(
                errors,
                &at(pointer, field),
                format!("{field} must be a string or null"),
            );
            PathField::Whole
        }
    }
}

pub(super) fn reference_path(
    text: &str,
    pointer: &str,
    field: &str,
    errors: &mut Errors,
) -> Option<PathExpr> {
    match PathExpr::parse(text) {
        Ok(p) if p.root == PathRoot::Input && p.is_reference() => Some(p),
        Ok(_) => {
            err(
                errors,
                pointer,
                format!(
                    "The value for the field '{field}' must be a valid Reference Path ('$' followed by names and indexes only)"
                ),
            );
            None
        }
        Err(e) => {
            err(
                errors,
                pointer,
                format!("The value for the field '{field}' must be a valid Reference Path: {e}"),
            );
            None
        }
    }
}

pub(super) fn result_path(
    value: Option<&Value>,
    pointer: &str,
    errors: &mut Errors,
) -> ResultPathField {
    match value {
        None => ResultPathField::Replace,
        Some(Value::Null) => ResultPathField::Discard,
        Some(Value::String(s)) if s == "$" => ResultPathField::Replace,
        Some(Value::String(s)) => reference_path(s, pointer, "ResultPath", errors)
            .map_or(ResultPathField::Replace, ResultPathField::Path),
        Some(_) => {
            err(errors, pointer, "ResultPath must be a string or null");
            ResultPathField::Replace
        }
    }
}

pub(super) fn transition(
    map: &Map<String, Value>,
    type_name: &str,
    pointer: &str,
    errors: &mut Errors,
) -> Option<Transition> {
    let terminal = matches!(type_name, "Succeed" | "Fail");
    if terminal || type_name == "Choice" {
        return Some(Transition::End);
    }
    let next = map.get("Next");
    let end = map.get("End");
    match (next, end) {
        (Some(_), Some(_)) => {
            err(
                errors,
                pointer,
                "A state must not have both 'Next' and 'End'",
            );
            None
        }
        (Some(Value::String(s)), None) => Some(Transition::Next(s.clone())),
        (Some(_), None) => {
            err(errors, &at(pointer, "Next"), "Next must be a string");
            None
        }
        (None, Some(Value::Bool(true))) => Some(Transition::End),
        (None, Some(_)) => {
            err(errors, &at(pointer, "End"), "End must be true when present");
            None
        }
        (None, None) => {
            err(
                errors,
                pointer,
                "Missing 'Next' or 'End': a non-terminal state must name its next state or end the execution",
            );
            None
        }
    }
}

pub(super) fn number(
    value: &Value,
    pointer: &str,
    field: &str,
    errors: &mut Errors,
) -> Option<f64> {
    match value.as_f64() {
        Some(n) => Some(n),
        None => {
            err(errors, pointer, format!("{field} must be a number"));
            None
        }
    }
}

pub(super) fn positive_integer(
    value: &Value,
    pointer: &str,
    field: &str,
    errors: &mut Errors,
) -> Option<u64> {
    match value.as_u64() {
        Some(n) if n > 0 => Some(n),
        _ => {
            err(
                errors,
                pointer,
                format!("{field} must be a positive integer"),
            );
            None
        }
    }
}

/// `Field` or `FieldPath`, never both.
pub(super) fn number_or_path(
    map: &Map<String, Value>,
    field: &str,
    pointer: &str,
    errors: &mut Errors,
    min: f64,
) -> Option<NumberField> {
    let path_field = format!("{field}Path");
    match (map.get(field), map.get(&path_field)) {
        (Some(_), Some(_)) => {
            err(
                errors,
                pointer,
                format!("'{field}' and '{path_field}' are mutually exclusive"),
            );
            None
        }
        (Some(v), None) => {
            let here = at(pointer, field);
            let n = number(v, &here, field, errors)?;
            if n < min || (v.is_f64() && field != "ToleratedFailurePercentage") {
                err(
                    errors,
                    &here,
                    format!("{field} must be an integer of at least {min}"),
                );
                return None;
            }
            Some(NumberField::Fixed(n))
        }
        (None, Some(Value::String(s))) => {
            reference_path_any(s, &at(pointer, &path_field), &path_field, errors)
                .map(NumberField::Path)
        }
        (None, Some(_)) => {
            err(
                errors,
                &at(pointer, &path_field),
                format!("{path_field} must be a string"),
            );
            None
        }
        (None, None) => None,
    }
}

/// A reference path that may also read the context object or a variable.
pub(super) fn reference_path_any(
    text: &str,
    pointer: &str,
    field: &str,
    errors: &mut Errors,
) -> Option<PathExpr> {
    match PathExpr::parse(text) {
        Ok(p) if p.is_reference() => Some(p),
        Ok(_) => {
            err(
                errors,
                pointer,
                format!("The value for the field '{field}' must be a valid Reference Path"),
            );
            None
        }
        Err(e) => {
            err(
                errors,
                pointer,
                format!("The value for the field '{field}' must be a valid Reference Path: {e}"),
            );
            None
        }
    }
}

pub(super) fn wait(
    map: &Map<String, Value>,
    pointer: &str,
    errors: &mut Errors,
) -> Option<WaitFor> {
    let present: Vec<&str> = ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"]
        .into_iter()
        .filter(|f| map.contains_key(*f))
        .collect();
    if present.len() != 1 {
        err(
            errors,
            pointer,
            "A Wait state must have exactly one of Seconds, SecondsPath, Timestamp, TimestampPath",
        );
        return None;
    }
    let field = present[0];
    let here = at(pointer, field);
    let value = &map[field];
    match field {
        "Seconds" => match value.as_u64() {
            Some(n) => Some(WaitFor::Seconds(n as f64)),
            None => {
                err(errors, &here, "Seconds must be a non-negative integer");
                None
            }
        },
        "Timestamp" => match value.as_str().and_then(crate::timestamp::parse) {
            Some(t) => Some(WaitFor::Timestamp(t)),
            None => {
                err(
                    errors,
                    &here,
                    "Timestamp must be an RFC 3339 timestamp such as 2016-03-14T01:59:00Z",
                );
                None
            }
        },
        _ => {
            let text = value.as_str().unwrap_or_default();
            let path = reference_path_any(text, &here, field, errors)?;
            Some(if field == "SecondsPath" {
                WaitFor::SecondsPath(path)
            } else {
                WaitFor::TimestampPath(path)
            })
        }
    }
}

pub(super) fn fail_field(
    map: &Map<String, Value>,
    field: &str,
    pointer: &str,
    errors: &mut Errors,
) -> FailField {
    let path_field = format!("{field}Path");
    match (map.get(field), map.get(&path_field)) {
        (Some(_), Some(_)) => {
            err(
                errors,
                pointer,
                format!("'{field}' and '{path_field}' are mutually exclusive"),
            );
            FailField::Absent
        }
        (Some(Value::String(s)), None) => FailField::Literal(s.clone()),
        (Some(_), None) => {
            err(
                errors,
                &at(pointer, field),
                format!("{field} must be a string"),
            );
            FailField::Absent
        }
        (None, Some(Value::String(s))) => match parse_dynamic(s) {
            Ok(d) => FailField::Dynamic(d),
            Err(e) => {
                err(
                    errors,
                    &at(pointer, &path_field),
                    format!(
                        "The value for the field '{path_field}' must be a valid JSONPath or intrinsic function: {e}"
                    ),
                );
                FailField::Absent
            }
        },
        (None, Some(_)) => {
            err(
                errors,
                &at(pointer, &path_field),
                format!("{path_field} must be a string"),
            );
            FailField::Absent
        }
        (None, None) => FailField::Absent,
    }
}
