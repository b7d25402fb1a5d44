//! Unit tests with mocked clients: the paths the emulator cannot produce.

use std::sync::Arc;

use apiary_core::ErrorName;
use apiary_core::step::MemoryRecorder;
use aws_sdk_acm::Client as Acm;
use aws_sdk_acm::operation::describe_certificate::DescribeCertificateOutput;
use aws_sdk_acm::operation::list_certificates::ListCertificatesOutput;
use aws_sdk_acm::operation::list_tags_for_certificate::ListTagsForCertificateOutput;
use aws_sdk_acm::operation::request_certificate::RequestCertificateOutput;
use aws_sdk_acm::types::{
    CertificateDetail, CertificateStatus, CertificateSummary, DomainValidation, RecordType,
    ResourceRecord as AcmRecord, Tag as AcmTag,
};
use aws_sdk_route53::Client as Route53;
use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsOutput;
use aws_sdk_route53::operation::change_tags_for_resource::ChangeTagsForResourceOutput;
use aws_sdk_route53::operation::create_hosted_zone::{
    CreateHostedZoneError, CreateHostedZoneOutput,
};
use aws_sdk_route53::operation::get_hosted_zone::GetHostedZoneOutput;
use aws_sdk_route53::operation::list_hosted_zones_by_name::ListHostedZonesByNameOutput;
use aws_sdk_route53::operation::list_hosted_zones_by_vpc::ListHostedZonesByVpcOutput;
use aws_sdk_route53::operation::list_resource_record_sets::ListResourceRecordSetsOutput;
use aws_sdk_route53::operation::list_tags_for_resource::ListTagsForResourceOutput;
use aws_sdk_route53::types::{
    HostedZone, HostedZoneConfig, HostedZoneSummary, ResourceRecord, ResourceRecordSet,
    ResourceTagSet, RrType, Tag,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use serde_json::json;

use super::*;

const DOMAIN: &str = "hh.example.com";
const CERT: &str = "arn:aws:acm:us-west-2:123456789012:certificate/abc";
const RECORD_NAME: &str = "_x1.hh.example.com.";
const RECORD_VALUE: &str = "_y1.acm-validations.aws.";

fn event() -> Value {
    apiary_core::step::event("ensure", "acme")
}

/// Deployment acme as the lock step stored it, with `layers` built.
fn state_with(layers: Value) -> MemoryRecorder {
    MemoryRecorder::with(&json!({"name": "acme", "dns": {"domain": DOMAIN}}), &layers)
}

/// The network layer the zone attaches to.
fn network_built() -> Value {
    json!({"network": {
        "vpc_id": "vpc-1", "vpc_cidr": "10.1.0.0/16",
        "public_subnets": [], "private_subnets": [], "nat_gateway_ids": [],
        "security_groups": {"alb": "sg-a", "cluster": "sg-c", "databases": "sg-d"}
    }})
}

fn deps(route53: &[&Rule], acm: &[&Rule]) -> (Deps, MemoryRecorder) {
    deps_over(state_with(network_built()), route53, acm)
}

fn deps_over(recorder: MemoryRecorder, route53: &[&Rule], acm: &[&Rule]) -> (Deps, MemoryRecorder) {
    (
        Deps {
            route53: mock_client!(aws_sdk_route53, RuleMode::MatchAny, route53),
            acm: mock_client!(aws_sdk_acm, RuleMode::MatchAny, acm),
            recorder: Arc::new(recorder.clone()),
        },
        recorder,
    )
}

fn zone(id: &str, name: &str, private: bool, reference: &str) -> HostedZone {
    HostedZone::builder()
        .id(format!("/hostedzone/{id}"))
        .name(format!("{name}."))
        .caller_reference(reference)
        .config(HostedZoneConfig::builder().private_zone(private).build())
        .build()
        .unwrap()
}

fn zones_in_vpc(ids: &'static [&'static str]) -> Rule {
    mock!(Route53::list_hosted_zones_by_vpc).then_output(move || {
        let summaries = ids
            .iter()
            .map(|id| {
                HostedZoneSummary::builder()
                    .hosted_zone_id(*id)
                    .name(format!("{DOMAIN}."))
                    .build()
                    .unwrap()
            })
            .collect();
        ListHostedZonesByVpcOutput::builder()
            .set_hosted_zone_summaries(Some(summaries))
            .max_items(100)
            .build()
            .unwrap()
    })
}

fn zone_tags(deployment: &'static str) -> Rule {
    mock!(Route53::list_tags_for_resource).then_output(move || {
        let mut set = ResourceTagSet::builder().resource_id("Z1");
        for (k, v) in Names::new(deployment).tags(Layer::Dns) {
            set = set.tags(Tag::builder().key(k).value(v).build());
        }
        ListTagsForResourceOutput::builder()
            .resource_tag_set(set.build())
            .build()
    })
}

fn create_zone() -> Rule {
    mock!(Route53::create_hosted_zone).then_output(create_zone_output)
}

fn create_zone_output() -> CreateHostedZoneOutput {
    CreateHostedZoneOutput::builder()
        .hosted_zone(zone("ZNEW", DOMAIN, true, "r"))
        .location("https://route53/ZNEW")
        .change_info(
            aws_sdk_route53::types::ChangeInfo::builder()
                .id("c")
                .status(aws_sdk_route53::types::ChangeStatus::Insync)
                .submitted_at(aws_smithy_types::DateTime::from_secs(0))
                .build()
                .unwrap(),
        )
        .delegation_set(
            aws_sdk_route53::types::DelegationSet::builder()
                .name_servers("ns")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// Public zones by name: `public` decides whether the account hosts one for the domain.
fn zones_by_name(public: bool) -> Rule {
    mock!(Route53::list_hosted_zones_by_name).then_output(move || {
        let mut zones = vec![zone("ZPRIV", DOMAIN, true, "r")];
        if public {
            zones.push(zone("ZPUB", "example.com", false, "p"));
        }
        ListHostedZonesByNameOutput::builder()
            .set_hosted_zones(Some(zones))
            .is_truncated(false)
            .max_items(100)
            .build()
            .unwrap()
    })
}

/// ACM lists two certificates for the domain; only the second is tagged as ours. The
/// rule for ours comes first: MatchAny takes the first rule whose matcher accepts.
fn our_certificate() -> Vec<Rule> {
    let list = mock!(Acm::list_certificates).then_output(|| {
        ListCertificatesOutput::builder()
            .certificate_summary_list(
                CertificateSummary::builder()
                    .certificate_arn("arn:aws:acm:us-west-2:123456789012:certificate/theirs")
                    .domain_name(DOMAIN)
                    .build(),
            )
            .certificate_summary_list(
                CertificateSummary::builder()
                    .certificate_arn(CERT)
                    .domain_name(DOMAIN)
                    .build(),
            )
            .build()
    });
    let ours = mock!(Acm::list_tags_for_certificate)
        .match_requests(|r| r.certificate_arn() == Some(CERT))
        .then_output(|| {
            let mut out = ListTagsForCertificateOutput::builder();
            for (k, v) in Names::new("acme").tags(Layer::Dns) {
                out = out.tags(AcmTag::builder().key(k).value(v).build().unwrap());
            }
            out.build()
        });
    let theirs = mock!(Acm::list_tags_for_certificate).then_output(|| {
        ListTagsForCertificateOutput::builder()
            .tags(
                AcmTag::builder()
                    .key("owner")
                    .value("someone")
                    .build()
                    .unwrap(),
            )
            .build()
    });
    vec![list, ours, theirs]
}

fn no_certificate() -> Rule {
    mock!(Acm::list_certificates).then_output(|| ListCertificatesOutput::builder().build())
}

fn request() -> Rule {
    mock!(Acm::request_certificate)
        .match_requests(|r| {
            r.domain_name() == Some(DOMAIN)
                && r.subject_alternative_names() == [format!("*.{DOMAIN}")]
                && r.validation_method() == Some(&aws_sdk_acm::types::ValidationMethod::Dns)
                && r.tags()
                    .iter()
                    .any(|t| t.key() == "apiary:deployment" && t.value() == Some("acme"))
        })
        .then_output(|| {
            RequestCertificateOutput::builder()
                .certificate_arn(CERT)
                .build()
        })
}

fn describe(records: bool) -> Rule {
    describe_with(records, CertificateStatus::PendingValidation)
}

fn describe_with(records: bool, status: CertificateStatus) -> Rule {
    mock!(Acm::describe_certificate).then_output(move || {
        let mut option = DomainValidation::builder()
            .domain_name(DOMAIN)
            .validation_method(aws_sdk_acm::types::ValidationMethod::Dns);
        if records {
            option = option.resource_record(
                AcmRecord::builder()
                    .name(RECORD_NAME)
                    .r#type(RecordType::Cname)
                    .value(RECORD_VALUE)
                    .build()
                    .unwrap(),
            );
        }
        let wildcard = option.clone().domain_name(format!("*.{DOMAIN}"));
        DescribeCertificateOutput::builder()
            .certificate(
                CertificateDetail::builder()
                    .certificate_arn(CERT)
                    .status(status.clone())
                    .domain_validation_options(option.build().unwrap())
                    .domain_validation_options(wildcard.build().unwrap())
                    .build(),
            )
            .build()
    })
}

fn tag_change() -> Rule {
    mock!(Route53::change_tags_for_resource)
        .then_output(|| ChangeTagsForResourceOutput::builder().build())
}

fn upsert() -> Rule {
    mock!(Route53::change_resource_record_sets).then_output(|| {
        ChangeResourceRecordSetsOutput::builder()
            .change_info(
                aws_sdk_route53::types::ChangeInfo::builder()
                    .id("c")
                    .status(aws_sdk_route53::types::ChangeStatus::Pending)
                    .submitted_at(aws_smithy_types::DateTime::from_secs(0))
                    .build()
                    .unwrap(),
            )
            .build()
    })
}

fn records_in_zone(present: bool) -> Rule {
    mock!(Route53::list_resource_record_sets).then_output(move || {
        let mut out = ListResourceRecordSetsOutput::builder()
            .is_truncated(false)
            .max_items(1);
        if present {
            out = out.resource_record_sets(
                ResourceRecordSet::builder()
                    .name(RECORD_NAME)
                    .r#type(RrType::Cname)
                    .ttl(300)
                    .resource_records(
                        ResourceRecord::builder()
                            .value(RECORD_VALUE)
                            .build()
                            .unwrap(),
                    )
                    .build()
                    .unwrap(),
            );
        } else {
            out = out.set_resource_record_sets(Some(Vec::new()));
        }
        out.build().unwrap()
    })
}

#[tokio::test]
async fn existing_zone_and_certificate_are_found_not_created() {
    let in_vpc = zones_in_vpc(&["/hostedzone/Z1"]);
    let tags = zone_tags("acme");
    let create = create_zone();
    let tagging = tag_change();
    let by_name = zones_by_name(false);
    let cert = our_certificate();
    let requested = request();
    let described = describe(true);
    let mut acm: Vec<&Rule> = cert.iter().collect();
    acm.extend([&requested, &described]);
    let (deps, recorder) = deps(&[&in_vpc, &tags, &create, &tagging, &by_name], &acm);

    let out = handle(&deps, event()).await.expect("ensure");
    assert_eq!(create.num_calls(), 0, "the zone exists");
    assert_eq!(tagging.num_calls(), 0, "already tagged");
    assert_eq!(requested.num_calls(), 0, "the certificate exists");
    assert_eq!(out["hosted_zone_id"], json!("Z1"));
    assert_eq!(out["certificate_arn"], json!(CERT));
    assert_eq!(out["domain"], json!(DOMAIN));
    assert_eq!(out["created"], json!([]));
    assert_eq!(out["ready"], json!(true));
    assert_eq!(out["certificate_status"], json!("PENDING_VALIDATION"));
    // The domain and its wildcard share one record; no public zone, so nothing written.
    assert_eq!(
        out["validation_records"],
        json!([{"name": RECORD_NAME, "type": "CNAME", "value": RECORD_VALUE}])
    );
    assert_eq!(out["validation_records_written"], json!(false));
    assert!(
        out["validation_note"]
            .as_str()
            .unwrap()
            .contains("NOT written"),
        "{out}"
    );
    assert_eq!(recorder.entries.lock().unwrap()[0].outcome, "unchanged");
    let saved = recorder
        .saved("acme", "dns")
        .expect("kept for later layers");
    let layer: DnsOutput = serde_json::from_value(saved).expect("reads back as the layer");
    assert_eq!(layer.hosted_zone_id, "Z1");
}

#[tokio::test]
async fn new_zone_is_private_in_the_vpc_and_tagged_and_records_go_to_the_public_zone() {
    let in_vpc = zones_in_vpc(&[]);
    let create = mock!(Route53::create_hosted_zone)
        .match_requests(|r| {
            r.name() == Some(DOMAIN)
                && r.caller_reference() == Some("apiary-acme-vpc-1")
                && r.hosted_zone_config().is_some_and(|c| c.private_zone())
                && r.vpc().and_then(|v| v.vpc_id()) == Some("vpc-1")
        })
        .then_output(create_zone_output);
    let tagging = mock!(Route53::change_tags_for_resource)
        .match_requests(|r| {
            r.resource_id() == Some("ZNEW")
                && r.add_tags()
                    .iter()
                    .any(|t| t.key() == Some("apiary:layer") && t.value() == Some("dns"))
        })
        .then_output(|| ChangeTagsForResourceOutput::builder().build());
    let by_name = zones_by_name(true);
    let absent = records_in_zone(false);
    let write = upsert();
    let list = no_certificate();
    let requested = request();
    let described = describe(true);
    let (deps, recorder) = deps(
        &[&in_vpc, &create, &tagging, &by_name, &absent, &write],
        &[&list, &requested, &described],
    );

    let out = handle(&deps, event()).await.expect("ensure");
    assert_eq!(create.num_calls(), 1);
    assert_eq!(tagging.num_calls(), 1);
    assert_eq!(requested.num_calls(), 1);
    assert_eq!(
        write.num_calls(),
        1,
        "one record for the domain and its wildcard"
    );
    assert_eq!(out["hosted_zone_id"], json!("ZNEW"));
    assert_eq!(out["validation_zone_id"], json!("ZPUB"));
    assert_eq!(out["validation_records_written"], json!(true));
    assert_eq!(
        out["created"],
        json!(["ZNEW", CERT, format!("ZPUB/{RECORD_NAME}")])
    );
    let resources = recorder.resources.lock().unwrap();
    let kinds: Vec<&str> = resources.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["route53:hosted-zone", "acm:certificate", "route53:record"]
    );
}

#[tokio::test]
async fn a_validation_record_already_in_place_is_not_rewritten() {
    let in_vpc = zones_in_vpc(&["Z1"]);
    let tags = zone_tags("acme");
    let by_name = zones_by_name(true);
    let present = records_in_zone(true);
    let write = upsert();
    let cert = our_certificate();
    let described = describe(true);
    let mut acm: Vec<&Rule> = cert.iter().collect();
    acm.push(&described);
    let (deps, _) = deps(&[&in_vpc, &tags, &by_name, &present, &write], &acm);
    let out = handle(&deps, event()).await.expect("ensure");
    assert_eq!(write.num_calls(), 0);
    assert_eq!(out["created"], json!([]));
    assert_eq!(out["validation_records_written"], json!(true));
}

#[tokio::test]
async fn a_zone_in_the_vpc_that_is_not_apiarys_is_a_conflict() {
    let in_vpc = zones_in_vpc(&["Z9"]);
    let tags = zone_tags("someone-else");
    let get = mock!(Route53::get_hosted_zone).then_output(|| {
        GetHostedZoneOutput::builder()
            .hosted_zone(zone("Z9", DOMAIN, true, "made-by-hand"))
            .build()
    });
    let create = create_zone();
    let (deps, recorder) = deps(&[&in_vpc, &tags, &get, &create], &[]);
    let err = handle(&deps, event()).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Conflict);
    let text = err.to_string();
    assert!(text.contains("Z9") && text.contains("vpc-1"), "{text}");
    assert_eq!(create.num_calls(), 0);
    assert_eq!(recorder.entries.lock().unwrap()[0].outcome, "failed");
}

#[tokio::test]
async fn an_untagged_zone_with_our_caller_reference_is_adopted_and_tagged() {
    let in_vpc = zones_in_vpc(&["Z2"]);
    let tags = mock!(Route53::list_tags_for_resource).then_output(|| {
        ListTagsForResourceOutput::builder()
            .resource_tag_set(ResourceTagSet::builder().resource_id("Z2").build())
            .build()
    });
    let get = mock!(Route53::get_hosted_zone).then_output(|| {
        GetHostedZoneOutput::builder()
            .hosted_zone(zone("Z2", DOMAIN, true, "apiary-acme-vpc-1"))
            .build()
    });
    let tagging = tag_change();
    let create = create_zone();
    let by_name = zones_by_name(false);
    let cert = our_certificate();
    let described = describe(true);
    let mut acm: Vec<&Rule> = cert.iter().collect();
    acm.push(&described);
    let (deps, _) = deps(&[&in_vpc, &tags, &get, &tagging, &create, &by_name], &acm);
    let out = handle(&deps, event()).await.expect("ensure");
    assert_eq!(out["hosted_zone_id"], json!("Z2"));
    assert_eq!(create.num_calls(), 0);
    assert_eq!(tagging.num_calls(), 1);
}

#[tokio::test]
async fn access_denied_fails_fast_naming_the_domain() {
    let in_vpc = zones_in_vpc(&[]);
    let create = mock!(Route53::create_hosted_zone).then_error(|| {
        CreateHostedZoneError::generic(
            ErrorMetadata::builder()
                .code("AccessDenied")
                .message("not authorized to perform route53:CreateHostedZone")
                .build(),
        )
    });
    let (deps, _) = deps(&[&in_vpc, &create], &[]);
    let err = handle(&deps, event()).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(
        err.to_string()
            .contains(&format!("CreateHostedZone {DOMAIN}")),
        "{err}"
    );
    assert_eq!(create.num_calls(), 1);
}

/// ACM is eventually consistent: the certificate just requested (or listed) may not be
/// found by DescribeCertificate yet. That is a retry, never a failed provision.
#[tokio::test]
async fn a_certificate_not_found_right_after_its_request_is_retried() {
    let in_vpc = zones_in_vpc(&["Z1"]);
    let tags = zone_tags("acme");
    let cert = our_certificate();
    let missing = mock!(Acm::describe_certificate).then_error(|| {
        aws_sdk_acm::operation::describe_certificate::DescribeCertificateError::ResourceNotFoundException(
            aws_sdk_acm::types::error::ResourceNotFoundException::builder()
                .message("Could not find certificate")
                .build(),
        )
    });
    let mut acm: Vec<&Rule> = cert.iter().collect();
    acm.push(&missing);
    let (deps, _) = deps(&[&in_vpc, &tags], &acm);
    let err = handle(&deps, event()).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Retryable, "{err}");
    assert!(err.to_string().contains(CERT), "{err}");
}

#[tokio::test]
async fn records_not_yet_published_by_acm_mean_not_ready() {
    let in_vpc = zones_in_vpc(&["Z1"]);
    let tags = zone_tags("acme");
    let by_name = zones_by_name(true);
    let write = upsert();
    let cert = our_certificate();
    let described = describe(false);
    let mut acm: Vec<&Rule> = cert.iter().collect();
    acm.push(&described);
    let (deps, recorder) = deps(&[&in_vpc, &tags, &by_name, &write], &acm);
    let out = handle(&deps, event()).await.expect("ensure");
    assert_eq!(out["ready"], json!(false));
    assert_eq!(out["validation_records_written"], json!(false));
    assert_eq!(write.num_calls(), 0);
    assert!(out["pending"][0].as_str().unwrap().contains(CERT));
    assert_eq!(recorder.entries.lock().unwrap()[0].outcome, "not-ready");
}

#[tokio::test]
async fn missing_network_layer_or_unknown_action_is_rejected_before_any_call() {
    let in_vpc = zones_in_vpc(&[]);
    let (no_network, _) = deps_over(state_with(json!({})), &[&in_vpc], &[]);
    let err = handle(&no_network, event()).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    assert!(err.to_string().contains("layers.network"), "{err}");
    let (deps, _) = deps(&[&in_vpc], &[]);
    let status = apiary_core::step::event("status", "acme");
    assert_eq!(
        handle(&deps, status).await.unwrap_err().name(),
        ErrorName::InvalidInput
    );
    assert_eq!(in_vpc.num_calls(), 0);
}

/// The journal detail of the step's one entry.
fn journaled(recorder: &MemoryRecorder) -> String {
    let entries = recorder.entries.lock().unwrap();
    entries[0].detail.clone().unwrap_or_default()
}

#[tokio::test]
async fn records_not_yet_published_are_polled_and_nothing_is_saved() {
    let in_vpc = zones_in_vpc(&["Z1"]);
    let tags = zone_tags("acme");
    let by_name = zones_by_name(false);
    let cert = our_certificate();
    let described = describe(false);
    let mut acm: Vec<&Rule> = cert.iter().collect();
    acm.push(&described);
    let (deps, recorder) = deps(&[&in_vpc, &tags, &by_name], &acm);
    let out = handle(&deps, event()).await.expect("ensure");
    assert_eq!(out["ready"], json!(false));
    assert_eq!(out["certificate_status"], json!("PENDING_VALIDATION"));
    assert_eq!(out["validation_records"], json!([]));
    assert_eq!(by_name.num_calls(), 0, "nothing to write yet");
    assert!(journaled(&recorder).contains("waiting for ACM"));
    assert!(
        recorder.saved("acme", "dns").is_none(),
        "later layers never see a half-made certificate"
    );
}

#[tokio::test]
async fn records_written_to_the_public_zone_make_the_step_ready_while_acm_validates() {
    let in_vpc = zones_in_vpc(&["Z1"]);
    let tags = zone_tags("acme");
    let by_name = zones_by_name(true);
    let absent = records_in_zone(false);
    let write = upsert();
    let cert = our_certificate();
    let described = describe(true);
    let mut acm: Vec<&Rule> = cert.iter().collect();
    acm.push(&described);
    let (deps, recorder) = deps(&[&in_vpc, &tags, &by_name, &absent, &write], &acm);
    let out = handle(&deps, event()).await.expect("ensure");
    assert_eq!(write.num_calls(), 1);
    assert_eq!(out["ready"], json!(true));
    assert_eq!(out["validation_records_written"], json!(true));
    assert_eq!(out["certificate_status"], json!("PENDING_VALIDATION"));
    let detail = journaled(&recorder);
    assert!(
        detail.contains("ZPUB") && detail.contains("WAITING_FOR_DNS_VALIDATION"),
        "{detail}"
    );
    let saved: DnsOutput =
        serde_json::from_value(recorder.saved("acme", "dns").expect("saved")).unwrap();
    assert_eq!(
        saved.certificate_status.as_deref(),
        Some("PENDING_VALIDATION")
    );
    assert!(!saved.certificate_issued());
}

#[tokio::test]
async fn without_a_public_zone_the_records_are_surfaced_and_the_certificate_stays_pending() {
    let in_vpc = zones_in_vpc(&["Z1"]);
    let tags = zone_tags("acme");
    let by_name = zones_by_name(false);
    let write = upsert();
    let cert = our_certificate();
    let described = describe(true);
    let mut acm: Vec<&Rule> = cert.iter().collect();
    acm.push(&described);
    let (deps, recorder) = deps(&[&in_vpc, &tags, &by_name, &write], &acm);
    let out = handle(&deps, event()).await.expect("ensure");
    assert_eq!(write.num_calls(), 0);
    assert_eq!(out["ready"], json!(true));
    assert_eq!(out["certificate_status"], json!("PENDING_VALIDATION"));
    assert_eq!(out["validation_zone_id"], json!(null));
    assert_eq!(
        out["validation_records"],
        json!([{"name": RECORD_NAME, "type": "CNAME", "value": RECORD_VALUE}])
    );
    // What to create is in the journal, not only in the output.
    let detail = journaled(&recorder);
    assert!(
        detail.contains(&format!("{RECORD_NAME} CNAME {RECORD_VALUE}"))
            && detail.contains("WAITING_FOR_DNS_VALIDATION"),
        "{detail}"
    );
    let saved: DnsOutput =
        serde_json::from_value(recorder.saved("acme", "dns").expect("saved")).unwrap();
    assert!(!saved.certificate_issued());
}

#[tokio::test]
async fn an_issued_certificate_is_reported_issued() {
    let in_vpc = zones_in_vpc(&["Z1"]);
    let tags = zone_tags("acme");
    let by_name = zones_by_name(true);
    let present = records_in_zone(true);
    let write = upsert();
    let cert = our_certificate();
    let described = describe_with(true, CertificateStatus::Issued);
    let mut acm: Vec<&Rule> = cert.iter().collect();
    acm.push(&described);
    let (deps, recorder) = deps(&[&in_vpc, &tags, &by_name, &present, &write], &acm);
    let out = handle(&deps, event()).await.expect("ensure");
    assert_eq!(out["ready"], json!(true));
    assert_eq!(out["certificate_status"], json!("ISSUED"));
    assert_eq!(write.num_calls(), 0, "the records are in place");
    assert!(journaled(&recorder).contains("ISSUED"));
    let saved: DnsOutput =
        serde_json::from_value(recorder.saved("acme", "dns").expect("saved")).unwrap();
    assert!(saved.certificate_issued());
}

#[test]
fn the_certificate_token_follows_the_deployments_incarnation() {
    use crate::certificate::idempotency_token;
    let token = idempotency_token("acme-prod", "vpc-0abc", "hh.example.com");
    assert_eq!(
        token,
        idempotency_token("acme-prod", "vpc-0abc", "hh.example.com")
    );
    // ACM: `\w`, at most 32 characters.
    assert!(token.len() <= 32, "{token}");
    assert!(
        token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "{token}"
    );
    // Provisioned again after a teardown (a new VPC), or for another domain: a new
    // token, so ACM never hands back the certificate the teardown deleted.
    assert_ne!(
        token,
        idempotency_token("acme-prod", "vpc-0def", "hh.example.com")
    );
    assert_ne!(
        token,
        idempotency_token("acme-prod", "vpc-0abc", "other.example.com")
    );
    assert_ne!(
        token,
        idempotency_token("acme-dev", "vpc-0abc", "hh.example.com")
    );
}
