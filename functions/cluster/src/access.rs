//! EKS access entries: who may use the Kubernetes API.
//!
//! - The roles named in `Deps::kubernetes_admins` (in AWS: the workloads function's role,
//!   which applies the manifests) get cluster admin. With none named, the control
//!   plane's own role (the role this function runs as) gets it. A caller that is not an assumed IAM
//!   role (an IAM user, e.g. the emulator's default identity) has no stable role to name;
//!   it is skipped and the output says so.
//! - The Auto Mode node role gets an `EC2` entry with `AmazonEKSAutoNodePolicy`, which
//!   EKS does not create by itself when the cluster has no built-in NodePools.

use apiary_core::{Error, Result};
use aws_sdk_eks::types::{AccessScope, AccessScopeType};

use crate::{AccessEntry, Presence, Work, iam, is_not_implemented};

pub const CLUSTER_ADMIN_POLICY: &str = "AmazonEKSClusterAdminPolicy";
pub const AUTO_NODE_POLICY: &str = "AmazonEKSAutoNodePolicy";

fn access_policy_arn(partition: &str, name: &str) -> String {
    apiary_core::aws::arn(
        partition,
        "eks",
        "",
        "aws",
        &format!("cluster-access-policy/{name}"),
    )
}

/// The role name in an STS assumed-role ARN
/// (`arn:aws:sts::123456789012:assumed-role/<role>/<session>`), if it is one.
pub(crate) fn assumed_role_name(caller_arn: &str) -> Option<&str> {
    let resource = caller_arn.splitn(6, ':').nth(5)?;
    let rest = resource.strip_prefix("assumed-role/")?;
    let (role, _session) = rest.split_once('/')?;
    (!role.is_empty()).then_some(role)
}

/// Every access entry this layer owns, as the output lists them.
pub(crate) async fn ensure_all(step: &Work<'_>, node_role_arn: &str) -> Result<Vec<AccessEntry>> {
    let mut entries = Vec::new();
    if !step.deps.kubernetes_admins.is_empty() {
        for role_arn in &step.deps.kubernetes_admins {
            entries.push(ensure_entry(step, role_arn, "STANDARD", CLUSTER_ADMIN_POLICY).await?);
        }
        entries.push(ensure_entry(step, node_role_arn, "EC2", AUTO_NODE_POLICY).await?);
        return Ok(entries);
    }
    let caller = step
        .deps
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| Error::aws("GetCallerIdentity", e))?
        .arn
        .unwrap_or_default();
    match assumed_role_name(&caller) {
        Some(role_name) => {
            // The assumed-role ARN drops the role's path; the access entry needs the
            // role's own ARN.
            let role = iam::find(step, role_name).await?.ok_or_else(|| {
                Error::fatal(format!(
                    "the caller's role {role_name} cannot be read with iam:GetRole"
                ))
            })?;
            entries.push(ensure_entry(step, role.arn(), "STANDARD", CLUSTER_ADMIN_POLICY).await?);
        }
        None => {
            tracing::info!(caller = %caller, "caller is not an IAM role: no control-plane access entry");
            let reason = format!(
                "the caller {caller} is not an assumed IAM role, so there is no control-plane \
                 role to give an access entry"
            );
            entries.push(entry(
                &caller,
                "STANDARD",
                CLUSTER_ADMIN_POLICY,
                Presence::Skipped,
                Some(reason),
            ));
        }
    }
    entries.push(ensure_entry(step, node_role_arn, "EC2", AUTO_NODE_POLICY).await?);
    Ok(entries)
}

async fn ensure_entry(
    step: &Work<'_>,
    principal_arn: &str,
    kind: &str,
    policy: &str,
) -> Result<AccessEntry> {
    let eks = &step.deps.eks;
    let cluster = &step.resources.cluster;
    let describe = eks
        .describe_access_entry()
        .cluster_name(cluster)
        .principal_arn(principal_arn)
        .send()
        .await;
    let mut state = Presence::Present;
    match describe {
        Ok(_) => {}
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            // In use: the entry exists already (another run made it since the lookup).
            if apiary_core::aws::answer_or_none(
                format!("CreateAccessEntry {cluster} {principal_arn}"),
                eks.create_access_entry()
                    .cluster_name(cluster)
                    .principal_arn(principal_arn)
                    .r#type(kind)
                    .set_tags(Some(step.tags("access-entry").into_iter().collect()))
                    .send(),
                |e| e.is_resource_in_use_exception(),
            )
            .await?
            .is_some()
            {
                step.log.created(principal_arn);
                state = Presence::Created;
            }
        }
        Err(err) if is_not_implemented(&err) => {
            return Ok(not_emulated(principal_arn, kind, policy));
        }
        Err(err) => {
            return Err(Error::aws(
                format!("DescribeAccessEntry {cluster} {principal_arn}"),
                err,
            ));
        }
    }
    associate(step, principal_arn, policy).await?;
    step.log
        .resource("eks:access-entry", principal_arn, None)
        .await?;
    Ok(entry(principal_arn, kind, policy, state, None))
}

async fn associate(step: &Work<'_>, principal_arn: &str, policy: &str) -> Result<()> {
    let eks = &step.deps.eks;
    let cluster = &step.resources.cluster;
    let policy_arn = access_policy_arn(step.partition, policy);
    let associated = eks
        .list_associated_access_policies()
        .cluster_name(cluster)
        .principal_arn(principal_arn)
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                format!("ListAssociatedAccessPolicies {cluster} {principal_arn}"),
                e,
            )
        })?;
    if associated
        .associated_access_policies()
        .iter()
        .any(|p| p.policy_arn() == Some(policy_arn.as_str()))
    {
        return Ok(());
    }
    eks.associate_access_policy()
        .cluster_name(cluster)
        .principal_arn(principal_arn)
        .policy_arn(&policy_arn)
        .access_scope(
            AccessScope::builder()
                .r#type(AccessScopeType::Cluster)
                .build(),
        )
        .send()
        .await
        .map_err(|e| {
            Error::aws(
                format!("AssociateAccessPolicy {cluster} {principal_arn} {policy}"),
                e,
            )
        })?;
    Ok(())
}

fn entry(
    principal_arn: &str,
    kind: &str,
    policy: &str,
    state: Presence,
    reason: Option<String>,
) -> AccessEntry {
    AccessEntry {
        principal_arn: principal_arn.to_owned(),
        kind: kind.to_owned(),
        policy: policy.to_owned(),
        state,
        reason,
    }
}

fn not_emulated(principal_arn: &str, kind: &str, policy: &str) -> AccessEntry {
    let reason = "the EKS endpoint does not implement access entries (moto 5.2.5 answers \
                  404); on AWS this entry is created";
    entry(
        principal_arn,
        kind,
        policy,
        Presence::NotEmulated,
        Some(reason.to_owned()),
    )
}
