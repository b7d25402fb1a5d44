//! The control steps (validate, lock, ready, fail, unlock) against the emulator.

use apiary_core::ErrorName;
use apiary_core::store::{DeploymentStatus, Store};
use apiary_e2e::{sdk_config, unique_name};
use serde_json::{Value, json};

async fn deps() -> deployment::Deps {
    let config = sdk_config().await;
    let store = Store::new(
        aws_sdk_dynamodb::Client::new(&config),
        "apiary-test-deployment",
    );
    store.ensure_table().await.unwrap();
    deployment::Deps::new(store)
}

fn event(action: &str, name: &str, execution: &str) -> Value {
    json!({
        "action": action,
        "workflow": "provision",
        "execution_id": execution,
        "spec": {"name": name, "dns": {"domain": "hh.example.com"}},
    })
}

#[tokio::test]
async fn validate_fills_defaults_and_rejects_every_problem() {
    let deps = deps().await;
    let name = unique_name("validate");
    let spec = deployment::handle(&deps, event("validate", &name, "e1"))
        .await
        .unwrap();
    assert_eq!(spec["network"]["az_count"], json!(3));
    assert!(
        spec["network"]["vpc_cidr"]
            .as_str()
            .unwrap()
            .ends_with("/16")
    );
    let bad = json!({"action": "validate", "spec": {"name": "", "size": "huge"}});
    let err = deployment::handle(&deps, bad).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidSpec);
    let text = err.to_string();
    assert!(
        text.contains("name: is required") && text.contains("size:") && text.contains("dns.domain"),
        "{text}"
    );
    assert_eq!(
        deps.store.get_deployment(&name).await.unwrap(),
        None,
        "validation writes nothing"
    );
}

#[tokio::test]
async fn lock_ready_fail_and_unlock_follow_the_owner() {
    let deps = deps().await;
    let name = unique_name("control");
    deployment::handle(&deps, event("lock", &name, "exec-1"))
        .await
        .expect("lock");
    let record = deps.store.get_deployment(&name).await.unwrap().unwrap();
    assert_eq!(record.status, DeploymentStatus::Provisioning);
    deployment::handle(&deps, event("lock", &name, "exec-1"))
        .await
        .expect("same owner renews");

    let conflict = deployment::handle(&deps, event("lock", &name, "exec-2"))
        .await
        .unwrap_err();
    assert_eq!(conflict.name(), ErrorName::Conflict);
    let stolen = deployment::handle(&deps, event("unlock", &name, "exec-2"))
        .await
        .unwrap_err();
    assert_eq!(stolen.name(), ErrorName::Conflict);

    let mut fail = event("fail", &name, "exec-1");
    fail["failure"] = json!({"Error": "Apiary.Fatal", "Cause": "CreateVpc failed"});
    deployment::handle(&deps, fail).await.unwrap();
    assert_eq!(
        deps.store
            .get_deployment(&name)
            .await
            .unwrap()
            .unwrap()
            .status,
        DeploymentStatus::Failed
    );
    let journal = deps.store.journal(&name).await.unwrap();
    let failed = journal
        .iter()
        .find(|e| e.outcome == "failed")
        .expect("failure journaled");
    assert_eq!(
        failed.detail.as_deref(),
        Some("Apiary.Fatal: CreateVpc failed")
    );

    deployment::handle(&deps, event("unlock", &name, "exec-1"))
        .await
        .unwrap();
    deployment::handle(&deps, event("lock", &name, "exec-2"))
        .await
        .expect("free after unlock");
    deployment::handle(&deps, event("ready", &name, "exec-2"))
        .await
        .unwrap();
    assert_eq!(
        deps.store
            .get_deployment(&name)
            .await
            .unwrap()
            .unwrap()
            .status,
        DeploymentStatus::Ready
    );

    let unknown = deployment::handle(&deps, event("explode", &name, "exec-2"))
        .await
        .unwrap_err();
    assert_eq!(unknown.name(), ErrorName::InvalidInput);
}
