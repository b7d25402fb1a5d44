use std::sync::Arc;

use apiary_core::aws::ProcessEnv;
use apiary_core::store::Store;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    apiary_core::lambda::init_tracing();
    let config = apiary_core::aws::load_from_env().await;
    // The Lambda trusts the system's roots only: no extra CA is ever read here.
    let sender = Arc::new(report::HttpsSender::new(None)?);
    let deps = Arc::new(report::Deps::from_env(
        Store::from_env(&config),
        &config,
        &ProcessEnv,
        sender,
    ));
    apiary_core::lambda::serve(move |event| {
        let deps = deps.clone();
        async move { report::handle(&deps, event).await }
    })
    .await
}
