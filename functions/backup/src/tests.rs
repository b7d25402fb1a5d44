//! Unit tests with recorded AWS answers (aws-smithy-mocks): what the emulator cannot show.
//! Pruning by age (the emulator stamps every snapshot with the real time), DocumentDB
//! (not emulated at all) and its presigned cross-region copy, the Redis export to S3 and
//! its replication to the DR region (ElastiCache CopySnapshot is not emulated, nor is S3
//! replication), and a failed verification's report.

use std::sync::Arc;

use apiary_core::ErrorName;
use apiary_core::fixtures::{self, Fixture};
use apiary_core::outputs::DatastoreEndpoint;
use apiary_core::step::MemoryRecorder;
use aws_sdk_rds::config::{Credentials, SharedCredentialsProvider};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use chrono::{Duration, Utc};
use serde_json::json;

use super::*;
use crate::engine::Snapshot;

/// Every client, mocked with `rules` for the services a test names; the others answer
/// nothing (a call to them fails the test).
#[derive(Default)]
struct Rules<'a> {
    rds: Vec<&'a Rule>,
    dr_rds: Vec<&'a Rule>,
    docdb: Vec<&'a Rule>,
    dr_docdb: Vec<&'a Rule>,
    /// Answers in order (a copy not there, then being made).
    dr_docdb_in_order: bool,
    dr_kms: Vec<&'a Rule>,
    elasticache: Vec<&'a Rule>,
    s3: Vec<&'a Rule>,
    /// The DR region's S3: the Redis export replicas.
    dr_s3: Vec<&'a Rule>,
    events: Vec<&'a Rule>,
    cloudwatch: Vec<&'a Rule>,
}

fn deps(rules: Rules<'_>, recorder: &MemoryRecorder) -> Deps {
    let dr = Regional {
        region: "us-east-1".into(),
        rds: mock_client!(aws_sdk_rds, RuleMode::MatchAny, rules.dr_rds),
        docdb: if rules.dr_docdb_in_order {
            mock_client!(aws_sdk_docdb, RuleMode::Sequential, rules.dr_docdb)
        } else {
            mock_client!(aws_sdk_docdb, RuleMode::MatchAny, rules.dr_docdb)
        },
        kms: mock_client!(aws_sdk_kms, RuleMode::MatchAny, rules.dr_kms),
        s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, rules.dr_s3),
    };
    Deps {
        rds: mock_client!(aws_sdk_rds, RuleMode::MatchAny, rules.rds),
        docdb: mock_client!(aws_sdk_docdb, RuleMode::MatchAny, rules.docdb),
        elasticache: mock_client!(aws_sdk_elasticache, RuleMode::MatchAny, rules.elasticache),
        ec2: mock_client!(aws_sdk_ec2, RuleMode::MatchAny, []),
        secrets: mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, []),
        s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, rules.s3),
        events: mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, rules.events),
        cloudwatch: mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, rules.cloudwatch),
        regional: Arc::new(move |_region: &str| dr.clone()),
        credentials: Some(SharedCredentialsProvider::new(Credentials::for_tests())),
        emulator: false,
        recorder: Arc::new(recorder.clone()),
    }
}

/// The fixture deployment with a DR region, DocumentDB built, and a plan of `workflow`
/// for execution `exec-1` (the id `step::event` sends).
fn state(workflow: &str) -> (Fixture, MemoryRecorder) {
    let fixture = Fixture::test()
        .with_spec(|spec| spec["backup"] = json!({"dr_region": "us-east-1", "retention_days": 7}))
        .with_layers(|layers| {
            layers.databases.as_mut().unwrap().documentdb = Some(DatastoreEndpoint {
                identifier: format!("apiary-{}-docdb", fixtures::NAME),
                host: "docdb.internal".into(),
                port: 27017,
                secret_arn: "arn:aws:secretsmanager:us-west-2:123456789012:secret:docdb".into(),
                app_secret_arn: None,
            })
        });
    let recorder = fixture.state();
    let plan = Plan::new(workflow, "exec-1", StoreName::ALL.to_vec(), Utc::now());
    recorder
        .saved
        .lock()
        .unwrap()
        .get_mut(fixtures::NAME)
        .unwrap()
        .insert(plan::slot(workflow), serde_json::to_value(plan).unwrap());
    (fixture, recorder)
}

fn days_ago(days: i64) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_secs((Utc::now() - Duration::days(days)).timestamp())
}

fn rds_snapshot(id: &str, age_days: i64, ours: bool) -> aws_sdk_rds::types::DbSnapshot {
    let mut snapshot = aws_sdk_rds::types::DbSnapshot::builder()
        .db_snapshot_identifier(id)
        .db_snapshot_arn(format!("arn:aws:rds:us-west-2:123456789012:snapshot:{id}"))
        .status("available")
        .encrypted(true)
        .snapshot_create_time(days_ago(age_days));
    if ours {
        for (key, value) in [
            ("apiary:deployment", fixtures::NAME),
            ("apiary:backup", "snapshot"),
        ] {
            snapshot = snapshot.tag_list(
                aws_sdk_rds::types::Tag::builder()
                    .key(key)
                    .value(value)
                    .build(),
            );
        }
    }
    snapshot.build()
}

fn snapshot(id: &str, status: &str, age_days: i64) -> Snapshot {
    Snapshot {
        id: id.into(),
        arn: String::new(),
        region: "us-west-2".into(),
        status: status.into(),
        created_at: Some(Utc::now() - Duration::days(age_days)),
        encrypted: true,
        kms_key_id: None,
        tags: Default::default(),
        parts: 1,
    }
}

#[test]
fn pruning_keeps_the_newest_good_snapshot_and_anything_being_made() {
    let retention = Duration::days(7);
    let now = Utc::now();
    // Newest first, as listed: one being made, then good ones of 3, 10 and 30 days.
    let listed = [
        snapshot("making", "creating", 0),
        snapshot("d3", "available", 3),
        snapshot("d10", "available", 10),
        snapshot("d30", "available", 30),
    ];
    let expired: Vec<&str> = prune::expired(&listed, now, retention)
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(expired, ["d10", "d30"]);
    // Backups failing for weeks: the last good point stays however old it is; a failed
    // snapshot past retention goes.
    let stale = [
        snapshot("failed", "failed", 20),
        snapshot("d40", "available", 40),
        snapshot("d50", "available", 50),
    ];
    let expired: Vec<&str> = prune::expired(&stale, now, retention)
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(expired, ["failed", "d50"]);
    assert!(prune::expired(&[], now, retention).is_empty());
    // A prune run again: what the first run's delete left `deleting` is not asked again.
    let again = [
        snapshot("d3", "available", 3),
        snapshot("going", "deleting", 30),
        snapshot("d40", "available", 40),
    ];
    let expired: Vec<&str> = prune::expired(&again, now, retention)
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(expired, ["d40"]);
}

#[tokio::test]
async fn prune_deletes_only_its_own_snapshots_past_retention_in_each_region() {
    let (fixture, recorder) = state("backup");
    let pg = fixture
        .layers
        .databases()
        .unwrap()
        .postgres
        .as_ref()
        .unwrap()
        .identifier
        .clone();
    let listed = {
        let pg = pg.clone();
        mock!(aws_sdk_rds::Client::describe_db_snapshots)
            .match_requests(move |r| r.db_instance_identifier() == Some(pg.as_str()))
            .then_output(|| {
                aws_sdk_rds::operation::describe_db_snapshots::DescribeDbSnapshotsOutput::builder()
                    .db_snapshots(rds_snapshot("new", 1, true))
                    .db_snapshots(rds_snapshot("old", 30, true))
                    // A snapshot someone made by hand: never ours to delete.
                    .db_snapshots(rds_snapshot("by-hand", 90, false))
                    .build()
            })
    };
    let delete = mock!(aws_sdk_rds::Client::delete_db_snapshot)
        .match_requests(|r| r.db_snapshot_identifier() == Some("old"))
        .then_output(|| {
            aws_sdk_rds::operation::delete_db_snapshot::DeleteDbSnapshotOutput::builder().build()
        });
    // The DR region holds one copy, 60 days old: the newest good one there, kept.
    let dr_listed = mock!(aws_sdk_rds::Client::describe_db_snapshots).then_output(|| {
        aws_sdk_rds::operation::describe_db_snapshots::DescribeDbSnapshotsOutput::builder()
            .db_snapshots(rds_snapshot("dr-only", 60, true))
            .build()
    });
    let dr_delete = mock!(aws_sdk_rds::Client::delete_db_snapshot).then_output(|| {
        aws_sdk_rds::operation::delete_db_snapshot::DeleteDbSnapshotOutput::builder().build()
    });
    let no_docdb = mock!(aws_sdk_docdb::Client::describe_db_cluster_snapshots).then_output(|| {
        aws_sdk_docdb::operation::describe_db_cluster_snapshots::DescribeDbClusterSnapshotsOutput::builder().build()
    });
    let dr_no_docdb = mock!(aws_sdk_docdb::Client::describe_db_cluster_snapshots).then_output(|| {
        aws_sdk_docdb::operation::describe_db_cluster_snapshots::DescribeDbClusterSnapshotsOutput::builder().build()
    });
    let no_redis = mock!(aws_sdk_elasticache::Client::describe_snapshots).then_output(|| {
        aws_sdk_elasticache::operation::describe_snapshots::DescribeSnapshotsOutput::builder()
            .build()
    });
    let deps = deps(
        Rules {
            rds: vec![&listed, &delete],
            dr_rds: vec![&dr_listed, &dr_delete],
            docdb: vec![&no_docdb],
            dr_docdb: vec![&dr_no_docdb],
            elasticache: vec![&no_redis],
            ..Rules::default()
        },
        &recorder,
    );
    let out = handle(&deps, fixture.event("prune")).await.expect("prune");
    assert_eq!(delete.num_calls(), 1, "{out}");
    assert_eq!(
        dr_delete.num_calls(),
        0,
        "the newest good copy stays: {out}"
    );
    let deleted: Vec<&str> = out["deleted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(deleted, ["old"]);
    let kept: Vec<&str> = out["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        kept,
        ["new", "dr-only"],
        "the hand-made snapshot is not even listed: {out}"
    );
    let entries = recorder.entries.lock().unwrap();
    assert_eq!(entries[0].step, "backup");
    assert!(
        entries[0].detail.as_deref().unwrap().contains("1 deleted"),
        "{:?}",
        entries[0]
    );
}

#[tokio::test]
async fn a_documentdb_snapshot_is_copied_with_a_presigned_url_and_the_dr_key() {
    let (fixture, recorder) = state("backup");
    let mut plan: Plan =
        serde_json::from_value(recorder.saved(fixtures::NAME, "backup.plan").unwrap()).unwrap();
    plan.stores = vec![StoreName::Documentdb];
    recorder
        .saved
        .lock()
        .unwrap()
        .get_mut(fixtures::NAME)
        .unwrap()
        .insert("backup.plan".into(), serde_json::to_value(&plan).unwrap());
    let id = engine::snapshot_id(
        &apiary_core::Names::new(fixtures::NAME),
        StoreName::Documentdb,
        &plan,
    );
    let source_arn = format!("arn:aws:rds:us-west-2:123456789012:cluster-snapshot:{id}");
    let cluster_snapshot = |status: &str, arn: &str| {
        aws_sdk_docdb::types::DbClusterSnapshot::builder()
            .db_cluster_snapshot_identifier(&id)
            .db_cluster_snapshot_arn(arn)
            .status(status)
            .storage_encrypted(true)
            .snapshot_create_time(days_ago(0))
            .build()
    };
    let source = {
        let s = cluster_snapshot("available", &source_arn);
        mock!(aws_sdk_docdb::Client::describe_db_cluster_snapshots).then_output(move || {
            aws_sdk_docdb::operation::describe_db_cluster_snapshots::DescribeDbClusterSnapshotsOutput::builder()
                .db_cluster_snapshots(s.clone())
                .build()
        })
    };
    let tags = mock!(aws_sdk_docdb::Client::list_tags_for_resource).then_output(|| {
        aws_sdk_docdb::operation::list_tags_for_resource::ListTagsForResourceOutput::builder()
            .build()
    });
    // In the DR region: not there, then being copied.
    let not_copied = mock!(aws_sdk_docdb::Client::describe_db_cluster_snapshots)
        .then_error(|| {
            aws_sdk_docdb::operation::describe_db_cluster_snapshots::DescribeDBClusterSnapshotsError::DbClusterSnapshotNotFoundFault(
                aws_sdk_docdb::types::error::DbClusterSnapshotNotFoundFault::builder().build(),
            )
        });
    let copying = {
        let s = cluster_snapshot(
            "copying",
            "arn:aws:rds:us-east-1:123456789012:cluster-snapshot:copy",
        );
        mock!(aws_sdk_docdb::Client::describe_db_cluster_snapshots).then_output(move || {
            aws_sdk_docdb::operation::describe_db_cluster_snapshots::DescribeDbClusterSnapshotsOutput::builder()
                .db_cluster_snapshots(s.clone())
                .build()
        })
    };
    let copy = {
        let source_arn = source_arn.clone();
        mock!(aws_sdk_docdb::Client::copy_db_cluster_snapshot)
            .match_requests(move |r| {
                let url = r.pre_signed_url().unwrap_or_default();
                r.source_db_cluster_snapshot_identifier() == Some(source_arn.as_str())
                    && r.kms_key_id() == Some("arn:aws:kms:us-east-1:123456789012:key/dr")
                    && url.starts_with("https://rds.us-west-2.amazonaws.com/?Action=CopyDBClusterSnapshot")
                    && url.contains("DestinationRegion=us-east-1")
                    && url.contains("X-Amz-Signature=")
            })
            .then_output(|| {
                aws_sdk_docdb::operation::copy_db_cluster_snapshot::CopyDbClusterSnapshotOutput::builder().build()
            })
    };
    let dr_tags = mock!(aws_sdk_docdb::Client::list_tags_for_resource).then_output(|| {
        aws_sdk_docdb::operation::list_tags_for_resource::ListTagsForResourceOutput::builder()
            .build()
    });
    let key = mock!(aws_sdk_kms::Client::describe_key)
        .match_requests(|r| r.key_id() == Some("alias/apiary/acme-prod/dr"))
        .then_output(|| {
            aws_sdk_kms::operation::describe_key::DescribeKeyOutput::builder()
                .key_metadata(
                    aws_sdk_kms::types::KeyMetadata::builder()
                        .key_id("dr")
                        .arn("arn:aws:kms:us-east-1:123456789012:key/dr")
                        .build()
                        .unwrap(),
                )
                .build()
        });
    let deps = deps(
        Rules {
            docdb: vec![&source, &tags],
            dr_docdb: vec![&not_copied, &copy, &copying, &dr_tags],
            dr_docdb_in_order: true,
            dr_kms: vec![&key],
            ..Rules::default()
        },
        &recorder,
    );
    let out = handle(&deps, fixture.event("copy-dr"))
        .await
        .expect("copy-dr");
    assert_eq!(copy.num_calls(), 1, "{out}");
    assert_eq!(out["ready"], json!(false), "a copy takes time: {out}");
    assert!(
        out["pending"][0].as_str().unwrap().contains("copying"),
        "{out}"
    );
}

#[tokio::test]
async fn without_export_buckets_redis_is_reported_without_a_dr_copy_never_as_copied() {
    let (fixture, recorder) = state("backup");
    only_redis(&recorder);
    // No ElastiCache or S3 call may be made for it: there is no bucket to export into.
    let export = mock!(aws_sdk_elasticache::Client::copy_snapshot).then_output(|| {
        aws_sdk_elasticache::operation::copy_snapshot::CopySnapshotOutput::builder().build()
    });
    let deps = deps(
        Rules {
            elasticache: vec![&export],
            ..Rules::default()
        },
        &recorder,
    );
    for action in ["copy-dr", "copy-status"] {
        let out = handle(&deps, fixture.event(action)).await.expect(action);
        assert_eq!(out["ready"], json!(true), "{out}");
        assert_eq!(out["copies"], json!({}), "{out}");
        assert_eq!(
            out["skipped"]["redis"],
            json!(crate::copy::REDIS_NOT_COPIED),
            "{out}"
        );
    }
    assert_eq!(export.num_calls(), 0);
}

const PRIMARY_EXPORTS: &str = "apiary-acme-prod-exports-123456789012-us-west-2";
const DR_EXPORTS: &str = "apiary-acme-prod-exports-123456789012-us-east-1";

/// The plan of the fixture's backup run, reduced to Redis.
fn only_redis(recorder: &MemoryRecorder) -> Plan {
    let mut plan: Plan =
        serde_json::from_value(recorder.saved(fixtures::NAME, "backup.plan").unwrap()).unwrap();
    plan.stores = vec![StoreName::Redis];
    recorder
        .saved
        .lock()
        .unwrap()
        .get_mut(fixtures::NAME)
        .unwrap()
        .insert("backup.plan".into(), serde_json::to_value(&plan).unwrap());
    plan
}

/// A backup run whose storage layer made the Redis export buckets (DR region us-east-1);
/// no DocumentDB. The Redis snapshot's id.
fn exports_state() -> (Fixture, MemoryRecorder, String) {
    let fixture = Fixture::test()
        .with_spec(|spec| spec["backup"] = json!({"dr_region": "us-east-1", "retention_days": 7}))
        .with_layers(|layers| {
            layers.storage.as_mut().unwrap().exports = Some(apiary_core::outputs::ExportBuckets {
                primary: PRIMARY_EXPORTS.into(),
                dr: DR_EXPORTS.into(),
                dr_region: "us-east-1".into(),
            })
        });
    let recorder = fixture.state();
    let plan = Plan::new("backup", "exec-1", vec![StoreName::Redis], Utc::now());
    recorder
        .saved
        .lock()
        .unwrap()
        .get_mut(fixtures::NAME)
        .unwrap()
        .insert(plan::slot("backup"), serde_json::to_value(&plan).unwrap());
    let id = engine::snapshot_id(
        &apiary_core::Names::new(fixtures::NAME),
        StoreName::Redis,
        &plan,
    );
    (fixture, recorder, id)
}

/// The tags the backup workflow gives a Redis snapshot, and one a person added.
fn redis_tags() -> Vec<(&'static str, &'static str)> {
    vec![
        ("apiary:deployment", fixtures::NAME),
        ("apiary:backup", "snapshot"),
        ("apiary:store", "redis"),
        ("apiary:sentinel", "s-1"),
        ("team", "data"),
    ]
}

/// The ElastiCache snapshot `id`, available, of one shard, with [`redis_tags`].
fn redis_source(id: &str) -> (Rule, Rule) {
    redis_source_with(id, "available", 1)
}

/// The ElastiCache snapshot `id` in `status`, of `shards` node groups.
fn redis_source_with(id: &str, status: &'static str, shards: usize) -> (Rule, Rule) {
    let described = {
        let id = id.to_owned();
        mock!(aws_sdk_elasticache::Client::describe_snapshots).then_output(move || {
            let mut snapshot = aws_sdk_elasticache::types::Snapshot::builder()
                .snapshot_name(&id)
                .arn(format!(
                    "arn:aws:elasticache:us-west-2:123456789012:snapshot:{id}"
                ))
                .snapshot_status(status);
            for shard in 1..=shards {
                snapshot = snapshot.node_snapshots(
                    aws_sdk_elasticache::types::NodeSnapshot::builder()
                        .node_group_id(format!("{shard:04}"))
                        .build(),
                );
            }
            aws_sdk_elasticache::operation::describe_snapshots::DescribeSnapshotsOutput::builder()
                .snapshots(snapshot.build())
                .build()
        })
    };
    let tags = mock!(aws_sdk_elasticache::Client::list_tags_for_resource).then_output(|| {
        let mut out =
            aws_sdk_elasticache::operation::list_tags_for_resource::ListTagsForResourceOutput::builder();
        for (key, value) in redis_tags() {
            out = out.tag_list(
                aws_sdk_elasticache::types::Tag::builder()
                    .key(key)
                    .value(value)
                    .build(),
            );
        }
        out.build()
    });
    (described, tags)
}

/// A listing of `keys` (each `days` old).
fn listing(keys: &[(&str, i64)]) -> aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output {
    let mut out = aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output::builder();
    for (key, days) in keys {
        out = out.contents(
            aws_sdk_s3::types::Object::builder()
                .key(*key)
                .last_modified(days_ago(*days))
                .build(),
        );
    }
    out.build()
}

fn object_tags(
    tags: &[(&str, &str)],
) -> aws_sdk_s3::operation::get_object_tagging::GetObjectTaggingOutput {
    let set = tags
        .iter()
        .map(|(k, v)| {
            aws_sdk_s3::types::Tag::builder()
                .key(*k)
                .value(*v)
                .build()
                .unwrap()
        })
        .collect();
    aws_sdk_s3::operation::get_object_tagging::GetObjectTaggingOutput::builder()
        .set_tag_set(Some(set))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_redis_snapshot_is_exported_tagged_and_done_when_its_replica_carries_the_tags() {
    let (fixture, recorder, id) = exports_state();
    let file = format!("{id}-0001.rdb");

    // copy-dr: nothing in either bucket; the export is started into the primary bucket.
    let (described, tags) = redis_source(&id);
    let no_replica = mock!(aws_sdk_s3::Client::list_objects_v2)
        .match_requests(|r| r.bucket() == Some(DR_EXPORTS))
        .then_output(|| listing(&[]));
    let not_exported = mock!(aws_sdk_s3::Client::list_objects_v2)
        .match_requests(|r| r.bucket() == Some(PRIMARY_EXPORTS))
        .then_output(|| listing(&[]));
    let export = {
        let id = id.clone();
        mock!(aws_sdk_elasticache::Client::copy_snapshot)
            .match_requests(move |r| {
                r.target_bucket() == Some(PRIMARY_EXPORTS)
                    && r.source_snapshot_name() == Some(id.as_str())
            })
            .then_output(|| {
                aws_sdk_elasticache::operation::copy_snapshot::CopySnapshotOutput::builder().build()
            })
    };
    let first = deps(
        Rules {
            elasticache: vec![&described, &tags, &export],
            s3: vec![&not_exported],
            dr_s3: vec![&no_replica],
            ..Rules::default()
        },
        &recorder,
    );
    let out = handle(&first, fixture.event("copy-dr"))
        .await
        .expect("copy-dr");
    assert_eq!(export.num_calls(), 1, "{out}");
    assert_eq!(out["ready"], json!(false), "{out}");
    assert!(
        out["pending"][0]
            .as_str()
            .unwrap()
            .contains("being exported"),
        "{out}"
    );

    // copy-status: the file is there, untagged, replicating. It gets the snapshot's
    // apiary tags (not the person's), and nothing is exported again.
    let (described, tags) = redis_source(&id);
    let exported = {
        let file = file.clone();
        mock!(aws_sdk_s3::Client::list_objects_v2)
            .match_requests(|r| r.bucket() == Some(PRIMARY_EXPORTS))
            .then_output(move || listing(&[(file.as_str(), 0)]))
    };
    let untagged = mock!(aws_sdk_s3::Client::get_object_tagging).then_output(|| object_tags(&[]));
    let tagged = mock!(aws_sdk_s3::Client::put_object_tagging)
        .match_requests(|r| {
            let set = r.tagging().map(|t| t.tag_set()).unwrap_or_default();
            set.iter()
                .any(|t| t.key() == "apiary:backup" && t.value() == "snapshot")
                && set
                    .iter()
                    .any(|t| t.key() == "apiary:sentinel" && t.value() == "s-1")
                && !set.iter().any(|t| t.key() == "team")
        })
        .then_output(|| {
            aws_sdk_s3::operation::put_object_tagging::PutObjectTaggingOutput::builder().build()
        });
    let replicating = mock!(aws_sdk_s3::Client::head_object).then_output(|| {
        aws_sdk_s3::operation::head_object::HeadObjectOutput::builder()
            .replication_status(aws_sdk_s3::types::ReplicationStatus::Pending)
            .build()
    });
    let again = mock!(aws_sdk_elasticache::Client::copy_snapshot).then_output(|| {
        aws_sdk_elasticache::operation::copy_snapshot::CopySnapshotOutput::builder().build()
    });
    let no_replica = mock!(aws_sdk_s3::Client::list_objects_v2).then_output(|| listing(&[]));
    let second = deps(
        Rules {
            elasticache: vec![&described, &tags, &again],
            s3: vec![&exported, &untagged, &tagged, &replicating],
            dr_s3: vec![&no_replica],
            ..Rules::default()
        },
        &recorder,
    );
    let out = handle(&second, fixture.event("copy-status"))
        .await
        .expect("copy-status");
    assert_eq!(out["ready"], json!(false), "{out}");
    assert_eq!(tagged.num_calls(), 1, "{out}");
    assert_eq!(again.num_calls(), 0, "{out}");
    assert!(
        out["pending"][0].as_str().unwrap().contains("PENDING"),
        "{out}"
    );

    // copy-status: the replica is in the DR bucket with the tags, as S3 replicated it
    // (SSE-S3): it is copied onto itself under the DR key, and not done yet.
    let replica = {
        let file = file.clone();
        mock!(aws_sdk_s3::Client::list_objects_v2)
            .match_requests(|r| r.bucket() == Some(DR_EXPORTS))
            .then_output(move || listing(&[(file.as_str(), 0)]))
    };
    let replica_tags = mock!(aws_sdk_s3::Client::get_object_tagging)
        .then_output(|| object_tags(&redis_tags()[..4]));
    let sse_s3 = mock!(aws_sdk_s3::Client::head_object).then_output(|| {
        aws_sdk_s3::operation::head_object::HeadObjectOutput::builder()
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256)
            .content_length(1024)
            .version_id("v-sse-s3")
            .last_modified(aws_smithy_types::DateTime::from_secs(1_796_000_000))
            .build()
    });
    // The replication time is kept in a tag before the copy renews the file's.
    let stamped = mock!(aws_sdk_s3::Client::put_object_tagging)
        .match_requests(|r| {
            let set = r.tagging().map(|t| t.tag_set()).unwrap_or_default();
            set.iter()
                .any(|t| t.key() == "apiary:replicated-at" && t.value() == "2026-11-30T00:53:20Z")
                && set.iter().any(|t| t.key() == "apiary:backup")
        })
        .then_output(|| {
            aws_sdk_s3::operation::put_object_tagging::PutObjectTaggingOutput::builder().build()
        });
    let reencrypt = {
        let file = file.clone();
        mock!(aws_sdk_s3::Client::copy_object)
            .match_requests(move |r| {
                r.bucket() == Some(DR_EXPORTS)
                    && r.key() == Some(file.as_str())
                    && r.copy_source() == Some(format!("{DR_EXPORTS}/{file}").as_str())
                    && r.server_side_encryption()
                        == Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                    && r.ssekms_key_id() == Some(DR_KEY)
                    && r.tagging_directive().is_none()
            })
            .then_output(|| aws_sdk_s3::operation::copy_object::CopyObjectOutput::builder().build())
    };
    let key = dr_key_rule();
    let third = deps(
        Rules {
            dr_s3: vec![&replica, &replica_tags, &sse_s3, &stamped, &reencrypt],
            dr_kms: vec![&key],
            ..Rules::default()
        },
        &recorder,
    );
    let out = handle(&third, fixture.event("copy-status"))
        .await
        .expect("copy-status");
    assert_eq!(reencrypt.num_calls(), 1, "{out}");
    assert_eq!(stamped.num_calls(), 1, "{out}");
    assert_eq!(out["ready"], json!(false), "{out}");
    assert!(
        out["pending"][0]
            .as_str()
            .unwrap()
            .contains("re-encrypted with the DR key"),
        "{out}"
    );

    // copy-status: the newest version is under the DR key; the SSE-S3 one is deleted,
    // that version only, and the copy is done, reported with the DR key.
    let replica = {
        let file = file.clone();
        mock!(aws_sdk_s3::Client::list_objects_v2)
            .match_requests(|r| r.bucket() == Some(DR_EXPORTS))
            .then_output(move || listing(&[(file.as_str(), 0)]))
    };
    let replica_tags = mock!(aws_sdk_s3::Client::get_object_tagging)
        .then_output(|| object_tags(&redis_tags()[..4]));
    let under_key = mock!(aws_sdk_s3::Client::head_object).then_output(|| {
        aws_sdk_s3::operation::head_object::HeadObjectOutput::builder()
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .ssekms_key_id(DR_KEY)
            .version_id("v-kms")
            .build()
    });
    let versions = {
        let file = file.clone();
        mock!(aws_sdk_s3::Client::list_object_versions).then_output(move || {
            let version = |id: &str, latest: bool| {
                aws_sdk_s3::types::ObjectVersion::builder()
                    .key(&file)
                    .version_id(id)
                    .is_latest(latest)
                    .build()
            };
            aws_sdk_s3::operation::list_object_versions::ListObjectVersionsOutput::builder()
                .versions(version("v-kms", true))
                .versions(version("v-sse-s3", false))
                .build()
        })
    };
    let old_version = mock!(aws_sdk_s3::Client::delete_object)
        .match_requests(|r| r.version_id() == Some("v-sse-s3"))
        .then_output(|| {
            aws_sdk_s3::operation::delete_object::DeleteObjectOutput::builder().build()
        });
    let key = dr_key_rule();
    let fourth = deps(
        Rules {
            dr_s3: vec![&replica, &replica_tags, &under_key, &versions, &old_version],
            dr_kms: vec![&key],
            ..Rules::default()
        },
        &recorder,
    );
    let out = handle(&fourth, fixture.event("copy-status"))
        .await
        .expect("copy-status");
    assert_eq!(old_version.num_calls(), 1, "{out}");
    assert_eq!(out["ready"], json!(true), "{out}");
    assert_eq!(out["copies"]["redis"]["id"], json!(id), "{out}");
    assert_eq!(out["copies"]["redis"]["kms_key_id"], json!(DR_KEY), "{out}");
    assert_eq!(
        out["copies"]["redis"]["region"],
        json!("us-east-1"),
        "{out}"
    );
}

const DR_KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/dr";

/// The DR key, found by its alias in the DR region.
fn dr_key_rule() -> Rule {
    mock!(aws_sdk_kms::Client::describe_key)
        .match_requests(|r| r.key_id() == Some("alias/apiary/acme-prod/dr"))
        .then_output(|| {
            aws_sdk_kms::operation::describe_key::DescribeKeyOutput::builder()
                .key_metadata(
                    aws_sdk_kms::types::KeyMetadata::builder()
                        .key_id("dr")
                        .arn(DR_KEY)
                        .build()
                        .unwrap(),
                )
                .build()
        })
}

/// The DR bucket holding one replica `file` of `size` bytes as S3 replication left it:
/// listed, tagged as replicated, SSE-S3 (the listing, tagging and head rules).
fn sse_s3_replica(file: &str, size: i64) -> [Rule; 3] {
    let listed = {
        let file = file.to_owned();
        mock!(aws_sdk_s3::Client::list_objects_v2)
            .then_output(move || listing(&[(file.as_str(), 0)]))
    };
    let tags = mock!(aws_sdk_s3::Client::get_object_tagging).then_output(|| {
        let mut tags = redis_tags()[..4].to_vec();
        tags.push(("apiary:replicated-at", "2026-11-29T00:00:00Z"));
        object_tags(&tags)
    });
    let head = mock!(aws_sdk_s3::Client::head_object).then_output(move || {
        aws_sdk_s3::operation::head_object::HeadObjectOutput::builder()
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256)
            .content_length(size)
            .version_id("v-sse-s3")
            .build()
    });
    [listed, tags, head]
}

/// A replica file over CopyObject's 5 GiB limit is copied in 1 GiB parts, with its tags
/// and under the DR key, a few parts per poll (the next poll resumes the upload by its
/// listed parts); a part that fails aborts the upload and fails the step naming the file.
#[tokio::test]
async fn a_replica_over_five_gib_is_re_encrypted_in_parts_across_polls_and_a_failed_part_aborts() {
    use aws_sdk_s3::operation::list_multipart_uploads::ListMultipartUploadsOutput;
    use aws_sdk_s3::operation::list_parts::ListPartsOutput;
    let (fixture, recorder, id) = exports_state();
    let file = format!("{id}-0001.rdb");
    let size: i64 = 5 * 1024 * 1024 * 1024 + 1;
    // `started`: the parts an earlier poll copied (0: no upload yet).
    let rules = |started: i32, fail_part: Option<i32>| {
        let [listed, tags, head] = sse_s3_replica(&file, size);
        let uploads = {
            let file = file.clone();
            mock!(aws_sdk_s3::Client::list_multipart_uploads).then_output(move || {
                let mut out = ListMultipartUploadsOutput::builder();
                if started > 0 {
                    out = out.uploads(
                        aws_sdk_s3::types::MultipartUpload::builder()
                            .key(&file)
                            .upload_id("up-1")
                            .build(),
                    );
                }
                out.build()
            })
        };
        let create = mock!(aws_sdk_s3::Client::create_multipart_upload)
            .match_requests(|r| {
                r.ssekms_key_id() == Some(DR_KEY)
                    && r.tagging().is_some_and(|t| t.contains("apiary%3Abackup=snapshot"))
            })
            .then_output(|| {
                aws_sdk_s3::operation::create_multipart_upload::CreateMultipartUploadOutput::builder()
                    .upload_id("up-1")
                    .build()
            });
        let parts = mock!(aws_sdk_s3::Client::list_parts).then_output(move || {
            let mut out = ListPartsOutput::builder();
            for n in 1..=started {
                out = out.parts(
                    aws_sdk_s3::types::Part::builder()
                        .part_number(n)
                        .e_tag(format!("e{n}"))
                        .build(),
                );
            }
            out.build()
        });
        let part = mock!(aws_sdk_s3::Client::upload_part_copy)
            .match_requests(move |r| {
                let n = r.part_number().unwrap_or_default();
                let start = i64::from(n - 1) * 1024 * 1024 * 1024;
                let end = (start + 1024 * 1024 * 1024).min(size) - 1;
                Some(n) != fail_part
                    && r.upload_id() == Some("up-1")
                    && r.copy_source_range() == Some(format!("bytes={start}-{end}").as_str())
            })
            .then_output(|| {
                aws_sdk_s3::operation::upload_part_copy::UploadPartCopyOutput::builder()
                    .copy_part_result(
                        aws_sdk_s3::types::CopyPartResult::builder()
                            .e_tag("e")
                            .build(),
                    )
                    .build()
            });
        let failing = mock!(aws_sdk_s3::Client::upload_part_copy)
            .match_requests(move |r| r.part_number() == fail_part)
            .then_error(|| {
                aws_sdk_s3::operation::upload_part_copy::UploadPartCopyError::generic(
                    aws_sdk_s3::error::ErrorMetadata::builder()
                        .code("InternalError")
                        .message("part failed")
                        .build(),
                )
            });
        let complete = mock!(aws_sdk_s3::Client::complete_multipart_upload)
            .match_requests(|r| {
                let parts = r.multipart_upload().map(|u| u.parts()).unwrap_or_default();
                parts.len() == 6
                    && parts
                        .iter()
                        .enumerate()
                        .all(|(i, p)| p.part_number() == Some(i as i32 + 1) && p.e_tag().is_some())
            })
            .then_output(|| {
                aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput::builder()
                    .build()
            });
        let abort = mock!(aws_sdk_s3::Client::abort_multipart_upload)
            .match_requests(|r| r.upload_id() == Some("up-1"))
            .then_output(|| {
                aws_sdk_s3::operation::abort_multipart_upload::AbortMultipartUploadOutput::builder()
                    .build()
            });
        vec![
            listed, tags, head, uploads, create, parts, part, failing, complete, abort,
        ]
    };
    let run = |rules: &Vec<Rule>| {
        let key = dr_key_rule();
        let d = deps(
            Rules {
                dr_s3: rules.iter().collect(),
                dr_kms: vec![&key],
                ..Rules::default()
            },
            &recorder,
        );
        let event = fixture.event("copy-status");
        async move { handle(&d, event).await }
    };
    let (create, part, complete, abort) = (4, 6, 8, 9);

    // First poll: the upload is made, three parts copied, nothing completed.
    let first = rules(0, None);
    let out = run(&first).await.expect("copy-status");
    assert_eq!(out["ready"], json!(false), "{out}");
    assert!(
        out["pending"][0].as_str().unwrap().contains("3 of 6 parts"),
        "{out}"
    );
    assert_eq!(first[create].num_calls(), 1);
    assert_eq!(first[part].num_calls(), 3);
    assert_eq!(first[complete].num_calls(), 0);

    // Second poll: the same upload resumed from its listed parts, completed.
    let second = rules(3, None);
    let out = run(&second).await.expect("copy-status");
    assert_eq!(out["ready"], json!(false), "{out}");
    assert_eq!(second[create].num_calls(), 0, "resumed, not started again");
    assert_eq!(second[part].num_calls(), 3);
    assert_eq!(second[complete].num_calls(), 1);
    assert_eq!(second[abort].num_calls(), 0);

    // A part that fails: the upload is aborted and the step fails naming the part.
    let failed = rules(0, Some(2));
    let err = run(&failed)
        .await
        .expect_err("a failed part fails the step");
    assert!(err.to_string().contains(&format!("{file} part 2")), "{err}");
    assert_eq!(failed[abort].num_calls(), 1, "the upload is aborted");
    assert_eq!(failed[complete].num_calls(), 0);
}

/// copy-status on an exported file whose replication `status` is as given.
async fn replication_ends(status: Option<aws_sdk_s3::types::ReplicationStatus>) -> String {
    let (fixture, recorder, id) = exports_state();
    let file = format!("{id}-0001.rdb");
    let (described, tags) = redis_source(&id);
    let exported = mock!(aws_sdk_s3::Client::list_objects_v2)
        .match_requests(|r| r.bucket() == Some(PRIMARY_EXPORTS))
        .then_output(move || listing(&[(file.as_str(), 0)]));
    let current = mock!(aws_sdk_s3::Client::get_object_tagging)
        .then_output(|| object_tags(&redis_tags()[..4]));
    let head = mock!(aws_sdk_s3::Client::head_object).then_output(move || {
        aws_sdk_s3::operation::head_object::HeadObjectOutput::builder()
            .set_replication_status(status.clone())
            .build()
    });
    let no_replica = mock!(aws_sdk_s3::Client::list_objects_v2).then_output(|| listing(&[]));
    let tagged = mock!(aws_sdk_s3::Client::put_object_tagging).then_output(|| {
        aws_sdk_s3::operation::put_object_tagging::PutObjectTaggingOutput::builder().build()
    });
    let deps = deps(
        Rules {
            elasticache: vec![&described, &tags],
            s3: vec![&exported, &current, &tagged, &head],
            dr_s3: vec![&no_replica],
            ..Rules::default()
        },
        &recorder,
    );
    let err = handle(&deps, fixture.event("copy-status"))
        .await
        .expect_err("a replication that cannot finish fails the step");
    assert_eq!(err.name(), ErrorName::Fatal, "{err}");
    err.to_string()
}

#[tokio::test]
async fn a_failed_or_impossible_replication_fails_the_step_naming_the_file() {
    let failed = replication_ends(Some(aws_sdk_s3::types::ReplicationStatus::Failed)).await;
    assert!(
        failed.contains("FAILED") && failed.contains("-0001.rdb"),
        "{failed}"
    );
    let never = replication_ends(None).await;
    assert!(
        never.contains("no replication status") && never.contains("-0001.rdb"),
        "{never}"
    );
}

/// copy-status on a Redis snapshot in `status` of `shards` shards, with `exported` of its
/// files in the primary export bucket and none replicated; `copy_snapshot` answers the
/// export (start) requests.
async fn export_status(
    status: &'static str,
    shards: usize,
    exported: usize,
    copy_snapshot: &Rule,
) -> Result<serde_json::Value> {
    let (fixture, recorder, id) = exports_state();
    let (described, tags) = redis_source_with(&id, status, shards);
    let files: Vec<String> = (1..=exported).map(|n| format!("{id}-{n:04}.rdb")).collect();
    let primary = mock!(aws_sdk_s3::Client::list_objects_v2)
        .match_requests(|r| r.bucket() == Some(PRIMARY_EXPORTS))
        .then_output(move || {
            let keys: Vec<(&str, i64)> = files.iter().map(|f| (f.as_str(), 0)).collect();
            listing(&keys)
        });
    let no_replica = mock!(aws_sdk_s3::Client::list_objects_v2).then_output(|| listing(&[]));
    let deps = deps(
        Rules {
            elasticache: vec![&described, &tags, copy_snapshot],
            s3: vec![&primary],
            dr_s3: vec![&no_replica],
            ..Rules::default()
        },
        &recorder,
    );
    handle(&deps, fixture.event("copy-status")).await
}

#[tokio::test]
async fn an_export_is_whole_only_with_a_file_per_shard_and_restarted_when_it_wrote_nothing() {
    let never = mock!(aws_sdk_elasticache::Client::copy_snapshot).then_output(|| {
        aws_sdk_elasticache::operation::copy_snapshot::CopySnapshotOutput::builder().build()
    });
    // Two shards, one file so far, still exporting: wait, start nothing.
    let out = export_status("exporting", 2, 1, &never)
        .await
        .expect("waits");
    assert_eq!(out["ready"], json!(false), "{out}");
    assert!(
        out["pending"][0].as_str().unwrap().contains("1 of 2 files"),
        "{out}"
    );
    assert_eq!(never.num_calls(), 0);
    // The export ended with one of two files: named, never taken for a copy.
    let err = export_status("available", 2, 1, &never)
        .await
        .expect_err("an incomplete export fails the step");
    assert!(err.to_string().contains("1 of its 2 files"), "{err}");
    // The export ended without writing anything: copy-status asks again.
    let again = mock!(aws_sdk_elasticache::Client::copy_snapshot)
        .match_requests(|r| r.target_bucket() == Some(PRIMARY_EXPORTS))
        .then_output(|| {
            aws_sdk_elasticache::operation::copy_snapshot::CopySnapshotOutput::builder().build()
        });
    let out = export_status("available", 1, 0, &again)
        .await
        .expect("asks again");
    assert_eq!(again.num_calls(), 1, "{out}");
    assert_eq!(out["ready"], json!(false), "{out}");
    // An earlier attempt's export already wrote the files under that name: started.
    let lost = mock!(aws_sdk_elasticache::Client::copy_snapshot).then_error(|| {
        aws_sdk_elasticache::operation::copy_snapshot::CopySnapshotError::generic(
            ErrorMetadata::builder()
                .code("InvalidParameterValue")
                .message("The S3 bucket x already contains an object with key y-0001.rdb.")
                .build(),
        )
    });
    let out = export_status("available", 1, 0, &lost)
        .await
        .expect("taken as started");
    assert_eq!(out["ready"], json!(false), "{out}");
}

#[tokio::test]
async fn a_replica_missing_a_shard_is_no_restorable_point() {
    let (fixture, recorder, id) = exports_state();
    let first = format!("{id}-0001.rdb");
    // One of two files replicated, with the tags saying two make it whole.
    let replica = mock!(aws_sdk_s3::Client::list_objects_v2)
        .match_requests(|r| r.bucket() == Some(DR_EXPORTS))
        .then_output(move || listing(&[(first.as_str(), 0)]));
    let replica_tags = mock!(aws_sdk_s3::Client::get_object_tagging).then_output(|| {
        let mut tags = redis_tags()[..4].to_vec();
        tags.push(("apiary:parts", "2"));
        object_tags(&tags)
    });
    let (described, tags) = redis_source_with(&id, "available", 2);
    let primary = {
        let id = id.clone();
        mock!(aws_sdk_s3::Client::list_objects_v2)
            .match_requests(|r| r.bucket() == Some(PRIMARY_EXPORTS))
            .then_output(move || listing(&[(format!("{id}-0001.rdb").as_str(), 0)]))
    };
    let deps = deps(
        Rules {
            elasticache: vec![&described, &tags],
            s3: vec![&primary],
            dr_s3: vec![&replica, &replica_tags],
            ..Rules::default()
        },
        &recorder,
    );
    // The primary bucket has one of two files and the export is over: the step fails,
    // never reporting the half replica as the copy.
    let err = handle(&deps, fixture.event("copy-status"))
        .await
        .expect_err("half an export is no copy");
    assert!(err.to_string().contains("1 of its 2 files"), "{err}");
    // And the ledger's DR point for Redis is not the half replica.
    let clients_regional = (deps.regional)("us-east-1");
    let dr = Clients::dr(&clients_regional, &fixture.layers);
    let listed = dr
        .list(StoreName::Redis, "unused", fixtures::NAME)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].status, "incomplete");
    assert!(!listed[0].available());
}

#[tokio::test]
async fn an_export_file_the_account_cannot_read_is_named_with_the_likely_cause() {
    let (fixture, recorder, id) = exports_state();
    let (described, tags) = redis_source(&id);
    let file = format!("{id}-0001.rdb");
    let exported = mock!(aws_sdk_s3::Client::list_objects_v2)
        .match_requests(|r| r.bucket() == Some(PRIMARY_EXPORTS))
        .then_output(move || listing(&[(file.as_str(), 0)]));
    let denied = mock!(aws_sdk_s3::Client::get_object_tagging).then_error(|| {
        aws_sdk_s3::operation::get_object_tagging::GetObjectTaggingError::generic(
            ErrorMetadata::builder()
                .code("AccessDenied")
                .message("Access Denied")
                .build(),
        )
    });
    let no_replica = mock!(aws_sdk_s3::Client::list_objects_v2).then_output(|| listing(&[]));
    let deps = deps(
        Rules {
            elasticache: vec![&described, &tags],
            s3: vec![&exported, &denied],
            dr_s3: vec![&no_replica],
            ..Rules::default()
        },
        &recorder,
    );
    let err = handle(&deps, fixture.event("copy-status"))
        .await
        .expect_err("fails");
    assert_eq!(err.name(), ErrorName::Fatal, "{err}");
    assert!(
        err.to_string()
            .contains("without giving the bucket owner full control"),
        "{err}"
    );
}

#[tokio::test]
async fn prune_deletes_every_version_of_a_dr_replica_past_retention_never_the_newest() {
    let (fixture, recorder, _) = exports_state();
    let empty_rds = mock!(aws_sdk_rds::Client::describe_db_snapshots).then_output(|| {
        aws_sdk_rds::operation::describe_db_snapshots::DescribeDbSnapshotsOutput::builder().build()
    });
    let dr_empty_rds = mock!(aws_sdk_rds::Client::describe_db_snapshots).then_output(|| {
        aws_sdk_rds::operation::describe_db_snapshots::DescribeDbSnapshotsOutput::builder().build()
    });
    let no_redis = mock!(aws_sdk_elasticache::Client::describe_snapshots).then_output(|| {
        aws_sdk_elasticache::operation::describe_snapshots::DescribeSnapshotsOutput::builder()
            .build()
    });
    // Two replicas of ours, 1 and 30 days old, and a file that is no export.
    let replicas = mock!(aws_sdk_s3::Client::list_objects_v2)
        .match_requests(|r| r.bucket() == Some(DR_EXPORTS) && r.prefix().is_none())
        .then_output(|| {
            listing(&[
                ("apiary-acme-prod-redis-new-0001.rdb", 1),
                ("apiary-acme-prod-redis-old-0001.rdb", 30),
                ("apiary-acme-prod-redis-old-0002.rdb", 30),
                ("notes.txt", 90),
            ])
        });
    let ours = mock!(aws_sdk_s3::Client::get_object_tagging)
        .then_output(|| object_tags(&redis_tags()[..4]));
    let versions = mock!(aws_sdk_s3::Client::list_object_versions)
        .match_requests(|r| r.prefix() == Some("apiary-acme-prod-redis-old-"))
        .then_output(|| {
            aws_sdk_s3::operation::list_object_versions::ListObjectVersionsOutput::builder()
                .versions(
                    aws_sdk_s3::types::ObjectVersion::builder()
                        .key("apiary-acme-prod-redis-old-0001.rdb")
                        .version_id("v1")
                        .build(),
                )
                .versions(
                    aws_sdk_s3::types::ObjectVersion::builder()
                        .key("apiary-acme-prod-redis-old-0002.rdb")
                        .version_id("v2")
                        .build(),
                )
                .build()
        });
    let delete = mock!(aws_sdk_s3::Client::delete_object)
        .match_requests(|r| {
            r.key()
                .is_some_and(|k| k.starts_with("apiary-acme-prod-redis-old-"))
                && r.version_id().is_some()
        })
        .then_output(|| {
            aws_sdk_s3::operation::delete_object::DeleteObjectOutput::builder().build()
        });
    let deps = deps(
        Rules {
            rds: vec![&empty_rds],
            dr_rds: vec![&dr_empty_rds],
            elasticache: vec![&no_redis],
            dr_s3: vec![&replicas, &ours, &versions, &delete],
            ..Rules::default()
        },
        &recorder,
    );
    let out = handle(&deps, fixture.event("prune")).await.expect("prune");
    assert_eq!(delete.num_calls(), 2, "both files' versions: {out}");
    let ids = |field: &str| -> Vec<String> {
        out[field]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                format!(
                    "{}/{}",
                    d["region"].as_str().unwrap(),
                    d["id"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        ids("deleted"),
        ["us-east-1/apiary-acme-prod-redis-old"],
        "{out}"
    );
    assert_eq!(
        ids("kept"),
        ["us-east-1/apiary-acme-prod-redis-new"],
        "{out}"
    );
}

#[test]
fn an_export_file_names_its_snapshot() {
    assert_eq!(
        engine::export_snapshot_id("apiary-acme-prod-redis-20261206-ab12-0001.rdb"),
        Some("apiary-acme-prod-redis-20261206-ab12")
    );
    assert_eq!(engine::export_snapshot_id("x-0002.rdb"), Some("x"));
    assert_eq!(engine::export_snapshot_id("apiary-acme-redis.rdb"), None);
    assert_eq!(
        engine::export_snapshot_id("apiary-acme-prod-redis-0001.txt"),
        None
    );
    assert_eq!(engine::export_snapshot_id("-0001.rdb"), None);
    assert_eq!(engine::export_snapshot_id("x-00a1.rdb"), None);
}

#[test]
fn a_verdict_is_passed_only_when_every_tested_store_says_so() {
    assert_eq!(
        report::verdict(Some(&json!({"verified": true}))),
        (Some(true), None)
    );
    let (failed, note) = report::verdict(Some(
        &json!({"verified": false, "mismatch": "sentinel differs"}),
    ));
    assert_eq!(
        (failed, note.as_deref()),
        (Some(false), Some("sentinel differs"))
    );
    let (local, note) = report::verdict(Some(&json!({"verified": null})));
    assert_eq!(local, None);
    assert!(note.unwrap().contains("not possible locally"));
    assert_eq!(report::verdict(None).0, None);
    assert_eq!(report::overall(&[Some(true), Some(true)]), Some(true));
    assert_eq!(
        report::overall(&[Some(true), None]),
        None,
        "never passed without a check"
    );
    assert_eq!(report::overall(&[None, Some(false)]), Some(false));
    assert_eq!(report::overall(&[]), None);
}

/// Postgres restored `started` ago from a snapshot taken `snapshot` ago that holds
/// sentinel `s-1`, as the restore step of execution `exec-1` keeps it.
fn restored_postgres(recorder: &MemoryRecorder, started: Duration, snapshot: Duration) {
    recorder
        .saved
        .lock()
        .unwrap()
        .get_mut(fixtures::NAME)
        .unwrap()
        .insert(
            "restore-test.postgres".into(),
            json!({"execution_id": "exec-1", "status": "available", "snapshot_id": "snap",
               "snapshot_created_at": (Utc::now() - snapshot).to_rfc3339(),
               "restore_started_at": (Utc::now() - started).to_rfc3339(), "sentinel_id": "s-1"}),
        );
}

/// The report step's clients: EventBridge and CloudWatch answer with `event`, `metrics`.
fn report_deps(recorder: &MemoryRecorder, event: &Rule, metrics: &Rule) -> Deps {
    deps(
        Rules {
            events: vec![event],
            cloudwatch: vec![metrics],
            ..Rules::default()
        },
        recorder,
    )
}

/// The report step's event with the verifier's `output` for Postgres.
fn report_of(fixture: &Fixture, output: serde_json::Value) -> serde_json::Value {
    let mut input = fixture.event("report");
    input["options"] = json!({"verification": {"verify_postgres": {"output": output}}});
    input
}

#[tokio::test]
async fn a_failed_check_is_reported_then_fails_the_step() {
    let (fixture, recorder) = state("restore-test");
    restored_postgres(&recorder, Duration::minutes(12), Duration::hours(5));
    let event = mock!(aws_sdk_eventbridge::Client::put_events)
        .match_requests(|r| {
            r.entries().iter().any(|e| {
                e.source() == Some("apiary")
                    && e.detail().is_some_and(|d| d.contains("\"passed\":false"))
            })
        })
        .then_output(|| {
            aws_sdk_eventbridge::operation::put_events::PutEventsOutput::builder()
                .failed_entry_count(0)
                .build()
        });
    let metrics = mock!(aws_sdk_cloudwatch::Client::put_metric_data)
        .match_requests(|r| {
            r.namespace() == Some("Apiary/RestoreTest")
                && r.metric_data()
                    .iter()
                    .any(|m| m.metric_name() == Some("Passed") && m.value() == Some(0.0))
                && r.metric_data().iter().any(|m| {
                    m.metric_name() == Some("RpoSeconds")
                        && m.value().is_some_and(|v| (17_000.0..17_500.0).contains(&v))
                })
        })
        .then_output(|| {
            aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataOutput::builder().build()
        });
    let deps = report_deps(&recorder, &event, &metrics);
    let input = report_of(
        &fixture,
        json!({"verified": false, "checked": ["sentinel"], "mismatch": "sentinel s-1 not found"}),
    );
    let err = handle(&deps, input).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(
        err.to_string().contains("postgres: sentinel s-1 not found"),
        "{err}"
    );
    assert_eq!(event.num_calls(), 1, "reported before failing");
    assert_eq!(metrics.num_calls(), 1);
    let entries = recorder.entries.lock().unwrap();
    assert_eq!(
        (entries[0].step.as_str(), entries[0].outcome.as_str()),
        ("restore-test", "failed")
    );
}

#[tokio::test]
async fn a_step_without_its_runs_plan_is_refused_before_any_call() {
    let fixture = Fixture::test();
    let recorder = fixture.state();
    let deps = deps(Rules::default(), &recorder);
    for action in ["snapshot", "copy-dr", "prune", "restore", "report"] {
        let err = handle(&deps, fixture.event(action)).await.unwrap_err();
        assert_eq!(err.name(), ErrorName::InvalidInput, "{action}");
        assert!(
            err.to_string().contains("plan step runs first"),
            "{action}: {err}"
        );
    }
    let mut bad = fixture.event("plan");
    bad["options"] = json!({"workflow": "backup", "input": {"stores": ["mysql"]}});
    let err = handle(&deps, bad).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
}

#[tokio::test]
async fn a_snapshot_step_run_again_finds_its_snapshots_and_creates_nothing() {
    let (fixture, recorder) = state("backup");
    let mut plan: Plan =
        serde_json::from_value(recorder.saved(fixtures::NAME, "backup.plan").unwrap()).unwrap();
    plan.stores = vec![StoreName::Postgres];
    recorder
        .saved
        .lock()
        .unwrap()
        .get_mut(fixtures::NAME)
        .unwrap()
        .insert("backup.plan".into(), serde_json::to_value(&plan).unwrap());
    let id = engine::snapshot_id(
        &apiary_core::Names::new(fixtures::NAME),
        StoreName::Postgres,
        &plan,
    );
    let found = {
        let id = id.clone();
        mock!(aws_sdk_rds::Client::describe_db_snapshots)
            .match_requests(move |r| r.db_snapshot_identifier() == Some(id.as_str()))
            .then_output(move || {
                aws_sdk_rds::operation::describe_db_snapshots::DescribeDbSnapshotsOutput::builder()
                    .db_snapshots(rds_snapshot("made-by-the-first-attempt", 0, true))
                    .build()
            })
    };
    let create = mock!(aws_sdk_rds::Client::create_db_snapshot).then_output(|| {
        aws_sdk_rds::operation::create_db_snapshot::CreateDbSnapshotOutput::builder().build()
    });
    let deps = deps(
        Rules {
            rds: vec![&found, &create],
            ..Rules::default()
        },
        &recorder,
    );
    let out = handle(&deps, fixture.event("snapshot"))
        .await
        .expect("snapshot");
    assert_eq!(create.num_calls(), 0, "{out}");
    assert_eq!(out["created"], json!([]));
    assert_eq!(out["ready"], json!(true), "{out}");
    assert_eq!(out["snapshots"]["postgres"]["encrypted"], json!(true));
    assert_eq!(recorder.entries.lock().unwrap()[0].outcome, "unchanged");
}

#[tokio::test]
async fn the_rpo_is_the_sentinels_age_when_the_restored_copy_holds_it() {
    let (fixture, recorder) = state("restore-test");
    restored_postgres(&recorder, Duration::minutes(10), Duration::hours(2));
    // The sentinel was written three hours ago, the snapshot taken later.
    let written_at = (Utc::now() - Duration::hours(3)).to_rfc3339();
    recorder
        .saved
        .lock()
        .unwrap()
        .get_mut(fixtures::NAME)
        .unwrap()
        .insert(
            "sentinel.postgres".into(),
            json!({"sentinel_id": "s-1", "written_at": written_at, "written": true}),
        );
    let event = mock!(aws_sdk_eventbridge::Client::put_events).then_output(|| {
        aws_sdk_eventbridge::operation::put_events::PutEventsOutput::builder()
            .failed_entry_count(0)
            .build()
    });
    let metrics = mock!(aws_sdk_cloudwatch::Client::put_metric_data)
        .match_requests(|r| {
            r.metric_data().iter().any(|m| {
                m.metric_name() == Some("RpoSeconds")
                    && m.value().is_some_and(|v| (10_150.0..10_250.0).contains(&v))
            })
        })
        .then_output(|| {
            aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataOutput::builder().build()
        });
    let deps = report_deps(&recorder, &event, &metrics);
    let input = report_of(&fixture, json!({"verified": true, "checked": ["sentinel"]}));
    let out = handle(&deps, input).await.expect("report");
    let postgres = &out["stores"]["postgres"];
    assert_eq!(postgres["rpo_from"], json!("the sentinel's time"), "{out}");
    let rpo = postgres["rpo_seconds"].as_i64().unwrap();
    assert!((10_150..10_250).contains(&rpo), "2h50m, not 1h50m: {out}");
    assert_eq!(metrics.num_calls(), 1, "{out}");
}

/// A re-encrypted replica file is as old as when S3 replicated it (its tag), not as
/// new as its copy: pruning and the RPO count from the replication.
#[tokio::test]
async fn a_re_encrypted_replica_keeps_the_age_of_its_replication() {
    let listed = mock!(aws_sdk_s3::Client::list_objects_v2)
        .then_output(|| listing(&[("apiary-acme-prod-redis-20261120-x-0001.rdb", 0)]));
    let replicated = days_ago(10)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap();
    let tags = mock!(aws_sdk_s3::Client::get_object_tagging).then_output(move || {
        let mut tags = redis_tags()[..4].to_vec();
        tags.push(("apiary:replicated-at", replicated.as_str()));
        object_tags(&tags)
    });
    let s3 = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&listed, &tags]);
    let replicas = engine::Replicas {
        s3: &s3,
        bucket: DR_EXPORTS.into(),
    };
    let found = replicas.listed("us-east-1", None).await.expect("listed");
    let age = Utc::now() - found[0].created_at.expect("a time");
    assert!(
        age > chrono::Duration::days(9) && age < chrono::Duration::days(11),
        "{age:?}"
    );
}

/// A 2 GiB replica file is copied in parts too, never by one CopyObject: S3 answers a
/// copy only when it is done, and one of several GiB would outlast the SDK's 30-second
/// attempt timeout.
#[tokio::test]
async fn a_replica_over_one_gib_is_never_copied_in_one_call() {
    let (fixture, recorder, id) = exports_state();
    let file = format!("{id}-0001.rdb");
    let [listed, tags, head] = sse_s3_replica(&file, 2 * 1024 * 1024 * 1024);
    let whole = mock!(aws_sdk_s3::Client::copy_object)
        .then_output(|| aws_sdk_s3::operation::copy_object::CopyObjectOutput::builder().build());
    let uploads = mock!(aws_sdk_s3::Client::list_multipart_uploads).then_output(|| {
        aws_sdk_s3::operation::list_multipart_uploads::ListMultipartUploadsOutput::builder().build()
    });
    let create = mock!(aws_sdk_s3::Client::create_multipart_upload).then_output(|| {
        aws_sdk_s3::operation::create_multipart_upload::CreateMultipartUploadOutput::builder()
            .upload_id("up-1")
            .build()
    });
    let parts = mock!(aws_sdk_s3::Client::list_parts)
        .then_output(|| aws_sdk_s3::operation::list_parts::ListPartsOutput::builder().build());
    let part = mock!(aws_sdk_s3::Client::upload_part_copy).then_output(|| {
        aws_sdk_s3::operation::upload_part_copy::UploadPartCopyOutput::builder()
            .copy_part_result(
                aws_sdk_s3::types::CopyPartResult::builder()
                    .e_tag("e")
                    .build(),
            )
            .build()
    });
    let complete = mock!(aws_sdk_s3::Client::complete_multipart_upload).then_output(|| {
        aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput::builder()
            .build()
    });
    let key = dr_key_rule();
    let d = deps(
        Rules {
            dr_s3: vec![
                &listed, &tags, &head, &whole, &uploads, &create, &parts, &part, &complete,
            ],
            dr_kms: vec![&key],
            ..Rules::default()
        },
        &recorder,
    );
    let out = handle(&d, fixture.event("copy-status"))
        .await
        .expect("copy-status");
    assert_eq!(whole.num_calls(), 0, "{out}");
    assert_eq!(part.num_calls(), 2, "{out}");
    assert_eq!(complete.num_calls(), 1, "{out}");
}
