//! `ensure-alias`: the domain, in the deployment's private zone, points at the load
//! balancer in front of the ingestion pods. Clients inside the VPC (and networks that use
//! its resolver) reach the endpoint by name; for the customer's own networks
//! (`ingress_cidrs`), the output names the load balancer's DNS name, which the customer
//! points their DNS at (see the README).
//!
//! The load balancer comes from the workloads step's saved output (it read the Ingress's
//! address and checked ELBv2 target health), never from the event. Without one (locally,
//! where the manifests are only rendered; on AWS, while the certificate is not issued and
//! the HTTPS Ingress waits) there is nothing to point at: the step says so and changes
//! nothing.

use apiary_core::{Error, Result};
use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ResourceRecordSet, RrType,
};
use serde::Serialize;
use serde_json::Value;

pub use apiary_core::outputs::{LoadBalancer, ROLLOUT_SLOT};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AliasReport {
    pub domain: String,
    pub hosted_zone_id: String,
    /// The load balancer the alias names; `None` when none is known yet.
    pub load_balancer_dns_name: Option<String>,
    /// Whether the record was written by this run (false: already in place, or nothing
    /// to point at).
    pub written: bool,
    pub note: String,
}

/// The load balancer in a saved rollout output, if the workloads step found one.
pub fn load_balancer(rollout: Option<&Value>) -> Result<Option<LoadBalancer>> {
    LoadBalancer::from_rollout(rollout)
}

/// Ensures `domain A ALIAS -> load balancer` in the private zone.
pub async fn ensure(
    route53: &aws_sdk_route53::Client,
    zone_id: &str,
    domain: &str,
    target: Option<LoadBalancer>,
) -> Result<AliasReport> {
    let mut report = AliasReport {
        domain: domain.to_owned(),
        hosted_zone_id: zone_id.to_owned(),
        load_balancer_dns_name: target.as_ref().map(|t| t.dns_name.clone()),
        written: false,
        note: String::new(),
    };
    let Some(target) = target else {
        report.note = format!(
            "no load balancer is known for {domain} yet (locally the manifests are only \
             rendered: not verified locally; on AWS the HTTPS Ingress waits for the \
             certificate): no alias written"
        );
        return Ok(report);
    };
    let name = format!("{domain}.");
    let found = route53
        .list_resource_record_sets()
        .hosted_zone_id(zone_id)
        .start_record_name(&name)
        .start_record_type(RrType::A)
        .max_items(1)
        .send()
        .await
        .map_err(|e| Error::aws(format!("ListResourceRecordSets {zone_id} {domain}"), e))?;
    let in_place = found.resource_record_sets().iter().any(|set| {
        set.name()
            .trim_end_matches('.')
            .eq_ignore_ascii_case(domain)
            && set.r#type() == &RrType::A
            && set.alias_target().is_some_and(|alias| {
                alias
                    .dns_name()
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(target.dns_name.trim_end_matches('.'))
                    && alias.hosted_zone_id() == target.canonical_hosted_zone_id
            })
    });
    if in_place {
        report.note = format!("{domain} already points at {}", target.dns_name);
        return Ok(report);
    }
    let alias = AliasTarget::builder()
        .hosted_zone_id(&target.canonical_hosted_zone_id)
        .dns_name(&target.dns_name)
        // Route 53 answers only while the load balancer has a healthy target.
        .evaluate_target_health(true)
        .build()
        .map_err(|e| Error::fatal(format!("alias target: {e}")))?;
    let record = ResourceRecordSet::builder()
        .name(&name)
        .r#type(RrType::A)
        .alias_target(alias)
        .build()
        .map_err(|e| Error::fatal(format!("alias record: {e}")))?;
    let change = Change::builder()
        .action(ChangeAction::Upsert)
        .resource_record_set(record)
        .build()
        .map_err(|e| Error::fatal(format!("alias change: {e}")))?;
    let batch = ChangeBatch::builder()
        .comment("Apiary: the ingestion endpoint's load balancer")
        .changes(change)
        .build()
        .map_err(|e| Error::fatal(format!("alias change batch: {e}")))?;
    route53
        .change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(batch)
        .send()
        .await
        .map_err(|e| {
            // Route 53 refuses a second change to a zone while one is being applied.
            Error::aws_transient_if(
                format!("ChangeResourceRecordSets {zone_id} {domain} A alias"),
                e,
                |e| e.is_prior_request_not_complete(),
            )
        })?;
    report.written = true;
    report.note = format!("{domain} now points at {}", target.dns_name);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use aws_sdk_route53::Client as Route53;
    use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsOutput;
    use aws_sdk_route53::operation::list_resource_record_sets::ListResourceRecordSetsOutput;
    use aws_sdk_route53::types::{ChangeInfo, ChangeStatus};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use serde_json::json;

    use super::*;

    const LB: &str = "internal-k8s-apiaryacme-1.us-west-2.elb.amazonaws.com";

    fn target() -> Option<LoadBalancer> {
        load_balancer(Some(&json!({
            "serving": {"load_balancer": {"arn": "arn:lb", "dns_name": LB,
                        "canonical_hosted_zone_id": "Z1H1FL5HABSF5", "scheme": "internal"}}
        })))
        .unwrap()
    }

    fn records(alias_to: Option<&'static str>) -> aws_smithy_mocks::Rule {
        mock!(Route53::list_resource_record_sets)
            .match_requests(|r| r.hosted_zone_id() == Some("ZPRIVATE"))
            .then_output(move || {
                let mut out = ListResourceRecordSetsOutput::builder()
                    .is_truncated(false)
                    .max_items(1)
                    .set_resource_record_sets(Some(Vec::new()));
                if let Some(dns) = alias_to {
                    out = out.resource_record_sets(
                        ResourceRecordSet::builder()
                            .name("hh.example.com.")
                            .r#type(RrType::A)
                            .alias_target(
                                AliasTarget::builder()
                                    .hosted_zone_id("Z1H1FL5HABSF5")
                                    .dns_name(format!("{dns}."))
                                    .evaluate_target_health(true)
                                    .build()
                                    .unwrap(),
                            )
                            .build()
                            .unwrap(),
                    );
                }
                out.build().unwrap()
            })
    }

    fn change() -> aws_smithy_mocks::Rule {
        mock!(Route53::change_resource_record_sets)
            .match_requests(|r| {
                let batch = r.change_batch().unwrap();
                let set = batch.changes()[0].resource_record_set().unwrap();
                let alias = set.alias_target().unwrap();
                r.hosted_zone_id() == Some("ZPRIVATE")
                    && batch.changes()[0].action() == &ChangeAction::Upsert
                    && set.name() == "hh.example.com."
                    && set.r#type() == &RrType::A
                    && alias.dns_name() == LB
                    && alias.evaluate_target_health()
            })
            .then_output(|| {
                ChangeResourceRecordSetsOutput::builder()
                    .change_info(
                        ChangeInfo::builder()
                            .id("C1")
                            .status(ChangeStatus::Pending)
                            .submitted_at(aws_smithy_types::DateTime::from_secs(0))
                            .build()
                            .unwrap(),
                    )
                    .build()
            })
    }

    #[tokio::test]
    async fn the_domain_points_at_the_load_balancer_once_and_then_is_left() {
        let (list, upsert) = (records(None), change());
        let route53 = mock_client!(aws_sdk_route53, RuleMode::MatchAny, [&list, &upsert]);
        let report = ensure(&route53, "ZPRIVATE", "hh.example.com", target())
            .await
            .unwrap();
        assert!(report.written, "{report:?}");
        assert_eq!(upsert.num_calls(), 1);

        let (list, upsert) = (records(Some(LB)), change());
        let route53 = mock_client!(aws_sdk_route53, RuleMode::MatchAny, [&list, &upsert]);
        let report = ensure(&route53, "ZPRIVATE", "hh.example.com", target())
            .await
            .unwrap();
        assert!(!report.written);
        assert_eq!(upsert.num_calls(), 0, "already in place");

        let (list, upsert) = (records(Some("old-lb.elb.amazonaws.com")), change());
        let route53 = mock_client!(aws_sdk_route53, RuleMode::MatchAny, [&list, &upsert]);
        let report = ensure(&route53, "ZPRIVATE", "hh.example.com", target())
            .await
            .unwrap();
        assert!(report.written, "a replaced load balancer is followed");
    }

    #[tokio::test]
    async fn without_a_load_balancer_nothing_is_called() {
        let (list, upsert) = (records(None), change());
        let route53 = mock_client!(aws_sdk_route53, RuleMode::MatchAny, [&list, &upsert]);
        let report = ensure(&route53, "ZPRIVATE", "hh.example.com", None)
            .await
            .unwrap();
        assert!(!report.written);
        assert!(
            report.note.contains("not verified locally"),
            "{}",
            report.note
        );
        assert_eq!(list.num_calls() + upsert.num_calls(), 0);
        assert_eq!(
            load_balancer(Some(&json!({"mode": "rendered"}))).unwrap(),
            None,
            "a rendered run has no load balancer"
        );
        assert_eq!(load_balancer(None).unwrap(), None);
    }

    #[test]
    fn a_load_balancer_that_does_not_read_is_an_error_not_none() {
        let err = load_balancer(Some(
            &json!({"serving": {"load_balancer": {"dns_name": 7}}}),
        ))
        .unwrap_err();
        assert_eq!(err.name(), apiary_core::ErrorName::InvalidInput, "{err}");
        assert!(err.to_string().contains(ROLLOUT_SLOT), "{err}");
    }
}
