//! What the cluster actions return, and keep as their shards of `layers.cluster`.

use apiary_core::outputs::ClusterOutput;
use apiary_core::step::Done;
use serde::Serialize;

use crate::Action;

/// What an action returns and keeps as its shard of `layers.cluster`: the
/// `ClusterOutput` fields it knows, plus what it saw on the way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterReport {
    #[serde(flatten)]
    pub cluster: ClusterFields,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_role_arn: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub nodegroup_role_arn: String,
    /// The cluster's status word (`ACTIVE`, `CREATING`, ...), once seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_status: Option<String>,
    /// The node group's status word, once seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodegroup_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_entries: Option<Vec<AccessEntry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addons: Option<Vec<Addon>>,
    /// The EventBridge rules feeding the interruption queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interruption_rules: Option<Vec<String>>,
    /// What scale-nodegroup saw and did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaling: Option<crate::scale::Scaling>,
    /// What an upgrade step saw and did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<crate::upgrade::Upgrading>,
}

/// The `ClusterOutput` fields of one shard. The shards are merged field by field and a
/// later one's field wins, so only the first (control-plane) carries every field, empty
/// ones included, which keeps `layers.cluster` readable before the later shards exist;
/// the later ones carry only what their action knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ClusterFields {
    Whole(ClusterOutput),
    Known(KnownClusterFields),
}

/// A `ClusterOutput` without its empty fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KnownClusterFields {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_arn: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub endpoint: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub certificate_authority: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node_role_arn: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub nodegroup_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub interruption_queue_url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_security_group_id: String,
}

impl From<ClusterOutput> for KnownClusterFields {
    fn from(output: ClusterOutput) -> Self {
        KnownClusterFields {
            cluster_name: output.cluster_name,
            cluster_arn: output.cluster_arn,
            endpoint: output.endpoint,
            certificate_authority: output.certificate_authority,
            node_role_arn: output.node_role_arn,
            nodegroup_name: output.nodegroup_name,
            interruption_queue_url: output.interruption_queue_url,
            cluster_security_group_id: output.cluster_security_group_id,
        }
    }
}

/// Whether a thing this layer looked after was found, made, left alone or not emulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Presence {
    Present,
    Created,
    /// Nothing to make (a caller that is not a role has no entry to get).
    Skipped,
    /// The AWS endpoint does not implement it (the local emulator).
    NotEmulated,
    /// Removed: no longer wanted (an operator's access entry whose principal the spec no
    /// longer lists).
    Removed,
}

/// One EKS access entry and its access policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessEntry {
    pub principal_arn: String,
    /// `STANDARD` or `EC2`.
    #[serde(rename = "type")]
    pub kind: String,
    pub policy: String,
    pub state: Presence,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One EKS managed add-on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Addon {
    pub name: String,
    pub state: Presence,
    /// Its status word (`ACTIVE`, `CREATING`, ...), when EKS gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Addon {
    pub(crate) fn new(name: &str, state: Presence, status: Option<String>) -> Self {
        Addon {
            name: name.to_owned(),
            state,
            status,
            reason: None,
        }
    }
}

/// What an action found or made, filled in as it goes.
#[derive(Debug, Default)]
pub(crate) struct View {
    pub output: ClusterOutput,
    pub cluster_role_arn: String,
    pub nodegroup_role_arn: String,
    pub cluster_status: Option<String>,
    pub nodegroup_status: Option<String>,
    /// What is not ready yet (`EKS cluster ... is CREATING`).
    pub pending: Vec<String>,
    /// What a `status` looked for and did not find.
    pub missing: Vec<String>,
    pub access_entries: Option<Vec<AccessEntry>>,
    pub addons: Option<Vec<Addon>>,
    pub interruption_rules: Option<Vec<String>>,
    pub scaling: Option<crate::scale::Scaling>,
    pub upgrade: Option<crate::upgrade::Upgrading>,
    /// A note for the journal entry (scale-nodegroup's before and after).
    pub detail: Option<String>,
}

impl View {
    /// Notes that the cluster, seen in its current status, is not ready yet.
    pub(crate) fn cluster_pending(&mut self, name: &str) {
        let status = self.cluster_status.as_deref().unwrap_or("unknown");
        self.pending.push(format!("EKS cluster {name} is {status}"));
    }

    pub(crate) fn done(self, action: Action) -> Done<ClusterReport> {
        let cluster = match action {
            Action::EnsureCluster | Action::StatusCluster => ClusterFields::Whole(self.output),
            _ => ClusterFields::Known(self.output.into()),
        };
        let output = ClusterReport {
            cluster,
            cluster_role_arn: self.cluster_role_arn,
            nodegroup_role_arn: self.nodegroup_role_arn,
            cluster_status: self.cluster_status,
            nodegroup_status: self.nodegroup_status,
            access_entries: self.access_entries,
            addons: self.addons,
            interruption_rules: self.interruption_rules,
            scaling: self.scaling,
            upgrade: self.upgrade,
        };
        // A missing part outranks what the parts that exist still wait for.
        let done = if self.missing.is_empty() {
            Done::pending(output, self.pending)
        } else {
            Done::missing(output, self.missing)
        };
        match self.detail {
            Some(detail) => done.with_detail(detail),
            None => done,
        }
    }
}
