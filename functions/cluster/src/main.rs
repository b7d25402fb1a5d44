use std::sync::Arc;

use apiary_core::store::Store;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    apiary_core::lambda::init_tracing();
    let config = apiary_core::aws::load_from_env().await;
    let store = Store::from_env(&config);
    // The roles that apply Kubernetes objects (the bootstrap stack names the workloads
    // function's role), comma-separated.
    let admins = std::env::var("APIARY_KUBERNETES_ADMIN_ROLE_ARNS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|arn| !arn.is_empty())
        .map(str::to_owned)
        .collect();
    let deps = Arc::new(
        cluster::Deps::new(&config, Arc::new(store))
            .with_kubernetes_admins(admins)
            .with_log_key(std::env::var("APIARY_STATE_KEY_ARN").ok())
            .with_log_shipper(std::env::var("APIARY_LOG_SHIPPER_ROLE_ARN").ok()),
    );
    apiary_core::lambda::serve(move |event| {
        let deps = deps.clone();
        async move { cluster::handle(&deps, event).await }
    })
    .await
}
