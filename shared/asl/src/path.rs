//! Paths as they appear in a definition: `$...` (state input), `$$...` (context object)
//! and `$name...` (a workflow variable), plus the environment they are evaluated in.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::jsonpath::JsonPath;

/// What a path is evaluated against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRoot {
    /// `$`: the current input.
    Input,
    /// `$$`: the context object.
    Context,
    /// `$name`: a workflow variable.
    Variable(String),
}

/// A parsed path with its source text (kept for error messages).
#[derive(Debug, Clone, PartialEq)]
pub struct PathExpr {
    pub root: PathRoot,
    pub path: JsonPath,
    pub source: String,
}

/// Is `name` a valid workflow variable name?
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_alphanumeric() || c == '_')
}

impl PathExpr {
    /// Parses `$...`, `$$...` or `$var...`.
    pub fn parse(source: &str) -> Result<Self, String> {
        let Some(rest) = source.strip_prefix('$') else {
            return Err(format!("'{source}' does not start with '$'"));
        };
        let (root, rest) = if let Some(rest) = rest.strip_prefix('$') {
            (PathRoot::Context, rest)
        } else if rest.starts_with(|c: char| c.is_alphabetic() || c == '_') {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            let name = &rest[..end];
            if !is_variable_name(name) {
                return Err(format!("'{name}' is not a valid variable name"));
            }
            (PathRoot::Variable(name.to_string()), &rest[end..])
        } else {
            (PathRoot::Input, rest)
        };
        let path = JsonPath::parse_after_root(rest)?;
        Ok(Self {
            root,
            path,
            source: source.to_string(),
        })
    }

    /// True when this path has only names and indexes, and reads the input.
    pub fn is_reference(&self) -> bool {
        self.path.is_reference()
    }

    /// Evaluates the path; `None` when it matches nothing (or the variable is unset).
    pub fn evaluate(&self, env: &Env<'_>, strict_index: bool) -> Option<Value> {
        match &self.root {
            PathRoot::Input => self.path.evaluate(env.input, strict_index),
            PathRoot::Context => env.context.evaluate(&self.path, strict_index),
            PathRoot::Variable(name) => {
                let value = env.vars.get(name)?;
                self.path.evaluate(&value, strict_index)
            }
        }
    }
}

/// Workflow variables: one scope per execution, plus one per Parallel branch or Map
/// iteration, which sees (but does not write) the variables of the scopes around it.
#[derive(Debug, Default)]
pub struct Scope {
    vars: RwLock<HashMap<String, Value>>,
    parent: Option<Arc<Scope>>,
}

impl Scope {
    /// The outermost scope.
    pub fn root() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A nested scope that can read this one.
    pub fn child(self: &Arc<Self>) -> Arc<Self> {
        Arc::new(Self {
            vars: RwLock::default(),
            parent: Some(Arc::clone(self)),
        })
    }

    /// Reads a variable from this scope or the nearest enclosing one.
    pub fn get(&self, name: &str) -> Option<Value> {
        let found = self
            .vars
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned();
        found.or_else(|| self.parent.as_ref().and_then(|p| p.get(name)))
    }

    /// Sets variables in this scope.
    pub fn assign(&self, values: impl IntoIterator<Item = (String, Value)>) {
        let mut vars = self
            .vars
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        vars.extend(values);
    }
}

/// The context object (`$$`), kept in parts so that a state can build its own cheaply:
/// the execution-wide parts are shared, the state's own parts are small.
#[derive(Debug, Clone, Default)]
pub struct ContextObject {
    parts: Vec<(&'static str, Arc<Value>)>,
}

impl ContextObject {
    /// A context object from its top-level members, in order.
    pub fn new(parts: Vec<(&'static str, Arc<Value>)>) -> Self {
        Self { parts }
    }

    /// Adds a top-level member.
    pub fn push(&mut self, key: &'static str, value: Arc<Value>) {
        self.parts.push((key, value));
    }

    /// The whole object.
    pub fn to_value(&self) -> Value {
        Value::Object(
            self.parts
                .iter()
                .map(|(k, v)| ((*k).to_string(), (**v).clone()))
                .collect(),
        )
    }

    /// Evaluates a path relative to `$$`.
    pub fn evaluate(&self, path: &JsonPath, strict_index: bool) -> Option<Value> {
        if let Some(crate::jsonpath::Segment::Child(first)) = path.segments.first() {
            let (_, part) = self.parts.iter().find(|(k, _)| k == first)?;
            let rest = JsonPath {
                segments: path.segments[1..].to_vec(),
            };
            return rest.evaluate(part, strict_index);
        }
        path.evaluate(&self.to_value(), strict_index)
    }
}

/// Everything a path, template or intrinsic can read.
pub struct Env<'a> {
    pub input: &'a Value,
    pub context: &'a ContextObject,
    pub vars: &'a Scope,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn roots_are_recognised() {
        assert_eq!(PathExpr::parse("$.a").unwrap().root, PathRoot::Input);
        assert_eq!(PathExpr::parse("$").unwrap().root, PathRoot::Input);
        assert_eq!(
            PathExpr::parse("$$.Execution.Id").unwrap().root,
            PathRoot::Context
        );
        assert_eq!(
            PathExpr::parse("$myVar.a[0]").unwrap().root,
            PathRoot::Variable("myVar".into())
        );
        assert!(PathExpr::parse("a.b").is_err());
        assert!(PathExpr::parse("$.a[").is_err());
    }

    #[test]
    fn variables_resolve_through_enclosing_scopes() {
        let root = Scope::root();
        root.assign([("x".to_string(), json!({"k": 1}))]);
        let inner = root.child();
        inner.assign([("y".to_string(), json!(2))]);
        let input = json!({});
        let context = ContextObject::default();
        let env = Env {
            input: &input,
            context: &context,
            vars: &inner,
        };
        let p = PathExpr::parse("$x.k").unwrap();
        assert_eq!(p.evaluate(&env, false), Some(json!(1)));
        assert_eq!(root.get("y"), None);
        assert_eq!(inner.get("y"), Some(json!(2)));
    }

    #[test]
    fn context_paths_read_the_right_part() {
        let context = ContextObject::new(vec![
            ("Execution", Arc::new(json!({"Name": "run"}))),
            ("State", Arc::new(json!({"Name": "A", "RetryCount": 0}))),
        ]);
        let input = json!({});
        let vars = Scope::root();
        let env = Env {
            input: &input,
            context: &context,
            vars: &vars,
        };
        let p = PathExpr::parse("$$.Execution.Name").unwrap();
        assert_eq!(p.evaluate(&env, false), Some(json!("run")));
        let p = PathExpr::parse("$$").unwrap();
        assert_eq!(
            p.evaluate(&env, false),
            Some(json!({"Execution": {"Name": "run"}, "State": {"Name": "A", "RetryCount": 0}}))
        );
        assert_eq!(
            PathExpr::parse("$$.Map").unwrap().evaluate(&env, false),
            None
        );
    }

    #[test]
    fn variable_names_follow_identifier_rules() {
        assert!(is_variable_name("abc_1"));
        assert!(!is_variable_name("1abc"));
        assert!(!is_variable_name("a-b"));
    }
}
