//! Field-level parsing of states, reporting every problem with its JSON pointer.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{
    Catcher, FailField, Graph, Kind, MapSpec, NumberField, PathField, Resource, ResultPathField,
    Retrier, State, TaskSpec, Transition, WaitFor, parse_assign,
};
use crate::error::{ValidationError, names, pointer_token};
use crate::path::{PathExpr, PathRoot};
use crate::template::{Template, parse_dynamic};

type Errors = Vec<ValidationError>;

fn err(errors: &mut Errors, pointer: &str, message: impl Into<String>) {
    errors.push(ValidationError {
        pointer: pointer.to_string(),
        message: message.into(),
    });
}

fn at(pointer: &str, key: &str) -> String {
    format!("{pointer}/{}", pointer_token(key))
}

const JSONATA_FIELDS: [&str; 4] = ["Arguments", "Output", "Items", "Condition"];

/// Parses the top level: returns the root graph and the state machine's TimeoutSeconds.
pub(super) fn definition(value: &Value, errors: &mut Errors) -> Option<(Arc<Graph>, Option<u64>)> {
    let Some(map) = value.as_object() else {
        err(errors, "", "The definition must be a JSON object");
        return None;
    };
    check_query_language(map, "", errors);
    for key in map.keys() {
        if !matches!(
            key.as_str(),
            "Comment" | "StartAt" | "States" | "TimeoutSeconds" | "Version" | "QueryLanguage"
        ) {
            err(
                errors,
                &at("", key),
                format!("Field '{key}' is not supported at the top level of a state machine"),
            );
        }
    }
    if let Some(version) = map.get("Version")
        && version != "1.0"
    {
        err(errors, "/Version", "Version must be \"1.0\"");
    }
    let timeout = map
        .get("TimeoutSeconds")
        .and_then(|v| positive_integer(v, "/TimeoutSeconds", "TimeoutSeconds", errors));
    let graph = graph(map, "", errors)?;
    Some((graph, timeout))
}

fn check_query_language(map: &Map<String, Value>, pointer: &str, errors: &mut Errors) {
    match map.get("QueryLanguage") {
        None => {}
        Some(Value::String(s)) if s == "JSONPath" => {}
        Some(Value::String(s)) if s == "JSONata" => err(
            errors,
            &at(pointer, "QueryLanguage"),
            "The JSONata query language is not supported by this engine; use JSONPath",
        ),
        Some(_) => err(
            errors,
            &at(pointer, "QueryLanguage"),
            "QueryLanguage must be \"JSONPath\" or \"JSONata\"",
        ),
    }
}

/// Parses `StartAt` + `States` and checks the transitions between them.
fn graph(map: &Map<String, Value>, pointer: &str, errors: &mut Errors) -> Option<Arc<Graph>> {
    let start_at = match map.get("StartAt") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            err(errors, &at(pointer, "StartAt"), "StartAt must be a string");
            None
        }
        None => {
            err(errors, pointer, "Missing required field 'StartAt'");
            None
        }
    };
    let states_pointer = at(pointer, "States");
    let states_map = match map.get("States") {
        Some(Value::Object(m)) if !m.is_empty() => Some(m),
        Some(Value::Object(_)) => {
            err(
                errors,
                &states_pointer,
                "States must name at least one state",
            );
            None
        }
        Some(_) => {
            err(errors, &states_pointer, "States must be an object");
            None
        }
        None => {
            err(errors, pointer, "Missing required field 'States'");
            None
        }
    };
    let mut states = HashMap::new();
    for (name, value) in states_map.into_iter().flatten() {
        let state_pointer = at(&states_pointer, name);
        if name.is_empty() || name.chars().count() > 80 {
            err(
                errors,
                &state_pointer,
                "A state name must be 1 to 80 characters long",
            );
        }
        if let Some(state) = state(name, value, &state_pointer, errors) {
            states.insert(name.clone(), Arc::new(state));
        }
    }
    let graph = Graph {
        start_at: start_at?,
        states,
    };
    if states_map.is_some() {
        super::graph::check(&graph, states_map?, pointer, errors);
    }
    Some(Arc::new(graph))
}

fn allowed_fields(type_name: &str) -> &'static [&'static str] {
    match type_name {
        "Pass" => &[
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "Result",
            "Assign",
            "Next",
            "End",
        ],
        "Task" => &[
            "Resource",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Assign",
            "Retry",
            "Catch",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
            "Next",
            "End",
        ],
        "Choice" => &["InputPath", "OutputPath", "Choices", "Default", "Assign"],
        "Wait" => &[
            "InputPath",
            "OutputPath",
            "Seconds",
            "SecondsPath",
            "Timestamp",
            "TimestampPath",
            "Assign",
            "Next",
            "End",
        ],
        "Succeed" => &["InputPath", "OutputPath"],
        "Fail" => &["Error", "ErrorPath", "Cause", "CausePath"],
        "Parallel" => &[
            "Branches",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Assign",
            "Retry",
            "Catch",
            "Next",
            "End",
        ],
        "Map" => &[
            "ItemProcessor",
            "Iterator",
            "ItemsPath",
            "ItemSelector",
            "Parameters",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "ResultSelector",
            "Assign",
            "Retry",
            "Catch",
            "Next",
            "End",
            "Label",
        ],
        _ => &[],
    }
}

fn state(name: &str, value: &Value, pointer: &str, errors: &mut Errors) -> Option<State> {
    let Some(map) = value.as_object() else {
        err(errors, pointer, "A state must be an object");
        return None;
    };
    let type_name = match map.get("Type") {
        Some(Value::String(t)) => t.as_str(),
        Some(_) => {
            err(errors, &at(pointer, "Type"), "Type must be a string");
            return None;
        }
        None => {
            err(errors, pointer, "Missing required field 'Type'");
            return None;
        }
    };
    let allowed = allowed_fields(type_name);
    if allowed.is_empty() {
        err(
            errors,
            &at(pointer, "Type"),
            format!("'{type_name}' is not a valid state type"),
        );
        return None;
    }
    check_query_language(map, pointer, errors);
    for key in map.keys() {
        if matches!(key.as_str(), "Type" | "Comment" | "QueryLanguage")
            || allowed.contains(&key.as_str())
        {
            continue;
        }
        let message = if JSONATA_FIELDS.contains(&key.as_str()) {
            format!(
                "Field '{key}' is only supported in JSONata states, which this engine does not support"
            )
        } else if matches!(key.as_str(), "ItemReader" | "ItemBatcher" | "ResultWriter") {
            format!("Field '{key}' belongs to Distributed Map, which this engine does not support")
        } else {
            format!("Field '{key}' is not supported by {type_name} states")
        };
        err(errors, &at(pointer, key), message);
    }

    let input_path = path_field(map, "InputPath", pointer, errors);
    let output_path = path_field(map, "OutputPath", pointer, errors);
    let result_path = result_path(map.get("ResultPath"), &at(pointer, "ResultPath"), errors);
    let parameters = map
        .get("Parameters")
        .map(|v| template_field(v, &at(pointer, "Parameters"), "Parameters", errors));
    let result_selector = map
        .get("ResultSelector")
        .map(|v| template_field(v, &at(pointer, "ResultSelector"), "ResultSelector", errors));
    let assign = map
        .get("Assign")
        .map(|v| parse_assign(v, &at(pointer, "Assign"), errors));
    let transition = transition(map, type_name, pointer, errors);
    let retry = map
        .get("Retry")
        .map(|v| retriers(v, &at(pointer, "Retry"), errors))
        .unwrap_or_default();
    let catch = map
        .get("Catch")
        .map(|v| catchers(v, &at(pointer, "Catch"), errors))
        .unwrap_or_default();

    let kind = match type_name {
        "Pass" => Kind::Pass {
            result: map.get("Result").cloned(),
        },
        "Task" => Kind::Task(task(map, pointer, errors)?),
        "Choice" => choice(map, pointer, errors)?,
        "Wait" => Kind::Wait(wait(map, pointer, errors)?),
        "Succeed" => Kind::Succeed,
        "Fail" => Kind::Fail {
            error: fail_field(map, "Error", pointer, errors),
            cause: fail_field(map, "Cause", pointer, errors),
        },
        "Parallel" => Kind::Parallel {
            branches: branches(map, pointer, errors)?,
        },
        "Map" => Kind::Map(map_spec(map, pointer, errors)?),
        _ => return None,
    };
    Some(State {
        name: name.to_string(),
        kind,
        input_path,
        output_path,
        result_path,
        parameters,
        result_selector,
        assign,
        transition: transition?,
        retry,
        catch,
    })
}

fn template_field(value: &Value, pointer: &str, field: &str, errors: &mut Errors) -> Template {
    if !value.is_object() && field != "Parameters" {
        err(errors, pointer, format!("{field} must be an object"));
    }
    Template::compile(value, pointer, errors)
}

fn path_field(
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

fn reference_path(text: &str, pointer: &str, field: &str, errors: &mut Errors) -> Option<PathExpr> {
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

fn result_path(value: Option<&Value>, pointer: &str, errors: &mut Errors) -> ResultPathField {
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

fn transition(
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

fn number(value: &Value, pointer: &str, field: &str, errors: &mut Errors) -> Option<f64> {
    match value.as_f64() {
        Some(n) => Some(n),
        None => {
            err(errors, pointer, format!("{field} must be a number"));
            None
        }
    }
}

fn positive_integer(value: &Value, pointer: &str, field: &str, errors: &mut Errors) -> Option<u64> {
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
fn number_or_path(
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
fn reference_path_any(
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

fn task(map: &Map<String, Value>, pointer: &str, errors: &mut Errors) -> Option<TaskSpec> {
    let resource = match map.get("Resource") {
        Some(Value::String(s)) => resource(s, &at(pointer, "Resource"), errors),
        Some(_) => {
            err(
                errors,
                &at(pointer, "Resource"),
                "Resource must be a string",
            );
            None
        }
        None => {
            err(errors, pointer, "Missing required field 'Resource'");
            None
        }
    };
    let timeout = number_or_path(map, "TimeoutSeconds", pointer, errors, 1.0);
    let heartbeat = number_or_path(map, "HeartbeatSeconds", pointer, errors, 1.0);
    if let (Some(NumberField::Fixed(t)), Some(NumberField::Fixed(h))) = (&timeout, &heartbeat)
        && h >= t
    {
        err(
            errors,
            &at(pointer, "HeartbeatSeconds"),
            "HeartbeatSeconds must be smaller than TimeoutSeconds",
        );
    }
    Some(TaskSpec {
        resource: resource?,
        timeout,
        heartbeat,
    })
}

fn resource(text: &str, pointer: &str, errors: &mut Errors) -> Option<Resource> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() < 6 || parts[0] != "arn" {
        err(
            errors,
            pointer,
            format!("'{text}' is not a valid resource ARN"),
        );
        return None;
    }
    if parts[2] == "lambda" && parts[5] == "function" && parts.len() >= 7 && !parts[6].is_empty() {
        return Some(Resource::LambdaFunction {
            arn: text.to_string(),
            function_name: parts[6].to_string(),
        });
    }
    if parts[2] == "states" && parts[3].is_empty() && parts[4].is_empty() {
        let service = parts[5];
        let action = parts[6..].join(":");
        if action.is_empty() {
            err(errors, pointer, format!("'{text}' does not name an action"));
            return None;
        }
        let (action, wait_for_token) = match action.strip_suffix(".waitForTaskToken") {
            Some(a) => (a.to_string(), true),
            None => (action, false),
        };
        if action.ends_with(".sync") || action.contains(".sync:") {
            err(
                errors,
                pointer,
                "The '.sync' integration pattern is not supported by this engine",
            );
            return None;
        }
        if service == "lambda" {
            if action != "invoke" {
                err(
                    errors,
                    pointer,
                    format!("The Lambda integration does not support the action '{action}'"),
                );
                return None;
            }
            return Some(Resource::LambdaInvoke { wait_for_token });
        }
        return Some(Resource::Other {
            arn: text.to_string(),
            resource_type: service.to_string(),
            resource: if wait_for_token {
                format!("{action}.waitForTaskToken")
            } else {
                action
            },
            wait_for_token,
        });
    }
    if parts[2] == "states" && parts[5] == "activity" {
        return Some(Resource::Other {
            arn: text.to_string(),
            resource_type: "activity".into(),
            resource: text.to_string(),
            wait_for_token: false,
        });
    }
    err(
        errors,
        pointer,
        format!("'{text}' is not a supported Task resource"),
    );
    None
}

fn choice(map: &Map<String, Value>, pointer: &str, errors: &mut Errors) -> Option<Kind> {
    let here = at(pointer, "Choices");
    let rules = match map.get("Choices") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| crate::choice::parse_rule(item, &format!("{here}/{i}"), errors))
            .collect(),
        Some(_) => {
            err(errors, &here, "Choices must be a non-empty array");
            Vec::new()
        }
        None => {
            err(errors, pointer, "Missing required field 'Choices'");
            Vec::new()
        }
    };
    let default = match map.get("Default") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            err(errors, &at(pointer, "Default"), "Default must be a string");
            None
        }
    };
    Some(Kind::Choice { rules, default })
}

fn wait(map: &Map<String, Value>, pointer: &str, errors: &mut Errors) -> Option<WaitFor> {
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

fn fail_field(
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

fn sub_graph(
    value: &Value,
    pointer: &str,
    errors: &mut Errors,
    processor: bool,
) -> Option<Arc<Graph>> {
    let Some(map) = value.as_object() else {
        err(
            errors,
            pointer,
            "Expected an object with StartAt and States",
        );
        return None;
    };
    for key in map.keys() {
        let ok = matches!(
            key.as_str(),
            "StartAt" | "States" | "Comment" | "QueryLanguage"
        ) || (processor && key == "ProcessorConfig");
        if !ok {
            err(
                errors,
                &at(pointer, key),
                format!("Field '{key}' is not supported here"),
            );
        }
    }
    if processor && let Some(config) = map.get("ProcessorConfig") {
        let here = at(pointer, "ProcessorConfig");
        match config.get("Mode").and_then(Value::as_str) {
            None | Some("INLINE") => {}
            Some("DISTRIBUTED") => err(
                errors,
                &format!("{here}/Mode"),
                "Distributed Map is not supported by this engine; use Mode INLINE",
            ),
            Some(other) => err(
                errors,
                &format!("{here}/Mode"),
                format!("'{other}' is not a valid Map mode"),
            ),
        }
        if let Some(obj) = config.as_object() {
            for key in obj.keys().filter(|k| *k != "Mode") {
                err(
                    errors,
                    &at(&here, key),
                    format!("Field '{key}' is only supported by Distributed Map"),
                );
            }
        }
    }
    check_query_language(map, pointer, errors);
    graph(map, pointer, errors)
}

fn branches(
    map: &Map<String, Value>,
    pointer: &str,
    errors: &mut Errors,
) -> Option<Vec<Arc<Graph>>> {
    let here = at(pointer, "Branches");
    match map.get("Branches") {
        Some(Value::Array(items)) if !items.is_empty() => {
            let parsed: Vec<_> = items
                .iter()
                .enumerate()
                .map(|(i, b)| sub_graph(b, &format!("{here}/{i}"), errors, false))
                .collect();
            parsed.into_iter().collect()
        }
        Some(_) => {
            err(errors, &here, "Branches must be a non-empty array");
            None
        }
        None => {
            err(errors, pointer, "Missing required field 'Branches'");
            None
        }
    }
}

fn map_spec(map: &Map<String, Value>, pointer: &str, errors: &mut Errors) -> Option<MapSpec> {
    let processor = match (map.get("ItemProcessor"), map.get("Iterator")) {
        (Some(_), Some(_)) => {
            err(
                errors,
                pointer,
                "'ItemProcessor' and 'Iterator' are mutually exclusive",
            );
            None
        }
        (Some(p), None) => sub_graph(p, &at(pointer, "ItemProcessor"), errors, true),
        (None, Some(p)) => sub_graph(p, &at(pointer, "Iterator"), errors, false),
        (None, None) => {
            err(errors, pointer, "Missing required field 'ItemProcessor'");
            None
        }
    };
    let item_selector = match (map.get("ItemSelector"), map.get("Parameters")) {
        (Some(_), Some(_)) => {
            err(
                errors,
                pointer,
                "'ItemSelector' and 'Parameters' are mutually exclusive",
            );
            None
        }
        (Some(v), None) => Some(template_field(
            v,
            &at(pointer, "ItemSelector"),
            "ItemSelector",
            errors,
        )),
        (None, Some(v)) => Some(template_field(
            v,
            &at(pointer, "Parameters"),
            "Parameters",
            errors,
        )),
        (None, None) => None,
    };
    let items_path = match map.get("ItemsPath") {
        None => None,
        Some(Value::String(s)) => {
            reference_path_any(s, &at(pointer, "ItemsPath"), "ItemsPath", errors)
        }
        Some(_) => {
            err(
                errors,
                &at(pointer, "ItemsPath"),
                "ItemsPath must be a string",
            );
            None
        }
    };
    let max_concurrency = number_or_path(map, "MaxConcurrency", pointer, errors, 0.0);
    let tolerated_failure_count =
        number_or_path(map, "ToleratedFailureCount", pointer, errors, 0.0);
    let tolerated_failure_percentage =
        number_or_path(map, "ToleratedFailurePercentage", pointer, errors, 0.0);
    if let Some(NumberField::Fixed(p)) = &tolerated_failure_percentage
        && *p > 100.0
    {
        err(
            errors,
            &at(pointer, "ToleratedFailurePercentage"),
            "ToleratedFailurePercentage must be between 0 and 100",
        );
    }
    Some(MapSpec {
        items_path,
        item_selector,
        processor: processor?,
        max_concurrency,
        tolerated_failure_count,
        tolerated_failure_percentage,
    })
}

fn error_equals(map: &Map<String, Value>, pointer: &str, errors: &mut Errors) -> Vec<String> {
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
fn check_all_is_last(lists: &[Vec<String>], pointer: &str, errors: &mut Errors) {
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

fn retriers(value: &Value, pointer: &str, errors: &mut Errors) -> Vec<Retrier> {
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

fn catchers(value: &Value, pointer: &str, errors: &mut Errors) -> Vec<Catcher> {
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
