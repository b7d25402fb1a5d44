//! `ensure-alarms` with mocked CloudWatch (the emulator does not accept this SDK's
//! CloudWatch requests): what each alarm watches, its threshold and its one action.

use std::sync::Mutex;

use aws_sdk_cloudwatch::Client as CloudWatch;
use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
use aws_sdk_cloudwatch::operation::put_metric_alarm::{PutMetricAlarmInput, PutMetricAlarmOutput};
use aws_sdk_cloudwatch::types::MetricAlarm;
use aws_sdk_elasticache::Client as ElastiCache;
use aws_sdk_elasticache::operation::describe_replication_groups::DescribeReplicationGroupsOutput;
use aws_sdk_elasticache::types::ReplicationGroup;
use aws_sdk_rds::Client as Rds;
use aws_sdk_rds::operation::describe_db_instances::DescribeDbInstancesOutput;
use aws_sdk_rds::types::DbInstance;
use aws_smithy_mocks::mock;

use super::*;

const TOPIC: &str = "arn:aws:sns:us-west-2:123456789012:apiary-acme-alerts";

#[tokio::test]
async fn every_store_gets_its_alarms_telling_the_topic_and_a_stale_one_is_reported() {
    let instance = mock!(Rds::describe_db_instances).then_output(|| {
        DescribeDbInstancesOutput::builder()
            .db_instances(
                DbInstance::builder()
                    .db_instance_identifier("apiary-acme-postgres")
                    .db_instance_status("available")
                    .allocated_storage(200)
                    .build(),
            )
            .build()
    });
    let group = mock!(ElastiCache::describe_replication_groups).then_output(|| {
        DescribeReplicationGroupsOutput::builder()
            .replication_groups(
                ReplicationGroup::builder()
                    .replication_group_id("apiary-acme-redis")
                    .member_clusters("apiary-acme-redis-001")
                    .member_clusters("apiary-acme-redis-002")
                    .build(),
            )
            .build()
    });
    let put: std::sync::Arc<Mutex<Vec<PutMetricAlarmInput>>> = Default::default();
    let seen = put.clone();
    let put_alarm = mock!(CloudWatch::put_metric_alarm)
        .match_requests(move |r| {
            seen.lock().unwrap().push(r.clone());
            true
        })
        .then_output(|| PutMetricAlarmOutput::builder().build());
    let existing = mock!(CloudWatch::describe_alarms).then_output(|| {
        DescribeAlarmsOutput::builder()
            .metric_alarms(
                MetricAlarm::builder()
                    .alarm_name("apiary-acme-dp-redis-003-memory")
                    .build(),
            )
            .metric_alarms(
                MetricAlarm::builder()
                    .alarm_name("apiary-acme-dp-postgres-cpu")
                    .build(),
            )
            .build()
    });
    let mocks = Mocks {
        cloudwatch: vec![&put_alarm, &existing],
        rds: vec![&instance],
        elasticache: vec![&group],
        ..Mocks::default()
    };
    let (mut deps, _) = mocks.deps();
    deps.alert_topic = Some(TOPIC.to_owned());

    let out = handle(&deps, event("ensure-alarms")).await.unwrap();
    assert_eq!(out["ready"], json!(true), "{out}");
    assert_eq!(
        out["stale"],
        json!(["apiary-acme-dp-redis-003-memory"]),
        "{out}"
    );
    let put = put.lock().unwrap();
    let names: Vec<&str> = put.iter().filter_map(|p| p.alarm_name()).collect();
    for name in [
        "apiary-acme-dp-postgres-free-storage",
        "apiary-acme-dp-postgres-cpu",
        "apiary-acme-dp-postgres-connections",
        "apiary-acme-dp-redis-001-memory",
        "apiary-acme-dp-redis-001-evictions",
        "apiary-acme-dp-redis-002-memory",
        "apiary-acme-dp-redis-002-evictions",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    for alarm in put.iter() {
        assert_eq!(alarm.alarm_actions(), [TOPIC], "{alarm:?}");
        assert_eq!(alarm.ok_actions(), [TOPIC], "{alarm:?}");
        assert!(
            alarm
                .tags()
                .iter()
                .any(|t| t.key() == Some("apiary:deployment") && t.value() == Some("acme")),
            "{alarm:?}"
        );
    }
    let storage = put
        .iter()
        .find(|p| p.alarm_name() == Some("apiary-acme-dp-postgres-free-storage"))
        .unwrap();
    // 10 % of the 200 GiB RDS reports now, not of the preset's 100.
    assert_eq!(storage.threshold(), Some(20.0 * 1024.0 * 1024.0 * 1024.0));
    assert_eq!(storage.metric_name(), Some("FreeStorageSpace"));
    let dimensions: Vec<(&str, &str)> = storage
        .dimensions()
        .iter()
        .map(|d| (d.name().unwrap_or_default(), d.value().unwrap_or_default()))
        .collect();
    assert_eq!(
        dimensions,
        [("DBInstanceIdentifier", "apiary-acme-postgres")]
    );
    let evictions = put
        .iter()
        .find(|p| p.alarm_name() == Some("apiary-acme-dp-redis-002-evictions"))
        .unwrap();
    assert_eq!(
        evictions.dimensions()[0].value(),
        Some("apiary-acme-redis-002")
    );
}
