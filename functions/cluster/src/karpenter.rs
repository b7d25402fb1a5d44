//! Karpenter prerequisites: the interruption queue (SSE on, only this deployment's
//! interruption rules may send, TLS only), the four EventBridge rules that feed it, and the discovery tag on
//! the node role.

use apiary_core::{Error, Result};
use aws_sdk_eventbridge::types::{RuleState, Tag, Target};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{Value, json};

use crate::{View, Work, control_plane, iam};

/// (rule name suffix, event source, detail type).
pub const INTERRUPTION_RULES: [(&str, &str, &str); 4] = [
    (
        "spot-interruption",
        "aws.ec2",
        "EC2 Spot Instance Interruption Warning",
    ),
    (
        "rebalance",
        "aws.ec2",
        "EC2 Instance Rebalance Recommendation",
    ),
    (
        "instance-state",
        "aws.ec2",
        "EC2 Instance State-change Notification",
    ),
    ("scheduled-change", "aws.health", "AWS Health Event"),
];
/// Interruption notices are useless after a few minutes.
const MESSAGE_RETENTION_SECONDS: &str = "300";
const TARGET_ID: &str = "karpenter-interruption-queue";

pub(crate) fn event_pattern(source: &str, detail_type: &str) -> Value {
    json!({"source": [source], "detail-type": [detail_type]})
}

/// The ARNs of the interruption rules that feed the queue, in the queue's partition,
/// region and account (taken from its ARN, which the service returned, never from the
/// event). Known before the rules exist: a rule's ARN is its name's.
pub(crate) fn rule_arns(queue_arn: &str, rule_names: &[String]) -> Result<Vec<String>> {
    let parts: Vec<&str> = queue_arn.splitn(6, ':').collect();
    let [_, partition, _, region, account, _] = parts[..] else {
        return Err(Error::fatal(format!("not a queue ARN: {queue_arn}")));
    };
    Ok(rule_names
        .iter()
        .map(|name| format!("arn:{partition}:events:{region}:{account}:rule/{name}"))
        .collect())
}

/// The queue's account: the fifth field of its ARN.
fn account_of(queue_arn: &str) -> Option<&str> {
    queue_arn.split(':').nth(4).filter(|a| !a.is_empty())
}

/// Only this deployment's interruption rules may send: EventBridge delivers with
/// `aws:SourceArn` set to the rule's ARN and `aws:SourceAccount` to its account, so
/// a rule in another account (or another rule in this one) that targets the queue is
/// refused, whichever service principal it comes through.
pub fn queue_policy(queue_arn: &str, rule_arns: &[String]) -> Result<Value> {
    let account = account_of(queue_arn)
        .ok_or_else(|| Error::fatal(format!("not a queue ARN: {queue_arn}")))?;
    Ok(json!({
        "Version": "2012-10-17",
        "Id": "KarpenterInterruptionQueue",
        "Statement": [
            {
                "Sid": "EventBridgeAndSqsSend",
                "Effect": "Allow",
                "Principal": {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account},
                    "ArnEquals": {"aws:SourceArn": rule_arns},
                },
            },
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sqs:*",
                "Resource": queue_arn,
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ]
    }))
}

/// The names of the interruption rules, in [`INTERRUPTION_RULES`] order.
pub(crate) fn rule_names(step: &Work<'_>) -> Vec<String> {
    INTERRUPTION_RULES
        .iter()
        .map(|(suffix, _, _)| step.names.resource(&format!("karpenter-{suffix}")))
        .collect()
}

/// `ensure-karpenter`: ready as soon as everything exists (nothing here is slow).
pub(crate) async fn ensure(step: &Work<'_>, view: &mut View) -> Result<()> {
    let name = &step.resources.cluster;
    let cluster = control_plane::describe(step)
        .await?
        .ok_or_else(|| Error::NotReady {
            resource: format!("EKS cluster {name}"),
            detail: "it does not exist yet; run ensure-cluster first".to_owned(),
        })?;
    // Nothing here waits for the cluster to be ACTIVE: only that it exists and is sound.
    control_plane::observe(step, view, &cluster).await?;

    let role_name = &step.resources.node_role;
    let node_role = iam::find(step, role_name)
        .await?
        .ok_or_else(|| Error::NotReady {
            resource: format!("IAM role {role_name}"),
            detail: "it does not exist yet; run ensure-cluster first".to_owned(),
        })?;
    iam::ensure_discovery_tag(step, &node_role).await?;
    view.output.node_role_arn = node_role.arn().to_owned();
    if let Some(role) = iam::find(step, &step.resources.nodegroup_role).await? {
        view.nodegroup_role_arn = role.arn().to_owned();
    }

    let rules = rule_names(step);
    let (queue_url, queue_arn) = ensure_queue(step, &rules).await?;
    view.output.interruption_queue_url = queue_url;
    for ((_, source, detail_type), rule) in INTERRUPTION_RULES.iter().zip(&rules) {
        ensure_rule(step, rule, &event_pattern(source, detail_type), &queue_arn).await?;
    }
    view.interruption_rules = Some(rules);
    Ok(())
}

fn not_found_queue(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue")
    )
}

/// The queue's URL and ARN; created when missing, its policy and encryption corrected
/// when they differ.
async fn ensure_queue(step: &Work<'_>, rules: &[String]) -> Result<(String, String)> {
    let sqs = &step.deps.sqs;
    let name = &step.resources.queue;
    let url = match sqs.get_queue_url().queue_name(name).send().await {
        Ok(out) => out.queue_url,
        Err(err)
            if err.as_service_error().is_some_and(|e| {
                e.is_queue_does_not_exist()
                    || not_found_queue(aws_sdk_sqs::error::ProvideErrorMetadata::code(e))
            }) =>
        {
            None
        }
        Err(err) => return Err(Error::aws(format!("GetQueueUrl {name}"), err)),
    };
    let url = match url {
        Some(url) => url,
        None => {
            let mut request = sqs
                .create_queue()
                .queue_name(name)
                .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
                .attributes(
                    QueueAttributeName::MessageRetentionPeriod,
                    MESSAGE_RETENTION_SECONDS,
                );
            for (key, value) in step.tags("karpenter-interruption") {
                request = request.tags(key, value);
            }
            let created = request
                .send()
                .await
                .map_err(|e| Error::aws(format!("CreateQueue {name}"), e))?;
            step.log.created(name);
            created
                .queue_url
                .ok_or_else(|| Error::fatal(format!("CreateQueue {name} returned no URL")))?
        }
    };

    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .attribute_names(QueueAttributeName::Policy)
        .attribute_names(QueueAttributeName::SqsManagedSseEnabled)
        .send()
        .await
        .map_err(|e| Error::aws(format!("GetQueueAttributes {name}"), e))?;
    let attributes = attributes.attributes().cloned().unwrap_or_default();
    let arn = attributes
        .get(&QueueAttributeName::QueueArn)
        .cloned()
        .ok_or_else(|| Error::fatal(format!("GetQueueAttributes {name} returned no QueueArn")))?;
    let wanted = queue_policy(&arn, &rule_arns(&arn, rules)?)?;
    let current: Option<Value> = attributes
        .get(&QueueAttributeName::Policy)
        .and_then(|p| serde_json::from_str(p).ok());
    let encrypted = attributes
        .get(&QueueAttributeName::SqsManagedSseEnabled)
        .is_some_and(|v| v == "true");
    if current.as_ref() != Some(&wanted) || !encrypted {
        sqs.set_queue_attributes()
            .queue_url(&url)
            .attributes(QueueAttributeName::Policy, wanted.to_string())
            .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
            .send()
            .await
            .map_err(|e| Error::aws(format!("SetQueueAttributes {name}"), e))?;
    }
    step.log.resource("sqs:queue", name, Some(&arn)).await?;
    Ok((url, arn))
}

async fn ensure_rule(step: &Work<'_>, name: &str, pattern: &Value, queue_arn: &str) -> Result<()> {
    let events = &step.deps.events;
    let existing = apiary_core::aws::answer_or_none(
        format!("DescribeRule {name}"),
        events.describe_rule().name(name).send(),
        |e| e.is_resource_not_found_exception(),
    )
    .await?;
    let arn = match &existing {
        Some(rule)
            if rule
                .event_pattern()
                .and_then(|p| serde_json::from_str::<Value>(p).ok())
                .as_ref()
                == Some(pattern)
                && rule.state() == Some(&RuleState::Enabled) =>
        {
            rule.arn().map(str::to_owned)
        }
        _ => {
            let mut request = events
                .put_rule()
                .name(name)
                .event_pattern(pattern.to_string())
                .state(RuleState::Enabled)
                .description(format!(
                    "Apiary {}: interruption notices for Karpenter",
                    step.names.deployment()
                ));
            if existing.is_none() {
                for (key, value) in step.tags("karpenter-interruption") {
                    request = request.tags(
                        Tag::builder()
                            .key(key)
                            .value(value)
                            .build()
                            .map_err(|e| Error::fatal(e.to_string()))?,
                    );
                }
            }
            let put = request
                .send()
                .await
                .map_err(|e| Error::aws(format!("PutRule {name}"), e))?;
            if existing.is_none() {
                step.log.created(name);
            }
            put.rule_arn
        }
    };

    let targets = events
        .list_targets_by_rule()
        .rule(name)
        .send()
        .await
        .map_err(|e| Error::aws(format!("ListTargetsByRule {name}"), e))?;
    if !targets.targets().iter().any(|t| t.arn() == queue_arn) {
        let put = events
            .put_targets()
            .rule(name)
            .targets(
                Target::builder()
                    .id(TARGET_ID)
                    .arn(queue_arn)
                    .build()
                    .map_err(|e| Error::fatal(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| Error::aws(format!("PutTargets {name}"), e))?;
        if put.failed_entry_count() > 0 {
            let reasons: Vec<String> = put
                .failed_entries()
                .iter()
                .map(|f| {
                    format!(
                        "{}: {}",
                        f.error_code().unwrap_or("unknown"),
                        f.error_message().unwrap_or_default()
                    )
                })
                .collect();
            return Err(Error::fatal(format!(
                "PutTargets {name} failed: {}",
                reasons.join("; ")
            )));
        }
    }
    step.log.resource("events:rule", name, arn.as_deref()).await
}
