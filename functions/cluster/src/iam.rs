//! The three IAM roles of the cluster layer.
//!
//! The Auto Mode node role and the managed node group's role are deliberately two roles:
//! an IAM principal has exactly one EKS access entry, EKS gives a node group's role an
//! `EC2_LINUX` entry of its own, while nodes launched by Auto Mode for custom NodePools
//! need an `EC2` entry with `AmazonEKSAutoNodePolicy`. One role cannot hold both.

use apiary_core::{Error, Result};
use aws_sdk_iam::types::{Role, Tag};
use serde_json::json;

use crate::Work;

/// The Auto Mode cluster role's managed policies.
pub const CLUSTER_POLICIES: [&str; 5] = [
    "AmazonEKSClusterPolicy",
    "AmazonEKSComputePolicy",
    "AmazonEKSBlockStoragePolicy",
    "AmazonEKSLoadBalancingPolicy",
    "AmazonEKSNetworkingPolicy",
];
/// The Auto Mode (Karpenter) node role's managed policies.
pub const NODE_POLICIES: [&str; 2] = [
    "AmazonEKSWorkerNodeMinimalPolicy",
    "AmazonEC2ContainerRegistryPullOnly",
];
/// The managed node group role's managed policies (it runs the VPC CNI).
pub const NODEGROUP_POLICIES: [&str; 3] = [
    "AmazonEKSWorkerNodePolicy",
    "AmazonEC2ContainerRegistryReadOnly",
    "AmazonEKS_CNI_Policy",
];

/// Karpenter (and Auto Mode NodeClasses) find the node role and subnets by this tag.
pub const DISCOVERY_TAG: &str = "karpenter.sh/discovery";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoleKind {
    Cluster,
    Node,
    Nodegroup,
}

impl RoleKind {
    pub(crate) const ALL: [RoleKind; 3] = [RoleKind::Cluster, RoleKind::Node, RoleKind::Nodegroup];

    pub(crate) fn name(self, step: &Work<'_>) -> String {
        match self {
            RoleKind::Cluster => step.resources.cluster_role.clone(),
            RoleKind::Node => step.resources.node_role.clone(),
            RoleKind::Nodegroup => step.resources.nodegroup_role.clone(),
        }
    }

    fn policies(self) -> &'static [&'static str] {
        match self {
            RoleKind::Cluster => &CLUSTER_POLICIES,
            RoleKind::Node => &NODE_POLICIES,
            RoleKind::Nodegroup => &NODEGROUP_POLICIES,
        }
    }

    /// EKS Auto Mode tags the sessions it starts with the cluster role.
    fn trust_policy(self) -> String {
        let (service, actions) = match self {
            RoleKind::Cluster => (
                "eks.amazonaws.com",
                json!(["sts:AssumeRole", "sts:TagSession"]),
            ),
            RoleKind::Node | RoleKind::Nodegroup => ("ec2.amazonaws.com", json!("sts:AssumeRole")),
        };
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": actions,
            }]
        })
        .to_string()
    }

    fn tags(self, step: &Work<'_>) -> Vec<(String, String)> {
        let (role, discovery) = match self {
            RoleKind::Cluster => ("eks-cluster", false),
            RoleKind::Node => ("eks-node", true),
            RoleKind::Nodegroup => ("eks-nodegroup", false),
        };
        let mut tags = step.tags(role);
        if discovery {
            tags.push((DISCOVERY_TAG.to_owned(), step.resources.cluster.clone()));
        }
        tags
    }
}

pub(crate) fn managed_policy_arn(partition: &str, name: &str) -> String {
    apiary_core::aws::arn(partition, "iam", "", "aws", &format!("policy/{name}"))
}

/// The role, if it exists.
pub(crate) async fn find(step: &Work<'_>, name: &str) -> Result<Option<Role>> {
    Ok(apiary_core::aws::answer_or_none(
        format!("GetRole {name}"),
        step.deps.iam.get_role().role_name(name).send(),
        |e| e.is_no_such_entity_exception(),
    )
    .await?
    .and_then(|out| out.role))
}

/// The role with its trust policy, tags and managed policies; created when missing.
pub(crate) async fn ensure(step: &Work<'_>, kind: RoleKind) -> Result<Role> {
    let name = kind.name(step);
    let role = match find(step, &name).await? {
        // A role made without the deployment's tag gets it: the teardown role may
        // delete only roles that carry it.
        Some(role) => {
            let wanted = [(
                apiary_core::naming::TAG_DEPLOYMENT.to_owned(),
                step.names.deployment().to_owned(),
            )];
            ensure_tags(step, &role, &wanted).await?;
            role
        }
        None => create(step, kind, &name).await?,
    };
    attach_policies(step, kind, &name).await?;
    step.log
        .resource("iam:role", &name, Some(role.arn()))
        .await?;
    Ok(role)
}

async fn create(step: &Work<'_>, kind: RoleKind, name: &str) -> Result<Role> {
    let mut tags = Vec::new();
    for (key, value) in kind.tags(step) {
        tags.push(
            Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|e| Error::fatal(e.to_string()))?,
        );
    }
    match apiary_core::aws::answer_or_none(
        format!("CreateRole {name}"),
        step.deps
            .iam
            .create_role()
            .role_name(name)
            .description(format!("Apiary {}: EKS {name}", step.names.deployment()))
            .assume_role_policy_document(kind.trust_policy())
            .set_tags(Some(tags))
            .send(),
        |e| e.is_entity_already_exists_exception(),
    )
    .await?
    {
        Some(out) => {
            step.log.created(name);
            out.role
                .ok_or_else(|| Error::fatal(format!("CreateRole {name} returned no role")))
        }
        None => find(step, name)
            .await?
            .ok_or_else(|| Error::Conflict(format!("IAM role {name} exists but cannot be read"))),
    }
}

/// IAM is eventually consistent: a role CreateRole (or GetRole) has just returned can be
/// unknown to the next call for a few seconds. Its `NoSuchEntity` is then retryable.
fn not_yet_visible(
    operation: String,
    err: aws_sdk_iam::error::SdkError<
        aws_sdk_iam::operation::list_attached_role_policies::ListAttachedRolePoliciesError,
    >,
) -> Error {
    Error::aws_transient_if(operation, err, |e| e.is_no_such_entity_exception())
}

async fn attach_policies(step: &Work<'_>, kind: RoleKind, name: &str) -> Result<()> {
    let mut attached = Vec::new();
    let mut pages = step
        .deps
        .iam
        .list_attached_role_policies()
        .role_name(name)
        .into_paginator()
        .items()
        .send();
    while let Some(policy) = pages
        .try_next()
        .await
        .map_err(|e| not_yet_visible(format!("ListAttachedRolePolicies {name}"), e))?
    {
        if let Some(arn) = policy.policy_arn {
            attached.push(arn);
        }
    }
    for policy in kind.policies() {
        let arn = managed_policy_arn(step.partition, policy);
        if attached.contains(&arn) {
            continue;
        }
        step.deps
            .iam
            .attach_role_policy()
            .role_name(name)
            .policy_arn(&arn)
            .send()
            .await
            .map_err(|e| {
                Error::aws_transient_if(format!("AttachRolePolicy {name} {policy}"), e, |e| {
                    e.is_no_such_entity_exception()
                })
            })?;
    }
    Ok(())
}

/// Adds the Karpenter discovery tag to the node role when it lacks it.
pub(crate) async fn ensure_discovery_tag(step: &Work<'_>, role: &Role) -> Result<()> {
    let wanted = [(DISCOVERY_TAG.to_owned(), step.resources.cluster.clone())];
    ensure_tags(step, role, &wanted).await
}

/// Adds to `role` the tags of `wanted` it lacks (or holds with another value).
async fn ensure_tags(step: &Work<'_>, role: &Role, wanted: &[(String, String)]) -> Result<()> {
    let missing: Vec<&(String, String)> = wanted
        .iter()
        .filter(|(key, value)| {
            !role
                .tags()
                .iter()
                .any(|t| t.key() == key && t.value() == value)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let name = role.role_name();
    let mut tags = Vec::new();
    for (key, value) in &missing {
        tags.push(
            Tag::builder()
                .key(key.as_str())
                .value(value.as_str())
                .build()
                .map_err(|e| Error::fatal(e.to_string()))?,
        );
    }
    let keys: Vec<&str> = missing.iter().map(|(k, _)| k.as_str()).collect();
    step.deps
        .iam
        .tag_role()
        .role_name(name)
        .set_tags(Some(tags))
        .send()
        .await
        .map_err(|e| {
            Error::aws_transient_if(format!("TagRole {name} {}", keys.join(",")), e, |e| {
                e.is_no_such_entity_exception()
            })
        })?;
    Ok(())
}
