//! The bootstrap stack's custom resources.
//!
//! `Custom::ApiaryLaunch`: on Create and Update it validates the deployment spec and
//! starts the provision workflow; on Delete it stops any provision execution still
//! running, so it does not run on while the stack deletes its functions, and then, when
//! the stack's `OnStackDelete` is `Teardown`, starts the teardown workflow and answers
//! only once it has ended ([`stack_delete`]).
//!
//! `Custom::ApiarySigningKey`: on Create and Update it makes the phone-home report's
//! Ed25519 key in its secret unless one is there (a key is never replaced: the vendor
//! pinned it), and returns the public half (`PublicKey`, `KeyId`) for the stack's
//! outputs. Delete does nothing: the secret is the stack's own resource.
//!
//! `Custom::ApiaryStateTable` ([`state_table`], served by the `state-table` function):
//! makes or adopts the state table, and decides on Delete whether it goes.
//!
//! The stack never waits on provision: the resource succeeds as soon as the execution
//! has started and hands back its ARN and console link (the stack's outputs), and the
//! workflow reports its own outcome. Only a Teardown Delete waits, through the
//! stack-delete workflow. Every request gets an answer within the function's
//! timeout: all work is bounded by [`Budget`], and any failure (bad properties, an
//! invalid spec, a Step Functions error, running out of time) becomes a FAILED response
//! with the reason, rather than an hour's wait for CloudFormation's own timeout.

pub mod request;
mod response;
pub mod stack_delete;
pub mod state_table;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
#[cfg(test)]
mod tests;

use std::sync::Mutex;
use std::time::Duration;

use apiary_core::aws::Env;
use apiary_core::spec::DeploymentSpec;
use apiary_core::store::Store;
use apiary_core::{Error, ErrorName, Result};
use aws_sdk_sfn::error::SdkError;
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{Map, Value, json};

pub use request::{
    Properties, Request, RequestType, SigningKeyProperties, StateMachineArn, execution_console_url,
};

/// The `ResourceType` of the signing key resource.
pub const SIGNING_KEY_TYPE: &str = "Custom::ApiarySigningKey";
pub use response::{MAX_BODY_BYTES, Responder, Response, RetryPolicy, Status};
pub use stack_delete::{ANSWER_WITHIN, OnStackDelete, TeardownConfig};
pub use state_table::{STATE_TABLE_TYPE, StateTableConfig};

/// The function's timeout in the template (`LaunchFunction.Timeout`).
pub const LAMBDA_TIMEOUT: Duration = Duration::from_secs(60);

/// The workflows besides provision whose running executions a Delete stops: those that
/// take the deployment's lock, and those that start one (drift's repair and handle-alert
/// start provision or scale-pools). The IAM role names the same state machines.
/// In this order: first those that start others, then those that take the lock;
/// provision last, and again once the teardown has started.
pub const STOPPED_ON_DELETE: [&str; 7] = [
    "drift",
    "handle-alert",
    "backup",
    "restore-test",
    "rotate-keys",
    "scale-pools",
    "upgrade",
];

/// The PhysicalResourceId of a Create that started nothing: a Delete that names it (the
/// rollback of that Create) has nothing to stop.
pub const NOT_STARTED_PREFIX: &str = "apiary-launch-not-started-";

/// How long each part of an invocation may take. [`Budget::default`] fits
/// [`LAMBDA_TIMEOUT`] with room to spare, so the response is always sent.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// For everything before the response: parsing, validation, Step Functions calls.
    pub work: Duration,
    pub response: RetryPolicy,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            work: Duration::from_secs(30),
            response: RetryPolicy {
                attempts: 4,
                attempt_timeout: Duration::from_secs(5),
                first_backoff: Duration::from_millis(500),
            },
        }
    }
}

impl Budget {
    pub fn worst_case(&self) -> Duration {
        self.work + self.response.worst_case()
    }
}

/// Where this function's logs are, for the Reason of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLocation {
    pub group: String,
    pub stream: String,
}

impl LogLocation {
    /// From the variables the Lambda runtime sets, when both are present.
    pub fn from_env(env: &dyn Env) -> Option<LogLocation> {
        Some(LogLocation {
            group: env.var("AWS_LAMBDA_LOG_GROUP_NAME")?,
            stream: env.var("AWS_LAMBDA_LOG_STREAM_NAME")?,
        })
    }
}

pub struct Deps {
    pub sfn: aws_sdk_sfn::Client,
    /// Whether the stack is being deleted, before a teardown starts.
    pub cloudformation: aws_sdk_cloudformation::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub responder: Responder,
    pub budget: Budget,
    pub logs: Option<LogLocation>,
    /// The function's own stack (`APIARY_STACK_ID`): a Delete acts only while
    /// CloudFormation deletes it. Unset: not checked (the function outside its stack).
    pub stack_id: Option<String>,
    /// The stack's `OnStackDelete`, or why it cannot be read (answered on Delete).
    pub on_delete: std::result::Result<OnStackDelete, String>,
    /// The state table (`APIARY_TABLE`): the deployment's record, which a stack update
    /// may not contradict, and the answers held while a teardown on delete runs.
    pub store: Option<Store>,
    /// How long a Teardown Delete waits before answering whatever the teardown's state.
    pub answer_within: Duration,
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// The state table resource's settings (the `state-table` function's environment),
    /// or why they cannot be read (answered on a request for that resource).
    pub state_table: std::result::Result<StateTableConfig, String>,
}

impl Deps {
    pub fn new(config: &aws_config::SdkConfig, env: &dyn Env) -> Result<Deps> {
        Deps::with_budget(config, env, Budget::default())
    }

    pub fn with_budget(
        config: &aws_config::SdkConfig,
        env: &dyn Env,
        budget: Budget,
    ) -> Result<Deps> {
        let on_delete = OnStackDelete::from_env(env).map_err(|e| e.to_string());
        let store = match &on_delete {
            Ok(OnStackDelete::Teardown(teardown)) => Some(teardown.table.clone()),
            _ => env.var("APIARY_TABLE").filter(|t| !t.is_empty()),
        }
        .map(|table| Store::new(apiary_core::client!(aws_sdk_dynamodb, config), table));
        Ok(Deps {
            sfn: apiary_core::client!(aws_sdk_sfn, config),
            cloudformation: apiary_core::client!(aws_sdk_cloudformation, config),
            secrets: apiary_core::client!(aws_sdk_secretsmanager, config),
            responder: Responder::new(budget.response)?,
            budget,
            logs: LogLocation::from_env(env),
            stack_id: env.var("APIARY_STACK_ID").filter(|id| !id.is_empty()),
            on_delete,
            store,
            answer_within: ANSWER_WITHIN,
            dynamodb: apiary_core::client!(aws_sdk_dynamodb, config),
            state_table: StateTableConfig::from_env(env).map_err(|e| e.to_string()),
        })
    }

    /// The same, waiting `within` before a Teardown Delete answers whatever the state.
    pub fn answering_within(mut self, within: Duration) -> Deps {
        self.answer_within = within;
        self
    }

    fn details(&self) -> String {
        self.logs
            .as_ref()
            .map(|l| {
                format!(
                    " (details: CloudWatch Logs {}, stream {})",
                    l.group, l.stream
                )
            })
            .unwrap_or_default()
    }
}

/// What to tell CloudFormation.
#[derive(Debug)]
struct Outcome {
    status: Status,
    physical_id: String,
    message: String,
    data: Map<String, Value>,
    /// The answer is kept and given later by the stack-delete workflow: send nothing now.
    deferred: bool,
}

impl Outcome {
    fn success(physical_id: String, message: String) -> Outcome {
        Outcome {
            status: Status::Success,
            physical_id,
            message,
            data: Map::new(),
            deferred: false,
        }
    }

    /// `maybe_started`: the resource's id when a StartExecution was sent and its outcome
    /// is unknown (no answer, or no answer in time).
    fn failed(
        request: &Request,
        maybe_started: Option<String>,
        name: ErrorName,
        message: String,
    ) -> Outcome {
        tracing::error!(
            error_type = name.as_str(),
            error = message,
            "request failed"
        );
        // A Create has no id yet. If it surely started nothing, it gets one that its
        // rollback Delete recognises and skips; if it may have, the real one, so that the
        // Delete stops whatever may be running.
        let physical_id = request
            .physical_resource_id
            .clone()
            .or(maybe_started)
            .unwrap_or_else(|| format!("{NOT_STARTED_PREFIX}{}", request.request_id));
        Outcome {
            status: Status::Failed,
            physical_id,
            message: format!("{name}: {message}"),
            data: Map::new(),
            deferred: false,
        }
    }
}

/// The Lambda runtime loop of the functions that serve this crate's resources (`launch`
/// and `state-table`): the dependencies from the environment, then [`handle`] for each
/// event.
pub async fn serve() -> std::result::Result<(), lambda_runtime::Error> {
    apiary_core::lambda::init_tracing();
    let config = apiary_core::aws::load_from_env().await;
    let deps = std::sync::Arc::new(Deps::new(&config, &apiary_core::aws::ProcessEnv)?);
    apiary_core::lambda::serve(move |event| {
        let deps = deps.clone();
        // Boxed: the handler future is deep enough to overflow the layout query otherwise.
        async move { Box::pin(handle(&deps, event)).await }
    })
    .await
}

/// Handles one custom resource request and answers CloudFormation. Returns an error only
/// when no answer could be delivered: Lambda then retries the (asynchronous) invocation,
/// and the retry is safe because every step is idempotent.
#[tracing::instrument(
    name = "launch",
    skip_all,
    fields(request_type, logical_resource_id, request_id, stack)
)]
pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    if stack_delete::is_watch(&event) {
        return watch(deps, &event).await;
    }
    let request = Request::from_event(event)?;
    let span = tracing::Span::current();
    span.record("request_type", request.request_type.as_str());
    span.record("logical_resource_id", request.logical_resource_id.as_str());
    span.record("request_id", request.request_id.as_str());
    span.record("stack", request.stack_name());

    let in_flight = InFlight::default();
    let result = tokio::time::timeout(deps.budget.work, act(deps, &request, &in_flight)).await;
    // The state table resource's id is the table's name, also when it fails: a failed
    // Update must not look like a replacement to CloudFormation.
    let maybe_started = in_flight.take().or_else(|| {
        (request.resource_type == STATE_TABLE_TYPE)
            .then(|| deps.state_table.as_ref().ok().map(|c| c.table.clone()))
            .flatten()
    });
    let outcome = match result {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(err)) => Outcome::failed(&request, maybe_started, err.name(), err.to_string()),
        Err(_) => Outcome::failed(
            &request,
            maybe_started,
            ErrorName::Timeout,
            format!(
                "{} did not answer within {:?}{}",
                if request.resource_type == SIGNING_KEY_TYPE {
                    "Secrets Manager"
                } else {
                    "AWS"
                },
                deps.budget.work,
                // The teardown may have started before time ran out: say what a second
                // delete does rather than leave the operator to guess.
                if request.resource_type != SIGNING_KEY_TYPE
                    && request.resource_type != STATE_TABLE_TYPE
                    && request.request_type == RequestType::Delete.as_str()
                    && matches!(deps.on_delete, Ok(OnStackDelete::Teardown(_)))
                {
                    "; a teardown may have been started: see the teardown state machine's \
                     executions, and delete the stack again, which waits for a running \
                     teardown instead of starting another"
                } else {
                    ""
                }
            ),
        ),
    };

    if outcome.deferred {
        tracing::info!(
            physical_resource_id = outcome.physical_id,
            "the answer waits for the teardown"
        );
        return Ok(json!({
            "Status": "DEFERRED",
            "PhysicalResourceId": outcome.physical_id,
            "Reason": outcome.message,
        }));
    }
    let response = Response {
        status: outcome.status,
        reason: String::new(),
        physical_resource_id: outcome.physical_id.clone(),
        stack_id: request.stack_id.clone(),
        request_id: request.request_id.clone(),
        logical_resource_id: request.logical_resource_id.clone(),
        no_echo: false,
        data: outcome.data.clone(),
    };
    let body = response.body(&outcome.message, &deps.details());
    tracing::info!(
        status = outcome.status.as_str(),
        physical_resource_id = outcome.physical_id,
        host = request.response_host(),
        "answering CloudFormation"
    );
    deps.responder.send(&request.response_url, body).await?;

    let mut summary = json!({
        "Status": outcome.status.as_str(),
        "PhysicalResourceId": outcome.physical_id,
        "Reason": outcome.message,
    });
    if !outcome.data.is_empty() {
        summary["Data"] = Value::Object(outcome.data);
    }
    Ok(summary)
}

/// The resource's id while a StartExecution whose outcome is not known yet is under way.
/// Outlives the work's timeout, which drops the future mid-call.
#[derive(Default)]
struct InFlight(Mutex<Option<String>>);

impl InFlight {
    fn set(&self, id: Option<String>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = id;
        }
    }

    fn take(&self) -> Option<String> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

async fn act(deps: &Deps, request: &Request, in_flight: &InFlight) -> Result<Outcome> {
    if request.resource_type == SIGNING_KEY_TYPE {
        return signing_key(deps, request).await;
    }
    if request.resource_type == STATE_TABLE_TYPE {
        return table(deps, request).await;
    }
    match request.kind()? {
        kind @ (RequestType::Create | RequestType::Update) => {
            start(deps, request, kind, in_flight).await
        }
        RequestType::Delete => stop(deps, request).await,
    }
}

/// The signing key resource: the key in its secret (made once), its public half back.
async fn signing_key(deps: &Deps, request: &Request) -> Result<Outcome> {
    // Delete first, reading no property: the rollback of a Create refused for its
    // properties carries the same properties, and a Delete that failed on them would
    // leave the stack in ROLLBACK_FAILED.
    if request.kind()? == RequestType::Delete {
        return Ok(Outcome::success(
            request.physical_resource_id.clone().unwrap_or_default(),
            "nothing to do: the key's secret is deleted with the stack".into(),
        ));
    }
    let properties = SigningKeyProperties::parse(&request.resource_properties)?;
    let physical_id = properties.secret_arn.clone();
    // One token for every request of this resource: a redelivered Create, or two racing,
    // keep one key.
    let token = format!("{}/{}", request.stack_id, request.logical_resource_id);
    let key = report::ensure_signing_key(&deps.secrets, &properties.secret_arn, &token).await?;
    tracing::info!(key_id = key.key_id(), "report signing key in place");
    let mut outcome = Outcome::success(
        physical_id,
        format!("report signing key {} in place", key.key_id()),
    );
    outcome
        .data
        .insert("PublicKey".into(), Value::String(key.public_key()));
    outcome
        .data
        .insert("KeyId".into(), Value::String(key.key_id()));
    Ok(outcome)
}

/// The state table resource. Its physical id is the table's name, whatever happens to the
/// table: CloudFormation never sees it change, so it never replaces the resource.
async fn table(deps: &Deps, request: &Request) -> Result<Outcome> {
    let config = deps.state_table.clone().map_err(Error::invalid_input)?;
    // One deadline for all its waits, before the budget's, so that they fail with what
    // to do rather than a bare timeout.
    let deadline = tokio::time::Instant::now() + deps.budget.work.mul_f32(0.75);
    let done = state_table::act(
        &deps.dynamodb,
        &deps.cloudformation,
        &config,
        request,
        deadline,
    )
    .await?;
    let mut outcome = Outcome::success(config.table.clone(), done.message);
    if let Some(arn) = done.arn {
        outcome.data.insert("Arn".into(), Value::String(arn));
    }
    Ok(outcome)
}

/// Create and Update: validate, then start provision (or find the execution an earlier
/// delivery of this same request started).
async fn start(
    deps: &Deps,
    request: &Request,
    kind: RequestType,
    in_flight: &InFlight,
) -> Result<Outcome> {
    let properties = Properties::parse(&request.resource_properties)?;
    // The same validation as the workflow's first step: a bad spec starts nothing.
    let spec = DeploymentSpec::parse(&properties.input["spec"])?;
    // The record is the source of truth: parameters that contradict it (a field that
    // cannot change in place, or one a workflow owns and recorded) fail the stack
    // operation itself, naming the field and the workflow, so CloudFormation rolls the
    // update back instead of completing with a provision bound to fail.
    if let Some(store) = &deps.store {
        refuse_contradiction(store, &spec).await?;
    }
    let machine = &properties.state_machine;
    let name = request.execution_name(kind);
    // Queued: an update made while an earlier provision still runs waits for that run's
    // lock instead of being rejected, so the run that finishes last is the one that
    // matches the stack (also when CloudFormation rolls an update back).
    let mut input = properties.input.clone();
    input["queue"] = Value::Bool(true);
    let input = serde_json::to_string(&input)
        .map_err(|e| Error::fatal(format!("serializing the execution input: {e}")))?;
    // Stable across updates, so an Update never makes CloudFormation delete the old one.
    let physical_id = match (kind, &request.physical_resource_id) {
        (RequestType::Update, Some(existing)) => existing.clone(),
        _ => format!("apiary-{}-launch", spec.name),
    };

    in_flight.set(Some(physical_id.clone()));
    let execution_arn = match deps
        .sfn
        .start_execution()
        .state_machine_arn(&machine.arn)
        .name(&name)
        .input(input)
        .send()
        .await
    {
        Ok(started) => {
            tracing::info!(execution = started.execution_arn, "provision started");
            started.execution_arn
        }
        // Same name, and the execution has finished or its input differs: an earlier
        // delivery of this request started it.
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_execution_already_exists()) =>
        {
            let arn = machine.execution_arn(&name);
            tracing::info!(
                execution = arn,
                "provision already started for this request"
            );
            arn
        }
        Err(err) => {
            // An error answer means nothing started; no answer (or a broken one) means
            // something may have.
            if matches!(err, SdkError::ServiceError(_)) {
                in_flight.set(None);
            }
            return Err(Error::aws(format!("StartExecution {}", machine.arn), err));
        }
    };

    let console_url = execution_console_url(&machine.region, &execution_arn);
    let mut outcome = Outcome::success(
        physical_id,
        format!("started provision execution {execution_arn}; follow it at {console_url}"),
    );
    outcome
        .data
        .insert("ExecutionArn".into(), Value::String(execution_arn));
    outcome
        .data
        .insert("ExecutionConsoleUrl".into(), Value::String(console_url));
    Ok(outcome)
}

/// The lock step's own check ([`apiary_core::spec::check_change`], with the pools
/// scale-pools recorded carried over), made before anything starts.
async fn refuse_contradiction(store: &Store, spec: &DeploymentSpec) -> Result<()> {
    let Some(record) = store.get_deployment(&spec.name).await? else {
        return Ok(());
    };
    if record.status == apiary_core::store::DeploymentStatus::Deleted {
        return Ok(());
    }
    let mut spec = spec.clone();
    apiary_core::spec::pools::carry_over(&record.spec.cluster.pools, &mut spec.cluster.pools);
    apiary_core::spec::check_change(&record.spec, &spec)?;
    Ok(())
}

/// Delete: stop what is still running; then, with `OnStackDelete=Teardown`, start the
/// teardown and leave the answer to the stack-delete workflow.
async fn stop(deps: &Deps, request: &Request) -> Result<Outcome> {
    let physical_id = request.physical_resource_id.clone().unwrap_or_default();
    if physical_id.is_empty() || physical_id.starts_with(NOT_STARTED_PREFIX) {
        return Ok(Outcome::success(
            physical_id,
            "nothing to stop: the Create of this resource started no execution".into(),
        ));
    }
    // Read before anything changes: a bad setting, or a Delete that does not come from
    // this stack's deletion when it would tear down, fails with nothing stopped.
    let on_delete = deps.on_delete.clone().map_err(Error::invalid_input)?;
    let stack_id = match &on_delete {
        OnStackDelete::Teardown(teardown) => Some(teardown.stack_id.as_str()),
        OnStackDelete::Retain => deps.stack_id.as_deref(),
    };
    if let Some(stack_id) = stack_id {
        stack_delete::check_stack_is_deleting(&deps.cloudformation, stack_id, request).await?;
    }
    let properties = Properties::parse(&request.resource_properties)?;
    let machine = &properties.state_machine;
    let cause = format!(
        "the bootstrap stack {} is being deleted; this execution's functions are deleted with it",
        request.stack_name()
    );
    let named = properties.input["spec"]["DeploymentName"]
        .as_str()
        .or_else(|| properties.input["spec"]["name"].as_str());
    // Provision, and every other workflow of the stack that changes the deployment or
    // starts one: their state machines go with the stack, and a run left holding the lock
    // would keep the teardown waiting. The teardown and stack-delete workflows are not
    // touched.
    let mut stopped = Vec::new();
    if let Some(deployment) = named {
        for workflow in STOPPED_ON_DELETE {
            let sibling = machine.workflow(deployment, workflow);
            stopped.extend(stop_running(deps, &sibling, &cause).await?);
        }
    }
    stopped.extend(stop_running(deps, machine, &cause).await?);
    let deployment = named.unwrap_or("this deployment");
    let what_ran = if stopped.is_empty() {
        "no workflow execution was running".to_owned()
    } else {
        format!(
            "stopped {} running workflow execution{}: {}",
            stopped.len(),
            if stopped.len() == 1 { "" } else { "s" },
            stopped.join(", ")
        )
    };
    let teardown = match on_delete {
        OnStackDelete::Retain => {
            return Ok(Outcome::success(
                physical_id,
                format!(
                    "{what_ran}. OnStackDelete is Retain: the data plane's resources (tagged \
                     apiary:deployment={deployment}) and the retained state table and key \
                     were left in place; start the teardown workflow to remove them"
                ),
            ));
        }
        OnStackDelete::Teardown(teardown) => teardown,
    };
    let store = deps
        .store
        .as_ref()
        .ok_or_else(|| Error::fatal("OnStackDelete is Teardown but no state table is set"))?;
    match stack_delete::begin(
        &deps.sfn,
        store,
        &teardown,
        request,
        &physical_id,
        chrono::Utc::now(),
        deps.answer_within,
    )
    .await?
    {
        stack_delete::Begun::Nothing(why) => Ok(Outcome::success(
            physical_id,
            format!("{what_ran}. OnStackDelete is Teardown, and {why}"),
        )),
        stack_delete::Begun::Deferred { execution } => {
            // A provision started between the stops above and the teardown's start (the
            // certificate rule cannot be stopped) would take the lock first and keep
            // the teardown waiting past the answer's deadline: stop it too. Best effort:
            // one that gets the lock later is refused by its own Lock step.
            if let Err(err) = stop_running(deps, machine, &cause).await {
                tracing::warn!(error = %err, "could not stop a provision started meanwhile");
            }
            let mut outcome = Outcome::success(
                physical_id,
                format!(
                    "{what_ran}; the stack delete waits for teardown {execution} (at {})",
                    execution_console_url(&teardown.teardown.region, &execution)
                ),
            );
            outcome.deferred = true;
            Ok(outcome)
        }
    }
}

/// The stack-delete workflow's question: has the teardown ended? If so (or if the
/// deadline has passed), answer CloudFormation and forget the answer. Returns `{"done",
/// "status"}`; an answer that could not be delivered is tried again at the next poll.
async fn watch(deps: &Deps, event: &Value) -> Result<Value> {
    let teardown = match deps.on_delete.clone().map_err(Error::invalid_input)? {
        OnStackDelete::Teardown(teardown) => teardown,
        OnStackDelete::Retain => {
            return Err(Error::invalid_input(format!(
                "{} arrived but OnStackDelete is Retain: nothing waits for a teardown",
                stack_delete::WATCH_KEY
            )));
        }
    };
    let store = deps
        .store
        .as_ref()
        .ok_or_else(|| Error::fatal("OnStackDelete is Teardown but no state table is set"))?;
    let verdict =
        stack_delete::look(&deps.sfn, store, &teardown, event, chrono::Utc::now()).await?;
    let (held, success, mut message) = match verdict {
        stack_delete::Verdict::AlreadyAnswered => {
            return Ok(json!({"done": true, "status": "ANSWERED"}));
        }
        stack_delete::Verdict::Waiting { execution } => {
            tracing::info!(execution, "teardown still running");
            return Ok(json!({"done": false, "status": "RUNNING"}));
        }
        stack_delete::Verdict::Answer {
            held,
            success,
            message,
        } => (held, success, message),
    };
    if success {
        // A provision queued behind the teardown (started by a drift repair or the
        // certificate rule after the Delete stopped the others) would take the lock now
        // and build again: stop it before the stack goes.
        // Best effort: the answer matters more, and such a provision's own Lock step
        // refuses a deployment torn down after it started.
        let provision = teardown
            .teardown
            .workflow(&teardown.deployment, "provision");
        let cause = format!(
            "deployment {} was torn down with its stack; a provision queued behind the \
             teardown would re-create it",
            teardown.deployment
        );
        match stop_running(deps, &provision, &cause).await {
            Ok(stopped) if !stopped.is_empty() => message.push_str(&format!(
                "; stopped {} provision execution(s) queued behind it: {}",
                stopped.len(),
                stopped.join(", ")
            )),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "could not stop queued provisions"),
        }
    }
    let status = if success {
        Status::Success
    } else {
        Status::Failed
    };
    let response = Response {
        status,
        reason: String::new(),
        physical_resource_id: held.physical_resource_id.clone(),
        stack_id: held.stack_id.clone(),
        request_id: held.request_id.clone(),
        logical_resource_id: held.logical_resource_id.clone(),
        no_echo: false,
        data: Map::new(),
    };
    let body = response.body(&message, &deps.details());
    tracing::info!(
        status = status.as_str(),
        execution = held.execution_arn,
        reason = message,
        "answering CloudFormation for the stack delete"
    );
    if let Err(err) = deps.responder.send(&held.response_url, body).await {
        tracing::warn!(error = %err, "the answer was not delivered; trying again at the next poll");
        return Ok(json!({"done": false, "status": "UNDELIVERED"}));
    }
    store
        .release_answer(&teardown.deployment, &held.request_id)
        .await?;
    Ok(json!({"done": true, "status": status.as_str()}))
}

/// Stops every RUNNING execution of `machine`; returns their ARNs. A state machine that
/// is already gone has nothing running.
async fn stop_running(deps: &Deps, machine: &StateMachineArn, cause: &str) -> Result<Vec<String>> {
    let mut running = Vec::new();
    let mut token = None;
    loop {
        let page = match apiary_core::aws::answer_or_none(
            format!("ListExecutions {}", machine.arn),
            deps.sfn
                .list_executions()
                .state_machine_arn(&machine.arn)
                .status_filter(ExecutionStatus::Running)
                .set_next_token(token)
                .send(),
            |e| e.is_state_machine_does_not_exist(),
        )
        .await?
        {
            Some(page) => page,
            None => {
                tracing::info!(state_machine = machine.arn, "state machine already gone");
                return Ok(Vec::new());
            }
        };
        running.extend(
            page.executions()
                .iter()
                .map(|e| e.execution_arn().to_owned()),
        );
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    let mut stopped = Vec::new();
    for arn in running {
        // None: it finished and expired between the listing and now.
        if apiary_core::aws::answer_or_none(
            format!("StopExecution {arn}"),
            deps.sfn
                .stop_execution()
                .execution_arn(&arn)
                .cause(cause)
                .send(),
            |e| e.is_execution_does_not_exist(),
        )
        .await?
        .is_some()
        {
            tracing::info!(execution = arn, "execution stopped");
            stopped.push(arn);
        }
    }
    Ok(stopped)
}
