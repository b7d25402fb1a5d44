use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use super::*;
use crate::fixtures::Fixture;
use crate::outputs::{BACKUP_LEDGER_SLOT, RESTORE_TEST_REPORTED_SLOT};
use crate::store::DeploymentStatus;

fn record() -> DeploymentRecord {
    let at = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    DeploymentRecord {
        name: "acme".into(),
        spec: Fixture::named("acme").spec(),
        status: DeploymentStatus::Ready,
        created_at: at,
        updated_at: at,
    }
}

fn entry(step: &str, action: &str, outcome: &str, minute: u32) -> JournalEntry {
    JournalEntry {
        deployment: "acme".into(),
        execution_id: "arn:aws:states:us-west-2:1:execution:p:secret-name".into(),
        step: step.into(),
        action: action.into(),
        outcome: outcome.into(),
        resource_ids: vec!["vpc-0123456789abcdef0".into()],
        detail: Some("created subnet-0abc in 10.0.0.0/20".into()),
        at: Utc.with_ymd_and_hms(2026, 12, 1, 1, minute, 0).unwrap(),
    }
}

#[test]
fn a_signature_verifies_over_the_exact_body_and_nothing_else() {
    let key = SigningKey::generate().unwrap();
    let body = br#"{"schema":"apiary.status/1","seq":1}"#;
    let signature = key.sign(body);
    assert!(verify(&key.public_key(), body, &signature));
    // One byte more, another key, or a damaged signature: refused.
    assert!(!verify(
        &key.public_key(),
        br#"{"schema":"apiary.status/1","seq":1} "#,
        &signature
    ));
    let other = SigningKey::generate().unwrap();
    assert!(!verify(&other.public_key(), body, &signature));
    assert!(!verify(&key.public_key(), body, "not base64!"));
    assert_ne!(key.key_id(), other.key_id());
    assert!(key.key_id().starts_with("ed25519:") && key.key_id().len() == 24);
}

#[test]
fn the_key_reads_back_from_its_secret_and_the_secret_is_never_in_debug() {
    let key = SigningKey::generate().unwrap();
    let text = key.to_secret();
    let again = SigningKey::from_secret("arn:secret", &text).unwrap();
    assert_eq!(again.public_key(), key.public_key());
    // Signatures of Ed25519 are deterministic: the same key signs the same bytes alike.
    assert_eq!(again.sign(b"x"), key.sign(b"x"));
    let pkcs8 = serde_json::from_str::<Value>(&text).unwrap()["pkcs8"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!format!("{key:?}").contains(&pkcs8));

    // A secret holding anything else (CloudFormation's generated password, another
    // tool's JSON) is refused by name and never echoed.
    for wrong in [
        "Zx9-generated-password".to_owned(),
        json!({"kind": "other", "algorithm": "ed25519", "pkcs8": "", "public_key": ""}).to_string(),
    ] {
        let err = SigningKey::from_secret("arn:secret", &wrong).unwrap_err();
        assert!(err.to_string().contains("arn:secret"), "{err}");
        assert!(!err.to_string().contains("Zx9"), "{err}");
    }
}

#[test]
fn the_report_holds_only_its_documented_fields_and_no_resource_ids() {
    let key = SigningKey::generate().unwrap();
    let journal = vec![
        entry("network", "ensure", "failed", 1),
        entry("keys", "ensure", "succeeded", 2),
        entry("network", "ensure", "succeeded", 3),
        entry("provision", "lock", "succeeded", 4),
    ];
    let mut outputs = BTreeMap::new();
    outputs.insert(
        BACKUP_LEDGER_SLOT.to_owned(),
        json!({
            "updated_at": "2026-12-01T03:00:00Z",
            "execution_id": "arn:aws:states:us-west-2:1:execution:backup:x",
            "stores": {
                "postgres": {
                    "us-west-2": {"snapshot_id": "apiary-acme-pg-1", "restorable_at": "2026-12-01T02:59:00Z", "age_seconds": 60, "sentinel_id": "s-1"},
                    "us-east-1": {"snapshot_id": null, "note": "no restorable snapshot"}
                },
                "documentdb": {"skipped": "not enabled"}
            }
        }),
    );
    outputs.insert(
        RESTORE_TEST_REPORTED_SLOT.to_owned(),
        json!({"reported_at": "2026-11-30T05:00:00Z", "passed": true, "execution_id": "x"}),
    );
    outputs.insert(
        "network".to_owned(),
        json!({"vpc_id": "vpc-0123456789abcdef0"}),
    );
    let alarms = vec![
        AlarmRecord {
            name: "apiary-acme-dp-redis-memory".into(),
            state: "ALARM".into(),
            summary: "host 10.0.3.4 at 97 %".into(),
            changed_at: Utc.with_ymd_and_hms(2026, 12, 1, 4, 0, 0).unwrap(),
        },
        AlarmRecord {
            name: "apiary-acme-dp-postgres-cpu".into(),
            state: "OK".into(),
            summary: "back".into(),
            changed_at: Utc.with_ymd_and_hms(2026, 12, 1, 3, 0, 0).unwrap(),
        },
    ];
    let record = record();
    let sources = Sources {
        record: &record,
        journal: &journal,
        outputs: &outputs,
        alarms: &alarms,
    };
    let now = Utc.with_ymd_and_hms(2026, 12, 1, 5, 0, 0).unwrap();
    let report = StatusReport::build(&sources, 7, &key, "1.2.3", now);
    let body = report.body();
    for leak in [
        "vpc-0",
        "subnet-",
        "10.0.",
        "execution:",
        "apiary-acme-pg-1",
        "s-1",
    ] {
        assert!(!body.contains(leak), "{leak} left the account: {body}");
    }
    let value: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["seq"], 7);
    assert_eq!(value["schema"], SCHEMA);
    assert_eq!(value["versions"]["apiary"], "1.2.3");
    assert_eq!(value["status"], "READY");
    // The last entry of each layer, in build order; other steps are not layers.
    assert_eq!(
        value["layers"],
        json!([
            {"layer": "keys", "action": "ensure", "outcome": "succeeded", "at": "2026-12-01T01:02:00Z"},
            {"layer": "network", "action": "ensure", "outcome": "succeeded", "at": "2026-12-01T01:03:00Z"}
        ])
    );
    assert_eq!(
        value["backup"]["stores"],
        json!({"postgres": {"us-east-1": null, "us-west-2": {"restorable_at": "2026-12-01T02:59:00Z", "age_seconds": 60}}})
    );
    assert_eq!(value["restore_test"]["passed"], true);
    assert_eq!(
        value["open_alerts"],
        json!([{"alarm": "apiary-acme-dp-redis-memory", "state": "ALARM", "since": "2026-12-01T04:00:00Z"}])
    );
    // The body reads back into the documented type, which refuses any other field.
    assert_eq!(serde_json::from_str::<StatusReport>(&body).unwrap(), report);
}

#[test]
fn a_deployment_with_no_backup_yet_reports_none() {
    let key = SigningKey::generate().unwrap();
    let record = record();
    let outputs = BTreeMap::new();
    let sources = Sources {
        record: &record,
        journal: &[],
        outputs: &outputs,
        alarms: &[],
    };
    let report = StatusReport::build(&sources, 1, &key, "0.1.0", Utc::now());
    let value = serde_json::to_value(&report).unwrap();
    assert_eq!(value["backup"], Value::Null);
    assert_eq!(value["restore_test"], Value::Null);
    assert_eq!(value["layers"], json!([]));
}

#[test]
fn only_an_https_url_with_a_host_is_an_endpoint() {
    assert_eq!(
        endpoint(" https://vendor.example/v1/reports ", "PhoneHomeUrl").unwrap(),
        "https://vendor.example/v1/reports"
    );
    for bad in [
        "http://vendor.example/v1",
        "vendor.example",
        "https:///path",
        "https://user:pw@vendor.example/",
        "https://vendor.example/#x",
    ] {
        let err = endpoint(bad, "PhoneHomeUrl").unwrap_err();
        assert!(err.to_string().contains("PhoneHomeUrl"), "{bad}: {err}");
        assert_eq!(err.name(), crate::ErrorName::InvalidInput, "{bad}");
    }
}

#[test]
fn the_image_is_reported_without_its_registry() {
    assert_eq!(
        image_reference("123456789012.dkr.ecr.us-west-2.amazonaws.com/honeyhive/ingestion:1.4.2"),
        "ingestion:1.4.2"
    );
    assert_eq!(
        image_reference("registry.example:5000/team/ingestion@sha256:0a1b2c"),
        "ingestion@sha256:0a1b2c"
    );
    assert_eq!(image_reference("ingestion:1"), "ingestion:1");
    let key = SigningKey::generate().unwrap();
    let mut record = record();
    record.spec.workloads.ingestion_image =
        "123456789012.dkr.ecr.us-west-2.amazonaws.com/honeyhive/ingestion:1.4.2".into();
    let outputs = BTreeMap::new();
    let sources = Sources {
        record: &record,
        journal: &[],
        outputs: &outputs,
        alarms: &[],
    };
    let body = StatusReport::build(&sources, 1, &key, "0.1.0", Utc::now()).body();
    assert!(!body.contains("123456789012"), "{body}");
    assert!(body.contains("\"ingestion:1.4.2\""), "{body}");
}
