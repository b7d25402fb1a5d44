//! Phone home end to end: the phone-home workflow in the embedded engine, the report
//! function in-process against the emulator's DynamoDB and Secrets Manager, and a real
//! HTTPS server on loopback as the vendor's endpoint.

use std::collections::BTreeSet;

use apiary_asl::ExecutionStatus;
use apiary_core::phone_home::{self, KEY_ID_HEADER, SIGNATURE_HEADER, SigningKey};
use apiary_core::store::{AlarmRecord, DeploymentStatus, JournalEntry};
use apiary_e2e::report_server::ReportServer;
use apiary_e2e::{Local, unique_name};
use chrono::Utc;
use serde_json::{Value, json};

const TABLE: &str = "apiary-phone-home-tests";

/// A deployment with a record, a layer's journal entry, a backup ledger, a restore-test
/// verdict and an open alarm: every part a report reads.
async fn deployment(local: &Local) -> String {
    let name = unique_name("home");
    let spec = apiary_core::fixtures::Fixture::named(&name).spec();
    let store = &local.store;
    let now = Utc::now();
    store
        .put_deployment(&spec, DeploymentStatus::Ready, now)
        .await
        .expect("record");
    store
        .append_journal(&JournalEntry {
            deployment: name.clone(),
            execution_id: "arn:aws:states:us-west-2:123456789012:execution:p:x".into(),
            step: "network".into(),
            action: "ensure".into(),
            outcome: "succeeded".into(),
            resource_ids: vec!["vpc-0a1b2c3d4e5f60718".into()],
            detail: Some("made vpc-0a1b2c3d4e5f60718".into()),
            at: now,
        })
        .await
        .expect("journal");
    store
        .put_output(
            &name,
            apiary_core::outputs::BACKUP_LEDGER_SLOT,
            &json!({"updated_at": now, "execution_id": "x", "stores": {
                "postgres": {"us-west-2": {"snapshot_id": format!("apiary-{name}-pg-1"), "restorable_at": now, "age_seconds": 5, "sentinel_id": "s"}}
            }}),
        )
        .await
        .expect("ledger");
    store
        .put_output(
            &name,
            apiary_core::outputs::RESTORE_TEST_REPORTED_SLOT,
            &json!({"reported_at": now, "passed": true, "execution_id": "y"}),
        )
        .await
        .expect("restore test");
    store
        .record_alarm(
            &name,
            &AlarmRecord {
                name: format!("apiary-{name}-dp-redis-memory"),
                state: "ALARM".into(),
                summary: "Threshold crossed: 1 datapoint [97.0] on 10.0.3.4".into(),
                changed_at: now,
            },
        )
        .await
        .expect("alarm");
    name
}

async fn local_for(server: &ReportServer) -> Local {
    Local::new(TABLE)
        .await
        .with_phone_home(&server.url(), Some(server.ca_pem.as_bytes()))
}

/// The deployment's signing key, as the report function reads it.
async fn signing_key(local: &Local, name: &str) -> SigningKey {
    let secret = apiary::local::LocalEnv::signing_key_secret(name);
    let text = aws_sdk_secretsmanager::Client::new(&local.config)
        .get_secret_value()
        .secret_id(&secret)
        .send()
        .await
        .expect("GetSecretValue")
        .secret_string
        .expect("a value");
    SigningKey::from_secret(&secret, &text).expect("a key")
}

fn report_of(result: &apiary_asl::ExecutionResult) -> Value {
    result.output.as_ref().expect("an output")["report"].clone()
}

/// Every field path of a JSON document (`a.b`, `list[].c`), with a map's keys named as
/// the README names them.
fn paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let key = match prefix {
                    "backup.stores" => "<store>",
                    p if p.starts_with("backup.stores.") && p.matches('.').count() == 2 => {
                        "<region>"
                    }
                    _ => key.as_str(),
                };
                let path = if prefix.is_empty() {
                    key.to_owned()
                } else {
                    format!("{prefix}.{key}")
                };
                paths(child, &path, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

/// The fields the README's "What a report holds" table lists.
fn documented_fields() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(apiary_e2e::repo_root().join("README.md")).unwrap();
    let start = readme
        .find("**What a report holds**")
        .expect("the README lists a report's fields");
    readme[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| field"))
        .skip(2)
        .take_while(|l| l.starts_with("| `"))
        .map(|l| {
            l.split('`')
                .nth(1)
                .expect("a field in backticks")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_report_reaches_the_endpoint_signed_and_holds_only_the_documented_fields() {
    let server = ReportServer::start().await;
    let local = local_for(&server).await;
    let name = deployment(&local).await;

    let done = local
        .run("phone-home", &name, json!({"deployment": name}), "1")
        .await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let report = report_of(&done);
    assert_eq!(report["made"], 1, "{report}");
    assert_eq!(report["delivered"], json!([1]), "{report}");
    assert_eq!(report["kept"], json!([]), "{report}");

    let received = server.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/v1/reports");
    assert_eq!(request.headers["content-type"], "application/json");
    // The signature verifies with the key in the secret, over the exact body.
    let key = signing_key(&local, &name).await;
    assert!(phone_home::verify(
        &key.public_key(),
        request.body.as_bytes(),
        &request.headers[SIGNATURE_HEADER]
    ));
    assert!(!phone_home::verify(
        &key.public_key(),
        format!("{} ", request.body).as_bytes(),
        &request.headers[SIGNATURE_HEADER]
    ));
    assert_eq!(request.headers[KEY_ID_HEADER], key.key_id());

    let body: Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(
        body["public_key"],
        key.public_key(),
        "pinnable from the first report"
    );
    assert_eq!(body["deployment"], name);
    assert_eq!(body["seq"], 1);
    assert_eq!(body["status"], "READY");
    assert_eq!(body["restore_test"]["passed"], true);
    assert_eq!(
        body["open_alerts"][0]["alarm"],
        format!("apiary-{name}-dp-redis-memory")
    );
    for leak in ["vpc-0a1b2c3d4e5f60718", "10.0.3.4", "pg-1", "123456789012"] {
        assert!(!request.body.contains(leak), "{leak} left the account");
    }
    let mut sent = BTreeSet::new();
    paths(&body, "", &mut sent);
    assert_eq!(
        sent,
        documented_fields(),
        "the README's list is what is sent"
    );

    // The next run numbers the next report; the key stays the one the vendor pinned.
    let again = local
        .run("phone-home", &name, json!({"deployment": name}), "2")
        .await;
    assert_eq!(again.status, ExecutionStatus::Succeeded, "{again:?}");
    assert_eq!(report_of(&again)["delivered"], json!([2]));
    let second: Value = serde_json::from_str(&server.received()[1].body).unwrap();
    assert_eq!(second["seq"], 2);
    assert_eq!(second["key_id"], key.key_id());
}

#[tokio::test]
async fn reports_wait_while_the_endpoint_is_down_and_arrive_in_order_after() {
    let mut server = ReportServer::start().await;
    let local = local_for(&server).await;
    let name = deployment(&local).await;
    server.stop().await;

    for (run, kept) in [
        ("1", json!([1])),
        ("2", json!([1, 2])),
        ("3", json!([1, 2, 3])),
    ] {
        let done = local
            .run("phone-home", &name, json!({"deployment": name}), run)
            .await;
        // Down for less than a day: the run succeeds and says what waits.
        assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
        let report = report_of(&done);
        assert_eq!(report["delivered"], json!([]), "{report}");
        assert_eq!(report["kept"], kept, "{report}");
    }
    assert!(server.received().is_empty());

    server.resume().await;
    let done = local
        .run("phone-home", &name, json!({"deployment": name}), "4")
        .await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    assert_eq!(report_of(&done)["delivered"], json!([1, 2, 3, 4]));
    assert_eq!(report_of(&done)["kept"], json!([]));
    let seqs: Vec<u64> = server
        .received()
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4], "in the order they were made");
}

#[tokio::test]
async fn a_refusal_fails_the_run_naming_the_host_and_keeps_the_report() {
    let server = ReportServer::start().await;
    let local = local_for(&server).await;
    let name = deployment(&local).await;
    server.answer(403);

    let done = local
        .run("phone-home", &name, json!({"deployment": name}), "1")
        .await;
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:?}");
    assert_eq!(done.error.as_deref(), Some("Apiary.Fatal"));
    let cause = done.cause.clone().unwrap_or_default();
    assert!(
        cause.contains("localhost:") && cause.contains("403"),
        "{cause}"
    );
    assert!(
        !cause.contains("/v1/reports"),
        "only the host is named: {cause}"
    );

    server.answer(200);
    let done = local
        .run("phone-home", &name, json!({"deployment": name}), "2")
        .await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    assert_eq!(report_of(&done)["delivered"], json!([1, 2]));
}

#[tokio::test]
async fn a_live_lease_holds_making_and_sending_off_and_a_day_undelivered_fails_the_run() {
    let mut server = ReportServer::start().await;
    let local = local_for(&server).await;
    let name = deployment(&local).await;

    // Another run holds the outbox: this one numbers nothing and sends nothing, so no
    // later number can overtake the other's report.
    local
        .store
        .acquire_outbox_lease(&name, "another-run", report::LEASE, Utc::now())
        .await
        .expect("lease");
    let done = local
        .run("phone-home", &name, json!({"deployment": name}), "1")
        .await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    let report = report_of(&done);
    assert_eq!(report["made"], Value::Null, "{report}");
    assert_eq!(report["kept"], json!([]), "{report}");
    assert!(
        report["stopped"].as_str().unwrap().contains("another-run"),
        "{report}"
    );
    assert!(server.received().is_empty());
    local
        .store
        .release_outbox_lease(&name, "another-run")
        .await
        .expect("release");

    // A report made a day and more ago that still cannot be sent: a person must hear.
    server.stop().await;
    let old = Utc::now() - chrono::Duration::hours(25);
    local
        .store
        .put_report(
            &name,
            0,
            r#"{"seq":0}"#,
            old,
            old + chrono::Duration::days(30),
        )
        .await
        .expect("an old report");
    let done = local
        .run("phone-home", &name, json!({"deployment": name}), "2")
        .await;
    assert_eq!(done.status, ExecutionStatus::Failed, "{done:?}");
    let cause = done.cause.clone().unwrap_or_default();
    assert!(cause.contains("for 25 h"), "{cause}");

    server.resume().await;
    let done = local
        .run("phone-home", &name, json!({"deployment": name}), "3")
        .await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    assert_eq!(report_of(&done)["delivered"], json!([0, 1, 2]));
}

#[tokio::test]
async fn a_retried_attempt_keeps_its_number_and_makes_no_second_report() {
    let mut server = ReportServer::start().await;
    let local = local_for(&server).await;
    let name = deployment(&local).await;
    local
        .env
        .ensure_signing_key(&name)
        .await
        .expect("the signing key");
    let deps = report::Deps::new(
        local.store.clone(),
        &local.config,
        std::sync::Arc::new(
            report::HttpsSender::new(Some(server.ca_pem.as_bytes())).expect("a sender"),
        ),
    )
    .with_endpoint(
        server.url(),
        apiary::local::LocalEnv::signing_key_secret(&name),
    );
    server.stop().await;
    let attempt = json!({"action": "report", "deployment": name, "execution_id": "exec-retried"});
    let first = report::handle(&deps, attempt.clone())
        .await
        .expect("first attempt");
    let second = report::handle(&deps, attempt).await.expect("the retry");
    assert_eq!(first["made"], second["made"], "{first} {second}");
    assert_eq!(second["kept"], json!([first["made"]]), "{second}");

    let other = json!({"action": "report", "deployment": name, "execution_id": "exec-next"});
    let next = report::handle(&deps, other).await.expect("the next run");
    assert_eq!(next["made"], first["made"].as_u64().unwrap() + 1, "{next}");
}

#[tokio::test]
async fn with_no_endpoint_nothing_is_made_or_sent() {
    let local = Local::new(TABLE).await;
    let name = deployment(&local).await;
    let done = local
        .run("phone-home", &name, json!({"deployment": name}), "1")
        .await;
    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:?}");
    assert_eq!(report_of(&done)["enabled"], false);
    assert!(
        local
            .store
            .pending_reports(&name, Utc::now())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn an_endpoint_that_is_not_https_is_refused_before_anything_runs() {
    let local = Local::new(TABLE).await;
    let err = match local.env.with_phone_home("http://localhost:1/v1", None) {
        Ok(_) => panic!("plain HTTP was accepted"),
        Err(err) => err,
    };
    assert!(err.to_string().contains("APIARY_PHONE_HOME_URL"), "{err}");
}
