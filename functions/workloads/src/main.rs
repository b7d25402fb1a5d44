use std::sync::Arc;

use apiary_core::aws::{Env, ProcessEnv};
use apiary_core::store::{DEFAULT_TABLE, Store};
use workloads::{Deps, KubeAccess};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    apiary_core::lambda::init_tracing();
    let config = apiary_core::aws::load_from_env().await;
    let table = ProcessEnv
        .var("APIARY_TABLE")
        .unwrap_or_else(|| DEFAULT_TABLE.to_owned());
    let store = Store::new(apiary_core::client!(aws_sdk_dynamodb, &config), table);
    let mut deps = Deps::new(&config, Arc::new(store), KubeAccess::Eks);
    if let Some(boundary) = ProcessEnv.var(workloads::PERMISSIONS_BOUNDARY_ENV) {
        deps = deps.with_permissions_boundary(boundary);
    }
    let set = |name: &str| ProcessEnv.var(name).filter(|v| !v.is_empty());
    deps.twingate_role = set(workloads::TWINGATE_ROLE_ENV);
    deps.metrics_role = set(workloads::METRICS_ROLE_ENV);
    deps.alert_router_role = set(workloads::ALERT_ROUTER_ROLE_ENV);
    deps.alert_topic = set(workloads::ALERT_TOPIC_ENV);
    let deps = Arc::new(deps);
    apiary_core::lambda::serve(move |event| {
        let deps = deps.clone();
        async move { workloads::handle(&deps, event).await }
    })
    .await
}
