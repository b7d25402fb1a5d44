use std::sync::Arc;

use apiary_core::aws::ProcessEnv;
use apiary_core::store::Store;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    apiary_core::lambda::init_tracing();
    let config = apiary_core::aws::load_from_env().await;
    let store = Store::from_env(&config);
    let deps = Arc::new(
        teardown::Deps::new(&config, Arc::new(store))
            .with_in_vpc_functions(teardown::in_vpc_functions(&ProcessEnv)),
    );
    apiary_core::lambda::serve(move |event| {
        let deps = deps.clone();
        async move { teardown::handle(&deps, event).await }
    })
    .await
}
