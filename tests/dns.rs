//! The dns layer against the emulator: the private zone and the certificate read back
//! through the Route53 and ACM APIs, validation records written only where this account
//! hosts the public zone, and a second run that creates nothing.

use std::sync::Arc;

use apiary_core::step::MemoryRecorder;
use apiary_e2e::{sdk_config, unique_cidr, unique_name};
use aws_config::SdkConfig;
use aws_sdk_route53::types::{RrType, TagResourceType};
use serde_json::{Value, json};

fn spec(name: &str, domain: &str, cidr: &str) -> Value {
    json!({
        "name": name,
        "dns": {"domain": domain},
        "network": {"vpc_cidr": cidr, "nat_mode": "single", "ingress_cidrs": ["203.0.113.0/24"]}
    })
}

/// Builds the network layer the dns layer attaches its zone to: its output as the state
/// table keeps it.
async fn network_layer(config: &SdkConfig, spec: &Value) -> Value {
    let name = spec["name"].as_str().expect("a named spec");
    let state = MemoryRecorder::with(spec, &json!({}));
    let deps = network::Deps::new(config, Arc::new(state.clone()));
    network::handle(&deps, apiary_core::step::event("ensure", name))
        .await
        .expect("network ensure");
    state
        .saved(name, "network")
        .expect("a ready network keeps its output")
}

/// The dns layer's state: the deployment's spec and the network built for it.
fn dns_state(spec: &Value, network: &Value) -> MemoryRecorder {
    MemoryRecorder::with(spec, &json!({"network": network}))
}

fn event(spec: &Value) -> Value {
    json!({"action": "ensure", "deployment": spec["name"], "execution_id": "exec-dns"})
}

#[tokio::test]
async fn private_zone_and_certificate_with_records_in_the_public_zone() {
    let config = sdk_config().await;
    let route53 = aws_sdk_route53::Client::new(&config);
    let acm = aws_sdk_acm::Client::new(&config);
    let name = unique_name("dns");
    let parent = format!("{name}.example.com");
    let domain = format!("hh.{parent}");
    let spec = spec(&name, &domain, &unique_cidr(&config).await);
    let network = network_layer(&config, &spec).await;
    let vpc = network["vpc_id"].as_str().unwrap();

    // The customer's public zone for the parent domain, in this account.
    let public = route53
        .create_hosted_zone()
        .name(&parent)
        .caller_reference(format!("customer-{name}"))
        .send()
        .await
        .expect("public zone");
    let public_id = public
        .hosted_zone()
        .unwrap()
        .id()
        .trim_start_matches("/hostedzone/")
        .to_owned();

    let recorder = dns_state(&spec, &network);
    let deps = dns::Deps::new(&config, Arc::new(recorder.clone()));
    let first = dns::handle(&deps, event(&spec))
        .await
        .expect("first ensure");
    assert_eq!(first["ready"], json!(true), "{first}");
    let second = dns::handle(&deps, event(&spec))
        .await
        .expect("second ensure");
    assert_eq!(
        second["created"],
        json!([]),
        "second run creates nothing: {second}"
    );
    assert_eq!(first["hosted_zone_id"], second["hosted_zone_id"]);
    assert_eq!(first["certificate_arn"], second["certificate_arn"]);
    // Created: the zone, the certificate and one validation record (shared by the
    // domain and its wildcard).
    assert_eq!(first["created"].as_array().unwrap().len(), 3, "{first}");
    assert_eq!(first["domain"], json!(domain));
    assert_eq!(first["validation_zone_id"], json!(public_id));
    assert_eq!(first["validation_records_written"], json!(true));

    // The zone: private, for the domain, associated with the deployment's VPC, tagged.
    let zone_id = first["hosted_zone_id"].as_str().unwrap();
    let zone = route53.get_hosted_zone().id(zone_id).send().await.unwrap();
    let hosted = zone.hosted_zone().unwrap();
    assert_eq!(hosted.name(), format!("{domain}."));
    assert!(
        hosted.config().unwrap().private_zone(),
        "the zone is private"
    );
    assert!(
        zone.vpcs().iter().any(|v| v.vpc_id() == Some(vpc)),
        "associated with {vpc}: {:?}",
        zone.vpcs()
    );
    let tags = route53
        .list_tags_for_resource()
        .resource_type(TagResourceType::Hostedzone)
        .resource_id(zone_id)
        .send()
        .await
        .unwrap();
    let tags = tags.resource_tag_set().unwrap().tags();
    for (key, value) in [
        ("apiary:deployment", name.as_str()),
        ("apiary:layer", "dns"),
    ] {
        assert!(
            tags.iter()
                .any(|t| t.key() == Some(key) && t.value() == Some(value)),
            "{key}={value}: {tags:?}"
        );
    }

    // The certificate: the domain and its wildcard, DNS validation, tagged.
    let arn = first["certificate_arn"].as_str().unwrap();
    let described = acm
        .describe_certificate()
        .certificate_arn(arn)
        .send()
        .await
        .unwrap();
    let certificate = described.certificate().unwrap();
    assert_eq!(certificate.domain_name(), Some(domain.as_str()));
    assert!(
        certificate
            .subject_alternative_names()
            .contains(&format!("*.{domain}")),
        "{:?}",
        certificate.subject_alternative_names()
    );
    assert!(!certificate.domain_validation_options().is_empty());
    for option in certificate.domain_validation_options() {
        assert_eq!(
            option.validation_method(),
            Some(&aws_sdk_acm::types::ValidationMethod::Dns)
        );
    }
    assert_eq!(
        second["certificate_status"].as_str(),
        certificate.status().map(|s| s.as_str()),
        "the output reports ACM's own status"
    );
    let cert_tags = acm
        .list_tags_for_certificate()
        .certificate_arn(arn)
        .send()
        .await
        .unwrap();
    for (key, value) in [
        ("apiary:deployment", name.as_str()),
        ("apiary:layer", "dns"),
    ] {
        assert!(
            cert_tags
                .tags()
                .iter()
                .any(|t| t.key() == key && t.value() == Some(value)),
            "{key}={value}"
        );
    }

    // The validation record is in the public zone, with ACM's value.
    let records = first["validation_records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    let sets = route53
        .list_resource_record_sets()
        .hosted_zone_id(&public_id)
        .send()
        .await
        .unwrap();
    let cname = sets
        .resource_record_sets()
        .iter()
        .find(|s| s.r#type() == &RrType::Cname)
        .expect("a CNAME in the public zone");
    assert_eq!(cname.name(), record["name"].as_str().unwrap());
    assert_eq!(
        cname.resource_records()[0].value(),
        record["value"].as_str().unwrap()
    );

    let entries = recorder.entries.lock().unwrap();
    let outcomes: Vec<&str> = entries.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, ["created", "unchanged"]);
}

#[tokio::test]
async fn without_a_public_zone_the_records_are_returned_for_the_customer() {
    let config = sdk_config().await;
    let route53 = aws_sdk_route53::Client::new(&config);
    let name = unique_name("dnsext");
    let domain = format!("hh.{name}.example.org");
    let spec = spec(&name, &domain, &unique_cidr(&config).await);
    let network = network_layer(&config, &spec).await;

    let deps = dns::Deps::new(&config, Arc::new(dns_state(&spec, &network)));
    let first = dns::handle(&deps, event(&spec)).await.expect("ensure");
    assert_eq!(first["validation_records_written"], json!(false), "{first}");
    assert_eq!(first["validation_zone_id"], json!(null));
    let records = first["validation_records"].as_array().unwrap();
    assert!(!records.is_empty());
    assert!(
        records.iter().all(|r| r["type"] == json!("CNAME")
            && r["name"].as_str().unwrap().ends_with(&format!("{domain}."))),
        "{records:?}"
    );
    let note = first["validation_note"].as_str().unwrap();
    assert!(
        note.contains("NOT written") && note.contains(&domain),
        "{note}"
    );
    // Only the zone and the certificate were created: no record anywhere.
    assert_eq!(first["created"].as_array().unwrap().len(), 2, "{first}");
    let zone = route53
        .list_resource_record_sets()
        .hosted_zone_id(first["hosted_zone_id"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        zone.resource_record_sets()
            .iter()
            .all(|s| s.r#type() != &RrType::Cname),
        "no validation record in the private zone"
    );
}
