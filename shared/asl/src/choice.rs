//! Choice rules: parsing (with validation) and evaluation.

use serde_json::{Map, Value};

use crate::error::{StatesError, ValidationError};
use crate::path::{Env, PathExpr};
use crate::template::Template;

/// The data-test operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    StringEquals,
    StringLessThan,
    StringGreaterThan,
    StringLessThanEquals,
    StringGreaterThanEquals,
    StringMatches,
    NumericEquals,
    NumericLessThan,
    NumericGreaterThan,
    NumericLessThanEquals,
    NumericGreaterThanEquals,
    BooleanEquals,
    TimestampEquals,
    TimestampLessThan,
    TimestampGreaterThan,
    TimestampLessThanEquals,
    TimestampGreaterThanEquals,
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

impl Operator {
    const ALL: [(&'static str, Operator); 23] = [
        ("StringEquals", Operator::StringEquals),
        ("StringLessThan", Operator::StringLessThan),
        ("StringGreaterThan", Operator::StringGreaterThan),
        ("StringLessThanEquals", Operator::StringLessThanEquals),
        ("StringGreaterThanEquals", Operator::StringGreaterThanEquals),
        ("StringMatches", Operator::StringMatches),
        ("NumericEquals", Operator::NumericEquals),
        ("NumericLessThan", Operator::NumericLessThan),
        ("NumericGreaterThan", Operator::NumericGreaterThan),
        ("NumericLessThanEquals", Operator::NumericLessThanEquals),
        (
            "NumericGreaterThanEquals",
            Operator::NumericGreaterThanEquals,
        ),
        ("BooleanEquals", Operator::BooleanEquals),
        ("TimestampEquals", Operator::TimestampEquals),
        ("TimestampLessThan", Operator::TimestampLessThan),
        ("TimestampGreaterThan", Operator::TimestampGreaterThan),
        ("TimestampLessThanEquals", Operator::TimestampLessThanEquals),
        (
            "TimestampGreaterThanEquals",
            Operator::TimestampGreaterThanEquals,
        ),
        ("IsNull", Operator::IsNull),
        ("IsPresent", Operator::IsPresent),
        ("IsNumeric", Operator::IsNumeric),
        ("IsString", Operator::IsString),
        ("IsBoolean", Operator::IsBoolean),
        ("IsTimestamp", Operator::IsTimestamp),
    ];

    /// Finds the operator named by a field, and whether it is the `...Path` form.
    fn lookup(field: &str) -> Option<(Operator, bool)> {
        let (base, is_path) = match field.strip_suffix("Path") {
            Some(base) => (base, true),
            None => (field, false),
        };
        let op = Self::ALL.iter().find(|(name, _)| *name == base)?.1;
        let is_type_test = matches!(
            op,
            Operator::IsNull
                | Operator::IsPresent
                | Operator::IsNumeric
                | Operator::IsString
                | Operator::IsBoolean
                | Operator::IsTimestamp
        );
        if is_path && (is_type_test || op == Operator::StringMatches) {
            return None;
        }
        Some((op, is_path))
    }
}

/// The right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Value(Value),
    Path(PathExpr),
}

/// A boolean expression over the input.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
    Test {
        variable: PathExpr,
        operator: Operator,
        operand: Operand,
    },
}

/// A top-level Choice rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceRule {
    pub condition: Condition,
    pub next: String,
    pub assign: Option<Template>,
}

const COMPOUND: [&str; 3] = ["And", "Or", "Not"];

fn err(errors: &mut Vec<ValidationError>, pointer: &str, message: impl Into<String>) {
    errors.push(ValidationError {
        pointer: pointer.to_string(),
        message: message.into(),
    });
}

/// Parses a top-level rule (which carries `Next`, and may carry `Assign`).
pub fn parse_rule(
    value: &Value,
    pointer: &str,
    errors: &mut Vec<ValidationError>,
) -> Option<ChoiceRule> {
    let Some(map) = value.as_object() else {
        err(errors, pointer, "A Choice rule must be an object");
        return None;
    };
    let next = match map.get("Next") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            err(errors, &format!("{pointer}/Next"), "Next must be a string");
            None
        }
        None => {
            err(
                errors,
                pointer,
                "Missing required field 'Next' in a top-level Choice rule",
            );
            None
        }
    };
    let assign = map
        .get("Assign")
        .map(|a| crate::definition::parse_assign(a, &format!("{pointer}/Assign"), errors));
    let condition = parse_condition(map, pointer, errors, true)?;
    Some(ChoiceRule {
        condition,
        next: next?,
        assign,
    })
}

fn parse_condition(
    map: &Map<String, Value>,
    pointer: &str,
    errors: &mut Vec<ValidationError>,
    top: bool,
) -> Option<Condition> {
    for key in map.keys() {
        let allowed = key == "Variable"
            || key == "Comment"
            || COMPOUND.contains(&key.as_str())
            || Operator::lookup(key).is_some()
            || (top && (key == "Next" || key == "Assign"));
        if !allowed {
            let message = if key == "Next" {
                "Nested Choice rules must not have a 'Next' field".to_string()
            } else if key == "Condition" {
                "The field 'Condition' is only supported in JSONata states".to_string()
            } else {
                format!("Field '{key}' is not supported in a Choice rule")
            };
            err(errors, &format!("{pointer}/{key}"), message);
        }
    }
    let compound: Vec<&str> = COMPOUND
        .iter()
        .copied()
        .filter(|k| map.contains_key(*k))
        .collect();
    let operators: Vec<(&String, Operator, bool)> = map
        .keys()
        .filter_map(|k| Operator::lookup(k).map(|(op, is_path)| (k, op, is_path)))
        .collect();
    if compound.len() + operators.len() != 1 {
        err(
            errors,
            pointer,
            "A Choice rule must have exactly one comparison operator or one of And, Or, Not",
        );
        return None;
    }
    if let Some(kind) = compound.first() {
        if map.contains_key("Variable") {
            err(
                errors,
                &format!("{pointer}/Variable"),
                format!("A rule with '{kind}' must not have a 'Variable'"),
            );
        }
        let here = format!("{pointer}/{kind}");
        let value = &map[*kind];
        if *kind == "Not" {
            let Some(inner) = value.as_object() else {
                err(
                    errors,
                    &here,
                    "Not must be an object holding one Choice rule",
                );
                return None;
            };
            return parse_condition(inner, &here, errors, false)
                .map(|c| Condition::Not(Box::new(c)));
        }
        let Some(items) = value.as_array().filter(|a| !a.is_empty()) else {
            err(
                errors,
                &here,
                format!("{kind} must be a non-empty array of Choice rules"),
            );
            return None;
        };
        let mut conditions = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let item_pointer = format!("{here}/{i}");
            match item.as_object() {
                Some(inner) => {
                    if let Some(c) = parse_condition(inner, &item_pointer, errors, false) {
                        conditions.push(c);
                    }
                }
                None => err(errors, &item_pointer, "A Choice rule must be an object"),
            }
        }
        return Some(if *kind == "And" {
            Condition::And(conditions)
        } else {
            Condition::Or(conditions)
        });
    }
    let (field, operator, is_path) = operators[0];
    let variable = match map.get("Variable") {
        Some(Value::String(s)) => match PathExpr::parse(s) {
            Ok(p) => Some(p),
            Err(e) => {
                err(
                    errors,
                    &format!("{pointer}/Variable"),
                    format!("The value for the field 'Variable' must be a valid JSONPath: {e}"),
                );
                None
            }
        },
        _ => {
            err(
                errors,
                pointer,
                "A Choice rule with a comparison operator must have a string 'Variable'",
            );
            None
        }
    };
    let here = format!("{pointer}/{field}");
    let raw = &map[field.as_str()];
    let operand = if is_path {
        match raw.as_str().map(PathExpr::parse) {
            Some(Ok(p)) => Some(Operand::Path(p)),
            _ => {
                err(
                    errors,
                    &here,
                    format!("The value for the field '{field}' must be a valid JSONPath"),
                );
                None
            }
        }
    } else {
        check_operand_type(operator, raw, &here, field, errors).then(|| Operand::Value(raw.clone()))
    };
    Some(Condition::Test {
        variable: variable?,
        operator,
        operand: operand?,
    })
}

fn check_operand_type(
    operator: Operator,
    raw: &Value,
    pointer: &str,
    field: &str,
    errors: &mut Vec<ValidationError>,
) -> bool {
    use Operator::*;
    let (ok, kind) = match operator {
        StringEquals
        | StringLessThan
        | StringGreaterThan
        | StringLessThanEquals
        | StringGreaterThanEquals
        | StringMatches => (raw.is_string(), "a string"),
        NumericEquals
        | NumericLessThan
        | NumericGreaterThan
        | NumericLessThanEquals
        | NumericGreaterThanEquals => (raw.is_number(), "a number"),
        TimestampEquals
        | TimestampLessThan
        | TimestampGreaterThan
        | TimestampLessThanEquals
        | TimestampGreaterThanEquals => (
            raw.as_str().and_then(crate::timestamp::parse).is_some(),
            "a timestamp",
        ),
        _ => (raw.is_boolean(), "a boolean"),
    };
    if !ok {
        err(
            errors,
            pointer,
            format!("The value for the field '{field}' must be {kind}"),
        );
    }
    ok
}

fn invalid_path(path: &PathExpr) -> StatesError {
    StatesError::runtime(format!(
        "Invalid path '{}': The choice state's condition path references an invalid value.",
        path.source
    ))
}

/// Evaluates a condition against the Choice state's input.
pub fn evaluate(condition: &Condition, env: &Env<'_>) -> Result<bool, StatesError> {
    match condition {
        Condition::And(items) => {
            for c in items {
                if !evaluate(c, env)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Condition::Or(items) => {
            for c in items {
                if evaluate(c, env)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Condition::Not(inner) => Ok(!evaluate(inner, env)?),
        Condition::Test {
            variable,
            operator,
            operand,
        } => {
            let value = variable.evaluate(env, false);
            let expected = match operand {
                Operand::Value(v) => v.clone(),
                Operand::Path(p) => p.evaluate(env, false).ok_or_else(|| invalid_path(p))?,
            };
            if *operator == Operator::IsPresent {
                return Ok(value.is_some() == (expected == Value::Bool(true)));
            }
            let value = value.ok_or_else(|| invalid_path(variable))?;
            Ok(test(*operator, &value, &expected))
        }
    }
}

fn test(operator: Operator, value: &Value, expected: &Value) -> bool {
    use Operator::*;
    use std::cmp::Ordering;
    let want = expected.as_bool() == Some(true);
    let by_order = |ordering: Option<Ordering>, accept: &[Ordering]| {
        ordering.is_some_and(|o| accept.contains(&o))
    };
    let strings = || match (value.as_str(), expected.as_str()) {
        (Some(a), Some(b)) => Some(a.cmp(b)),
        _ => None,
    };
    let numbers = || match (value, expected) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
        },
        _ => None,
    };
    let times = || {
        let a = crate::timestamp::parse(value.as_str()?)?;
        let b = crate::timestamp::parse(expected.as_str()?)?;
        Some(a.cmp(&b))
    };
    match operator {
        StringEquals => by_order(strings(), &[Ordering::Equal]),
        StringLessThan => by_order(strings(), &[Ordering::Less]),
        StringGreaterThan => by_order(strings(), &[Ordering::Greater]),
        StringLessThanEquals => by_order(strings(), &[Ordering::Less, Ordering::Equal]),
        StringGreaterThanEquals => by_order(strings(), &[Ordering::Greater, Ordering::Equal]),
        NumericEquals => by_order(numbers(), &[Ordering::Equal]),
        NumericLessThan => by_order(numbers(), &[Ordering::Less]),
        NumericGreaterThan => by_order(numbers(), &[Ordering::Greater]),
        NumericLessThanEquals => by_order(numbers(), &[Ordering::Less, Ordering::Equal]),
        NumericGreaterThanEquals => by_order(numbers(), &[Ordering::Greater, Ordering::Equal]),
        TimestampEquals => by_order(times(), &[Ordering::Equal]),
        TimestampLessThan => by_order(times(), &[Ordering::Less]),
        TimestampGreaterThan => by_order(times(), &[Ordering::Greater]),
        TimestampLessThanEquals => by_order(times(), &[Ordering::Less, Ordering::Equal]),
        TimestampGreaterThanEquals => by_order(times(), &[Ordering::Greater, Ordering::Equal]),
        BooleanEquals => value.is_boolean() && value == expected,
        StringMatches => match (value.as_str(), expected.as_str()) {
            (Some(text), Some(pattern)) => string_matches(text, pattern),
            _ => false,
        },
        IsNull => value.is_null() == want,
        IsNumeric => value.is_number() == want,
        IsString => value.is_string() == want,
        IsBoolean => value.is_boolean() == want,
        IsTimestamp => value.as_str().and_then(crate::timestamp::parse).is_some() == want,
        IsPresent => want,
    }
}

/// `*` matches any run of characters; `\*` is a literal star and `\\` a backslash.
pub fn string_matches(text: &str, pattern: &str) -> bool {
    #[derive(PartialEq)]
    enum Token {
        Char(char),
        Star,
    }
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => tokens.push(Token::Char(chars.next().unwrap_or('\\'))),
            '*' => tokens.push(Token::Star),
            c => tokens.push(Token::Char(c)),
        }
    }
    let text: Vec<char> = text.chars().collect();
    // Greedy matching with backtracking to the last star.
    let (mut t, mut p) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            Some(Token::Star) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|tok| *tok == Token::Star)
}

#[cfg(test)]
mod tests;
