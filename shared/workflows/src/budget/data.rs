//! What the analyzer knows of a state's input: the values the definition itself sets
//! (Pass literals, loop counters, wait schedules, intrinsic results computed from them).
//! Whatever a Task returns or a Catch stores is unknown; unknown values are absent.
//!
//! Only the JSONPath the generated workflows use is understood: `$` and `$.a.b`.

use serde_json::{Map, Value};

/// `$` -> `[]`, `$.a.b` -> `["a", "b"]`; `None` for anything else (unknown).
pub(crate) fn segments(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix('$')?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let rest = rest.strip_prefix('.')?;
    let names: Vec<String> = rest.split('.').map(str::to_owned).collect();
    names
        .iter()
        .all(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '?')
        })
        .then_some(names)
}

pub(crate) fn get<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    segments(path)?
        .iter()
        .try_fold(data, |value, name| value.get(name.as_str()))
}

/// Applies a ResultPath: `None` (JSON null) keeps the input, `$` replaces it, `$.a.b`
/// sets one field; an unknown `value` removes what was known there.
pub(crate) fn put(
    data: &mut Value,
    path: Option<&str>,
    value: Option<Value>,
) -> Result<(), String> {
    let Some(path) = path else { return Ok(()) };
    let names = segments(path).ok_or_else(|| format!("unsupported ResultPath {path}"))?;
    let Some((last, parents)) = names.split_last() else {
        *data = value.unwrap_or_else(|| Value::Object(Map::new()));
        return Ok(());
    };
    let mut here = data;
    for name in parents {
        if !here.is_object() {
            *here = Value::Object(Map::new());
        }
        here = here
            .as_object_mut()
            .expect("just made an object")
            .entry(name.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !here.is_object() {
        *here = Value::Object(Map::new());
    }
    let map = here.as_object_mut().expect("just made an object");
    match value {
        Some(value) => {
            map.insert(last.clone(), value);
        }
        None => {
            map.remove(last);
        }
    }
    Ok(())
}

/// Evaluates a Parameters (or ResultSelector) template; unknown fields are left out.
pub(crate) fn template(template: &Value, input: &Value) -> Value {
    match template {
        Value::Object(fields) => {
            let mut out = Map::new();
            for (key, value) in fields {
                match (key.strip_suffix(".$"), value) {
                    (Some(name), Value::String(expr)) => {
                        if let Some(v) = expression(expr, input) {
                            out.insert(name.to_owned(), v);
                        }
                    }
                    _ => {
                        out.insert(key.clone(), self::template(value, input));
                    }
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// A path or an intrinsic function call.
fn expression(expr: &str, input: &Value) -> Option<Value> {
    if expr.starts_with("$$") {
        return None;
    }
    if expr.starts_with('$') {
        return get(input, expr).cloned();
    }
    let mut rest = expr.trim();
    let arg = parse(&mut rest)?;
    rest.trim().is_empty().then_some(())?;
    evaluate(&arg, input)
}

enum Arg {
    Literal(Value),
    Path(String),
    Call(String, Vec<Arg>),
}

fn parse(rest: &mut &str) -> Option<Arg> {
    *rest = rest.trim_start();
    let text = *rest;
    if let Some(quoted) = text.strip_prefix('\'') {
        let mut out = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => out.push(chars.next()?.1),
                '\'' => {
                    *rest = &quoted[i + 1..];
                    return Some(Arg::Literal(Value::String(out)));
                }
                c => out.push(c),
            }
        }
        return None;
    }
    let end = text
        .find(|c: char| c == ',' || c == '(' || c == ')' || c.is_whitespace())
        .unwrap_or(text.len());
    let (token, after) = text.split_at(end);
    if token.starts_with('$') {
        *rest = after;
        return Some(Arg::Path(token.to_owned()));
    }
    if let Some(args) = after.strip_prefix('(') {
        *rest = args;
        let mut list = Vec::new();
        loop {
            *rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix(')') {
                *rest = after;
                return Some(Arg::Call(token.to_owned(), list));
            }
            list.push(parse(rest)?);
            *rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix(',') {
                *rest = after;
            }
        }
    }
    *rest = after;
    serde_json::from_str::<Value>(token).ok().map(Arg::Literal)
}

fn evaluate(arg: &Arg, input: &Value) -> Option<Value> {
    match arg {
        Arg::Literal(v) => Some(v.clone()),
        Arg::Path(p) if p.starts_with("$$") => None,
        Arg::Path(p) => get(input, p).cloned(),
        Arg::Call(name, args) => {
            let values: Option<Vec<Value>> = args.iter().map(|a| evaluate(a, input)).collect();
            let values = values?;
            match (name.as_str(), values.as_slice()) {
                ("States.Array", items) => Some(Value::Array(items.to_vec())),
                ("States.MathAdd", [a, b]) => Some(Value::from(a.as_i64()? + b.as_i64()?)),
                ("States.ArrayGetItem", [Value::Array(items), index]) => {
                    items.get(usize::try_from(index.as_u64()?).ok()?).cloned()
                }
                ("States.ArrayLength", [Value::Array(items)]) => Some(Value::from(items.len())),
                _ => None,
            }
        }
    }
}

/// A Choice rule with what is known: `Some(answer)`, or `None` when it depends on
/// something unknown (both ways are then possible).
pub(crate) fn rule(rule: &Value, input: &Value) -> Option<bool> {
    if let Some(all) = rule.get("And").and_then(Value::as_array) {
        let answers: Vec<Option<bool>> = all.iter().map(|r| self::rule(r, input)).collect();
        return if answers.contains(&Some(false)) {
            Some(false)
        } else if answers.iter().all(|a| *a == Some(true)) {
            Some(true)
        } else {
            None
        };
    }
    if let Some(any) = rule.get("Or").and_then(Value::as_array) {
        let answers: Vec<Option<bool>> = any.iter().map(|r| self::rule(r, input)).collect();
        return if answers.contains(&Some(true)) {
            Some(true)
        } else if answers.iter().all(|a| *a == Some(false)) {
            Some(false)
        } else {
            None
        };
    }
    if let Some(not) = rule.get("Not") {
        return self::rule(not, input).map(|a| !a);
    }
    let value = get(input, rule.get("Variable")?.as_str()?)?;
    let (operator, operand) = rule
        .as_object()?
        .iter()
        .find(|(k, _)| !matches!(k.as_str(), "Variable" | "Next" | "Comment"))?;
    let (operator, operand) = match operator.strip_suffix("Path") {
        Some(op) => (op, get(input, operand.as_str()?)?),
        None => (operator.as_str(), operand),
    };
    let numbers = || Some((value.as_f64()?, operand.as_f64()?));
    match operator {
        "BooleanEquals" => Some(value.as_bool()? == operand.as_bool()?),
        "StringEquals" => Some(value.as_str()? == operand.as_str()?),
        "NumericEquals" => numbers().map(|(a, b)| a == b),
        "NumericLessThan" => numbers().map(|(a, b)| a < b),
        "NumericLessThanEquals" => numbers().map(|(a, b)| a <= b),
        "NumericGreaterThan" => numbers().map(|(a, b)| a > b),
        "NumericGreaterThanEquals" => numbers().map(|(a, b)| a >= b),
        "IsPresent" => Some(operand.as_bool()?),
        _ => None,
    }
}

/// The paths a state reads: in Parameters-like templates, Choice rules and `*Path`
/// fields (never ResultPath, which writes), its Parallel branches included.
pub(crate) fn reads(state: &Value, found: &mut Vec<Vec<String>>) {
    match state {
        Value::Object(fields) => {
            for (key, value) in fields {
                let reads_path = key.ends_with(".$")
                    || key == "Variable"
                    || (key.ends_with("Path") && key != "ResultPath");
                match value {
                    Value::String(text) if reads_path => paths_in(text, found),
                    other => reads(other, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| reads(i, found)),
        _ => {}
    }
}

fn paths_in(text: &str, found: &mut Vec<Vec<String>>) {
    for (i, _) in text.match_indices('$') {
        let tail = &text[i..];
        if tail.starts_with("$$") || text[..i].ends_with('$') {
            continue;
        }
        let end = tail
            .find(|c: char| !(c.is_alphanumeric() || matches!(c, '$' | '.' | '_' | '?')))
            .unwrap_or(tail.len());
        let path = tail[..end].trim_end_matches('.');
        // A path the analyzer cannot follow reads everything, to stay on the safe side.
        found.push(segments(path).unwrap_or_default());
    }
}

/// Keeps what a later state reads; the rest cannot change the path, so dropping it lets
/// the analyzer reuse what it found for the same state with the same live values.
pub(crate) fn prune(value: &Value, prefix: &mut Vec<String>, reads: &[Vec<String>]) -> Value {
    if reads.iter().any(|r| prefix.starts_with(r)) {
        return value.clone();
    }
    let mut out = Map::new();
    if let Value::Object(fields) = value {
        for (key, child) in fields {
            prefix.push(key.clone());
            if reads.iter().any(|r| r.starts_with(prefix)) {
                out.insert(key.clone(), prune(child, prefix, reads));
            }
            prefix.pop();
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn intrinsics_the_loops_use_are_evaluated() {
        let input = json!({"polls": {"X": {"n": 2}}});
        let out = template(
            &json!({
                "n.$": "States.MathAdd($.polls.X.n, 1)",
                "seconds.$": "States.ArrayGetItem(States.Array(10, 20, 30), $.polls.X.n)",
                "cause.$": "States.Format('a {}', $.polls.X.n)",
                "id.$": "$$.Execution.Id"
            }),
            &input,
        );
        assert_eq!(out, json!({"n": 3, "seconds": 30}));
        let past_end = template(
            &json!({"s.$": "States.ArrayGetItem(States.Array(10), $.polls.X.n)"}),
            &input,
        );
        assert_eq!(past_end, json!({}));
    }

    #[test]
    fn rules_are_three_valued() {
        let input = json!({"polls": {"X": {"n": 2}}});
        let known = json!({"Variable": "$.polls.X.n", "NumericGreaterThanEquals": 2});
        let unknown = json!({"Variable": "$.queue", "BooleanEquals": true});
        assert_eq!(rule(&known, &input), Some(true));
        assert_eq!(rule(&unknown, &input), None);
        assert_eq!(
            rule(&json!({"And": [unknown, {"Not": known}]}), &input),
            Some(false)
        );
    }

    #[test]
    fn put_sets_and_forgets() {
        let mut data = json!({"a": {"b": 1}});
        put(&mut data, Some("$.a.c"), Some(json!(2))).unwrap();
        put(&mut data, Some("$.a.b"), None).unwrap();
        put(&mut data, None, None).unwrap();
        assert_eq!(data, json!({"a": {"c": 2}}));
    }

    #[test]
    fn prune_keeps_only_what_is_read() {
        let data = json!({"polls": {"A": {"n": 1}, "B": {"n": 2}}, "x": 1});
        let mut found = Vec::new();
        reads(
            &json!({"Variable": "$.polls.A.n", "ResultPath": "$.x"}),
            &mut found,
        );
        assert_eq!(
            prune(&data, &mut Vec::new(), &found),
            json!({"polls": {"A": {"n": 1}}})
        );
    }
}
