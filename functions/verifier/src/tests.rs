//! Unit tests: the step logic over in-memory stores and a mocked Secrets Manager (the
//! real engines are exercised in tests/ against real servers).

use std::collections::BTreeMap;
use std::sync::Mutex;

use apiary_core::ErrorName;
use apiary_core::fixtures::{Fixture, NAME};
use apiary_core::step::MemoryRecorder;
use aws_sdk_secretsmanager::Client as SecretsManager;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use serde_json::json;

use super::*;

const PASSWORD: &str = "pw-from-the-secret";

/// Stores by host: what each holds, and whether it answers.
#[derive(Default)]
struct Memory {
    stores: Mutex<BTreeMap<String, Vec<Sentinel>>>,
    unreachable: Mutex<Vec<String>>,
    connections: Mutex<Vec<Target>>,
}

impl Memory {
    fn holds(&self, host: &str) -> Vec<Sentinel> {
        self.stores
            .lock()
            .unwrap()
            .get(host)
            .cloned()
            .unwrap_or_default()
    }
    /// A restore: the copy at `to` holds what `from` held.
    fn restore(&self, from: &str, to: &str) {
        let held = self.holds(from);
        self.stores.lock().unwrap().insert(to.to_owned(), held);
    }
}

struct MemoryStore {
    memory: Arc<Memory>,
    host: String,
}

#[async_trait]
impl Datastore for MemoryStore {
    async fn write_sentinel(&self, sentinel: &Sentinel) -> std::result::Result<(), StoreError> {
        let mut stores = self.memory.stores.lock().unwrap();
        let held = stores.entry(self.host.clone()).or_default();
        held.retain(|s| s.id != sentinel.id);
        held.push(sentinel.clone());
        Ok(())
    }
    async fn read_sentinel(&self, id: &str) -> std::result::Result<Option<Sentinel>, StoreError> {
        Ok(self
            .memory
            .holds(&self.host)
            .into_iter()
            .find(|s| s.id == id))
    }
    async fn facts(&self) -> std::result::Result<Facts, StoreError> {
        Ok(Facts {
            server_version: "16.4".into(),
            schema_version: Some("fingerprint-1".into()),
            counts: [(
                "sentinels".to_owned(),
                self.memory.holds(&self.host).len() as i64,
            )]
            .into(),
        })
    }
}

struct MemoryConnector(Arc<Memory>);

#[async_trait]
impl Connector for MemoryConnector {
    async fn connect(
        &self,
        _kind: StoreKind,
        target: &Target,
    ) -> std::result::Result<Box<dyn Datastore>, StoreError> {
        self.0.connections.lock().unwrap().push(target.clone());
        if self.0.unreachable.lock().unwrap().contains(&target.host) {
            return Err(StoreError::Unreachable("connection refused".into()));
        }
        Ok(Box::new(MemoryStore {
            memory: self.0.clone(),
            host: target.host.clone(),
        }))
    }
}

fn secrets() -> SecretsManager {
    let value = mock!(SecretsManager::get_secret_value).then_compute_output(|request| {
        GetSecretValueOutput::builder()
            .arn(request.secret_id().unwrap_or_default())
            .secret_string(json!({"username": "apiary", "password": PASSWORD}).to_string())
            .build()
    });
    mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, [&value])
}

/// A client every call to which fails: for paths that must make none.
fn no_secrets() -> SecretsManager {
    mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, [])
}

fn live(state: &MemoryRecorder, secrets: SecretsManager) -> (Deps, Arc<Memory>) {
    let memory = Arc::new(Memory::default());
    let deps = Deps::with_connector(
        secrets,
        Arc::new(state.clone()),
        Arc::new(MemoryConnector(memory.clone())),
    );
    (deps, memory)
}

fn event(action: &str, store: &str) -> Value {
    json!({"action": action, "deployment": NAME, "execution_id": "exec-1",
           "options": {"store": store}})
}

fn restored_at(state: &MemoryRecorder, store: &str, host: &str, sentinel_id: Option<&str>) {
    state.save_output_now(
        &format!("restore-test.{store}"),
        json!({"execution_id": "exec-1", "endpoint": host, "port": 5432,
                   "secret_arn": "arn:aws:secretsmanager:us-west-2:123456789012:secret:scratch",
                   "sentinel_id": sentinel_id, "snapshot_id": "snap-1",
                   "restore_started_at": "2026-12-06T01:00:00Z"}),
    );
}

trait SaveNow {
    fn save_output_now(&self, slot: &str, value: Value);
}

impl SaveNow for MemoryRecorder {
    fn save_output_now(&self, slot: &str, value: Value) {
        self.saved
            .lock()
            .unwrap()
            .entry(NAME.to_owned())
            .or_default()
            .insert(slot.to_owned(), value);
    }
}

#[tokio::test]
async fn write_sentinel_writes_into_the_live_store_and_keeps_it_for_the_backup() {
    let state = Fixture::test().state();
    let (deps, memory) = live(&state, secrets());
    let out = handle(&deps, event("write-sentinel", "postgres"))
        .await
        .unwrap();
    assert_eq!(out["ready"], true);
    assert_eq!(out["written"], true);
    let id = out["sentinel_id"].as_str().unwrap().to_owned();
    // Into the store the databases layer reported, with the secret's credentials.
    let held = memory.holds("pg.internal");
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].id, id);
    let target = memory.connections.lock().unwrap()[0].clone();
    assert_eq!((target.host.as_str(), target.port), ("pg.internal", 5432));
    assert_eq!(target.password, PASSWORD);
    // Kept under sentinel.postgres with what the backup reads; no password anywhere.
    let saved = state.saved(NAME, "sentinel.postgres").unwrap();
    assert_eq!(saved["sentinel_id"], id.as_str());
    assert_eq!(saved["written"], true);
    assert_eq!(saved["written_at"], held[0].written_at.as_str());
    assert_eq!(saved["facts"]["schema_version"], "fingerprint-1");
    assert!(!out.to_string().contains(PASSWORD) && !saved.to_string().contains(PASSWORD));
    // A retry of the same execution writes the same sentinel again, not a second one.
    let retried = handle(&deps, event("write-sentinel", "postgres"))
        .await
        .unwrap();
    assert_eq!(retried["sentinel_id"], id.as_str());
    assert_eq!(retried["written_at"], out["written_at"]);
    assert_eq!(memory.holds("pg.internal").len(), 1);
    // The next backup (another execution) gets a fresh one.
    let mut next = event("write-sentinel", "postgres");
    next["execution_id"] = json!("exec-2");
    let again = handle(&deps, next).await.unwrap();
    assert_ne!(again["sentinel_id"], id.as_str());
    assert_eq!(memory.holds("pg.internal").len(), 2);
}

#[tokio::test]
async fn a_restore_holding_the_sentinel_is_verified() {
    let state = Fixture::test().state();
    let (deps, memory) = live(&state, secrets());
    let written = handle(&deps, event("write-sentinel", "postgres"))
        .await
        .unwrap();
    let id = written["sentinel_id"].as_str().unwrap();
    memory.restore("pg.internal", "scratch.internal");
    restored_at(&state, "postgres", "scratch.internal", Some(id));

    let out = handle(&deps, event("verify-restore", "postgres"))
        .await
        .unwrap();
    assert_eq!(out["verified"], true, "{out}");
    assert_eq!(out["sentinel_id"], id);
    assert_eq!(
        out["checked"],
        json!(["tls", "login", "sentinel", "schema", "counts"])
    );
    assert!(out.get("mismatch").is_none());
    // The scratch copy, with its own secret: never the live store.
    let target = memory.connections.lock().unwrap().last().cloned().unwrap();
    assert_eq!(target.host, "scratch.internal");
}

#[tokio::test]
async fn a_restore_without_the_sentinel_is_a_named_mismatch_not_an_error() {
    let state = Fixture::test().state();
    let (deps, memory) = live(&state, secrets());
    handle(&deps, event("write-sentinel", "redis"))
        .await
        .unwrap();
    // A copy of the store from before the sentinel was written.
    memory.restore("nowhere", "scratch.internal");
    restored_at(&state, "redis", "scratch.internal", Some("sentinel-123"));
    let out = handle(&deps, event("verify-restore", "redis"))
        .await
        .unwrap();
    assert_eq!(out["verified"], false);
    assert_eq!(
        out["mismatch"],
        "sentinel sentinel-123 is not in the restored copy"
    );
    let journal = state.entries.lock().unwrap().last().cloned().unwrap();
    assert_eq!(journal.step, "verifier");
    assert!(journal.detail.unwrap().contains("NOT verified"));
}

#[tokio::test]
async fn a_sentinel_with_another_time_is_a_mismatch() {
    let state = Fixture::test().state();
    let (deps, memory) = live(&state, secrets());
    let written = handle(&deps, event("write-sentinel", "postgres"))
        .await
        .unwrap();
    let id = written["sentinel_id"].as_str().unwrap().to_owned();
    memory.restore("pg.internal", "scratch.internal");
    memory
        .stores
        .lock()
        .unwrap()
        .get_mut("scratch.internal")
        .unwrap()[0]
        .written_at = "2020-01-01T00:00:00.000Z".into();
    restored_at(&state, "postgres", "scratch.internal", Some(&id));
    let out = handle(&deps, event("verify-restore", "postgres"))
        .await
        .unwrap();
    assert_eq!(out["verified"], false);
    assert!(
        out["mismatch"]
            .as_str()
            .unwrap()
            .contains("2020-01-01T00:00:00.000Z"),
        "{out}"
    );
}

#[tokio::test]
async fn a_copy_that_does_not_answer_yet_is_retried() {
    let state = Fixture::test().state();
    let (deps, memory) = live(&state, secrets());
    memory
        .unreachable
        .lock()
        .unwrap()
        .push("scratch.internal".into());
    restored_at(&state, "postgres", "scratch.internal", Some("s-1"));
    let err = handle(&deps, event("verify-restore", "postgres"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::NotReady, "{err}");
    assert!(err.to_string().contains("scratch.internal"), "{err}");
}

#[tokio::test]
async fn bad_input_is_refused_before_any_call() {
    let state = Fixture::test().state();
    let (deps, memory) = live(&state, no_secrets());
    for (options, field) in [
        (json!({}), "options.store"),
        (json!({"store": "mysql"}), "options.store"),
    ] {
        let event = json!({"action": "write-sentinel", "deployment": NAME, "options": options});
        let err = handle(&deps, event).await.unwrap_err();
        assert_eq!(err.name(), ErrorName::InvalidInput);
        assert!(err.to_string().contains(field), "{err}");
    }
    let err = handle(&deps, json!({"action": "verify", "deployment": NAME}))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("write-sentinel"), "{err}");
    // No restore kept: the slot is named.
    let err = handle(&deps, event("verify-restore", "postgres"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    assert!(err.to_string().contains("restore-test.postgres"), "{err}");
    assert!(memory.connections.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_store_that_is_off_gets_no_sentinel() {
    // The fixture's spec has no DocumentDB endpoint.
    let state = Fixture::test().state();
    let (deps, memory) = live(&state, no_secrets());
    let out = handle(&deps, event("write-sentinel", "documentdb"))
        .await
        .unwrap();
    assert_eq!(out["written"], false);
    assert!(out["note"].as_str().unwrap().contains("no endpoint"));
    assert!(memory.connections.lock().unwrap().is_empty());
}

#[tokio::test]
async fn locally_nothing_is_written_and_nothing_passes() {
    let state = Fixture::test().state();
    let deps = Deps::local(Arc::new(state.clone()));
    let out = handle(&deps, event("write-sentinel", "postgres"))
        .await
        .unwrap();
    assert_eq!(out["written"], false);
    assert_eq!(out["note"], LOCAL_SENTINEL_NOTE);
    assert_eq!(out["sentinel_id"], Value::Null);
    assert_eq!(
        state.saved(NAME, "sentinel.postgres").unwrap()["written"],
        false
    );
    restored_at(&state, "postgres", "scratch.internal", None);
    let out = handle(&deps, event("verify-restore", "postgres"))
        .await
        .unwrap();
    assert_eq!(out["verified"], Value::Null);
    assert_eq!(out["note"], LOCAL_VERIFY_NOTE);
    assert_eq!(out["checked"], json!([]));
}

#[tokio::test]
async fn a_store_the_restore_skipped_is_not_checked_and_says_why() {
    let state = Fixture::test().state();
    let (deps, memory) = live(&state, no_secrets());
    state.save_output_now(
        "restore-test.documentdb",
        json!({"execution_id": "exec-1", "skipped": "documentdb is off in the spec"}),
    );
    let out = handle(&deps, event("verify-restore", "documentdb"))
        .await
        .unwrap();
    assert_eq!(out["ready"], true, "{out}");
    assert_eq!(out["verified"], Value::Null);
    assert_eq!(out["note"], "skipped: documentdb is off in the spec");
    assert_eq!(out["checked"], json!([]));
    assert!(out.get("mismatch").is_none());
    assert!(memory.connections.lock().unwrap().is_empty());
    let journal = state.entries.lock().unwrap().last().cloned().unwrap();
    let detail = journal.detail.unwrap();
    assert!(detail.contains("skipped"), "{detail}");
    assert!(!detail.contains(LOCAL_VERIFY_NOTE), "{detail}");
}

#[tokio::test]
async fn a_slot_kept_by_another_execution_is_refused() {
    let state = Fixture::test().state();
    let (deps, memory) = live(&state, no_secrets());
    restored_at(&state, "postgres", "scratch.internal", Some("s-1"));
    let mut other = event("verify-restore", "postgres");
    other["execution_id"] = json!("exec-2");
    let err = handle(&deps, other).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput, "{err}");
    assert!(err.to_string().contains("exec-1"), "{err}");
    assert!(err.to_string().contains("restore-test.postgres"), "{err}");
    // An older run's skip is no answer for this one either.
    state.save_output_now(
        "restore-test.redis",
        json!({"execution_id": "exec-0", "skipped": "not in this run's input"}),
    );
    let err = handle(&deps, event("verify-restore", "redis"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput, "{err}");
    assert!(memory.connections.lock().unwrap().is_empty());
}

#[test]
fn a_count_that_had_data_and_came_back_empty_is_a_mismatch() {
    let counts = |pairs: &[(&str, i64)]| -> std::collections::BTreeMap<String, i64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    };
    let live = counts(&[("tables", 12), ("sentinels", 3), ("keys", 0)]);
    // More or fewer rows than at the sentinel's time is normal traffic.
    assert_eq!(
        crate::emptied(&live, &counts(&[("tables", 11), ("sentinels", 4)])),
        None
    );
    let lost = crate::emptied(&live, &counts(&[("tables", 0), ("sentinels", 3)])).unwrap();
    assert!(lost.contains("tables (12 when"), "{lost}");
    assert!(!lost.contains("keys"), "{lost}");
    // A count the restored copy does not report at all is empty too.
    assert!(crate::emptied(&live, &counts(&[("tables", 12)])).is_some());
}
