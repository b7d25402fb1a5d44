//! Smoke test: create `infra-bootstrap/bootstrap.yaml` as a stack on the emulator's
//! CloudFormation, as far as the emulator supports, and report what it could not do.
//!
//! The artifacts the template points at are uploaded first: a minimal valid zip for every
//! Lambda's `Code.S3Key` and the state machine files for every `DefinitionS3Location`.
//! moto's CloudFormation creates every resource inside the CreateStack call and has no
//! CREATE_FAILED path: a resource handler that trips over a property fails the whole call
//! with an HTML 500 and leaves the stack in CREATE_IN_PROGRESS, and a resource type it does
//! not know is skipped silently. So the test
//!
//! 1. tries the template as written and reports how far moto got;
//! 2. creates it again with the known emulator gaps ([`PROPERTY_GAPS`]) worked around and
//!    the resources it cannot run ([`REMOVED_TYPES`]) left out, and asserts that every
//!    other resource whose type is not in [`UNSUPPORTED_TYPES`] reached CREATE_COMPLETE,
//!    that the stack did, and that the resources moto left out are only of those types.
//!
//! A template change that breaks a resource moto can create therefore fails the test; a
//! change that adds a type moto lacks fails it too, until the type is listed below with
//! its reason.

use std::collections::BTreeMap;
use std::time::Duration;

use apiary_e2e::repo_root as root;
use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::DisplayErrorContext;
use aws_sdk_cloudformation::types::{Capability, Parameter};
use aws_sdk_s3::primitives::ByteStream;
use serde_json::Value;

/// Known emulator gaps on properties of resource types moto does create: the property is
/// removed from resources of that type before the second CreateStack. The resource is
/// still created and checked, only without that property.
const PROPERTY_GAPS: &[(&str, &str, &str)] = &[(
    "AWS::KMS::Key",
    "Tags",
    "moto 5.2.5 passes the CloudFormation tags ({Key, Value}) to KMS CreateKey, which \
     expects {TagKey, TagValue}: KeyError 'TagKey', and CreateStack fails with an HTML 500",
)];

/// Resource types in the template that moto's CloudFormation cannot create at all (it
/// skips them), with the reason. Their properties are checked by cfn-lint and checkov
/// (`scripts/lint-infra`) instead.
const UNSUPPORTED_TYPES: &[(&str, &str)] = &[
    (
        "AWS::CloudWatch::Alarm",
        "moto 5.2.5's CloudFormation models only AWS::CloudWatch::Dashboard of CloudWatch",
    ),
    (
        "AWS::SQS::QueuePolicy",
        "moto 5.2.5's CloudFormation models AWS::SQS::Queue but not its queue policy",
    ),
    (
        "AWS::Scheduler::Schedule",
        "moto 5.2.5's CloudFormation does not model EventBridge Scheduler",
    ),
    (
        "AWS::Lambda::EventInvokeConfig",
        "moto 5.2.5's CloudFormation does not model a function's event invoke config (its \
         Lambda API has PutFunctionEventInvokeConfig, no CloudFormation handler)",
    ),
    (
        "AWS::SNS::TopicPolicy",
        "moto 5.2.5's CloudFormation models only AWS::SNS::Topic of SNS",
    ),
    (
        "AWS::SNS::Subscription",
        "moto 5.2.5's CloudFormation models only AWS::SNS::Topic of SNS",
    ),
    (
        "AWS::SecretsManager::ResourcePolicy",
        "moto 5.2.5's CloudFormation does not model Secrets Manager",
    ),
    (
        "AWS::SecretsManager::Secret",
        "moto 5.2.5's CloudFormation does not model Secrets Manager (its secretsmanager \
         models have no CloudFormation handler)",
    ),
];

/// Resource types moto models but cannot run here: removed from the adapted template,
/// with every output that reads them, and reported as not created. (The launch function
/// behind the custom resource has its own end-to-end test, `tests/launch.rs`.)
const REMOVED_TYPES: &[(&str, &str)] = &[
    (
        "Custom::ApiaryLaunch",
        "moto answers a custom resource by invoking its Lambda, which it can run only in \
         Docker (there is none here), and then waits for the response with no timeout: the \
         stack would stay CREATE_IN_PROGRESS",
    ),
    (
        "Custom::ApiarySigningKey",
        "the same launch function behind it (its end-to-end test is in tests/launch.rs)",
    ),
];

/// The state table's custom resource cannot run here either (the same reason as
/// [`REMOVED_TYPES`]), but nearly every resource reads it: it is replaced by the table its
/// function makes, under the same name, so that their `Ref` and `Fn::GetAtt ... Arn`
/// resolve. The function itself is tested in `tests/state_table.rs`.
const STATE_TABLE_TYPE: &str = "Custom::ApiaryStateTable";

fn state_table_stand_in() -> Value {
    serde_json::json!({
        "Type": "AWS::DynamoDB::Table",
        "Properties": {
            "TableName": {"Fn::Sub": "apiary-${DeploymentName}"},
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"}
            ],
            "KeySchema": [
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"}
            ]
        }
    })
}

/// How long a stack may stay in a *_IN_PROGRESS status: 120 polls, 500 ms apart.
const POLLS: usize = 120;
const POLL_INTERVAL: Duration = Duration::from_millis(500);

fn template_text() -> String {
    std::fs::read_to_string(root().join("infra-bootstrap/bootstrap.yaml"))
        .expect("infra-bootstrap/bootstrap.yaml is readable")
}

fn resources(template: &Value) -> &serde_json::Map<String, Value> {
    template["Resources"]
        .as_object()
        .expect("Resources is a map")
}

/// A `{"Fn::Sub": "${ArtifactPrefix}..."}` key with the prefix filled in.
fn artifact_key(value: &Value, prefix: &str) -> String {
    let text = value
        .get("Fn::Sub")
        .and_then(Value::as_str)
        .or_else(|| value.as_str())
        .unwrap_or_else(|| panic!("an artifact key is a string or Fn::Sub: {value}"));
    let key = text.replace("${ArtifactPrefix}", prefix);
    assert!(!key.contains("${"), "unexpected substitution in {text}");
    key
}

/// Every object the template reads from the artifact bucket, with its content.
fn artifacts(template: &Value, prefix: &str) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for (id, resource) in resources(template) {
        let props = &resource["Properties"];
        match resource["Type"].as_str() {
            Some("AWS::Lambda::Function") => {
                let key = artifact_key(&props["Code"]["S3Key"], prefix);
                assert!(key.ends_with(".zip"), "{id}: code key {key} is not a zip");
                out.insert(key, stored_zip("bootstrap", b"#!/bin/sh\nexit 0\n"));
            }
            Some("AWS::StepFunctions::StateMachine") => {
                let key = artifact_key(&props["DefinitionS3Location"]["Key"], prefix);
                let file = key
                    .strip_prefix(prefix)
                    .unwrap_or_else(|| panic!("{id}: {key} is not under {prefix}"));
                let path = root().join(file);
                let body = std::fs::read(&path)
                    .unwrap_or_else(|e| panic!("{id}: {} is readable: {e}", path.display()));
                out.insert(key, body);
            }
            _ => {}
        }
    }
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A zip archive holding one stored (uncompressed) file, as PKZIP 2.0 writes it.
fn stored_zip(name: &str, content: &[u8]) -> Vec<u8> {
    let crc = crc32(content);
    let size = u32::try_from(content.len()).expect("small file");
    let name_len = u16::try_from(name.len()).expect("short name");
    let mut zip = Vec::new();
    // Local file header.
    zip.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    zip.extend_from_slice(&20u16.to_le_bytes()); // version needed
    zip.extend_from_slice(&0u16.to_le_bytes()); // flags
    zip.extend_from_slice(&0u16.to_le_bytes()); // method: stored
    zip.extend_from_slice(&0u16.to_le_bytes()); // time
    zip.extend_from_slice(&0x0021u16.to_le_bytes()); // date: 1980-01-01
    zip.extend_from_slice(&crc.to_le_bytes());
    zip.extend_from_slice(&size.to_le_bytes()); // compressed
    zip.extend_from_slice(&size.to_le_bytes()); // uncompressed
    zip.extend_from_slice(&name_len.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes()); // extra length
    zip.extend_from_slice(name.as_bytes());
    zip.extend_from_slice(content);
    let central_offset = u32::try_from(zip.len()).expect("small zip");
    // Central directory header.
    zip.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    zip.extend_from_slice(&0x031Eu16.to_le_bytes()); // made by: unix, 3.0
    zip.extend_from_slice(&20u16.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip.extend_from_slice(&0x0021u16.to_le_bytes());
    zip.extend_from_slice(&crc.to_le_bytes());
    zip.extend_from_slice(&size.to_le_bytes());
    zip.extend_from_slice(&size.to_le_bytes());
    zip.extend_from_slice(&name_len.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes()); // extra length
    zip.extend_from_slice(&0u16.to_le_bytes()); // comment length
    zip.extend_from_slice(&0u16.to_le_bytes()); // disk number
    zip.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
    zip.extend_from_slice(&(0o100_755u32 << 16).to_le_bytes()); // external: -rwxr-xr-x
    zip.extend_from_slice(&0u32.to_le_bytes()); // local header offset
    zip.extend_from_slice(name.as_bytes());
    let central_size = u32::try_from(zip.len()).expect("small zip") - central_offset;
    // End of central directory.
    zip.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip.extend_from_slice(&1u16.to_le_bytes());
    zip.extend_from_slice(&1u16.to_le_bytes());
    zip.extend_from_slice(&central_size.to_le_bytes());
    zip.extend_from_slice(&central_offset.to_le_bytes());
    zip.extend_from_slice(&0u16.to_le_bytes());
    zip
}

/// Whether `value` reads resource `id` (`Ref`, `Fn::GetAtt` or a `${id...}` in `Fn::Sub`).
fn reads(value: &Value, id: &str) -> bool {
    match value {
        Value::Object(map) => {
            map.get("Ref").and_then(Value::as_str) == Some(id)
                || map
                    .get("Fn::GetAtt")
                    .and_then(|v| v.get(0))
                    .and_then(Value::as_str)
                    == Some(id)
                || map.get("Fn::Sub").and_then(Value::as_str).is_some_and(|t| {
                    t.contains(&format!("${{{id}}}")) || t.contains(&format!("${{{id}."))
                })
                || map.values().any(|v| reads(v, id))
        }
        Value::Array(items) => items.iter().any(|v| reads(v, id)),
        _ => false,
    }
}

/// The template with the [`PROPERTY_GAPS`] worked around and the [`REMOVED_TYPES`] taken
/// out, what was changed, and the ids of the removed resources.
fn adapted(template: &Value) -> (Value, Vec<String>, Vec<String>) {
    let mut template = template.clone();
    let mut changes = Vec::new();
    let mut removed = Vec::new();
    let map = template["Resources"]
        .as_object_mut()
        .expect("Resources is a map");
    for (id, resource) in map.iter_mut() {
        if resource["Type"] == STATE_TABLE_TYPE {
            *resource = state_table_stand_in();
            changes.push(format!(
                "{id} ({STATE_TABLE_TYPE}): replaced by the DynamoDB table its function makes"
            ));
        }
    }
    for (kind, reason) in REMOVED_TYPES {
        let ids: Vec<String> = map
            .iter()
            .filter(|(_, r)| r["Type"] == *kind)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            map.remove(&id);
            changes.push(format!("{id} ({kind}): removed: {reason}"));
            removed.push(id);
        }
    }
    for id in &removed {
        if let Some(readers) = map
            .iter()
            .find(|(_, r)| reads(r, id))
            .map(|(r, _)| r.clone())
        {
            panic!("{readers} reads {id}, which the adapted template removes");
        }
    }
    for (id, resource) in map.iter_mut() {
        for (kind, property, reason) in PROPERTY_GAPS {
            if resource["Type"] != *kind {
                continue;
            }
            let props = resource
                .get_mut("Properties")
                .and_then(Value::as_object_mut);
            if props.and_then(|p| p.remove(*property)).is_some() {
                changes.push(format!("{id} ({kind}): without {property}: {reason}"));
            }
        }
    }
    if let Some(outputs) = template.get_mut("Outputs").and_then(Value::as_object_mut) {
        let dropped: Vec<String> = outputs
            .iter()
            .filter(|(_, o)| removed.iter().any(|id| reads(o, id)))
            .map(|(name, _)| name.clone())
            .collect();
        for name in dropped {
            outputs.remove(&name);
            changes.push(format!("output {name}: removed with the resource it reads"));
        }
    }
    (template, changes, removed)
}

#[derive(Debug)]
struct Resource {
    logical_id: String,
    kind: String,
    status: String,
    reason: String,
}

async fn stack_resources(cf: &Client, stack: &str) -> Result<Vec<Resource>, String> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = cf
            .list_stack_resources()
            .stack_name(stack)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| format!("ListStackResources {stack}: {}", DisplayErrorContext(e)))?;
        for r in page.stack_resource_summaries() {
            out.push(Resource {
                logical_id: r.logical_resource_id().unwrap_or_default().to_string(),
                kind: r.resource_type().unwrap_or_default().to_string(),
                status: r
                    .resource_status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                reason: r.resource_status_reason().unwrap_or_default().to_string(),
            });
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// The stack's status and reason once it is no longer in progress; panics if it still is
/// after [`POLLS`].
async fn wait_terminal(cf: &Client, stack: &str) -> (String, String) {
    match wait_settled(cf, stack).await {
        Ok(done) => done,
        Err((status, _)) => {
            panic!("stack {stack} still {status} after {POLLS} polls {POLL_INTERVAL:?} apart")
        }
    }
}

/// The stack's status and reason once it is no longer in progress, or (as an error) the
/// in-progress status it still had after [`POLLS`].
async fn wait_settled(cf: &Client, stack: &str) -> Result<(String, String), (String, String)> {
    let mut last = (String::new(), String::new());
    for _ in 0..POLLS {
        let out = cf
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeStacks {stack}: {}", DisplayErrorContext(e)));
        let s = out
            .stacks()
            .first()
            .expect("DescribeStacks names the stack");
        last = (
            s.stack_status()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            s.stack_status_reason().unwrap_or_default().to_string(),
        );
        if !last.0.ends_with("_IN_PROGRESS") {
            return Ok(last);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    Err(last)
}

/// Resource events of the stack that report a failure: (logical id, type, status, reason).
async fn failure_events(cf: &Client, stack: &str) -> Vec<(String, String, String, String)> {
    let out = cf
        .describe_stack_events()
        .stack_name(stack)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeStackEvents {stack}: {}", DisplayErrorContext(e)));
    out.stack_events()
        .iter()
        .filter(|e| {
            e.resource_status()
                .is_some_and(|s| s.as_str().ends_with("_FAILED"))
        })
        .map(|e| {
            (
                e.logical_resource_id().unwrap_or_default().to_string(),
                e.resource_type().unwrap_or_default().to_string(),
                e.resource_status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                e.resource_status_reason().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

async fn delete_stack(cf: &Client, stack: &str) {
    if let Err(e) = cf.delete_stack().stack_name(stack).send().await {
        println!("DeleteStack {stack}: {}", DisplayErrorContext(e));
    }
}

#[tokio::test]
async fn bootstrap_stack_creates_on_the_emulator() {
    let config = apiary_e2e::sdk_config().await;
    let cf = Client::new(&config);
    let s3 = aws_sdk_s3::Client::new(&config);

    let text = template_text();
    let template: Value = serde_yaml::from_str(&text).expect("the template is plain YAML");
    let name = apiary_e2e::unique_name("smoke");
    let bucket = format!("{name}-artifacts");
    let prefix = "smoke/";

    s3.create_bucket()
        .bucket(&bucket)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::UsWest2)
                .build(),
        )
        .send()
        .await
        .expect("CreateBucket for the artifacts");
    let uploads = artifacts(&template, prefix);
    assert!(
        uploads.keys().any(|k| k.ends_with(".zip")),
        "the template reads no function zips: {:?}",
        uploads.keys()
    );
    for (key, body) in &uploads {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutObject {key}: {e}"));
    }

    let parameters = |deployment: &str| {
        [
            ("DeploymentName", deployment),
            ("Domain", "smoke.example.com"),
            ("ArtifactBucket", bucket.as_str()),
            ("ArtifactPrefix", prefix),
            // So the conditional email subscription is made too.
            ("AlertEmail", "alerts@smoke.example.com"),
            // And the conditional report schedule and its role.
            ("PhoneHomeUrl", "https://vendor.example/v1/reports"),
            // And the conditional Twingate connector role.
            (
                "TwingateSecretArn",
                "arn:aws:secretsmanager:us-west-2:123456789012:secret:smoke-twingate-AbCdEf",
            ),
            // And the conditional remote-write policy of the metrics role.
            (
                "MetricsWorkspaceArn",
                "arn:aws:aps:us-west-2:123456789012:workspace/ws-smoke",
            ),
            // Operators, so the access-entry conditions are built from lists.
            (
                "ClusterAdminArns",
                "arn:aws:iam::123456789012:role/ops/admins,arn:aws:iam::123456789012:user/break-glass",
            ),
        ]
        .into_iter()
        .map(|(k, v)| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        })
        .collect::<Vec<_>>()
    };
    let expected: BTreeMap<&str, &str> = resources(&template)
        .iter()
        .map(|(id, r)| (id.as_str(), r["Type"].as_str().expect("resource Type")))
        .collect();
    let (adapted_template, changes, removed) = adapted(&template);

    // 1. The template as written. No retries: the SDK would retry moto's 500 and get
    // AlreadyExists for the stack the first try left behind.
    let once = Client::from_conf(
        aws_sdk_cloudformation::config::Builder::from(&config)
            .retry_config(aws_sdk_cloudformation::config::retry::RetryConfig::disabled())
            .build(),
    );
    let verbatim = format!("{name}-verbatim");
    let first = once
        .create_stack()
        .stack_name(&verbatim)
        .template_body(&text)
        .set_parameters(Some(parameters(&verbatim)))
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await;
    println!("== bootstrap.yaml as written, on the emulator ==");
    match &first {
        // Reported, never waited on without bound: a resource moto cannot run leaves the
        // stack in progress for good.
        Ok(_) => match wait_settled(&cf, &verbatim).await {
            Ok((status, _)) => println!("CreateStack: accepted, {status}"),
            Err((status, _)) => {
                println!("CreateStack: accepted, still {status} after {POLLS} polls")
            }
        },
        // moto answers with an HTML 500; the cause is in its log.
        Err(e) => match e.raw_response().map(|r| r.status().as_u16()) {
            Some(500) => println!("CreateStack failed: HTTP 500 (moto crashed; see its log)"),
            _ => println!("CreateStack failed: {}", DisplayErrorContext(e)),
        },
    }
    // moto creates a stack's resources lazily on access: listing a stack whose
    // creation crashed crashes again the same way.
    match stack_resources(&once, &verbatim).await {
        Ok(made) => println!("{} of {} resources made", made.len(), expected.len()),
        Err(e) => println!("{}", e.lines().next().unwrap_or_default()),
    }
    delete_stack(&once, &verbatim).await;

    // 2. The template with the known gaps worked around.
    let stack = cf
        .create_stack()
        .stack_name(&name)
        .template_body(adapted_template.to_string())
        .set_parameters(Some(parameters(&name)))
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "CreateStack of the template with the known emulator gaps worked around: {}",
                DisplayErrorContext(e)
            )
        });
    let stack_id = stack
        .stack_id()
        .expect("CreateStack returns the stack id")
        .to_string();
    let (status, reason) = wait_terminal(&cf, &stack_id).await;
    let made = stack_resources(&cf, &stack_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let failures = failure_events(&cf, &stack_id).await;
    delete_stack(&cf, &stack_id).await;

    println!("== bootstrap.yaml with the known emulator gaps worked around ==");
    println!("stack {name}: {status} {reason}");
    for change in &changes {
        println!("worked around: {change}");
    }
    let by_id: BTreeMap<&str, &Resource> =
        made.iter().map(|r| (r.logical_id.as_str(), r)).collect();
    for (id, kind) in &expected {
        match by_id.get(id) {
            Some(r) => println!("  {id:<28} {:<34} {} {}", r.kind, r.status, r.reason),
            None if removed.iter().any(|r| r == id) => {
                println!("  {id:<28} {kind:<34} NOT CREATED (removed, see above)")
            }
            None => println!("  {id:<28} {kind:<34} NOT CREATED"),
        }
    }
    for (id, kind, status, reason) in &failures {
        println!("failed: {id} ({kind}) {status}: {reason}");
    }
    let mut not_created: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, kind) in &expected {
        if by_id.get(id).is_none_or(|r| r.status != "CREATE_COMPLETE") {
            not_created.entry(kind).or_default().push(id);
        }
    }
    println!("resource types the emulator could not create:");
    if not_created.is_empty() {
        println!("  none");
    }
    for (kind, ids) in &not_created {
        let why = UNSUPPORTED_TYPES
            .iter()
            .chain(REMOVED_TYPES)
            .find(|(k, _)| k == kind)
            .map_or("not a known emulator gap", |(_, why)| why);
        println!("  {kind} ({}): {why}", ids.join(", "));
    }

    // The assertions.
    for (kind, property, _) in PROPERTY_GAPS {
        assert!(
            changes
                .iter()
                .any(|c| c.contains(&format!("({kind}): without {property}:"))),
            "known gap {kind}.{property} no longer applies to the template: remove it from \
             PROPERTY_GAPS"
        );
    }
    if !PROPERTY_GAPS.is_empty() {
        // The gaps show as moto's crash (an HTML 500), not as any other refusal.
        let verbatim_status = first
            .as_ref()
            .err()
            .and_then(|e| e.raw_response())
            .map(|r| r.status().as_u16());
        assert_eq!(
            verbatim_status,
            Some(500),
            "the template as written should still hit the gaps in PROPERTY_GAPS (remove them \
             if they are fixed): {:?}",
            first
                .as_ref()
                .map_err(|e| DisplayErrorContext(e).to_string())
        );
    }
    for (kind, _) in REMOVED_TYPES {
        assert!(
            changes
                .iter()
                .any(|c| c.contains(&format!("({kind}): removed:"))),
            "{kind} is no longer in the template: remove it from REMOVED_TYPES"
        );
    }
    let unexpected: Vec<String> = not_created
        .iter()
        .filter(|(kind, _)| {
            !UNSUPPORTED_TYPES
                .iter()
                .chain(REMOVED_TYPES)
                .any(|(k, _)| k == *kind)
        })
        .map(|(kind, ids)| format!("{kind}: {}", ids.join(", ")))
        .collect();
    assert!(
        unexpected.is_empty(),
        "resources of types the emulator supports did not reach CREATE_COMPLETE: {unexpected:?}"
    );
    let unexpected_failures: Vec<_> = failures
        .iter()
        .filter(|(_, kind, _, _)| !UNSUPPORTED_TYPES.iter().any(|(k, _)| k == kind))
        .collect();
    assert!(
        unexpected_failures.is_empty(),
        "failures outside the known emulator gaps: {unexpected_failures:?}"
    );
    // moto lists a resource of a type it does not model with an empty logical id: as
    // many as the template has of those types, and no other.
    let unnamed = made.iter().filter(|r| r.logical_id.is_empty()).count();
    let unmodelled: usize = not_created
        .iter()
        .filter(|(kind, _)| UNSUPPORTED_TYPES.iter().any(|(k, _)| k == *kind))
        .map(|(_, ids)| ids.len())
        .sum();
    assert_eq!(
        unnamed, unmodelled,
        "unnamed resources are the unmodelled types' ones"
    );
    let stray: Vec<&str> = made
        .iter()
        .filter(|r| !r.logical_id.is_empty())
        .filter(|r| !expected.contains_key(r.logical_id.as_str()))
        .map(|r| r.logical_id.as_str())
        .collect();
    assert!(stray.is_empty(), "resources not in the template: {stray:?}");
    let mistyped: Vec<String> = made
        .iter()
        .filter(|r| !r.logical_id.is_empty())
        .filter(|r| expected.get(r.logical_id.as_str()) != Some(&r.kind.as_str()))
        // The state table's stand-in, made in its custom resource's place.
        .filter(|r| {
            !(expected.get(r.logical_id.as_str()) == Some(&STATE_TABLE_TYPE)
                && r.kind == "AWS::DynamoDB::Table")
        })
        .map(|r| format!("{} is {}", r.logical_id, r.kind))
        .collect();
    assert!(
        mistyped.is_empty(),
        "resource types differ from the template: {mistyped:?}"
    );
    // moto skips the types it lacks, so the stack itself still completes.
    assert_eq!(status, "CREATE_COMPLETE", "stack status ({reason})");
}

#[test]
fn stored_zip_is_well_formed() {
    // The CRC-32 check value from the catalogue of CRC algorithms.
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    let zip = stored_zip("bootstrap", b"hi");
    assert_eq!(&zip[..4], b"PK\x03\x04");
    assert_eq!(&zip[zip.len() - 22..zip.len() - 18], b"PK\x05\x06");
    assert_eq!(zip.len(), 30 + 9 + 2 + 46 + 9 + 22);
}
