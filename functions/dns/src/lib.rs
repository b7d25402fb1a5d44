//! The dns layer: a private Route53 hosted zone for the customer's domain attached to the
//! deployment's VPC, and an ACM certificate for the domain and its wildcard, validated
//! through DNS.
//!
//! ACM validates through *public* DNS. When this account hosts a public zone for the
//! domain (or a parent of it), the validation CNAMEs are written there; otherwise they
//! are returned with a note that the customer must create them. The output always
//! carries the certificate status as ACM reports it: nothing here claims a validation
//! that did not happen.

mod certificate;
mod zone;

use std::sync::Arc;

use apiary_core::naming::{Layer, Names, TAG_DEPLOYMENT};
use apiary_core::outputs::DnsOutput;
use apiary_core::step::{Recorder, StepInput, StepLog};
use apiary_core::{Error, Result};
use serde_json::{Value, json};

pub use certificate::ValidationRecord;

pub struct Deps {
    pub route53: aws_sdk_route53::Client,
    pub acm: aws_sdk_acm::Client,
    pub recorder: Arc<dyn Recorder>,
}

impl Deps {
    pub fn new(config: &aws_config::SdkConfig, recorder: Arc<dyn Recorder>) -> Self {
        Deps {
            route53: apiary_core::client!(aws_sdk_route53, config),
            acm: apiary_core::client!(aws_sdk_acm, config),
            recorder,
        }
    }
}

/// One run of the layer: the clients, names and log shared by every part.
pub(crate) struct Run<'a> {
    pub deps: &'a Deps,
    pub names: Names,
    pub log: StepLog<'a>,
    /// The customer's domain, lowercase, without a trailing dot.
    pub domain: String,
    pub vpc_id: String,
    pub region: String,
}

impl Run<'_> {
    /// Whether a tag set marks a resource as this deployment's.
    pub fn owns<'t>(&self, mut tags: impl Iterator<Item = (&'t str, Option<&'t str>)>) -> bool {
        tags.any(|(k, v)| k == TAG_DEPLOYMENT && v == Some(self.names.deployment()))
    }
}

/// What the layer found or made, beyond the shared [`DnsOutput`].
struct Report {
    output: DnsOutput,
    certificate_status: String,
    validation: certificate::Validation,
    pending: Vec<String>,
}

#[tracing::instrument(name = "dns", skip_all, fields(deployment, action))]
pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    let (input, spec) = StepInput::begin(event)?;
    input.require_ensure(Layer::Dns)?;
    let network = input.layers.network()?;
    let region = deps
        .acm
        .config()
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| spec.region.clone());
    let run = Run {
        deps,
        names: Names::new(&spec.name),
        log: StepLog::new(deps.recorder.as_ref(), &spec.name, Layer::Dns, &input),
        domain: spec.dns.domain.trim_end_matches('.').to_ascii_lowercase(),
        vpc_id: network.vpc_id.clone(),
        region,
    };
    // Boxed: the whole layer is one deep future, too deep for the compiler's layout limit.
    match Box::pin(ensure(&run)).await {
        Ok(report) => {
            let outcome = if report.pending.is_empty() {
                run.log.ensure_outcome()
            } else {
                "not-ready"
            };
            run.log
                .finish(outcome, Some(report.validation.note.clone()))
                .await?;
            let mut result =
                serde_json::to_value(&report.output).map_err(|e| Error::fatal(e.to_string()))?;
            result["certificate_status"] = json!(report.certificate_status);
            result["validation_records"] = json!(report.validation.records);
            result["validation_zone_id"] = json!(report.validation.public_zone_id);
            result["validation_records_written"] = json!(report.validation.written);
            result["validation_note"] = json!(report.validation.note);
            result["ready"] = json!(report.pending.is_empty());
            result["pending"] = json!(report.pending);
            result["created"] = json!(run.log.created_ids());
            Ok(result)
        }
        Err(err) => {
            run.log.finish("failed", Some(err.to_string())).await?;
            Err(err)
        }
    }
}

async fn ensure(run: &Run<'_>) -> Result<Report> {
    let hosted_zone_id = zone::ensure_private_zone(run).await?;
    let certificate_arn = certificate::ensure_certificate(run).await?;
    let described = certificate::describe(run, &certificate_arn).await?;
    let mut pending = Vec::new();
    let validation = if described.records.is_empty() {
        // ACM publishes the records a few seconds after the request; poll again.
        pending.push(format!(
            "ACM has not yet published the DNS validation records of certificate {certificate_arn}"
        ));
        certificate::Validation {
            records: Vec::new(),
            public_zone_id: None,
            written: false,
            note: "waiting for ACM to publish the DNS validation records".to_owned(),
        }
    } else {
        certificate::publish_validation(run, described.records).await?
    };
    Ok(Report {
        output: DnsOutput {
            domain: run.domain.clone(),
            hosted_zone_id,
            certificate_arn,
        },
        certificate_status: described.status,
        validation,
        pending,
    })
}

#[cfg(test)]
mod tests;
