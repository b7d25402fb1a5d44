use std::sync::Arc;

use apiary_core::aws::ProcessEnv;
use apiary_core::store::Store;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    apiary_core::lambda::init_tracing();
    let config = apiary_core::aws::load_from_env().await;
    let store = Store::from_env(&config);
    let ca_bundle = verifier::Deps::ca_bundle_from_env(&ProcessEnv);
    let deps = Arc::new(verifier::Deps::new(&config, Arc::new(store), ca_bundle));
    apiary_core::lambda::serve(move |event| {
        let deps = deps.clone();
        async move { verifier::handle(&deps, event).await }
    })
    .await
}
