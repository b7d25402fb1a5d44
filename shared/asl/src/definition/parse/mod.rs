//! Field-level parsing of states, reporting every problem with its JSON pointer.

mod fields;
mod handling;
mod task;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use self::fields::{
    fail_field, number_or_path, path_field, positive_integer, reference_path_any, result_path,
    template_field, transition, wait,
};
use self::handling::{catchers, retriers};
use super::{Graph, Kind, MapSpec, NumberField, State, parse_assign};
use crate::error::{ValidationError, pointer_token};

pub(super) type Errors = Vec<ValidationError>;

pub(super) fn err(errors: &mut Errors, pointer: &str, message: impl Into<String>) {
    errors.push(ValidationError {
        pointer: pointer.to_string(),
        message: message.into(),
    });
}

pub(super) fn at(pointer: &str, key: &str) -> String {
    format!("{pointer}/{}", pointer_token(key))
}

pub(super) const JSONATA_FIELDS: [&str; 4] = ["Arguments", "Output", "Items", "Condition"];

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
        "Task" => Kind::Task(task::task(map, pointer, errors)?),
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
        // AWS still accepts ProcessorConfig inside a legacy Iterator.
        (None, Some(p)) => sub_graph(p, &at(pointer, "Iterator"), errors, true),
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
