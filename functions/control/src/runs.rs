//! Who holds a deployment's lock, and whether that run is still going: what lets the
//! lock step take over the lock of a run that died without releasing it, and never the
//! lock of one that is alive.
//!
//! The owner is the execution ARN on AWS ([`StepFunctionsRuns`]) and
//! `local:<host>:<pid>:<start time>:<execution name>` locally ([`LocalRuns`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use apiary_core::{Error, Result};
use async_trait::async_trait;
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::Value;

/// How the lock names its holder and tells whether the holder still runs.
#[async_trait]
pub trait Runs: Send + Sync {
    /// The lock owner for the run of `execution_id` (what the Task state sends as
    /// `execution_id`: the execution ARN).
    fn owner(&self, execution_id: &str) -> String;

    /// Whether the run that holds a lock as `owner` is still running. `true` when it
    /// cannot be told: such a lock is freed only by its lease running out.
    async fn is_running(&self, owner: &str) -> Result<bool>;

    /// The input an execution was started with, for an end-of-run event that left it out
    /// (`None`: not known here).
    async fn input(&self, _execution_arn: &str) -> Result<Option<Value>> {
        Ok(None)
    }

    /// Starts this stack's `workflow` (`provision`, `scale-pools`) with `input` as
    /// execution `name` and returns its ARN; a second start of the same name is the same
    /// execution. `None`: runs cannot be started from here (locally, the runner starts
    /// them).
    async fn start(&self, _workflow: &str, _name: &str, _input: &Value) -> Result<Option<String>> {
        Ok(None)
    }
}

/// Whether `owner` is a Step Functions execution ARN
/// (`arn:<partition>:states:<region>:<account>:execution:<state machine>:<name>`).
pub fn is_execution_arn(owner: &str) -> bool {
    let parts: Vec<&str> = owner.split(':').collect();
    parts.len() == 8 && parts[0] == "arn" && parts[2] == "states" && parts[5] == "execution"
}

/// The execution's name: the last part of its ARN (the whole text when it has no `:`).
pub fn execution_name(execution_arn: &str) -> &str {
    execution_arn.rsplit(':').next().unwrap_or(execution_arn)
}

/// On AWS: the owner is the execution ARN, and Step Functions says whether it runs.
pub struct StepFunctionsRuns {
    sfn: aws_sdk_sfn::Client,
    /// The stack's provision state machine (`APIARY_PROVISION_STATE_MACHINE_ARN`).
    provision: Option<String>,
}

/// The environment variable naming the provision state machine's ARN.
pub const PROVISION_STATE_MACHINE_ENV: &str = "APIARY_PROVISION_STATE_MACHINE_ARN";

impl StepFunctionsRuns {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        StepFunctionsRuns::with_client(apiary_core::client!(aws_sdk_sfn, config))
    }

    pub fn with_client(sfn: aws_sdk_sfn::Client) -> Self {
        StepFunctionsRuns {
            sfn,
            provision: None,
        }
    }

    /// The ARN prefix of this stack's executions (`arn:...:execution:apiary-<name>-`),
    /// from the provision state machine's ARN; `None` when it is not known.
    fn family(&self) -> Option<String> {
        let (head, name) = self.provision.as_deref()?.rsplit_once(":stateMachine:")?;
        let prefix = name.strip_suffix("provision")?;
        Some(format!("{head}:execution:{prefix}"))
    }

    /// The provision state machine this function may start.
    pub fn with_provision(mut self, state_machine_arn: impl Into<String>) -> Self {
        self.provision = Some(state_machine_arn.into());
        self
    }

    async fn describe(
        &self,
        execution_arn: &str,
    ) -> Result<Option<aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput>> {
        apiary_core::aws::answer_or_none(
            format!("DescribeExecution {execution_arn}"),
            self.sfn
                .describe_execution()
                .execution_arn(execution_arn)
                .send(),
            |e| e.is_execution_does_not_exist(),
        )
        .await
    }
}

#[async_trait]
impl Runs for StepFunctionsRuns {
    fn owner(&self, execution_id: &str) -> String {
        execution_id.to_owned()
    }

    async fn is_running(&self, owner: &str) -> Result<bool> {
        // A manual or test owner: nothing to ask, so only its lease frees the lock.
        if !is_execution_arn(owner) {
            return Ok(true);
        }
        // An execution of a state machine that is not this stack's: its answer (or
        // "does not exist" from another account or region) proves nothing about the
        // lock, so only its lease frees it.
        if let Some(family) = self.family()
            && !owner.starts_with(&family)
        {
            tracing::warn!(
                owner,
                family,
                "the lock's holder is not an execution of this stack: left to its lease"
            );
            return Ok(true);
        }
        let described = self
            .sfn
            .describe_execution()
            .execution_arn(owner)
            .send()
            .await;
        let execution = match described {
            Ok(execution) => execution,
            // Gone from the history (executions are kept 90 days): long over.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_execution_does_not_exist()) =>
            {
                return Ok(false);
            }
            // Not ours to ask: never taken for "not running".
            Err(e)
                if e.as_service_error()
                    .and_then(aws_sdk_sfn::error::ProvideErrorMetadata::code)
                    == Some("AccessDeniedException") =>
            {
                tracing::warn!(
                    owner,
                    "DescribeExecution of the lock's holder is denied: left to its lease"
                );
                return Ok(true);
            }
            Err(e) => return Err(Error::aws(format!("DescribeExecution {owner}"), e)),
        };
        // PENDING_REDRIVE resumes where it failed, still holding its lock.
        Ok(matches!(
            execution.status(),
            ExecutionStatus::Running | ExecutionStatus::PendingRedrive
        ))
    }

    async fn start(&self, workflow: &str, name: &str, input: &Value) -> Result<Option<String>> {
        // Every state machine of the stack is named as provision's, with its workflow.
        let Some(state_machine) = self.provision.as_deref().and_then(|arn| {
            let head = arn.strip_suffix("provision")?;
            Some(format!("{head}{workflow}"))
        }) else {
            return Ok(None);
        };
        let state_machine = &state_machine;
        let started = self
            .sfn
            .start_execution()
            .state_machine_arn(state_machine)
            .name(name)
            .input(input.to_string())
            .send()
            .await;
        match started {
            Ok(out) => Ok(Some(out.execution_arn)),
            // The same event delivered again, after its execution ended: already done.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_execution_already_exists()) =>
            {
                let arn = state_machine.replacen(":stateMachine:", ":execution:", 1);
                Ok(Some(format!("{arn}:{name}")))
            }
            Err(err) => Err(Error::aws(
                format!("StartExecution {state_machine} {name}"),
                err,
            )),
        }
    }

    async fn input(&self, execution_arn: &str) -> Result<Option<Value>> {
        let Some(execution) = self.describe(execution_arn).await? else {
            return Ok(None);
        };
        execution
            .input()
            .map(|text| {
                serde_json::from_str(text).map_err(|e| {
                    Error::fatal(format!("the input of {execution_arn} is not JSON: {e}"))
                })
            })
            .transpose()
    }
}

/// The executions of this process's local runner that are still going, by name: one set
/// per process, as the owner names the process.
static LIVE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Locally: the owner names this machine, this process (pid and start time, so that a
/// reused pid is not mistaken for it) and the execution. A lock of this host whose
/// process is gone is free; one of this process is held while its execution is among
/// those the local runner has [`started`](LocalRuns::started) and not yet
/// [`finished`](LocalRuns::finished).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRuns {
    host: String,
    pid: u32,
    start: String,
}

impl Default for LocalRuns {
    fn default() -> Self {
        LocalRuns::new()
    }
}

impl LocalRuns {
    /// This process, on this host.
    pub fn new() -> Self {
        let pid = std::process::id();
        LocalRuns {
            host: hostname(),
            pid,
            start: start_time(pid).unwrap_or_else(|| "0".to_owned()),
        }
    }

    /// The host name owners of this machine carry.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The local runner calls this before it runs `execution_arn`'s first state. The
    /// executions are this process's, shared by every `LocalRuns` in it.
    pub fn started(&self, execution_arn: &str) {
        live().insert(execution_name(execution_arn).to_owned());
    }

    /// The local runner calls this once `execution_arn` has ended, however it ended.
    pub fn finished(&self, execution_arn: &str) {
        live().remove(execution_name(execution_arn));
    }
}

fn live() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    LIVE.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A local owner's parts.
struct LocalOwner<'a> {
    host: &'a str,
    pid: u32,
    start: &'a str,
    execution: &'a str,
}

fn parse_local(owner: &str) -> Option<LocalOwner<'_>> {
    let mut parts = owner.strip_prefix("local:")?.splitn(4, ':');
    let host = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?;
    let execution = parts.next()?;
    Some(LocalOwner {
        host,
        pid,
        start,
        execution,
    })
}

#[async_trait]
impl Runs for LocalRuns {
    fn owner(&self, execution_id: &str) -> String {
        format!(
            "local:{}:{}:{}:{}",
            self.host,
            self.pid,
            self.start,
            execution_name(execution_id)
        )
    }

    async fn is_running(&self, owner: &str) -> Result<bool> {
        let Some(holder) = parse_local(owner) else {
            // An execution ARN or a manual owner: nothing here can tell.
            return Ok(true);
        };
        if holder.host != self.host {
            return Ok(true);
        }
        if holder.pid == self.pid && holder.start == self.start {
            return Ok(live().contains(holder.execution));
        }
        Ok(process_alive(holder.pid, holder.start))
    }
}

/// The host name: the kernel's, else `/etc/hostname`, else `localhost`.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.trim().to_owned())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
        // A `:` would split the owner wrongly; host names have none, but be sure.
        .replace(':', "-")
}

/// When process `pid` started, in clock ticks after boot: field 22 of
/// `/proc/<pid>/stat`. `None` when there is no such process (or no `/proc`).
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_start_time(&stat)
}

/// Field 22 of a `/proc/<pid>/stat` line. Field 2 is the command in parentheses and may
/// hold spaces and parentheses itself: count from the last `)`, after which field 3 comes.
fn stat_start_time(stat: &str) -> Option<String> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(22 - 3).map(str::to_owned)
}

/// Whether process `pid`, started at `start`, still runs on this host.
fn process_alive(pid: u32, start: &str) -> bool {
    if Path::new("/proc/self/stat").exists() {
        return start_time(pid).as_deref() == Some(start);
    }
    // No /proc (macOS): whether the pid exists at all, which a reused pid fools.
    std::process::Command::new("ps")
        .args(["-p", &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[cfg(test)]
mod tests;
