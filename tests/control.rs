//! The control steps (validate, lock, ready, fail, unlock) and the cleanup after a run
//! that ended without its own unlock, against the emulator, with the local runs' owners
//! (`local:<host>:<pid>:<start time>:<execution>`).

use std::sync::Arc;

use apiary_core::ErrorName;
use apiary_core::store::{DeploymentStatus, Store};
use apiary_e2e::{sdk_config, unique_name};
use control::{LocalRuns, Runs};
use serde_json::{Value, json};

/// The control function as the local runner registers it, and its runs: the local
/// runner marks each execution started and finished.
async fn deps() -> (control::Deps, Arc<LocalRuns>) {
    let config = sdk_config().await;
    let store = Store::new(
        aws_sdk_dynamodb::Client::new(&config),
        "apiary-test-control",
    );
    store.ensure_table().await.unwrap();
    let runs = Arc::new(LocalRuns::new());
    (control::Deps::new(store, runs.clone()), runs)
}

fn spec(name: &str) -> Value {
    json!({"name": name, "dns": {"domain": "hh.example.com"}})
}

/// An execution of the local runner's provision, by name.
fn execution(name: &str) -> String {
    format!("arn:aws:states:us-west-2:123456789012:execution:apiary-provision:{name}")
}

/// A step that brings a new spec (validate, lock), as provision sends it.
fn with_spec(action: &str, name: &str, execution: &str) -> Value {
    json!({
        "action": action,
        "spec": spec(name),
        "execution_id": execution,
        "options": {"workflow": "provision"},
    })
}

/// A step of a deployment the table holds.
fn event(action: &str, name: &str, execution: &str) -> Value {
    json!({
        "action": action,
        "deployment": name,
        "execution_id": execution,
        "options": {"workflow": "provision"},
    })
}

#[tokio::test]
async fn validate_fills_defaults_and_rejects_every_problem() {
    let (deps, _) = deps().await;
    let name = unique_name("validate");
    let out = control::handle(&deps, with_spec("validate", &name, "e1"))
        .await
        .unwrap();
    assert_eq!(out["deployment"], json!(name));
    let spec = &out["spec"];
    assert_eq!(spec["network"]["az_count"], json!(3));
    assert!(
        spec["network"]["vpc_cidr"]
            .as_str()
            .unwrap()
            .ends_with("/16")
    );
    let bad = json!({"action": "validate", "spec": {"name": "", "size": "huge"}});
    let err = control::handle(&deps, bad).await.unwrap_err();
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
    assert!(deps.store.journal(&name).await.unwrap().is_empty());
    assert_eq!(deps.store.current_lock(&name).await.unwrap(), None);
}

#[tokio::test]
async fn lock_ready_fail_and_unlock_follow_the_owner() {
    let (deps, runs) = deps().await;
    let name = unique_name("control");
    let (first, second) = (
        execution(&unique_name("exec-1")),
        execution(&unique_name("exec-2")),
    );
    // Both runs are live in this process, as the local runner marks them.
    runs.started(&first);
    runs.started(&second);
    control::handle(&deps, with_spec("lock", &name, &first))
        .await
        .expect("lock");
    let record = deps.store.get_deployment(&name).await.unwrap().unwrap();
    assert_eq!(record.status, DeploymentStatus::Provisioning);
    control::handle(&deps, with_spec("lock", &name, &first))
        .await
        .expect("same owner renews");

    let conflict = control::handle(&deps, with_spec("lock", &name, &second))
        .await
        .unwrap_err();
    assert_eq!(conflict.name(), ErrorName::Conflict);
    let stolen = control::handle(&deps, event("unlock", &name, &second))
        .await
        .unwrap_err();
    assert_eq!(stolen.name(), ErrorName::Conflict);

    let mut fail = event("fail", &name, &first);
    fail["options"]["failure"] = json!({"Error": "Apiary.Fatal", "Cause": "CreateVpc failed"});
    control::handle(&deps, fail).await.unwrap();
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
    // The refused lock and unlock above are journaled as failed steps too.
    let failed = journal
        .iter()
        .find(|e| e.action == "fail" && e.outcome == "failed")
        .expect("failure journaled");
    assert_eq!(
        failed.detail.as_deref(),
        Some("Apiary.Fatal: CreateVpc failed")
    );

    control::handle(&deps, event("unlock", &name, &first))
        .await
        .unwrap();
    control::handle(&deps, with_spec("lock", &name, &second))
        .await
        .expect("free after unlock");
    control::handle(&deps, event("ready", &name, &second))
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

    let unknown = control::handle(&deps, event("explode", &name, &second))
        .await
        .unwrap_err();
    assert_eq!(unknown.name(), ErrorName::InvalidInput);
    runs.finished(&first);
    runs.finished(&second);
}

#[tokio::test]
async fn a_lock_held_by_a_local_process_that_is_gone_is_taken_over() {
    let (deps, runs) = deps().await;
    let name = unique_name("takeover");
    // Above the kernel's largest pid (2^22): a run killed long ago.
    let dead = format!("local:{}:4194999:12345:killed-run", runs.host());
    deps.store
        .acquire_lock(&name, &dead, chrono::Duration::hours(1), chrono::Utc::now())
        .await
        .unwrap();
    let next = execution(&unique_name("next"));
    runs.started(&next);
    let out = control::handle(&deps, with_spec("lock", &name, &next))
        .await
        .expect("a dead run's lock does not block the next run");
    runs.finished(&next);
    assert_eq!(out["took_over_from"], json!(dead));
    let lock = deps.store.current_lock(&name).await.unwrap().unwrap();
    assert_eq!(lock.owner, runs.owner(&next));
    let journal = deps.store.journal(&name).await.unwrap();
    let takeover = journal
        .iter()
        .find(|e| e.outcome == "took-over")
        .expect("the takeover is journaled");
    assert_eq!(
        takeover.detail.as_deref(),
        Some(format!("took over the lock of {dead}, which is not running").as_str())
    );
}

#[tokio::test]
async fn a_lock_held_by_a_live_execution_is_not_taken_over() {
    let (deps, runs) = deps().await;
    let name = unique_name("live");
    let live = execution(&unique_name("live"));
    runs.started(&live);
    control::handle(&deps, with_spec("lock", &name, &live))
        .await
        .unwrap();
    let next = execution(&unique_name("next"));
    runs.started(&next);
    let err = control::handle(&deps, with_spec("lock", &name, &next))
        .await
        .unwrap_err();
    runs.finished(&next);
    assert_eq!(err.name(), ErrorName::Conflict);
    let lock = deps.store.current_lock(&name).await.unwrap().unwrap();
    assert_eq!(lock.owner, runs.owner(&live), "still the live run's");

    // Once it has ended (without unlocking), the lock is free for the next run.
    runs.finished(&live);
    control::handle(&deps, with_spec("lock", &name, &next))
        .await
        .expect("taken over once the holder ended");
}

#[tokio::test]
async fn cleanup_releases_only_the_lock_the_ended_execution_holds() {
    let (deps, runs) = deps().await;
    let (ended_one, other) = (unique_name("ended"), unique_name("other"));
    let ended = execution(&unique_name("timed-out"));
    let live = execution(&unique_name("live"));
    runs.started(&ended);
    runs.started(&live);
    control::handle(&deps, with_spec("lock", &ended_one, &ended))
        .await
        .unwrap();
    control::handle(&deps, with_spec("lock", &other, &live))
        .await
        .unwrap();
    runs.finished(&ended);

    let cleaned = control::cleanup(
        &deps,
        &ended,
        "TIMED_OUT",
        &json!({"spec": spec(&ended_one)}),
    )
    .await
    .unwrap();
    assert!(cleaned.released && cleaned.marked_failed, "{cleaned:?}");
    assert_eq!(deps.store.current_lock(&ended_one).await.unwrap(), None);
    let record = deps
        .store
        .get_deployment(&ended_one)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, DeploymentStatus::Failed);
    let journal = deps.store.journal(&ended_one).await.unwrap();
    let end = journal
        .iter()
        .find(|e| e.outcome == "timed-out")
        .expect("the end is journaled");
    assert_eq!(end.execution_id, ended);

    // The same ended run named against a deployment another (live) run holds.
    let cleaned = control::cleanup(&deps, &ended, "ABORTED", &json!({"deployment": other}))
        .await
        .unwrap();
    assert!(!cleaned.released && !cleaned.marked_failed, "{cleaned:?}");
    let lock = deps.store.current_lock(&other).await.unwrap().unwrap();
    assert_eq!(lock.owner, runs.owner(&live));
    let record = deps.store.get_deployment(&other).await.unwrap().unwrap();
    assert_eq!(record.status, DeploymentStatus::Provisioning);
    runs.finished(&live);
}

/// A provision that waited behind a teardown does not rebuild what the teardown removed,
/// whether the teardown finished or failed halfway; one started afterwards does.
#[tokio::test]
async fn a_provision_queued_behind_a_failed_teardown_changes_nothing() {
    let (deps, runs) = deps().await;
    let name = unique_name("control");
    let built = execution(&unique_name("built"));
    runs.started(&built);
    control::handle(&deps, with_spec("lock", &name, &built))
        .await
        .expect("lock");
    control::handle(&deps, event("ready", &name, &built))
        .await
        .unwrap();
    control::handle(&deps, event("unlock", &name, &built))
        .await
        .unwrap();
    runs.finished(&built);

    // The queued provision starts; a teardown holds the lock and fails halfway.
    let queued_at = chrono::Utc::now();
    let teardown = execution(&unique_name("teardown"));
    runs.started(&teardown);
    let as_teardown = |action: &str| {
        let mut step = event(action, &name, &teardown);
        step["options"]["workflow"] = json!("teardown");
        step
    };
    control::handle(&deps, as_teardown("lock"))
        .await
        .expect("lock");
    let mut fail = as_teardown("fail");
    fail["options"]["failure"] =
        json!({"Error": "Apiary.Conflict", "Cause": "DeleteVpc: a foreign instance"});
    control::handle(&deps, fail).await.unwrap();
    control::handle(&deps, as_teardown("unlock")).await.unwrap();
    runs.finished(&teardown);

    let queued = execution(&unique_name("queued"));
    runs.started(&queued);
    let mut lock = with_spec("lock", &name, &queued);
    lock["options"]["started_at"] = json!(queued_at.to_rfc3339());
    let refused = control::handle(&deps, lock).await.unwrap_err();
    assert_eq!(refused.name(), ErrorName::InvalidInput);
    assert!(
        refused.to_string().contains("partly torn down"),
        "{refused}"
    );
    let record = deps.store.get_deployment(&name).await.unwrap().unwrap();
    assert_eq!(record.status, DeploymentStatus::Failed, "nothing changed");
    assert!(deps.store.current_lock(&name).await.unwrap().is_none());

    // Started after the teardown: it repairs the deployment as asked.
    let mut later = with_spec("lock", &name, &queued);
    later["options"]["started_at"] = json!(chrono::Utc::now().to_rfc3339());
    control::handle(&deps, later).await.expect("lock");
    control::handle(&deps, event("unlock", &name, &queued))
        .await
        .unwrap();
    runs.finished(&queued);
}
