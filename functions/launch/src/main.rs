use std::sync::Arc;

use apiary_core::aws::ProcessEnv;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    apiary_core::lambda::init_tracing();
    let config = apiary_core::aws::load_from_env().await;
    let deps = Arc::new(launch::Deps::new(&config, &ProcessEnv)?);
    apiary_core::lambda::serve(move |event| {
        let deps = deps.clone();
        // Boxed: the handler future is deep enough to overflow the layout query otherwise.
        async move { Box::pin(launch::handle(&deps, event)).await }
    })
    .await
}
