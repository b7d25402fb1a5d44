use std::sync::Arc;

use apiary_core::store::Store;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    apiary_core::lambda::init_tracing();
    let config = apiary_core::aws::load_from_env().await;
    let deps = Arc::new(drift::Deps::new(
        &config,
        Arc::new(Store::from_env(&config)),
    ));
    apiary_core::lambda::serve(move |event| {
        let deps = deps.clone();
        async move { drift::handle(&deps, event).await }
    })
    .await
}
