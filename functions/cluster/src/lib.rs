//! The cluster layer: an EKS cluster in EKS Auto Mode (private endpoint by default,
//! secrets envelope encryption, every control-plane log type, access entries), a managed
//! node group for the system workloads, and the Karpenter prerequisites (the node role
//! with its discovery tag, the interruption queue and the EventBridge rules feeding it).
//!
//! Actions, in the order the state machine runs them:
//! `ensure-cluster` (IAM roles + cluster) → poll `status-cluster` → `ensure-nodegroup`
//! (access entries, add-ons, node group; needs an ACTIVE cluster) → poll
//! `status-nodegroup` → `ensure-karpenter`. Every action returns the `ClusterOutput`
//! fields it knows plus `ready`; `ensure-karpenter`'s output is the complete one.

mod access;
mod control_plane;
mod iam;
mod karpenter;
mod nodegroup;

use std::sync::Arc;

use apiary_core::naming::{Layer, Names, TAG_ROLE};
use apiary_core::outputs::{ClusterOutput, Layers};
use apiary_core::spec::DeploymentSpec;
use apiary_core::step::{Recorder, StepInput, StepLog};
use apiary_core::{Error, Result};
use aws_sdk_eks::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use serde_json::{Value, json};

pub use iam::{CLUSTER_POLICIES, NODE_POLICIES, NODEGROUP_POLICIES};
pub use karpenter::INTERRUPTION_RULES;

pub struct Deps {
    pub eks: aws_sdk_eks::Client,
    pub iam: aws_sdk_iam::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub sts: aws_sdk_sts::Client,
    pub recorder: Arc<dyn Recorder>,
    /// IAM roles that get cluster-admin access entries: in AWS, the workloads function's
    /// role (the one that applies the manifests). Empty: the caller's own role, which is
    /// what a local run or a single-role setup needs.
    pub kubernetes_admins: Vec<String>,
}

impl Deps {
    pub fn new(config: &aws_config::SdkConfig, recorder: Arc<dyn Recorder>) -> Self {
        Deps {
            eks: apiary_core::client!(aws_sdk_eks, config),
            iam: apiary_core::client!(aws_sdk_iam, config),
            sqs: apiary_core::client!(aws_sdk_sqs, config),
            events: apiary_core::client!(aws_sdk_eventbridge, config),
            sts: apiary_core::client!(aws_sdk_sts, config),
            recorder,
            kubernetes_admins: Vec::new(),
        }
    }

    /// Grants cluster admin to these role ARNs instead of the caller's role.
    pub fn with_kubernetes_admins(mut self, roles: Vec<String>) -> Self {
        self.kubernetes_admins = roles;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    EnsureCluster,
    StatusCluster,
    EnsureNodegroup,
    StatusNodegroup,
    EnsureKarpenter,
}

impl Action {
    fn parse(action: &str) -> Result<Action> {
        Ok(match action {
            "ensure-cluster" => Action::EnsureCluster,
            "status-cluster" => Action::StatusCluster,
            "ensure-nodegroup" => Action::EnsureNodegroup,
            "status-nodegroup" => Action::StatusNodegroup,
            "ensure-karpenter" => Action::EnsureKarpenter,
            other => {
                return Err(Error::invalid_input(format!(
                    "cluster: unknown action {other:?}; expected one of ensure-cluster, \
                     status-cluster, ensure-nodegroup, status-nodegroup, ensure-karpenter"
                )));
            }
        })
    }

    fn creates(self) -> bool {
        matches!(
            self,
            Action::EnsureCluster | Action::EnsureNodegroup | Action::EnsureKarpenter
        )
    }
}

/// The deterministic names of everything this layer makes.
#[derive(Debug, Clone)]
pub(crate) struct ClusterNames {
    pub cluster: String,
    pub cluster_role: String,
    /// The role of the nodes EKS Auto Mode (Karpenter) launches for the NodePools.
    pub node_role: String,
    /// The role of the managed node group's nodes.
    pub nodegroup_role: String,
    pub nodegroup: String,
    pub queue: String,
}

impl ClusterNames {
    fn new(names: &Names) -> Self {
        ClusterNames {
            cluster: names.resource("eks"),
            cluster_role: names.resource("eks-cluster"),
            node_role: names.resource("eks-node"),
            nodegroup_role: names.resource("eks-nodegroup"),
            nodegroup: names.resource("system"),
            queue: names.resource("karpenter"),
        }
    }
}

/// What one action works with.
pub(crate) struct Step<'a> {
    pub deps: &'a Deps,
    pub spec: &'a DeploymentSpec,
    pub names: &'a Names,
    pub resources: ClusterNames,
    pub layers: &'a Layers,
    pub log: &'a StepLog<'a>,
    /// `aws`, `aws-cn` or `aws-us-gov`: AWS managed policy ARNs depend on it.
    pub partition: &'static str,
}

impl Step<'_> {
    /// The layer tags plus the resource's role, as (key, value) pairs.
    pub(crate) fn tags(&self, role: &str) -> Vec<(String, String)> {
        let mut tags = self.names.tags(Layer::Cluster);
        tags.push((TAG_ROLE.to_owned(), role.to_owned()));
        tags
    }
}

/// The partition a region belongs to.
pub(crate) fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// What an action found or made; serialised as `ClusterOutput` plus the extras below.
#[derive(Debug, Default)]
pub(crate) struct View {
    pub output: ClusterOutput,
    pub cluster_role_arn: String,
    pub nodegroup_role_arn: String,
    pub cluster_status: Option<String>,
    pub nodegroup_status: Option<String>,
    pub ready: bool,
    pub missing: Vec<String>,
    pub access_entries: Option<Vec<Value>>,
    pub addons: Option<Vec<Value>>,
    pub interruption_rules: Option<Vec<String>>,
}

#[tracing::instrument(name = "cluster", skip_all, fields(deployment, action))]
pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    let input = StepInput::from_event(event)?;
    let action = Action::parse(&input.action)?;
    let spec = input.spec()?;
    tracing::Span::current()
        .record("deployment", spec.name.as_str())
        .record("action", input.action.as_str());
    let names = Names::new(&spec.name);
    let log = StepLog::new(deps.recorder.as_ref(), &spec.name, Layer::Cluster, &input);
    let region = deps
        .eks
        .config()
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| spec.region.clone());
    let step = Step {
        deps,
        spec: &spec,
        names: &names,
        resources: ClusterNames::new(&names),
        layers: &input.layers,
        log: &log,
        partition: partition(&region),
    };
    let mut view = View::default();
    view.output.cluster_name = step.resources.cluster.clone();
    view.output.nodegroup_name = step.resources.nodegroup.clone();

    // Boxed: these futures nest deep enough to exceed the compiler's layout query depth
    // inside the Lambda runtime's future.
    match action {
        Action::EnsureCluster => Box::pin(control_plane::ensure(&step, &mut view)).await?,
        Action::StatusCluster => Box::pin(control_plane::status(&step, &mut view)).await?,
        Action::EnsureNodegroup => Box::pin(nodegroup::ensure(&step, &mut view)).await?,
        Action::StatusNodegroup => Box::pin(nodegroup::status(&step, &mut view)).await?,
        Action::EnsureKarpenter => Box::pin(karpenter::ensure(&step, &mut view)).await?,
    }

    let outcome = if action.creates() {
        log.ensure_outcome()
    } else if view.ready {
        "ready"
    } else if !view.missing.is_empty() {
        "missing"
    } else {
        "not-ready"
    };
    let detail = (!view.missing.is_empty())
        .then(|| format!("missing: {}", view.missing.join(", ")))
        .or_else(|| {
            (!view.ready).then(|| {
                format!(
                    "cluster {}, node group {}",
                    view.cluster_status.as_deref().unwrap_or("unknown"),
                    view.nodegroup_status.as_deref().unwrap_or("unknown")
                )
            })
        });
    log.finish(outcome, detail).await?;
    Ok(output(view, log.created_ids()))
}

fn output(view: View, created: Vec<String>) -> Value {
    let mut value = serde_json::to_value(&view.output).expect("ClusterOutput serialises");
    value["cluster_role_arn"] = json!(view.cluster_role_arn);
    value["nodegroup_role_arn"] = json!(view.nodegroup_role_arn);
    value["cluster_status"] = json!(view.cluster_status);
    if let Some(status) = view.nodegroup_status {
        value["nodegroup_status"] = json!(status);
    }
    if let Some(entries) = view.access_entries {
        value["access_entries"] = json!(entries);
    }
    if let Some(addons) = view.addons {
        value["addons"] = json!(addons);
    }
    if let Some(rules) = view.interruption_rules {
        value["interruption_rules"] = json!(rules);
    }
    value["ready"] = json!(view.ready);
    value["created"] = json!(created);
    if !view.missing.is_empty() {
        value["missing"] = json!(view.missing);
    }
    value
}

/// An endpoint that does not implement an operation at all answers 404 with no AWS error
/// code: moto 5.2.5 does so for EKS access entries and add-ons. AWS itself always names
/// its errors (a missing cluster is `ResourceNotFoundException`), so this never hides a
/// real failure.
pub(crate) fn is_not_implemented<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    status == Some(404) && err.as_service_error().is_none_or(|e| e.code().is_none())
}

#[cfg(test)]
mod tests;
