//! `${Name}` placeholders in string values, as CloudFormation's DefinitionSubstitutions.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use crate::error::{ValidationError, pointer_token};

/// Replaces every `${Name}` inside string values. A placeholder with no value is
/// reported at its JSON pointer.
pub fn substitute(
    value: &mut Value,
    substitutions: &HashMap<String, String>,
    pointer: &str,
    errors: &mut Vec<ValidationError>,
) {
    match value {
        Value::String(text) if text.contains("${") => match replace(text, substitutions) {
            Ok(replaced) => *text = replaced,
            Err(name) => errors.push(ValidationError {
                pointer: pointer.to_string(),
                message: format!("No value was given for the placeholder '${{{name}}}'"),
            }),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                substitute(item, substitutions, &format!("{pointer}/{i}"), errors);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let here = format!("{pointer}/{}", pointer_token(key));
                substitute(item, substitutions, &here, errors);
            }
        }
        _ => {}
    }
}

fn replace(text: &str, substitutions: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let Some(len) = rest[start + 2..].find('}') else {
            break;
        };
        let name = &rest[start + 2..start + 2 + len];
        let value = substitutions.get(name).ok_or_else(|| name.to_string())?;
        out.push_str(&rest[..start]);
        out.push_str(value);
        rest = &rest[start + 3 + len..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The names of every `${Name}` placeholder in a definition, sorted.
pub fn placeholders(definition_json: &str) -> Result<Vec<String>, serde_json::Error> {
    let value: Value = serde_json::from_str(definition_json)?;
    let mut names = BTreeSet::new();
    collect(&value, &mut names);
    Ok(names.into_iter().collect())
}

fn collect(value: &Value, names: &mut BTreeSet<String>) {
    match value {
        Value::String(text) => {
            let mut rest = text.as_str();
            while let Some(start) = rest.find("${") {
                let Some(len) = rest[start + 2..].find('}') else {
                    break;
                };
                names.insert(rest[start + 2..start + 2 + len].to_string());
                rest = &rest[start + 3 + len..];
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, names)),
        Value::Object(map) => map.values().for_each(|v| collect(v, names)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replaces_placeholders_in_strings() {
        let mut v = json!({"a": "${X}:${Y}", "b": ["${X}"], "c": 1});
        let subs = HashMap::from([("X".to_string(), "1".to_string()), ("Y".into(), "2".into())]);
        let mut errors = Vec::new();
        substitute(&mut v, &subs, "", &mut errors);
        assert!(errors.is_empty());
        assert_eq!(v, json!({"a": "1:2", "b": ["1"], "c": 1}));
    }

    #[test]
    fn missing_values_are_reported_at_their_pointer() {
        let mut v = json!({"States": {"A": {"Resource": "${Fn}"}}});
        let mut errors = Vec::new();
        substitute(&mut v, &HashMap::new(), "", &mut errors);
        assert_eq!(errors[0].pointer, "/States/A/Resource");
        assert!(errors[0].message.contains("${Fn}"));
    }

    #[test]
    fn lists_placeholders() {
        let names = placeholders(r#"{"a": "${B} ${A}", "c": ["${B}"]}"#).unwrap();
        assert_eq!(names, ["A", "B"]);
    }
}
