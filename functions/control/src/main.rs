use std::sync::Arc;

use apiary_core::store::Store;
use control::{Deps, StepFunctionsRuns};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    apiary_core::lambda::init_tracing();
    let config = apiary_core::aws::load_from_env().await;
    let mut runs = StepFunctionsRuns::new(&config);
    if let Ok(arn) = std::env::var(control::PROVISION_STATE_MACHINE_ENV) {
        runs = runs.with_provision(arn);
    }
    let mut deps = Deps::new(Store::from_env(&config), Arc::new(runs));
    if let Ok(deployment) = std::env::var(control::DEPLOYMENT_ENV) {
        deps = deps.with_deployment(deployment);
    }
    if let Ok(topic_arn) = std::env::var(control::ALERT_TOPIC_ENV) {
        deps = deps.with_notifier(control::Notifier {
            sns: apiary_core::client!(aws_sdk_sns, &config),
            topic_arn,
        });
    }
    let deps = Arc::new(deps);
    apiary_core::lambda::serve(move |event| {
        let deps = deps.clone();
        async move { control::handle(&deps, event).await }
    })
    .await
}
