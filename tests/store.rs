//! The DynamoDB store against the emulator: records, journal, inventory and the lock.

use apiary_core::ErrorName;
use apiary_core::spec::DeploymentSpec;
use apiary_core::store::{DeploymentStatus, JournalEntry, Resource, Store};
use apiary_e2e::{sdk_config, unique_name};
use chrono::{Duration, Utc};

async fn store() -> Store {
    let config = sdk_config().await;
    let store = Store::new(aws_sdk_dynamodb::Client::new(&config), "apiary-test-store");
    store.ensure_table().await.expect("table");
    store
}

fn spec(name: &str) -> DeploymentSpec {
    DeploymentSpec::parse(&serde_json::json!({"name": name, "dns": {"domain": "hh.example.com"}}))
        .expect("valid")
}

#[tokio::test]
async fn ensure_table_is_idempotent() {
    let store = store().await;
    store
        .ensure_table()
        .await
        .expect("second ensure is a no-op");
}

#[tokio::test]
async fn deployment_record_keeps_creation_time() {
    let store = store().await;
    let name = unique_name("record");
    assert_eq!(store.get_deployment(&name).await.unwrap(), None);
    let t0 = Utc::now();
    store
        .put_deployment(&spec(&name), DeploymentStatus::Provisioning, t0)
        .await
        .unwrap();
    let t1 = t0 + Duration::seconds(5);
    store
        .put_deployment(&spec(&name), DeploymentStatus::Provisioning, t1)
        .await
        .unwrap();
    store
        .set_status(&name, DeploymentStatus::Ready, t1)
        .await
        .unwrap();
    let record = store.get_deployment(&name).await.unwrap().expect("record");
    assert_eq!(record.status, DeploymentStatus::Ready);
    assert_eq!(record.spec, spec(&name));
    assert_eq!(record.created_at.timestamp_micros(), t0.timestamp_micros());
    assert_eq!(record.updated_at.timestamp_micros(), t1.timestamp_micros());

    let missing = store
        .set_status(&unique_name("none"), DeploymentStatus::Ready, t1)
        .await;
    assert_eq!(missing.unwrap_err().name(), ErrorName::InvalidInput);
}

#[tokio::test]
async fn journal_is_append_only_and_ordered() {
    let store = store().await;
    let name = unique_name("journal");
    let start = Utc::now();
    for (i, step) in ["keys", "network", "keys"].iter().enumerate() {
        let entry = JournalEntry {
            deployment: name.clone(),
            execution_id: "exec-1".into(),
            step: (*step).into(),
            action: "ensure".into(),
            outcome: "succeeded".into(),
            resource_ids: vec![format!("id-{i}")],
            detail: None,
            at: start + Duration::milliseconds(i as i64),
        };
        store.append_journal(&entry).await.unwrap();
    }
    let journal = store.journal(&name).await.unwrap();
    let steps: Vec<_> = journal.iter().map(|e| e.step.as_str()).collect();
    assert_eq!(
        steps,
        ["keys", "network", "keys"],
        "both keys entries kept, in order"
    );
    assert_eq!(journal[1].resource_ids, ["id-1"]);
    assert!(
        store
            .journal(&unique_name("other"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn inventory_records_each_resource_once() {
    let store = store().await;
    let name = unique_name("inventory");
    let vpc = Resource {
        layer: "network".into(),
        kind: "ec2:vpc".into(),
        id: "vpc-123".into(),
        arn: None,
    };
    let key = Resource {
        layer: "keys".into(),
        kind: "kms:key".into(),
        id: "k-1".into(),
        arn: Some("arn:aws:kms:us-west-2:123456789012:key/k-1".into()),
    };
    store.record_resource(&name, &vpc).await.unwrap();
    store.record_resource(&name, &vpc).await.unwrap();
    store.record_resource(&name, &key).await.unwrap();
    let mut inventory = store.inventory(&name).await.unwrap();
    inventory.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(inventory, vec![key.clone(), vpc.clone()]);
    store.forget_resource(&name, &vpc).await.unwrap();
    store.forget_resource(&name, &vpc).await.unwrap();
    assert_eq!(store.inventory(&name).await.unwrap(), vec![key]);
}

#[tokio::test]
async fn lock_excludes_other_owners_until_it_expires() {
    let store = store().await;
    let name = unique_name("lock");
    let now = Utc::now();
    let lease = Duration::minutes(15);

    let lock = store
        .acquire_lock(&name, "exec-a", lease, now)
        .await
        .expect("free lock");
    assert_eq!(lock.owner, "exec-a");

    let refused = store
        .acquire_lock(&name, "exec-b", lease, now)
        .await
        .unwrap_err();
    assert_eq!(refused.name(), ErrorName::Conflict);
    assert!(
        refused.to_string().contains("locked by exec-a"),
        "{refused}"
    );

    // The owner may renew.
    store
        .acquire_lock(&name, "exec-a", lease, now + Duration::minutes(1))
        .await
        .unwrap();

    // A non-owner may not release it.
    let release = store.release_lock(&name, "exec-b").await.unwrap_err();
    assert_eq!(release.name(), ErrorName::Conflict);
    assert!(release.to_string().contains("held by exec-a"), "{release}");

    // Once the lease has run out, another owner takes it over.
    let later = now + Duration::minutes(17);
    let taken = store
        .acquire_lock(&name, "exec-b", lease, later)
        .await
        .expect("expired lease");
    assert_eq!(taken.owner, "exec-b");
    assert_eq!(
        store.current_lock(&name).await.unwrap().unwrap().owner,
        "exec-b"
    );

    store.release_lock(&name, "exec-b").await.unwrap();
    assert_eq!(store.current_lock(&name).await.unwrap(), None);
    store
        .release_lock(&name, "exec-b")
        .await
        .expect("releasing a free lock is a no-op");
    store
        .acquire_lock(&name, "exec-c", lease, later)
        .await
        .expect("free again");
}

#[tokio::test]
async fn a_lock_is_handed_over_only_by_its_holder() {
    let store = store().await;
    let name = unique_name("transfer");
    let now = Utc::now();
    let lease = Duration::minutes(15);
    store
        .acquire_lock(&name, "exec-a", lease, now)
        .await
        .unwrap();

    let refused = store
        .transfer_lock(&name, "exec-b", "exec-c", lease, now)
        .await
        .expect_err("exec-b does not hold it");
    assert_eq!(refused.name().as_str(), "Apiary.Conflict");
    assert_eq!(
        store.current_lock(&name).await.unwrap().unwrap().owner,
        "exec-a"
    );

    let moved = store
        .transfer_lock(&name, "exec-a", "exec-c", lease, now)
        .await
        .expect("the holder hands it over");
    assert_eq!(moved.owner, "exec-c");
    assert_eq!(
        store.current_lock(&name).await.unwrap().unwrap().owner,
        "exec-c"
    );

    store.release_lock(&name, "exec-c").await.unwrap();
    let free = store
        .transfer_lock(&name, "exec-c", "exec-d", lease, now)
        .await;
    assert!(
        free.is_err(),
        "a free lock is not handed over: it is acquired"
    );
}

#[tokio::test]
async fn an_event_is_claimed_once_and_its_claim_expires_after_the_redelivery_window() {
    use apiary_core::store::{Claim, EVENT_CLAIM_DAYS, TTL_ATTRIBUTE};
    let store = store().await;
    let name = unique_name("claim");
    let at = Utc::now();
    let claim = |execution: &'static str| {
        let store = store.clone();
        let name = name.clone();
        async move {
            store
                .claim_event(&name, "event-1", execution, "low storage", at)
                .await
                .unwrap()
        }
    };
    assert_eq!(claim("run-a").await, Claim::First);
    // The same execution's retried step still holds it.
    assert_eq!(claim("run-a").await, Claim::Again);
    // A redelivery starts another execution: it finds the event taken, and by whom.
    assert_eq!(
        claim("run-b").await,
        Claim::Duplicate {
            by: "run-a".to_owned(),
            done: false
        }
    );
    // run-a ended without finishing: run-b takes the claim over, once.
    assert!(
        store
            .take_over_event(&name, "event-1", "run-a", "run-b")
            .await
            .unwrap()
    );
    assert!(
        !store
            .take_over_event(&name, "event-1", "run-a", "run-c")
            .await
            .unwrap()
    );
    store.finish_event(&name, "event-1", at).await.unwrap();
    assert_eq!(
        claim("run-c").await,
        Claim::Duplicate {
            by: "run-b".to_owned(),
            done: true
        }
    );
    // A finished event is never taken over.
    assert!(
        !store
            .take_over_event(&name, "event-1", "run-b", "run-c")
            .await
            .unwrap()
    );
    let config = sdk_config().await;
    let item = aws_sdk_dynamodb::Client::new(&config)
        .get_item()
        .table_name("apiary-test-store")
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("DEPLOYMENT#{name}")),
        )
        .key(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("EVENT#event-1".to_owned()),
        )
        .send()
        .await
        .unwrap()
        .item
        .expect("the claim");
    let expires: i64 = item[TTL_ATTRIBUTE].as_n().unwrap().parse().unwrap();
    assert_eq!(expires, (at + Duration::days(EVENT_CLAIM_DAYS)).timestamp());
}
