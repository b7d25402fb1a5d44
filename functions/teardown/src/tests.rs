//! Unit tests: what the emulator cannot show (resources that stay deleting, busy
//! instances), with aws-smithy-mocks; the whole workflow runs against the emulator in
//! tests/teardown.rs.

use std::sync::Arc;

use apiary_core::fixtures::Fixture;
use serde_json::json;

use super::*;

fn deps(recorder: Arc<dyn Recorder>) -> Deps {
    let config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-west-2"))
        .build();
    Deps::new(&config, recorder)
}

#[tokio::test]
async fn a_step_without_the_confirmed_input_changes_nothing() {
    let fixture = Fixture::test();
    let state = Arc::new(fixture.state());
    let deps = deps(state.clone());
    for input in [
        json!(null),
        json!({"confirm": "someone-else"}),
        json!({"confirm": fixture.name, "force": true}),
    ] {
        let mut event = fixture.event("cluster");
        if !input.is_null() {
            event["options"] = json!({"input": input});
        }
        let err = handle(&deps, event).await.unwrap_err();
        assert_eq!(err.name(), apiary_core::ErrorName::InvalidInput, "{err}");
    }
    // No client was ever called (none has an endpoint or credentials that would work).
    assert!(state.saved(&fixture.name, "teardown.cluster").is_none());
}

#[test]
fn actions_follow_the_issue_order() {
    let names: Vec<&str> = TeardownAction::ALL.iter().map(|a| a.as_str()).collect();
    assert_eq!(
        names,
        [
            "snapshots",
            "cluster",
            "sweep",
            "stores",
            "secrets",
            "buckets",
            "dns",
            "detach",
            "network",
            "iam",
            "keys",
            "receipt"
        ]
    );
    for action in TeardownAction::ALL {
        let parsed: TeardownAction = serde_json::from_value(json!(action.as_str())).unwrap();
        assert_eq!(parsed, action);
    }
}

#[test]
fn a_report_of_another_data_plane_is_not_continued() {
    let mut old = Report::default().continued("vpc-old");
    old.removed("ec2:vpc", "vpc-old");
    let same = old.clone().continued("vpc-old");
    assert_eq!(same.removed, ["ec2:vpc vpc-old"]);
    let fresh = old.continued("vpc-new");
    assert!(fresh.removed.is_empty());
    assert_eq!(fresh.incarnation, "vpc-new");
}

#[test]
fn a_kept_snapshot_needs_the_key_it_names_in_its_own_region() {
    use apiary_core::inputs::backup::StoreName;
    let held = backups::Held {
        resource: "rds:dr-snapshot us-east-1/apiary-acme-pg-20261206-abc".into(),
        region: "us-east-1".into(),
        store: StoreName::Postgres,
        encrypted: true,
        key: Some("arn:aws:kms:us-east-1:123456789012:key/dr-key".into()),
    };
    let dr_arn = Some("arn:aws:kms:us-east-1:123456789012:key/dr-key");
    assert!(held.needs("us-east-1", dr_arn, "dr-key", "dr"));
    assert!(held.needs("us-east-1", None, "dr-key", "dr"), "by key id");
    // The primary region's rds key, or another key of the DR region: not this one's.
    assert!(!held.needs("us-west-2", None, "dr-key", "rds"));
    assert!(!held.needs("us-east-1", None, "other-key", "rds"));
    // A snapshot that does not name its key is its store's key's.
    let unnamed = backups::Held {
        key: None,
        region: "us-west-2".into(),
        ..held.clone()
    };
    assert!(unnamed.needs("us-west-2", None, "rds-key", "rds"));
    assert!(!unnamed.needs("us-west-2", None, "redis-key", "redis"));
    let plain = backups::Held {
        encrypted: false,
        ..unnamed
    };
    assert!(!plain.needs("us-west-2", None, "rds-key", "rds"));
}

mod mocked;
