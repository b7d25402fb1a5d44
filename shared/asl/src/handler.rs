//! Task handlers: the in-process stand-ins for Lambda functions (and any other
//! resource), registered by name, and the task-token callbacks of `.waitForTaskToken`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::mpsc;

/// A failed task: `error` becomes the Step Functions error name (a Lambda's
/// `errorType`, e.g. `Apiary.Retryable`), `cause` its cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {cause}")]
pub struct TaskError {
    pub error: String,
    pub cause: String,
}

impl TaskError {
    /// An error name and cause, used verbatim.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            cause: cause.into(),
        }
    }

    /// The error as Step Functions reports a failed Lambda function: the cause is the
    /// function's error payload, `{"errorType": ..., "errorMessage": ...}`.
    pub fn lambda(error_type: impl Into<String>, error_message: impl Into<String>) -> Self {
        let error = error_type.into();
        let payload = serde_json::json!({"errorType": error, "errorMessage": error_message.into()});
        Self {
            cause: crate::json::compact(&payload),
            error,
        }
    }
}

/// What a handler knows about the call it serves.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// The Task state's name.
    pub state_name: String,
    pub execution_arn: String,
    /// The resource the state names (e.g. the Lambda ARN).
    pub resource: String,
    /// The task token, for `.waitForTaskToken` integrations.
    pub task_token: Option<String>,
    /// Where a handler sends SendTaskSuccess / Failure / Heartbeat.
    pub tokens: TaskTokens,
}

/// An in-process function a Task state calls.
#[async_trait]
pub trait TaskHandler: Send + Sync {
    /// Runs the function with its input (the Lambda event).
    async fn invoke(&self, input: Value) -> Result<Value, TaskError>;

    /// Runs the function with its context; the default ignores the context.
    async fn invoke_with_context(
        &self,
        input: Value,
        _context: &TaskContext,
    ) -> Result<Value, TaskError> {
        self.invoke(input).await
    }
}

type BoxedFuture = Pin<Box<dyn Future<Output = Result<Value, TaskError>> + Send>>;

/// A handler made from an async closure.
pub struct FnHandler<F>(F);

#[async_trait]
impl<F> TaskHandler for FnHandler<F>
where
    F: Fn(Value) -> BoxedFuture + Send + Sync,
{
    async fn invoke(&self, input: Value) -> Result<Value, TaskError> {
        (self.0)(input).await
    }
}

/// Wraps an async closure as a handler.
pub fn handler_fn<F, Fut>(f: F) -> Arc<dyn TaskHandler>
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, TaskError>> + Send + 'static,
{
    Arc::new(FnHandler(move |input| -> BoxedFuture {
        Box::pin(f(input))
    }))
}

/// Handlers by function name (or, for other integrations, by resource ARN).
#[derive(Clone, Default)]
pub struct HandlerRegistry {
    handlers: HashMap<String, Arc<dyn TaskHandler>>,
}

impl std::fmt::Debug for HandlerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.handlers.keys().collect();
        names.sort();
        f.debug_struct("HandlerRegistry")
            .field("names", &names)
            .finish()
    }
}

impl HandlerRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a handler under a function name (`keys`), or under a full resource
    /// ARN for non-Lambda integrations.
    pub fn register(
        &mut self,
        name: impl Into<String>,
        handler: Arc<dyn TaskHandler>,
    ) -> &mut Self {
        self.handlers.insert(name.into(), handler);
        self
    }

    /// Registers an async closure.
    pub fn register_fn<F, Fut>(&mut self, name: impl Into<String>, f: F) -> &mut Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, TaskError>> + Send + 'static,
    {
        self.register(name, handler_fn(f))
    }

    /// The handler registered under this exact key.
    pub fn get(&self, name: &str) -> Option<Arc<dyn TaskHandler>> {
        self.handlers.get(name).cloned()
    }

    /// The registered names.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.handlers.keys().cloned().collect();
        names.sort();
        names
    }
}

/// The function name in a name, a full ARN or a partial ARN, without any qualifier:
/// `arn:aws:lambda:us-east-1:123456789012:function:keys:live`, `123456789012:function:keys`
/// and `keys:live` all give `keys`.
pub fn function_name(reference: &str) -> String {
    let parts: Vec<&str> = reference.split(':').collect();
    match parts.iter().position(|p| *p == "function") {
        Some(i) if i + 1 < parts.len() => parts[i + 1].to_string(),
        _ => parts[0].to_string(),
    }
}

/// A message to a task waiting for its token.
#[derive(Debug)]
pub(crate) enum TokenMessage {
    Success(Value),
    Failure { error: String, cause: String },
    Heartbeat,
}

/// Why a task-token call was refused (the names of the AWS API errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("TaskDoesNotExist: no task is waiting for this token")]
    TaskDoesNotExist,
    #[error("InvalidOutput: the output is not valid JSON")]
    InvalidOutput,
}

/// Task tokens of running `.waitForTaskToken` tasks: SendTaskSuccess, SendTaskFailure
/// and SendTaskHeartbeat, in process. Clones share the same tokens.
#[derive(Clone, Default)]
pub struct TaskTokens {
    waiting: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<TokenMessage>>>>,
}

impl std::fmt::Debug for TaskTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskTokens({} waiting)", self.pending().len())
    }
}

impl TaskTokens {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn open(&self, token: &str) -> mpsc::UnboundedReceiver<TokenMessage> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().insert(token.to_string(), tx);
        rx
    }

    pub(crate) fn close(&self, token: &str) {
        self.lock().remove(token);
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<TokenMessage>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tokens of the tasks waiting now.
    pub fn pending(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn send(&self, token: &str, message: TokenMessage, close: bool) -> Result<(), TokenError> {
        let mut waiting = self.lock();
        let sender = waiting.get(token).ok_or(TokenError::TaskDoesNotExist)?;
        sender
            .send(message)
            .map_err(|_| TokenError::TaskDoesNotExist)?;
        if close {
            waiting.remove(token);
        }
        Ok(())
    }

    /// SendTaskSuccess: the task succeeds with `output`.
    pub fn send_success(&self, token: &str, output: Value) -> Result<(), TokenError> {
        self.send(token, TokenMessage::Success(output), true)
    }

    /// SendTaskSuccess with JSON text.
    pub fn send_success_json(&self, token: &str, output: &str) -> Result<(), TokenError> {
        let value = serde_json::from_str(output).map_err(|_| TokenError::InvalidOutput)?;
        self.send_success(token, value)
    }

    /// SendTaskFailure: the task fails with this error and cause.
    pub fn send_failure(&self, token: &str, error: &str, cause: &str) -> Result<(), TokenError> {
        let message = TokenMessage::Failure {
            error: error.to_string(),
            cause: cause.to_string(),
        };
        self.send(token, message, true)
    }

    /// SendTaskHeartbeat: the task is still alive.
    pub fn send_heartbeat(&self, token: &str) -> Result<(), TokenError> {
        self.send(token, TokenMessage::Heartbeat, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn function_names_come_out_of_arns() {
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:keys"),
            "keys"
        );
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:keys:live"),
            "keys"
        );
        assert_eq!(function_name("123456789012:function:keys"), "keys");
        assert_eq!(function_name("keys:7"), "keys");
        assert_eq!(function_name("keys"), "keys");
    }

    #[test]
    fn lambda_errors_carry_the_error_payload_as_cause() {
        let e = TaskError::lambda("Apiary.Retryable", "throttled");
        assert_eq!(e.error, "Apiary.Retryable");
        assert_eq!(
            e.cause,
            r#"{"errorType":"Apiary.Retryable","errorMessage":"throttled"}"#
        );
    }

    #[tokio::test]
    async fn registry_dispatches_to_closures() {
        let mut registry = HandlerRegistry::new();
        registry.register_fn("echo", |input| async move { Ok(json!({"echo": input})) });
        let handler = registry.get("echo").unwrap();
        assert_eq!(handler.invoke(json!(1)).await.unwrap(), json!({"echo": 1}));
        assert!(registry.get("other").is_none());
        assert_eq!(registry.names(), ["echo"]);
    }

    #[tokio::test]
    async fn tokens_deliver_messages_once() {
        let tokens = TaskTokens::new();
        let mut rx = tokens.open("t1");
        tokens.send_heartbeat("t1").unwrap();
        tokens.send_success("t1", json!({"ok": true})).unwrap();
        assert!(matches!(rx.recv().await, Some(TokenMessage::Heartbeat)));
        assert!(matches!(rx.recv().await, Some(TokenMessage::Success(_))));
        assert_eq!(
            tokens.send_success("t1", json!(1)),
            Err(TokenError::TaskDoesNotExist)
        );
        assert_eq!(
            tokens.send_failure("nope", "E", "C"),
            Err(TokenError::TaskDoesNotExist)
        );
    }
}
