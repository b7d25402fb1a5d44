//! The inputs of the day-2 workflows, checked before anything is changed.
//!
//! A day-2 execution's input is `{"deployment": "<name>", ...the workflow's own fields...,
//! "queue": true|false}`. The workflow's first step (the control function's
//! `validate-input`) hands everything but `deployment` and `queue` to [`parse`], which
//! reads it with the workflow's typed input (unknown fields refused by name) and returns
//! it normalized, defaults filled in. The steps after it receive that normalized input
//! in their `options.input` and read it with the same type, so the console, the CLI and
//! the functions agree on one definition of each workflow's input.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::{Error, Result};

pub mod backup;
pub mod drift;
pub mod restore_test;
pub mod rotate_keys;
pub mod scale_pools;
pub mod teardown;
pub mod upgrade;

/// Fields every day-2 input may carry that the frame itself reads, not the workflow.
pub const FRAME_FIELDS: [&str; 2] = ["deployment", "queue"];

/// Reads `input` (the execution input without [`FRAME_FIELDS`]) as `workflow`'s typed
/// input for `deployment`, and returns it with its defaults filled in.
pub fn parse(workflow: &str, deployment: &str, input: &Value) -> Result<Value> {
    let input = without_frame_fields(input)?;
    match workflow {
        // Each workflow's input type, in its own module.
        teardown::WORKFLOW => teardown::parse(deployment, input),
        rotate_keys::WORKFLOW => rotate_keys::parse(input),
        backup::WORKFLOW => backup::parse(input),
        restore_test::WORKFLOW => restore_test::parse(input),
        scale_pools::WORKFLOW => scale_pools::parse(input),
        upgrade::WORKFLOW => upgrade::parse(input),
        drift::WORKFLOW => drift::parse(input),
        _ => Err(Error::invalid_input(format!(
            "unknown workflow `{workflow}`: no day-2 workflow of that name takes an input"
        ))),
    }
}

/// Reads `input` as `workflow`'s typed input `T`. A refusal names the field
/// (`stores[1]`, `cpu`) when the problem is in one, so the person at the console knows
/// what to fix.
pub fn read<T: DeserializeOwned>(workflow: &str, input: Value) -> Result<T> {
    read_named(&format!("{workflow} input"), input)
}

/// Reads `value` (what a person or a state gave, called `what` in the refusal) as `T`:
/// `{what} field `{path}`: why` when the problem is in a field, `{what}: why` when it is
/// the whole value.
pub fn read_named<T: DeserializeOwned>(what: &str, value: Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            Error::invalid_input(format!("{what}: {}", e.inner()))
        } else {
            Error::invalid_input(format!("{what} field `{path}`: {}", e.inner()))
        }
    })
}

/// `parsed` re-serialised: the normalized input.
pub fn normalized<T: Serialize>(workflow: &str, parsed: T) -> Result<Value> {
    serde_json::to_value(parsed)
        .map_err(|e| Error::invalid_input(format!("{workflow} input does not serialise: {e}")))
}

/// Reads a step's `options.input` (what `validate-input` returned) as `T`.
pub fn from_options<T: DeserializeOwned>(
    workflow: &str,
    options: &Map<String, Value>,
) -> Result<T> {
    let input = options
        .get("input")
        .cloned()
        .unwrap_or(Value::Object(Map::new()));
    serde_json::from_value(input).map_err(|e| {
        Error::invalid_input(format!(
            "step input field `options.input` ({workflow}): {e}"
        ))
    })
}

fn without_frame_fields(input: &Value) -> Result<Value> {
    let Some(object) = input.as_object() else {
        return Err(Error::invalid_input(format!(
            "the workflow input must be a JSON object, found {input}"
        )));
    };
    let mut object = object.clone();
    for field in FRAME_FIELDS {
        object.remove(field);
    }
    Ok(Value::Object(object))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_field_of_the_wrong_type_is_named_in_every_workflow() {
        // Found by fuzzing: upgrade, drift and teardown said only "invalid type".
        for (workflow, input, field) in [
            (upgrade::WORKFLOW, json!({"image": false}), "`image`"),
            (drift::WORKFLOW, json!({"repair": "yes"}), "`repair`"),
            (
                teardown::WORKFLOW,
                json!({"confirm": "acme", "delete_backups": "yes"}),
                "`delete_backups`",
            ),
            (
                backup::WORKFLOW,
                json!({"stores": ["postgres", 7]}),
                "`stores[1]`",
            ),
            (
                scale_pools::WORKFLOW,
                json!({"pool": "ingestion", "cpu": -1}),
                "`cpu`",
            ),
        ] {
            let err = parse(workflow, "acme", &input).unwrap_err();
            assert_eq!(err.name(), crate::ErrorName::InvalidInput, "{err}");
            assert!(
                err.to_string()
                    .contains(&format!("{workflow} input field {field}")),
                "{workflow}: {err}"
            );
        }
    }
}
