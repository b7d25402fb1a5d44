//! Whether the endpoint serves: READY means a client can reach the ingestion pods, not
//! only that they run. After the rollout, the HTTPS Ingress must have a load balancer
//! address, that load balancer must be active, and each of its target groups must have
//! a healthy target (ELBv2 target health: the load balancer's own health checks reached
//! a pod). The load balancer is named in the output, so the dns step can point the
//! domain's alias record at it.
//!
//! None of it can be seen locally (the manifests are only rendered, and the emulator
//! runs no controller that would make a load balancer), so a rendered run reports it as
//! not verified locally; the evaluation and the ELBv2 calls are unit-tested against
//! recorded responses.

use apiary_core::{Error, Result};
use aws_sdk_elasticloadbalancingv2::types::{
    LoadBalancer as ElbLoadBalancer, LoadBalancerStateEnum, TargetHealthDescription,
    TargetHealthStateEnum,
};
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use serde::Serialize;

use crate::apply::kube_error;
use crate::manifests::{APP, NAMESPACE};

pub use apiary_core::outputs::LoadBalancer;

/// What the serving check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Serving {
    #[serde(skip)]
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// Healthy targets over all target groups.
    pub healthy_targets: usize,
    pub detail: String,
}

impl Serving {
    pub(crate) fn waiting(detail: String) -> Self {
        Serving {
            ready: false,
            load_balancer: None,
            healthy_targets: 0,
            detail,
        }
    }
}

/// The address the load balancer controller wrote into the Ingress's status, if any.
pub async fn ingress_address(client: &kube::Client) -> Result<Option<String>> {
    let api: Api<Ingress> = Api::namespaced(client.clone(), NAMESPACE);
    let ingress = api
        .get_opt(APP)
        .await
        .map_err(|e| kube_error(&format!("Ingress {NAMESPACE}/{APP}"), "read", e, false))?;
    Ok(ingress
        .and_then(|i| i.status)
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .and_then(|list| list.into_iter().find_map(|i| i.hostname.or(i.ip))))
}

/// Finds the load balancer whose DNS name the Ingress carries and checks its targets.
pub async fn check(elb: &aws_sdk_elasticloadbalancingv2::Client, address: &str) -> Result<Serving> {
    let Some(found) = find_load_balancer(elb, address).await? else {
        // The controller writes the address once the load balancer exists; ELBv2 may not
        // list it for a moment (eventual consistency).
        return Ok(Serving::waiting(format!(
            "the Ingress's address {address} names no load balancer ELBv2 lists yet"
        )));
    };
    let lb_arn = found.load_balancer_arn().unwrap_or_default().to_owned();
    let groups = elb
        .describe_target_groups()
        .load_balancer_arn(&lb_arn)
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeTargetGroups {lb_arn}"), e))?;
    let mut health = Vec::new();
    for group in groups.target_groups() {
        let arn = group.target_group_arn().unwrap_or_default();
        let described = elb
            .describe_target_health()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(|e| Error::aws(format!("DescribeTargetHealth {arn}"), e))?;
        health.push((
            arn.to_owned(),
            described.target_health_descriptions().to_vec(),
        ));
    }
    Ok(evaluate(&found, &health))
}

/// Pages through the load balancers for the one with this DNS name (ELBv2 cannot filter
/// by it; the controller chooses the name).
async fn find_load_balancer(
    elb: &aws_sdk_elasticloadbalancingv2::Client,
    address: &str,
) -> Result<Option<ElbLoadBalancer>> {
    let mut marker = None;
    loop {
        let page = elb
            .describe_load_balancers()
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| Error::aws("DescribeLoadBalancers", e))?;
        if let Some(found) = page.load_balancers().iter().find(|lb| {
            lb.dns_name()
                .is_some_and(|name| name.eq_ignore_ascii_case(address.trim_end_matches('.')))
        }) {
            return Ok(Some(found.clone()));
        }
        match page.next_marker() {
            Some(next) if !next.is_empty() => marker = Some(next.to_owned()),
            _ => return Ok(None),
        }
    }
}

/// Ready when the load balancer is active and every target group has a healthy target.
pub fn evaluate(
    found: &ElbLoadBalancer,
    groups: &[(String, Vec<TargetHealthDescription>)],
) -> Serving {
    let load_balancer = LoadBalancer {
        arn: found.load_balancer_arn().unwrap_or_default().to_owned(),
        dns_name: found.dns_name().unwrap_or_default().to_owned(),
        canonical_hosted_zone_id: found
            .canonical_hosted_zone_id()
            .unwrap_or_default()
            .to_owned(),
        scheme: found
            .scheme()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        target_groups: groups.iter().map(|(arn, _)| arn.clone()).collect(),
    };
    let state = found.state().and_then(|s| s.code());
    let healthy_in = |targets: &[TargetHealthDescription]| {
        targets
            .iter()
            .filter(|t| {
                t.target_health().and_then(|h| h.state()) == Some(&TargetHealthStateEnum::Healthy)
            })
            .count()
    };
    let healthy_targets = groups.iter().map(|(_, t)| healthy_in(t)).sum();
    let mut waiting = Vec::new();
    if state != Some(&LoadBalancerStateEnum::Active) {
        waiting.push(format!(
            "load balancer {} is {}",
            load_balancer.dns_name,
            state.map(|s| s.as_str()).unwrap_or("of unknown state")
        ));
    }
    if groups.is_empty() {
        waiting.push(format!(
            "load balancer {} has no target group yet",
            load_balancer.dns_name
        ));
    }
    for (arn, targets) in groups {
        if healthy_in(targets) == 0 {
            let reasons: Vec<String> = targets
                .iter()
                .filter_map(|t| t.target_health())
                .map(|h| {
                    let state = h.state().map(|s| s.as_str()).unwrap_or("unknown");
                    match h.reason() {
                        Some(reason) => format!("{state} ({})", reason.as_str()),
                        None => state.to_owned(),
                    }
                })
                .collect();
            waiting.push(format!(
                "target group {arn} has no healthy target{}",
                if reasons.is_empty() {
                    String::from(" (no targets registered)")
                } else {
                    format!(": {}", reasons.join(", "))
                }
            ));
        }
    }
    let ready = waiting.is_empty();
    let detail = if ready {
        format!(
            "load balancer {} serves: {healthy_targets} healthy target{}",
            load_balancer.dns_name,
            if healthy_targets == 1 { "" } else { "s" }
        )
    } else {
        waiting.join("; ")
    };
    Serving {
        ready,
        load_balancer: Some(load_balancer),
        healthy_targets,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_elasticloadbalancingv2::Client as Elb;
    use aws_sdk_elasticloadbalancingv2::operation::describe_load_balancers::DescribeLoadBalancersOutput;
    use aws_sdk_elasticloadbalancingv2::operation::describe_target_groups::DescribeTargetGroupsOutput;
    use aws_sdk_elasticloadbalancingv2::operation::describe_target_health::DescribeTargetHealthOutput;
    use aws_sdk_elasticloadbalancingv2::types::{
        LoadBalancerSchemeEnum, LoadBalancerState, TargetDescription, TargetGroup, TargetHealth,
        TargetHealthReasonEnum,
    };
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;

    const DNS: &str = "internal-k8s-apiaryacme-0123456789.us-west-2.elb.amazonaws.com";

    fn load_balancer(state: LoadBalancerStateEnum) -> ElbLoadBalancer {
        ElbLoadBalancer::builder()
            .load_balancer_arn("arn:aws:elasticloadbalancing:us-west-2:123456789012:loadbalancer/app/k8s-apiaryacme/1")
            .dns_name(DNS)
            .canonical_hosted_zone_id("Z1H1FL5HABSF5")
            .scheme(LoadBalancerSchemeEnum::Internal)
            .state(LoadBalancerState::builder().code(state).build())
            .build()
    }

    fn target(
        state: TargetHealthStateEnum,
        reason: Option<TargetHealthReasonEnum>,
    ) -> TargetHealthDescription {
        TargetHealthDescription::builder()
            .target(
                TargetDescription::builder()
                    .id("10.0.1.5")
                    .port(8080)
                    .build(),
            )
            .target_health(
                TargetHealth::builder()
                    .state(state)
                    .set_reason(reason)
                    .build(),
            )
            .build()
    }

    #[test]
    fn an_active_load_balancer_with_a_healthy_target_in_each_group_serves() {
        let serving = evaluate(
            &load_balancer(LoadBalancerStateEnum::Active),
            &[(
                "tg-1".into(),
                vec![
                    target(TargetHealthStateEnum::Healthy, None),
                    target(
                        TargetHealthStateEnum::Initial,
                        Some(TargetHealthReasonEnum::RegistrationInProgress),
                    ),
                ],
            )],
        );
        assert!(serving.ready, "{}", serving.detail);
        assert_eq!(serving.healthy_targets, 1);
        let lb = serving.load_balancer.unwrap();
        assert_eq!(lb.canonical_hosted_zone_id, "Z1H1FL5HABSF5");
        assert_eq!(lb.scheme, "internal");
    }

    #[test]
    fn no_healthy_target_or_a_provisioning_load_balancer_is_not_ready_and_says_why() {
        let serving = evaluate(
            &load_balancer(LoadBalancerStateEnum::Provisioning),
            &[(
                "tg-1".into(),
                vec![target(
                    TargetHealthStateEnum::Unhealthy,
                    Some(TargetHealthReasonEnum::FailedHealthChecks),
                )],
            )],
        );
        assert!(!serving.ready);
        assert!(
            serving.detail.contains("is provisioning"),
            "{}",
            serving.detail
        );
        assert!(
            serving
                .detail
                .contains("tg-1 has no healthy target: unhealthy (Target.FailedHealthChecks)"),
            "{}",
            serving.detail
        );
        let empty = evaluate(&load_balancer(LoadBalancerStateEnum::Active), &[]);
        assert!(!empty.ready);
        assert!(
            empty.detail.contains("no target group yet"),
            "{}",
            empty.detail
        );
        let unregistered = evaluate(
            &load_balancer(LoadBalancerStateEnum::Active),
            &[("tg-2".into(), vec![])],
        );
        assert!(
            unregistered.detail.contains("no targets registered"),
            "{}",
            unregistered.detail
        );
    }

    #[tokio::test]
    async fn check_pages_to_the_ingress_load_balancer_and_reads_each_groups_health() {
        let first_page = mock!(Elb::describe_load_balancers)
            .match_requests(|r| r.marker().is_none())
            .then_output(|| {
                DescribeLoadBalancersOutput::builder()
                    .load_balancers(
                        ElbLoadBalancer::builder()
                            .dns_name("someone-else.elb.amazonaws.com")
                            .build(),
                    )
                    .next_marker("page-2")
                    .build()
            });
        let second_page = mock!(Elb::describe_load_balancers)
            .match_requests(|r| r.marker() == Some("page-2"))
            .then_output(|| {
                DescribeLoadBalancersOutput::builder()
                    .load_balancers(load_balancer(LoadBalancerStateEnum::Active))
                    .build()
            });
        let groups = mock!(Elb::describe_target_groups)
            .match_requests(|r| {
                r.load_balancer_arn()
                    .is_some_and(|a| a.ends_with("k8s-apiaryacme/1"))
            })
            .then_output(|| {
                DescribeTargetGroupsOutput::builder()
                    .target_groups(TargetGroup::builder().target_group_arn("tg-1").build())
                    .build()
            });
        let health = mock!(Elb::describe_target_health)
            .match_requests(|r| r.target_group_arn() == Some("tg-1"))
            .then_output(|| {
                DescribeTargetHealthOutput::builder()
                    .target_health_descriptions(target(TargetHealthStateEnum::Healthy, None))
                    .build()
            });
        let elb = mock_client!(
            aws_sdk_elasticloadbalancingv2,
            RuleMode::MatchAny,
            [&first_page, &second_page, &groups, &health]
        );
        let serving = check(&elb, &format!("{}.", DNS.to_uppercase()))
            .await
            .unwrap();
        assert!(serving.ready, "{}", serving.detail);
        assert_eq!(second_page.num_calls(), 1);
        assert_eq!(health.num_calls(), 1);
    }

    #[tokio::test]
    async fn an_address_no_load_balancer_has_yet_is_waited_for() {
        let none = mock!(Elb::describe_load_balancers)
            .then_output(|| DescribeLoadBalancersOutput::builder().build());
        let elb = mock_client!(aws_sdk_elasticloadbalancingv2, [&none]);
        let serving = check(&elb, DNS).await.unwrap();
        assert!(!serving.ready);
        assert!(
            serving.detail.contains("names no load balancer"),
            "{}",
            serving.detail
        );
    }
}
