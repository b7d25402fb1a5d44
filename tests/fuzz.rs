//! Fuzzing of everything a person or AWS hands the functions: the deployment spec (as a
//! spec document and as the bootstrap stack's parameters map), the day-2 workflow inputs,
//! the events handle-alert reads, and the CloudFormation requests the launch resource
//! answers.
//!
//! Each property starts from a valid input and changes one place in it (a value replaced
//! by an arbitrary one, a field removed, an unknown field added), or generates a whole
//! arbitrary document, and requires: no panic, and a refusal that names the place that
//! was changed, so that the person reading it knows what to fix. A changed input that is
//! still valid is accepted; the property says nothing about it.
//!
//! Pure functions only (no emulator): thousands of cases run in seconds. `PROPTEST_CASES`
//! raises the number of cases per property (256 by default) for a longer run on demand.

use apiary_core::inputs;
use apiary_core::spec::{DeploymentSpec, SizePreset};
use launch::request::{Properties, Request, SigningKeyProperties};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};
use serde_json::{Map, Value, json};

// ---- documents and changes ----------------------------------------------------------

/// One step of a path into a JSON document.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A path as the spec's problems write it: `network.ingress_cidrs[0]`.
fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// The field a person would look for: the last key on the path.
fn field(path: &[Step]) -> Option<&str> {
    path.iter().rev().find_map(|step| match step {
        Step::Key(key) => Some(key.as_str()),
        Step::Index(_) => None,
    })
}

/// Every place in `value` below its root, parents before children.
fn places(value: &Value) -> Vec<Vec<Step>> {
    fn walk(value: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        match value {
            Value::Object(object) => {
                for (key, child) in object {
                    at.push(Step::Key(key.clone()));
                    out.push(at.clone());
                    walk(child, at, out);
                    at.pop();
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    at.push(Step::Index(index));
                    out.push(at.clone());
                    walk(child, at, out);
                    at.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn get_mut<'a>(value: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |at, step| match step {
        Step::Key(key) => at.get_mut(key.as_str()),
        Step::Index(index) => at.get_mut(*index),
    })
}

/// One change to a valid document.
#[derive(Clone, Debug)]
enum Change {
    /// The value at a place becomes this one.
    Replace(Value),
    /// The place is removed (a field, or an item of a list).
    Remove,
    /// A field of this name is added beside the place (a sibling), or inside it when it
    /// is an object.
    Add(String, Value),
}

/// Applies `change` at `places[pick % len]`; returns the changed document and the path a
/// refusal must name.
fn apply(document: &Value, pick: usize, change: &Change) -> (Value, Vec<Step>) {
    let mut changed = document.clone();
    let all = places(document);
    let place = all[pick % all.len()].clone();
    let (parent_path, last) = place.split_at(place.len() - 1);
    let named = match change {
        Change::Replace(value) => {
            *get_mut(&mut changed, &place).expect("the place exists") = value.clone();
            place.clone()
        }
        Change::Remove => {
            let parent = get_mut(&mut changed, parent_path).expect("the parent exists");
            match (&last[0], parent) {
                (Step::Key(key), Value::Object(object)) => {
                    object.shift_remove(key);
                    place.clone()
                }
                (Step::Index(index), Value::Array(items)) => {
                    items.remove(*index);
                    parent_path.to_vec()
                }
                _ => unreachable!("a place's step matches its parent"),
            }
        }
        Change::Add(key, value) => {
            let target = if get_mut(&mut changed, &place).is_some_and(|v| v.is_object()) {
                place.clone()
            } else {
                parent_path.to_vec()
            };
            match get_mut(&mut changed, &target) {
                Some(Value::Object(object)) if !object.contains_key(key) => {
                    object.insert(key.clone(), value.clone());
                    let mut named = target.clone();
                    named.push(Step::Key(key.clone()));
                    named
                }
                // Beside an item of a list, or a name already there: nothing is added.
                _ => return (document.clone(), Vec::new()),
            }
        }
    };
    (changed, named)
}

/// Strings that sit on the edges of what the inputs accept.
fn edge_strings() -> Vec<String> {
    let mut out: Vec<String> = [
        "",
        " ",
        "0",
        "-1",
        "1",
        "2",
        "3",
        "4",
        "7",
        "90",
        "2561",
        "4294967296",
        "99999999999999999999999",
        "1.5",
        "1e3",
        "true",
        "false",
        "TRUE",
        "yes",
        "null",
        "small",
        "medium",
        "large",
        "single",
        "per-az",
        "postgres",
        "redis",
        "documentdb",
        "ingestion",
        "system",
        "keys-check",
        "secrets",
        "us-west-2",
        "us-east-1",
        "10.0.0.0/16",
        "10.0.0.0/8",
        "10.0.0.0/28",
        "10.0.0.0/32",
        "10.0.0.0/0",
        "10.0.0.0/33",
        "10.0.0.1/16",
        "300.0.0.0/16",
        "0.0.0.0/0",
        "::/0",
        "203.0.113.0/24, ,198.51.100.0/24",
        ",",
        "cron(0 3 * * ? *)",
        "rate(1 day)",
        "1.33",
        "1.9999",
        "hh.acme.example.com",
        "-.example.com",
        "public.ecr.aws/honeyhive/ingestion:1.0.0",
        "ingestion@sha256:00",
        "arn:aws:iam::123456789012:role/admins",
        "arn:aws:sts::123456789012:assumed-role/ops/alice",
        "arn:aws:states:us-west-2:123456789012:stateMachine:apiary-acme-provision",
        "arn:aws:secretsmanager:us-west-2:123456789012:secret:x",
        "arn::::::",
        "2026-12-01T05:00:00Z",
        "2026-13-45T99:99:99Z",
        "Create",
        "Delete",
        "é",
        "\u{0}",
        "../../etc",
        "${jndi}",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    out.push("a".repeat(300));
    out.push("9".repeat(400));
    out
}

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => prop::sample::select(edge_strings()),
        1 => "[a-z0-9./:, -]{0,24}",
        1 => any::<String>(),
    ]
    .boxed()
}

fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(vec![
            0_i64,
            -1,
            1,
            2,
            3,
            4,
            7,
            16,
            28,
            90,
            2560,
            2561,
            i64::from(i32::MAX) + 1,
            i64::MAX,
            i64::MIN,
        ])
        .prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        text().prop_map(Value::String),
    ]
    .boxed()
}

fn value() -> BoxedStrategy<Value> {
    leaf()
        .prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-zA-Z_-]{1,12}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
            ]
        })
        .boxed()
}

/// A field no input knows. Lowercase and PascalCase both, so that a spec document and a
/// parameters map each get names of their own style.
fn unknown_field() -> BoxedStrategy<String> {
    prop_oneof!["zz_[a-z_]{1,10}", "Zz[A-Za-z]{1,10}"].boxed()
}

fn change() -> BoxedStrategy<Change> {
    prop_oneof![
        4 => value().prop_map(Change::Replace),
        1 => Just(Change::Remove),
        1 => (unknown_field(), value()).prop_map(|(k, v)| Change::Add(k, v)),
    ]
    .boxed()
}

/// A parameters map's values are strings; most changes keep them so.
fn parameter_change() -> BoxedStrategy<Change> {
    prop_oneof![
        4 => text().prop_map(|s| Change::Replace(Value::String(s))),
        1 => leaf().prop_map(Change::Replace),
        1 => Just(Change::Remove),
        1 => (unknown_field(), text()).prop_map(|(k, v)| Change::Add(k, Value::String(v))),
    ]
    .boxed()
}

// ---- what a refusal must say --------------------------------------------------------

/// Whether a problem at `problem` (a spec problem's path) is about `changed`: the same
/// place, one inside it, or the object or list that holds it.
fn about(problem: &str, changed: &str) -> bool {
    let under = |inner: &str, outer: &str| {
        !outer.is_empty()
            && inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    };
    under(problem, changed) || under(changed, problem)
}

fn check_spec(document: &Value, changed: &[Step]) -> Result<(), TestCaseError> {
    let Err(errors) = DeploymentSpec::parse(document) else {
        return Ok(());
    };
    prop_assert!(!errors.problems.is_empty(), "a refusal with no problem");
    for problem in &errors.problems {
        prop_assert!(
            !problem.message.trim().is_empty(),
            "a problem with no message at `{}`",
            problem.path
        );
    }
    if changed.is_empty() {
        return Ok(());
    }
    let changed = render(changed);
    // A problem at the place, or one elsewhere that names it (a field that depends on it).
    prop_assert!(
        errors
            .problems
            .iter()
            .any(|problem| about(&problem.path, &changed) || problem.message.contains(&changed)),
        "the refusal does not name `{changed}`: {errors}\n{}",
        serde_json::to_string_pretty(document).unwrap_or_default()
    );
    Ok(())
}

/// A refusal (an `Apiary.InvalidInput` error) whose message names one of `fields` (none:
/// any refusal).
fn check_named(
    outcome: apiary_core::Result<impl std::fmt::Debug>,
    fields: &[&str],
    what: &str,
) -> Result<(), TestCaseError> {
    let Err(err) = outcome else {
        return Ok(());
    };
    prop_assert_eq!(
        err.name(),
        apiary_core::ErrorName::InvalidInput,
        "{} was refused with another error than invalid input: {}",
        what,
        err
    );
    let text = err.to_string();
    prop_assert!(
        fields.is_empty() || fields.iter().any(|field| text.contains(field)),
        "{what}: the refusal does not name {fields:?}: {text}"
    );
    Ok(())
}

// ---- the inputs ----------------------------------------------------------------------

fn spec_document() -> Value {
    serde_json::to_value(DeploymentSpec::example(SizePreset::Medium)).expect("a spec serialises")
}

fn parameters_map() -> Value {
    json!({
        "DeploymentName": "acme",
        "Region": "us-west-2",
        "Size": "medium",
        "VpcCidr": "10.20.0.0/16",
        "AzCount": "3",
        "NatMode": "per-az",
        "IngressCidrs": "203.0.113.0/24, 198.51.100.0/24",
        "Domain": "hh.acme.example.com",
        "KubernetesVersion": "1.33",
        "PublicClusterEndpoint": "true",
        "PublicAccessCidrs": "203.0.113.0/24",
        "ClusterAdminArns": "arn:aws:iam::123456789012:role/admins",
        "ClusterViewerArns": "",
        "TwingateSecretArn": "",
        "MultiAz": "true",
        "EnableDocumentDb": "true",
        "EnableRedis": "true",
        "S3RetentionDays": "45",
        "MetricsWorkspaceArn": "",
        "BackupSchedule": "cron(0 3 * * ? *)",
        "BackupRetentionDays": "14",
        "DrRegion": "us-east-1",
        "IngestionImage": "public.ecr.aws/honeyhive/ingestion:1.0.0",
        "KeyRotationDays": "180"
    })
}

/// A valid input of each day-2 workflow, with every field it reads set.
fn workflow_inputs() -> Vec<(&'static str, Value)> {
    vec![
        (
            inputs::teardown::WORKFLOW,
            json!({"confirm": "acme", "delete_backups": true}),
        ),
        (
            inputs::rotate_keys::WORKFLOW,
            json!({"scope": "secrets", "on_demand": false}),
        ),
        (inputs::rotate_keys::WORKFLOW, json!({"on_demand": true})),
        (
            inputs::backup::WORKFLOW,
            json!({"stores": ["postgres", "documentdb", "redis"]}),
        ),
        (
            inputs::restore_test::WORKFLOW,
            json!({"stores": ["postgres"]}),
        ),
        (
            inputs::scale_pools::WORKFLOW,
            json!({"pool": "ingestion", "cpu": 64, "memory_gib": 256,
                   "disruption_budget": "10%", "freeze": false, "dry_run": true}),
        ),
        (
            inputs::scale_pools::WORKFLOW,
            json!({"pool": "system", "min": 2, "max": 4, "desired": 3}),
        ),
        (
            inputs::upgrade::WORKFLOW,
            json!({"image": "public.ecr.aws/honeyhive/ingestion:1.1.0"}),
        ),
        (
            inputs::upgrade::WORKFLOW,
            json!({"kubernetes_version": "1.34"}),
        ),
        (inputs::drift::WORKFLOW, json!({"repair": true})),
    ]
}

const DEPLOYMENT: &str = "acme";

fn alert_events() -> Vec<Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/events");
    let mut events: Vec<Value> = std::fs::read_dir(&dir)
        .expect("examples/events is readable")
        .map(|entry| {
            let path = entry.expect("an entry").path();
            let text = std::fs::read_to_string(&path).expect("an example event");
            serde_json::from_str(&text).expect("an example event is JSON")
        })
        .collect();
    events.sort_by_key(|e| e["id"].to_string());
    events
}

const KEY: &str = "arn:aws:kms:us-west-2:123456789012:key/11111111-2222-3333-4444-555555555555";
const SECRET: &str = "arn:aws:secretsmanager:us-west-2:123456789012:secret:rds!db-1-AbCdEf";

fn classify(event: &Value) -> apiary_core::Result<apiary_core::alerts::Alert> {
    apiary_core::alerts::classify("demo", event, &[KEY.to_owned()], &[SECRET.to_owned()])
}

fn launch_request(resource_type: &str) -> Value {
    let properties = if resource_type == "Custom::ApiarySigningKey" {
        json!({
            "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:apiary-acme-launch",
            "SecretArn": "arn:aws:secretsmanager:us-west-2:123456789012:secret:apiary-acme-signing-key"
        })
    } else {
        json!({
            "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:apiary-acme-launch",
            "StateMachineArn": "arn:aws:states:us-west-2:123456789012:stateMachine:apiary-acme-provision",
            "Input": {"spec": parameters_map(), "queue": true}
        })
    };
    json!({
        "RequestType": "Update",
        "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:apiary-acme-launch",
        "ResponseURL": "https://cloudformation-custom-resource-response-uswest2.s3.amazonaws.com/x?X-Amz-Signature=abc",
        "StackId": "arn:aws:cloudformation:us-west-2:123456789012:stack/apiary-acme/0f3c",
        "RequestId": "5a1d",
        "LogicalResourceId": "Launch",
        "ResourceType": resource_type,
        "PhysicalResourceId": "apiary-acme-launch",
        "ResourceProperties": properties,
        "OldResourceProperties": properties
    })
}

/// Reads a launch request as the function does, through to its properties.
fn read_launch(event: Value) -> apiary_core::Result<()> {
    let request = Request::from_event(event)?;
    request.kind()?;
    // Computed for every request; must not panic on any text.
    let _ = (request.response_host(), request.stack_name());
    if request.resource_type == "Custom::ApiarySigningKey" {
        SigningKeyProperties::parse(&request.resource_properties)?;
    } else {
        let properties = Properties::parse(&request.resource_properties)?;
        if let Err(errors) = DeploymentSpec::parse(&properties.input["spec"]) {
            return Err(apiary_core::Error::invalid_input(format!(
                "ResourceProperties.Input.spec: {errors}"
            )));
        }
    }
    Ok(())
}

// ---- the properties -------------------------------------------------------------------

#[test]
fn every_starting_input_is_valid() {
    // The properties below say nothing unless what they change was valid to begin with.
    DeploymentSpec::parse(&spec_document()).expect("the spec document is valid");
    DeploymentSpec::parse(&parameters_map()).expect("the parameters map is valid");
    for (workflow, input) in workflow_inputs() {
        inputs::parse(workflow, DEPLOYMENT, &input)
            .unwrap_or_else(|e| panic!("the {workflow} input {input} is valid: {e}"));
    }
    let events = alert_events();
    assert!(events.len() >= 10, "the example events were read");
    for event in &events {
        classify(event).unwrap_or_else(|e| panic!("{} is read: {e}", event["id"]));
    }
    for resource_type in ["Custom::ApiaryLaunch", "Custom::ApiarySigningKey"] {
        read_launch(launch_request(resource_type))
            .unwrap_or_else(|e| panic!("the {resource_type} request is valid: {e}"));
    }
}

proptest! {
    // Failures found are kept beside this file and tried first on every run.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "fuzz.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_spec_document_changed_in_one_place_is_refused_naming_it(
        pick in any::<usize>(),
        change in change(),
    ) {
        let (document, named) = apply(&spec_document(), pick, &change);
        check_spec(&document, &named)?;
    }

    #[test]
    fn a_parameters_map_changed_in_one_place_is_refused_naming_the_parameter(
        pick in any::<usize>(),
        change in parameter_change(),
    ) {
        let (document, named) = apply(&parameters_map(), pick, &change);
        check_spec(&document, &named)?;
    }

    #[test]
    fn any_document_as_a_spec_is_read_or_refused_with_its_problems(document in value()) {
        check_spec(&document, &[])?;
    }

    #[test]
    fn a_workflow_input_changed_in_one_place_is_refused_naming_the_field(
        which in any::<usize>(),
        pick in any::<usize>(),
        change in change(),
    ) {
        let all = workflow_inputs();
        let (workflow, input) = &all[which % all.len()];
        let (changed, named) = apply(input, pick, &change);
        check_named(
            inputs::parse(workflow, DEPLOYMENT, &changed),
            &field(&named).into_iter().collect::<Vec<_>>(),
            &format!("the {workflow} input {changed}"),
        )?;
    }

    #[test]
    fn any_document_as_a_workflow_input_is_read_or_refused(
        which in any::<usize>(),
        input in value(),
    ) {
        let all = workflow_inputs();
        let (workflow, _) = &all[which % all.len()];
        check_named(
            inputs::parse(workflow, DEPLOYMENT, &input),
            &[],
            &format!("the {workflow} input {input}"),
        )?;
    }

    #[test]
    fn an_alert_event_changed_in_one_place_is_read_or_refused_naming_the_field(
        which in any::<usize>(),
        pick in any::<usize>(),
        change in change(),
    ) {
        let all = alert_events();
        let (event, named) = apply(&all[which % all.len()], pick, &change);
        // Only the envelope is required; a detail of another shape is recorded, never
        // refused, so a refusal must name the envelope's field.
        let envelope: Vec<&str> = match named.first() {
            Some(Step::Key(key)) if named.len() == 1 => vec![key.as_str()],
            _ => Vec::new(),
        };
        check_named(classify(&event), &envelope, &format!("the event {event}"))?;
    }

    #[test]
    fn any_document_as_an_alert_event_is_read_or_refused(event in value()) {
        check_named(classify(&event), &[], &format!("the event {event}"))?;
    }

    #[test]
    fn a_launch_request_changed_in_one_place_is_answered_or_refused_naming_the_field(
        signing_key in any::<bool>(),
        pick in any::<usize>(),
        change in change(),
    ) {
        let resource_type = if signing_key { "Custom::ApiarySigningKey" } else { "Custom::ApiaryLaunch" };
        let (event, named) = apply(&launch_request(resource_type), pick, &change);
        // The resource type picks which properties are read (an absent one reads as the
        // launch resource's): a changed type is refused naming it or the properties.
        let fields = match field(&named) {
            Some("ResourceType") => vec!["ResourceType", "ResourceProperties"],
            other => other.into_iter().collect(),
        };
        check_named(read_launch(event.clone()), &fields, &format!("the request {event}"))?;
    }

    #[test]
    fn any_document_as_a_launch_request_is_answered_or_refused(event in value()) {
        check_named(read_launch(event.clone()), &[], &format!("the request {event}"))?;
    }
}
