//! The launch custom resource against the emulator's Step Functions: a real state machine,
//! real StartExecution, ListExecutions and StopExecution, and a loopback server in place
//! of the presigned URL CloudFormation would give.

use std::collections::HashMap;

use apiary_core::store::DeploymentStatus;
use aws_sdk_sfn::types::ExecutionStatus;
use launch::test_support::CaptureServer;
use serde_json::{Value, json};

/// Stays RUNNING, even where the emulator's interpreter is switched on.
const DEFINITION: &str =
    r#"{"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 3600, "End": true}}}"#;

struct Fixture {
    sfn: aws_sdk_sfn::Client,
    deps: launch::Deps,
    deployment: String,
    machine: String,
    stack_id: String,
}

/// The state machine `apiary-<deployment>-<workflow>` as the template names it, whose
/// executions stay RUNNING; its ARN.
pub(crate) async fn holding_machine(
    sfn: &aws_sdk_sfn::Client,
    deployment: &str,
    workflow: &str,
) -> String {
    sfn.create_state_machine()
        .name(format!("apiary-{deployment}-{workflow}"))
        .definition(DEFINITION)
        .role_arn(format!(
            "arn:aws:iam::123456789012:role/apiary-{deployment}-sm-{workflow}"
        ))
        .send()
        .await
        .expect("CreateStateMachine")
        .state_machine_arn
}

async fn fixture() -> Fixture {
    let config = apiary_e2e::sdk_config().await;
    let sfn = aws_sdk_sfn::Client::new(&config);
    let deployment = apiary_e2e::unique_name("launch");
    let machine = holding_machine(&sfn, &deployment, "provision").await;
    let deps = launch::Deps::new(&config, &HashMap::<&str, &str>::new()).expect("launch deps");
    Fixture {
        sfn,
        deps,
        stack_id: format!(
            "arn:aws:cloudformation:us-west-2:123456789012:stack/apiary-{deployment}/{}",
            uuid::Uuid::new_v4()
        ),
        deployment,
        machine,
    }
}

impl Fixture {
    /// The parameters map as the template's `Input` resolves it: every value a string.
    fn spec(&self) -> Value {
        json!({
            "DeploymentName": self.deployment, "Region": "us-west-2", "Size": "small",
            "VpcCidr": "", "AzCount": "3", "NatMode": "single", "IngressCidrs": "",
            "Domain": "hh.example.com", "KubernetesVersion": "1.33",
            "PublicClusterEndpoint": "false", "MultiAz": "", "EnableDocumentDb": "true",
            "EnableRedis": "true", "S3RetentionDays": "30",
            "BackupSchedule": "cron(0 3 * * ? *)", "BackupRetentionDays": "7",
            "DrRegion": "", "IngestionImage": "public.ecr.aws/honeyhive/ingestion:1.0.0"
        })
    }

    fn event(&self, request_type: &str, url: &str, physical_id: Option<&str>) -> Value {
        let mut event = json!({
            "RequestType": request_type,
            "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:launch",
            "ResponseURL": url,
            "StackId": self.stack_id,
            "RequestId": uuid::Uuid::new_v4().to_string(),
            "LogicalResourceId": "Launch",
            "ResourceType": "Custom::ApiaryLaunch",
            "ResourceProperties": {
                "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:launch",
                "ServiceTimeout": "300",
                "StateMachineArn": self.machine,
                "Input": {"spec": self.spec()}
            }
        });
        if let Some(id) = physical_id {
            event["PhysicalResourceId"] = json!(id);
        }
        event
    }

    async fn executions(&self, status: Option<ExecutionStatus>) -> Vec<String> {
        self.sfn
            .list_executions()
            .state_machine_arn(&self.machine)
            .set_status_filter(status)
            .send()
            .await
            .expect("ListExecutions")
            .executions()
            .iter()
            .map(|e| e.execution_arn().to_owned())
            .collect()
    }
}

#[tokio::test]
async fn create_starts_provision_once_and_delete_stops_it() {
    let f = fixture().await;
    let server = CaptureServer::start(&[]).await;
    let create = f.event("Create", &server.url(), None);

    launch::handle(&f.deps, create.clone())
        .await
        .expect("answered");
    let body = server.last_json();
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(
        body["PhysicalResourceId"],
        format!("apiary-{}-launch", f.deployment)
    );
    assert_eq!(body["StackId"], f.stack_id);
    assert_eq!(body["RequestId"], create["RequestId"]);
    assert_eq!(body["LogicalResourceId"], "Launch");
    let arn = body["Data"]["ExecutionArn"]
        .as_str()
        .expect("Data.ExecutionArn")
        .to_owned();
    assert_eq!(
        body["Data"]["ExecutionConsoleUrl"],
        format!(
            "https://us-west-2.console.aws.amazon.com/states/home?region=us-west-2#/v2/executions/details/{arn}"
        )
    );
    let execution = f
        .sfn
        .describe_execution()
        .execution_arn(&arn)
        .send()
        .await
        .expect("the execution exists");
    assert_eq!(execution.status(), &ExecutionStatus::Running);
    let input: Value =
        serde_json::from_str(execution.input().expect("an input")).expect("JSON input");
    assert_eq!(input, json!({"spec": f.spec(), "queue": true}));

    // CloudFormation delivers the same request again: still one execution.
    launch::handle(&f.deps, create).await.expect("answered");
    let again = server.last_json();
    assert_eq!(again["Status"], "SUCCESS", "{again}");
    assert_eq!(again["Data"]["ExecutionArn"], arn);
    assert_eq!(f.executions(None).await, vec![arn.clone()]);

    // The stack is deleted: the running execution is stopped.
    let physical = body["PhysicalResourceId"].as_str().unwrap();
    launch::handle(&f.deps, f.event("Delete", &server.url(), Some(physical)))
        .await
        .expect("answered");
    let deleted = server.last_json();
    assert_eq!(deleted["Status"], "SUCCESS", "{deleted}");
    assert_eq!(deleted["PhysicalResourceId"], physical);
    let reason = deleted["Reason"].as_str().unwrap();
    assert!(
        reason.contains(&arn) && reason.contains("left in place"),
        "{reason}"
    );
    let stopped = f
        .sfn
        .describe_execution()
        .execution_arn(&arn)
        .send()
        .await
        .expect("DescribeExecution");
    assert_eq!(stopped.status(), &ExecutionStatus::Aborted);
    assert!(
        f.executions(Some(ExecutionStatus::Running))
            .await
            .is_empty()
    );

    // A redelivered Delete finds nothing left to stop.
    launch::handle(&f.deps, f.event("Delete", &server.url(), Some(physical)))
        .await
        .expect("answered");
    let redelivered = server.last_json();
    assert_eq!(redelivered["Status"], "SUCCESS");
    assert!(
        redelivered["Reason"]
            .as_str()
            .unwrap()
            .starts_with("no workflow execution was running"),
        "{redelivered}"
    );
    assert_eq!(server.requests().len(), 4, "one answer per request");
}

/// The record is the source of truth: a stack update whose parameters contradict it
/// fails the update itself (CloudFormation rolls it back), naming the field and the
/// workflow that owns it, and starts nothing; one that agrees starts provision.
#[tokio::test]
async fn a_stack_update_that_contradicts_the_record_fails_naming_the_field() {
    let f = fixture().await;
    let config = apiary_e2e::sdk_config().await;
    let table = format!("apiary-{}", f.deployment);
    let store =
        apiary_core::store::Store::new(apiary_core::client!(aws_sdk_dynamodb, &config), &table);
    store.ensure_table().await.expect("state table");
    let recorded = apiary_core::spec::DeploymentSpec::parse(&f.spec()).expect("the stack's spec");
    store
        .put_deployment(&recorded, DeploymentStatus::Ready, chrono::Utc::now())
        .await
        .expect("the record provision wrote");
    let deps = launch::Deps::new(&config, &HashMap::from([("APIARY_TABLE", table.as_str())]))
        .expect("launch deps");
    let server = CaptureServer::start(&[]).await;
    let physical = format!("apiary-{}-launch", f.deployment);

    for (parameter, value, field, owner) in [
        (
            "Domain",
            "other.example.com",
            "dns.domain",
            "new deployment",
        ),
        (
            "KubernetesVersion",
            "1.34",
            "cluster.version",
            "upgrade workflow",
        ),
    ] {
        let mut update = f.event("Update", &server.url(), Some(&physical));
        update["ResourceProperties"]["Input"]["spec"][parameter] = json!(value);
        launch::handle(&deps, update).await.expect("answered");
        let body = server.last_json();
        assert_eq!(body["Status"], "FAILED", "{body}");
        let reason = body["Reason"].as_str().unwrap();
        assert!(reason.contains("Apiary.InvalidSpec"), "{reason}");
        assert!(reason.contains(field) && reason.contains(owner), "{reason}");
        assert_eq!(body["PhysicalResourceId"], physical.as_str(), "{body}");
    }
    assert!(f.executions(None).await.is_empty(), "nothing started");

    // Parameters that agree with the record (or change what converges) start provision.
    let mut update = f.event("Update", &server.url(), Some(&physical));
    update["ResourceProperties"]["Input"]["spec"]["S3RetentionDays"] = json!("90");
    launch::handle(&deps, update).await.expect("answered");
    let body = server.last_json();
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(f.executions(None).await.len(), 1);
}

#[tokio::test]
async fn a_missing_state_machine_fails_naming_it_and_its_rollback_succeeds() {
    let f = fixture().await;
    let server = CaptureServer::start(&[]).await;
    let missing = f.machine.replace("-provision", "-gone");
    let mut create = f.event("Create", &server.url(), None);
    create["ResourceProperties"]["StateMachineArn"] = json!(missing);

    launch::handle(&f.deps, create).await.expect("answered");
    let body = server.last_json();
    assert_eq!(body["Status"], "FAILED", "{body}");
    let reason = body["Reason"].as_str().unwrap();
    assert!(reason.contains(&missing), "{reason}");
    assert!(reason.contains("StateMachineDoesNotExist"), "{reason}");
    let physical = body["PhysicalResourceId"].as_str().unwrap().to_owned();
    assert!(
        physical.starts_with(launch::NOT_STARTED_PREFIX),
        "{physical}"
    );
    assert!(f.executions(None).await.is_empty());

    // CloudFormation rolls the failed Create back with a Delete of what it reported.
    let mut rollback = f.event("Delete", &server.url(), Some(&physical));
    rollback["ResourceProperties"]["StateMachineArn"] = json!(missing);
    launch::handle(&f.deps, rollback).await.expect("answered");
    let body = server.last_json();
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["PhysicalResourceId"], physical);
}

#[tokio::test]
async fn an_invalid_spec_starts_nothing() {
    let f = fixture().await;
    let server = CaptureServer::start(&[]).await;
    let mut create = f.event("Create", &server.url(), None);
    create["ResourceProperties"]["Input"]["spec"]["Domain"] = json!("");
    create["ResourceProperties"]["Input"]["spec"]["BackupRetentionDays"] = json!("90");

    launch::handle(&f.deps, create).await.expect("answered");
    let body = server.last_json();
    assert_eq!(body["Status"], "FAILED", "{body}");
    let reason = body["Reason"].as_str().unwrap();
    assert!(reason.starts_with("Apiary.InvalidSpec"), "{reason}");
    for field in ["Domain", "BackupRetentionDays"] {
        assert!(reason.contains(field), "{field}: {reason}");
    }
    assert!(f.executions(None).await.is_empty());
}

/// A `Custom::ApiarySigningKey` request for `secret`.
fn signing_key_event(f: &Fixture, request_type: &str, url: &str, secret: &str) -> Value {
    json!({
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:launch",
        "ResponseURL": url,
        "StackId": f.stack_id,
        "RequestId": uuid::Uuid::new_v4().to_string(),
        "LogicalResourceId": "SigningKey",
        "ResourceType": launch::SIGNING_KEY_TYPE,
        "PhysicalResourceId": secret,
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:launch",
            "ServiceTimeout": "420",
            "SecretArn": secret
        }
    })
}

#[tokio::test]
async fn the_signing_key_is_made_once_and_its_public_half_answered_on_every_request() {
    let f = fixture().await;
    let config = apiary_e2e::sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    // As the template makes it: no value until the resource puts the key.
    let secret = secrets
        .create_secret()
        .name(format!("apiary-{}-signing-key", f.deployment))
        .send()
        .await
        .expect("CreateSecret")
        .arn
        .expect("an ARN");
    let server = CaptureServer::start(&[]).await;

    launch::handle(
        &f.deps,
        signing_key_event(&f, "Create", &server.url(), &secret),
    )
    .await
    .expect("answered");
    let created = server.last_json();
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    assert_eq!(created["PhysicalResourceId"], secret);
    let public_key = created["Data"]["PublicKey"]
        .as_str()
        .expect("PublicKey")
        .to_owned();
    let key_id = created["Data"]["KeyId"].as_str().expect("KeyId").to_owned();
    assert_eq!(
        key_id,
        apiary_core::phone_home::key_id(&base64_decode(&public_key))
    );

    // The secret holds the private key the public half belongs to.
    let text = secrets
        .get_secret_value()
        .secret_id(&secret)
        .send()
        .await
        .expect("GetSecretValue")
        .secret_string
        .expect("a value");
    let key = apiary_core::phone_home::SigningKey::from_secret(&secret, &text).expect("a key");
    assert_eq!(key.public_key(), public_key);
    assert!(apiary_core::phone_home::verify(
        &public_key,
        b"body",
        &key.sign(b"body")
    ));

    // An Update and a redelivered Create keep the key: the vendor pinned it.
    for request in ["Update", "Create"] {
        launch::handle(
            &f.deps,
            signing_key_event(&f, request, &server.url(), &secret),
        )
        .await
        .expect("answered");
        let again = server.last_json();
        assert_eq!(again["Status"], "SUCCESS", "{request}: {again}");
        assert_eq!(again["Data"]["PublicKey"], public_key, "{request}");
    }
    let versions = secrets
        .list_secret_version_ids()
        .secret_id(&secret)
        .send()
        .await
        .expect("ListSecretVersionIds");
    assert_eq!(versions.versions().len(), 1, "one key, written once");

    // Delete leaves the secret to CloudFormation.
    launch::handle(
        &f.deps,
        signing_key_event(&f, "Delete", &server.url(), &secret),
    )
    .await
    .expect("answered");
    assert_eq!(server.last_json()["Status"], "SUCCESS");
    secrets
        .describe_secret()
        .secret_id(&secret)
        .send()
        .await
        .expect("the secret is still there");
}

#[tokio::test]
async fn a_signing_key_resource_with_no_secret_arn_fails_by_name() {
    let f = fixture().await;
    let server = CaptureServer::start(&[]).await;
    let mut event = signing_key_event(&f, "Create", &server.url(), "not-an-arn");
    event.as_object_mut().unwrap().remove("PhysicalResourceId");
    launch::handle(&f.deps, event).await.expect("answered");
    let body = server.last_json();
    assert_eq!(body["Status"], "FAILED", "{body}");
    assert!(
        body["Reason"].as_str().unwrap().contains("SecretArn"),
        "{body}"
    );
    // CloudFormation rolls the failed Create back with a Delete carrying the same bad
    // properties and the id the FAILED answer gave: it succeeds, or the stack would be
    // stuck in ROLLBACK_FAILED.
    let physical_id = body["PhysicalResourceId"].as_str().unwrap().to_owned();
    let mut rollback = signing_key_event(&f, "Delete", &server.url(), "not-an-arn");
    rollback["PhysicalResourceId"] = json!(physical_id);
    launch::handle(&f.deps, rollback).await.expect("answered");
    let body = server.last_json();
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert_eq!(body["PhysicalResourceId"], physical_id);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

/// What the template wires for `OnStackDelete=Teardown`: the teardown and stack-delete
/// state machines (holding RUNNING, as real ones would while they work), a state table
/// with the deployment's record, and the launch function's environment naming them.
pub(crate) struct TeardownStack {
    pub env: HashMap<String, String>,
    pub stack_id: String,
    pub store: apiary_core::store::Store,
    pub teardown: String,
    pub watcher: String,
}

/// `recorded`: the deployment's record, as the last provision stored it.
pub(crate) async fn teardown_stack(
    config: &aws_config::SdkConfig,
    stack_id: &str,
    recorded: &apiary_core::spec::DeploymentSpec,
) -> TeardownStack {
    let deployment = recorded.name.as_str();
    let sfn = aws_sdk_sfn::Client::new(config);
    let mut arns = Vec::new();
    for workflow in ["teardown", "stack-delete"] {
        arns.push(holding_machine(&sfn, deployment, workflow).await);
    }
    let table = format!("apiary-{deployment}");
    let store =
        apiary_core::store::Store::new(apiary_core::client!(aws_sdk_dynamodb, config), &table);
    store.ensure_table().await.expect("state table");
    store
        .put_deployment(recorded, DeploymentStatus::Ready, chrono::Utc::now())
        .await
        .expect("the deployment's record");
    let env = HashMap::from([
        ("APIARY_ON_STACK_DELETE".to_owned(), "Teardown".to_owned()),
        ("APIARY_STACK_ID".to_owned(), stack_id.to_owned()),
        ("APIARY_DEPLOYMENT".to_owned(), deployment.to_owned()),
        ("APIARY_TABLE".to_owned(), table),
        (
            "APIARY_TEARDOWN_STATE_MACHINE_ARN".to_owned(),
            arns[0].clone(),
        ),
        (
            "APIARY_STACK_DELETE_STATE_MACHINE_ARN".to_owned(),
            arns[1].clone(),
        ),
    ]);
    TeardownStack {
        env,
        stack_id: stack_id.to_owned(),
        store,
        teardown: arns[0].clone(),
        watcher: arns[1].clone(),
    }
}

impl TeardownStack {
    /// The launch function's dependencies for this stack while CloudFormation deletes it.
    pub(crate) fn deps(&self, config: &aws_config::SdkConfig) -> launch::Deps {
        let mut deps = launch::Deps::new(config, &self.env).expect("launch deps");
        deps.cloudformation = launch::test_support::stack_being_deleted(&self.stack_id);
        deps
    }
}

impl Fixture {
    async fn executions_of(&self, machine: &str) -> Vec<(String, ExecutionStatus, Value)> {
        let mut found = Vec::new();
        for e in self
            .sfn
            .list_executions()
            .state_machine_arn(machine)
            .send()
            .await
            .expect("ListExecutions")
            .executions()
        {
            let described = self
                .sfn
                .describe_execution()
                .execution_arn(e.execution_arn())
                .send()
                .await
                .expect("DescribeExecution");
            let input = serde_json::from_str(described.input().unwrap_or("null")).unwrap();
            found.push((
                e.execution_arn().to_owned(),
                described.status().clone(),
                input,
            ));
        }
        found
    }
}

/// A launch fixture whose stack says OnStackDelete=Teardown and is being deleted.
async fn tearing_down() -> (Fixture, TeardownStack, launch::Deps) {
    let f = fixture().await;
    let config = apiary_e2e::sdk_config().await;
    // The record agrees with the stack's parameters, as after a provision.
    let recorded = apiary_core::spec::DeploymentSpec::parse(&f.spec()).expect("the stack's spec");
    let stack = teardown_stack(&config, &f.stack_id, &recorded).await;
    let deps = stack.deps(&config);
    (f, stack, deps)
}

fn watch(request: &Value) -> Value {
    json!({"watch_stack_delete": {"request_id": request["RequestId"]}})
}

#[tokio::test]
async fn a_teardown_on_delete_is_answered_only_when_the_teardown_has_ended() {
    let (f, stack, deps) = tearing_down().await;
    let server = CaptureServer::start(&[]).await;
    launch::handle(&deps, f.event("Create", &server.url(), None))
        .await
        .expect("answered");
    let physical = server.last_json()["PhysicalResourceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let provision = f.executions(None).await;

    // The stack is deleted: provision is stopped, the teardown started, and no answer yet.
    let delete = f.event("Delete", &server.url(), Some(&physical));
    let summary = launch::handle(&deps, delete.clone())
        .await
        .expect("handled");
    assert_eq!(summary["Status"], "DEFERRED", "{summary}");
    assert_eq!(server.requests().len(), 1, "only the Create was answered");
    assert_eq!(
        f.executions(Some(ExecutionStatus::Aborted)).await,
        provision,
        "the running provision was stopped"
    );
    let teardowns = f.executions_of(&stack.teardown).await;
    assert_eq!(teardowns.len(), 1, "{teardowns:?}");
    let (teardown, status, input) = &teardowns[0];
    assert_eq!(status, &ExecutionStatus::Running);
    assert_eq!(
        input,
        &json!({"deployment": f.deployment, "confirm": f.deployment, "queue": true})
    );
    let watchers = f.executions_of(&stack.watcher).await;
    assert_eq!(watchers.len(), 1, "{watchers:?}");
    // The presigned URL is a credential: only the request's id is in the input.
    assert_eq!(watchers[0].2, json!({"request_id": delete["RequestId"]}));
    let held = stack
        .store
        .held_answer(&f.deployment, delete["RequestId"].as_str().unwrap())
        .await
        .expect("GetItem")
        .expect("the answer is held");
    assert_eq!(&held.execution_arn, teardown);
    assert_eq!(held.response_url, server.url());

    // CloudFormation delivers the Delete again: the same teardown, the same watcher.
    let again = launch::handle(&deps, delete.clone())
        .await
        .expect("handled");
    assert_eq!(again["Status"], "DEFERRED", "{again}");
    assert_eq!(f.executions_of(&stack.teardown).await.len(), 1);
    assert_eq!(f.executions_of(&stack.watcher).await.len(), 1);

    // The workflow asks while the teardown runs: no answer.
    let asked = launch::handle(&deps, watch(&delete))
        .await
        .expect("watched");
    assert_eq!(asked, json!({"done": false, "status": "RUNNING"}));
    assert_eq!(server.requests().len(), 1);

    // The teardown ends without succeeding: the delete fails, saying why and where.
    f.sfn
        .stop_execution()
        .execution_arn(teardown)
        .error("Apiary.Fatal")
        .cause("DeleteVpc failed (DependencyViolation)")
        .send()
        .await
        .expect("StopExecution");
    let asked = launch::handle(&deps, watch(&delete))
        .await
        .expect("watched");
    assert_eq!(asked, json!({"done": true, "status": "FAILED"}));
    let answer = server.last_json();
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    assert_eq!(answer["PhysicalResourceId"], physical);
    assert_eq!(answer["RequestId"], delete["RequestId"]);
    assert_eq!(answer["LogicalResourceId"], "Launch");
    let reason = answer["Reason"].as_str().unwrap();
    for part in [
        teardown.as_str(),
        "ABORTED",
        "console.aws.amazon.com",
        "delete the stack again",
    ] {
        assert!(reason.contains(part), "{part}: {reason}");
    }
    // Answered once: the held answer is gone and a later poll says so.
    let asked = launch::handle(&deps, watch(&delete))
        .await
        .expect("watched");
    assert_eq!(asked, json!({"done": true, "status": "ANSWERED"}));
    assert_eq!(server.requests().len(), 2);

    // The operator deletes the stack again: a new teardown resumes the work.
    let retry = f.event("Delete", &server.url(), Some(&physical));
    let summary = launch::handle(&deps, retry).await.expect("handled");
    assert_eq!(summary["Status"], "DEFERRED", "{summary}");
    let teardowns = f.executions_of(&stack.teardown).await;
    assert_eq!(teardowns.len(), 2, "{teardowns:?}");
}

#[tokio::test]
async fn a_teardown_still_running_at_the_deadline_fails_the_delete_with_its_link() {
    let (f, stack, deps) = tearing_down().await;
    let deps = deps.answering_within(std::time::Duration::ZERO);
    let server = CaptureServer::start(&[]).await;
    let delete = f.event("Delete", &server.url(), Some("apiary-x-launch"));
    launch::handle(&deps, delete.clone())
        .await
        .expect("handled");
    assert!(server.requests().is_empty());
    let asked = launch::handle(&deps, watch(&delete))
        .await
        .expect("watched");
    assert_eq!(asked, json!({"done": true, "status": "FAILED"}));
    let reason = server.last_json()["Reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("still running after 50 minutes"),
        "{reason}"
    );
    assert!(reason.contains("console.aws.amazon.com"), "{reason}");
    // The teardown goes on: the next stack delete waits for the same one.
    let teardowns = f.executions_of(&stack.teardown).await;
    assert_eq!(teardowns.len(), 1);
    assert_eq!(teardowns[0].1, ExecutionStatus::Running);
    let retry = f.event("Delete", &server.url(), Some("apiary-x-launch"));
    launch::handle(&deps, retry.clone()).await.expect("handled");
    assert_eq!(f.executions_of(&stack.teardown).await.len(), 1);
    let held = stack
        .store
        .held_answer(&f.deployment, retry["RequestId"].as_str().unwrap())
        .await
        .expect("GetItem")
        .expect("held");
    assert_eq!(held.execution_arn, teardowns[0].0);
}

#[tokio::test]
async fn a_teardown_on_delete_with_nothing_to_tear_down_answers_at_once() {
    let (f, stack, deps) = tearing_down().await;
    let config = apiary_e2e::sdk_config().await;
    let server = CaptureServer::start(&[]).await;

    // Torn down already (by hand, before the stack delete).
    stack
        .store
        .set_status(&f.deployment, DeploymentStatus::Deleted, chrono::Utc::now())
        .await
        .expect("status");
    launch::handle(&deps, f.event("Delete", &server.url(), Some("p")))
        .await
        .expect("answered");
    let body = server.last_json();
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert!(
        body["Reason"]
            .as_str()
            .unwrap()
            .contains("already torn down"),
        "{body}"
    );

    // Never provisioned: no record.
    let mut other = f.event("Delete", &server.url(), Some("p"));
    let unknown = apiary_e2e::unique_name("never");
    let mut other_stack = stack;
    other_stack
        .env
        .insert("APIARY_DEPLOYMENT".into(), unknown.clone());
    let deps = other_stack.deps(&config);
    other["ResourceProperties"]["Input"]["spec"]["DeploymentName"] = json!(unknown);
    launch::handle(&deps, other).await.expect("answered");
    let body = server.last_json();
    assert_eq!(body["Status"], "SUCCESS", "{body}");
    assert!(
        body["Reason"]
            .as_str()
            .unwrap()
            .contains("nothing to tear down"),
        "{body}"
    );
    assert!(f.executions_of(&other_stack.teardown).await.is_empty());
    assert!(f.executions_of(&other_stack.watcher).await.is_empty());
}

#[tokio::test]
async fn a_bad_on_stack_delete_fails_the_delete_and_stops_nothing() {
    let f = fixture().await;
    let config = apiary_e2e::sdk_config().await;
    let server = CaptureServer::start(&[]).await;
    let ok = launch::Deps::new(&config, &HashMap::<&str, &str>::new()).expect("deps");
    launch::handle(&ok, f.event("Create", &server.url(), None))
        .await
        .expect("answered");
    let physical = server.last_json()["PhysicalResourceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let bad = launch::Deps::new(
        &config,
        &HashMap::from([("APIARY_ON_STACK_DELETE", "Destroy")]),
    )
    .expect("deps");
    launch::handle(&bad, f.event("Delete", &server.url(), Some(&physical)))
        .await
        .expect("answered");
    let body = server.last_json();
    assert_eq!(body["Status"], "FAILED", "{body}");
    let reason = body["Reason"].as_str().unwrap();
    assert!(
        reason.contains("APIARY_ON_STACK_DELETE") && reason.contains("\"Destroy\""),
        "{reason}"
    );
    assert_eq!(
        f.executions(Some(ExecutionStatus::Running)).await.len(),
        1,
        "nothing was stopped"
    );
}
