use std::sync::Arc;

use apiary_core::store::Store;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    apiary_core::lambda::init_tracing();
    let config = apiary_core::aws::load_from_env().await;
    let store = Store::from_env(&config);
    let mut deps = databases::Deps::new(&config, Arc::new(store));
    if let Ok(topic) = std::env::var("APIARY_ALERT_TOPIC_ARN") {
        deps = deps.with_alert_topic(topic);
    }
    let deps = Arc::new(deps);
    apiary_core::lambda::serve(move |event| {
        let deps = deps.clone();
        async move { databases::handle(&deps, event).await }
    })
    .await
}
