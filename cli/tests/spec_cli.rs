//! The `apiary spec` commands as a user runs them.

use std::process::{Command, Output};

fn apiary(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_apiary"))
        .args(args)
        .output()
        .expect("apiary runs")
}

/// The emulator the tests run against (`scripts/test` starts one and sets it).
fn emulator_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is not set: run the tests with scripts/test")
}

/// `local run provision --json` with a spec its Validate step refuses.
fn provision_with_a_bad_spec(endpoint: &str) -> Output {
    apiary(&[
        "local",
        "run",
        "provision",
        "--json",
        "--input",
        r#"{"spec": {"name": "Bad!", "dns": {"domain": "x.example.com"}}}"#,
        "--endpoint",
        endpoint,
    ])
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

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn asl_run_prints_the_execution_and_exits_1_when_it_fails() {
    let example = root().join("shared/asl/examples/countdown.asl.json");
    let example = example.to_str().unwrap();
    let ok = apiary(&["asl", "run", example, "--input", r#"{"from": 3}"#]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let document: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(document["status"], "SUCCEEDED");

    let failed = apiary(&["asl", "run", example, "--input", r#"{"from": -1}"#]);
    assert_eq!(failed.status.code(), Some(1));
    let document: serde_json::Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(
        document["status"], "FAILED",
        "the document is printed either way"
    );
    assert_eq!(document["error"], "Example.Negative");

    let refused = apiary(&["asl", "run", example, "--input", "{nope"]);
    assert_eq!(refused.status.code(), Some(2));
}

#[test]
fn local_run_refuses_bad_input_before_starting_anything() {
    // An endpoint nothing listens on: a refusal must come before any use of it.
    let endpoint = "http://127.0.0.1:9";
    let unknown = apiary(&["local", "run", "no-such-workflow", "--endpoint", endpoint]);
    assert_eq!(unknown.status.code(), Some(2));
    let text = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        text.contains("unknown workflow") && text.contains("provision"),
        "{text}"
    );

    let bad_json = apiary(&[
        "local",
        "run",
        "provision",
        "--input",
        "{",
        "--endpoint",
        endpoint,
    ]);
    assert_eq!(bad_json.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_json.stderr).contains("--input is not valid JSON"));

    let spec = temp_file("bad-spec.json", r#"{"name": "Bad!"}"#);
    let bad_spec = apiary(&[
        "local",
        "run",
        "provision",
        "--spec",
        spec.to_str().unwrap(),
        "--json",
        "--endpoint",
        endpoint,
    ]);
    assert_eq!(bad_spec.status.code(), Some(2));
    assert!(bad_spec.stdout.is_empty(), "nothing on stdout when refused");
    assert!(String::from_utf8_lossy(&bad_spec.stderr).contains("invalid deployment spec"));
}

#[test]
fn local_run_says_when_the_endpoint_cannot_be_reached() {
    let out = apiary(&[
        "local",
        "run",
        "provision",
        "--json",
        "--endpoint",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("http://127.0.0.1:9 is not usable"), "{text}");
    assert!(
        !text.contains("DispatchFailure {"),
        "no Debug dumps: {text}"
    );
}

/// `apiary local run provision --json` against the emulator: one JSON document on
/// stdout, exit 0. Needs the emulator (`scripts/test` starts one).
#[test]
fn local_run_provision_prints_one_json_document() {
    let endpoint = emulator_endpoint();
    let state = std::env::temp_dir().join(format!("apiary-cli-state-{}", std::process::id()));
    let spec = temp_file(
        "cli-run.json",
        &format!(
            r#"{{"name": "clirun{}", "dns": {{"domain": "clirun.example.com"}},
                 "databases": {{"documentdb": false}}}}"#,
            std::process::id() % 100000
        ),
    );
    let out = apiary(&[
        "local",
        "run",
        "provision",
        "--json",
        "--spec",
        spec.to_str().unwrap(),
        "--endpoint",
        &endpoint,
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let document: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(document["status"], "SUCCEEDED");
    assert!(
        document["execution_arn"]
            .as_str()
            .unwrap()
            .contains(":execution:")
    );
    assert_eq!(document["output"]["status"], "READY");
}

/// A workflow's own refusal is a failed execution: the document says so and the exit code
/// is 1 (the spec given in --input replaces the demo spec and fails the Validate step).
#[test]
fn local_run_exits_1_when_the_workflow_refuses() {
    let endpoint = emulator_endpoint();
    let out = provision_with_a_bad_spec(&endpoint);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let document: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one document");
    assert_eq!(document["status"], "FAILED");
    assert_eq!(document["error"], "Apiary.InvalidSpec");
    assert!(
        document["cause"].as_str().unwrap().contains("name"),
        "{document}"
    );
}

/// `apiary status` after a provision: the record's status, no lock left behind, and the
/// last journal entry of every layer, as one JSON document.
#[test]
fn status_reports_a_provisioned_deployment() {
    let endpoint = emulator_endpoint();
    let state = std::env::temp_dir().join(format!("apiary-cli-status-{}", std::process::id()));
    let name = format!("clistatus{}", std::process::id() % 100000);
    let spec = temp_file(
        "cli-status.json",
        &format!(
            r#"{{"name": "{name}", "dns": {{"domain": "clistatus.example.com"}},
                 "databases": {{"documentdb": false}}}}"#
        ),
    );
    let out = apiary(&[
        "local",
        "run",
        "provision",
        "--json",
        "--spec",
        spec.to_str().unwrap(),
        "--endpoint",
        &endpoint,
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let provisioned: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");

    let out = apiary(&[
        "status",
        "--deployment",
        &name,
        "--endpoint",
        &endpoint,
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let document: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(document["deployment"], name.as_str());
    assert_eq!(document["table"], "apiary");
    assert_eq!(
        document["status"], provisioned["output"]["status"],
        "{document}"
    );
    assert!(document["lock"].is_null(), "{document}");
    let journal = document["journal"].as_array().expect("journal");
    let steps: Vec<&str> = journal.iter().filter_map(|e| e["step"].as_str()).collect();
    for layer in [
        "keys",
        "network",
        "dns",
        "storage",
        "databases",
        "cluster",
        "workloads",
    ] {
        assert!(steps.contains(&layer), "no {layer} entry: {document}");
    }
    let mut unique = steps.clone();
    unique.dedup();
    assert_eq!(unique, steps, "one entry per step");
    assert!(steps.starts_with(&["keys", "network", "dns"]), "{steps:?}");
    assert!(document["dns"]["pending_validation_records"].is_array());

    // The same read as text, the name and region taken from the spec.
    let out = apiary(&[
        "status",
        "--spec",
        spec.to_str().unwrap(),
        "--endpoint",
        &endpoint,
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains(&format!("deployment {name}")), "{text}");
    assert!(text.contains("lock: none held"), "{text}");
}

/// A deployment the table has no record of: exit 1, naming it and the table.
#[test]
fn status_of_an_unknown_deployment_exits_1() {
    let endpoint = emulator_endpoint();
    // A run refused by its Validate step still creates the state table, so the table
    // exists whichever test runs first.
    let out = provision_with_a_bad_spec(&endpoint);
    assert_eq!(out.status.code(), Some(1));
    let out = apiary(&[
        "status",
        "--deployment",
        "nosuchdeployment",
        "--endpoint",
        &endpoint,
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains("nosuchdeployment"), "{stderr}");
    assert!(stderr.contains("state table apiary"), "{stderr}");
}

#[test]
fn status_says_where_to_point_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_apiary"))
        .args(["status", "--deployment", "acme"])
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("apiary runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--endpoint"), "{stderr}");
}
