//! Every state machine file: valid ASL, every placeholder names a function crate, and
//! every error name in Retry/Catch/Fail is a stable Apiary name or a States./Lambda. one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use apiary_core::ERROR_NAMES;
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn machines() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("statemachines"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".asl.json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no state machines found");
    files
}

fn error_names(node: &Value, found: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("ErrorEquals", Value::Array(names)) => {
                        found.extend(names.iter().filter_map(Value::as_str).map(str::to_owned))
                    }
                    ("Error", Value::String(name))
                        if map.get("Type") == Some(&Value::String("Fail".into())) =>
                    {
                        found.push(name.clone())
                    }
                    ("Error", Value::String(name)) if map.contains_key("Cause") => {
                        found.push(name.clone())
                    }
                    _ => error_names(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| error_names(i, found)),
        _ => {}
    }
}

#[test]
fn every_state_machine_is_valid_and_uses_known_names() {
    let stable: Vec<&str> = ERROR_NAMES.iter().map(|e| e.name).collect();
    for file in machines() {
        let text = std::fs::read_to_string(&file).unwrap();
        let placeholders = apiary_asl::placeholders(&text).unwrap();
        let mut substitutions = HashMap::new();
        for name in &placeholders {
            let function = apiary_core::aws::function_for_placeholder(name).unwrap_or_else(|| {
                panic!(
                    "{}: placeholder ${{{name}}} is not a function ARN",
                    file.display()
                )
            });
            assert!(
                root()
                    .join("functions")
                    .join(&function)
                    .join("Cargo.toml")
                    .is_file(),
                "{}: ${{{name}}} names no crate functions/{function}",
                file.display()
            );
            substitutions.insert(
                name.clone(),
                format!("arn:aws:lambda:us-west-2:123456789012:function:{function}"),
            );
        }
        if let Err(errors) = apiary_asl::StateMachine::load(&text, &substitutions) {
            panic!("{} is not valid: {errors}", file.display());
        }
        let definition: Value = serde_json::from_str(&text).unwrap();
        let mut names = Vec::new();
        error_names(&definition, &mut names);
        for name in names {
            assert!(
                stable.contains(&name.as_str())
                    || name.starts_with("States.")
                    || name.starts_with("Lambda."),
                "{}: error name {name} is neither a stable Apiary name nor States./Lambda.",
                file.display()
            );
        }
    }
}
