//! Task states: the resource and the timeouts.

use serde_json::{Map, Value};

use super::fields::number_or_path;
use super::{Errors, at, err};
use crate::definition::{NumberField, Resource, TaskSpec};

pub(super) fn task(
    map: &Map<String, Value>,
    pointer: &str,
    errors: &mut Errors,
) -> Option<TaskSpec> {
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

pub(super) fn resource(text: &str, pointer: &str, errors: &mut Errors) -> Option<Resource> {
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
