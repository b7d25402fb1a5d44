//! Payload templates: Parameters, ResultSelector, ItemSelector and Assign, where a key
//! ending in `.$` takes its value from a path or an intrinsic function.

use serde_json::{Map, Value};

use crate::error::{StatesError, ValidationError};
use crate::intrinsics::{Intrinsic, RandomSource, looks_like_call};
use crate::path::{Env, PathExpr, PathRoot};

/// A compiled template.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    /// A value with nothing to evaluate.
    Literal(Value),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
    /// `"key.$": "$.path"`; `field` is the key with its `.$`.
    Path {
        field: String,
        path: PathExpr,
    },
    /// `"key.$": "States.Format(...)"`.
    Intrinsic {
        field: String,
        call: Intrinsic,
    },
}

/// Parses the value of a `.$` field: a path or an intrinsic call.
pub fn parse_dynamic(text: &str) -> Result<DynamicValue, String> {
    if looks_like_call(text) {
        Intrinsic::parse(text).map(DynamicValue::Intrinsic)
    } else {
        PathExpr::parse(text).map(DynamicValue::Path)
    }
}

/// The value of a `.$` field.
#[derive(Debug, Clone, PartialEq)]
pub enum DynamicValue {
    Path(PathExpr),
    Intrinsic(Intrinsic),
}

impl Template {
    /// Compiles a template, reporting each malformed `.$` field at its JSON pointer.
    pub fn compile(value: &Value, pointer: &str, errors: &mut Vec<ValidationError>) -> Self {
        let compiled = compile(value, pointer, errors);
        if compiled.is_static() {
            Template::Literal(value.clone())
        } else {
            compiled
        }
    }

    fn is_static(&self) -> bool {
        match self {
            Template::Literal(_) => true,
            Template::Object(fields) => fields.iter().all(|(_, t)| t.is_static()),
            Template::Array(items) => items.iter().all(Template::is_static),
            _ => false,
        }
    }

    /// Produces the value of the template.
    pub fn render(&self, env: &Env<'_>, rng: &dyn RandomSource) -> Result<Value, StatesError> {
        match self {
            Template::Literal(v) => Ok(v.clone()),
            Template::Object(fields) => {
                let mut map = Map::with_capacity(fields.len());
                for (key, template) in fields {
                    map.insert(key.clone(), template.render(env, rng)?);
                }
                Ok(Value::Object(map))
            }
            Template::Array(items) => items
                .iter()
                .map(|t| t.render(env, rng))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Template::Path { field, path } => path
                .evaluate(env, false)
                .ok_or_else(|| missing(field, path, env)),
            Template::Intrinsic { call, .. } => call.evaluate(env, rng),
        }
    }
}

/// The `States.Runtime` error of a `.$` path that matches nothing.
pub fn missing(field: &str, path: &PathExpr, env: &Env<'_>) -> StatesError {
    let searched = match &path.root {
        PathRoot::Input => crate::json::compact(env.input),
        PathRoot::Context => crate::json::compact(&env.context.to_value()),
        PathRoot::Variable(name) => env
            .vars
            .get(name)
            .map(|v| crate::json::compact(&v))
            .unwrap_or_default(),
    };
    StatesError::runtime(format!(
        "The JSONPath '{}' specified for the field '{field}' could not be found in the input '{searched}'",
        path.source
    ))
}

fn compile(value: &Value, pointer: &str, errors: &mut Vec<ValidationError>) -> Template {
    match value {
        Value::Object(map) => Template::Object(
            map.iter()
                .map(|(key, v)| {
                    let here = format!("{pointer}/{}", crate::error::pointer_token(key));
                    let template = if key.ends_with(".$") && key.len() > 2 {
                        let out = key[..key.len() - 2].to_string();
                        let t = compile_dynamic(key, v, &here, errors);
                        return (out, t);
                    } else {
                        compile(v, &here, errors)
                    };
                    (key.clone(), template)
                })
                .collect(),
        ),
        Value::Array(items) => Template::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| compile(v, &format!("{pointer}/{i}"), errors))
                .collect(),
        ),
        other => Template::Literal(other.clone()),
    }
}

fn compile_dynamic(
    field: &str,
    value: &Value,
    pointer: &str,
    errors: &mut Vec<ValidationError>,
) -> Template {
    let Some(text) = value.as_str() else {
        errors.push(ValidationError {
            pointer: pointer.to_string(),
            message: format!(
                "The value for the field '{field}' must be a STRING that contains a JSONPath or an intrinsic function call"
            ),
        });
        return Template::Literal(Value::Null);
    };
    match parse_dynamic(text) {
        Ok(DynamicValue::Path(path)) => Template::Path {
            field: field.to_string(),
            path,
        },
        Ok(DynamicValue::Intrinsic(call)) => Template::Intrinsic {
            field: field.to_string(),
            call,
        },
        Err(e) => {
            errors.push(ValidationError {
                pointer: pointer.to_string(),
                message: format!(
                    "The value for the field '{field}' must be a valid JSONPath or a valid intrinsic function call: {e}"
                ),
            });
            Template::Literal(Value::Null)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::Scope;
    use serde_json::json;

    struct Zero;
    impl RandomSource for Zero {
        fn next_u64(&self) -> u64 {
            0
        }
    }

    fn render(template: Value, input: Value) -> Result<Value, StatesError> {
        let mut errors = Vec::new();
        let t = Template::compile(&template, "/Parameters", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let context = crate::path::ContextObject::new(vec![(
            "Execution",
            std::sync::Arc::new(json!({"Name": "run-1"})),
        )]);
        let vars = Scope::root();
        vars.assign([("v".to_string(), json!({"k": "var"}))]);
        let env = Env {
            input: &input,
            context: &context,
            vars: &vars,
        };
        t.render(&env, &Zero)
    }

    #[test]
    fn dollar_fields_take_values_from_paths() {
        let out = render(
            json!({
                "static": {"x": [1, {"y.$": "$.a"}]},
                "a.$": "$.a",
                "name.$": "$$.Execution.Name",
                "var.$": "$v.k",
                "fmt.$": "States.Format('{}-{}', $.a, $v.k)",
                "all.$": "$"
            }),
            json!({"a": 1}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({
                "static": {"x": [1, {"y": 1}]},
                "a": 1,
                "name": "run-1",
                "var": "var",
                "fmt": "1-var",
                "all": {"a": 1}
            })
        );
    }

    #[test]
    fn missing_path_is_a_runtime_error_with_aws_wording() {
        let err = render(json!({"m.$": "$.nope"}), json!({"x": "a"})).unwrap_err();
        assert_eq!(err.error, "States.Runtime");
        assert_eq!(
            err.cause.unwrap(),
            r#"The JSONPath '$.nope' specified for the field 'm.$' could not be found in the input '{"x":"a"}'"#
        );
    }

    #[test]
    fn malformed_dynamic_fields_are_validation_errors() {
        let mut errors = Vec::new();
        Template::compile(
            &json!({"a.$": 3, "b.$": "nope", "c.$": "States.Nope()"}),
            "/States/S/Parameters",
            &mut errors,
        );
        let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/States/S/Parameters/a.$",
                "/States/S/Parameters/b.$",
                "/States/S/Parameters/c.$"
            ]
        );
    }

    #[test]
    fn static_templates_are_literal() {
        let mut errors = Vec::new();
        let t = Template::compile(&json!({"a": [1, 2]}), "", &mut errors);
        assert_eq!(t, Template::Literal(json!({"a": [1, 2]})));
    }
}
