//! Unit tests: mocked Step Functions, and a loopback server in place of the presigned
//! response URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_sfn::Client as Sfn;
use aws_sdk_sfn::operation::list_executions::{ListExecutionsError, ListExecutionsOutput};
use aws_sdk_sfn::operation::start_execution::{StartExecutionError, StartExecutionOutput};
use aws_sdk_sfn::operation::stop_execution::StopExecutionOutput;
use aws_sdk_sfn::primitives::DateTime;
use aws_sdk_sfn::types::ExecutionListItem;
use aws_sdk_sfn::types::error::{ExecutionAlreadyExists, StateMachineDoesNotExist};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;

use super::test_support::CaptureServer;
use super::*;

const MACHINE: &str = "arn:aws:states:us-west-2:123456789012:stateMachine:apiary-acme-provision";
const STACK: &str = "arn:aws:cloudformation:us-west-2:123456789012:stack/apiary-acme/5b3f8a10-a2b3-11ef-9c0d-0a1b2c3d4e5f";

/// The parameters map as the template's Fn::Sub strings resolve: every value a string,
/// empty meaning "the default".
fn spec() -> Value {
    json!({
        "DeploymentName": "acme", "Region": "us-west-2", "Size": "small", "VpcCidr": "",
        "AzCount": "3", "NatMode": "single", "IngressCidrs": "", "Domain": "hh.example.com",
        "KubernetesVersion": "1.33", "PublicClusterEndpoint": "false", "MultiAz": "",
        "EnableDocumentDb": "true", "EnableRedis": "true", "S3RetentionDays": "30",
        "BackupSchedule": "cron(0 3 * * ? *)", "BackupRetentionDays": "7", "DrRegion": "",
        "IngestionImage": "public.ecr.aws/honeyhive/ingestion:1.0.0"
    })
}

/// A request in the shape CloudFormation sends it.
fn event(request_type: &str, url: &str, request_id: &str, spec: Value) -> Value {
    let mut event = json!({
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:apiary-acme-launch",
        "ResponseURL": url,
        "StackId": STACK,
        "RequestId": request_id,
        "LogicalResourceId": "Launch",
        "ResourceType": "Custom::ApiaryLaunch",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:apiary-acme-launch",
            "StateMachineArn": MACHINE,
            "Input": {"spec": spec}
        }
    });
    if request_type != "Create" {
        event["PhysicalResourceId"] = json!("apiary-acme-launch");
    }
    if request_type == "Update" {
        event["OldResourceProperties"] = event["ResourceProperties"].clone();
    }
    event
}

fn budget() -> Budget {
    Budget {
        work: Duration::from_secs(5),
        response: RetryPolicy {
            attempts: 3,
            attempt_timeout: Duration::from_secs(2),
            first_backoff: Duration::from_millis(10),
        },
    }
}

fn deps_with(sfn: Sfn) -> Deps {
    Deps {
        sfn,
        cloudformation: mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, &[]),
        secrets: mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, &[]),
        responder: Responder::new(budget().response).expect("TLS roots"),
        budget: budget(),
        logs: None,
        stack_id: None,
        on_delete: Ok(OnStackDelete::Retain),
        store: None,
        answer_within: ANSWER_WITHIN,
        dynamodb: mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[]),
        state_table: Err("not the state-table function".into()),
    }
}

fn deps(rules: &[&Rule]) -> Deps {
    deps_with(mock_client!(aws_sdk_sfn, RuleMode::MatchAny, rules))
}

fn execution_arn(name: &str) -> String {
    format!("arn:aws:states:us-west-2:123456789012:execution:apiary-acme-provision:{name}")
}

/// (execution name, input) of every StartExecution call.
type Starts = Arc<Mutex<Vec<(String, String)>>>;

/// StartExecution that records (name, input) and answers with the execution's ARN.
fn recording_start() -> (Rule, Starts) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let rule = mock!(Sfn::start_execution).then_compute_output(move |request| {
        assert_eq!(request.state_machine_arn(), Some(MACHINE));
        let name = request.name().unwrap_or_default().to_owned();
        seen.lock()
            .unwrap()
            .push((name.clone(), request.input().unwrap_or_default().to_owned()));
        StartExecutionOutput::builder()
            .execution_arn(execution_arn(&name))
            .start_date(DateTime::from_secs(0))
            .build()
            .unwrap()
    });
    (rule, calls)
}

/// ListExecutions of `machine` finding `arns` running.
fn running_in(machine: &str, arns: &[String]) -> ListExecutionsOutput {
    let items = arns.iter().map(|arn| {
        ExecutionListItem::builder()
            .execution_arn(arn)
            .state_machine_arn(machine)
            .name(arn.rsplit(':').next().unwrap())
            .status(ExecutionStatus::Running)
            .start_date(DateTime::from_secs(0))
            .build()
            .unwrap()
    });
    ListExecutionsOutput::builder()
        .set_executions(Some(items.collect()))
        .build()
        .unwrap()
}

fn modeled<E>(code: &str, message: &str, build: impl FnOnce(ErrorMetadata, &str) -> E) -> E {
    build(ErrorMetadata::builder().code(code).build(), message)
}

#[tokio::test]
async fn create_starts_provision_and_reports_the_execution() {
    let server = CaptureServer::start(&[]).await;
    let (start, calls) = recording_start();
    let deps = deps(&[&start]);

    let summary = handle(&deps, event("Create", &server.url(), "r-1", spec()))
        .await
        .expect("answered");

    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let (name, input) = &calls[0];
    assert!(
        name.starts_with("cfn-create-") && name.len() <= 80,
        "{name}"
    );
    assert!(
        name.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{name}"
    );
    let input: Value = serde_json::from_str(input).unwrap();
    assert_eq!(
        input,
        json!({"spec": spec(), "queue": true}),
        "the input is passed as given, queued behind any running workflow"
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let put = &requests[0];
    assert_eq!(put.method, "PUT");
    assert!(
        put.target.contains("X-Amz-Signature=test"),
        "{}",
        put.target
    );
    assert_eq!(put.header("content-type"), Some(""), "{:?}", put.headers);
    let body = put.json();
    let arn = execution_arn(name);
    let console = format!(
        "https://us-west-2.console.aws.amazon.com/states/home?region=us-west-2#/v2/executions/details/{arn}"
    );
    assert_eq!(body["Status"], "SUCCESS");
    assert_eq!(body["PhysicalResourceId"], "apiary-acme-launch");
    assert_eq!(body["StackId"], STACK);
    assert_eq!(body["RequestId"], "r-1");
    assert_eq!(body["LogicalResourceId"], "Launch");
    assert_eq!(body["NoEcho"], false);
    assert_eq!(
        body["Data"],
        json!({"ExecutionArn": arn, "ExecutionConsoleUrl": console})
    );
    assert_eq!(summary["Status"], "SUCCESS");
}

#[tokio::test]
async fn a_redelivered_request_reports_the_execution_it_started() {
    let server = CaptureServer::start(&[]).await;
    let names = Arc::new(Mutex::new(Vec::new()));
    let seen = names.clone();
    // Step Functions: the first call starts it; the same name again (it has finished by
    // then) is ExecutionAlreadyExists.
    let start = mock!(Sfn::start_execution).then_compute_response(move |request| {
        let name = request.name().unwrap_or_default().to_owned();
        let mut names = seen.lock().unwrap();
        let again = names.contains(&name);
        names.push(name.clone());
        if again {
            aws_smithy_mocks::MockResponse::Error(StartExecutionError::ExecutionAlreadyExists(
                modeled(
                    "ExecutionAlreadyExists",
                    "Execution Already Exists",
                    |meta, m| {
                        ExecutionAlreadyExists::builder()
                            .message(m)
                            .meta(meta)
                            .build()
                    },
                ),
            ))
        } else {
            aws_smithy_mocks::MockResponse::Output(
                StartExecutionOutput::builder()
                    .execution_arn(execution_arn(&name))
                    .start_date(DateTime::from_secs(0))
                    .build()
                    .unwrap(),
            )
        }
    });
    let deps = deps(&[&start]);

    let event = event("Create", &server.url(), "r-1", spec());
    handle(&deps, event.clone()).await.expect("first delivery");
    handle(&deps, event).await.expect("second delivery");

    let names = names.lock().unwrap().clone();
    assert_eq!(names.len(), 2);
    assert_eq!(
        names[0], names[1],
        "a redelivery uses the same execution name"
    );
    let bodies: Vec<Value> = server.requests().iter().map(|r| r.json()).collect();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[1]["Status"], "SUCCESS");
    assert_eq!(bodies[0]["Data"], bodies[1]["Data"]);
    assert_eq!(bodies[1]["Data"]["ExecutionArn"], execution_arn(&names[0]));

    // Another request (another RequestId) is another execution.
    let other = Request::from_event(super::tests::event("Create", "https://x", "r-2", spec()))
        .unwrap()
        .execution_name(RequestType::Create);
    assert_ne!(other, names[0]);
}

#[tokio::test]
async fn an_invalid_spec_fails_naming_every_bad_field_and_starts_nothing() {
    let server = CaptureServer::start(&[]).await;
    let (start, calls) = recording_start();
    let deps = deps(&[&start]);
    let mut bad = spec();
    bad["AzCount"] = json!("5");
    bad["S3RetentionDays"] = json!("forever");
    bad["DrRegion"] = json!("us-west-2");

    let summary = handle(&deps, event("Create", &server.url(), "r-1", bad))
        .await
        .expect("answered");

    assert!(calls.lock().unwrap().is_empty(), "nothing is started");
    assert_eq!(start.num_calls(), 0);
    let body = server.last_json();
    assert_eq!(body["Status"], "FAILED");
    let reason = body["Reason"].as_str().unwrap();
    assert!(reason.starts_with("Apiary.InvalidSpec: "), "{reason}");
    for field in ["AzCount", "S3RetentionDays", "DrRegion"] {
        assert!(reason.contains(field), "{field} is not named: {reason}");
    }
    let physical = body["PhysicalResourceId"].as_str().unwrap();
    assert_eq!(physical, format!("{NOT_STARTED_PREFIX}r-1"));
    assert_eq!(body["Data"], json!({}));
    assert_eq!(summary["Status"], "FAILED");
}

#[tokio::test]
async fn bad_properties_and_an_unknown_request_type_still_get_an_answer() {
    let server = CaptureServer::start(&[]).await;
    let deps = deps(&[]);

    let mut missing = event("Create", &server.url(), "r-1", spec());
    missing["ResourceProperties"]
        .as_object_mut()
        .unwrap()
        .remove("StateMachineArn");
    handle(&deps, missing).await.expect("answered");
    let reason = server.last_json()["Reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("Apiary.InvalidInput") && reason.contains("StateMachineArn"),
        "{reason}"
    );

    // Found by fuzzing: a property of the wrong type was refused without its name.
    let mut mistyped = event("Create", &server.url(), "r-3", spec());
    mistyped["ResourceProperties"]["StateMachineArn"] = json!(7);
    handle(&deps, mistyped).await.expect("answered");
    let reason = server.last_json()["Reason"].as_str().unwrap().to_owned();
    assert!(
        reason.contains("ResourceProperties.StateMachineArn: invalid type"),
        "{reason}"
    );
    let mut unanswerable = event("Create", &server.url(), "r-4", spec());
    unanswerable["ResponseURL"] = json!([]);
    let err = handle(&deps, unanswerable).await.unwrap_err();
    assert!(err.to_string().contains("field `ResponseURL`"), "{err}");

    let mut wrong = event("Create", &server.url(), "r-2", spec());
    wrong["ResourceProperties"]["StateMachineArn"] = json!("apiary-acme-provision");
    handle(&deps, wrong).await.expect("answered");
    let reason = server.last_json()["Reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("not a state machine ARN"), "{reason}");

    let mut odd = event("Update", &server.url(), "r-3", spec());
    odd["RequestType"] = json!("Restart");
    handle(&deps, odd).await.expect("answered");
    let body = server.last_json();
    assert_eq!(body["Status"], "FAILED");
    assert_eq!(body["PhysicalResourceId"], "apiary-acme-launch");
    assert!(
        body["Reason"].as_str().unwrap().contains("\"Restart\""),
        "{body}"
    );
}

#[tokio::test]
async fn a_step_functions_error_fails_with_the_reason() {
    let server = CaptureServer::start(&[]).await;
    let denied = mock!(Sfn::start_execution).then_error(|| {
        StartExecutionError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("User: arn:aws:sts::123456789012:assumed-role/x is not authorized to perform: states:StartExecution")
                .build(),
        )
    });
    let deps = deps(&[&denied]);

    handle(&deps, event("Create", &server.url(), "r-1", spec()))
        .await
        .expect("answered");

    let body = server.last_json();
    assert_eq!(body["Status"], "FAILED");
    let reason = body["Reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "Apiary.Fatal: StartExecution {MACHINE} failed (AccessDeniedException)"
        )),
        "{reason}"
    );
    assert!(reason.contains("not authorized to perform"), "{reason}");
    assert!(
        body["PhysicalResourceId"]
            .as_str()
            .unwrap()
            .starts_with(NOT_STARTED_PREFIX)
    );
}

#[tokio::test]
async fn a_missing_state_machine_fails_naming_it() {
    let server = CaptureServer::start(&[]).await;
    let missing = mock!(Sfn::start_execution).then_error(|| {
        StartExecutionError::StateMachineDoesNotExist(modeled(
            "StateMachineDoesNotExist",
            "State Machine Does Not Exist",
            |meta, m| {
                StateMachineDoesNotExist::builder()
                    .message(m)
                    .meta(meta)
                    .build()
            },
        ))
    });
    let deps = deps(&[&missing]);
    handle(&deps, event("Update", &server.url(), "r-1", spec()))
        .await
        .expect("answered");
    let body = server.last_json();
    assert_eq!(body["Status"], "FAILED");
    assert!(body["Reason"].as_str().unwrap().contains(MACHINE), "{body}");
    // A failed Update keeps the resource it had.
    assert_eq!(body["PhysicalResourceId"], "apiary-acme-launch");
}

#[tokio::test]
async fn an_update_starts_provision_again_and_keeps_the_physical_id() {
    let server = CaptureServer::start(&[]).await;
    let (start, calls) = recording_start();
    let deps = deps(&[&start]);
    let mut event = event("Update", &server.url(), "r-9", spec());
    event["PhysicalResourceId"] = json!("apiary-acme-launch");
    event["ResourceProperties"]["Input"]["spec"]["Size"] = json!("medium");

    handle(&deps, event).await.expect("answered");

    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].0.starts_with("cfn-update-"), "{}", calls[0].0);
    assert!(calls[0].1.contains("\"Size\":\"medium\""), "{}", calls[0].1);
    let body = server.last_json();
    assert_eq!(body["Status"], "SUCCESS");
    assert_eq!(body["PhysicalResourceId"], "apiary-acme-launch");
}

#[tokio::test]
async fn delete_stops_every_running_execution_and_says_what_it_left() {
    let server = CaptureServer::start(&[]).await;
    let running = ["cfn-create-1", "cfn-update-2"].map(execution_arn);
    let listed = running.clone();
    let list = mock!(Sfn::list_executions)
        .match_requests(|r| {
            r.state_machine_arn() == Some(MACHINE)
                && r.status_filter() == Some(&ExecutionStatus::Running)
        })
        .then_compute_output(move |_| running_in(MACHINE, &listed));
    // A backup holds the lock; the other workflows run nothing.
    const BACKUP: &str = "arn:aws:states:us-west-2:123456789012:stateMachine:apiary-acme-backup";
    let backup_run = "arn:aws:states:us-west-2:123456789012:execution:apiary-acme-backup:nightly";
    let backup = mock!(Sfn::list_executions)
        .match_requests(|r| r.state_machine_arn() == Some(BACKUP))
        .then_output(move || running_in(BACKUP, &[backup_run.to_owned()]));
    let listed_machines = Arc::new(Mutex::new(Vec::new()));
    let machines = listed_machines.clone();
    let others = mock!(Sfn::list_executions)
        .match_requests(move |r| {
            machines
                .lock()
                .unwrap()
                .push(r.state_machine_arn().unwrap_or_default().to_owned());
            true
        })
        .then_output(|| {
            ListExecutionsOutput::builder()
                .set_executions(Some(Vec::new()))
                .build()
                .unwrap()
        });
    let stops = Arc::new(Mutex::new(Vec::new()));
    let seen = stops.clone();
    let stop = mock!(Sfn::stop_execution).then_compute_output(move |r| {
        seen.lock().unwrap().push((
            r.execution_arn().unwrap_or_default().to_owned(),
            r.cause().unwrap_or_default().to_owned(),
        ));
        StopExecutionOutput::builder()
            .stop_date(DateTime::from_secs(1))
            .build()
            .unwrap()
    });
    let deps = deps(&[&list, &backup, &others, &stop]);

    handle(&deps, event("Delete", &server.url(), "r-5", spec()))
        .await
        .expect("answered");

    let stops = stops.lock().unwrap().clone();
    let stopped: Vec<&str> = stops.iter().map(|(arn, _)| arn.as_str()).collect();
    // The backup first (the workflows that start or lock before provision), provision last.
    let mut expected = vec![backup_run];
    expected.extend(running.iter().map(String::as_str));
    assert_eq!(stopped, expected);
    // Every other workflow's state machine was asked; never the teardown's.
    let asked = listed_machines.lock().unwrap().clone();
    for workflow in [
        "restore-test",
        "rotate-keys",
        "scale-pools",
        "upgrade",
        "drift",
        "handle-alert",
    ] {
        assert!(
            asked
                .iter()
                .any(|m| m.ends_with(&format!(":apiary-acme-{workflow}"))),
            "{workflow}: {asked:?}"
        );
    }
    assert!(!asked.iter().any(|m| m.contains("teardown")), "{asked:?}");
    assert!(
        stops[0].1.contains("apiary-acme is being deleted"),
        "{}",
        stops[0].1
    );
    let body = server.last_json();
    assert_eq!(body["Status"], "SUCCESS");
    assert_eq!(body["PhysicalResourceId"], "apiary-acme-launch");
    let reason = body["Reason"].as_str().unwrap();
    assert!(
        reason.contains("stopped 3 running workflow executions"),
        "{reason}"
    );
    assert!(
        reason.contains(&running[0]) && reason.contains(&running[1]),
        "{reason}"
    );
    assert!(reason.contains("left in place"), "{reason}");
    assert!(
        reason.contains("OnStackDelete is Retain") && reason.contains("teardown workflow"),
        "{reason}"
    );
}

#[tokio::test]
async fn delete_after_a_failed_create_only_succeeds() {
    let server = CaptureServer::start(&[]).await;
    let list = mock!(Sfn::list_executions).then_output(|| {
        ListExecutionsOutput::builder()
            .set_executions(Some(Vec::new()))
            .build()
            .unwrap()
    });
    let deps = deps(&[&list]);
    let mut event = event("Delete", &server.url(), "r-6", spec());
    event["PhysicalResourceId"] = json!(format!("{NOT_STARTED_PREFIX}r-1"));
    // The properties that made the Create fail come back on its Delete.
    event["ResourceProperties"]
        .as_object_mut()
        .unwrap()
        .remove("StateMachineArn");

    handle(&deps, event).await.expect("answered");

    assert_eq!(list.num_calls(), 0, "nothing is looked up");
    let body = server.last_json();
    assert_eq!(body["Status"], "SUCCESS");
    assert_eq!(
        body["PhysicalResourceId"],
        format!("{NOT_STARTED_PREFIX}r-1")
    );
}

#[tokio::test]
async fn delete_when_the_state_machine_is_gone_succeeds() {
    let server = CaptureServer::start(&[]).await;
    let list = mock!(Sfn::list_executions).then_error(|| {
        ListExecutionsError::StateMachineDoesNotExist(modeled(
            "StateMachineDoesNotExist",
            "State Machine Does Not Exist",
            |meta, m| {
                StateMachineDoesNotExist::builder()
                    .message(m)
                    .meta(meta)
                    .build()
            },
        ))
    });
    let deps = deps(&[&list]);
    handle(&deps, event("Delete", &server.url(), "r-7", spec()))
        .await
        .expect("answered");
    let body = server.last_json();
    assert_eq!(body["Status"], "SUCCESS");
    assert!(
        body["Reason"]
            .as_str()
            .unwrap()
            .starts_with("no workflow execution was running"),
        "{body}"
    );
}

#[tokio::test]
async fn the_response_put_is_retried_until_it_is_delivered() {
    let server = CaptureServer::start(&[503, 500]).await;
    let (start, _) = recording_start();
    let deps = deps(&[&start]);

    handle(&deps, event("Create", &server.url(), "r-1", spec()))
        .await
        .expect("delivered on the third attempt");

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[0].body, requests[2].body,
        "the same answer each time"
    );
    assert_eq!(requests[2].json()["Status"], "SUCCESS");
}

#[tokio::test]
async fn an_undeliverable_response_is_an_error_so_lambda_retries_the_invocation() {
    // 403: an expired or wrongly signed URL, which retrying will not fix.
    let refused = CaptureServer::start(&[403]).await;
    let (start, _) = recording_start();
    let deps = deps(&[&start]);
    let err = handle(&deps, event("Create", &refused.url(), "r-1", spec()))
        .await
        .expect_err("not delivered");
    assert_eq!(refused.requests().len(), 1, "a 403 is not retried");
    assert!(err.to_string().contains("403"), "{err}");
    assert!(!err.to_string().contains("X-Amz-Signature"), "{err}");

    // Always 503: every attempt is made.
    let down = CaptureServer::start(&[503; 10]).await;
    let err = handle(&deps, event("Create", &down.url(), "r-1", spec()))
        .await
        .expect_err("not delivered");
    assert_eq!(down.requests().len(), 3);
    assert!(err.to_string().contains("503"), "{err}");
}

#[tokio::test]
async fn plain_http_to_a_remote_host_is_refused_before_anything_is_sent() {
    let (start, _) = recording_start();
    let deps = deps(&[&start]);
    let url = "http://cloudformation-custom-resource-response-uswest2.s3.amazonaws.com/x?X-Amz-Signature=secret";
    let err = handle(&deps, event("Create", url, "r-1", spec()))
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("not HTTPS"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

#[tokio::test]
async fn a_step_functions_call_that_never_answers_still_gets_a_failed_response_in_time() {
    let (sfn, hold) = silent_sfn().await;
    let server = CaptureServer::start(&[]).await;
    let mut deps = deps_with(sfn);
    deps.budget.work = Duration::from_millis(300);

    let started = std::time::Instant::now();
    handle(&deps, event("Create", &server.url(), "r-1", spec()))
        .await
        .expect("answered");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let body = server.last_json();
    assert_eq!(body["Status"], "FAILED");
    let reason = body["Reason"].as_str().unwrap();
    assert!(
        reason.starts_with("Apiary.Timeout: AWS did not answer"),
        "{reason}"
    );
    // The StartExecution may have gone through: the real id, so the rollback's Delete
    // stops whatever runs instead of skipping it.
    assert_eq!(body["PhysicalResourceId"], "apiary-acme-launch");
    assert!(!reason.contains("teardown"), "{reason}");
    hold.abort();
}

/// A Step Functions endpoint that accepts connections and never answers, and the task
/// holding them open.
async fn silent_sfn() -> (Sfn, tokio::task::JoinHandle<()>) {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let sfn = Sfn::from_conf(
        aws_sdk_sfn::Config::builder()
            .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
            .region(aws_sdk_sfn::config::Region::new("us-west-2"))
            .credentials_provider(aws_sdk_sfn::config::Credentials::new(
                "AKID", "secret", None, None, "test",
            ))
            .endpoint_url(endpoint)
            .build(),
    );
    (sfn, hold)
}

#[tokio::test]
async fn the_reason_points_at_the_log_stream() {
    let server = CaptureServer::start(&[]).await;
    let env = HashMap::from([
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/apiary-acme-launch",
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/23/[$LATEST]abc"),
    ]);
    let mut deps = deps(&[]);
    deps.logs = LogLocation::from_env(&env);
    let mut bad = spec();
    bad["AzCount"] = json!("9");
    handle(&deps, event("Create", &server.url(), "r-1", bad))
        .await
        .expect("answered");
    let reason = server.last_json()["Reason"].as_str().unwrap().to_owned();
    assert!(
        reason.ends_with(
            " (details: CloudWatch Logs /aws/lambda/apiary-acme-launch, stream 2026/11/23/[$LATEST]abc)"
        ),
        "{reason}"
    );
    assert_eq!(LogLocation::from_env(&HashMap::<&str, &str>::new()), None);
}

#[test]
fn execution_names_are_valid_and_deterministic() {
    let request = Request::from_event(event("Create", "https://x", "r-1", spec())).unwrap();
    let name = request.execution_name(RequestType::Create);
    assert_eq!(name, request.execution_name(RequestType::Create));
    assert_eq!(name.len(), "cfn-create-".len() + 32);
    assert!(name.len() <= 80);
    assert_ne!(name, request.execution_name(RequestType::Update));
    assert_eq!(request.stack_name(), "apiary-acme");
}

#[test]
fn the_request_never_shows_its_response_url() {
    let request = Request::from_event(event(
        "Create",
        "https://bucket.s3.us-west-2.amazonaws.com/key?X-Amz-Signature=secret",
        "r-1",
        spec(),
    ))
    .unwrap();
    let shown = format!("{request:?}");
    assert!(!shown.contains("secret"), "{shown}");
    assert_eq!(request.response_host(), "bucket.s3.us-west-2.amazonaws.com");
}

#[test]
fn an_event_that_cannot_be_answered_is_an_error() {
    let err = Request::from_event(json!({"RequestType": "Create"})).unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
}

#[test]
fn the_default_budget_fits_the_lambda_timeout_with_room_to_spare() {
    let budget = Budget::default();
    assert!(
        budget.worst_case() + Duration::from_secs(5) <= LAMBDA_TIMEOUT,
        "{:?}",
        budget.worst_case()
    );
}

#[test]
fn state_machine_arns_are_taken_apart() {
    let arn = StateMachineArn::parse(MACHINE).unwrap();
    assert_eq!(arn.region, "us-west-2");
    assert_eq!(arn.execution_arn("x"), execution_arn("x"));
    assert!(StateMachineArn::parse("arn:aws:states:us-west-2:1:execution:m:x").is_err());
    assert!(StateMachineArn::parse("arn:aws:states::1:stateMachine:m").is_err());
}

#[test]
fn the_execution_link_uses_the_partitions_console() {
    let arn = "arn:aws-us-gov:states:us-gov-west-1:123456789012:execution:apiary-acme-provision:x";
    assert_eq!(
        execution_console_url("us-gov-west-1", arn),
        format!(
            "https://console.amazonaws-us-gov.com/states/home?region=us-gov-west-1#/v2/executions/details/{arn}"
        )
    );
}

mod on_stack_delete {
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::types::AttributeValue;
    use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::stack_delete::{Verdict, look};

    const TEARDOWN: &str =
        "arn:aws:states:us-west-2:123456789012:stateMachine:apiary-acme-teardown";
    const RUN: &str =
        "arn:aws:states:us-west-2:123456789012:execution:apiary-acme-teardown:cfn-delete-1";

    fn env() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("APIARY_ON_STACK_DELETE", "Teardown"),
            ("APIARY_STACK_ID", STACK),
            ("APIARY_DEPLOYMENT", "acme"),
            ("APIARY_TABLE", "apiary-acme"),
            ("APIARY_TEARDOWN_STATE_MACHINE_ARN", TEARDOWN),
            (
                "APIARY_STACK_DELETE_STATE_MACHINE_ARN",
                "arn:aws:states:us-west-2:123456789012:stateMachine:apiary-acme-stack-delete",
            ),
        ])
    }

    fn config() -> TeardownConfig {
        match OnStackDelete::from_env(&env()).unwrap() {
            OnStackDelete::Teardown(config) => *config,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_setting_is_read_and_every_missing_part_named() {
        assert_eq!(
            OnStackDelete::from_env(&HashMap::<&str, &str>::new()).unwrap(),
            OnStackDelete::Retain
        );
        assert_eq!(config().deployment, "acme");
        assert_eq!(config().teardown.name, "apiary-acme-teardown");
        for missing in [
            "APIARY_STACK_ID",
            "APIARY_DEPLOYMENT",
            "APIARY_TABLE",
            "APIARY_TEARDOWN_STATE_MACHINE_ARN",
            "APIARY_STACK_DELETE_STATE_MACHINE_ARN",
        ] {
            let mut env = env();
            env.remove(missing);
            let err = OnStackDelete::from_env(&env).unwrap_err().to_string();
            assert!(err.contains(missing), "{missing}: {err}");
        }
        let err = OnStackDelete::from_env(&HashMap::from([("APIARY_ON_STACK_DELETE", "Delete")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"Delete\"") && err.contains("Retain or Teardown"),
            "{err}"
        );
    }

    /// GetItem finding the answer to request `r-1` held, to be given at `url`.
    fn held_at(url: &str, deadline: chrono::DateTime<Utc>) -> Rule {
        let answer = apiary_core::store::PendingAnswer {
            request_id: "r-1".into(),
            response_url: url.into(),
            stack_id: STACK.into(),
            logical_resource_id: "Launch".into(),
            physical_resource_id: "apiary-acme-launch".into(),
            execution_arn: RUN.into(),
            deadline,
        };
        let body = serde_json::to_string(&answer).unwrap();
        mock!(aws_sdk_dynamodb::Client::get_item).then_output(move || {
            GetItemOutput::builder()
                .item("answer", AttributeValue::S(body.clone()))
                .build()
        })
    }

    fn described(status: ExecutionStatus, error: Option<&str>, cause: Option<&str>) -> Rule {
        let (error, cause) = (error.map(str::to_owned), cause.map(str::to_owned));
        mock!(Sfn::describe_execution).then_output(move || {
            DescribeExecutionOutput::builder()
                .execution_arn(RUN)
                .state_machine_arn(TEARDOWN)
                .status(status.clone())
                .start_date(DateTime::from_secs(0))
                .set_error(error.clone())
                .set_cause(cause.clone())
                .build()
                .unwrap()
        })
    }

    async fn verdict(status: Rule, deadline_in_minutes: i64) -> Verdict {
        let now = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
        let dynamo = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::MatchAny,
            &[&held_at(
                "https://cloudformation-custom-resource-response-uswest2.s3.amazonaws.com/x?X-Amz-Signature=s",
                now + chrono::Duration::minutes(deadline_in_minutes)
            )]
        );
        let store = apiary_core::store::Store::new(dynamo, "apiary-acme");
        let sfn = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, &[&status]);
        look(
            &sfn,
            &store,
            &config(),
            &json!({"watch_stack_delete": {"request_id": "r-1"}}),
            now,
        )
        .await
        .unwrap()
    }

    fn answer(verdict: Verdict) -> (bool, String) {
        match verdict {
            Verdict::Answer {
                success, message, ..
            } => (success, message),
            other => panic!("not answered: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_teardown_that_succeeded_is_answered_success_with_its_receipt() {
        let (success, message) =
            answer(verdict(described(ExecutionStatus::Succeeded, None, None), 30).await);
        assert!(success);
        assert!(
            message.contains(RUN) && message.contains("receipt"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_teardown_that_failed_is_answered_failed_with_its_error_and_cause() {
        let (success, message) = answer(
            verdict(
                described(
                    ExecutionStatus::Failed,
                    Some("Apiary.Timeout"),
                    Some("the VPC's network interfaces were not released after 45 minutes"),
                ),
                30,
            )
            .await,
        );
        assert!(!success);
        for part in [
            RUN,
            "FAILED",
            "Apiary.Timeout",
            "network interfaces were not released",
            "delete the stack again",
            "--retain-resources Launch",
            "--stack-name apiary-acme",
        ] {
            assert!(message.contains(part), "{part}: {message}");
        }
    }

    #[tokio::test]
    async fn a_running_teardown_waits_until_the_deadline_then_fails_with_its_link() {
        match verdict(described(ExecutionStatus::Running, None, None), 1).await {
            Verdict::Waiting { execution } => assert_eq!(execution, RUN),
            other => panic!("{other:?}"),
        }
        let (success, message) =
            answer(verdict(described(ExecutionStatus::Running, None, None), -1).await);
        assert!(!success);
        assert!(
            message.contains("still running after 50 minutes"),
            "{message}"
        );
        assert!(
            message.contains(&execution_console_url("us-west-2", RUN)),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_watch_without_a_request_id_is_refused_by_name() {
        let dynamo = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[]);
        let store = apiary_core::store::Store::new(dynamo, "apiary-acme");
        let sfn = mock_client!(aws_sdk_sfn, RuleMode::MatchAny, &[]);
        for event in [
            json!({"watch_stack_delete": {}}),
            json!({"watch_stack_delete": {"request_id": ""}}),
            json!({"watch_stack_delete": {"request_id": "r", "url": "https://x"}}),
        ] {
            let err = look(&sfn, &store, &config(), &event, Utc::now())
                .await
                .unwrap_err();
            assert_eq!(err.name(), apiary_core::ErrorName::InvalidInput, "{err}");
            assert!(err.to_string().contains("watch_stack_delete"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_watch_when_the_stack_retains_is_refused() {
        let deps = deps(&[]);
        let err = handle(&deps, json!({"watch_stack_delete": {"request_id": "r"}}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("OnStackDelete is Retain"), "{err}");
    }

    fn stack_is(status: &'static str) -> Rule {
        crate::test_support::stack_in(STACK, status.into())
    }

    /// A Delete someone sent by invoking the function, not CloudFormation deleting the
    /// stack: refused, naming why, with nothing stopped or started (the Step Functions
    /// client has no rule: any call would fail the test).
    #[tokio::test]
    async fn a_delete_that_is_not_this_stacks_deletion_tears_nothing_down() {
        let server = CaptureServer::start(&[]).await;
        for (status, stack, expect) in [
            (
                "UPDATE_COMPLETE",
                STACK,
                "is UPDATE_COMPLETE, not being deleted",
            ),
            (
                "DELETE_IN_PROGRESS",
                "arn:aws:cloudformation:us-west-2:123456789012:stack/other/1",
                "but this function serves stack",
            ),
        ] {
            // With Teardown it would tear down; with Retain it would still stop every
            // workflow (a restore test's scratch databases would keep billing).
            for teardown in [true, false] {
                let rule = stack_is(status);
                let mut deps = deps(&[]);
                deps.cloudformation =
                    mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, &[&rule]);
                if teardown {
                    deps.on_delete = Ok(OnStackDelete::Teardown(Box::new(config())));
                } else {
                    deps.stack_id = Some(STACK.to_owned());
                }
                let mut delete = event("Delete", &server.url(), "r-9", spec());
                delete["StackId"] = json!(stack);
                handle(&deps, delete).await.expect("answered");
                let body = server.last_json();
                assert_eq!(body["Status"], "FAILED", "{body}");
                let reason = body["Reason"].as_str().unwrap();
                assert!(reason.contains(expect), "{expect}: {reason}");
                assert!(reason.contains("nothing was stopped"), "{reason}");
            }
        }
    }

    #[tokio::test]
    async fn the_stack_being_deleted_or_rolled_back_lets_the_teardown_start() {
        for status in ["DELETE_IN_PROGRESS", "ROLLBACK_IN_PROGRESS"] {
            let rule = stack_is(status);
            let cloudformation = mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, &[&rule]);
            let request =
                Request::from_event(event("Delete", "https://example.com/r", "r-9", spec()))
                    .unwrap();
            crate::stack_delete::check_stack_is_deleting(&cloudformation, STACK, &request)
                .await
                .unwrap_or_else(|e| panic!("{status}: {e}"));
        }
    }

    /// The success path end to end with mocks (the emulator cannot make an execution
    /// succeed): the answer goes to CloudFormation, a provision queued behind the
    /// teardown is stopped first, and the held answer is forgotten.
    #[tokio::test]
    async fn a_succeeded_teardown_is_answered_after_stopping_a_queued_provision() {
        let server = CaptureServer::start(&[]).await;
        let get = held_at(&server.url(), Utc::now() + chrono::Duration::minutes(30));
        let delete = mock!(aws_sdk_dynamodb::Client::delete_item).then_output(|| {
            aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput::builder().build()
        });
        let dynamo = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[&get, &delete]);
        let queued = "arn:aws:states:us-west-2:123456789012:execution:apiary-acme-provision:cert";
        let list = mock!(Sfn::list_executions)
            .match_requests(|r| r.state_machine_arn() == Some(MACHINE))
            .then_output(move || running_in(MACHINE, &[queued.to_owned()]));
        let stop = mock!(Sfn::stop_execution)
            .match_requests(move |r| r.execution_arn() == Some(queued))
            .then_output(|| {
                StopExecutionOutput::builder()
                    .stop_date(DateTime::from_secs(1))
                    .build()
                    .unwrap()
            });
        let succeeded = described(ExecutionStatus::Succeeded, None, None);
        let mut deps = deps(&[&list, &stop, &succeeded]);
        deps.on_delete = Ok(OnStackDelete::Teardown(Box::new(config())));
        deps.store = Some(apiary_core::store::Store::new(dynamo, "apiary-acme"));

        let done = handle(&deps, json!({"watch_stack_delete": {"request_id": "r-1"}}))
            .await
            .unwrap();
        assert_eq!(done, json!({"done": true, "status": "SUCCESS"}));
        assert_eq!(stop.num_calls(), 1, "the queued provision was stopped");
        assert_eq!(delete.num_calls(), 1, "the held answer was forgotten");
        let answer = server.last_json();
        assert_eq!(answer["Status"], "SUCCESS", "{answer}");
        assert_eq!(answer["RequestId"], "r-1");
        assert_eq!(answer["PhysicalResourceId"], "apiary-acme-launch");
        let reason = answer["Reason"].as_str().unwrap();
        assert!(reason.contains(RUN) && reason.contains(queued), "{reason}");
    }

    /// Time runs out during a teardown Delete: the reason says a teardown may be running
    /// and what a second delete does.
    #[tokio::test]
    async fn a_teardown_delete_that_runs_out_of_time_says_what_may_be_running() {
        let (sfn, hold) = silent_sfn().await;
        let server = CaptureServer::start(&[]).await;
        let rule = stack_is("DELETE_IN_PROGRESS");
        let mut deps = deps_with(sfn);
        deps.cloudformation = mock_client!(aws_sdk_cloudformation, RuleMode::MatchAny, &[&rule]);
        deps.on_delete = Ok(OnStackDelete::Teardown(Box::new(config())));
        deps.budget.work = Duration::from_millis(300);
        handle(&deps, event("Delete", &server.url(), "r-10", spec()))
            .await
            .expect("answered");
        let body = server.last_json();
        assert_eq!(body["Status"], "FAILED", "{body}");
        let reason = body["Reason"].as_str().unwrap();
        assert!(
            reason.starts_with("Apiary.Timeout: AWS did not answer"),
            "{reason}"
        );
        assert!(
            reason.contains("a teardown may have been started")
                && reason.contains("delete the stack again"),
            "{reason}"
        );
        hold.abort();
    }
}
