//! The data stores' own alarms (`ensure-alarms`): what tells a person, and handle-alert,
//! that a store is in trouble before the ingestion pods fail.
//!
//! | alarm | metric | fires when |
//! |---|---|---|
//! | `apiary-<name>-dp-postgres-free-storage` | AWS/RDS `FreeStorageSpace` | under 10 % of the allocated storage (handle-alert raises it) |
//! | `apiary-<name>-dp-postgres-cpu` | AWS/RDS `CPUUtilization` | above 80 % for 15 minutes |
//! | `apiary-<name>-dp-postgres-connections` | AWS/RDS `DatabaseConnections` | above 80 % of PostgreSQL's default `max_connections` for the class |
//! | `apiary-<name>-dp-<node>-memory` | AWS/ElastiCache `DatabaseMemoryUsagePercentage` | above 80 % for 15 minutes, per Redis node |
//! | `apiary-<name>-dp-<node>-evictions` | AWS/ElastiCache `Evictions` | any key evicted in 5 minutes, per Redis node |
//! | `apiary-<name>-dp-documentdb-cpu` | AWS/DocDB `CPUUtilization` | above 80 % for 15 minutes |
//! | `apiary-<name>-dp-lb-5xx` | AWS/ApplicationELB `HTTPCode_ELB_5XX_Count` + `HTTPCode_Target_5XX_Count` over `RequestCount` | above 5 % of requests for 10 minutes (judged only with [`MIN_REQUESTS`] or more in 5 minutes) |
//! | `apiary-<name>-dp-lb-unhealthy-targets` | AWS/ApplicationELB `UnHealthyHostCount` | an unhealthy target for 15 minutes, per target group |
//! | `apiary-<name>-dp-lb-no-healthy-targets` | AWS/ApplicationELB `HealthyHostCount` | no healthy target for 15 minutes, per target group |
//!
//! The load balancer's alarms exist once the workloads step has found the load balancer
//! the controller made (provision runs this step again after the workloads are serving);
//! until then they are skipped with the reason.
//!
//! Each alarm's actions are the deployment's alerts topic (when it fires and when it
//! clears); the stack's alarm rule also hands its state changes to handle-alert. The
//! `dp-` names keep them apart from the stack's own alarms, so teardown deletes exactly
//! these. `PutMetricAlarm` replaces an alarm of the same name, so every provision
//! converges them (the storage threshold follows the allocated storage it reads). An
//! alarm of a store the spec no longer has is reported as stale, not deleted: deleting
//! is teardown's right alone.

use apiary_core::outputs::{LoadBalancer, elb_metric_dimension};
use apiary_core::{Error, Names, Result};
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricStat, StandardUnit, Statistic,
    Tag,
};
use serde::Serialize;

use crate::Work;

/// The prefix of every data-plane alarm of a deployment.
pub fn prefix(names: &Names) -> String {
    names.resource("dp-")
}

/// One alarm, as PutMetricAlarm takes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Alarm {
    pub name: String,
    pub description: String,
    pub namespace: &'static str,
    pub metric: &'static str,
    pub dimensions: Vec<(&'static str, String)>,
    pub statistic: Statistic,
    pub unit: Option<StandardUnit>,
    pub threshold: f64,
    pub comparison: ComparisonOperator,
    /// Periods of 5 minutes evaluated (and all of them breaching) before it fires.
    pub periods: i32,
    /// A metric-math alarm: `expression` over the `inputs` (id, metric name, all of
    /// `namespace` with `dimensions` and `statistic`) instead of `metric` alone.
    pub math: Option<Math>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Math {
    pub expression: String,
    pub label: &'static str,
    pub inputs: Vec<(&'static str, &'static str)>,
}

/// What `ensure-alarms` made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlarmsReport {
    /// Every data-plane alarm the deployment has now.
    pub alarms: Vec<String>,
    /// The endpoint (the local emulator) cannot make alarms: none was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_emulated: Option<String>,
    /// The topic they tell; `None` when the function knows none (they then only change
    /// state, and the stack's rule still hands them to handle-alert).
    pub topic: Option<String>,
    /// Alarms of stores the spec no longer has: left for teardown.
    pub stale: Vec<String>,
    /// What has no alarm, and why.
    pub skipped: Vec<String>,
}

impl AlarmsReport {
    /// One line for the journal.
    pub fn detail(&self) -> String {
        let mut line = match &self.not_emulated {
            Some(why) => format!("no alarms: {why}"),
            None => format!("{} alarms", self.alarms.len()),
        };
        if !self.stale.is_empty() {
            line.push_str(&format!(
                "; stale (left for teardown): {}",
                self.stale.join(", ")
            ));
        }
        if !self.skipped.is_empty() {
            line.push_str(&format!("; no alarm for {}", self.skipped.join("; ")));
        }
        line
    }
}

/// PostgreSQL's default `max_connections` is `LEAST(DBInstanceClassMemory / 9531392,
/// 5000)`; the class's memory in GiB, for the classes the presets and common specs use.
fn class_memory_gib(class: &str) -> Option<u64> {
    Some(match class {
        "db.t3.micro" | "db.t4g.micro" => 1,
        "db.t3.small" | "db.t4g.small" => 2,
        "db.t3.medium" | "db.t4g.medium" => 4,
        "db.t3.large" | "db.t4g.large" | "db.m6g.large" | "db.m7g.large" | "db.m5.large" => 8,
        "db.r6g.large" | "db.r7g.large" | "db.r5.large" | "db.m6g.xlarge" | "db.m7g.xlarge" => 16,
        "db.r6g.xlarge" | "db.r7g.xlarge" | "db.r5.xlarge" | "db.m6g.2xlarge" => 32,
        "db.r6g.2xlarge" | "db.r7g.2xlarge" | "db.r5.2xlarge" => 64,
        _ => return None,
    })
}

/// 80 % of the class's default `max_connections`. AWS counts `DBInstanceClassMemory`
/// net of what the OS and RDS reserve, about a tenth: so 90 % of the class's memory.
pub(crate) fn connections_threshold(class: &str) -> Option<f64> {
    let memory = class_memory_gib(class)? * 1024 * 1024 * 1024;
    let max_connections = (memory * 9 / 10 / 9_531_392).min(5000);
    Some((max_connections * 8 / 10) as f64)
}

/// The alarms the deployment's stores should have. `allocated_gib` is the PostgreSQL
/// instance's allocated storage as RDS reports it now; `redis_nodes` the replication
/// group's member clusters; `documentdb` whether a DocumentDB cluster exists.
pub(crate) fn wanted(
    work: &Work<'_>,
    allocated_gib: Option<i32>,
    redis_nodes: &[String],
    documentdb: bool,
    load_balancer: Option<&LoadBalancer>,
) -> (Vec<Alarm>, Vec<String>) {
    let names = work.names;
    let alarm = |suffix: &str| format!("{}{suffix}", prefix(names));
    let postgres = names.resource("postgres");
    let on_postgres = || vec![("DBInstanceIdentifier", postgres.clone())];
    let mut alarms = Vec::new();
    let mut skipped = Vec::new();
    match allocated_gib {
        Some(gib) => alarms.push(Alarm {
            name: alarm("postgres-free-storage"),
            description: format!(
                "RDS instance {postgres} has less than 10 % of its {gib} GiB free; handle-alert raises its allocated storage within the ceiling"
            ),
            namespace: "AWS/RDS",
            metric: "FreeStorageSpace",
            dimensions: on_postgres(),
            statistic: Statistic::Minimum,
            unit: Some(StandardUnit::Bytes),
            threshold: f64::from(gib) * 1024.0 * 1024.0 * 1024.0 / 10.0,
            comparison: ComparisonOperator::LessThanThreshold,
            periods: 1,
            math: None,
        }),
        None => skipped.push(format!(
            "{postgres} free storage: the instance reports no allocated storage yet"
        )),
    }
    alarms.push(Alarm {
        name: alarm("postgres-cpu"),
        description: format!("RDS instance {postgres} above 80 % CPU for 15 minutes"),
        namespace: "AWS/RDS",
        metric: "CPUUtilization",
        dimensions: on_postgres(),
        statistic: Statistic::Average,
        unit: Some(StandardUnit::Percent),
        threshold: 80.0,
        comparison: ComparisonOperator::GreaterThanThreshold,
        periods: 3,
        math: None,
    });
    let class = work.spec.sizing().db_instance_class;
    match connections_threshold(class) {
        Some(threshold) => alarms.push(Alarm {
            name: alarm("postgres-connections"),
            description: format!(
                "RDS instance {postgres} above {threshold} connections, 80 % of {class}'s default max_connections"
            ),
            namespace: "AWS/RDS",
            metric: "DatabaseConnections",
            dimensions: on_postgres(),
            statistic: Statistic::Maximum,
            unit: Some(StandardUnit::Count),
            threshold,
            comparison: ComparisonOperator::GreaterThanThreshold,
            periods: 3,
            math: None,
        }),
        None => skipped.push(format!(
            "{postgres} connections: the default max_connections of {class} is not known here"
        )),
    }
    for node in redis_nodes {
        let on_node = vec![("CacheClusterId", node.clone())];
        let short = node.strip_prefix(&names.resource("")).unwrap_or(node);
        alarms.push(Alarm {
            name: alarm(&format!("{short}-memory")),
            description: format!("Redis node {node} above 80 % of its memory for 15 minutes"),
            namespace: "AWS/ElastiCache",
            metric: "DatabaseMemoryUsagePercentage",
            dimensions: on_node.clone(),
            statistic: Statistic::Average,
            unit: Some(StandardUnit::Percent),
            threshold: 80.0,
            comparison: ComparisonOperator::GreaterThanThreshold,
            periods: 3,
            math: None,
        });
        alarms.push(Alarm {
            name: alarm(&format!("{short}-evictions")),
            description: format!("Redis node {node} evicted keys: it is out of memory"),
            namespace: "AWS/ElastiCache",
            metric: "Evictions",
            dimensions: on_node,
            statistic: Statistic::Sum,
            unit: Some(StandardUnit::Count),
            threshold: 0.0,
            comparison: ComparisonOperator::GreaterThanThreshold,
            periods: 1,
            math: None,
        });
    }
    if documentdb {
        let cluster = names.resource("docdb");
        alarms.push(Alarm {
            name: alarm("documentdb-cpu"),
            description: format!("DocumentDB cluster {cluster} above 80 % CPU for 15 minutes"),
            namespace: "AWS/DocDB",
            metric: "CPUUtilization",
            dimensions: vec![("DBClusterIdentifier", cluster)],
            statistic: Statistic::Average,
            unit: Some(StandardUnit::Percent),
            threshold: 80.0,
            comparison: ComparisonOperator::GreaterThanThreshold,
            periods: 3,
            math: None,
        });
    }
    match load_balancer {
        Some(lb) => load_balancer_alarms(names, lb, &mut alarms, &mut skipped),
        None => skipped
            .push("the load balancer: the workloads step has not found it serving yet".to_owned()),
    }
    (alarms, skipped)
}

/// Requests in 5 minutes below which the error rate is not judged: a handful of probes
/// failing is not an outage.
pub(crate) const MIN_REQUESTS: u32 = 20;

fn load_balancer_alarms(
    names: &Names,
    lb: &LoadBalancer,
    alarms: &mut Vec<Alarm>,
    skipped: &mut Vec<String>,
) {
    let alarm = |suffix: &str| format!("{}{suffix}", prefix(names));
    let Some(lb_dimension) = elb_metric_dimension(&lb.arn) else {
        skipped.push(format!(
            "the load balancer {}: not an Application Load Balancer ARN",
            lb.arn
        ));
        return;
    };
    alarms.push(Alarm {
        name: alarm("lb-5xx"),
        description: format!(
            "Load balancer {} answered more than 5 % of requests with a 5xx (its own or the ingestion pods') for 10 minutes",
            lb.dns_name
        ),
        namespace: "AWS/ApplicationELB",
        metric: "RequestCount",
        dimensions: vec![("LoadBalancer", lb_dimension.to_owned())],
        statistic: Statistic::Sum,
        unit: None,
        threshold: 5.0,
        comparison: ComparisonOperator::GreaterThanThreshold,
        periods: 2,
        math: Some(Math {
            // No requests, or too few to judge: 0. The metrics are absent, not zero, in a
            // period without any.
            expression: format!(
                "IF(FILL(requests, 0) >= {MIN_REQUESTS}, 100 * (FILL(elb, 0) + FILL(target, 0)) / FILL(requests, 0), 0)"
            ),
            label: "5xx answers, % of requests",
            inputs: vec![
                ("requests", "RequestCount"),
                ("elb", "HTTPCode_ELB_5XX_Count"),
                ("target", "HTTPCode_Target_5XX_Count"),
            ],
        }),
    });
    if lb.target_groups.is_empty() {
        skipped.push(format!(
            "unhealthy targets of {}: no target group recorded",
            lb.dns_name
        ));
    }
    for (i, group) in lb.target_groups.iter().enumerate() {
        let Some(group_dimension) = elb_metric_dimension(group) else {
            skipped.push(format!("target group {group}: not a target group ARN"));
            continue;
        };
        let numbered = |base: &str| {
            if i == 0 {
                base.to_owned()
            } else {
                format!("{base}-{}", i + 1)
            }
        };
        // Reported whenever health checks are on (they always are for these groups),
        // with or without traffic, unlike the request metrics above.
        alarms.push(Alarm {
            name: alarm(&numbered("lb-no-healthy-targets")),
            description: format!(
                "Target group {group_dimension} of load balancer {} has had no healthy target for 15 minutes: nothing can reach the ingestion service",
                lb.dns_name
            ),
            namespace: "AWS/ApplicationELB",
            metric: "HealthyHostCount",
            dimensions: vec![
                ("TargetGroup", group_dimension.to_owned()),
                ("LoadBalancer", lb_dimension.to_owned()),
            ],
            statistic: Statistic::Minimum,
            unit: Some(StandardUnit::Count),
            threshold: 1.0,
            comparison: ComparisonOperator::LessThanThreshold,
            periods: 3,
            math: None,
        });
        alarms.push(Alarm {
            name: alarm(&numbered("lb-unhealthy-targets")),
            description: format!(
                "Target group {group_dimension} of load balancer {} has had an unhealthy target for 15 minutes",
                lb.dns_name
            ),
            namespace: "AWS/ApplicationELB",
            metric: "UnHealthyHostCount",
            dimensions: vec![
                ("TargetGroup", group_dimension.to_owned()),
                ("LoadBalancer", lb_dimension.to_owned()),
            ],
            statistic: Statistic::Maximum,
            unit: Some(StandardUnit::Count),
            threshold: 0.0,
            comparison: ComparisonOperator::GreaterThanThreshold,
            periods: 3,
            math: None,
        });
    }
}

/// Puts every wanted alarm (PutMetricAlarm replaces one of the same name: idempotent)
/// and reports the data-plane alarms no store wants any more.
pub(crate) async fn ensure(work: &Work<'_>) -> Result<AlarmsReport> {
    let deps = work.deps;
    let postgres = work.names.resource("postgres");
    let allocated = crate::postgres::allocated_storage(work, &postgres).await?;
    let redis_nodes = if work.spec.databases.redis {
        crate::redis::member_clusters(work).await?
    } else {
        Vec::new()
    };
    let documentdb = work
        .layers
        .databases
        .as_ref()
        .and_then(|d| d.documentdb.as_ref())
        .is_some();
    let outputs = deps.recorder.outputs(work.names.deployment()).await?;
    let load_balancer =
        LoadBalancer::from_rollout(outputs.get(apiary_core::outputs::ROLLOUT_SLOT))?;
    let (alarms, mut skipped) = wanted(
        work,
        allocated,
        &redis_nodes,
        documentdb,
        load_balancer.as_ref(),
    );
    if work.spec.databases.documentdb && !documentdb {
        skipped.push(format!(
            "{} CPU: the DocumentDB cluster has no endpoint (not built, or not emulated)",
            work.names.resource("docdb")
        ));
    }
    let topic = deps.alert_topic.clone();
    for alarm in &alarms {
        let dimensions: Vec<Dimension> = alarm
            .dimensions
            .iter()
            .map(|(name, value)| Dimension::builder().name(*name).value(value).build())
            .collect();
        let call = deps
            .cloudwatch
            .put_metric_alarm()
            .alarm_name(&alarm.name)
            .alarm_description(&alarm.description);
        let mut call = match &alarm.math {
            None => call
                .namespace(alarm.namespace)
                .metric_name(alarm.metric)
                .statistic(alarm.statistic.clone())
                .set_unit(alarm.unit.clone())
                .period(300)
                .set_dimensions(Some(dimensions)),
            Some(math) => {
                let mut call = call.metrics(
                    MetricDataQuery::builder()
                        .id("rate")
                        .expression(&math.expression)
                        .label(math.label)
                        .return_data(true)
                        .build(),
                );
                for (id, metric) in &math.inputs {
                    call = call.metrics(
                        MetricDataQuery::builder()
                            .id(*id)
                            .metric_stat(
                                MetricStat::builder()
                                    .metric(
                                        Metric::builder()
                                            .namespace(alarm.namespace)
                                            .metric_name(*metric)
                                            .set_dimensions(Some(dimensions.clone()))
                                            .build(),
                                    )
                                    .period(300)
                                    .stat(alarm.statistic.as_str())
                                    .build(),
                            )
                            .return_data(false)
                            .build(),
                    );
                }
                call
            }
        };
        call = call
            .evaluation_periods(alarm.periods)
            .datapoints_to_alarm(alarm.periods)
            .threshold(alarm.threshold)
            .comparison_operator(alarm.comparison.clone())
            // No data is not trouble: a quiet Redis node reports no evictions.
            .treat_missing_data("notBreaching");
        if let Some(topic) = &topic {
            call = call.alarm_actions(topic).ok_actions(topic);
        }
        for (key, value) in work.names.tags(apiary_core::Layer::Databases) {
            call = call.tags(Tag::builder().key(key).value(value).build());
        }
        match call.send().await {
            Ok(_) => {}
            Err(e) if apiary_core::aws::not_emulated(deps.emulator, &e) => {
                return Ok(AlarmsReport {
                    alarms: Vec::new(),
                    not_emulated: Some(apiary_core::aws::NOT_EMULATED_CLOUDWATCH.to_owned()),
                    topic,
                    stale: Vec::new(),
                    skipped,
                });
            }
            Err(e) => return Err(Error::aws(format!("PutMetricAlarm {}", alarm.name), e)),
        }
    }
    let wanted: Vec<String> = alarms.iter().map(|a| a.name.clone()).collect();
    let mut stale = Vec::new();
    let mut pages = deps
        .cloudwatch
        .describe_alarms()
        .alarm_name_prefix(prefix(work.names))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| Error::aws(format!("DescribeAlarms {}*", prefix(work.names)), e))?;
        for existing in page.metric_alarms() {
            if let Some(name) = existing.alarm_name()
                && !wanted.iter().any(|w| w == name)
            {
                stale.push(name.to_owned());
            }
        }
    }
    Ok(AlarmsReport {
        alarms: wanted,
        not_emulated: None,
        topic,
        stale,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connections_threshold_follows_the_class() {
        // db.t3.medium: 4 GiB, about 405 connections by default, alarm at 80 %.
        assert_eq!(connections_threshold("db.t3.medium"), Some(324.0));
        assert!(connections_threshold("db.r6g.2xlarge").unwrap() > 3000.0);
        // Capped at 5000 connections by PostgreSQL's formula.
        assert!(connections_threshold("db.r6g.2xlarge").unwrap() <= 4000.0);
        assert_eq!(connections_threshold("db.x2iedn.32xlarge"), None);
    }
}
