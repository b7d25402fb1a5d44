//! The ACM certificate for the domain and its wildcard, and its DNS validation records.

use apiary_core::naming::{Layer, TAG_LAYER};
use apiary_core::outputs::CERTIFICATE_ISSUED;
use apiary_core::{Error, Result};
use aws_sdk_acm::types::{CertificateStatus, Tag, ValidationMethod};
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ResourceRecord, ResourceRecordSet, RrType,
};
use serde::Serialize;

use crate::Run;
use crate::zone::bare_id;

/// TTL of the validation CNAMEs: ACM re-checks them for every renewal.
const VALIDATION_TTL: i64 = 300;

/// A CNAME ACM needs to see in public DNS before it issues the certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ValidationRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub record_type: String,
    pub value: String,
}

pub struct Described {
    pub status: String,
    pub records: Vec<ValidationRecord>,
}

/// Where the validation records went, said plainly.
pub struct Validation {
    pub records: Vec<ValidationRecord>,
    pub public_zone_id: Option<String>,
    pub written: bool,
    pub note: String,
}

impl Validation {
    /// ACM has published no records (yet).
    pub fn not_published(issued: bool) -> Validation {
        Validation {
            records: Vec::new(),
            public_zone_id: None,
            written: false,
            note: if issued {
                "the certificate is ISSUED".to_owned()
            } else {
                "waiting for ACM to publish the DNS validation records".to_owned()
            },
        }
    }
}

/// `name CNAME value` for each record, as a person types them into a DNS console.
fn listed(records: &[ValidationRecord]) -> String {
    records
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type, r.value))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The certificate's ACM idempotency token: the same for every request of this
/// deployment's incarnation (its VPC) and domain, so a retried RequestCertificate gets
/// the first certificate; a deployment provisioned again after a teardown gets a new
/// one, never the deleted certificate ACM would hand back for the old token within its
/// hour. ACM accepts `\w`, at most 32 characters.
pub(crate) fn idempotency_token(deployment: &str, vpc_id: &str, domain: &str) -> String {
    let token = apiary_core::naming::client_token(&[deployment, vpc_id, domain]);
    let hex = token.trim_start_matches("apiary-");
    format!("apiary{}", &hex[..26])
}

pub async fn ensure_certificate(run: &Run<'_>) -> Result<String> {
    let arn = match find_certificate(run).await? {
        Some(arn) => arn,
        None => request_certificate(run).await?,
    };
    run.log
        .resource("acm:certificate", &arn, Some(&arn))
        .await?;
    Ok(arn)
}

/// A usable (pending or issued) certificate for the domain tagged as this deployment's
/// dns layer. Certificates of the same domain that are not Apiary's are left alone: ACM
/// allows any number per domain.
async fn find_certificate(run: &Run<'_>) -> Result<Option<String>> {
    let acm = &run.deps.acm;
    let mut next_token = None;
    loop {
        let page = acm
            .list_certificates()
            .certificate_statuses(CertificateStatus::PendingValidation)
            .certificate_statuses(CertificateStatus::Issued)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| Error::aws("ListCertificates", e))?;
        for summary in page.certificate_summary_list() {
            let (Some(arn), Some(domain)) = (summary.certificate_arn(), summary.domain_name())
            else {
                continue;
            };
            if !domain.eq_ignore_ascii_case(&run.domain) {
                continue;
            }
            let tags = acm
                .list_tags_for_certificate()
                .certificate_arn(arn)
                .send()
                .await
                .map_err(|e| Error::aws(format!("ListTagsForCertificate {arn}"), e))?;
            let tags = tags.tags();
            let ours = run.owns(tags.iter().map(|t| (t.key(), t.value())))
                && tags
                    .iter()
                    .any(|t| t.key() == TAG_LAYER && t.value() == Some(Layer::Dns.as_str()));
            if ours {
                return Ok(Some(arn.to_owned()));
            }
        }
        match page.next_token() {
            Some(token) => next_token = Some(token.to_owned()),
            None => return Ok(None),
        }
    }
}

async fn request_certificate(run: &Run<'_>) -> Result<String> {
    let mut request = run
        .deps
        .acm
        .request_certificate()
        .domain_name(&run.domain)
        .subject_alternative_names(format!("*.{}", run.domain))
        .validation_method(ValidationMethod::Dns)
        .idempotency_token(idempotency_token(
            run.names.deployment(),
            &run.vpc_id,
            &run.domain,
        ));
    for (key, value) in run.names.tags(Layer::Dns) {
        request = request.tags(
            Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|e| Error::fatal(e.to_string()))?,
        );
    }
    let out = request
        .send()
        .await
        .map_err(|e| Error::aws(format!("RequestCertificate {}", run.domain), e))?;
    let arn = out.certificate_arn().map(str::to_owned).ok_or_else(|| {
        Error::fatal(format!(
            "RequestCertificate {} returned no certificate ARN",
            run.domain
        ))
    })?;
    run.log.created(&arn);
    Ok(arn)
}

/// The certificate's status and the distinct DNS validation records ACM has published
/// so far (the domain and its wildcard share one record).
pub async fn describe(run: &Run<'_>, arn: &str) -> Result<Described> {
    let out = run
        .deps
        .acm
        .describe_certificate()
        .certificate_arn(arn)
        .send()
        .await
        // The ARN was just requested or listed: ACM not finding it yet is its eventual
        // consistency, retried.
        .map_err(|e| {
            Error::aws_transient_if(format!("DescribeCertificate {arn}"), e, |e| {
                e.is_resource_not_found_exception()
            })
        })?;
    let certificate = out
        .certificate()
        .ok_or_else(|| Error::fatal(format!("DescribeCertificate {arn} returned nothing")))?;
    let mut records: Vec<ValidationRecord> = Vec::new();
    for option in certificate.domain_validation_options() {
        let Some(record) = option.resource_record() else {
            continue;
        };
        let record = ValidationRecord {
            name: record.name().to_owned(),
            record_type: record.r#type().as_str().to_owned(),
            value: record.value().to_owned(),
        };
        if !records.contains(&record) {
            records.push(record);
        }
    }
    Ok(Described {
        status: certificate
            .status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|| "UNKNOWN".to_owned()),
        records,
    })
}

/// Writes the validation records into this account's public zone for the domain, when
/// there is one; otherwise says which records the customer must create. `status` is the
/// certificate's, as ACM reported it: the note says what it means.
pub async fn publish_validation(
    run: &Run<'_>,
    records: Vec<ValidationRecord>,
    status: &str,
) -> Result<Validation> {
    let issued = status == CERTIFICATE_ISSUED;
    let domain = &run.domain;
    let Some(zone) = find_public_zone(run).await? else {
        let note = if issued {
            format!(
                "The certificate is ISSUED. This account has no public hosted zone for {domain} or a parent domain, so the validation records were NOT written here: keep these CNAME records in the public DNS that serves {domain}, ACM renews the certificate with them: {}",
                listed(&records)
            )
        } else {
            format!(
                "The certificate is {status}. This account has no public hosted zone for {domain} or a parent domain, so the validation records were NOT written. ACM issues the certificate only after it sees them; until then the deployment is WAITING_FOR_DNS_VALIDATION and the HTTPS ingress is not applied (run provision again once ACM reports ISSUED). Create these CNAME records in the public DNS that serves {domain}: {}",
                listed(&records)
            )
        };
        return Ok(Validation {
            records,
            public_zone_id: None,
            written: false,
            note,
        });
    };
    for record in &records {
        if !record_is_present(run, &zone, record).await? {
            upsert_record(run, &zone, record).await?;
            run.log.created(&format!("{zone}/{}", record.name));
        }
        run.log
            .resource("route53:record", &format!("{zone}/{}", record.name), None)
            .await?;
    }
    let note = if issued {
        format!(
            "The validation records are in this account's public hosted zone {zone} and the certificate is ISSUED."
        )
    } else {
        format!(
            "The validation records are in this account's public hosted zone {zone}; the certificate is {status}. ACM validates through public DNS, usually within minutes, but only if the domain's registrar delegates to that zone; until it issues the certificate the deployment is WAITING_FOR_DNS_VALIDATION and the HTTPS ingress is not applied."
        )
    };
    Ok(Validation {
        records,
        public_zone_id: Some(zone.clone()),
        written: true,
        note,
    })
}

/// The most specific public zone in this account for the domain or one of its parents
/// (never a bare top-level domain).
async fn find_public_zone(run: &Run<'_>) -> Result<Option<String>> {
    let labels: Vec<&str> = run.domain.split('.').collect();
    for start in 0..labels.len().saturating_sub(1) {
        let candidate = labels[start..].join(".");
        let out = run
            .deps
            .route53
            .list_hosted_zones_by_name()
            .dns_name(&candidate)
            .send()
            .await
            .map_err(|e| Error::aws(format!("ListHostedZonesByName {candidate}"), e))?;
        let public = out.hosted_zones().iter().find(|z| {
            z.name()
                .trim_end_matches('.')
                .eq_ignore_ascii_case(&candidate)
                && !z.config().is_some_and(|c| c.private_zone())
        });
        if let Some(zone) = public {
            return Ok(Some(bare_id(zone.id())));
        }
    }
    Ok(None)
}

async fn record_is_present(run: &Run<'_>, zone: &str, record: &ValidationRecord) -> Result<bool> {
    let out = run
        .deps
        .route53
        .list_resource_record_sets()
        .hosted_zone_id(zone)
        .start_record_name(&record.name)
        .start_record_type(RrType::Cname)
        .max_items(1)
        .send()
        .await
        .map_err(|e| Error::aws(format!("ListResourceRecordSets {zone}"), e))?;
    Ok(out.resource_record_sets().iter().any(|set| {
        set.name()
            .trim_end_matches('.')
            .eq_ignore_ascii_case(record.name.trim_end_matches('.'))
            && set.r#type() == &RrType::Cname
            && set
                .resource_records()
                .iter()
                .any(|r| r.value() == record.value)
    }))
}

async fn upsert_record(run: &Run<'_>, zone: &str, record: &ValidationRecord) -> Result<()> {
    let build = |e: aws_sdk_route53::error::BuildError| Error::fatal(e.to_string());
    let set = ResourceRecordSet::builder()
        .name(&record.name)
        .r#type(RrType::Cname)
        .ttl(VALIDATION_TTL)
        .resource_records(
            ResourceRecord::builder()
                .value(&record.value)
                .build()
                .map_err(build)?,
        )
        .build()
        .map_err(build)?;
    let batch = ChangeBatch::builder()
        .comment(format!(
            "ACM DNS validation for {} (Apiary deployment {})",
            run.domain,
            run.names.deployment()
        ))
        .changes(
            Change::builder()
                .action(ChangeAction::Upsert)
                .resource_record_set(set)
                .build()
                .map_err(build)?,
        )
        .build()
        .map_err(build)?;
    run.deps
        .route53
        .change_resource_record_sets()
        .hosted_zone_id(zone)
        .change_batch(batch)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                format!("ChangeResourceRecordSets {zone} {}", record.name),
                e,
            )
        })?;
    Ok(())
}
