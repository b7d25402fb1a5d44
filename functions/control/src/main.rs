use std::sync::Arc;

use apiary_core::store::Store;
use control::{Deps, StepFunctionsRuns};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    apiary_core::lambda::init_tracing();
    let config = apiary_core::aws::load_from_env().await;
    let runs = Arc::new(StepFunctionsRuns::new(&config));
    let deps = Arc::new(Deps::new(Store::from_env(&config), runs));
    apiary_core::lambda::serve(move |event| {
        let deps = deps.clone();
        async move { control::handle(&deps, event).await }
    })
    .await
}
