//! Errors: definition problems found at load time, and the errors a running state raises.

use std::fmt;

/// One problem in a state machine definition, located by a JSON pointer (RFC 6901).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    /// JSON pointer of the faulty value, e.g. `/States/Fetch/Next`.
    pub pointer: String,
    /// What is wrong, in words a person can act on.
    pub message: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() {
            "/"
        } else {
            &self.pointer
        };
        write!(f, "{at}: {}", self.message)
    }
}

/// Every problem found in a definition, in the order they were found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<ValidationError>);

impl ValidationErrors {
    /// The problems, one per entry.
    pub fn errors(&self) -> &[ValidationError] {
        &self.0
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

/// Escapes one JSON pointer reference token (RFC 6901).
pub fn pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// The predefined error names of the Amazon States Language.
pub mod names {
    /// Wildcard matching every error except the terminal ones.
    pub const ALL: &str = "States.ALL";
    /// A Task failed; as a matcher, every error but `States.Timeout`.
    pub const TASK_FAILED: &str = "States.TaskFailed";
    /// Task, state machine or Wait ran longer than allowed.
    pub const TIMEOUT: &str = "States.Timeout";
    /// A task did not heartbeat in time.
    pub const HEARTBEAT_TIMEOUT: &str = "States.HeartbeatTimeout";
    /// Runtime problems (paths, types): never retried nor caught.
    pub const RUNTIME: &str = "States.Runtime";
    /// A payload exceeded 256 KiB: not caught by `States.ALL`.
    pub const DATA_LIMIT_EXCEEDED: &str = "States.DataLimitExceeded";
    /// A Choice state matched no rule (the spec's name; AWS reports `States.Runtime`).
    pub const NO_CHOICE_MATCHED: &str = "States.NoChoiceMatched";
    /// A Parallel branch failed.
    pub const BRANCH_FAILED: &str = "States.BranchFailed";
    /// An intrinsic function failed.
    pub const INTRINSIC_FAILURE: &str = "States.IntrinsicFailure";
    /// A `.$` field's path matched nothing.
    pub const PARAMETER_PATH_FAILURE: &str = "States.ParameterPathFailure";
    /// ResultPath could not be applied to the input.
    pub const RESULT_PATH_MATCH_FAILURE: &str = "States.ResultPathMatchFailure";
    /// Too many Map iterations failed.
    pub const EXCEED_TOLERATED_FAILURE_THRESHOLD: &str = "States.ExceedToleratedFailureThreshold";
    /// Insufficient privileges.
    pub const PERMISSIONS: &str = "States.Permissions";
}

/// An error raised while a state runs: the Step Functions error name and its cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatesError {
    /// The error name, e.g. `States.Runtime` or `Apiary.Retryable`.
    pub error: String,
    /// The human readable cause, if any.
    pub cause: Option<String>,
}

impl StatesError {
    /// An error with a cause.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            cause: Some(cause.into()),
        }
    }

    /// A `States.Runtime` error.
    pub fn runtime(cause: impl Into<String>) -> Self {
        Self::new(names::RUNTIME, cause)
    }

    /// Errors that no Retry or Catch handles.
    pub fn is_uncatchable_runtime(&self) -> bool {
        self.error == names::RUNTIME
    }

    /// The JSON error output a Catch passes on: `{"Error": ..., "Cause": ...}`.
    pub fn to_error_output(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert("Error".into(), self.error.clone().into());
        if let Some(cause) = &self.cause {
            map.insert("Cause".into(), cause.clone().into());
        }
        serde_json::Value::Object(map)
    }
}

impl fmt::Display for StatesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "{}: {cause}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

impl std::error::Error for StatesError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_tokens_are_escaped() {
        assert_eq!(pointer_token("a/b~c"), "a~1b~0c");
    }

    #[test]
    fn error_output_omits_missing_cause() {
        let e = StatesError {
            error: "X".into(),
            cause: None,
        };
        assert_eq!(e.to_error_output(), serde_json::json!({"Error": "X"}));
        let e = StatesError::new("X", "why");
        assert_eq!(
            e.to_error_output(),
            serde_json::json!({"Error": "X", "Cause": "why"})
        );
    }

    #[test]
    fn validation_errors_display_each_pointer() {
        let errs = ValidationErrors(vec![ValidationError {
            pointer: "/States/A/Next".into(),
            message: "names no state".into(),
        }]);
        assert_eq!(errs.to_string(), "/States/A/Next: names no state");
    }
}
