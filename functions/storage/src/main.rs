use std::sync::Arc;

use apiary_core::store::Store;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    apiary_core::lambda::init_tracing();
    let config = apiary_core::aws::load_from_env().await;
    let store = Store::from_env(&config);
    // An organisation trail's ARN (the stack parameter), or empty for the deployment's
    // own trail.
    let trail =
        storage::TrailChoice::from_parameter(std::env::var("APIARY_ORGANIZATION_TRAIL_ARN").ok());
    let deps = Arc::new(storage::Deps::new(&config, Arc::new(store)).with_trail(trail));
    apiary_core::lambda::serve(move |event| {
        let deps = deps.clone();
        async move { storage::handle(&deps, event).await }
    })
    .await
}
