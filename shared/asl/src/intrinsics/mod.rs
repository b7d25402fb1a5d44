//! Intrinsic functions (`States.Format(...)` and the other 17): parsed once at load time,
//! evaluated against the current input, context object and variables.

mod functions;

use serde_json::Value;

use crate::error::{StatesError, names};
use crate::path::{Env, PathExpr};

/// The 18 intrinsic functions of the JSONPath query language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Format,
    StringToJson,
    JsonToString,
    Array,
    ArrayPartition,
    ArrayContains,
    ArrayRange,
    ArrayGetItem,
    ArrayLength,
    ArrayUnique,
    Base64Encode,
    Base64Decode,
    Hash,
    JsonMerge,
    MathRandom,
    MathAdd,
    StringSplit,
    Uuid,
}

impl Function {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "States.Format" => Self::Format,
            "States.StringToJson" => Self::StringToJson,
            "States.JsonToString" => Self::JsonToString,
            "States.Array" => Self::Array,
            "States.ArrayPartition" => Self::ArrayPartition,
            "States.ArrayContains" => Self::ArrayContains,
            "States.ArrayRange" => Self::ArrayRange,
            "States.ArrayGetItem" => Self::ArrayGetItem,
            "States.ArrayLength" => Self::ArrayLength,
            "States.ArrayUnique" => Self::ArrayUnique,
            "States.Base64Encode" => Self::Base64Encode,
            "States.Base64Decode" => Self::Base64Decode,
            "States.Hash" => Self::Hash,
            "States.JsonMerge" => Self::JsonMerge,
            "States.MathRandom" => Self::MathRandom,
            "States.MathAdd" => Self::MathAdd,
            "States.StringSplit" => Self::StringSplit,
            "States.UUID" => Self::Uuid,
            _ => return None,
        })
    }
}

/// One argument of a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Literal(Value),
    Path(PathExpr),
    Call(Box<Call>),
}

/// A parsed intrinsic call.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub function: Function,
    pub name: String,
    pub args: Vec<Arg>,
}

/// Source of randomness for MathRandom (without a seed) and UUID.
pub trait RandomSource: Send + Sync {
    fn next_u64(&self) -> u64;
}

/// Does this string look like an intrinsic call (rather than a path)?
pub fn looks_like_call(text: &str) -> bool {
    text.trim_start().starts_with("States.")
}

/// An intrinsic expression together with its source text.
#[derive(Debug, Clone, PartialEq)]
pub struct Intrinsic {
    pub call: Call,
    pub source: String,
}

impl Intrinsic {
    /// Parses a whole expression such as `States.Format('{}', $.a)`.
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut parser = Parser {
            chars: source.chars().collect(),
            pos: 0,
        };
        parser.skip_ws();
        let call = parser.call()?;
        parser.skip_ws();
        if parser.pos != parser.chars.len() {
            return Err(format!(
                "unexpected text after the call: '{}'",
                parser.chars[parser.pos..].iter().collect::<String>()
            ));
        }
        Ok(Self {
            call,
            source: source.to_string(),
        })
    }

    /// Evaluates the call. A path argument that matches nothing is a `States.Runtime`
    /// error; a function that cannot compute its result is `States.IntrinsicFailure`.
    pub fn evaluate(&self, env: &Env<'_>, rng: &dyn RandomSource) -> Result<Value, StatesError> {
        eval_call(&self.call, env, rng).map_err(|failure| match failure {
            Failure::MissingPath(path) => StatesError::runtime(format!(
                "The function '{}' had the following error: The JsonPath argument for the field '{}' could not be found in the input '{}'",
                self.source,
                path,
                crate::json::compact(env.input)
            )),
            Failure::Invalid(message) => StatesError::new(
                names::INTRINSIC_FAILURE,
                format!(
                    "The function '{}' had the following error: {message}",
                    self.source
                ),
            ),
        })
    }
}

/// Why a call failed.
#[derive(Debug)]
pub(crate) enum Failure {
    MissingPath(String),
    Invalid(String),
}

fn eval_call(call: &Call, env: &Env<'_>, rng: &dyn RandomSource) -> Result<Value, Failure> {
    let mut values = Vec::with_capacity(call.args.len());
    for arg in &call.args {
        values.push(match arg {
            Arg::Literal(v) => v.clone(),
            Arg::Path(p) => p
                .evaluate(env, true)
                .ok_or_else(|| Failure::MissingPath(p.source.clone()))?,
            Arg::Call(inner) => eval_call(inner, env, rng)?,
        });
    }
    functions::apply(call, values, rng)
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn call(&mut self) -> Result<Call, String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '_')
        {
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos].iter().collect();
        let function = Function::from_name(&name)
            .ok_or_else(|| format!("'{name}' is not a supported intrinsic function"))?;
        self.skip_ws();
        if self.peek() != Some('(') {
            return Err(format!("expected '(' after {name}"));
        }
        self.pos += 1;
        let mut args = Vec::new();
        self.skip_ws();
        if self.peek() == Some(')') {
            self.pos += 1;
            return Ok(Call {
                function,
                name,
                args,
            });
        }
        loop {
            self.skip_ws();
            args.push(self.arg()?);
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(')') => {
                    self.pos += 1;
                    return Ok(Call {
                        function,
                        name,
                        args,
                    });
                }
                _ => return Err(format!("expected ',' or ')' in the arguments of {name}")),
            }
        }
    }

    fn arg(&mut self) -> Result<Arg, String> {
        match self.peek() {
            Some('\'') => self.string().map(|s| Arg::Literal(Value::String(s))),
            Some('$') => {
                let start = self.pos;
                let mut depth = 0usize;
                let mut quote: Option<char> = None;
                while let Some(c) = self.peek() {
                    match (quote, c) {
                        // `\'` and `\\` inside a quoted member name do not end it.
                        (Some(_), '\\') => self.pos += 1,
                        (Some(q), c) if c == q => quote = None,
                        (Some(_), _) => {}
                        (None, '\'' | '"') => quote = Some(c),
                        (None, '[' | '(') => depth += 1,
                        (None, ']') => depth = depth.saturating_sub(1),
                        (None, ')') if depth == 0 => break,
                        (None, ')') => depth -= 1,
                        (None, ',') if depth == 0 => break,
                        (None, c) if c.is_whitespace() && depth == 0 => break,
                        _ => {}
                    }
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                PathExpr::parse(&text)
                    .map(Arg::Path)
                    .map_err(|e| format!("invalid path argument '{text}': {e}"))
            }
            Some('S') => Ok(Arg::Call(Box::new(self.call()?))),
            Some(_) => {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|c| !matches!(c, ',' | ')') && !c.is_whitespace())
                {
                    self.pos += 1;
                }
                let text: String = self.chars[start..self.pos].iter().collect();
                match serde_json::from_str::<Value>(&text) {
                    Ok(v @ (Value::Number(_) | Value::Bool(_) | Value::Null)) => {
                        Ok(Arg::Literal(v))
                    }
                    _ => Err(format!("'{text}' is not a valid argument")),
                }
            }
            None => Err("missing argument".into()),
        }
    }

    /// A single-quoted literal. `\'` and `\\` are unescaped; `\{` and `\}` are kept
    /// escaped so that States.Format can tell literal braces from placeholders.
    fn string(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err("unterminated string literal".into()),
                Some('\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ ('{' | '}')) => {
                            out.push('\\');
                            out.push(c);
                        }
                        Some(c) => out.push(c),
                        None => return Err("unterminated string literal".into()),
                    }
                    self.pos += 1;
                }
                Some('\'') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
