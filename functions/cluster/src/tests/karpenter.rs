use apiary_core::ErrorName;
use aws_sdk_eks::types::ClusterStatus;
use aws_sdk_eventbridge::Client as Events;
use aws_sdk_eventbridge::operation::describe_rule::{DescribeRuleError, DescribeRuleOutput};
use aws_sdk_eventbridge::operation::list_targets_by_rule::ListTargetsByRuleOutput;
use aws_sdk_eventbridge::operation::put_rule::PutRuleOutput;
use aws_sdk_eventbridge::operation::put_targets::PutTargetsOutput;
use aws_sdk_eventbridge::types::{PutTargetsResultEntry, RuleState, Target};
use aws_sdk_iam::Client as Iam;
use aws_sdk_iam::operation::get_role::GetRoleOutput;
use aws_sdk_iam::operation::tag_role::TagRoleOutput;
use aws_sdk_sqs::Client as Sqs;
use aws_sdk_sqs::operation::create_queue::CreateQueueOutput;
use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesOutput;
use aws_sdk_sqs::operation::get_queue_url::{GetQueueUrlError, GetQueueUrlOutput};
use aws_sdk_sqs::operation::set_queue_attributes::SetQueueAttributesOutput;
use aws_sdk_sqs::types::QueueAttributeName;
use aws_sdk_sqs::types::error::QueueDoesNotExist;
use aws_smithy_mocks::{Rule, mock};
use serde_json::json;

use super::*;
use crate::karpenter::{event_pattern, queue_policy, rule_arns};

const QUEUE: &str = "apiary-acme-karpenter";
const QUEUE_URL: &str = "https://sqs.us-west-2.amazonaws.com/123456789012/apiary-acme-karpenter";
const QUEUE_ARN: &str = "arn:aws:sqs:us-west-2:123456789012:apiary-acme-karpenter";

/// The ARNs of deployment `acme`'s four interruption rules.
fn acme_rule_arns() -> Vec<String> {
    INTERRUPTION_RULES
        .iter()
        .map(|(suffix, _, _)| {
            format!("arn:aws:events:us-west-2:123456789012:rule/apiary-acme-karpenter-{suffix}")
        })
        .collect()
}

fn acme_queue_policy() -> Value {
    queue_policy(QUEUE_ARN, &acme_rule_arns()).unwrap()
}

fn queue_found() -> Rule {
    mock!(Sqs::get_queue_url)
        .then_output(|| GetQueueUrlOutput::builder().queue_url(QUEUE_URL).build())
}

fn attributes(policy: bool) -> Rule {
    mock!(Sqs::get_queue_attributes).then_output(move || {
        let mut out = GetQueueAttributesOutput::builder()
            .attributes(QueueAttributeName::QueueArn, QUEUE_ARN)
            .attributes(QueueAttributeName::SqsManagedSseEnabled, "true");
        if policy {
            out = out.attributes(QueueAttributeName::Policy, acme_queue_policy().to_string());
        }
        out.build()
    })
}

/// Each rule exists with the right pattern and the queue as its target.
fn rules_present() -> [Rule; 2] {
    [
        mock!(Events::describe_rule).then_compute_output(|r| {
            let name = r.name().unwrap();
            let (_, source, detail_type) = INTERRUPTION_RULES
                .iter()
                .find(|(suffix, _, _)| name.ends_with(suffix))
                .unwrap();
            DescribeRuleOutput::builder()
                .name(name)
                .arn(format!("arn:aws:events:us-west-2:123456789012:rule/{name}"))
                // As the service returns it: different spacing, same pattern.
                .event_pattern(
                    serde_json::to_string_pretty(&event_pattern(source, detail_type)).unwrap(),
                )
                .state(RuleState::Enabled)
                .build()
        }),
        mock!(Events::list_targets_by_rule).then_output(|| {
            ListTargetsByRuleOutput::builder()
                .targets(
                    Target::builder()
                        .id("karpenter-interruption-queue")
                        .arn(QUEUE_ARN)
                        .build()
                        .unwrap(),
                )
                .build()
        }),
    ]
}

fn no_targets() -> Rule {
    mock!(Events::list_targets_by_rule).then_output(|| ListTargetsByRuleOutput::builder().build())
}

#[tokio::test]
async fn existing_prerequisites_are_reported_and_nothing_changes() {
    let (cluster, roles, url, attrs) = (
        describe_cluster(ClusterStatus::Active),
        roles_found(),
        queue_found(),
        attributes(true),
    );
    let [rules, targets] = rules_present();
    let create_queue =
        mock!(Sqs::create_queue).then_output(|| CreateQueueOutput::builder().build());
    let set = mock!(Sqs::set_queue_attributes)
        .then_output(|| SetQueueAttributesOutput::builder().build());
    let put_rule = mock!(Events::put_rule).then_output(|| PutRuleOutput::builder().build());
    let put_targets =
        mock!(Events::put_targets).then_output(|| PutTargetsOutput::builder().build());
    let tag = mock!(Iam::tag_role).then_output(|| TagRoleOutput::builder().build());
    let mocks = Mocks {
        eks: vec![&cluster],
        iam: vec![&roles, &tag],
        sqs: vec![&url, &attrs, &create_queue, &set],
        events: vec![&rules, &targets, &put_rule, &put_targets],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps();
    let out = handle(&deps, event("ensure-karpenter"))
        .await
        .expect("ensure");
    for rule in [&create_queue, &set, &put_rule, &put_targets, &tag] {
        assert_eq!(
            rule.num_calls(),
            0,
            "an unchanged deployment makes no change"
        );
    }
    assert_eq!(out["ready"], json!(true));
    assert_eq!(out["created"], json!([]));
    // The complete ClusterOutput.
    let complete: apiary_core::outputs::ClusterOutput =
        serde_json::from_value(out.clone()).unwrap();
    assert_eq!(complete.cluster_name, CLUSTER);
    assert_eq!(complete.endpoint, ENDPOINT);
    assert_eq!(complete.node_role_arn, role_arn("apiary-acme-eks-node"));
    assert_eq!(complete.nodegroup_name, "apiary-acme-system");
    assert_eq!(complete.interruption_queue_url, QUEUE_URL);
    assert!(!complete.cluster_arn.is_empty() && !complete.certificate_authority.is_empty());
    assert_eq!(out["interruption_rules"].as_array().unwrap().len(), 4);
    let resources = recorder.resources.lock().unwrap();
    assert_eq!(
        resources.iter().filter(|r| r.kind == "events:rule").count(),
        4
    );
    assert!(
        resources
            .iter()
            .any(|r| r.kind == "sqs:queue" && r.id == QUEUE)
    );
}

#[tokio::test]
async fn a_new_queue_is_encrypted_locked_down_and_fed_by_four_rules() {
    let (cluster, roles, attrs) = (
        describe_cluster(ClusterStatus::Active),
        roles_found(),
        attributes(false),
    );
    let no_queue = mock!(Sqs::get_queue_url).then_error(|| {
        GetQueueUrlError::QueueDoesNotExist(
            QueueDoesNotExist::builder()
                .message("The specified queue does not exist.")
                .meta(meta(
                    "QueueDoesNotExist",
                    "The specified queue does not exist.",
                ))
                .build(),
        )
    });
    let create_queue = mock!(Sqs::create_queue)
        .match_requests(|r| {
            let attributes = r.attributes().unwrap();
            r.queue_name() == Some(QUEUE)
                && attributes
                    .get(&QueueAttributeName::SqsManagedSseEnabled)
                    .map(String::as_str)
                    == Some("true")
                && attributes
                    .get(&QueueAttributeName::MessageRetentionPeriod)
                    .map(String::as_str)
                    == Some("300")
                && r.tags()
                    .is_some_and(|t| t.get("apiary:deployment").map(String::as_str) == Some("acme"))
        })
        .then_output(|| CreateQueueOutput::builder().queue_url(QUEUE_URL).build());
    let set_policy = mock!(Sqs::set_queue_attributes)
        .match_requests(|r| {
            let attributes = r.attributes().unwrap();
            let policy: Value =
                serde_json::from_str(attributes.get(&QueueAttributeName::Policy).unwrap()).unwrap();
            let allow = &policy["Statement"][0];
            let deny = &policy["Statement"][1];
            allow["Principal"]["Service"] == json!(["events.amazonaws.com", "sqs.amazonaws.com"])
                && allow["Action"] == json!("sqs:SendMessage")
                && allow["Resource"] == json!(QUEUE_ARN)
                && policy == acme_queue_policy()
                && deny["Effect"] == json!("Deny")
                && deny["Condition"]["Bool"]["aws:SecureTransport"] == json!("false")
        })
        .then_output(|| SetQueueAttributesOutput::builder().build());
    let no_rule = mock!(Events::describe_rule).then_error(|| {
        DescribeRuleError::ResourceNotFoundException(
            aws_sdk_eventbridge::types::error::ResourceNotFoundException::builder()
                .message("Rule does not exist.")
                .meta(meta("ResourceNotFoundException", "Rule does not exist."))
                .build(),
        )
    });
    let put_rule = mock!(Events::put_rule)
        .match_requests(|r| {
            let pattern: Value = serde_json::from_str(r.event_pattern().unwrap()).unwrap();
            r.name()
                .is_some_and(|n| n.starts_with("apiary-acme-karpenter-"))
                && r.state() == Some(&RuleState::Enabled)
                && INTERRUPTION_RULES
                    .iter()
                    .any(|(_, source, detail)| pattern == event_pattern(source, detail))
                && r.tags()
                    .iter()
                    .any(|t| t.key() == "apiary:layer" && t.value() == "cluster")
        })
        .then_compute_output(|r| {
            PutRuleOutput::builder()
                .rule_arn(format!(
                    "arn:aws:events:us-west-2:123456789012:rule/{}",
                    r.name().unwrap()
                ))
                .build()
        });
    let targets = no_targets();
    let put_targets = mock!(Events::put_targets)
        .match_requests(|r| r.targets().len() == 1 && r.targets()[0].arn() == QUEUE_ARN)
        .then_output(|| PutTargetsOutput::builder().failed_entry_count(0).build());
    let mocks = Mocks {
        eks: vec![&cluster],
        iam: vec![&roles],
        sqs: vec![&no_queue, &create_queue, &attrs, &set_policy],
        events: vec![&no_rule, &put_rule, &targets, &put_targets],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("ensure-karpenter"))
        .await
        .expect("ensure");
    assert_eq!(create_queue.num_calls(), 1);
    assert_eq!(set_policy.num_calls(), 1);
    assert_eq!(put_rule.num_calls(), 4);
    assert_eq!(put_targets.num_calls(), 4);
    assert_eq!(
        out["created"],
        json!([
            QUEUE,
            "apiary-acme-karpenter-spot-interruption",
            "apiary-acme-karpenter-rebalance",
            "apiary-acme-karpenter-instance-state",
            "apiary-acme-karpenter-scheduled-change"
        ])
    );
    assert_eq!(out["interruption_queue_url"], json!(QUEUE_URL));
}

#[tokio::test]
async fn a_node_role_without_its_discovery_tag_is_tagged() {
    let (cluster, url, attrs) = (
        describe_cluster(ClusterStatus::Active),
        queue_found(),
        attributes(true),
    );
    let [rules, targets] = rules_present();
    let untagged = mock!(Iam::get_role).then_compute_output(|r| {
        let mut found = role(r.role_name().unwrap());
        found.tags = None;
        GetRoleOutput::builder().role(found).build()
    });
    let tag = mock!(Iam::tag_role)
        .match_requests(|r| {
            r.role_name() == Some("apiary-acme-eks-node")
                && r.tags()
                    .iter()
                    .any(|t| t.key() == "karpenter.sh/discovery" && t.value() == CLUSTER)
        })
        .then_output(|| TagRoleOutput::builder().build());
    let mocks = Mocks {
        eks: vec![&cluster],
        iam: vec![&untagged, &tag],
        sqs: vec![&url, &attrs],
        events: vec![&rules, &targets],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    handle(&deps, event("ensure-karpenter"))
        .await
        .expect("ensure");
    assert_eq!(tag.num_calls(), 1);
}

#[tokio::test]
async fn a_rejected_target_fails_naming_the_rule() {
    let (cluster, roles, url, attrs) = (
        describe_cluster(ClusterStatus::Active),
        roles_found(),
        queue_found(),
        attributes(true),
    );
    let [rules, _] = rules_present();
    let targets = no_targets();
    let rejected = mock!(Events::put_targets).then_output(|| {
        PutTargetsOutput::builder()
            .failed_entry_count(1)
            .failed_entries(
                PutTargetsResultEntry::builder()
                    .target_id("karpenter-interruption-queue")
                    .error_code("AccessDeniedException")
                    .error_message("not authorized to use the queue")
                    .build(),
            )
            .build()
    });
    let mocks = Mocks {
        eks: vec![&cluster],
        iam: vec![&roles],
        sqs: vec![&url, &attrs],
        events: vec![&rules, &targets, &rejected],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("ensure-karpenter")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    let text = err.to_string();
    assert!(
        text.contains("apiary-acme-karpenter-spot-interruption"),
        "{text}"
    );
    assert!(text.contains("AccessDeniedException"), "{text}");
}

#[tokio::test]
async fn karpenter_before_the_cluster_is_not_ready_and_throttling_is_retryable() {
    let missing = cluster_not_found();
    let mocks = Mocks {
        eks: vec![&missing],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("ensure-karpenter")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::NotReady);

    let (cluster, roles) = (describe_cluster(ClusterStatus::Active), roles_found());
    let throttled = mock!(Sqs::get_queue_url)
        .then_error(|| GetQueueUrlError::generic(meta("RequestThrottled", "Rate exceeded")));
    let mocks = Mocks {
        eks: vec![&cluster],
        iam: vec![&roles],
        sqs: vec![&throttled],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("ensure-karpenter")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Retryable);
}

#[test]
fn only_this_deployments_rules_in_this_account_may_send_to_the_queue() {
    let policy = acme_queue_policy();
    let allow = &policy["Statement"][0];
    assert_eq!(allow["Effect"], "Allow");
    assert_eq!(
        allow["Principal"]["Service"],
        json!(["events.amazonaws.com", "sqs.amazonaws.com"])
    );
    assert_eq!(
        allow["Condition"],
        json!({
            "StringEquals": {"aws:SourceAccount": "123456789012"},
            "ArnEquals": {"aws:SourceArn": [
                "arn:aws:events:us-west-2:123456789012:rule/apiary-acme-karpenter-spot-interruption",
                "arn:aws:events:us-west-2:123456789012:rule/apiary-acme-karpenter-rebalance",
                "arn:aws:events:us-west-2:123456789012:rule/apiary-acme-karpenter-instance-state",
                "arn:aws:events:us-west-2:123456789012:rule/apiary-acme-karpenter-scheduled-change"
            ]}
        })
    );
    // Every Allow carries both conditions: no statement lets a sender in unconditionally.
    for statement in policy["Statement"].as_array().unwrap() {
        if statement["Effect"] == "Allow" {
            assert!(statement["Condition"]["StringEquals"]["aws:SourceAccount"].is_string());
            assert!(statement["Condition"]["ArnEquals"]["aws:SourceArn"].is_array());
        }
    }
}

#[test]
fn rule_arns_follow_the_queues_partition_region_and_account() {
    let arns = rule_arns(
        "arn:aws-cn:sqs:cn-north-1:210987654321:apiary-acme-karpenter",
        &["apiary-acme-karpenter-rebalance".to_owned()],
    )
    .unwrap();
    assert_eq!(
        arns,
        ["arn:aws-cn:events:cn-north-1:210987654321:rule/apiary-acme-karpenter-rebalance"]
    );
    assert_eq!(
        rule_arns("not-an-arn", &[]).unwrap_err().name(),
        ErrorName::Fatal
    );
    assert_eq!(
        queue_policy("arn:aws:sqs:us-west-2::q", &[])
            .unwrap_err()
            .name(),
        ErrorName::Fatal
    );
}

#[tokio::test]
async fn a_queue_policy_without_the_source_conditions_is_replaced() {
    // The queue as an older version left it: open to any account's rules.
    let mut old = acme_queue_policy();
    old["Statement"][0]
        .as_object_mut()
        .unwrap()
        .remove("Condition");
    let (cluster, roles) = (describe_cluster(ClusterStatus::Active), roles_found());
    let found = queue_found();
    let attrs = mock!(Sqs::get_queue_attributes).then_output(move || {
        GetQueueAttributesOutput::builder()
            .attributes(QueueAttributeName::QueueArn, QUEUE_ARN)
            .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
            .attributes(QueueAttributeName::Policy, old.to_string())
            .build()
    });
    let set_policy = mock!(Sqs::set_queue_attributes)
        .match_requests(|r| {
            r.attributes()
                .and_then(|a| a.get(&QueueAttributeName::Policy))
                .and_then(|p| serde_json::from_str::<Value>(p).ok())
                == Some(acme_queue_policy())
        })
        .then_output(|| SetQueueAttributesOutput::builder().build());
    let [describe, targets] = rules_present();
    let mocks = Mocks {
        eks: vec![&cluster],
        iam: vec![&roles],
        sqs: vec![&found, &attrs, &set_policy],
        events: vec![&describe, &targets],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    handle(&deps, event("ensure-karpenter"))
        .await
        .expect("ensure");
    assert_eq!(set_policy.num_calls(), 1);
}
