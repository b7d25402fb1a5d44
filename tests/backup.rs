//! The backup and restore-test workflows end to end: provision a deployment (with a DR
//! region), then run `statemachines/backup.asl.json` and
//! `statemachines/restore-test.asl.json` in the embedded engine against the emulator,
//! and read back from AWS what they left: tagged, encrypted snapshots and their DR
//! copies, the RPO ledger, and no scratch resource after a restore test, passed or
//! failed.
//!
//! What the emulator cannot show is unit-tested in functions/backup with recorded AWS
//! answers: pruning by age (the emulator stamps snapshots with the real time),
//! DocumentDB (not emulated) and its presigned copy, the Redis export to S3 and its
//! replication (neither emulated), stores still restoring or deleting.

use apiary_asl::{Clock, ExecutionOptions, ExecutionResult, ExecutionStatus, HandlerRegistry};
use apiary_e2e::{Local as Fixture, REGION, in_region};
use serde_json::{Value, json};

const DR_REGION: &str = "us-east-1";

async fn fixture() -> Fixture {
    Fixture::new("apiary-test-backup").await
}

/// Runs `workflow` with the registry the local runner uses, `adjust`ed (a function
/// replaced by a test double).
async fn run_with(
    f: &Fixture,
    workflow: &str,
    name: &str,
    input: Value,
    run: &str,
    adjust: impl FnOnce(&mut HandlerRegistry),
) -> ExecutionResult {
    let machine = f
        .env
        .load(&f.root, workflow)
        .unwrap_or_else(|e| panic!("{workflow}.asl.json loads: {e}"));
    let mut handlers = f.env.registry(name);
    adjust(&mut handlers);
    let options = ExecutionOptions {
        execution_name: Some(format!("{name}-{run}")),
        state_machine_name: format!("apiary-{workflow}"),
        region: REGION.to_owned(),
        account: apiary::local::LOCAL_ACCOUNT.to_owned(),
        clock: Clock::virtual_now(),
        handlers,
        ..ExecutionOptions::default()
    };
    machine.execute(input, options).await
}

async fn provisioned(f: &Fixture, prefix: &str) -> String {
    let backup = json!({"backup": {"dr_region": DR_REGION, "retention_days": 1}});
    f.provisioned(prefix, backup).await.0
}

fn tags(list: &[aws_sdk_rds::types::Tag]) -> std::collections::BTreeMap<String, String> {
    list.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
        .collect()
}

/// The scratch resources of `name` still in the emulator.
async fn scratch_left(f: &Fixture, name: &str) -> Vec<String> {
    let prefix = format!("apiary-{name}-rt");
    let mut left = Vec::new();
    let rds = aws_sdk_rds::Client::new(&f.config);
    for instance in rds
        .describe_db_instances()
        .send()
        .await
        .unwrap()
        .db_instances()
    {
        let id = instance.db_instance_identifier().unwrap_or_default();
        if id.starts_with(&prefix) {
            left.push(format!("rds {id}"));
        }
    }
    let elasticache = aws_sdk_elasticache::Client::new(&f.config);
    for group in elasticache
        .describe_replication_groups()
        .send()
        .await
        .unwrap()
        .replication_groups()
    {
        let id = group.replication_group_id().unwrap_or_default();
        // The emulator never removes a deleted group: it stays listed as `deleting`.
        if id.starts_with(&prefix) && group.status() != Some("deleting") {
            left.push(format!("elasticache {id}"));
        }
    }
    let ec2 = aws_sdk_ec2::Client::new(&f.config);
    let groups = ec2
        .describe_security_groups()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:apiary:scratch")
                .values("restore-test")
                .build(),
        )
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:apiary:deployment")
                .values(name)
                .build(),
        )
        .send()
        .await
        .unwrap();
    for group in groups.security_groups() {
        left.push(format!(
            "security group {}",
            group.group_id().unwrap_or_default()
        ));
    }
    let secrets = aws_sdk_secretsmanager::Client::new(&f.config);
    for secret in secrets.list_secrets().send().await.unwrap().secret_list() {
        let secret_name = secret.name().unwrap_or_default();
        if secret_name.starts_with(&format!("apiary-{name}-restore-test")) {
            left.push(format!("secret {secret_name}"));
        }
    }
    left
}

#[tokio::test]
async fn backups_are_tagged_encrypted_copied_and_a_restore_test_leaves_nothing_behind() {
    let f = fixture().await;
    let name = provisioned(&f, "bak").await;

    let first = f
        .run("backup", &name, json!({"deployment": name}), "backup-1")
        .await;
    assert_eq!(first.status, ExecutionStatus::Succeeded, "{first:?}");
    let output = first.output.clone().expect("output");
    assert_eq!(output["workflow"], json!("backup"));
    let ledger = &output["result"]["ledger"]["stores"];
    let point = &ledger["postgres"][REGION];
    let snapshot_id = point["snapshot_id"]
        .as_str()
        .expect("a restorable point")
        .to_owned();
    assert!(point["age_seconds"].as_i64().is_some(), "{ledger}");
    // Locally the sentinel is not written: the RPO comes from the snapshot's time.
    assert_eq!(point["sentinel_id"], Value::Null, "{ledger}");
    assert_eq!(point["rpo_from"], json!("the snapshot's time"), "{ledger}");
    assert!(
        ledger["postgres"][DR_REGION]["snapshot_id"].is_string(),
        "{ledger}"
    );
    assert!(
        ledger["redis"][REGION]["snapshot_id"].is_string(),
        "{ledger}"
    );
    assert!(ledger["documentdb"]["skipped"].is_string(), "{ledger}");
    // Redis reaches the DR region as an export replicated by S3, neither of which the
    // emulator does: the DR region's ledger shows no point for it, never a made-up one
    // (the export and its replication are unit-tested with recorded answers).
    assert_eq!(
        ledger["redis"][DR_REGION]["snapshot_id"],
        Value::Null,
        "{ledger}"
    );
    assert!(
        ledger["redis"][DR_REGION]["note"]
            .as_str()
            .unwrap()
            .contains("emulator implements neither"),
        "{ledger}"
    );

    // The snapshot: encrypted with the deployment's rds key, tagged for pruning.
    let rds = aws_sdk_rds::Client::new(&f.config);
    let described = rds
        .describe_db_snapshots()
        .db_snapshot_identifier(&snapshot_id)
        .send()
        .await
        .expect("the snapshot exists");
    let snapshot = &described.db_snapshots()[0];
    assert_eq!(snapshot.encrypted(), Some(true));
    let snapshot_tags = tags(snapshot.tag_list());
    assert_eq!(snapshot_tags.get("apiary:deployment"), Some(&name));
    assert_eq!(
        snapshot_tags.get("apiary:backup").map(String::as_str),
        Some("snapshot")
    );
    assert_eq!(
        snapshot_tags.get("apiary:store").map(String::as_str),
        Some("postgres")
    );
    assert_eq!(
        snapshot_tags.get("apiary:sentinel").map(String::as_str),
        Some("none")
    );

    // The DR copy, encrypted with the DR region's key.
    let dr_config = in_region(&f.config, DR_REGION);
    let dr_key = aws_sdk_kms::Client::new(&dr_config)
        .describe_key()
        .key_id(format!("alias/apiary/{name}/dr"))
        .send()
        .await
        .expect("the DR key exists in the DR region")
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    let copy = aws_sdk_rds::Client::new(&dr_config)
        .describe_db_snapshots()
        .db_snapshot_identifier(&snapshot_id)
        .send()
        .await
        .expect("the DR copy exists");
    let copy = &copy.db_snapshots()[0];
    assert_eq!(copy.encrypted(), Some(true));
    assert_eq!(copy.kms_key_id(), Some(dr_key.as_str()));

    // The Redis snapshot, with its tags (the emulator keeps no key on a snapshot).
    let elasticache = aws_sdk_elasticache::Client::new(&f.config);
    let redis_id = ledger["redis"][REGION]["snapshot_id"].as_str().unwrap();
    let redis = elasticache
        .describe_snapshots()
        .snapshot_name(redis_id)
        .send()
        .await
        .expect("the Redis snapshot exists");
    assert_eq!(redis.snapshots().len(), 1);
    let redis_arn = redis.snapshots()[0].arn().expect("snapshot ARN").to_owned();
    let redis_tags: std::collections::BTreeMap<String, String> = elasticache
        .list_tags_for_resource()
        .resource_name(&redis_arn)
        .send()
        .await
        .expect("ListTagsForResource")
        .tag_list()
        .iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
        .collect();
    assert_eq!(
        redis_tags.get("apiary:deployment"),
        Some(&name),
        "{redis_tags:?}"
    );
    assert_eq!(
        redis_tags.get("apiary:backup").map(String::as_str),
        Some("snapshot"),
        "{redis_tags:?}"
    );
    assert_eq!(
        redis_tags.get("apiary:store").map(String::as_str),
        Some("redis"),
        "{redis_tags:?}"
    );

    // A second run makes its own snapshot; both are within retention, so both stay (the
    // emulator stamps snapshots with the real time: pruning by age is unit-tested).
    let second = f
        .run(
            "backup",
            &name,
            json!({"deployment": name, "stores": ["postgres"]}),
            "backup-2",
        )
        .await;
    assert_eq!(second.status, ExecutionStatus::Succeeded, "{second:?}");
    let prune = &second.output.as_ref().unwrap()["result"]["prune"];
    assert_eq!(prune["deleted"], json!([]), "{prune}");
    // No restore test has reported yet: the age the missed-test alarm watches counts
    // from when the first backup's ledger looked, and stays counted from there.
    let watched = |run: &apiary_asl::ExecutionResult| {
        run.output.as_ref().unwrap()["result"]["ledger"]["restore_test"].clone()
    };
    let before = watched(&second);
    assert!(
        before["what"]
            .as_str()
            .unwrap()
            .starts_with("no report yet"),
        "{before}"
    );
    assert!(before["age_seconds"].as_i64().is_some(), "{before}");
    let ours: Vec<_> = rds
        .describe_db_snapshots()
        .db_instance_identifier(format!("apiary-{name}-postgres"))
        .snapshot_type("manual")
        .send()
        .await
        .unwrap()
        .db_snapshots()
        .iter()
        .filter_map(|s| s.db_snapshot_identifier().map(str::to_owned))
        .collect();
    assert_eq!(ours.len(), 2, "{ours:?}");

    // The restore test: restored, reported, cleaned up.
    let tested = f
        .run(
            "restore-test",
            &name,
            json!({"deployment": name}),
            "restore-1",
        )
        .await;
    assert_eq!(tested.status, ExecutionStatus::Succeeded, "{tested:?}");
    let report = &tested.output.as_ref().unwrap()["result"]["report"];
    assert_eq!(
        report["passed"],
        Value::Null,
        "never passed locally: {report}"
    );
    assert!(
        report["data_check"]
            .as_str()
            .unwrap()
            .contains("not possible locally"),
        "{report}"
    );
    for store in ["postgres", "redis"] {
        assert!(
            report["stores"][store]["rto_seconds"].as_i64().is_some(),
            "{store}: {report}"
        );
        assert_eq!(report["stores"][store]["passed"], Value::Null, "{report}");
    }
    // The emulator gives RDS snapshots a creation time (ElastiCache's it leaves out).
    assert!(
        report["stores"]["postgres"]["rpo_seconds"]
            .as_i64()
            .is_some(),
        "{report}"
    );
    assert!(
        report["stores"]["documentdb"]["skipped"].is_string(),
        "{report}"
    );
    assert_eq!(scratch_left(&f, &name).await, Vec::<String>::new());
    let journal = f.store.journal(&name).await.unwrap();
    assert!(
        journal
            .iter()
            .any(|e| e.step == "restore-test" && e.action == "report"),
        "the result is journaled"
    );
    // The next backup counts the age from that report.
    let third = f
        .run(
            "backup",
            &name,
            json!({"deployment": name, "stores": ["postgres"]}),
            "backup-3",
        )
        .await;
    assert_eq!(third.status, ExecutionStatus::Succeeded, "{third:?}");
    let after = watched(&third);
    assert_eq!(after["what"], json!("last report"), "{after}");
    assert_ne!(after["since"], before["since"], "{after} {before}");
}

#[tokio::test]
async fn a_failed_verification_fails_the_test_after_its_cleanup() {
    let f = fixture().await;
    let name = provisioned(&f, "bakfail").await;
    let backed_up = f
        .run("backup", &name, json!({"deployment": name}), "backup")
        .await;
    assert_eq!(
        backed_up.status,
        ExecutionStatus::Succeeded,
        "{backed_up:?}"
    );

    // A verifier that finds the sentinel missing in the restored PostgreSQL.
    let failed = run_with(&f, "restore-test", &name, json!({"deployment": name}), "restore", |handlers| {
        let real = handlers.get("verifier").expect("verifier registered");
        handlers.register_fn("verifier", move |input: Value| {
            let real = real.clone();
            async move {
                if input["action"] == "verify-restore" && input["options"]["store"] == "postgres" {
                    return Ok(json!({
                        "ready": true, "created": [], "verified": false,
                        "checked": ["sentinel"], "mismatch": "sentinel not found in the restored database"
                    }));
                }
                real.invoke(input).await
            }
        });
    })
    .await;
    assert_eq!(failed.status, ExecutionStatus::Failed, "{failed:?}");
    assert!(
        failed
            .cause
            .as_deref()
            .unwrap_or_default()
            .contains("sentinel not found"),
        "{failed:?}"
    );
    // The scratch copies were made (the verifier was given their coordinates), and are gone.
    let outputs = f.store.layer_outputs(&name).await.unwrap();
    let restored = &outputs["restore-test.postgres"];
    assert_eq!(restored["status"], json!("available"), "{restored}");
    assert!(
        restored["scratch_id"]
            .as_str()
            .unwrap()
            .starts_with(&format!("apiary-{name}-rt"))
    );
    assert_eq!(scratch_left(&f, &name).await, Vec::<String>::new());
    let journal = f.store.journal(&name).await.unwrap();
    // The failure is reported and recorded; the lock is free for the next run.
    assert!(
        journal
            .iter()
            .any(|e| e.action == "report" && e.outcome == "failed")
    );
    assert!(f.store.current_lock(&name).await.unwrap().is_none());
}

#[tokio::test]
async fn a_bad_input_is_refused_before_anything_is_made() {
    let f = fixture().await;
    let name = provisioned(&f, "bakbad").await;
    let refused = f
        .run(
            "backup",
            &name,
            json!({"deployment": name, "stores": ["mysql"]}),
            "bad",
        )
        .await;
    assert_eq!(refused.status, ExecutionStatus::Failed, "{refused:?}");
    assert_eq!(
        refused.error.as_deref(),
        Some("Apiary.InvalidInput"),
        "{refused:?}"
    );
    assert!(
        refused
            .cause
            .as_deref()
            .unwrap_or_default()
            .contains("stores"),
        "{refused:?}"
    );
    let rds = aws_sdk_rds::Client::new(&f.config);
    let snapshots = rds
        .describe_db_snapshots()
        .db_instance_identifier(format!("apiary-{name}-postgres"))
        .snapshot_type("manual")
        .send()
        .await
        .unwrap();
    assert!(snapshots.db_snapshots().is_empty());
}
