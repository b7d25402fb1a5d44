//! `ensure-alarms` with mocked CloudWatch (the emulator does not accept this SDK's
//! CloudWatch requests): what each alarm watches, its threshold and its one action.

use std::sync::Mutex;

use aws_sdk_cloudwatch::Client as CloudWatch;
use aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput;
use aws_sdk_cloudwatch::operation::put_metric_alarm::{PutMetricAlarmInput, PutMetricAlarmOutput};
use aws_sdk_cloudwatch::types::{ComparisonOperator, MetricAlarm};
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
    handle_alert_knows_them_as_ours(&put);
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

const LB_ARN: &str = "arn:aws:elasticloadbalancing:us-west-2:123456789012:loadbalancer/app/k8s-ingest-4f1c/50dc6c495c0c9188";
const TG_ARN: &str = "arn:aws:elasticloadbalancing:us-west-2:123456789012:targetgroup/k8s-ingest-api/73e2d6bc24d8a067";

/// `ensure-alarms` with RDS and one Redis node answering: what it puts.
async fn put_with_rollout(rollout: Option<Value>) -> (Vec<PutMetricAlarmInput>, Value) {
    let instance = mock!(Rds::describe_db_instances).then_output(|| {
        DescribeDbInstancesOutput::builder()
            .db_instances(
                DbInstance::builder()
                    .db_instance_identifier("apiary-acme-postgres")
                    .db_instance_status("available")
                    .allocated_storage(100)
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
    let existing =
        mock!(CloudWatch::describe_alarms).then_output(|| DescribeAlarmsOutput::builder().build());
    let mocks = Mocks {
        cloudwatch: vec![&put_alarm, &existing],
        rds: vec![&instance],
        elasticache: vec![&group],
        ..Mocks::default()
    };
    let (mut deps, recorder) = mocks.deps();
    deps.alert_topic = Some(TOPIC.to_owned());
    if let Some(rollout) = rollout {
        apiary_core::step::Recorder::save_output(
            &recorder,
            "acme",
            apiary_core::outputs::ROLLOUT_SLOT,
            &rollout,
        )
        .await
        .unwrap();
    }
    let out = handle(&deps, event("ensure-alarms")).await.unwrap();
    let put = put.lock().unwrap().clone();
    handle_alert_knows_them_as_ours(&put);
    (put, out)
}

/// handle-alert records, closes and acts on an alarm only when it reads the name as this
/// deployment's: a name it does not know is dropped as another deployment's.
fn handle_alert_knows_them_as_ours(put: &[PutMetricAlarmInput]) {
    assert!(!put.is_empty());
    for alarm in put {
        let name = alarm.alarm_name().unwrap();
        assert!(
            apiary_core::alerts::is_deployment_alarm(name, "apiary-acme-"),
            "handle-alert would take {name} for another deployment's alarm"
        );
    }
}

#[tokio::test]
async fn the_load_balancer_gets_a_5xx_rate_alarm_and_one_per_target_group_once_it_serves() {
    let rollout = json!({"serving": {"load_balancer": {
        "arn": LB_ARN, "dns_name": "internal-k8s-ingest-4f1c.us-west-2.elb.amazonaws.com",
        "canonical_hosted_zone_id": "Z1H1FL5HABSF5", "scheme": "internal",
        "target_groups": [TG_ARN]
    }}});
    let (put, out) = put_with_rollout(Some(rollout)).await;
    assert_eq!(out["ready"], json!(true), "{out}");
    let rate = put
        .iter()
        .find(|p| p.alarm_name() == Some("apiary-acme-dp-lb-5xx"))
        .expect("the 5xx alarm");
    // A metric-math alarm: no metric of its own, the rate returned, its inputs on the
    // load balancer's dimension as CloudWatch names it.
    assert_eq!(rate.metric_name(), None);
    assert_eq!(rate.threshold(), Some(5.0));
    assert_eq!(rate.alarm_actions(), [TOPIC]);
    let returned: Vec<&str> = rate
        .metrics()
        .iter()
        .filter(|m| m.return_data() == Some(true))
        .filter_map(|m| m.expression())
        .collect();
    assert_eq!(returned.len(), 1, "{rate:?}");
    assert!(returned[0].contains(&format!(">= {}", crate::alarms::MIN_REQUESTS)));
    let inputs: Vec<(&str, &str)> = rate
        .metrics()
        .iter()
        .filter_map(|m| {
            let stat = m.metric_stat()?;
            let metric = stat.metric()?;
            assert_eq!(metric.namespace(), Some("AWS/ApplicationELB"));
            assert_eq!(stat.stat(), Some("Sum"));
            assert_eq!(
                metric.dimensions()[0].value(),
                Some("app/k8s-ingest-4f1c/50dc6c495c0c9188")
            );
            Some((m.id()?, metric.metric_name()?))
        })
        .collect();
    assert_eq!(
        inputs,
        [
            ("requests", "RequestCount"),
            ("elb", "HTTPCode_ELB_5XX_Count"),
            ("target", "HTTPCode_Target_5XX_Count")
        ]
    );
    let unhealthy = put
        .iter()
        .find(|p| p.alarm_name() == Some("apiary-acme-dp-lb-unhealthy-targets"))
        .expect("the unhealthy-targets alarm");
    assert_eq!(unhealthy.metric_name(), Some("UnHealthyHostCount"));
    let dimensions: Vec<(&str, &str)> = unhealthy
        .dimensions()
        .iter()
        .map(|d| (d.name().unwrap_or_default(), d.value().unwrap_or_default()))
        .collect();
    assert_eq!(
        dimensions,
        [
            ("TargetGroup", "targetgroup/k8s-ingest-api/73e2d6bc24d8a067"),
            ("LoadBalancer", "app/k8s-ingest-4f1c/50dc6c495c0c9188")
        ]
    );
}

#[tokio::test]
async fn a_target_group_with_no_healthy_target_has_its_own_alarm() {
    let rollout = json!({"serving": {"load_balancer": {
        "arn": LB_ARN, "dns_name": "internal-k8s-ingest-4f1c.us-west-2.elb.amazonaws.com",
        "canonical_hosted_zone_id": "Z1H1FL5HABSF5", "scheme": "internal",
        "target_groups": [TG_ARN, TG_ARN.replace("73e2d6bc24d8a067", "0000000000000002")]
    }}});
    let (put, _) = put_with_rollout(Some(rollout)).await;
    let none = put
        .iter()
        .find(|p| p.alarm_name() == Some("apiary-acme-dp-lb-no-healthy-targets"))
        .expect("the no-healthy-targets alarm");
    assert_eq!(none.metric_name(), Some("HealthyHostCount"));
    assert_eq!(none.threshold(), Some(1.0));
    assert_eq!(
        none.comparison_operator(),
        Some(&ComparisonOperator::LessThanThreshold)
    );
    // The second group's alarms are numbered.
    for name in [
        "apiary-acme-dp-lb-no-healthy-targets-2",
        "apiary-acme-dp-lb-unhealthy-targets-2",
    ] {
        let alarm = put
            .iter()
            .find(|p| p.alarm_name() == Some(name))
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(
            alarm.dimensions()[0].value(),
            Some("targetgroup/k8s-ingest-api/0000000000000002")
        );
    }
}

#[tokio::test]
async fn before_the_workloads_serve_the_load_balancer_alarms_are_skipped_saying_why() {
    let (put, out) = put_with_rollout(None).await;
    assert!(
        !put.iter()
            .any(|p| p.alarm_name().is_some_and(|n| n.contains("-lb-"))),
        "{put:?}"
    );
    let skipped = out["skipped"].to_string();
    assert!(skipped.contains("load balancer"), "{out}");
}

#[test]
fn the_metric_dimensions_are_the_arn_parts_cloudwatch_names() {
    use apiary_core::outputs::elb_metric_dimension;
    assert_eq!(
        elb_metric_dimension(LB_ARN),
        Some("app/k8s-ingest-4f1c/50dc6c495c0c9188")
    );
    assert_eq!(
        elb_metric_dimension(TG_ARN),
        Some("targetgroup/k8s-ingest-api/73e2d6bc24d8a067")
    );
    // A Network Load Balancer's metrics are another namespace: not these alarms.
    assert_eq!(
        elb_metric_dimension("arn:aws:elasticloadbalancing:us-west-2:1:loadbalancer/net/n/1"),
        None
    );
    assert_eq!(elb_metric_dimension("not-an-arn"), None);
}
