//! The parsed form of a state machine definition, and loading it: placeholder
//! substitution, then validation in the spirit of ValidateStateMachineDefinition.

mod graph;
mod parse;
mod substitute;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::choice::ChoiceRule;
use crate::error::{ValidationError, ValidationErrors};
use crate::path::PathExpr;
use crate::template::{DynamicValue, Template};

pub use substitute::{placeholders, substitute};

/// A validated state machine, ready to run any number of times.
#[derive(Debug, Clone)]
pub struct StateMachine {
    pub(crate) root: Arc<Graph>,
    pub(crate) timeout_seconds: Option<u64>,
    pub(crate) definition: Value,
}

impl StateMachine {
    /// Substitutes `${Name}` placeholders, then parses and validates the definition.
    /// Every problem is reported, each with the JSON pointer of its location.
    pub fn load(
        definition_json: &str,
        substitutions: &HashMap<String, String>,
    ) -> Result<Self, ValidationErrors> {
        let mut value: Value = serde_json::from_str(definition_json).map_err(|e| {
            ValidationErrors(vec![ValidationError {
                pointer: String::new(),
                message: format!("The definition is not valid JSON: {e}"),
            }])
        })?;
        let mut errors = Vec::new();
        substitute(&mut value, substitutions, "", &mut errors);
        if !errors.is_empty() {
            return Err(ValidationErrors(errors));
        }
        Self::from_value(value)
    }

    /// Parses and validates an already substituted definition.
    pub fn from_value(definition: Value) -> Result<Self, ValidationErrors> {
        let mut errors = Vec::new();
        let parsed = parse::definition(&definition, &mut errors);
        match parsed {
            Some((root, timeout_seconds)) if errors.is_empty() => Ok(Self {
                root,
                timeout_seconds,
                definition,
            }),
            _ => Err(ValidationErrors(errors)),
        }
    }

    /// The definition as loaded (after substitution).
    pub fn definition(&self) -> &Value {
        &self.definition
    }

    /// The names of the top-level states.
    pub fn state_names(&self) -> Vec<&str> {
        self.root.states.keys().map(String::as_str).collect()
    }
}

/// Validates a definition; the same checks as [`StateMachine::load`].
pub fn validate(
    definition_json: &str,
    substitutions: &HashMap<String, String>,
) -> Result<(), ValidationErrors> {
    StateMachine::load(definition_json, substitutions).map(|_| ())
}

/// A set of states with a start: the top level, a Parallel branch or a Map processor.
#[derive(Debug)]
pub struct Graph {
    pub start_at: String,
    pub states: HashMap<String, Arc<State>>,
}

/// Where InputPath / OutputPath point.
#[derive(Debug, Clone, PartialEq)]
pub enum PathField {
    /// Field absent: `$`, the whole value.
    Whole,
    /// `null`: an empty object.
    Empty,
    Path(PathExpr),
}

/// Where ResultPath puts the result.
#[derive(Debug, Clone, PartialEq)]
pub enum ResultPathField {
    /// Absent or `$`: the result replaces the input.
    Replace,
    /// `null`: the result is discarded and the input passes through.
    Discard,
    Path(PathExpr),
}

/// How a state ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Next(String),
    End,
}

/// A number given inline or read from a path.
#[derive(Debug, Clone, PartialEq)]
pub enum NumberField {
    Fixed(f64),
    Path(PathExpr),
}

/// A parsed state.
#[derive(Debug)]
pub struct State {
    pub name: String,
    pub kind: Kind,
    pub input_path: PathField,
    pub output_path: PathField,
    pub result_path: ResultPathField,
    pub parameters: Option<Template>,
    pub result_selector: Option<Template>,
    pub assign: Option<Template>,
    pub transition: Transition,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
}

impl State {
    /// The word AWS prefixes state events with (`Pass`, `Task`, ...).
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Pass { .. } => "Pass",
            Kind::Task(_) => "Task",
            Kind::Choice { .. } => "Choice",
            Kind::Wait(_) => "Wait",
            Kind::Succeed => "Succeed",
            Kind::Fail { .. } => "Fail",
            Kind::Parallel { .. } => "Parallel",
            Kind::Map(_) => "Map",
        }
    }
}

/// What kind of state, with its own fields.
#[derive(Debug)]
pub enum Kind {
    Pass {
        result: Option<Value>,
    },
    Task(TaskSpec),
    Choice {
        rules: Vec<ChoiceRule>,
        default: Option<String>,
    },
    Wait(WaitFor),
    Succeed,
    Fail {
        error: FailField,
        cause: FailField,
    },
    Parallel {
        branches: Vec<Arc<Graph>>,
    },
    Map(MapSpec),
}

/// Error or Cause of a Fail state.
#[derive(Debug, Clone, PartialEq)]
pub enum FailField {
    Absent,
    Literal(String),
    Dynamic(DynamicValue),
}

/// How long a Wait state waits.
#[derive(Debug, Clone, PartialEq)]
pub enum WaitFor {
    Seconds(f64),
    SecondsPath(PathExpr),
    Timestamp(DateTime<Utc>),
    TimestampPath(PathExpr),
}

/// The resource a Task calls.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:qualifier]`
    LambdaFunction { arn: String, function_name: String },
    /// `arn:aws:states:::lambda:invoke[.waitForTaskToken]`
    LambdaInvoke { wait_for_token: bool },
    /// Any other service integration or activity, dispatched by its resource string.
    Other {
        arn: String,
        resource_type: String,
        resource: String,
        wait_for_token: bool,
    },
}

/// A Task state's own fields.
#[derive(Debug)]
pub struct TaskSpec {
    pub resource: Resource,
    pub timeout: Option<NumberField>,
    pub heartbeat: Option<NumberField>,
}

/// A Map state's own fields (inline mode).
#[derive(Debug)]
pub struct MapSpec {
    pub items_path: Option<PathExpr>,
    pub item_selector: Option<Template>,
    pub processor: Arc<Graph>,
    pub max_concurrency: Option<NumberField>,
    pub tolerated_failure_count: Option<NumberField>,
    pub tolerated_failure_percentage: Option<NumberField>,
}

/// One Retry entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Retrier {
    pub error_equals: Vec<String>,
    pub interval_seconds: f64,
    pub max_attempts: u64,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<f64>,
    pub jitter_full: bool,
}

/// One Catch entry.
#[derive(Debug)]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub result_path: ResultPathField,
    pub next: String,
    pub assign: Option<Template>,
}

/// Compiles an `Assign` object: keys are variable names, `.$` keys are evaluated.
pub fn parse_assign(value: &Value, pointer: &str, errors: &mut Vec<ValidationError>) -> Template {
    let Some(map) = value.as_object() else {
        errors.push(ValidationError {
            pointer: pointer.to_string(),
            message: "Assign must be an object".into(),
        });
        return Template::Literal(Value::Null);
    };
    for key in map.keys() {
        let name = key.strip_suffix(".$").unwrap_or(key);
        if !crate::path::is_variable_name(name) {
            errors.push(ValidationError {
                pointer: format!("{pointer}/{}", crate::error::pointer_token(key)),
                message: format!("'{name}' is not a valid variable name"),
            });
        } else if name == "states" {
            errors.push(ValidationError {
                pointer: format!("{pointer}/{}", crate::error::pointer_token(key)),
                message: "The variable name 'states' is reserved".into(),
            });
        }
    }
    Template::compile(value, pointer, errors)
}

#[cfg(test)]
mod tests;
