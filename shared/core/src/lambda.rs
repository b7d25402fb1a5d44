//! What every function's `main` shares: JSON logs and the runtime loop.

use std::future::Future;

use lambda_runtime::{LambdaEvent, service_fn};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;

/// JSON logs to stdout (CloudWatch), level from `RUST_LOG` (default `info`).
/// Never log a secret: handlers log ids and names, not payloads.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_target(false)
        .without_time() // CloudWatch stamps every line
        .init();
}

/// Runs `handler` for every invocation until the runtime stops.
pub async fn serve<In, Out, F, Fut>(handler: F) -> Result<(), lambda_runtime::Error>
where
    In: DeserializeOwned + Send + 'static,
    Out: Serialize + Send + 'static,
    F: Fn(In) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Out, Error>> + Send + 'static,
{
    let handler = std::sync::Arc::new(handler);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<In>| {
        let handler = handler.clone();
        // Every log line of the invocation carries Lambda's request id.
        let span = tracing::info_span!("invocation", request_id = %event.context.request_id);
        tracing::Instrument::instrument(async move { handler(event.payload).await }, span)
    }))
    .await
}
