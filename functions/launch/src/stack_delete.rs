//! `OnStackDelete=Teardown`: the Launch resource's Delete starts the teardown workflow and
//! CloudFormation's answer waits for it.
//!
//! A Lambda invocation lasts at most 15 minutes and a teardown 20 to 40, so the Delete
//! does not wait in the function. It starts the teardown (or finds the one already
//! running), keeps everything needed to answer in the state table, starts the
//! stack-delete workflow and returns without answering. That workflow asks
//! [`watch`] every minute; once the teardown has ended, or the deadline has passed,
//! `watch` answers CloudFormation and forgets the answer. CloudFormation waits for a
//! custom resource at most an hour (the resource's `ServiceTimeout`), so the deadline
//! is [`ANSWER_WITHIN`] after the first delivery of the request: a teardown still running
//! then gets a FAILED answer with its console link, the stack stays (DELETE_FAILED), and
//! deleting it again once the teardown has succeeded succeeds at once.
//!
//! Each part is safe to repeat: the teardown and the workflow are started under names
//! derived from the request (StartExecution with the same name and input returns the
//! first execution), the answer is kept only if none is (a redelivery keeps the first
//! deadline), and an answer given twice is harmless (CloudFormation takes the first).

use std::time::Duration;

use apiary_core::aws::Env;
use apiary_core::store::{DeploymentStatus, PendingAnswer, Store};
use apiary_core::{Error, Result};
use aws_sdk_cloudformation::types::StackStatus;
use aws_sdk_sfn::types::ExecutionStatus;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::request::{Request, RequestType, StateMachineArn, execution_console_url, stack_name_of};

/// How long after the Delete's first delivery the answer is given whatever the teardown's
/// state: under CloudFormation's one-hour limit, which counts from when it sent the
/// request, with room for Lambda's queue, the last poll, its Task's retries and the PUT.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(50 * 60);

/// The event the stack-delete workflow sends.
pub const WATCH_KEY: &str = "watch_stack_delete";

/// What the stack's `OnStackDelete` parameter says, with what a teardown needs. Read from
/// the function's environment (set by the template) rather than the Launch resource's
/// properties, so that a Delete reads the stack's current setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnStackDelete {
    /// The data plane stays; only running provisions are stopped.
    Retain,
    Teardown(Box<TeardownConfig>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeardownConfig {
    /// The stack this function belongs to (`AWS::StackId`): only its Delete tears down.
    pub stack_id: String,
    pub deployment: String,
    pub teardown: StateMachineArn,
    pub watcher: StateMachineArn,
    pub table: String,
}

impl OnStackDelete {
    /// `APIARY_ON_STACK_DELETE` (`Retain`, the default, or `Teardown`), and for
    /// `Teardown` the deployment, the two state machines and the table. A bad value is an
    /// error here, answered as a FAILED Delete naming the variable: never a silent Retain.
    pub fn from_env(env: &dyn Env) -> Result<OnStackDelete> {
        let required = |key: &str| {
            env.var(key).filter(|v| !v.is_empty()).ok_or_else(|| {
                Error::invalid_input(format!(
                    "OnStackDelete is Teardown but the launch function's environment has no {key}"
                ))
            })
        };
        match env.var("APIARY_ON_STACK_DELETE").as_deref() {
            None | Some("") | Some("Retain") => Ok(OnStackDelete::Retain),
            Some("Teardown") => Ok(OnStackDelete::Teardown(Box::new(TeardownConfig {
                stack_id: required("APIARY_STACK_ID")?,
                deployment: required("APIARY_DEPLOYMENT")?,
                teardown: StateMachineArn::parse(&required("APIARY_TEARDOWN_STATE_MACHINE_ARN")?)?,
                watcher: StateMachineArn::parse(&required(
                    "APIARY_STACK_DELETE_STATE_MACHINE_ARN",
                )?)?,
                table: required("APIARY_TABLE")?,
            }))),
            Some(other) => Err(Error::invalid_input(format!(
                "APIARY_ON_STACK_DELETE (the stack's OnStackDelete) is {other:?}; expected Retain or Teardown"
            ))),
        }
    }
}

/// What a Teardown Delete did.
pub(crate) enum Begun {
    /// Nothing to tear down: answer now.
    Nothing(String),
    /// The answer is kept; the stack-delete workflow gives it.
    Deferred { execution: String },
}

/// Stack statuses in which CloudFormation deletes the Launch resource for real: the
/// stack's delete, and the rollback of its creation.
const DELETING: [StackStatus; 2] = [
    StackStatus::DeleteInProgress,
    StackStatus::RollbackInProgress,
];

/// Whether this Delete comes from CloudFormation deleting this function's own stack.
/// Anyone allowed to invoke the function can send a Delete of their own making, and
/// CloudFormation invokes custom resources with the caller's credentials, so no
/// resource policy can tell the two apart: the Delete stops workflows and starts the
/// teardown (which otherwise needs a typed `confirm` from a person) only when the
/// request names this stack and CloudFormation says it is being deleted.
pub(crate) async fn check_stack_is_deleting(
    cloudformation: &aws_sdk_cloudformation::Client,
    stack_id: &str,
    request: &Request,
) -> Result<()> {
    let status = stack_status(cloudformation, stack_id, request).await?;
    if DELETING.contains(&status) {
        return Ok(());
    }
    Err(Error::invalid_input(format!(
        "stack {stack_id} is {}, not being deleted: a Delete acts only while \
         CloudFormation deletes the stack (or rolls back its creation); nothing was \
         stopped or torn down",
        status.as_str()
    )))
}

/// The status of this function's own stack, once the request is shown to name it: what
/// a Delete decides by. A request naming another stack, or a stack not found, is refused.
pub(crate) async fn stack_status(
    cloudformation: &aws_sdk_cloudformation::Client,
    stack_id: &str,
    request: &Request,
) -> Result<StackStatus> {
    if request.stack_id != stack_id {
        return Err(Error::invalid_input(format!(
            "the Delete names stack {} but this function serves stack {stack_id}: nothing \
             was stopped, torn down or deleted",
            request.stack_id
        )));
    }
    let described = cloudformation
        .describe_stacks()
        .stack_name(stack_id)
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeStacks {stack_id}"), e))?;
    described
        .stacks()
        .first()
        .and_then(|s| s.stack_status())
        .cloned()
        .ok_or_else(|| {
            Error::invalid_input(format!(
                "stack {stack_id} is not found: a Delete acts only while CloudFormation \
                 deletes the stack; nothing was stopped, torn down or deleted"
            ))
        })
}

/// The Delete of a Launch resource whose stack says `OnStackDelete=Teardown`, once
/// [`check_stack_is_deleting`] has passed.
pub(crate) async fn begin(
    sfn: &aws_sdk_sfn::Client,
    store: &Store,
    config: &TeardownConfig,
    request: &Request,
    physical_id: &str,
    now: DateTime<Utc>,
    within: Duration,
) -> Result<Begun> {
    let deployment = &config.deployment;
    // A redelivery of this Delete: its teardown and answer are in place; make sure the
    // workflow that gives the answer runs.
    if let Some(held) = store.held_answer(deployment, &request.request_id).await? {
        start_watcher(sfn, config, request).await?;
        return Ok(Begun::Deferred {
            execution: held.execution_arn,
        });
    }
    match store.get_deployment(deployment).await? {
        None => {
            return Ok(Begun::Nothing(format!(
                "deployment {deployment} has no record: provision never took it, so there is nothing to tear down"
            )));
        }
        Some(record) if record.status == DeploymentStatus::Deleted => {
            return Ok(Begun::Nothing(format!(
                "deployment {deployment} is already torn down (status DELETED)"
            )));
        }
        Some(_) => {}
    }
    let execution = match running(sfn, &config.teardown).await? {
        Some(arn) => {
            tracing::info!(
                execution = arn,
                "a teardown is already running; waiting for it"
            );
            arn
        }
        None => start_teardown(sfn, config, request).await?,
    };
    let deadline = now
        + chrono::Duration::from_std(within)
            .map_err(|e| Error::fatal(format!("answer deadline: {e}")))?;
    let held = store
        .hold_answer(
            deployment,
            &PendingAnswer {
                request_id: request.request_id.clone(),
                response_url: request.response_url.clone(),
                stack_id: request.stack_id.clone(),
                logical_resource_id: request.logical_resource_id.clone(),
                physical_resource_id: physical_id.to_owned(),
                execution_arn: execution,
                deadline,
            },
        )
        .await?;
    start_watcher(sfn, config, request).await?;
    tracing::info!(
        execution = held.execution_arn,
        deadline = %held.deadline,
        "the stack delete waits for the teardown"
    );
    Ok(Begun::Deferred {
        execution: held.execution_arn,
    })
}

/// The newest RUNNING execution of `machine`, if any.
async fn running(sfn: &aws_sdk_sfn::Client, machine: &StateMachineArn) -> Result<Option<String>> {
    let page = sfn
        .list_executions()
        .state_machine_arn(&machine.arn)
        .status_filter(ExecutionStatus::Running)
        .max_results(1)
        .send()
        .await
        .map_err(|e| Error::aws(format!("ListExecutions {}", machine.arn), e))?;
    Ok(page
        .executions()
        .first()
        .map(|e| e.execution_arn().to_owned()))
}

/// Starts (or finds, by its name) `machine`'s execution for this request.
async fn start_named(
    sfn: &aws_sdk_sfn::Client,
    machine: &StateMachineArn,
    name: &str,
    input: Value,
) -> Result<String> {
    match sfn
        .start_execution()
        .state_machine_arn(&machine.arn)
        .name(name)
        .input(input.to_string())
        .send()
        .await
    {
        Ok(started) => Ok(started.execution_arn),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_execution_already_exists()) =>
        {
            Ok(machine.execution_arn(name))
        }
        Err(err) => Err(Error::aws(format!("StartExecution {}", machine.arn), err)),
    }
}

async fn start_teardown(
    sfn: &aws_sdk_sfn::Client,
    config: &TeardownConfig,
    request: &Request,
) -> Result<String> {
    let deployment = &config.deployment;
    // Queued: a provision this Delete just stopped still holds the lock until its
    // end is recorded, and a backup may be running; teardown waits for the lock.
    let input = json!({
        "deployment": deployment,
        "confirm": deployment,
        "queue": true
    });
    let arn = start_named(
        sfn,
        &config.teardown,
        &request.execution_name(RequestType::Delete),
        input,
    )
    .await?;
    tracing::info!(execution = arn, "teardown started for the stack delete");
    Ok(arn)
}

async fn start_watcher(
    sfn: &aws_sdk_sfn::Client,
    config: &TeardownConfig,
    request: &Request,
) -> Result<String> {
    start_named(
        sfn,
        &config.watcher,
        &request.execution_name(RequestType::Delete),
        json!({"request_id": request.request_id}),
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Watch {
    request_id: String,
}

/// What [`watch`] decided.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Nothing kept for the request: answered before.
    AlreadyAnswered,
    /// Still running, deadline not reached.
    Waiting { execution: String },
    Answer {
        held: PendingAnswer,
        success: bool,
        message: String,
    },
}

/// One look at the teardown a held answer waits for.
pub(crate) async fn look(
    sfn: &aws_sdk_sfn::Client,
    store: &Store,
    config: &TeardownConfig,
    event: &Value,
    now: DateTime<Utc>,
) -> Result<Verdict> {
    let watch: Watch = serde_json::from_value(event[WATCH_KEY].clone()).map_err(|e| {
        Error::invalid_input(format!(
            "{WATCH_KEY}: {e}; expected {{\"request_id\": \"...\"}}"
        ))
    })?;
    if watch.request_id.is_empty() {
        return Err(Error::invalid_input(format!(
            "{WATCH_KEY}.request_id is empty"
        )));
    }
    let Some(held) = store
        .held_answer(&config.deployment, &watch.request_id)
        .await?
    else {
        return Ok(Verdict::AlreadyAnswered);
    };
    let arn = held.execution_arn.clone();
    let link = execution_console_url(&config.teardown.region, &arn);
    let described = apiary_core::aws::answer_or_none(
        format!("DescribeExecution {arn}"),
        sfn.describe_execution().execution_arn(&arn).send(),
        |e| e.is_execution_does_not_exist(),
    )
    .await?;
    let Some(described) = described else {
        return Ok(Verdict::Answer {
            message: format!(
                "the teardown execution {arn} does not exist (it expired, or was never started); \
                 start teardown from the console, then delete the stack again"
            ),
            held,
            success: false,
        });
    };
    let (success, message) = match described.status.clone() {
        ExecutionStatus::Succeeded => (
            true,
            format!(
                "teardown {arn} succeeded: the data plane is removed; its receipt is the \
                 execution's output at {link}"
            ),
        ),
        ExecutionStatus::Running | ExecutionStatus::PendingRedrive if now < held.deadline => {
            return Ok(Verdict::Waiting { execution: arn });
        }
        ExecutionStatus::Running | ExecutionStatus::PendingRedrive => (
            false,
            format!(
                "teardown {arn} is still running after {} minutes (CloudFormation waits at \
                 most an hour). Follow it at {link}; once it has succeeded, delete the \
                 stack again",
                ANSWER_WITHIN.as_secs() / 60
            ),
        ),
        other => (
            false,
            format!(
                "teardown {arn} ended {}: {}: {}. See {link}; fix the cause and delete the \
                 stack again (the teardown resumes where it stopped), or keep what is \
                 left: aws cloudformation delete-stack --stack-name {} --retain-resources {}",
                other.as_str(),
                described.error().unwrap_or("no error"),
                described.cause().unwrap_or("no cause"),
                stack_name_of(&held.stack_id),
                held.logical_resource_id,
            ),
        ),
    };
    Ok(Verdict::Answer {
        held,
        success,
        message,
    })
}

/// Whether `event` is the stack-delete workflow's rather than CloudFormation's.
pub fn is_watch(event: &Value) -> bool {
    event.get(WATCH_KEY).is_some()
}
