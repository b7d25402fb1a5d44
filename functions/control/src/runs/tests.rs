use aws_sdk_sfn::Client as Sfn;
use aws_sdk_sfn::operation::describe_execution::{DescribeExecutionError, DescribeExecutionOutput};
use aws_sdk_sfn::types::error::ExecutionDoesNotExist;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::DateTime as SmithyTime;
use aws_smithy_types::error::ErrorMetadata;
use serde_json::json;

use super::*;

const EXECUTION: &str =
    "arn:aws:states:us-west-2:123456789012:execution:apiary-acme-provision:launch-1";

fn described(status: ExecutionStatus) -> Rule {
    mock!(Sfn::describe_execution)
        .match_requests(|r| r.execution_arn() == Some(EXECUTION))
        .then_output(move || {
            DescribeExecutionOutput::builder()
                .execution_arn(EXECUTION)
                .state_machine_arn(
                    "arn:aws:states:us-west-2:123456789012:stateMachine:apiary-acme-provision",
                )
                .status(status.clone())
                .start_date(SmithyTime::from_secs(1_700_000_000))
                .input(r#"{"spec": {"name": "acme"}}"#)
                .build()
                .unwrap()
        })
}

fn does_not_exist() -> Rule {
    mock!(Sfn::describe_execution).then_error(|| {
        DescribeExecutionError::ExecutionDoesNotExist(
            ExecutionDoesNotExist::builder()
                .message("Execution Does Not Exist")
                .meta(
                    ErrorMetadata::builder()
                        .code("ExecutionDoesNotExist")
                        .build(),
                )
                .build(),
        )
    })
}

fn runs(rules: &[&Rule]) -> StepFunctionsRuns {
    StepFunctionsRuns::with_client(mock_client!(aws_sdk_sfn, RuleMode::MatchAny, rules))
}

#[tokio::test]
async fn a_running_execution_keeps_its_lock() {
    for status in [ExecutionStatus::Running, ExecutionStatus::PendingRedrive] {
        let rule = described(status);
        assert!(runs(&[&rule]).is_running(EXECUTION).await.unwrap());
        assert_eq!(rule.num_calls(), 1);
    }
}

#[tokio::test]
async fn an_execution_that_ended_does_not() {
    for status in [
        ExecutionStatus::Succeeded,
        ExecutionStatus::Failed,
        ExecutionStatus::TimedOut,
        ExecutionStatus::Aborted,
    ] {
        let rule = described(status);
        assert!(!runs(&[&rule]).is_running(EXECUTION).await.unwrap());
    }
}

#[tokio::test]
async fn an_execution_step_functions_does_not_know_is_not_running() {
    let rule = does_not_exist();
    assert!(!runs(&[&rule]).is_running(EXECUTION).await.unwrap());
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn an_owner_that_is_no_execution_arn_is_left_to_its_lease_without_a_call() {
    let rule = does_not_exist();
    let runs = runs(&[&rule]);
    for owner in [
        "manual",
        "another-execution",
        "local:host:12:34:run-1",
        "cleanup:arn:aws:states:us-west-2:123456789012:execution:apiary-acme-provision:x",
    ] {
        assert!(runs.is_running(owner).await.unwrap(), "{owner}");
    }
    assert_eq!(rule.num_calls(), 0);
    assert_eq!(
        runs.owner(EXECUTION),
        EXECUTION,
        "the owner is the execution ARN"
    );
}

#[tokio::test]
async fn a_holder_that_is_not_this_stacks_execution_is_left_to_its_lease() {
    let rule = does_not_exist();
    let runs = runs(&[&rule])
        .with_provision("arn:aws:states:us-west-2:123456789012:stateMachine:apiary-acme-provision");
    for foreign in [
        // Another account, another region, another deployment's machines.
        "arn:aws:states:us-west-2:999999999999:execution:apiary-acme-provision:x",
        "arn:aws:states:eu-west-1:123456789012:execution:apiary-acme-provision:x",
        "arn:aws:states:us-west-2:123456789012:execution:apiary-other-backup:x",
    ] {
        assert!(runs.is_running(foreign).await.unwrap(), "{foreign}");
    }
    assert_eq!(
        rule.num_calls(),
        0,
        "nothing asked about foreign executions"
    );
    // Its own executions are asked about, every workflow of the stack.
    assert!(
        !runs
            .is_running("arn:aws:states:us-west-2:123456789012:execution:apiary-acme-backup:x")
            .await
            .unwrap()
    );
    assert_eq!(rule.num_calls(), 1);
}

#[tokio::test]
async fn a_denied_describe_never_frees_the_lock() {
    let denied = mock!(Sfn::describe_execution).then_error(|| {
        DescribeExecutionError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("not authorized")
                .build(),
        )
    });
    assert!(runs(&[&denied]).is_running(EXECUTION).await.unwrap());
    let throttled = mock!(Sfn::describe_execution).then_error(|| {
        DescribeExecutionError::generic(
            ErrorMetadata::builder()
                .code("ThrottlingException")
                .message("Rate exceeded")
                .build(),
        )
    });
    assert!(
        runs(&[&throttled]).is_running(EXECUTION).await.is_err(),
        "a throttle is an error the caller retries, not an answer"
    );
}

#[tokio::test]
async fn the_input_an_event_left_out_comes_from_describe_execution() {
    let rule = described(ExecutionStatus::TimedOut);
    let input = runs(&[&rule]).input(EXECUTION).await.unwrap();
    assert_eq!(input, Some(json!({"spec": {"name": "acme"}})));
    let gone = does_not_exist();
    assert_eq!(runs(&[&gone]).input(EXECUTION).await.unwrap(), None);
}

#[test]
fn execution_arns_and_names() {
    assert!(is_execution_arn(EXECUTION));
    assert!(is_execution_arn(
        "arn:aws-cn:states:cn-north-1:123456789012:execution:m:n"
    ));
    assert!(!is_execution_arn(
        "arn:aws:states:us-west-2:1:stateMachine:m"
    ));
    assert!(!is_execution_arn("exec-1"));
    assert_eq!(execution_name(EXECUTION), "launch-1");
    assert_eq!(execution_name("manual"), "manual");
}

#[test]
fn this_process_has_a_start_time_and_a_local_owner_names_it() {
    let runs = LocalRuns::new();
    let pid = std::process::id();
    let start = start_time(pid).expect("this process's /proc/<pid>/stat");
    assert!(start.parse::<u64>().is_ok(), "{start}");
    assert_eq!(
        runs.owner(EXECUTION),
        format!("local:{}:{pid}:{start}:launch-1", runs.host())
    );
}

#[tokio::test]
async fn a_local_execution_of_this_process_runs_between_started_and_finished() {
    let runs = LocalRuns::new();
    let arn = "arn:aws:states:us-west-2:123456789012:execution:apiary-provision:live-check";
    let owner = runs.owner(arn);
    assert!(!runs.is_running(&owner).await.unwrap(), "not started yet");
    runs.started(arn);
    assert!(runs.is_running(&owner).await.unwrap());
    runs.finished(arn);
    assert!(!runs.is_running(&owner).await.unwrap(), "finished");
}

#[tokio::test]
async fn a_local_owner_whose_process_is_gone_is_not_running() {
    let runs = LocalRuns::new();
    // Above the kernel's largest pid (2^22): no process has it.
    let dead = format!("local:{}:4194999:12345:old-run", runs.host());
    assert!(!runs.is_running(&dead).await.unwrap());
}

#[tokio::test]
async fn a_live_process_runs_until_it_exits_and_a_reused_pid_is_not_it() {
    let runs = LocalRuns::new();
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("sleep");
    let pid = child.id();
    let start = start_time(pid).expect("the child's start time");
    let owner = format!("local:{}:{pid}:{start}:other-run", runs.host());
    assert!(runs.is_running(&owner).await.unwrap());
    let reused = format!("local:{}:{pid}:1:other-run", runs.host());
    assert!(
        !runs.is_running(&reused).await.unwrap(),
        "same pid, other start time: another process"
    );
    child.kill().expect("kill the child");
    child.wait().expect("reap the child");
    assert!(!runs.is_running(&owner).await.unwrap(), "gone");
}

#[tokio::test]
async fn an_owner_of_another_host_or_not_local_is_left_to_its_lease() {
    let runs = LocalRuns::new();
    for owner in [
        "local:some-other-host:4194999:1:run",
        EXECUTION,
        "exec-1",
        "local:broken",
    ] {
        assert!(runs.is_running(owner).await.unwrap(), "{owner}");
    }
}

#[test]
fn the_start_time_is_read_past_a_command_with_spaces_and_parentheses() {
    let stat =
        "77 (a (weird) name) S 1 77 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
    assert_eq!(stat_start_time(stat).as_deref(), Some("987654"));
    assert_eq!(stat_start_time("garbage"), None);
}

const PROVISION: &str = "arn:aws:states:us-west-2:123456789012:stateMachine:apiary-acme-provision";

#[tokio::test]
async fn provision_is_started_once_per_name() {
    use aws_sdk_sfn::operation::start_execution::{StartExecutionError, StartExecutionOutput};
    use aws_sdk_sfn::types::error::ExecutionAlreadyExists;
    let started = mock!(Sfn::start_execution)
        .match_requests(|r| {
            r.state_machine_arn() == Some(PROVISION)
                && r.name() == Some("certificate-issued-1")
                && r.input().is_some_and(|i| i.contains("\"queue\":true"))
        })
        .then_output(|| {
            StartExecutionOutput::builder()
                .execution_arn(format!(
                    "{}:certificate-issued-1",
                    PROVISION.replace(":stateMachine:", ":execution:")
                ))
                .start_date(SmithyTime::from_secs(1_700_000_000))
                .build()
                .unwrap()
        });
    let input = json!({"spec": {"name": "acme"}, "queue": true});
    let arn = runs(&[&started])
        .with_provision(PROVISION)
        .start("provision", "certificate-issued-1", &input)
        .await
        .unwrap();
    let expected = "arn:aws:states:us-west-2:123456789012:execution:apiary-acme-provision:certificate-issued-1";
    assert_eq!(arn.as_deref(), Some(expected));

    let exists = mock!(Sfn::start_execution).then_error(|| {
        StartExecutionError::ExecutionAlreadyExists(
            ExecutionAlreadyExists::builder()
                .message("Execution Already Exists")
                .meta(
                    ErrorMetadata::builder()
                        .code("ExecutionAlreadyExists")
                        .build(),
                )
                .build(),
        )
    });
    let again = runs(&[&exists])
        .with_provision(PROVISION)
        .start("provision", "certificate-issued-1", &input)
        .await
        .unwrap();
    assert_eq!(
        again.as_deref(),
        Some(expected),
        "a redelivered event starts nothing new"
    );

    let unset = mock!(Sfn::start_execution).then_error(|| {
        StartExecutionError::ExecutionAlreadyExists(ExecutionAlreadyExists::builder().build())
    });
    assert_eq!(
        runs(&[&unset])
            .start("provision", "x", &input)
            .await
            .unwrap(),
        None,
        "without the state machine's ARN nothing is started"
    );
    assert_eq!(unset.num_calls(), 0);
}

#[tokio::test]
async fn another_workflow_of_the_stack_is_started_by_its_state_machine() {
    use aws_sdk_sfn::operation::start_execution::StartExecutionOutput;
    let scale = "arn:aws:states:us-west-2:123456789012:stateMachine:apiary-acme-scale-pools";
    let started = mock!(Sfn::start_execution)
        .match_requests(move |r| r.state_machine_arn() == Some(scale))
        .then_output(|| {
            StartExecutionOutput::builder()
                .execution_arn(
                    "arn:aws:states:us-west-2:123456789012:execution:apiary-acme-scale-pools:a-1",
                )
                .start_date(SmithyTime::from_secs(1_700_000_000))
                .build()
                .unwrap()
        });
    let arn = runs(&[&started])
        .with_provision(PROVISION)
        .start("scale-pools", "a-1", &json!({"pool": "ingestion"}))
        .await
        .unwrap();
    assert_eq!(
        arn.as_deref(),
        Some("arn:aws:states:us-west-2:123456789012:execution:apiary-acme-scale-pools:a-1")
    );
}
