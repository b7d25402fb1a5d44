//! What the workloads step returns. The kit adds `ready`, `created` and `pending` around
//! these fields; a ready output is kept for the workflow's result and the local summary
//! (no later layer reads it).

use std::path::PathBuf;

use serde::Serialize;

use crate::apply::Applied;
use crate::pod_identity::PodIdentityReport;
use crate::render::RenderedFile;
use crate::rollout::Rollout;

/// The output of either action.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Output {
    Ensure(EnsureOutput),
    Status(StatusOutput),
    Restart(crate::restart::RestartOutput),
    Synced(crate::sync::SyncOutput),
    PodsCredentials(crate::pods_credentials::PodsCredentialsOutput),
    Scale(crate::scale::ScaleOutput),
    Usage(crate::usage::UsageOutput),
    Teardown(crate::teardown::TeardownOutput),
    Skipped(StepSkipped),
}

/// A step the workflow's input does not concern (the upgrade's image steps on a
/// Kubernetes version upgrade).
#[derive(Debug, Clone, Serialize)]
pub struct StepSkipped {
    pub skipped: bool,
    pub detail: String,
}

/// What `ensure` did.
#[derive(Debug, Clone, Serialize)]
pub struct EnsureOutput {
    #[serde(flatten)]
    pub target: Ensured,
    /// Objects this run changed: files rewritten, or applies that changed the object.
    pub changed: usize,
    pub pod_identity: PodIdentityReport,
    /// The Twingate connector's identity, when the spec has a connector.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connector: Option<StackIdentity>,
    /// Prometheus's and Alertmanager's identities.
    pub monitoring: Vec<StackIdentity>,
    /// What the spec no longer names and was removed (a Twingate connector).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    pub detail: String,
}

/// A platform component's service account and the stack role Pod Identity gives it.
#[derive(Debug, Clone, Serialize)]
pub struct StackIdentity {
    /// `namespace/name`.
    pub service_account: String,
    pub role_arn: Option<String>,
    /// `created`, `updated`, `unchanged`, or `not-created`.
    pub association: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Where the objects went (`mode`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum Ensured {
    /// Written as YAML and validated; nothing reached a cluster.
    Rendered {
        applied: bool,
        folder: PathBuf,
        validated: bool,
        objects: Vec<RenderedFile>,
        skipped: Vec<Skipped>,
    },
    /// Server-side applied to the cluster.
    Applied {
        applied: bool,
        /// `eks` or `kubeconfig`.
        via: &'static str,
        auto_mode: bool,
        objects: Vec<Applied>,
        skipped: Vec<Skipped>,
    },
}

/// An object left out, and why: a cluster without EKS Auto Mode does not get Auto Mode's
/// resources, and the HTTPS Ingress waits for ACM to issue its certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub reason: String,
}

/// What `status` found (`mode`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum StatusOutput {
    /// The manifests were only rendered: there is no rollout to wait for.
    Rendered {
        applied: bool,
        folder: PathBuf,
        desired: i32,
        updated: i32,
        available: i32,
        detail: String,
    },
    /// The rollout's counts in the cluster.
    Applied {
        via: &'static str,
        #[serde(flatten)]
        rollout: Rollout,
        /// The load balancer and its healthy targets, once the rollout is done and the
        /// HTTPS Ingress exists.
        #[serde(skip_serializing_if = "Option::is_none")]
        serving: Option<crate::serving::Serving>,
    },
}
