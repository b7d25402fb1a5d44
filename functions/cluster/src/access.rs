//! EKS access entries: who may use the Kubernetes API.
//!
//! - The roles named in `Deps::kubernetes_admins` (in AWS: the workloads function's role,
//!   which applies the manifests) get cluster admin. With none named, the control
//!   plane's own role (the role this function runs as) gets it. A caller that is not an assumed IAM
//!   role (an IAM user, e.g. the emulator's default identity) has no stable role to name;
//!   it is skipped and the output says so.
//! - The Auto Mode node role gets an `EC2` entry with `AmazonEKSAutoNodePolicy`, which
//!   EKS does not create by itself when the cluster has no built-in NodePools.
//! - The operators of the spec's `cluster.access` (stack parameters `ClusterAdminArns`
//!   and `ClusterViewerArns`): `AmazonEKSClusterAdminPolicy` or `AmazonEKSViewPolicy`
//!   on the whole cluster, each entry tagged with its heading (`apiary:role`
//!   `operator-admin` or `operator-viewer`). A principal moved from one heading to the
//!   other has its policy swapped; one no longer listed loses its entry. Only entries
//!   carrying those tags are ever removed: entries the customer made by hand, and the
//!   control plane's own, are left alone. The bootstrap stack's policy allows entries
//!   only for the principals its parameters name, so a changed record cannot let anyone
//!   else in.

use apiary_core::{Error, Result};
use aws_sdk_eks::types::{AccessScope, AccessScopeType};

use apiary_core::naming::TAG_ROLE;

use crate::{AccessEntry, Presence, Work, iam, is_not_implemented};

pub const CLUSTER_ADMIN_POLICY: &str = "AmazonEKSClusterAdminPolicy";
pub const AUTO_NODE_POLICY: &str = "AmazonEKSAutoNodePolicy";
/// Read-only on every object but Secrets.
pub const VIEW_POLICY: &str = "AmazonEKSViewPolicy";
/// The `apiary:role` tag of an operator's entry: which heading of `cluster.access` made it.
pub const OPERATOR_ADMIN: &str = "operator-admin";
pub const OPERATOR_VIEWER: &str = "operator-viewer";

/// One heading of `cluster.access`: its tag and its access policy.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Heading {
    Admin,
    Viewer,
}

impl Heading {
    fn tag(self) -> &'static str {
        match self {
            Heading::Admin => OPERATOR_ADMIN,
            Heading::Viewer => OPERATOR_VIEWER,
        }
    }

    fn policy(self) -> &'static str {
        match self {
            Heading::Admin => CLUSTER_ADMIN_POLICY,
            Heading::Viewer => VIEW_POLICY,
        }
    }

    fn other(self) -> Heading {
        match self {
            Heading::Admin => Heading::Viewer,
            Heading::Viewer => Heading::Admin,
        }
    }

    fn from_tag(tag: &str) -> Option<Heading> {
        [Heading::Admin, Heading::Viewer]
            .into_iter()
            .find(|h| h.tag() == tag)
    }
}

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
        let operators = ensure_operators(step, &entries).await?;
        entries.extend(operators);
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
    let operators = ensure_operators(step, &entries).await?;
    entries.extend(operators);
    Ok(entries)
}

/// The spec's operators given their entries, and the entries of operators no longer
/// listed removed. Nothing is listed or removed on an endpoint without access entries
/// (the control plane's own came back not emulated).
async fn ensure_operators(step: &Work<'_>, own: &[AccessEntry]) -> Result<Vec<AccessEntry>> {
    let access = &step.spec.cluster.access;
    let wanted: Vec<(&str, Heading)> = access
        .admins
        .iter()
        .map(|arn| (arn.as_str(), Heading::Admin))
        .chain(
            access
                .viewers
                .iter()
                .map(|arn| (arn.as_str(), Heading::Viewer)),
        )
        .collect();
    let mut entries = Vec::new();
    for (arn, heading) in &wanted {
        entries.push(ensure_operator(step, arn, *heading).await?);
    }
    if own
        .iter()
        .chain(&entries)
        .any(|e| e.state == Presence::NotEmulated)
    {
        return Ok(entries);
    }
    entries.extend(revoke_unlisted(step, &wanted).await?);
    Ok(entries)
}

async fn ensure_operator(
    step: &Work<'_>,
    principal_arn: &str,
    heading: Heading,
) -> Result<AccessEntry> {
    let eks = &step.deps.eks;
    let cluster = &step.resources.cluster;
    let policy = heading.policy();
    let found = match describe(step, principal_arn).await {
        Err(err) if err.0 => return Ok(not_emulated(principal_arn, "STANDARD", policy)),
        Err(err) => return Err(err.1),
        Ok(found) => found,
    };
    let mut state = Presence::Present;
    match found {
        None => {
            let made = apiary_core::aws::answer_or_none(
                format!("CreateAccessEntry {cluster} {principal_arn}"),
                eks.create_access_entry()
                    .cluster_name(cluster)
                    .principal_arn(principal_arn)
                    .r#type("STANDARD")
                    .set_tags(Some(step.tags(heading.tag()).into_iter().collect()))
                    .send(),
                |e| e.is_resource_in_use_exception(),
            )
            .await?;
            if made.is_some() {
                step.log.created(principal_arn);
                state = Presence::Created;
            } else {
                // Made since the lookup (another run): converge its tag like a found one.
                retag(
                    step,
                    principal_arn,
                    describe(step, principal_arn).await.map_err(|e| e.1)?,
                    heading,
                )
                .await?;
            }
        }
        Some(entry) => retag(step, principal_arn, Some(entry), heading).await?,
    }
    associate(step, principal_arn, policy).await?;
    disassociate(step, principal_arn, heading.other().policy()).await?;
    Ok(entry(principal_arn, "STANDARD", policy, state, None))
}

/// An entry that is not tagged with the heading that lists it gets that tag, so that
/// it is recognised as an operator's (and removed once no heading lists it). An entry
/// the customer made by hand for a principal they then listed is adopted this way.
async fn retag(
    step: &Work<'_>,
    principal_arn: &str,
    found: Option<aws_sdk_eks::types::AccessEntry>,
    heading: Heading,
) -> Result<()> {
    let Some(found) = found else {
        return Err(Error::NotReady {
            resource: format!("access entry {principal_arn}"),
            detail: "it was in use when created and gone when read back; the next attempt makes it"
                .to_owned(),
        });
    };
    let tagged = found
        .tags()
        .and_then(|tags| tags.get(TAG_ROLE))
        .map(String::as_str);
    if tagged == Some(heading.tag()) {
        return Ok(());
    }
    let arn = found.access_entry_arn().ok_or_else(|| {
        Error::fatal(format!(
            "EKS described access entry {principal_arn} without its ARN"
        ))
    })?;
    step.deps
        .eks
        .tag_resource()
        .resource_arn(arn)
        .set_tags(Some(step.tags(heading.tag()).into_iter().collect()))
        .send()
        .await
        .map_err(|e| Error::aws(format!("TagResource {arn}"), e))?;
    Ok(())
}

/// The entry of a principal, `None` when it has none. The error's flag says the
/// endpoint does not implement access entries at all.
async fn describe(
    step: &Work<'_>,
    principal_arn: &str,
) -> std::result::Result<Option<aws_sdk_eks::types::AccessEntry>, (bool, Error)> {
    let cluster = &step.resources.cluster;
    match step
        .deps
        .eks
        .describe_access_entry()
        .cluster_name(cluster)
        .principal_arn(principal_arn)
        .send()
        .await
    {
        Ok(out) => Ok(out.access_entry),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(err) if is_not_implemented(&err) => Err((
            true,
            Error::fatal("the EKS endpoint does not implement access entries"),
        )),
        Err(err) => Err((
            false,
            Error::aws(
                format!("DescribeAccessEntry {cluster} {principal_arn}"),
                err,
            ),
        )),
    }
}

/// Every entry tagged as an operator's of this deployment whose principal no heading
/// lists any more, removed. Untagged entries (the customer's own, the control plane's
/// and the nodes') are never touched.
async fn revoke_unlisted(step: &Work<'_>, wanted: &[(&str, Heading)]) -> Result<Vec<AccessEntry>> {
    let eks = &step.deps.eks;
    let cluster = &step.resources.cluster;
    let mut principals = Vec::new();
    let mut pages = eks
        .list_access_entries()
        .cluster_name(cluster)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => principals.extend(page.access_entries().iter().cloned()),
            Err(err) if is_not_implemented(&err) => return Ok(Vec::new()),
            Err(err) => return Err(Error::aws(format!("ListAccessEntries {cluster}"), err)),
        }
    }
    let mut revoked = Vec::new();
    for principal_arn in principals {
        if wanted.iter().any(|(arn, _)| *arn == principal_arn) {
            continue;
        }
        let Some(found) = describe(step, &principal_arn).await.map_err(|e| e.1)? else {
            continue; // removed since the listing
        };
        let tags = found.tags();
        let ours = tags
            .and_then(|t| t.get(apiary_core::naming::TAG_DEPLOYMENT))
            .is_some_and(|d| *d == step.spec.name);
        let Some(heading) = tags
            .and_then(|t| t.get(TAG_ROLE))
            .and_then(|role| Heading::from_tag(role))
            .filter(|_| ours)
        else {
            continue;
        };
        apiary_core::aws::answer_or_none(
            format!("DeleteAccessEntry {cluster} {principal_arn}"),
            eks.delete_access_entry()
                .cluster_name(cluster)
                .principal_arn(&principal_arn)
                .send(),
            |e| e.is_resource_not_found_exception(),
        )
        .await?;
        tracing::info!(principal = %principal_arn, "operator access entry removed: no longer listed");
        revoked.push(entry(
            &principal_arn,
            "STANDARD",
            heading.policy(),
            Presence::Removed,
            Some(format!(
                "no longer listed in cluster.access.{}s (stack parameter {})",
                match heading {
                    Heading::Admin => "admin",
                    Heading::Viewer => "viewer",
                },
                match heading {
                    Heading::Admin => "ClusterAdminArns",
                    Heading::Viewer => "ClusterViewerArns",
                }
            )),
        ));
    }
    Ok(revoked)
}

/// The policy taken off an entry when it is associated (an operator moved to the other
/// heading).
async fn disassociate(step: &Work<'_>, principal_arn: &str, policy: &str) -> Result<()> {
    let eks = &step.deps.eks;
    let cluster = &step.resources.cluster;
    let policy_arn = access_policy_arn(step.partition, policy);
    if !associated(step, principal_arn)
        .await?
        .iter()
        .any(|p| p == &policy_arn)
    {
        return Ok(());
    }
    apiary_core::aws::answer_or_none(
        format!("DisassociateAccessPolicy {cluster} {principal_arn} {policy}"),
        eks.disassociate_access_policy()
            .cluster_name(cluster)
            .principal_arn(principal_arn)
            .policy_arn(&policy_arn)
            .send(),
        |e| e.is_resource_not_found_exception(),
    )
    .await?;
    Ok(())
}

/// The ARNs of the access policies associated with an entry.
async fn associated(step: &Work<'_>, principal_arn: &str) -> Result<Vec<String>> {
    let cluster = &step.resources.cluster;
    let out = step
        .deps
        .eks
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
    Ok(out
        .associated_access_policies()
        .iter()
        .filter_map(|p| p.policy_arn().map(str::to_owned))
        .collect())
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
    if associated(step, principal_arn)
        .await?
        .iter()
        .any(|p| p == &policy_arn)
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
