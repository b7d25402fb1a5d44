//! The Lambda functions the workflows call, and the one Retry policy every Task carries.

use apiary_core::ErrorName;
use serde_json::{Value, json};

/// A Lambda function a Task state invokes. The placeholder `${<Name>FunctionArn}` is
/// filled in by the template's `DefinitionSubstitutions` (and by the local runner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Control,
    Keys,
    Network,
    Dns,
    Storage,
    Databases,
    Cluster,
    Workloads,
    Teardown,
    Operate,
    Verifier,
    Backup,
    Report,
    Drift,
    /// The bootstrap stack's custom resources; the stack-delete workflow asks it to answer.
    Launch,
}

impl Function {
    pub const ALL: [Function; 15] = [
        Function::Control,
        Function::Keys,
        Function::Network,
        Function::Dns,
        Function::Storage,
        Function::Databases,
        Function::Cluster,
        Function::Workloads,
        Function::Teardown,
        Function::Operate,
        Function::Verifier,
        Function::Backup,
        Function::Report,
        Function::Drift,
        Function::Launch,
    ];

    /// The crate, binary and function name: `functions/<name>`.
    pub const fn name(self) -> &'static str {
        match self {
            Function::Control => "control",
            Function::Keys => "keys",
            Function::Network => "network",
            Function::Dns => "dns",
            Function::Storage => "storage",
            Function::Databases => "databases",
            Function::Cluster => "cluster",
            Function::Workloads => "workloads",
            Function::Verifier => "verifier",
            Function::Backup => "backup",
            Function::Teardown => "teardown",
            Function::Operate => "operate",
            Function::Report => "report",
            Function::Drift => "drift",
            Function::Launch => "launch",
        }
    }

    /// The substitution name, without `${}`: `KeysFunctionArn` (the one rule, in
    /// `apiary_core::aws`, that the local runner and the tests read back).
    pub fn placeholder_name(self) -> String {
        apiary_core::aws::placeholder_for_function(self.name())
    }

    /// The Task `Resource`: `${KeysFunctionArn}`.
    pub fn resource(self) -> String {
        format!("${{{}}}", self.placeholder_name())
    }

    /// The function's own Lambda `Timeout` in infra-bootstrap/bootstrap.yaml (a test keeps
    /// the two equal). Every Task that calls it gets this `TimeoutSeconds`, so an attempt
    /// never outlives the function and the budget can bound each attempt.
    pub const fn timeout_seconds(self) -> u64 {
        match self {
            Function::Control => 30,
            Function::Keys | Function::Dns | Function::Storage | Function::Teardown => 120,
            Function::Network | Function::Databases | Function::Cluster => 300,
            Function::Workloads => 600,
            // A secret read, one connection (at most 10 s to connect) and a few queries.
            Function::Verifier => 60,
            // A few calls per store; listing a store's snapshots (and their tags) in two
            // regions at worst.
            Function::Backup => 120,
            Function::Operate => 120,
            // report::LAMBDA_TIMEOUT: the table reads, then POSTs within its send window.
            Function::Report => 60,
            // Read-only describes of every recorded resource, one call each.
            Function::Drift => 120,
            // launch::LAMBDA_TIMEOUT: a few Step Functions and table calls, one answer.
            Function::Launch => 60,
        }
    }
}

/// Transient failures: retried with backoff. `Apiary.NotReady` is a dependency that exists
/// but is not ready yet; Lambda's service errors are the invoke itself failing.
/// The last two are a function attached to a VPC (the workloads function) that is not
/// ready to run yet: its network interface is still being made, or the function went
/// inactive after weeks unused and Lambda is re-creating it; Lambda says to try again.
pub const TRANSIENT: [&str; 8] = [
    ErrorName::Retryable.as_str(),
    ErrorName::NotReady.as_str(),
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ResourceNotReadyException",
    "Lambda.ENINotReadyException",
];

/// Retries of a transient failure: 5, 10, 20, 40 s before FULL jitter (at most 75 s).
pub const TRANSIENT_ATTEMPTS: u64 = 4;
pub const TRANSIENT_INTERVAL_SECONDS: u64 = 5;
pub const TRANSIENT_MAX_DELAY_SECONDS: u64 = 60;

/// Retries of a Task stopped by its `TimeoutSeconds` (see [`retry_policy`]).
pub const TIMEOUT_ATTEMPTS: u64 = 1;

/// Why a timed-out Task is run again, once: shown on the retrier in the console.
pub const TIMEOUT_RETRY_COMMENT: &str = "Timed out: run once more. Every step is idempotent, so a second attempt is safe and finishes what a slow call left; a second timeout fails the step";

/// The one Retry policy of every Task.
///
/// - Transient failures ([`TRANSIENT`]) are retried 4 times, 5 s doubling, each wait at most
///   60 s, FULL jitter (so that runs that failed together do not retry together).
/// - `States.Timeout` (the Task's `TimeoutSeconds`, equal to the function's own Lambda
///   timeout, ran out) is retried once: see [`TIMEOUT_RETRY_COMMENT`].
/// - Nothing else is retried: `Apiary.InvalidSpec`, `InvalidInput`, `Conflict`, `Fatal`
///   and a crashed function (`Lambda.Unknown`) cannot succeed by running again, so they
///   fail fast into the workflow's Catch.
pub fn retry_policy() -> Value {
    json!([
        {
            "ErrorEquals": TRANSIENT,
            "IntervalSeconds": TRANSIENT_INTERVAL_SECONDS,
            "MaxAttempts": TRANSIENT_ATTEMPTS,
            "BackoffRate": 2.0,
            "MaxDelaySeconds": TRANSIENT_MAX_DELAY_SECONDS,
            "JitterStrategy": "FULL"
        },
        {
            "Comment": TIMEOUT_RETRY_COMMENT,
            "ErrorEquals": ["States.Timeout"],
            "IntervalSeconds": 5,
            "MaxAttempts": TIMEOUT_ATTEMPTS
        }
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_in_vpc_function_that_is_not_ready_yet_is_retried() {
        let transient = &retry_policy()[0]["ErrorEquals"];
        for error in [
            "Lambda.ResourceNotReadyException",
            "Lambda.ENINotReadyException",
        ] {
            assert!(
                transient.as_array().unwrap().iter().any(|e| e == error),
                "{error}"
            );
        }
    }

    #[test]
    fn placeholders_name_the_function_crates() {
        assert_eq!(Function::Control.resource(), "${ControlFunctionArn}");
        assert_eq!(
            Function::Databases.placeholder_name(),
            "DatabasesFunctionArn"
        );
    }
}
