//! The control steps and the cleanup against a mocked state table: what is read, what is
//! written, and what is never touched.

use std::collections::HashMap;
use std::sync::Mutex;

use apiary_core::ErrorName;
use aws_sdk_dynamodb::Client as Ddb;
use aws_sdk_dynamodb::operation::delete_item::{
    DeleteItemError, DeleteItemInput, DeleteItemOutput,
};
use aws_sdk_dynamodb::operation::get_item::{GetItemInput, GetItemOutput};
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemInput, PutItemOutput};
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::operation::update_item::{UpdateItemInput, UpdateItemOutput};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
use aws_smithy_mocks::{MockResponse, Rule, RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use serde_json::json;

use super::*;

type Item = HashMap<String, AttributeValue>;

const EXECUTION: &str =
    "arn:aws:states:us-west-2:123456789012:execution:apiary-acme-provision:run-2";

fn s(text: impl Into<String>) -> AttributeValue {
    AttributeValue::S(text.into())
}

fn sk_of(item: Option<&Item>) -> String {
    item.and_then(|i| i.get("sk"))
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

fn spec() -> Value {
    json!({"name": "acme", "dns": {"domain": "hh.example.com"}})
}

fn lock_item(owner: &str) -> Item {
    let expires = (Utc::now() + Duration::hours(1)).to_rfc3339();
    HashMap::from([
        ("pk".to_owned(), s("DEPLOYMENT#acme")),
        ("sk".to_owned(), s("LOCK")),
        ("owner".to_owned(), s(owner)),
        ("expires_at".to_owned(), s(expires)),
    ])
}

fn record_item(status: DeploymentStatus) -> Item {
    let spec = DeploymentSpec::parse(&spec()).unwrap();
    let now = Utc::now().to_rfc3339();
    HashMap::from([
        ("pk".to_owned(), s("DEPLOYMENT#acme")),
        ("sk".to_owned(), s("META")),
        ("name".to_owned(), s("acme")),
        ("spec".to_owned(), s(serde_json::to_string(&spec).unwrap())),
        ("status".to_owned(), s(status.as_str())),
        ("created_at".to_owned(), s(now.clone())),
        ("updated_at".to_owned(), s(now)),
    ])
}

/// A state table holding a lock (its owner, changed by the store's conditional acquire
/// and release as DynamoDB would) and a record (with a status), recording every write.
struct Table {
    lock: Arc<Mutex<Option<String>>>,
    record: Option<DeploymentStatus>,
    layers: Vec<(String, Value)>,
    /// Journal entries written, in order.
    journal: Arc<Mutex<Vec<JournalEntry>>>,
    /// Statuses written to the record, in order.
    statuses: Arc<Mutex<Vec<String>>>,
    runs: Arc<LocalRuns>,
    rules: Option<Rules>,
}

struct Rules {
    query: Rule,
    get: Rule,
    /// Lock writes (acquire), taken or refused.
    lock: Rule,
    journal: Rule,
    /// Any other put: the deployment record.
    put: Rule,
    update: Rule,
    /// Lock releases, done or refused.
    delete: Rule,
}

fn condition_failed() -> ConditionalCheckFailedException {
    ConditionalCheckFailedException::builder()
        .message("The conditional request failed")
        .meta(
            ErrorMetadata::builder()
                .code("ConditionalCheckFailedException")
                .build(),
        )
        .build()
}

fn owner_value(values: Option<&HashMap<String, AttributeValue>>) -> String {
    values
        .and_then(|v| v.get(":owner"))
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default()
}

impl Table {
    fn new(lock: Option<&str>, record: Option<DeploymentStatus>) -> Self {
        Table {
            lock: Arc::new(Mutex::new(lock.map(str::to_owned))),
            record,
            layers: Vec::new(),
            journal: Arc::default(),
            statuses: Arc::default(),
            runs: Arc::new(LocalRuns::new()),
            rules: None,
        }
    }

    fn with_layer(mut self, slot: &str, output: Value) -> Self {
        self.layers.push((slot.to_owned(), output));
        self
    }

    /// Deps over the mocked table, with this process's [`LocalRuns`].
    fn deps(&mut self) -> Deps {
        let record = self.record;
        let layers = self.layers.clone();
        let journal = self.journal.clone();
        let statuses = self.statuses.clone();
        let (read, acquire, release) = (self.lock.clone(), self.lock.clone(), self.lock.clone());
        let rules = Rules {
            query: mock!(Ddb::query).then_compute_output(move |_| {
                let items = layers
                    .iter()
                    .map(|(slot, output)| {
                        HashMap::from([
                            ("pk".to_owned(), s("DEPLOYMENT#acme")),
                            ("sk".to_owned(), s(format!("OUTPUT#{slot}"))),
                            ("output".to_owned(), s(output.to_string())),
                        ])
                    })
                    .collect();
                QueryOutput::builder().set_items(Some(items)).build()
            }),
            get: mock!(Ddb::get_item).then_compute_output(move |input: &GetItemInput| {
                let item = match sk_of(input.key()).as_str() {
                    "LOCK" => read.lock().unwrap().as_deref().map(lock_item),
                    "META" => record.map(record_item),
                    _ => None,
                };
                GetItemOutput::builder().set_item(item).build()
            }),
            // The store's acquire: free or the same owner (leases do not run out here);
            // its transfer (`:from`): only from the owner holding it.
            lock: mock!(Ddb::put_item)
                .match_requests(|r: &PutItemInput| sk_of(r.item()) == "LOCK")
                .then_compute_response(move |r: &PutItemInput| {
                    let values = r.expression_attribute_values();
                    let mut lock = acquire.lock().unwrap();
                    if let Some(from) = values
                        .and_then(|v| v.get(":from"))
                        .and_then(|v| v.as_s().ok())
                    {
                        if lock.as_ref() != Some(from) {
                            return MockResponse::Error(
                                PutItemError::ConditionalCheckFailedException(condition_failed()),
                            );
                        }
                        let to = r.item().unwrap()["owner"].as_s().unwrap().clone();
                        *lock = Some(to);
                        return MockResponse::Output(PutItemOutput::builder().build());
                    }
                    let owner = owner_value(values);
                    if lock.as_ref().is_some_and(|held| *held != owner) {
                        return MockResponse::Error(PutItemError::ConditionalCheckFailedException(
                            condition_failed(),
                        ));
                    }
                    *lock = Some(owner);
                    MockResponse::Output(PutItemOutput::builder().build())
                }),
            journal: mock!(Ddb::put_item)
                .match_requests(|r: &PutItemInput| sk_of(r.item()).starts_with("JOURNAL#"))
                .then_compute_output(move |r: &PutItemInput| {
                    let body = r.item().unwrap()["entry"].as_s().unwrap();
                    journal
                        .lock()
                        .unwrap()
                        .push(serde_json::from_str(body).unwrap());
                    PutItemOutput::builder().build()
                }),
            put: mock!(Ddb::put_item).then_output(|| PutItemOutput::builder().build()),
            update: mock!(Ddb::update_item).then_compute_output(move |r: &UpdateItemInput| {
                if let Some(status) = r
                    .expression_attribute_values()
                    .and_then(|v| v.get(":status"))
                    .and_then(|v| v.as_s().ok())
                {
                    statuses.lock().unwrap().push(status.clone());
                }
                UpdateItemOutput::builder().build()
            }),
            // The store's release: only its owner's, and a free lock is already released.
            delete: mock!(Ddb::delete_item).then_compute_response(move |r: &DeleteItemInput| {
                let owner = owner_value(r.expression_attribute_values());
                let mut lock = release.lock().unwrap();
                if lock.as_ref().is_some_and(|held| *held != owner) {
                    return MockResponse::Error(DeleteItemError::ConditionalCheckFailedException(
                        condition_failed(),
                    ));
                }
                *lock = None;
                MockResponse::Output(DeleteItemOutput::builder().build())
            }),
        };
        let client = mock_client!(
            aws_sdk_dynamodb,
            RuleMode::MatchAny,
            [
                &rules.query,
                &rules.get,
                &rules.lock,
                &rules.journal,
                &rules.put,
                &rules.update,
                &rules.delete
            ]
        );
        self.rules = Some(rules);
        Deps::new(Store::new(client, "apiary"), self.runs.clone())
    }

    fn rules(&self) -> &Rules {
        self.rules.as_ref().expect("deps() made the rules")
    }
    fn holder(&self) -> Option<String> {
        self.lock.lock().unwrap().clone()
    }
    fn queries(&self) -> usize {
        self.rules().query.num_calls()
    }
    fn reads(&self) -> usize {
        self.rules().get.num_calls()
    }
    fn lock_writes(&self) -> usize {
        self.rules().lock.num_calls()
    }
    fn puts(&self) -> usize {
        self.rules().put.num_calls()
    }
    fn updates(&self) -> usize {
        self.rules().update.num_calls()
    }
    fn deletes(&self) -> usize {
        self.rules().delete.num_calls()
    }
    fn writes(&self) -> usize {
        self.lock_writes()
            + self.rules().journal.num_calls()
            + self.puts()
            + self.updates()
            + self.deletes()
    }
    fn entries(&self) -> Vec<JournalEntry> {
        self.journal.lock().unwrap().clone()
    }
    fn statuses(&self) -> Vec<String> {
        self.statuses.lock().unwrap().clone()
    }
}

fn with_spec(action: &str) -> Value {
    json!({"action": action, "spec": spec(), "execution_id": EXECUTION,
           "options": {"workflow": "provision"}})
}

#[tokio::test]
async fn validate_returns_the_normalised_spec_and_writes_nothing() {
    let mut table = Table::new(None, None);
    let deps = table.deps();
    let out = handle(&deps, with_spec("validate")).await.unwrap();
    assert_eq!(out["ready"], true);
    assert_eq!(out["deployment"], "acme");
    assert_eq!(out["spec"]["network"]["az_count"], json!(3));
    assert_eq!(table.writes(), 0, "no record, no lock, no journal entry");
}

#[tokio::test]
async fn a_bad_spec_is_refused_with_every_problem_before_any_call() {
    let mut table = Table::new(None, None);
    let deps = table.deps();
    let bad = json!({"action": "validate", "spec": {"name": "", "size": "huge"}});
    let err = handle(&deps, bad).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidSpec);
    let text = err.to_string();
    assert!(
        text.contains("name: is required") && text.contains("size:") && text.contains("dns.domain"),
        "{text}"
    );
    assert_eq!(table.queries() + table.reads() + table.writes(), 0);
}

#[tokio::test]
async fn lock_takes_over_the_lock_of_a_local_process_that_is_gone() {
    let runs = LocalRuns::new();
    let dead = format!("local:{}:4194999:12345:run-1", runs.host());
    let mut table = Table::new(Some(&dead), None);
    let deps = table.deps();
    let out = handle(&deps, with_spec("lock")).await.unwrap();
    assert_eq!(out["ready"], true);
    assert_eq!(out["owner"], json!(runs.owner(EXECUTION)));
    assert_eq!(out["took_over_from"], json!(dead));
    assert_eq!(table.holder(), Some(runs.owner(EXECUTION)));
    // Refused, then handed from the dead run in one conditional write: never free between.
    assert_eq!((table.lock_writes(), table.deletes()), (2, 0));
    assert_eq!(table.puts(), 1, "the deployment record");
    let entries = table.entries();
    let takeover = entries
        .iter()
        .find(|e| e.outcome == "took-over")
        .expect("the takeover is journaled");
    assert_eq!(
        takeover.detail.as_deref(),
        Some(format!("took over the lock of {dead}, which is not running").as_str())
    );
    assert_eq!(takeover.step, "provision");
}

#[tokio::test]
async fn a_spec_that_changes_what_cannot_change_in_place_is_refused_before_the_lock() {
    let mut table = Table::new(None, Some(DeploymentStatus::Ready));
    let deps = table.deps();
    let mut event = with_spec("lock");
    event["spec"]["network"] = json!({"az_count": 2});
    let err = handle(&deps, event).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidSpec);
    assert!(err.to_string().contains("network.az_count"), "{err}");
    assert_eq!(table.holder(), None, "no lock was taken");
    assert_eq!(
        table.lock_writes() + table.puts() + table.updates() + table.deletes(),
        0,
        "nothing but the refusal's journal entry is written"
    );
    let entries = table.entries();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].outcome, "failed");
}

#[tokio::test]
async fn a_provision_queued_behind_a_teardown_does_not_re_create_the_deployment() {
    let mut table = Table::new(None, Some(DeploymentStatus::Deleted));
    let deps = table.deps();
    let mut queued = with_spec("lock");
    queued["options"]["started_at"] = json!((Utc::now() - Duration::minutes(30)).to_rfc3339());
    let err = handle(&deps, queued).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    assert!(
        err.to_string().contains("was torn down")
            && err.to_string().contains("start provision again"),
        "{err}"
    );
    assert_eq!(table.holder(), None, "no lock was taken");
    assert_eq!(table.puts(), 0, "the record stays DELETED");

    // Started after the teardown: the deployment is re-created as asked.
    let mut table = Table::new(None, Some(DeploymentStatus::Deleted));
    let deps = table.deps();
    let mut later = with_spec("lock");
    later["options"]["started_at"] = json!((Utc::now() + Duration::minutes(1)).to_rfc3339());
    let out = handle(&deps, later).await.unwrap();
    assert_eq!(out["ready"], true);
    assert_eq!(table.puts(), 1, "the record, PROVISIONING again");
}

#[tokio::test]
async fn lock_leaves_the_lock_of_a_live_execution_alone() {
    let runs = LocalRuns::new();
    let live = "arn:aws:states:us-west-2:123456789012:execution:apiary-acme-provision:live-1";
    runs.started(live);
    let mut table = Table::new(Some(&runs.owner(live)), None);
    let deps = table.deps();
    let err = handle(&deps, with_spec("lock")).await.unwrap_err();
    runs.finished(live);
    assert_eq!(err.name(), ErrorName::Conflict);
    assert!(err.to_string().contains("live-1"), "{err}");
    assert_eq!(table.holder(), Some(runs.owner(live)));
    assert_eq!(table.deletes() + table.puts(), 0, "no takeover, no record");
}

#[tokio::test]
async fn lock_without_a_spec_uses_the_stored_record_and_only_sets_its_status() {
    let mut table = Table::new(None, Some(DeploymentStatus::Ready));
    let deps = table.deps();
    let event = json!({"action": "lock", "deployment": "acme", "execution_id": EXECUTION,
                       "options": {"workflow": "teardown"}});
    let out = handle(&deps, event).await.unwrap();
    assert_eq!(out["owner"], json!(LocalRuns::new().owner(EXECUTION)));
    assert_eq!(table.lock_writes(), 1);
    assert_eq!(table.puts(), 0, "no spec it was not given");
    assert_eq!(table.updates(), 1, "TEARING_DOWN");
}

#[tokio::test]
async fn fail_marks_the_deployment_and_journals_the_cause_once() {
    let mut table = Table::new(Some(&holder()), Some(DeploymentStatus::Provisioning));
    let deps = table.deps();
    let event = json!({"action": "fail", "deployment": "acme", "execution_id": EXECUTION,
                       "options": {"workflow": "provision",
                                   "failure": {"Error": "Apiary.Fatal", "Cause": "CreateVpc failed"}}});
    let out = handle(&deps, event).await.unwrap();
    assert_eq!(out["status"], "FAILED");
    assert_eq!(table.updates(), 1, "the status");
    let entries = table.entries();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].outcome, "failed");
    assert_eq!(
        entries[0].detail.as_deref(),
        Some("Apiary.Fatal: CreateVpc failed")
    );
    assert_eq!(entries[0].step, "provision");
}

/// The lock's owner as this test run's executions hold it.
fn holder() -> String {
    LocalRuns::new().owner(EXECUTION)
}

/// A run that no longer holds the lock (redriven after its lock was released, or taken
/// over) records no outcome: nothing is written.
#[tokio::test]
async fn only_the_lock_holder_records_an_outcome() {
    for lock in [None, Some("local:elsewhere:1:1:run-9")] {
        for (action, options) in [
            ("ready", json!({"workflow": "provision"})),
            ("finish", json!({"workflow": "backup"})),
            (
                "fail",
                json!({"workflow": "provision", "failure": {"Error": "E", "Cause": "c"}}),
            ),
        ] {
            let mut table = Table::new(lock, Some(DeploymentStatus::Ready));
            let deps = table.deps();
            let err = handle(&deps, day2(action, options)).await.unwrap_err();
            assert_eq!(err.name(), ErrorName::Conflict, "{action}");
            assert!(
                err.to_string().contains("no longer holds the lock"),
                "{err}"
            );
            assert_eq!(
                table.puts() + table.updates() + table.lock_writes() + table.deletes(),
                0,
                "{action} with lock {lock:?} changed the record"
            );
        }
    }
}

/// Runs that start provision as Step Functions would, recording what was started.
#[derive(Default)]
struct Starter {
    started: Mutex<Vec<(String, Value)>>,
}

#[async_trait]
impl Runs for Starter {
    fn owner(&self, execution_id: &str) -> String {
        execution_id.to_owned()
    }
    async fn is_running(&self, _owner: &str) -> Result<bool> {
        Ok(true)
    }
    async fn start(&self, workflow: &str, name: &str, input: &Value) -> Result<Option<String>> {
        self.started
            .lock()
            .unwrap()
            .push((format!("{workflow}/{name}"), input.clone()));
        Ok(Some(format!("arn:execution:{name}")))
    }
}

const CERTIFICATE: &str = "arn:aws:acm:us-west-2:123456789012:certificate/acme";

fn acm_available(certificate: &str) -> Value {
    json!({
        "version": "0", "id": "event-1", "detail-type": "ACM Certificate Available",
        "source": "aws.acm", "account": "123456789012", "time": "2026-12-06T03:00:00Z",
        "region": "us-west-2", "resources": [certificate],
        "detail": {"Action": "ISSUANCE", "CertificateType": "AMAZON_ISSUED"}
    })
}

/// The deployment's certificate, issued while the deployment waits for it, starts
/// provision with the stored spec, queued; any other certificate, or a deployment that
/// no longer waits, starts nothing.
#[tokio::test]
async fn an_issued_certificate_finishes_a_waiting_provision() {
    let dns = json!({"domain": "hh.example.com", "hosted_zone_id": "Z1",
                     "certificate_arn": CERTIFICATE, "certificate_status": "PENDING_VALIDATION"});
    let mut table = Table::new(None, Some(DeploymentStatus::WaitingForDnsValidation))
        .with_layer("dns", dns.clone());
    let starter = Arc::new(Starter::default());
    let mut deps = table.deps();
    deps.runs = starter.clone();
    let deps = deps.with_deployment("acme");
    let out = handle(&deps, acm_available(CERTIFICATE)).await.unwrap();
    assert_eq!(out["execution"], "arn:execution:certificate-issued-event-1");
    let started = starter.started.lock().unwrap().clone();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].1["queue"], true);
    assert_eq!(started[0].1["spec"]["name"], "acme");
    assert_eq!(table.entries()[0].action, "certificate-issued");

    let other = handle(
        &deps,
        acm_available("arn:aws:acm:us-west-2:123456789012:certificate/other"),
    )
    .await
    .unwrap();
    assert_eq!(other["execution"], Value::Null);
    assert!(
        other["detail"].as_str().unwrap().contains("ignored"),
        "{other}"
    );

    // Issued while the provision that requested it still runs (it will end waiting):
    // the next provision is queued behind it.
    let mut running =
        Table::new(None, Some(DeploymentStatus::Provisioning)).with_layer("dns", dns.clone());
    let starter = Arc::new(Starter::default());
    let mut deps = running.deps();
    deps.runs = starter.clone();
    let deps = deps.with_deployment("acme");
    handle(&deps, acm_available(CERTIFICATE)).await.unwrap();
    let started = starter.started.lock().unwrap().clone();
    assert_eq!(started.len(), 1, "queued behind the running provision");
    assert_eq!(started[0].1["queue"], true);

    let mut ready = Table::new(None, Some(DeploymentStatus::Ready)).with_layer("dns", dns);
    let starter = Arc::new(Starter::default());
    let mut deps = ready.deps();
    deps.runs = starter.clone();
    let deps = deps.with_deployment("acme");
    let out = handle(&deps, acm_available(CERTIFICATE)).await.unwrap();
    assert_eq!(out["execution"], Value::Null);
    assert!(starter.started.lock().unwrap().is_empty());
    assert_eq!(
        ready.writes(),
        0,
        "nothing recorded for a deployment that does not wait"
    );
}

fn day2(action: &str, options: Value) -> Value {
    json!({"action": action, "deployment": "acme", "execution_id": EXECUTION, "options": options})
}

#[tokio::test]
async fn validate_input_refuses_an_unknown_workflow_or_deployment_and_writes_nothing() {
    let mut table = Table::new(None, Some(DeploymentStatus::Ready));
    let deps = table.deps();
    let err = handle(
        &deps,
        day2(
            "validate-input",
            json!({"workflow": "nonesuch", "input": {}}),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    assert!(
        err.to_string().contains("unknown workflow `nonesuch`"),
        "{err}"
    );
    let err = handle(&deps, day2("validate-input", json!({"input": {}})))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("`options.workflow` is missing"),
        "{err}"
    );
    let mut empty = Table::new(None, None);
    let deps = empty.deps();
    let err = handle(
        &deps,
        day2("validate-input", json!({"workflow": "backup", "input": {}})),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    assert!(err.to_string().contains("has no record"), "{err}");
    let mut nameless = Table::new(None, Some(DeploymentStatus::Ready));
    let deps = nameless.deps();
    let mut event = day2("validate-input", json!({"workflow": "backup", "input": {}}));
    event["deployment"] = json!("");
    let err = handle(&deps, event).await.unwrap_err();
    assert!(err.to_string().contains("`deployment` is missing"), "{err}");
    assert_eq!(table.writes() + empty.writes() + nameless.writes(), 0);
}

#[tokio::test]
async fn finish_keeps_the_status_of_a_day2_workflow_and_marks_a_teardown_deleted() {
    let mut table = Table::new(Some(&holder()), Some(DeploymentStatus::Ready));
    let deps = table.deps();
    let out = handle(&deps, day2("finish", json!({"workflow": "backup"})))
        .await
        .unwrap();
    assert_eq!(out["status"], "READY");
    assert_eq!(table.updates(), 0, "a backup changes no status");
    let entries = table.entries();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        (entries[0].step.as_str(), entries[0].action.as_str()),
        ("backup", "finish")
    );

    let mut table = Table::new(Some(&holder()), Some(DeploymentStatus::TearingDown));
    let deps = table.deps();
    let out = handle(&deps, day2("finish", json!({"workflow": "teardown"})))
        .await
        .unwrap();
    assert_eq!(out["status"], "DELETED");
    assert_eq!(table.statuses(), ["DELETED"]);
}

#[tokio::test]
async fn a_failed_backup_is_journaled_and_leaves_the_status() {
    let mut table = Table::new(Some(&holder()), Some(DeploymentStatus::Ready));
    let deps = table.deps();
    let failure = json!({"Error": "Apiary.Fatal", "Cause": "snapshot quota"});
    let out = handle(
        &deps,
        day2("fail", json!({"workflow": "backup", "failure": failure})),
    )
    .await
    .unwrap();
    assert_eq!(out["status"], "READY");
    assert_eq!(table.updates(), 0);
    let entries = table.entries();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0].step, "backup");
    assert_eq!(
        entries[0].detail.as_deref(),
        Some("Apiary.Fatal: snapshot quota")
    );
}

#[tokio::test]
async fn ready_returns_the_layers_from_the_table() {
    let mut table = Table::new(Some(&holder()), Some(DeploymentStatus::Provisioning))
        .with_layer("storage", json!({"buckets": {"logs": "apiary-acme-logs"}}));
    let deps = table.deps();
    let event = json!({"action": "ready", "deployment": "acme", "execution_id": EXECUTION,
                       "options": {"workflow": "provision"}});
    let out = handle(&deps, event).await.unwrap();
    assert_eq!(
        out,
        json!({"ready": true, "created": [], "status": "READY",
               "layers": {"storage": {"buckets": {"logs": "apiary-acme-logs"}}}})
    );
    assert_eq!(table.updates(), 1);
    let entries = table.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].action.as_str(), entries[0].outcome.as_str()),
        ("ready", "ready")
    );
}

/// The dns layer's saved output, with the certificate in `status`.
fn dns_layer(status: &str) -> Value {
    json!({"domain": "hh.example.com", "hosted_zone_id": "Z1",
           "certificate_arn": "arn:aws:acm:us-west-2:123456789012:certificate/abc",
           "certificate_status": status,
           "validation_records": [{"name": "_x1.hh.example.com.", "type": "CNAME",
                                   "value": "_y1.acm-validations.aws."}],
           "validation_records_written": false})
}

fn ready_event() -> Value {
    json!({"action": "ready", "deployment": "acme", "execution_id": EXECUTION,
           "options": {"workflow": "provision"}})
}

#[tokio::test]
async fn ready_waits_for_dns_validation_while_the_certificate_is_not_issued() {
    let mut table = Table::new(Some(&holder()), Some(DeploymentStatus::Provisioning))
        .with_layer("dns", dns_layer("PENDING_VALIDATION"));
    let deps = table.deps();
    let out = handle(&deps, ready_event()).await.unwrap();
    assert_eq!(out["status"], "WAITING_FOR_DNS_VALIDATION");
    assert_eq!(out["ready"], true, "the run itself succeeds");
    // The records the customer must create are in the workflow's result.
    assert_eq!(
        out["layers"]["dns"]["validation_records"][0]["name"],
        "_x1.hh.example.com."
    );
    assert_eq!(table.statuses(), ["WAITING_FOR_DNS_VALIDATION"]);
    let entries = table.entries();
    let detail = entries[0].detail.as_deref().unwrap_or_default();
    assert!(
        detail.contains("PENDING_VALIDATION") && detail.contains("certificate/abc"),
        "{detail}"
    );
}

#[tokio::test]
async fn ready_is_ready_once_the_certificate_is_issued() {
    let mut table = Table::new(Some(&holder()), Some(DeploymentStatus::Provisioning))
        .with_layer("dns", dns_layer("ISSUED"));
    let deps = table.deps();
    let out = handle(&deps, ready_event()).await.unwrap();
    assert_eq!(out["status"], "READY");
    assert_eq!(table.statuses(), ["READY"]);
    assert_eq!(table.entries()[0].detail, None);
}

#[tokio::test]
async fn a_dns_output_saved_without_a_status_is_not_taken_as_issued() {
    let mut dns = dns_layer("ISSUED");
    dns.as_object_mut().unwrap().remove("certificate_status");
    let mut table =
        Table::new(Some(&holder()), Some(DeploymentStatus::Provisioning)).with_layer("dns", dns);
    let deps = table.deps();
    let out = handle(&deps, ready_event()).await.unwrap();
    assert_eq!(out["status"], "WAITING_FOR_DNS_VALIDATION");
}

#[tokio::test]
async fn unknown_actions_and_options_are_refused_by_name() {
    let mut table = Table::new(None, Some(DeploymentStatus::Ready));
    let deps = table.deps();
    let err = handle(&deps, json!({"action": "explode", "deployment": "acme"}))
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    assert!(err.to_string().contains("unlock"), "{err}");

    let err = handle(
        &deps,
        json!({"action": "ready", "deployment": "acme", "options": {"workflow": 7}}),
    )
    .await
    .unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    assert!(err.to_string().contains("options.workflow"), "{err}");
    assert_eq!(table.updates(), 0);
}

#[tokio::test]
async fn cleanup_releases_the_lock_the_ended_run_holds_and_marks_its_deployment_failed() {
    let runs = LocalRuns::new();
    let mut table = Table::new(
        Some(&runs.owner(EXECUTION)),
        Some(DeploymentStatus::Provisioning),
    );
    let deps = table.deps();
    let cleaned = cleanup(&deps, EXECUTION, "TIMED_OUT", &json!({"spec": spec()}))
        .await
        .unwrap();
    assert!(cleaned.released && cleaned.marked_failed, "{cleaned:?}");
    assert_eq!(
        table.lock_writes(),
        1,
        "handed to the cleanup's name in one write"
    );
    assert_eq!(table.updates(), 1, "FAILED");
    assert_eq!(table.deletes(), 1, "the cleanup's lock, at the end");
    assert_eq!(table.holder(), None);
    let entries = table.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].outcome, "timed-out");
    assert_eq!(entries[0].execution_id, EXECUTION);
    assert_eq!(entries[0].step, "provision");
}

#[tokio::test]
async fn a_cleanup_retried_after_dying_midway_finds_the_lock_in_its_name() {
    let runs = LocalRuns::new();
    let mut table = Table::new(
        Some(&format!("cleanup:{}", runs.owner(EXECUTION))),
        Some(DeploymentStatus::TearingDown),
    );
    let deps = table.deps();
    let cleaned = cleanup(&deps, EXECUTION, "FAILED", &json!({"deployment": "acme"}))
        .await
        .unwrap();
    assert!(cleaned.released && cleaned.marked_failed, "{cleaned:?}");
    assert_eq!(table.deletes(), 1);
    assert_eq!(table.holder(), None);
    assert_eq!(table.entries()[0].outcome, "failed");
}

#[tokio::test]
async fn cleanup_leaves_a_lock_another_run_holds() {
    let mut table = Table::new(
        Some("arn:aws:states:us-west-2:123456789012:execution:apiary-acme-provision:run-3"),
        Some(DeploymentStatus::Provisioning),
    );
    let deps = table.deps();
    let cleaned = cleanup(&deps, EXECUTION, "ABORTED", &json!({"deployment": "acme"}))
        .await
        .unwrap();
    assert!(!cleaned.released && !cleaned.marked_failed, "{cleaned:?}");
    assert_eq!(table.lock_writes() + table.updates() + table.deletes(), 0);
    let entries = table.entries();
    assert_eq!(
        entries.len(),
        1,
        "an abort is journaled even when it held nothing"
    );
    assert_eq!(entries[0].outcome, "aborted");
}

#[tokio::test]
async fn an_eventbridge_event_goes_to_the_cleanup_and_an_unknown_one_is_refused() {
    let mut table = Table::new(None, None);
    let deps = table.deps();
    let event = json!({
        "version": "0", "id": "1", "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states", "account": "123456789012", "time": "2019-02-26T19:42:21Z",
        "region": "us-west-2", "resources": [EXECUTION],
        "detail": {"executionArn": EXECUTION, "status": "ABORTED",
                   "input": "{\"spec\": {\"name\": \"acme\"}}", "inputDetails": {"included": true}}
    });
    let out = handle(&deps, event.clone()).await.unwrap();
    assert_eq!(out["deployment"], "acme");
    assert_eq!(out["status"], "ABORTED");
    assert_eq!(out["released"], false);
    assert_eq!(
        table.writes(),
        0,
        "no lock, no record: nothing to clear or file"
    );

    let mut other = event;
    other["detail-type"] = json!("Scheduled Event");
    let err = handle(&deps, other).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    assert!(err.to_string().contains("Scheduled Event"), "{err}");
}

/// The lease must outlast every workflow, or a live run's lock could expire under it.
#[test]
fn the_lease_covers_every_workflow_timeout() {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../statemachines");
    let lease = LOCK_LEASE_HOURS * 3600;
    let mut checked = 0;
    for file in std::fs::read_dir(&folder).unwrap() {
        let path = file.unwrap().path();
        if !path.to_string_lossy().ends_with(".asl.json") {
            continue;
        }
        let machine: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let timeout = machine["TimeoutSeconds"]
            .as_i64()
            .unwrap_or_else(|| panic!("{} has no TimeoutSeconds", path.display()));
        assert!(
            timeout <= lease,
            "{} may run {timeout} s, longer than the {lease} s lock lease",
            path.display()
        );
        checked += 1;
    }
    assert!(checked > 0, "no state machine in {}", folder.display());
}

/// An event whose notification could not be published is not marked handled: the next
/// delivery takes the claim over and tells the person.
#[tokio::test]
async fn a_failed_publish_leaves_the_event_unhandled() {
    let mut table = Table::new(None, Some(DeploymentStatus::Ready));
    let refused = mock!(aws_sdk_sns::Client::publish).then_error(|| {
        aws_sdk_sns::operation::publish::PublishError::KmsAccessDeniedException(
            aws_sdk_sns::types::error::KmsAccessDeniedException::builder()
                .message("the alerts key refused")
                .build(),
        )
    });
    let deps = table.deps().with_notifier(crate::Notifier {
        sns: mock_client!(aws_sdk_sns, RuleMode::MatchAny, [&refused]),
        topic_arn: "arn:aws:sns:us-west-2:123456789012:apiary-acme-alerts".into(),
    });
    let alert = json!({"event_id": "e-1", "source": "aws.health", "detail_type": "AWS Health Event",
        "time": "2026-12-01T00:00:00Z", "subject": "EKS", "summary": "an issue",
        "runbook": "record", "notify": true});
    let event = day2(
        "alert-notify",
        json!({"workflow": "handle-alert", "alert": alert, "outcome": null, "failure": null}),
    );
    let err = handle(&deps, event).await.unwrap_err();
    assert!(err.to_string().contains("Publish"), "{err}");
    let update = &table.rules.as_ref().unwrap().update;
    assert_eq!(update.num_calls(), 0, "not marked handled");
}
