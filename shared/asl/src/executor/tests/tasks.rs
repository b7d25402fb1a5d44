//! Task states: dispatch, Lambda shapes, errors, retries, catchers, timeouts, tokens.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::handler::TaskError;

const ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:echo";

fn options(handlers: HandlerRegistry) -> ExecutionOptions {
    ExecutionOptions {
        execution_name: Some("exec".into()),
        seed: Some(1),
        handlers,
        ..Default::default()
    }
}

fn echo() -> HandlerRegistry {
    let mut handlers = HandlerRegistry::new();
    handlers.register_fn("echo", |input| async move { Ok(json!({"echo": input})) });
    handlers
}

fn failing(error: &'static str, times: usize) -> (HandlerRegistry, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let mut handlers = HandlerRegistry::new();
    handlers.register_fn("echo", move |input| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if n < times {
                Err(TaskError::new(error, format!("attempt {n}")))
            } else {
                Ok(input)
            }
        }
    });
    (handlers, calls)
}

#[tokio::test]
async fn direct_lambda_arn_uses_lambda_function_events() {
    let result = run_with(
        json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": ARN, "End": true}}}),
        json!({"msg": "hello"}),
        options(echo()),
    )
    .await;
    assert_eq!(result.status, ExecutionStatus::Succeeded);
    assert_eq!(result.output, Some(json!({"echo": {"msg": "hello"}})));
    assert_eq!(
        types(&result),
        [
            "ExecutionStarted",
            "TaskStateEntered",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionSucceeded",
            "TaskStateExited",
            "ExecutionSucceeded"
        ]
    );
    assert_eq!(previous(&result), [0, 0, 2, 3, 4, 5, 6]);
    let scheduled = details(&result, "LambdaFunctionScheduled");
    assert_eq!(scheduled["resource"], json!(ARN));
    assert_eq!(scheduled["input"], json!(r#"{"msg":"hello"}"#));
    assert!(result.history[3].details.is_none());
}

#[tokio::test]
async fn lambda_invoke_wraps_the_result_in_the_invoke_envelope() {
    let result = run_with(
        json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": ARN, "Payload": {"in.$": "$.n"}},
            "ResultSelector": {"p.$": "$.Payload", "status.$": "$.StatusCode", "v.$": "$.ExecutedVersion"},
            "ResultPath": "$.lambda", "End": true}}}),
        json!({"n": 1}),
        options(echo()),
    )
    .await;
    assert_eq!(
        result.output,
        Some(json!({"n": 1, "lambda": {"p": {"echo": {"in": 1}}, "status": 200, "v": "$LATEST"}}))
    );
    assert_eq!(
        types(&result)[2..5],
        ["TaskScheduled", "TaskStarted", "TaskSucceeded"]
    );
    let scheduled = details(&result, "TaskScheduled");
    assert_eq!(scheduled["resourceType"], "lambda");
    assert_eq!(scheduled["resource"], "invoke");
    assert_eq!(scheduled["region"], "us-east-1");
    assert_eq!(
        scheduled["parameters"],
        json!(format!(
            r#"{{"FunctionName":"{ARN}","Payload":{{"in":1}}}}"#
        ))
    );
    assert_eq!(
        details(&result, "TaskStarted"),
        &json!({"resourceType": "lambda", "resource": "invoke"})
    );
    let output: Value = serde_json::from_str(
        details(&result, "TaskSucceeded")["output"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(output["StatusCode"], 200);
    assert!(output["SdkResponseMetadata"]["RequestId"].is_string());
}

#[tokio::test]
async fn lambda_invoke_accepts_names_and_partial_arns() {
    for name in ["echo", "echo:1", "123456789012:function:echo"] {
        let result = run_with(
            json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": name}, "OutputPath": "$.Payload", "End": true}}}),
            json!({}),
            options(echo()),
        )
        .await;
        assert_eq!(result.output, Some(json!({"echo": {}})), "{name}");
    }
}

#[tokio::test]
async fn unregistered_functions_fail_clearly() {
    let result = run_with(
        json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:missing", "End": true}}}),
        json!({}),
        options(echo()),
    )
    .await;
    assert_eq!(result.status, ExecutionStatus::Failed);
    assert_eq!(
        result.error.as_deref(),
        Some("Lambda.ResourceNotFoundException")
    );
    let cause = result.cause.clone().unwrap();
    assert!(
        cause.starts_with(
            "Function not found: arn:aws:lambda:us-east-1:123456789012:function:missing"
        ),
        "{cause}"
    );
    assert!(cause.contains("no handler is registered for the function 'missing'"));
    assert_eq!(types(&result)[4], "LambdaFunctionFailed");
}

#[tokio::test]
async fn handler_errors_become_the_states_error() {
    let (handlers, _) = failing("Apiary.InvalidSpec", 10);
    let result = run_with(
        json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "echo"}, "End": true}}}),
        json!({}),
        options(handlers),
    )
    .await;
    assert_eq!(result.error.as_deref(), Some("Apiary.InvalidSpec"));
    assert_eq!(result.cause.as_deref(), Some("attempt 0"));
    assert_eq!(
        details(&result, "TaskFailed"),
        &json!({"resourceType": "lambda", "resource": "invoke", "error": "Apiary.InvalidSpec", "cause": "attempt 0"})
    );
    assert_eq!(types(&result)[4..], ["TaskFailed", "ExecutionFailed"]);
}

#[tokio::test]
async fn retries_back_off_on_the_virtual_clock() {
    let (handlers, calls) = failing("Apiary.Retryable", 2);
    let started = std::time::Instant::now();
    let result = run_with(
        json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": ARN,
            "Retry": [{"ErrorEquals": ["Other"], "MaxAttempts": 5},
                      {"ErrorEquals": ["Apiary.Retryable"], "IntervalSeconds": 30, "BackoffRate": 2.0, "MaxAttempts": 3}],
            "End": true}}}),
        json!({"ok": 1}),
        options(handlers),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(result.status, ExecutionStatus::Succeeded);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let scheduled: Vec<_> = result
        .history
        .iter()
        .filter(|e| e.event_type == "LambdaFunctionScheduled")
        .map(|e| e.timestamp)
        .collect();
    assert_eq!(scheduled.len(), 3);
    let first_gap = (scheduled[1] - scheduled[0]).num_seconds();
    let second_gap = (scheduled[2] - scheduled[1]).num_seconds();
    assert!((30..32).contains(&first_gap), "{first_gap}");
    assert!((60..62).contains(&second_gap), "{second_gap}");
}

#[tokio::test]
async fn retries_stop_after_max_attempts_and_retry_count_is_in_the_context() {
    let (handlers, calls) = failing("Apiary.Retryable", 100);
    let result = run_with(
        json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": ARN,
            "Parameters": {"retry.$": "$$.State.RetryCount"},
            "Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 2, "IntervalSeconds": 1, "JitterStrategy": "FULL", "MaxDelaySeconds": 5}],
            "End": true}}}),
        json!({}),
        options(handlers),
    )
    .await;
    assert_eq!(result.status, ExecutionStatus::Failed);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let inputs: Vec<String> = result
        .history
        .iter()
        .filter(|e| e.event_type == "LambdaFunctionScheduled")
        .map(|e| {
            e.details.as_ref().unwrap().1["input"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        inputs,
        [r#"{"retry":0}"#, r#"{"retry":1}"#, r#"{"retry":2}"#]
    );
}

#[tokio::test]
async fn catch_places_the_error_output_and_moves_on() {
    let (handlers, _) = failing("Apiary.Conflict", 10);
    let result = run_with(
        json!({"StartAt": "Call", "States": {
            "Call": {"Type": "Task", "Resource": ARN,
                "Catch": [{"ErrorEquals": ["Apiary.Other"], "Next": "Never"},
                          {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Handle"}], "End": true},
            "Never": {"Type": "Fail"},
            "Handle": {"Type": "Pass", "End": true}}}),
        json!({"keep": true}),
        options(handlers),
    )
    .await;
    assert_eq!(result.status, ExecutionStatus::Succeeded);
    assert_eq!(
        result.output,
        Some(json!({"keep": true, "error": {"Error": "Apiary.Conflict", "Cause": "attempt 0"}}))
    );
    assert_eq!(
        types(&result)[4..],
        [
            "LambdaFunctionFailed",
            "TaskStateExited",
            "PassStateEntered",
            "PassStateExited",
            "ExecutionSucceeded"
        ]
    );
}

#[tokio::test]
async fn task_failing_in_a_branch_is_aborted_and_the_parallel_caught() {
    let (handlers, _) = failing("SQS.QueueDoesNotExistException", 10);
    let result = run_with(
        json!({"StartAt": "P", "States": {
            "P": {"Type": "Parallel", "Branches": [{"StartAt": "Send", "States": {"Send": {"Type": "Task", "Resource": ARN, "End": true}}}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Handled"}], "End": true},
            "Handled": {"Type": "Pass", "End": true}}}),
        json!({}),
        options(handlers),
    )
    .await;
    assert_eq!(
        types(&result),
        [
            "ExecutionStarted",
            "ParallelStateEntered",
            "ParallelStateStarted",
            "TaskStateEntered",
            "LambdaFunctionScheduled",
            "LambdaFunctionStarted",
            "LambdaFunctionFailed",
            "TaskStateAborted",
            "ParallelStateFailed",
            "ParallelStateExited",
            "PassStateEntered",
            "PassStateExited",
            "ExecutionSucceeded"
        ]
    );
    assert_eq!(
        previous(&result),
        [0, 0, 2, 3, 4, 5, 6, 7, 7, 9, 10, 11, 12]
    );
    assert_eq!(
        result.output,
        Some(json!({"Error": "SQS.QueueDoesNotExistException", "Cause": "attempt 0"}))
    );
}

#[tokio::test]
async fn timeout_seconds_fails_a_slow_task() {
    let mut handlers = HandlerRegistry::new();
    handlers.register_fn("echo", |_| async {
        std::future::pending::<()>().await;
        Ok(json!(null))
    });
    let result = run_with(
        json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": ARN, "TimeoutSeconds": 1,
            "Catch": [{"ErrorEquals": ["States.TaskFailed"], "Next": "Never"}], "End": true},
            "Never": {"Type": "Succeed"}}}),
        json!({}),
        options(handlers),
    )
    .await;
    assert_eq!(result.status, ExecutionStatus::Failed);
    assert_eq!(result.error.as_deref(), Some("States.Timeout"));
    assert_eq!(
        details(&result, "LambdaFunctionTimedOut"),
        &json!({"error": "States.Timeout"})
    );
    assert_eq!(
        details(&result, "LambdaFunctionScheduled")["timeoutInSeconds"],
        1
    );
}

type SeenToken = Arc<Mutex<Option<(String, TaskTokens)>>>;

fn token_catcher() -> (HandlerRegistry, SeenToken) {
    let seen: SeenToken = Arc::default();
    struct Catcher(SeenToken);
    #[async_trait::async_trait]
    impl crate::handler::TaskHandler for Catcher {
        async fn invoke(&self, _input: Value) -> Result<Value, TaskError> {
            Ok(json!("unused"))
        }
        async fn invoke_with_context(
            &self,
            input: Value,
            ctx: &crate::handler::TaskContext,
        ) -> Result<Value, TaskError> {
            assert_eq!(input["token"].as_str(), ctx.task_token.as_deref());
            *self.0.lock().unwrap() = Some((ctx.task_token.clone().unwrap(), ctx.tokens.clone()));
            Ok(json!({"accepted": true}))
        }
    }
    let mut handlers = HandlerRegistry::new();
    handlers.register("worker", Arc::new(Catcher(Arc::clone(&seen))));
    (handlers, seen)
}

const CALLBACK: &str = "arn:aws:states:::lambda:invoke.waitForTaskToken";

#[tokio::test]
async fn wait_for_task_token_completes_on_send_task_success() {
    let (handlers, seen) = token_catcher();
    let tokens = TaskTokens::new();
    let sender = tokens.clone();
    let waiter = tokio::spawn(async move {
        loop {
            if let Some(token) = sender.pending().first() {
                sender.send_heartbeat(token).unwrap();
                sender.send_success(token, json!({"done": 1})).unwrap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let result = run_with(
        json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": CALLBACK,
            "Parameters": {"FunctionName": "worker", "Payload": {"token.$": "$$.Task.Token"}}, "End": true}}}),
        json!({}),
        ExecutionOptions {
            task_tokens: tokens,
            ..options(handlers)
        },
    )
    .await;
    waiter.await.unwrap();
    assert!(seen.lock().unwrap().is_some());
    assert_eq!(result.status, ExecutionStatus::Succeeded);
    assert_eq!(result.output, Some(json!({"done": 1})));
    assert_eq!(
        types(&result)[2..6],
        [
            "TaskScheduled",
            "TaskStarted",
            "TaskSubmitted",
            "TaskSucceeded"
        ]
    );
    assert_eq!(
        details(&result, "TaskSubmitted")["resource"],
        "invoke.waitForTaskToken"
    );
}

#[tokio::test]
async fn send_task_failure_fails_the_task() {
    let (handlers, _) = token_catcher();
    let tokens = TaskTokens::new();
    let sender = tokens.clone();
    tokio::spawn(async move {
        loop {
            if let Some(token) = sender.pending().first() {
                sender.send_failure(token, "Apiary.Denied", "no").unwrap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let result = run_with(
        json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": CALLBACK,
            "Parameters": {"FunctionName": "worker", "Payload": {"token.$": "$$.Task.Token"}}, "End": true}}}),
        json!({}),
        ExecutionOptions {
            task_tokens: tokens,
            ..options(handlers)
        },
    )
    .await;
    assert_eq!(result.error.as_deref(), Some("Apiary.Denied"));
    assert_eq!(result.cause.as_deref(), Some("no"));
}

#[tokio::test]
async fn missing_heartbeat_times_out_on_the_virtual_clock() {
    let (handlers, _) = token_catcher();
    let started = std::time::Instant::now();
    let result = run_with(
        json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": CALLBACK, "HeartbeatSeconds": 600, "TimeoutSeconds": 3600,
            "Parameters": {"FunctionName": "worker", "Payload": {"token.$": "$$.Task.Token"}}, "End": true}}}),
        json!({}),
        options(handlers),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(result.error.as_deref(), Some("States.HeartbeatTimeout"));
    assert_eq!(
        details(&result, "TaskTimedOut"),
        &json!({"resourceType": "lambda", "resource": "invoke.waitForTaskToken", "error": "States.HeartbeatTimeout"})
    );
    let scheduled = details(&result, "TaskScheduled");
    assert_eq!(scheduled["heartbeatInSeconds"], 600);
    assert_eq!(scheduled["timeoutInSeconds"], 3600);
    let gap = result.stop_date - result.start_date;
    assert!(
        gap >= chrono::Duration::seconds(600) && gap < chrono::Duration::seconds(605),
        "{gap}"
    );
}

#[tokio::test]
async fn oversized_results_are_not_caught_by_states_all() {
    let mut handlers = HandlerRegistry::new();
    handlers.register_fn("echo", |_| async { Ok(json!("x".repeat(300 * 1024))) });
    let result = run_with(
        json!({"StartAt": "Call", "States": {"Call": {"Type": "Task", "Resource": ARN,
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Never"}], "End": true}, "Never": {"Type": "Succeed"}}}),
        json!({}),
        options(handlers),
    )
    .await;
    assert_eq!(result.error.as_deref(), Some("States.DataLimitExceeded"));
}

/// A handler that counts how many invocations run at once. Each waits (up to 5 s) until
/// `together` are running, so a correct engine shows the expected peak without relying
/// on timing, while one that serialises simply reaches a lower peak.
fn concurrency_probe(together: usize) -> (HandlerRegistry, Arc<AtomicUsize>) {
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut handlers = HandlerRegistry::new();
    let (r, p) = (Arc::clone(&running), Arc::clone(&peak));
    handlers.register_fn("echo", move |input| {
        let (r, p) = (Arc::clone(&r), Arc::clone(&p));
        async move {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while r.load(Ordering::SeqCst) < together && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Let the others see the full count before anyone leaves.
            tokio::time::sleep(Duration::from_millis(20)).await;
            r.fetch_sub(1, Ordering::SeqCst);
            Ok(input)
        }
    });
    (handlers, peak)
}

#[tokio::test]
async fn map_respects_max_concurrency_and_parallel_runs_branches_together() {
    let (handlers, peak) = concurrency_probe(2);
    let map = json!({"StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": 2,
        "ItemProcessor": {"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": ARN, "End": true}}}, "End": true}}});
    let result = run_with(map, json!([1, 2, 3, 4]), options(handlers)).await;
    assert_eq!(result.output, Some(json!([1, 2, 3, 4])));
    assert_eq!(peak.load(Ordering::SeqCst), 2, "two at a time, never more");

    let (handlers, peak) = concurrency_probe(3);
    let branch =
        json!({"StartAt": "T", "States": {"T": {"Type": "Task", "Resource": ARN, "End": true}}});
    let parallel = json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": [branch.clone(), branch.clone(), branch], "End": true}}});
    let result = run_with(parallel, json!(7), options(handlers)).await;
    assert_eq!(result.output, Some(json!([7, 7, 7])));
    assert_eq!(peak.load(Ordering::SeqCst), 3, "all branches run together");
}

#[tokio::test]
async fn other_integrations_dispatch_by_resource_arn() {
    let mut handlers = HandlerRegistry::new();
    handlers.register_fn("arn:aws:states:::sqs:sendMessage", |input| async move {
        Ok(json!({"MessageId": "m", "in": input}))
    });
    let result = run_with(
        json!({"StartAt": "S", "States": {"S": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
            "Parameters": {"QueueUrl": "q", "MessageBody": "hi"}, "End": true}}}),
        json!({}),
        options(handlers),
    )
    .await;
    assert_eq!(result.output.as_ref().unwrap()["MessageId"], "m");
    assert_eq!(details(&result, "TaskScheduled")["resourceType"], "sqs");
    assert_eq!(details(&result, "TaskScheduled")["resource"], "sendMessage");

    let result = run_with(
        json!({"StartAt": "S", "States": {"S": {"Type": "Task", "Resource": "arn:aws:states:::sns:publish", "End": true}}}),
        json!({}),
        options(HandlerRegistry::new()),
    )
    .await;
    assert_eq!(result.error.as_deref(), Some("States.TaskFailed"));
    assert!(result.cause.unwrap().contains("No handler is registered"));
}

#[tokio::test]
async fn poll_loop_with_wait_choice_and_a_bounded_count() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let mut handlers = HandlerRegistry::new();
    handlers.register_fn("cluster", move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move { Ok(json!({"ready": n >= 2})) }
    });
    let definition = |max_polls: u64| {
        json!({"StartAt": "Init", "States": {
            "Init": {"Type": "Pass", "Assign": {"polls": 0}, "Next": "Check"},
            "Check": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "${ClusterFunctionArn}", "Payload": {"action": "status"}},
                "ResultSelector": {"ready.$": "$.Payload.ready"},
                "Assign": {"polls.$": "States.MathAdd($polls, 1)"},
                "Next": "Ready?"},
            "Ready?": {"Type": "Choice", "Choices": [
                {"Variable": "$.ready", "BooleanEquals": true, "Next": "Done"},
                {"Variable": "$polls", "NumericGreaterThanEquals": max_polls, "Next": "TooSlow"}],
                "Default": "Wait"},
            "Wait": {"Type": "Wait", "Seconds": 300, "Next": "Check"},
            "TooSlow": {"Type": "Fail", "Error": "Apiary.Timeout", "CausePath": "States.Format('not ready after {} polls', $polls)"},
            "Done": {"Type": "Succeed"}}})
    };
    let subs = HashMap::from([(
        "ClusterFunctionArn".to_string(),
        "arn:aws:lambda:us-east-1:123456789012:function:cluster".to_string(),
    )]);
    let machine = StateMachine::load(&definition(10).to_string(), &subs).unwrap();
    let result = machine.execute(json!({}), options(handlers.clone())).await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{:?}",
        result.cause
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let took = result.stop_date - result.start_date;
    assert!(
        took >= chrono::Duration::seconds(600) && took < chrono::Duration::seconds(605),
        "{took}"
    );

    calls.store(0, Ordering::SeqCst);
    let machine = StateMachine::load(&definition(2).to_string(), &subs).unwrap();
    let result = machine.execute(json!({}), options(handlers)).await;
    assert_eq!(result.error.as_deref(), Some("Apiary.Timeout"));
    assert_eq!(result.cause.as_deref(), Some("not ready after 2 polls"));
}

/// The last branch of a Parallel (or the last Map iteration) ending must not leave the
/// virtual clock a moment where nothing counts active: the parent, woken but not yet
/// running, would let the clock jump to the only timer left, the execution's deadline.
/// Here the parent's thread is held back right when the branch ends (as a busy machine
/// does), and the state after the Parallel does real work.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_parallel_ending_never_lets_the_clock_jump_past_the_work_after_it() {
    for state in [
        json!({"Type": "Parallel", "Branches": [
            {"StartAt": "Last", "States": {"Last": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:last", "TimeoutSeconds": 60, "End": true}}}
        ], "Next": "After"}),
        json!({"Type": "Map", "ItemsPath": "$.items", "ItemProcessor": {"StartAt": "Last", "States": {
            "Last": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:last", "TimeoutSeconds": 60, "End": true}}},
            "ResultPath": null, "Next": "After"}),
    ] {
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut handlers = HandlerRegistry::new();
        let notify = Arc::clone(&gate);
        handlers.register_fn("last", move |_| {
            let notify = Arc::clone(&notify);
            async move {
                notify.notify_one();
                Ok(json!({}))
            }
        });
        handlers.register_fn("after", |_| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(json!({"done": true}))
        });
        let definition = json!({
            "TimeoutSeconds": 3600,
            "StartAt": "Fan",
            "States": {
                "Fan": state,
                "After": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:after", "TimeoutSeconds": 60, "End": true}
            }
        });
        let stall = async {
            gate.notified().await;
            // Blocks this (the parent's) thread while the one worker is free to jump.
            std::thread::sleep(Duration::from_millis(200));
            std::future::pending::<()>().await;
        };
        let result = tokio::select! {
            biased;
            () = stall => unreachable!(),
            result = run_with(definition, json!({"items": [1]}), options(handlers)) => result,
        };
        assert_eq!(
            result.status,
            ExecutionStatus::Succeeded,
            "{state}: {result:?}"
        );
        assert!(
            result.stop_date - result.start_date < chrono::Duration::minutes(1),
            "{state}: the workflow clock jumped to {}",
            result.stop_date
        );
    }
}
