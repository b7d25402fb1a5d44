//! The `apiary spec` commands as a user runs them.

use std::process::{Command, Output};

fn apiary(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_apiary"))
        .args(args)
        .output()
        .expect("apiary runs")
}

fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("apiary-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn example_validates_for_every_size() {
    for size in ["small", "medium", "large"] {
        let out = apiary(&["spec", "example", "--size", size]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let example = String::from_utf8(out.stdout).unwrap();
        assert!(
            example.contains(&format!("\"size\": \"{size}\"")),
            "{example}"
        );
        let file = temp_file(&format!("{size}.json"), &example);
        let out = apiary(&["spec", "validate", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
    }
}

#[test]
fn invalid_spec_exits_2_and_lists_every_problem() {
    let file = temp_file(
        "bad.json",
        r#"{"name": "Bad", "network": {"vpc_cidr": "10.0.0.0/8", "az_count": 5}, "dns": {"domain": "x.example.com"}}"#,
    );
    let out = apiary(&["spec", "validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("4 problems"), "{stderr}");
    assert!(
        stderr.contains("network.vpc_cidr: 10.0.0.0/8 is wider than /16"),
        "{stderr}"
    );
    assert!(stderr.contains("network.az_count"), "{stderr}");
    assert!(stderr.contains("- name:"), "{stderr}");
}

#[test]
fn missing_file_is_an_error_not_an_invalid_spec() {
    let out = apiary(&["spec", "validate", "/nonexistent/spec.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/spec.json"));
}

#[test]
fn schema_is_json_with_the_spec_fields() {
    let out = apiary(&["spec", "schema"]);
    assert!(out.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let properties = schema["properties"].as_object().expect("properties");
    for field in [
        "name",
        "region",
        "size",
        "network",
        "dns",
        "databases",
        "storage",
        "backup",
    ] {
        assert!(properties.contains_key(field), "{field}");
    }
}
