//! Running a state machine: the execution, its options and its result.

mod dataflow;
mod parallel;
mod state;
mod task;
mod wait;

use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Map, Value, json};

use crate::clock::Clock;
use crate::definition::StateMachine;
use crate::error::{StatesError, names};
use crate::handler::{HandlerRegistry, TaskTokens};
use crate::history::{Cursor, EventListener, History, HistoryEvent, not_truncated};
use crate::intrinsics::RandomSource;
use crate::path::Scope;

/// AWS's quota on a state's input or output: 256 KiB of JSON text.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// How to run one execution.
#[derive(Clone)]
pub struct ExecutionOptions {
    /// The execution's name; a UUID (from the seed, if any) when absent.
    pub execution_name: Option<String>,
    /// The state machine's name, part of the ARNs.
    pub state_machine_name: String,
    pub region: String,
    pub account: String,
    /// The role ARN in the context object; a conventional one when absent.
    pub role_arn: Option<String>,
    /// Seed for everything random: jitter, MathRandom, UUID, names and task tokens.
    pub seed: Option<u64>,
    pub clock: Clock,
    pub handlers: HandlerRegistry,
    /// Called for every history event as it is appended.
    pub listener: Option<EventListener>,
    /// Where SendTaskSuccess / Failure / Heartbeat are delivered.
    pub task_tokens: TaskTokens,
}

impl Default for ExecutionOptions {
    fn default() -> Self {
        Self {
            execution_name: None,
            state_machine_name: "StateMachine".into(),
            region: "us-east-1".into(),
            account: "123456789012".into(),
            role_arn: None,
            seed: None,
            clock: Clock::virtual_now(),
            handlers: HandlerRegistry::new(),
            listener: None,
            task_tokens: TaskTokens::new(),
        }
    }
}

impl std::fmt::Debug for ExecutionOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionOptions")
            .field("execution_name", &self.execution_name)
            .field("state_machine_name", &self.state_machine_name)
            .field("region", &self.region)
            .field("account", &self.account)
            .field("seed", &self.seed)
            .field("clock", &self.clock)
            .field("handlers", &self.handlers)
            .finish_non_exhaustive()
    }
}

/// Final status, as DescribeExecution names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionStatus {
    Succeeded,
    Failed,
    TimedOut,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::TimedOut => "TIMED_OUT",
        }
    }
}

/// What an execution ended with.
#[derive(Debug, Clone)]
pub struct ExecutionResult {
    pub status: ExecutionStatus,
    pub output: Option<Value>,
    pub error: Option<String>,
    pub cause: Option<String>,
    pub name: String,
    pub execution_arn: String,
    pub state_machine_arn: String,
    pub input: Value,
    pub start_date: DateTime<Utc>,
    pub stop_date: DateTime<Utc>,
    pub history: Vec<HistoryEvent>,
}

impl ExecutionResult {
    /// The result in DescribeExecution's shape (`input` and `output` as JSON text).
    pub fn describe(&self) -> Value {
        let mut map = Map::new();
        map.insert("executionArn".into(), json!(self.execution_arn));
        map.insert("stateMachineArn".into(), json!(self.state_machine_arn));
        map.insert("name".into(), json!(self.name));
        map.insert("status".into(), json!(self.status.as_str()));
        map.insert(
            "startDate".into(),
            json!(crate::timestamp::format(self.start_date)),
        );
        map.insert(
            "stopDate".into(),
            json!(crate::timestamp::format(self.stop_date)),
        );
        map.insert("input".into(), json!(crate::json::compact(&self.input)));
        map.insert("inputDetails".into(), json!({"included": true}));
        if let Some(output) = &self.output {
            map.insert("output".into(), json!(crate::json::compact(output)));
            map.insert("outputDetails".into(), json!({"included": true}));
        }
        if let Some(error) = &self.error {
            map.insert("error".into(), json!(error));
        }
        if let Some(cause) = &self.cause {
            map.insert("cause".into(), json!(cause));
        }
        map.insert("redriveCount".into(), json!(0));
        Value::Object(map)
    }

    /// The history in GetExecutionHistory's shape: `{"events": [...]}`.
    pub fn history_json(&self) -> Value {
        json!({"events": self.history.iter().map(HistoryEvent::to_json).collect::<Vec<_>>()})
    }
}

/// `arn:aws:states:REGION:ACCOUNT:stateMachine:NAME`
pub fn state_machine_arn(region: &str, account: &str, name: &str) -> String {
    format!("arn:aws:states:{region}:{account}:stateMachine:{name}")
}

/// `arn:aws:states:REGION:ACCOUNT:execution:STATE_MACHINE:EXECUTION`
pub fn execution_arn(region: &str, account: &str, state_machine: &str, execution: &str) -> String {
    format!("arn:aws:states:{region}:{account}:execution:{state_machine}:{execution}")
}

/// The execution-wide random source.
pub(crate) struct SharedRng(Mutex<StdRng>);

impl RandomSource for SharedRng {
    fn next_u64(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random()
    }
}

impl SharedRng {
    fn new(seed: Option<u64>) -> Self {
        Self(Mutex::new(match seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        }))
    }

    /// A uniform number in `[0, 1)`.
    pub(crate) fn unit(&self) -> f64 {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random()
    }

    pub(crate) fn uuid(&self) -> String {
        let bytes = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
        uuid::Builder::from_random_bytes(bytes.to_be_bytes())
            .into_uuid()
            .to_string()
    }
}

/// Everything the branches of one execution share.
pub(crate) struct Shared {
    pub clock: Clock,
    pub history: History,
    pub handlers: HandlerRegistry,
    pub tokens: TaskTokens,
    pub rng: SharedRng,
    pub region: String,
    pub account: String,
    pub execution_arn: String,
    /// `$$.Execution` and `$$.StateMachine`.
    pub context_execution: Arc<Value>,
    pub context_state_machine: Arc<Value>,
}

impl Shared {
    /// Appends an event after the cursor; when `advance`, the cursor moves to it.
    pub fn emit(
        &self,
        cursor: &mut Cursor,
        event_type: &str,
        details: Option<(&'static str, Value)>,
        advance: bool,
    ) -> u64 {
        let id = self
            .history
            .append(self.clock.now(), cursor.last, event_type, details);
        if advance {
            cursor.last = id;
        }
        id
    }
}

/// A failure on its way up, with the last event of the branch it happened in.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub error: StatesError,
    pub last: u64,
}

impl StateMachine {
    /// Runs one execution to its end.
    pub async fn execute(&self, input: Value, options: ExecutionOptions) -> ExecutionResult {
        let rng = SharedRng::new(options.seed);
        let name = options.execution_name.clone().unwrap_or_else(|| rng.uuid());
        let sm_arn = state_machine_arn(
            &options.region,
            &options.account,
            &options.state_machine_name,
        );
        let exec_arn = execution_arn(
            &options.region,
            &options.account,
            &options.state_machine_name,
            &name,
        );
        let role_arn = options.role_arn.clone().unwrap_or_else(|| {
            format!(
                "arn:aws:iam::{}:role/service-role/StepFunctions-{}-role",
                options.account, options.state_machine_name
            )
        });
        let clock = options.clock.clone();
        let start = clock.now();
        let shared = Arc::new(Shared {
            clock: clock.clone(),
            history: History::new(options.listener.clone()),
            handlers: options.handlers.clone(),
            tokens: options.task_tokens.clone(),
            rng,
            region: options.region.clone(),
            account: options.account.clone(),
            execution_arn: exec_arn.clone(),
            context_execution: Arc::new(json!({
                "Id": exec_arn,
                "Input": input,
                "StartTime": crate::timestamp::format(start),
                "Name": name,
                "RoleArn": role_arn,
                "RedriveCount": 0,
            })),
            context_state_machine: Arc::new(
                json!({"Id": sm_arn, "Name": options.state_machine_name}),
            ),
        });

        let mut cursor = Cursor::default();
        shared.emit(
            &mut cursor,
            "ExecutionStarted",
            Some((
                "executionStartedEventDetails",
                json!({
                    "input": crate::json::compact(&input),
                    "inputDetails": not_truncated(),
                    "roleArn": role_arn,
                }),
            )),
            false,
        );

        let outcome = if crate::json::size(&input) > MAX_PAYLOAD_BYTES {
            Outcome::Failed(StatesError::new(
                names::DATA_LIMIT_EXCEEDED,
                "The execution input exceeds the maximum number of bytes service limit.",
            ))
        } else {
            self.drive(&shared, input.clone()).await
        };

        let (status, output, error) = match outcome {
            Outcome::Succeeded(output) => {
                // The execution's last event follows the latest event of any branch.
                let mut at = Cursor {
                    last: shared.history.len() as u64,
                };
                shared.emit(
                    &mut at,
                    "ExecutionSucceeded",
                    Some((
                        "executionSucceededEventDetails",
                        json!({"output": crate::json::compact(&output), "outputDetails": not_truncated()}),
                    )),
                    true,
                );
                (ExecutionStatus::Succeeded, Some(output), None)
            }
            Outcome::Failed(error) => {
                let mut at = Cursor {
                    last: shared.history.len() as u64,
                };
                shared.emit(
                    &mut at,
                    "ExecutionFailed",
                    Some(("executionFailedEventDetails", error_details(&error))),
                    true,
                );
                (ExecutionStatus::Failed, None, Some(error))
            }
            Outcome::TimedOut => {
                // As recorded on AWS: DescribeExecution reports TIMED_OUT with neither
                // error nor cause, and the ExecutionTimedOut event carries no details.
                let mut at = Cursor {
                    last: shared.history.len() as u64,
                };
                shared.emit(
                    &mut at,
                    "ExecutionTimedOut",
                    Some(("executionTimedOutEventDetails", json!({}))),
                    true,
                );
                (ExecutionStatus::TimedOut, None, None)
            }
        };
        ExecutionResult {
            status,
            output,
            error: error
                .as_ref()
                .map(|e| e.error.clone())
                .filter(|e| !e.is_empty()),
            cause: error.and_then(|e| e.cause),
            name,
            execution_arn: exec_arn,
            state_machine_arn: sm_arn,
            input,
            start_date: start,
            stop_date: clock.now(),
            history: shared.history.snapshot(),
        }
    }

    async fn drive(&self, shared: &Arc<Shared>, input: Value) -> Outcome {
        let clock = shared.clock.clone();
        let _main = clock.activate();
        let thread = state::Thread {
            scope: Scope::root(),
            cursor: Cursor::default(),
            map_item: None,
            in_branch: false,
        };
        let run = state::run_graph(Arc::clone(shared), Arc::clone(&self.root), input, thread);
        let finished = match self.timeout_seconds {
            Some(seconds) => {
                let at = shared.clock.now()
                    + chrono::Duration::seconds(
                        i64::try_from(seconds).unwrap_or(i64::MAX / 1_000_000),
                    );
                clock.deadline(at, run).await
            }
            None => Some(run.await),
        };
        match finished {
            None => Outcome::TimedOut,
            Some(Ok((output, _))) => {
                if crate::json::size(&output) > MAX_PAYLOAD_BYTES {
                    return Outcome::Failed(StatesError::new(
                        names::DATA_LIMIT_EXCEEDED,
                        "The state machine returned an output with a size exceeding the maximum number of bytes service limit.",
                    ));
                }
                Outcome::Succeeded(output)
            }
            Some(Err(failure)) => Outcome::Failed(failure.error),
        }
    }
}

enum Outcome {
    Succeeded(Value),
    Failed(StatesError),
    TimedOut,
}

/// `{"error": ..., "cause": ...}` with only the fields that are set.
pub(crate) fn error_details(error: &StatesError) -> Value {
    let mut map = Map::new();
    if !error.error.is_empty() {
        map.insert("error".into(), json!(error.error));
    }
    if let Some(cause) = &error.cause {
        map.insert("cause".into(), json!(cause));
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests;
