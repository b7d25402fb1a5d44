//! Task states: dispatch to the registered handler, Lambda result shapes, timeouts,
//! heartbeats and task tokens, with AWS's event families.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::state::{StateRun, Thread, data_limit};
use super::{Failure, MAX_PAYLOAD_BYTES, error_details};
use crate::definition::{NumberField, Resource, TaskSpec};
use crate::error::{StatesError, names};
use crate::handler::{TaskContext, TaskHandler, TokenMessage, function_name};
use crate::history::not_truncated;
use crate::path::Env;

/// How the events of this task are named and what they carry.
struct Family {
    /// `Lambda` for a direct function ARN, `Task` otherwise.
    lambda_events: bool,
    resource_type: String,
    resource: String,
}

impl Family {
    fn details(&self, extra: Value) -> Value {
        let mut map = Map::new();
        if !self.lambda_events {
            map.insert("resourceType".into(), json!(self.resource_type));
            map.insert("resource".into(), json!(self.resource));
        }
        if let Value::Object(extra) = extra {
            map.extend(extra);
        }
        Value::Object(map)
    }

    fn event(&self, suffix: &str) -> (String, &'static str) {
        if self.lambda_events {
            let key = match suffix {
                "Scheduled" => "lambdaFunctionScheduledEventDetails",
                "Succeeded" => "lambdaFunctionSucceededEventDetails",
                "Failed" => "lambdaFunctionFailedEventDetails",
                "TimedOut" => "lambdaFunctionTimedOutEventDetails",
                _ => "",
            };
            (format!("LambdaFunction{suffix}"), key)
        } else {
            let key = match suffix {
                "Scheduled" => "taskScheduledEventDetails",
                "Started" => "taskStartedEventDetails",
                "Submitted" => "taskSubmittedEventDetails",
                "Succeeded" => "taskSucceededEventDetails",
                "Failed" => "taskFailedEventDetails",
                "TimedOut" => "taskTimedOutEventDetails",
                _ => "",
            };
            (format!("Task{suffix}"), key)
        }
    }
}

fn seconds(
    field: Option<&NumberField>,
    env: &Env<'_>,
    name: &str,
) -> Result<Option<f64>, StatesError> {
    match field {
        None => Ok(None),
        Some(NumberField::Fixed(n)) => Ok(Some(*n)),
        Some(NumberField::Path(path)) => {
            let value = path
                .evaluate(env, false)
                .ok_or_else(|| super::dataflow::no_results(path))?;
            match value.as_u64() {
                Some(n) if n > 0 => Ok(Some(n as f64)),
                _ => Err(StatesError::runtime(format!(
                    "The {name}Path parameter does not reference a valid positive integer value: {}",
                    crate::json::compact(&value)
                ))),
            }
        }
    }
}

/// The Invoke response envelope of `arn:aws:states:::lambda:invoke`.
fn invoke_envelope(payload: Value, executed_version: &str, request_id: &str) -> Value {
    let length = crate::json::size(&payload).to_string();
    json!({
        "ExecutedVersion": executed_version,
        "Payload": payload,
        "SdkHttpMetadata": {
            "AllHttpHeaders": {
                "X-Amz-Executed-Version": [executed_version],
                "x-amzn-Remapped-Content-Length": ["0"],
                "Connection": ["keep-alive"],
                "x-amzn-RequestId": [request_id],
                "Content-Length": [length],
                "Content-Type": ["application/json"],
            },
            "HttpHeaders": {
                "Connection": "keep-alive",
                "Content-Length": length,
                "Content-Type": "application/json",
                "X-Amz-Executed-Version": executed_version,
                "x-amzn-Remapped-Content-Length": "0",
                "x-amzn-RequestId": request_id,
            },
            "HttpStatusCode": 200
        },
        "SdkResponseMetadata": {"RequestId": request_id},
        "StatusCode": 200
    })
}

fn not_found(shared_region: &str, account: &str, name: &str, request_id: &str) -> StatesError {
    StatesError::new(
        "Lambda.ResourceNotFoundException",
        format!(
            "Function not found: arn:aws:lambda:{shared_region}:{account}:function:{name} (Service: Lambda, Status Code: 404, Request ID: {request_id}) (no handler is registered for the function '{name}')"
        ),
    )
}

/// One attempt of a Task state; returns its raw result.
pub(crate) async fn attempt(
    run: &StateRun<'_>,
    spec: &TaskSpec,
    effective: &Value,
    thread: &mut Thread,
) -> Result<Value, Failure> {
    let shared = Arc::clone(run.shared);
    let wait_for_token = match &spec.resource {
        Resource::LambdaInvoke { wait_for_token } | Resource::Other { wait_for_token, .. } => {
            *wait_for_token
        }
        Resource::LambdaFunction { .. } => false,
    };
    let token = wait_for_token.then(|| shared.rng.uuid());
    let context = run.context(token.as_deref());
    let env = Env {
        input: effective,
        context: &context,
        vars: &thread.scope,
    };
    let parameters = match &run.state.parameters {
        Some(p) => p
            .render(&env, run.rng())
            .map_err(|e| run.fail(e, &thread.cursor))?,
        None => effective.clone(),
    };
    let timeout = seconds(spec.timeout.as_ref(), &env, "TimeoutSeconds")
        .map_err(|e| run.fail(e, &thread.cursor))?;
    let heartbeat = seconds(spec.heartbeat.as_ref(), &env, "HeartbeatSeconds")
        .map_err(|e| run.fail(e, &thread.cursor))?;
    if crate::json::size(&parameters) > MAX_PAYLOAD_BYTES {
        return Err(run.fail(
            StatesError::new(names::DATA_LIMIT_EXCEEDED, "The state's input after Parameters exceeds the maximum number of bytes service limit."),
            &thread.cursor,
        ));
    }

    let request_id = shared.rng.uuid();
    let (family, handler_key, payload, executed_version) = match &spec.resource {
        Resource::LambdaFunction { arn, function_name } => (
            Family {
                lambda_events: true,
                resource_type: "lambda".into(),
                resource: arn.clone(),
            },
            function_name.clone(),
            parameters.clone(),
            "$LATEST".to_string(),
        ),
        Resource::LambdaInvoke { wait_for_token } => {
            let Some(reference) = parameters.get("FunctionName").and_then(Value::as_str) else {
                return Err(run.fail(
                    StatesError::runtime(
                        "The field 'FunctionName' is required by arn:aws:states:::lambda:invoke",
                    ),
                    &thread.cursor,
                ));
            };
            let qualifier = reference
                .rsplit(':')
                .next()
                .filter(|q| q.chars().all(|c| c.is_ascii_digit()) && !q.is_empty());
            (
                Family {
                    lambda_events: false,
                    resource_type: "lambda".into(),
                    resource: if *wait_for_token {
                        "invoke.waitForTaskToken".into()
                    } else {
                        "invoke".into()
                    },
                },
                function_name(reference),
                parameters
                    .get("Payload")
                    .cloned()
                    .unwrap_or_else(|| json!({})),
                qualifier.unwrap_or("$LATEST").to_string(),
            )
        }
        Resource::Other {
            arn,
            resource_type,
            resource,
            ..
        } => (
            Family {
                lambda_events: false,
                resource_type: resource_type.clone(),
                resource: resource.clone(),
            },
            arn.clone(),
            parameters.clone(),
            String::new(),
        ),
    };

    // Scheduled and Started.
    let (scheduled, scheduled_key) = family.event("Scheduled");
    let mut extra = Map::new();
    if family.lambda_events {
        extra.insert("resource".into(), json!(family.resource));
        extra.insert("input".into(), json!(crate::json::compact(&parameters)));
        extra.insert("inputDetails".into(), not_truncated());
    } else {
        extra.insert("region".into(), json!(shared.region));
        extra.insert(
            "parameters".into(),
            json!(crate::json::compact(&parameters)),
        );
    }
    if let Some(t) = timeout {
        extra.insert("timeoutInSeconds".into(), json!(t as u64));
    }
    if let (Some(h), false) = (heartbeat, family.lambda_events) {
        extra.insert("heartbeatInSeconds".into(), json!(h as u64));
    }
    shared.emit(
        &mut thread.cursor,
        &scheduled,
        Some((scheduled_key, family.details(Value::Object(extra)))),
        true,
    );
    let (started, started_key) = family.event("Started");
    let started_details = (!family.lambda_events).then(|| (started_key, family.details(json!({}))));
    shared.emit(&mut thread.cursor, &started, started_details, true);

    let start = shared.clock.now();
    let deadline = timeout.map(|t| start + chrono::Duration::microseconds((t * 1e6) as i64));
    let lambda = matches!(
        spec.resource,
        Resource::LambdaFunction { .. } | Resource::LambdaInvoke { .. }
    );

    let handler: Option<Arc<dyn TaskHandler>> =
        shared
            .handlers
            .get(&handler_key)
            .or_else(|| match &spec.resource {
                Resource::Other { arn, .. } => shared
                    .handlers
                    .get(arn.trim_end_matches(".waitForTaskToken")),
                _ => None,
            });
    let outcome: Result<Value, TaskOutcome> = match handler {
        None if lambda => Err(TaskOutcome::Failed(not_found(
            &shared.region,
            &shared.account,
            &handler_key,
            &request_id,
        ))),
        None => Err(TaskOutcome::Failed(StatesError::new(
            names::TASK_FAILED,
            format!("No handler is registered for the resource '{handler_key}'"),
        ))),
        Some(handler) => {
            let task_context = TaskContext {
                state_name: run.state.name.clone(),
                execution_arn: shared.execution_arn.clone(),
                resource: handler_key.clone(),
                task_token: token.clone(),
                tokens: shared.tokens.clone(),
            };
            // The token is open before the handler runs: a handler may answer at once.
            let receiver = token
                .as_deref()
                .map(|t| (t.to_string(), shared.tokens.open(t)));
            let call = async { handler.invoke_with_context(payload, &task_context).await };
            let called = match deadline {
                Some(at) => shared.clock.deadline(at, call).await,
                None => Some(call.await),
            };
            match called {
                None => {
                    if let Some((t, _)) = &receiver {
                        shared.tokens.close(t);
                    }
                    Err(TaskOutcome::TimedOut(names::TIMEOUT))
                }
                Some(Err(e)) => {
                    if let Some((t, _)) = &receiver {
                        shared.tokens.close(t);
                    }
                    Err(TaskOutcome::Failed(StatesError {
                        error: e.error,
                        cause: (!e.cause.is_empty()).then_some(e.cause),
                    }))
                }
                Some(Ok(result)) => {
                    let result = if matches!(spec.resource, Resource::LambdaInvoke { .. }) {
                        invoke_envelope(result, &executed_version, &request_id)
                    } else {
                        result
                    };
                    match receiver {
                        None => Ok(result),
                        Some((t, rx)) => {
                            let (submitted, key) = family.event("Submitted");
                            shared.emit(
                                &mut thread.cursor,
                                &submitted,
                                Some((key, family.details(json!({"output": crate::json::compact(&result), "outputDetails": not_truncated()})))),
                                true,
                            );
                            let waited = wait_for_callback(run, rx, deadline, heartbeat).await;
                            shared.tokens.close(&t);
                            waited
                        }
                    }
                }
            }
        }
    };

    match outcome {
        Ok(result) => {
            if crate::json::size(&result) > MAX_PAYLOAD_BYTES {
                let error = data_limit(&family.resource);
                emit_failed(run, &family, thread, &error);
                return Err(Failure {
                    error,
                    last: thread.cursor.last,
                });
            }
            let (succeeded, key) = family.event("Succeeded");
            shared.emit(
                &mut thread.cursor,
                &succeeded,
                Some((key, family.details(json!({"output": crate::json::compact(&result), "outputDetails": not_truncated()})))),
                true,
            );
            Ok(result)
        }
        Err(TaskOutcome::Failed(error)) => {
            emit_failed(run, &family, thread, &error);
            Err(Failure {
                error,
                last: thread.cursor.last,
            })
        }
        Err(TaskOutcome::TimedOut(name)) => {
            let error = StatesError {
                error: name.to_string(),
                cause: None,
            };
            let (timed_out, key) = family.event("TimedOut");
            shared.emit(
                &mut thread.cursor,
                &timed_out,
                Some((key, family.details(error_details(&error)))),
                true,
            );
            Err(Failure {
                error,
                last: thread.cursor.last,
            })
        }
    }
}

fn emit_failed(run: &StateRun<'_>, family: &Family, thread: &mut Thread, error: &StatesError) {
    let (failed, key) = family.event("Failed");
    run.shared.emit(
        &mut thread.cursor,
        &failed,
        Some((key, family.details(error_details(error)))),
        true,
    );
}

enum TaskOutcome {
    Failed(StatesError),
    TimedOut(&'static str),
}

/// Waits for SendTaskSuccess / SendTaskFailure, honouring the task's timeout and
/// heartbeat.
async fn wait_for_callback(
    run: &StateRun<'_>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<TokenMessage>,
    deadline: Option<chrono::DateTime<chrono::Utc>>,
    heartbeat: Option<f64>,
) -> Result<Value, TaskOutcome> {
    let clock = &run.shared.clock;
    loop {
        let beat_at =
            heartbeat.map(|h| clock.now() + chrono::Duration::microseconds((h * 1e6) as i64));
        let (at, on_expiry) = match (deadline, beat_at) {
            (Some(d), Some(b)) if b < d => (Some(b), names::HEARTBEAT_TIMEOUT),
            (Some(d), _) => (Some(d), names::TIMEOUT),
            (None, Some(b)) => (Some(b), names::HEARTBEAT_TIMEOUT),
            (None, None) => (None, names::TIMEOUT),
        };
        let message = match at {
            Some(at) => clock.idle_until(at, rx.recv()).await,
            None => Some(clock.idle(rx.recv()).await),
        };
        match message {
            None => return Err(TaskOutcome::TimedOut(on_expiry)),
            Some(None) => {
                return Err(TaskOutcome::Failed(StatesError::new(
                    names::TASK_FAILED,
                    "The task token was closed",
                )));
            }
            Some(Some(TokenMessage::Heartbeat)) => {}
            Some(Some(TokenMessage::Success(output))) => return Ok(output),
            Some(Some(TokenMessage::Failure { error, cause })) => {
                return Err(TaskOutcome::Failed(StatesError::new(error, cause)));
            }
        }
    }
}
