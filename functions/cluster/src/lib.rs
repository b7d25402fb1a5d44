//! The cluster layer: an EKS cluster in EKS Auto Mode (private endpoint by default,
//! secrets envelope encryption, every control-plane log type, access entries), a managed
//! node group for the system workloads, and the Karpenter prerequisites (the node role
//! with its discovery tag, the interruption queue and the EventBridge rules feeding it).
//!
//! Actions, in the order the state machine runs them:
//! `ensure-cluster` (IAM roles + cluster) → poll `status-cluster` → `ensure-nodegroup`
//! (access entries, add-ons, node group; needs an ACTIVE cluster) → poll
//! `status-nodegroup` → `ensure-karpenter`. Every action returns the `ClusterOutput`
//! fields it knows plus what it saw, and keeps them, once ready, as its shard of
//! `layers.cluster`; `ensure-karpenter`'s output is the complete one.

pub mod access;
mod control_plane;
mod iam;
pub mod karpenter;
mod launch_template;
pub mod log_group;
pub mod nodegroup;
mod output;
mod scale;
mod upgrade;

use std::sync::Arc;

use apiary_core::Result;
use apiary_core::naming::{Layer, Names, TAG_ROLE};
use apiary_core::outputs::Layers;
use apiary_core::spec::DeploymentSpec;
use apiary_core::step::{self, Done, Recorder, Step, StepContext, StepLog};
use async_trait::async_trait;
use aws_sdk_eks::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use serde::Deserialize;
use serde_json::Value;

pub use iam::{CLUSTER_POLICIES, NODE_POLICIES, NODEGROUP_POLICIES};
pub use karpenter::INTERRUPTION_RULES;
pub use launch_template::{ROOT_DEVICE, ROOT_VOLUME_GIB};
pub(crate) use output::View;
pub use output::{AccessEntry, Addon, ClusterFields, ClusterReport, KnownClusterFields, Presence};

pub struct Deps {
    pub eks: aws_sdk_eks::Client,
    /// The node group's launch template.
    pub ec2: aws_sdk_ec2::Client,
    pub iam: aws_sdk_iam::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub sts: aws_sdk_sts::Client,
    /// The control plane's log group.
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub recorder: Arc<dyn Recorder>,
    /// IAM roles that get cluster-admin access entries: in AWS, the workloads function's
    /// role (the one that applies the manifests). Empty: the caller's own role, which is
    /// what a local run or a single-role setup needs.
    pub kubernetes_admins: Vec<String>,
    /// The AWS endpoint is the local emulator: an EKS API it does not implement (404
    /// without an error code) is reported as not emulated instead of failing the step.
    pub emulator: bool,
    /// The key the control plane's log group is encrypted with: the bootstrap stack's
    /// state key (`APIARY_STATE_KEY_ARN`). None locally: the group is made unencrypted.
    pub log_key: Option<String>,
    /// The role the fluent-bit add-on's service account gets through Pod Identity: the
    /// bootstrap stack's `LogShipperRole` (`APIARY_LOG_SHIPPER_ROLE_ARN`). None locally
    /// (no stack): the add-on is skipped, and the output says so.
    pub log_shipper_role: Option<String>,
}

impl Deps {
    pub fn new(config: &aws_config::SdkConfig, recorder: Arc<dyn Recorder>) -> Self {
        Deps {
            eks: apiary_core::client!(aws_sdk_eks, config),
            ec2: apiary_core::client!(aws_sdk_ec2, config),
            iam: apiary_core::client!(aws_sdk_iam, config),
            sqs: apiary_core::client!(aws_sdk_sqs, config),
            events: apiary_core::client!(aws_sdk_eventbridge, config),
            sts: apiary_core::client!(aws_sdk_sts, config),
            logs: apiary_core::client!(aws_sdk_cloudwatchlogs, config),
            recorder,
            kubernetes_admins: Vec::new(),
            emulator: config.endpoint_url().is_some(),
            log_key: None,
            log_shipper_role: None,
        }
    }

    /// Gives the fluent-bit add-on's service account this role.
    pub fn with_log_shipper(mut self, role: Option<String>) -> Self {
        self.log_shipper_role = role.filter(|r| !r.is_empty());
        self
    }

    /// Encrypts the control plane's log group with this key.
    pub fn with_log_key(mut self, key: Option<String>) -> Self {
        self.log_key = key.filter(|k| !k.is_empty());
        self
    }

    /// Grants cluster admin to these role ARNs instead of the caller's role.
    pub fn with_kubernetes_admins(mut self, roles: Vec<String>) -> Self {
        self.kubernetes_admins = roles;
        self
    }
}

/// What the state machine asks of this function, spelled as it sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Action {
    #[serde(rename = "ensure-cluster")]
    EnsureCluster,
    #[serde(rename = "status-cluster")]
    StatusCluster,
    #[serde(rename = "ensure-nodegroup")]
    EnsureNodegroup,
    #[serde(rename = "status-nodegroup")]
    StatusNodegroup,
    #[serde(rename = "ensure-karpenter")]
    EnsureKarpenter,
    /// scale-pools: the system node group's scaling configuration made the record's;
    /// its own poll.
    #[serde(rename = "scale-nodegroup")]
    ScaleNodegroup,
    /// upgrade: EKS's upgrade insights for the target version; any in ERROR refuses.
    #[serde(rename = "upgrade-insights")]
    UpgradeInsights,
    /// upgrade: the control plane one minor version up; its own poll.
    #[serde(rename = "upgrade-control-plane")]
    UpgradeControlPlane,
    /// upgrade: the system node group to the recorded version; its own poll.
    #[serde(rename = "upgrade-nodegroup")]
    UpgradeNodegroup,
    /// upgrade: the add-ons provision installs, to versions compatible with the recorded
    /// one; its own poll.
    #[serde(rename = "upgrade-addons")]
    UpgradeAddons,
}

impl step::Action for Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::EnsureCluster => "ensure-cluster",
            Action::StatusCluster => "status-cluster",
            Action::EnsureNodegroup => "ensure-nodegroup",
            Action::StatusNodegroup => "status-nodegroup",
            Action::EnsureKarpenter => "ensure-karpenter",
            Action::ScaleNodegroup => "scale-nodegroup",
            Action::UpgradeInsights => "upgrade-insights",
            Action::UpgradeControlPlane => "upgrade-control-plane",
            Action::UpgradeNodegroup => "upgrade-nodegroup",
            Action::UpgradeAddons => "upgrade-addons",
        }
    }

    /// Each part of the layer keeps its own shard of `layers.cluster`; the shards are
    /// merged field by field in slot-name order (control-plane, karpenter, nodegroup).
    fn slot(self) -> Option<&'static str> {
        Some(match self {
            // Change what provision made; add nothing to the layer's output.
            Action::ScaleNodegroup
            | Action::UpgradeInsights
            | Action::UpgradeControlPlane
            | Action::UpgradeNodegroup
            | Action::UpgradeAddons => return None,
            Action::EnsureCluster | Action::StatusCluster => "cluster#control-plane",
            Action::EnsureNodegroup | Action::StatusNodegroup => "cluster#nodegroup",
            Action::EnsureKarpenter => "cluster#karpenter",
        })
    }

    fn mutates(self) -> bool {
        matches!(
            self,
            Action::EnsureCluster
                | Action::EnsureNodegroup
                | Action::EnsureKarpenter
                | Action::ScaleNodegroup
                | Action::UpgradeControlPlane
                | Action::UpgradeNodegroup
                | Action::UpgradeAddons
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
    /// The node group's launch template (root volume size and encryption).
    pub launch_template: String,
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
            launch_template: names.resource("system-nodes"),
            queue: names.resource("karpenter"),
        }
    }
}

/// What one action works with.
pub(crate) struct Work<'a> {
    pub deps: &'a Deps,
    pub spec: &'a DeploymentSpec,
    pub names: &'a Names,
    pub resources: ClusterNames,
    pub layers: &'a Layers,
    pub log: &'a StepLog<'a>,
    /// `aws`, `aws-cn` or `aws-us-gov`: AWS managed policy ARNs depend on it.
    pub partition: &'static str,
}

impl Work<'_> {
    /// The layer tags plus the resource's role, as (key, value) pairs.
    pub(crate) fn tags(&self, role: &str) -> Vec<(String, String)> {
        let mut tags = self.names.tags(Layer::Cluster);
        tags.push((TAG_ROLE.to_owned(), role.to_owned()));
        tags
    }
}

pub(crate) use apiary_core::aws::partition;

#[async_trait]
impl Step for Deps {
    const LAYER: Layer = Layer::Cluster;
    type Action = Action;
    type Output = ClusterReport;

    async fn run(&self, step: &StepContext<'_, Action>) -> Result<Done<ClusterReport>> {
        let region = self
            .eks
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| step.spec.region.clone());
        let work = Work {
            deps: self,
            spec: &step.spec,
            names: &step.names,
            resources: ClusterNames::new(&step.names),
            layers: &step.layers,
            log: &step.log,
            partition: partition(&region),
        };
        let mut view = View::default();
        view.output.cluster_name = work.resources.cluster.clone();
        view.output.nodegroup_name = work.resources.nodegroup.clone();

        // Boxed: these futures nest deep enough to exceed the compiler's layout query
        // depth inside the Lambda runtime's future.
        match step.action {
            Action::EnsureCluster => Box::pin(control_plane::ensure(&work, &mut view)).await?,
            Action::StatusCluster => Box::pin(control_plane::status(&work, &mut view)).await?,
            Action::EnsureNodegroup => Box::pin(nodegroup::ensure(&work, &mut view)).await?,
            Action::StatusNodegroup => Box::pin(nodegroup::status(&work, &mut view)).await?,
            Action::EnsureKarpenter => Box::pin(karpenter::ensure(&work, &mut view)).await?,
            Action::ScaleNodegroup => Box::pin(scale::ensure(&work, &mut view, step)).await?,
            Action::UpgradeInsights => Box::pin(upgrade::insights(&work, &mut view, step)).await?,
            Action::UpgradeControlPlane => {
                Box::pin(upgrade::control_plane(&work, &mut view, step)).await?
            }
            Action::UpgradeNodegroup => {
                Box::pin(upgrade::node_group(&work, &mut view, step)).await?
            }
            Action::UpgradeAddons => Box::pin(upgrade::addons(&work, &mut view, step)).await?,
        }
        Ok(view.done(step.action))
    }

    fn state(&self) -> &dyn Recorder {
        self.recorder.as_ref()
    }
}

/// Runs one cluster action for a Lambda event.
pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    step::run(deps, event).await
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
