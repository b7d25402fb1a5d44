//! The dns layer: a private Route53 hosted zone for the customer's domain attached to the
//! deployment's VPC, and an ACM certificate for the domain and its wildcard, validated
//! through DNS.
//!
//! ACM validates through *public* DNS, and publishes the records it wants to see seconds
//! to a minute after the request: until then the step is pending and the workflow polls
//! it. When this account hosts a public zone for the domain (or a parent of it), the
//! validation CNAMEs are written there; otherwise they are returned (output and journal)
//! for the customer to create. Either way the step is then ready, and the output carries
//! the certificate's status as ACM reports it: nothing here claims a validation that did
//! not happen. A certificate that is not ISSUED makes the run end
//! WAITING_FOR_DNS_VALIDATION rather than READY (the control step reads the status), and
//! keeps the workloads step from applying the HTTPS ingress.

pub mod alias;
mod certificate;
mod zone;

use std::sync::Arc;

use apiary_core::Result;
use apiary_core::naming::{Layer, Names, TAG_DEPLOYMENT};
use apiary_core::outputs::{CERTIFICATE_ISSUED, DnsOutput};
use apiary_core::step::{Done, Recorder, Step, StepContext, StepLog};
use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

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

/// What the dns function does, as the state machine spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum DnsAction {
    /// The private zone and the certificate (polled until ACM publishes its records).
    #[serde(rename = "ensure")]
    Ensure,
    /// After the workloads: the domain's alias to the load balancer (`alias`).
    #[serde(rename = "ensure-alias")]
    EnsureAlias,
}

impl apiary_core::step::Action for DnsAction {
    fn as_str(self) -> &'static str {
        match self {
            DnsAction::Ensure => "ensure",
            DnsAction::EnsureAlias => "ensure-alias",
        }
    }
    fn slot(self) -> Option<&'static str> {
        Some(match self {
            DnsAction::Ensure => "dns",
            // Beside the layers, not in them: no later step reads it.
            DnsAction::EnsureAlias => "alias",
        })
    }
}

/// What either action returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum DnsStepOutput {
    Zone(DnsReport),
    Alias(alias::AliasReport),
}

/// One run of the layer: the clients, names and log shared by every part.
pub(crate) struct Run<'a> {
    pub deps: &'a Deps,
    pub names: &'a Names,
    pub log: &'a StepLog<'a>,
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

/// What the layer returns: the shared [`DnsOutput`] (what later layers read, with the
/// certificate's status as ACM reports it) and the validation records (for the customer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsReport {
    #[serde(flatten)]
    pub layer: DnsOutput,
    pub validation_records: Vec<ValidationRecord>,
    /// The public zone the records were written to; `None` when the customer must.
    pub validation_zone_id: Option<String>,
    pub validation_records_written: bool,
    pub validation_note: String,
}

pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    apiary_core::step::run(deps, event).await
}

#[async_trait]
impl Step for Deps {
    const LAYER: Layer = Layer::Dns;
    type Action = DnsAction;
    type Output = DnsStepOutput;

    async fn run(&self, step: &StepContext<'_, DnsAction>) -> Result<Done<DnsStepOutput>> {
        if step.action == DnsAction::EnsureAlias {
            let dns = step.layers.dns()?;
            let outputs = self.recorder.outputs(step.names.deployment()).await?;
            let target = alias::load_balancer(outputs.get(alias::ROLLOUT_SLOT))?;
            let report =
                alias::ensure(&self.route53, &dns.hosted_zone_id, &dns.domain, target).await?;
            if report.written {
                step.log.created(&format!("{} A alias", report.domain));
            }
            let note = report.note.clone();
            return Ok(Done::ready(DnsStepOutput::Alias(report)).with_detail(note));
        }
        let network = step.layers.network()?;
        let region = self
            .acm
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| step.spec.region.clone());
        let run = Run {
            deps: self,
            names: &step.names,
            log: &step.log,
            domain: step
                .spec
                .dns
                .domain
                .trim_end_matches('.')
                .to_ascii_lowercase(),
            vpc_id: network.vpc_id.clone(),
            region,
        };
        Ok(ensure(&run).await?.map(DnsStepOutput::Zone))
    }

    fn state(&self) -> &dyn Recorder {
        self.recorder.as_ref()
    }
}

/// Ready once ACM has published the validation records and they are written (or, with no
/// public zone to write them to, handed to the customer): the certificate may still be
/// PENDING_VALIDATION then, which the output says, and the control step marks the
/// deployment WAITING_FOR_DNS_VALIDATION instead of READY. Until ACM publishes them the
/// step is pending, so the workflow polls it.
async fn ensure(run: &Run<'_>) -> Result<Done<DnsReport>> {
    let hosted_zone_id = zone::ensure_private_zone(run).await?;
    let certificate_arn = certificate::ensure_certificate(run).await?;
    let described = certificate::describe(run, &certificate_arn).await?;
    let issued = described.status == CERTIFICATE_ISSUED;
    let mut pending = Vec::new();
    let validation = if described.records.is_empty() {
        if !issued {
            // ACM publishes the records seconds to a minute after the request.
            pending.push(format!(
                "ACM has not yet published the DNS validation records of certificate {certificate_arn}"
            ));
        }
        certificate::Validation::not_published(issued)
    } else {
        certificate::publish_validation(run, described.records, &described.status).await?
    };
    let report = DnsReport {
        layer: DnsOutput {
            domain: run.domain.clone(),
            hosted_zone_id,
            certificate_arn,
            certificate_status: Some(described.status),
        },
        validation_records: validation.records,
        validation_zone_id: validation.public_zone_id,
        validation_records_written: validation.written,
        validation_note: validation.note.clone(),
    };
    // The note (records written, or which records the customer must add) belongs in the
    // journal too.
    Ok(Done::pending(report, pending).with_detail(validation.note))
}

#[cfg(test)]
mod tests;
