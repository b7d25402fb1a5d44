//! JSONPath as Step Functions evaluates it (the Jayway dialect): child and bracket
//! notation, indexes (negative too), slices, unions, wildcards, deep scan, filters and
//! `length()`. A path is parsed once at load time and evaluated many times.

mod parser;

use serde_json::{Map, Value};

use self::parser::Parser;

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// `.name` or `['name']`
    Child(String),
    /// `[3]` or `[-1]`
    Index(i64),
    /// `.*` or `[*]`
    Wildcard,
    /// `[start:end:step]`
    Slice(Option<i64>, Option<i64>, Option<i64>),
    /// `['a','b']`
    Names(Vec<String>),
    /// `[0,2]`
    Indexes(Vec<i64>),
    /// `..name`, `..*`, `..[0]`: the inner step applied at every depth.
    Descendant(Box<Segment>),
    /// `[?(expr)]`
    Filter(Box<FilterExpr>),
    /// `.length()`
    Length,
}

/// A filter expression inside `[?( )]`.
#[derive(Debug, Clone, PartialEq)]
pub enum FilterExpr {
    Or(Box<FilterExpr>, Box<FilterExpr>),
    And(Box<FilterExpr>, Box<FilterExpr>),
    Not(Box<FilterExpr>),
    Exists(Operand),
    Compare(Operand, CompareOp, Operand),
}

/// A value inside a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// `@...`: relative to the current item.
    Current(Vec<Segment>),
    /// `$...`: relative to the document root.
    Root(Vec<Segment>),
    Literal(Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed path, relative to some root (`$`, `$$` or a variable).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    pub segments: Vec<Segment>,
}

impl JsonPath {
    /// Parses the part of a path after its root symbol, e.g. `.a.b[0]` of `$.a.b[0]`.
    pub fn parse_after_root(rest: &str) -> Result<Self, String> {
        let mut parser = Parser {
            chars: rest.chars().collect(),
            pos: 0,
        };
        let segments = parser.segments(false)?;
        if parser.pos != parser.chars.len() {
            return Err(format!("unexpected '{}'", parser.rest()));
        }
        Ok(Self { segments })
    }

    /// True when the path selects at most one value (no wildcard, slice, filter...).
    pub fn is_definite(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Child(_) | Segment::Index(_) | Segment::Length))
    }

    /// True for a Reference Path: only names and indexes.
    pub fn is_reference(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Child(_) | Segment::Index(_)))
    }

    /// Evaluates the path. A definite path gives its value, or `None` when it matches
    /// nothing; an indefinite path gives the array of its matches. With `strict_index`
    /// false an index past the end of an array gives `null`, as AWS does in payload
    /// templates; intrinsic arguments use strict mode, where that is a miss.
    pub fn evaluate(&self, root: &Value, strict_index: bool) -> Option<Value> {
        let (segments, length) = match self.segments.split_last() {
            Some((Segment::Length, init)) => (init, true),
            _ => (&self.segments[..], false),
        };
        let definite = self.is_definite();
        let result = if definite {
            let mut current = root;
            for segment in segments {
                match segment {
                    Segment::Child(name) => current = current.as_object()?.get(name)?,
                    Segment::Index(i) => {
                        let array = current.as_array()?;
                        match resolve_index(*i, array.len()) {
                            Some(idx) => current = &array[idx],
                            None if strict_index => return None,
                            None => return Some(Value::Null),
                        }
                    }
                    _ => return None,
                }
            }
            current.clone()
        } else {
            let matches = select(segments, root, root);
            Value::Array(matches.into_iter().cloned().collect())
        };
        if length {
            return match &result {
                Value::Array(a) => Some(Value::from(a.len())),
                Value::String(s) => Some(Value::from(s.chars().count())),
                Value::Object(o) => Some(Value::from(o.len())),
                _ => None,
            };
        }
        Some(result)
    }

    /// Writes `value` at this reference path inside `target`, creating missing objects
    /// on the way (ResultPath semantics).
    pub fn set(&self, target: &mut Value, value: Value) -> Result<(), String> {
        let mut current = target;
        let count = self.segments.len();
        for (n, segment) in self.segments.iter().enumerate() {
            let last = n + 1 == count;
            match segment {
                Segment::Child(name) => {
                    let Value::Object(map) = current else {
                        return Err(format!("'{name}' cannot be set on a non-object value"));
                    };
                    if last {
                        map.insert(name.clone(), value);
                        return Ok(());
                    }
                    let entry = map
                        .entry(name.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    current = entry;
                }
                Segment::Index(i) => {
                    let Value::Array(array) = current else {
                        return Err(format!("index {i} cannot be set on a non-array value"));
                    };
                    let len = array.len();
                    let Some(idx) = resolve_index(*i, len) else {
                        return Err(format!("index {i} is out of bounds"));
                    };
                    if last {
                        array[idx] = value;
                        return Ok(());
                    }
                    current = &mut array[idx];
                }
                _ => return Err("only names and indexes can be written".into()),
            }
        }
        *current = value;
        Ok(())
    }
}

fn resolve_index(i: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let idx = if i < 0 { len + i } else { i };
    if (0..len).contains(&idx) {
        usize::try_from(idx).ok()
    } else {
        None
    }
}

fn select<'a>(segments: &[Segment], node: &'a Value, root: &'a Value) -> Vec<&'a Value> {
    let mut current = vec![node];
    for segment in segments {
        let mut next = Vec::new();
        for value in current {
            step(segment, value, root, &mut next);
        }
        current = next;
    }
    current
}

fn step<'a>(segment: &Segment, value: &'a Value, root: &'a Value, out: &mut Vec<&'a Value>) {
    match segment {
        Segment::Child(name) => {
            if let Some(v) = value.as_object().and_then(|o| o.get(name)) {
                out.push(v);
            }
        }
        Segment::Index(i) => {
            if let Some(a) = value.as_array()
                && let Some(idx) = resolve_index(*i, a.len())
            {
                out.push(&a[idx]);
            }
        }
        Segment::Wildcard => match value {
            Value::Array(a) => out.extend(a.iter()),
            Value::Object(o) => out.extend(o.values()),
            _ => {}
        },
        Segment::Slice(start, end, step_by) => {
            if let Some(a) = value.as_array() {
                for idx in slice_indexes(a.len(), *start, *end, *step_by) {
                    out.push(&a[idx]);
                }
            }
        }
        Segment::Names(names) => {
            if let Some(o) = value.as_object() {
                out.extend(names.iter().filter_map(|n| o.get(n)));
            }
        }
        Segment::Indexes(indexes) => {
            if let Some(a) = value.as_array() {
                out.extend(
                    indexes
                        .iter()
                        .filter_map(|i| resolve_index(*i, a.len()).map(|idx| &a[idx])),
                );
            }
        }
        Segment::Descendant(inner) => descend(inner, value, root, out),
        Segment::Filter(expr) => match value {
            Value::Array(a) => out.extend(a.iter().filter(|item| filter(expr, item, root))),
            Value::Object(o) => out.extend(o.values().filter(|item| filter(expr, item, root))),
            _ => {}
        },
        Segment::Length => {}
    }
}

fn descend<'a>(inner: &Segment, value: &'a Value, root: &'a Value, out: &mut Vec<&'a Value>) {
    step(inner, value, root, out);
    match value {
        Value::Array(a) => a.iter().for_each(|v| descend(inner, v, root, out)),
        Value::Object(o) => o.values().for_each(|v| descend(inner, v, root, out)),
        _ => {}
    }
}

fn slice_indexes(
    len: usize,
    start: Option<i64>,
    end: Option<i64>,
    step: Option<i64>,
) -> Vec<usize> {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    let step = step.unwrap_or(1).max(1);
    let norm = |v: i64| if v < 0 { (len + v).max(0) } else { v.min(len) };
    let start = start.map_or(0, norm);
    let end = end.map_or(len, norm);
    let mut indexes = Vec::new();
    let mut i = start;
    while i < end {
        if let Ok(idx) = usize::try_from(i) {
            indexes.push(idx);
        }
        i += step;
    }
    indexes
}

fn operand_value(operand: &Operand, item: &Value, root: &Value) -> Option<Value> {
    match operand {
        Operand::Literal(v) => Some(v.clone()),
        Operand::Current(segments) | Operand::Root(segments) => {
            let base = if matches!(operand, Operand::Current(_)) {
                item
            } else {
                root
            };
            let path = JsonPath {
                segments: segments.clone(),
            };
            path.evaluate(base, true)
        }
    }
}

fn filter(expr: &FilterExpr, item: &Value, root: &Value) -> bool {
    match expr {
        FilterExpr::Or(a, b) => filter(a, item, root) || filter(b, item, root),
        FilterExpr::And(a, b) => filter(a, item, root) && filter(b, item, root),
        FilterExpr::Not(a) => !filter(a, item, root),
        FilterExpr::Exists(op) => operand_value(op, item, root).is_some(),
        FilterExpr::Compare(a, op, b) => {
            let (Some(a), Some(b)) = (operand_value(a, item, root), operand_value(b, item, root))
            else {
                return false;
            };
            compare(&a, *op, &b)
        }
    }
}

fn compare(a: &Value, op: CompareOp, b: &Value) -> bool {
    use std::cmp::Ordering;
    let ordering = match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64().partial_cmp(&y.as_f64()),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => {
            return match op {
                CompareOp::Eq => a == b,
                CompareOp::Ne => a != b,
                _ => false,
            };
        }
    };
    match (op, ordering) {
        (CompareOp::Eq, Some(o)) => o == Ordering::Equal,
        (CompareOp::Ne, Some(o)) => o != Ordering::Equal,
        (CompareOp::Ne, None) => true,
        (CompareOp::Lt, Some(o)) => o == Ordering::Less,
        (CompareOp::Le, Some(o)) => o != Ordering::Greater,
        (CompareOp::Gt, Some(o)) => o == Ordering::Greater,
        (CompareOp::Ge, Some(o)) => o != Ordering::Less,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(path: &str, doc: &Value) -> Option<Value> {
        JsonPath::parse_after_root(path)
            .unwrap()
            .evaluate(doc, false)
    }

    #[test]
    fn definite_paths_select_one_value() {
        let doc = json!({"a": {"b": [10, 20, 30]}, "x y": 1});
        assert_eq!(eval(".a.b[1]", &doc), Some(json!(20)));
        assert_eq!(eval("['a']['b'][-1]", &doc), Some(json!(30)));
        assert_eq!(eval("['x y']", &doc), Some(json!(1)));
        assert_eq!(eval("", &doc), Some(doc.clone()));
        assert_eq!(eval(".missing", &doc), None);
        assert_eq!(eval(".a.b.c", &doc), None);
    }

    #[test]
    fn index_past_the_end_is_null_unless_strict() {
        let doc = json!({"items": [1, 2]});
        assert_eq!(eval(".items[5]", &doc), Some(Value::Null));
        let strict = JsonPath::parse_after_root(".items[5]")
            .unwrap()
            .evaluate(&doc, true);
        assert_eq!(strict, None);
    }

    #[test]
    fn indefinite_paths_collect_matches() {
        let doc = json!({"a": [{"n": 1}, {"n": 2}, {"m": 3}], "b": {"c": {"n": 4}}});
        assert_eq!(eval(".a[*].n", &doc), Some(json!([1, 2])));
        assert_eq!(eval(".a[0:2].n", &doc), Some(json!([1, 2])));
        assert_eq!(eval(".a[0,2]", &doc), Some(json!([{"n": 1}, {"m": 3}])));
        assert_eq!(eval("..n", &doc), Some(json!([1, 2, 4])));
        assert_eq!(eval(".a[?(@.n > 1)]", &doc), Some(json!([{"n": 2}])));
        assert_eq!(eval(".a[?(@.m)]", &doc), Some(json!([{"m": 3}])));
        assert_eq!(
            eval(".a[?(@.n == 1 || @.m == 3)]", &doc),
            Some(json!([{"n": 1}, {"m": 3}]))
        );
        assert_eq!(eval(".nothing[*]", &doc), Some(json!([])));
        assert_eq!(eval(".a[-1:]", &doc), Some(json!([{"m": 3}])));
    }

    #[test]
    fn length_counts_array_items() {
        let doc = json!({"a": [1, 2, 3]});
        assert_eq!(eval(".a.length()", &doc), Some(json!(3)));
    }

    #[test]
    fn string_filters_compare_text() {
        let doc = json!({"a": [{"k": "x"}, {"k": "y"}]});
        assert_eq!(eval(".a[?(@.k == 'y')]", &doc), Some(json!([{"k": "y"}])));
        assert_eq!(eval(".a[?(@.k != \"y\")]", &doc), Some(json!([{"k": "x"}])));
    }

    #[test]
    fn classification() {
        let p = JsonPath::parse_after_root(".a[0].b").unwrap();
        assert!(p.is_definite() && p.is_reference());
        let p = JsonPath::parse_after_root(".a[*]").unwrap();
        assert!(!p.is_definite() && !p.is_reference());
    }

    #[test]
    fn malformed_paths_are_rejected() {
        for bad in ["a", ".", ".a[", ".a[?(@.x]", ".a.foo()", "[1:2:x]"] {
            assert!(JsonPath::parse_after_root(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_creates_missing_objects() {
        let mut doc = json!({"a": 1});
        let p = JsonPath::parse_after_root(".b.c").unwrap();
        p.set(&mut doc, json!(2)).unwrap();
        assert_eq!(doc, json!({"a": 1, "b": {"c": 2}}));
        let p = JsonPath::parse_after_root(".a.c").unwrap();
        assert!(p.set(&mut doc, json!(3)).is_err());
        let mut arr = json!({"l": [1, 2]});
        JsonPath::parse_after_root(".l[1]")
            .unwrap()
            .set(&mut arr, json!(9))
            .unwrap();
        assert_eq!(arr, json!({"l": [1, 9]}));
    }
}
