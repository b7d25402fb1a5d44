use serde_json::json;

use super::*;
use crate::ErrorName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
enum TestAction {
    #[serde(rename = "ensure")]
    Ensure,
    #[serde(rename = "status")]
    Status,
    #[serde(rename = "explode")]
    Explode,
    #[serde(rename = "probe")]
    Probe,
}

impl Action for TestAction {
    fn as_str(self) -> &'static str {
        match self {
            TestAction::Ensure => "ensure",
            TestAction::Status => "status",
            TestAction::Explode => "explode",
            TestAction::Probe => "probe",
        }
    }
    fn slot(self) -> Option<&'static str> {
        (self == TestAction::Ensure).then_some("databases.postgres")
    }
    fn mutates(self) -> bool {
        !matches!(self, TestAction::Status | TestAction::Probe)
    }
    fn journals_success(self) -> bool {
        self != TestAction::Probe
    }
}

#[derive(Serialize)]
struct TestOutput {
    identifier: String,
    host: String,
    port: u16,
    secret_arn: String,
}

struct TestStep {
    state: MemoryRecorder,
    pending: Vec<String>,
}

#[async_trait]
impl Step for TestStep {
    const LAYER: Layer = Layer::Databases;
    type Action = TestAction;
    type Output = TestOutput;

    async fn run(&self, step: &StepContext<'_, TestAction>) -> Result<Done<TestOutput>> {
        if step.action == TestAction::Explode {
            return Err(Error::Conflict(
                "the database belongs to someone else".into(),
            ));
        }
        // What the step reads comes from the state, never from the event.
        let keys = step.layers.keys()?;
        step.log.resource("rds:db", "db-1", None).await?;
        if step.action == TestAction::Ensure {
            step.log.created("db-1");
        }
        let done = Done::pending(
            TestOutput {
                identifier: format!("{}-db", step.spec.name),
                host: keys.key("rds")?.alias.clone(),
                port: 5432,
                secret_arn: "arn:secret".into(),
            },
            self.pending.clone(),
        );
        Ok(if step.flag("noted") {
            done.with_detail("the customer must add two records")
        } else {
            done
        })
    }

    fn state(&self) -> &dyn Recorder {
        &self.state
    }
}

fn spec() -> Value {
    json!({"name": "acme", "dns": {"domain": "hh.example.com"}})
}

fn seeded(pending: &[&str]) -> TestStep {
    let layers =
        json!({"keys": {"keys": {"rds": {"key_id": "k", "arn": "arn:k", "alias": "alias/rds"}}}});
    TestStep {
        state: MemoryRecorder::with(&spec(), &layers),
        pending: pending.iter().map(|p| (*p).to_owned()).collect(),
    }
}

#[tokio::test]
async fn a_ready_ensure_returns_typed_output_saves_it_and_journals_created() {
    let step = seeded(&[]);
    let out = run(&step, event("ensure", "acme")).await.unwrap();
    assert_eq!(
        out,
        json!({"ready": true, "created": ["db-1"], "identifier": "acme-db",
               "host": "alias/rds", "port": 5432, "secret_arn": "arn:secret"})
    );
    let saved = step.state.saved("acme", "databases.postgres").unwrap();
    assert_eq!(saved["identifier"], "acme-db");
    assert!(
        saved.get("ready").is_none(),
        "only the layer's own fields are kept"
    );
    let entries = step.state.entries.lock().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].outcome, "created");
    assert_eq!(entries[0].step, "databases");
    assert_eq!(entries[0].action, "ensure");
    assert_eq!(entries[0].execution_id, "exec-1");
    assert_eq!(entries[0].resource_ids, vec!["db-1".to_owned()]);
}

#[tokio::test]
async fn a_pending_step_reports_what_it_waits_for_and_saves_nothing() {
    let step = seeded(&["db-1 is creating"]);
    let out = run(&step, event("ensure", "acme")).await.unwrap();
    assert_eq!(out["ready"], false);
    assert_eq!(out["pending"], json!(["db-1 is creating"]));
    assert_eq!(step.state.saved("acme", "databases.postgres"), None);
    let entries = step.state.entries.lock().unwrap();
    assert_eq!(entries[0].outcome, "not-ready");
    assert_eq!(entries[0].detail.as_deref(), Some("db-1 is creating"));
}

#[tokio::test]
async fn a_steps_note_reaches_the_journal_with_its_outcome() {
    let step = seeded(&[]);
    let mut noted = event("ensure", "acme");
    noted["options"] = json!({"noted": true});
    run(&step, noted).await.unwrap();
    let step_pending = seeded(&["cert pending"]);
    let mut noted = event("ensure", "acme");
    noted["options"] = json!({"noted": true});
    run(&step_pending, noted).await.unwrap();
    let done = &step.state.entries.lock().unwrap()[0];
    assert_eq!(done.outcome, "created");
    assert_eq!(
        done.detail.as_deref(),
        Some("the customer must add two records")
    );
    let pending = &step_pending.state.entries.lock().unwrap()[0];
    assert_eq!(
        pending.detail.as_deref(),
        Some("cert pending; the customer must add two records")
    );
}

#[tokio::test]
async fn a_read_only_action_journals_ready_and_keeps_no_output() {
    let step = seeded(&[]);
    let out = run(&step, event("status", "acme")).await.unwrap();
    assert_eq!(out["ready"], true);
    assert_eq!(out["created"], json!([]));
    assert_eq!(step.state.saved("acme", "databases.postgres"), None);
    assert_eq!(step.state.entries.lock().unwrap()[0].outcome, "ready");
}

#[tokio::test]
async fn a_frequent_probe_journals_only_what_is_not_ready() {
    let step = seeded(&[]);
    let out = run(&step, event("probe", "acme")).await.unwrap();
    assert_eq!(out["ready"], true);
    assert!(step.state.entries.lock().unwrap().is_empty());
    let waiting = seeded(&["the pool is at 95% of its limits"]);
    run(&waiting, event("probe", "acme")).await.unwrap();
    let entries = waiting.state.entries.lock().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].outcome, "not-ready");
}

#[tokio::test]
async fn a_failure_is_journaled_and_keeps_its_own_name() {
    let step = seeded(&[]);
    let err = run(&step, event("explode", "acme")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Conflict);
    let entries = step.state.entries.lock().unwrap();
    assert_eq!(entries[0].outcome, "failed");
    assert!(
        entries[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("someone else")
    );
}

#[tokio::test]
async fn a_journal_failure_never_replaces_the_steps_outcome() {
    let step = seeded(&[]);
    *step.state.failing_journal.lock().unwrap() = Some("DynamoDB is throttling".into());
    let err = run(&step, event("explode", "acme")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Conflict, "{err}");
    let out = run(&step, event("ensure", "acme")).await.unwrap();
    assert_eq!(out["ready"], true);
}

#[tokio::test]
async fn unknown_actions_and_fields_are_refused_by_name() {
    let step = seeded(&[]);
    let err = run(&step, json!({"action": "delete", "deployment": "acme"}))
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    let text = err.to_string();
    assert!(text.contains("action") && text.contains("delete"), "{text}");
    assert!(text.contains("ensure") && text.contains("status"), "{text}");

    // The event cannot carry a spec or layers: the state table is the source of truth.
    let err = run(
        &step,
        json!({"action": "ensure", "deployment": "acme", "spec": {"name": "evil"}}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    assert!(err.to_string().contains("spec"), "{err}");
    assert!(step.state.entries.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_deployment_without_a_record_is_refused_before_any_work() {
    let step = seeded(&[]);
    let err = run(&step, event("ensure", "other")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    assert!(
        err.to_string().contains("deployment other has no record"),
        "{err}"
    );
    assert!(step.state.entries.lock().unwrap().is_empty());
    assert!(step.state.resources.lock().unwrap().is_empty());
}

#[test]
fn saved_slots_assemble_into_layers() {
    let outputs = BTreeMap::from([
        (
            "databases.postgres".to_owned(),
            json!({"identifier": "db", "host": "h", "port": 5432, "secret_arn": "arn:s"}),
        ),
        ("storage".to_owned(), json!({"buckets": {"logs": "b"}})),
        (
            "cluster#control-plane".to_owned(),
            json!({"cluster_name": "eks", "cluster_arn": "arn:eks", "endpoint": "https://e",
                   "certificate_authority": "ca", "node_role_arn": "", "nodegroup_name": "",
                   "interruption_queue_url": ""}),
        ),
        (
            "cluster#karpenter".to_owned(),
            json!({"node_role_arn": "arn:node", "interruption_queue_url": "https://q"}),
        ),
    ]);
    let layers = assemble(outputs).unwrap();
    assert_eq!(
        layers.databases().unwrap().postgres.as_ref().unwrap().port,
        5432
    );
    assert_eq!(layers.storage().unwrap().buckets["logs"], "b");
    assert!(layers.keys().is_err());
    let cluster = layers.cluster().unwrap();
    assert_eq!(cluster.cluster_arn, "arn:eks");
    assert_eq!(
        cluster.node_role_arn, "arn:node",
        "a later shard's fields win"
    );
}
