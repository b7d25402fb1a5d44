//! Drift: what AWS reports for the deployment's recorded resources, compared with what
//! the record (the spec and the layers' saved outputs) says provision made. Read-only:
//! the function's role may describe, never change; `{"repair": true}` asks the control
//! function to start a provision, which converges.
//!
//! What is compared, security-relevant settings first:
//!
//! - **Security groups**: every ingress rule provision makes (the same rules, from
//!   `network::security::wanted_ingress`) present; no other ingress rule on a group only
//!   Apiary writes to (the load balancer's, the data stores'); on the cluster's group,
//!   where EKS and the load balancer controller add rules, only a rule open to the whole
//!   internet counts. The interface endpoints' group, which the network layer's output
//!   leaves out, is found by its tags as provision finds it. An extra rule is repairable
//!   only on the load balancer's group, the one group whose other rules provision
//!   revokes. The control plane's group's egress: exactly the rules provision writes
//!   (`network::security::control_plane_egress`), any other reported as security drift.
//!   Not compared: the egress of the other groups (each keeps EC2's default allow-all,
//!   which provision never narrows).
//! - **Buckets**: default encryption with the deployment's `s3` key (the access-log
//!   bucket: SSE-S3, the only kind access-log delivery writes), all four Block Public
//!   Access settings, versioning on the backups bucket.
//! - **EKS**: the endpoint's public access and its networks as the spec says, secrets
//!   encrypted with the deployment's key.
//! - **PostgreSQL**: encrypted, not publicly accessible, deletion protection on.
//! - **DocumentDB**: encrypted with the deployment's `docdb` key, deletion protection on.
//! - **Redis**: encrypted at rest with the deployment's `redis` key and in transit, an
//!   AUTH token required.
//! - **Keys**: enabled, automatic rotation on, the key policy the keys layer writes.
//!
//! - **What nothing recorded**: every resource the Resource Groups Tagging API lists with
//!   the deployment's `apiary:deployment` tag that the inventory does not record, leaving
//!   out what the cluster's controllers make (their own tags say so) and backups (the
//!   backup catalogue keeps them).
//!
//! Each difference is a [`Finding`]: `missing` (recorded, not found), `changed` (found,
//! not as recorded), `unrecorded` (found, tagged as ours, recorded nowhere); `security: true` when it opens or unprotects something;
//! `repairable: false` when a provision cannot change it back (an encryption chosen at
//! creation, PostgreSQL's public accessibility, a key's state, which is the customer's
//! decision, a key that is gone). A torn-down deployment is not compared. The run
//! reports them in the journal, as an EventBridge event (`Apiary Drift Detected`) and as
//! metrics (`Apiary/Drift`: `Findings`, `SecurityFindings`), which the stack's
//! `drift-security` alarm watches.

mod checks;

use std::sync::Arc;

use apiary_core::inputs::drift::{self, DriftInput};
use apiary_core::naming::Layer;
use apiary_core::step::{Action, Done, Recorder, Step, StepContext};
use apiary_core::store::DeploymentStatus;
use apiary_core::{Error, Result};
use async_trait::async_trait;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use checks::{Finding, FindingKind};

/// The EventBridge source and detail type of a drift report.
pub const EVENT_SOURCE: &str = "apiary";
pub const DETAIL_TYPE: &str = "Apiary Drift Detected";
/// The CloudWatch namespace of the drift metrics.
pub const METRIC_NAMESPACE: &str = "Apiary/Drift";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum DriftAction {
    #[serde(rename = "check")]
    Check,
}

impl Action for DriftAction {
    fn as_str(self) -> &'static str {
        "check"
    }

    fn mutates(self) -> bool {
        false
    }
}

pub struct Deps {
    pub ec2: aws_sdk_ec2::Client,
    pub s3: aws_sdk_s3::Client,
    pub eks: aws_sdk_eks::Client,
    pub rds: aws_sdk_rds::Client,
    pub elasticache: aws_sdk_elasticache::Client,
    pub kms: aws_sdk_kms::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub tagging: aws_sdk_resourcegroupstagging::Client,
    pub recorder: Arc<dyn Recorder>,
    /// The AWS endpoint is the local emulator (it does not accept this SDK's CloudWatch
    /// requests).
    pub emulator: bool,
}

impl Deps {
    pub fn new(config: &aws_config::SdkConfig, recorder: Arc<dyn Recorder>) -> Self {
        Deps {
            ec2: apiary_core::client!(aws_sdk_ec2, config),
            s3: apiary_core::aws::s3_client(config),
            eks: apiary_core::client!(aws_sdk_eks, config),
            rds: apiary_core::client!(aws_sdk_rds, config),
            elasticache: apiary_core::client!(aws_sdk_elasticache, config),
            kms: apiary_core::client!(aws_sdk_kms, config),
            events: apiary_core::client!(aws_sdk_eventbridge, config),
            cloudwatch: apiary_core::client!(aws_sdk_cloudwatch, config),
            tagging: apiary_core::client!(aws_sdk_resourcegroupstagging, config),
            recorder,
            emulator: config.endpoint_url().is_some(),
        }
    }
}

/// What a check found and where it was told.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was compared: `security group sg-1 (alb)`, `S3 bucket ...`.
    pub checked: Vec<String>,
    pub findings: Vec<Finding>,
    /// How many findings.
    pub total: usize,
    /// How many of them are security-relevant.
    pub security: usize,
    /// How many of them a provision converges (a repair starts one only for these).
    pub repairable: usize,
    /// Whether the input asked for a repair (the workflow's next step starts it).
    pub repair: bool,
    /// The EventBridge event, or why none was sent.
    pub event: String,
    /// The metrics, or why none were put.
    pub metrics: String,
}

#[async_trait]
impl Step for Deps {
    const LAYER: Layer = Layer::Control;
    type Action = DriftAction;
    type Output = Report;

    async fn run(&self, step: &StepContext<'_, DriftAction>) -> Result<Done<Report>> {
        let given = step.options.get("input").cloned().unwrap_or(json!({}));
        let input: DriftInput = apiary_core::inputs::read(
            drift::WORKFLOW,
            apiary_core::inputs::parse(drift::WORKFLOW, step.names.deployment(), &given)?,
        )?;
        let deployment = step.names.deployment();
        // A torn-down deployment (or one being torn down) has nothing to compare: its
        // keys are pending deletion on purpose and its resources are gone. The zeros
        // are put so the alarm clears.
        if let Some(status) = self.recorder.status(deployment).await?
            && matches!(
                status,
                DeploymentStatus::Deleted | DeploymentStatus::TearingDown
            )
        {
            let metrics = self.put_metrics(deployment, 0, 0).await?;
            let detail = format!(
                "deployment {deployment} is {}: nothing to compare",
                status.as_str()
            );
            return Ok(Done::ready(Report {
                checked: Vec::new(),
                findings: Vec::new(),
                total: 0,
                security: 0,
                repairable: 0,
                repair: input.repair,
                event: "no event: nothing compared".to_owned(),
                metrics,
            })
            .with_detail(detail));
        }
        let (checked, findings) = Box::pin(checks::run(self, step)).await?;
        let total = findings.len();
        let security = findings.iter().filter(|f| f.security).count();
        let repairable = findings.iter().filter(|f| f.repairable).count();
        // The metrics first: the alarm reads them, and a retried step (the event failed)
        // puts the same values again.
        let metrics = self.put_metrics(deployment, total, security).await?;
        let event = self
            .publish(deployment, &step.execution_id, &findings)
            .await?;
        let detail = if findings.is_empty() {
            format!("no drift in {} resources checked", checked.len())
        } else {
            format!(
                "{total} difference(s), {security} security-relevant: {}",
                findings
                    .iter()
                    .map(Finding::sentence)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        Ok(Done::ready(Report {
            checked,
            findings,
            total,
            security,
            repairable,
            repair: input.repair,
            event,
            metrics,
        })
        .with_detail(detail))
    }

    fn state(&self) -> &dyn Recorder {
        self.recorder.as_ref()
    }

    fn journal_step(&self, _options: &Map<String, Value>) -> String {
        drift::WORKFLOW.to_owned()
    }
}

impl Deps {
    /// One event per run with findings (none when nothing drifted: the metric says so).
    async fn publish(
        &self,
        deployment: &str,
        execution_id: &str,
        findings: &[Finding],
    ) -> Result<String> {
        if findings.is_empty() {
            return Ok("no event: nothing drifted".to_owned());
        }
        let detail = json!({
            "deployment": deployment,
            "execution_id": execution_id,
            "findings": findings,
            "security": findings.iter().filter(|f| f.security).count(),
        });
        let sent = self
            .events
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source(EVENT_SOURCE)
                    .detail_type(DETAIL_TYPE)
                    .detail(detail.to_string())
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Error::aws("PutEvents (drift report)", e))?;
        if sent.failed_entry_count() > 0 {
            let reason: Vec<&str> = sent
                .entries()
                .iter()
                .filter_map(|e| e.error_message())
                .collect();
            return Err(Error::Aws {
                operation: "PutEvents (drift report)".into(),
                code: None,
                message: format!("EventBridge refused the event: {}", reason.join("; ")),
                retryable: true,
            });
        }
        Ok(format!("sent {DETAIL_TYPE:?} to the default event bus"))
    }

    /// Both counts every run, zeros included, so the alarm sees a drift end.
    async fn put_metrics(&self, deployment: &str, total: usize, security: usize) -> Result<String> {
        let datum = |name: &str, value: usize| {
            MetricDatum::builder()
                .metric_name(name)
                .value(value as f64)
                .unit(StandardUnit::Count)
                .dimensions(
                    Dimension::builder()
                        .name("Deployment")
                        .value(deployment)
                        .build(),
                )
                .build()
        };
        let put = self
            .cloudwatch
            .put_metric_data()
            .namespace(METRIC_NAMESPACE)
            .metric_data(datum("Findings", total))
            .metric_data(datum("SecurityFindings", security))
            .send()
            .await;
        match put {
            Ok(_) => Ok(format!(
                "put {METRIC_NAMESPACE} Findings={total} SecurityFindings={security}"
            )),
            Err(err) if apiary_core::aws::not_emulated(self.emulator, &err) => {
                Ok(apiary_core::aws::NOT_EMULATED_CLOUDWATCH.to_owned())
            }
            Err(err) => Err(Error::aws("PutMetricData (drift)", err)),
        }
    }
}

/// The function's entry point: the step kit, over these dependencies.
pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    apiary_core::step::run(deps, event).await
}
