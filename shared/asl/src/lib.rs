//! An embedded Amazon States Language engine: loads and validates state machine
//! definitions (JSONPath query language) and runs them in process, with Lambda tasks
//! dispatched to registered Rust handlers, a virtual clock and AWS-shaped history.
//!
//! ```no_run
//! # async fn demo() {
//! use std::collections::HashMap;
//! use apiary_asl::{ExecutionOptions, HandlerRegistry, StateMachine};
//!
//! let machine = StateMachine::load(r#"{"StartAt":"A","States":{"A":{"Type":"Pass","End":true}}}"#, &HashMap::new()).unwrap();
//! let mut handlers = HandlerRegistry::new();
//! handlers.register_fn("keys", |input| async move { Ok(input) });
//! let result = machine
//!     .execute(serde_json::json!({}), ExecutionOptions { handlers, ..Default::default() })
//!     .await;
//! println!("{}", result.describe());
//! # }
//! ```

pub mod choice;
pub mod clock;
pub mod definition;
pub mod error;
mod executor;
pub mod handler;
pub mod history;
pub mod intrinsics;
mod json;
pub mod jsonpath;
pub mod path;
pub mod template;
pub mod timestamp;

pub use clock::Clock;
pub use definition::{StateMachine, placeholders, validate};
pub use error::{StatesError, ValidationError, ValidationErrors};
pub use executor::{
    ExecutionOptions, ExecutionResult, ExecutionStatus, MAX_PAYLOAD_BYTES, execution_arn,
    state_machine_arn,
};
pub use handler::{
    HandlerRegistry, TaskContext, TaskError, TaskHandler, TaskTokens, TokenError, function_name,
    handler_fn,
};
pub use history::{EventListener, HistoryEvent};
