//! Step 6g: the deployment's IAM roles (the cluster's, the nodes', the pods'), with
//! their policies and instance profiles. The bootstrap stack's own roles carry
//! `apiary:bootstrap`, not `apiary:deployment`, and are never touched: the stack owns them.

use apiary_core::{Error, Result};

use crate::Work;

/// The tags Karpenter puts on the instance profiles it makes, valued with the cluster:
/// older versions `karpenter.sh/managed-by`, current ones `eks:eks-cluster-name` (and a
/// path `/karpenter/<region>/<cluster>/<uid>/`, so the name alone proves nothing).
const PROFILE_CLUSTER_TAGS: [&str; 2] = ["karpenter.sh/managed-by", "eks:eks-cluster-name"];

/// Whether a profile with these tags is one Karpenter made for `cluster`.
pub(crate) fn karpenters_profile<'a>(
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    cluster: &str,
) -> bool {
    tags.into_iter()
        .any(|(key, value)| PROFILE_CLUSTER_TAGS.contains(&key) && value == cluster)
}

pub async fn run(work: &mut Work<'_>) -> Result<Vec<String>> {
    let deps = work.deps;
    let prefix = work.step.names.resource("");
    let mut pending = Vec::new();
    let mut roles = Vec::new();
    let mut pages = deps.iam.list_roles().into_paginator().send();
    while let Some(page) = pages
        .try_next()
        .await
        .map_err(|e| Error::aws("ListRoles", e))?
    {
        for role in page.roles() {
            if role.role_name().starts_with(&prefix) {
                roles.push(role.role_name().to_owned());
            }
        }
    }
    for role in roles {
        let tags = match deps.iam.list_role_tags().role_name(&role).send().await {
            Ok(out) => out.tags,
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_no_such_entity_exception()) =>
            {
                continue;
            }
            Err(err) => return Err(Error::aws(format!("ListRoleTags {role}"), err)),
        };
        if !work.owner.tagged(tags.iter().map(|t| (t.key(), t.value()))) {
            continue;
        }
        if let Some(waiting) = delete_role(work, &role).await? {
            pending.push(waiting);
        }
    }
    Ok(pending)
}

/// Deletes a role with its policies and Karpenter's profiles; what still holds it, if
/// anything.
async fn delete_role(work: &mut Work<'_>, role: &str) -> Result<Option<String>> {
    let iam = &work.deps.iam;
    let gone = |e: &Error| e.aws_code() == Some("NoSuchEntity");
    let attached = iam
        .list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|e| Error::aws(format!("ListAttachedRolePolicies {role}"), e));
    let attached = match attached {
        Ok(out) => out,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    for policy in attached.attached_policies() {
        if let Some(arn) = policy.policy_arn() {
            match iam
                .detach_role_policy()
                .role_name(role)
                .policy_arn(arn)
                .send()
                .await
            {
                Ok(_) => {}
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_no_such_entity_exception()) => {}
                Err(err) => return Err(Error::aws(format!("DetachRolePolicy {role} {arn}"), err)),
            }
        }
    }
    let inline = iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|e| Error::aws(format!("ListRolePolicies {role}"), e))?;
    for policy in inline.policy_names() {
        match iam
            .delete_role_policy()
            .role_name(role)
            .policy_name(policy)
            .send()
            .await
        {
            Ok(_) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_no_such_entity_exception()) => {}
            Err(err) => return Err(Error::aws(format!("DeleteRolePolicy {role} {policy}"), err)),
        }
    }
    let profiles = iam
        .list_instance_profiles_for_role()
        .role_name(role)
        .send()
        .await
        .map_err(|e| Error::aws(format!("ListInstanceProfilesForRole {role}"), e))?;
    let mut foreign = Vec::new();
    for profile in profiles.instance_profiles() {
        let name = profile.instance_profile_name();
        // Only the profiles Karpenter made for this cluster (tagged with its name) are
        // ours to empty and delete: the teardown role may touch no other (bootstrap.yaml,
        // DeleteKarpentersInstanceProfiles). The listing leaves tags out: asked for.
        let tags = iam
            .list_instance_profile_tags()
            .instance_profile_name(name)
            .send()
            .await
            .map_err(|e| Error::aws(format!("ListInstanceProfileTags {name}"), e))?;
        let karpenters = karpenters_profile(
            tags.tags().iter().map(|t| (t.key(), t.value())),
            &work.owner.cluster,
        );
        if !karpenters {
            foreign.push(name.to_owned());
            continue;
        }
        match iam
            .remove_role_from_instance_profile()
            .instance_profile_name(name)
            .role_name(role)
            .send()
            .await
        {
            Ok(_) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_no_such_entity_exception()) => {}
            Err(err) => {
                return Err(Error::aws(
                    format!("RemoveRoleFromInstanceProfile {name}"),
                    err,
                ));
            }
        }
        match iam
            .delete_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
        {
            Ok(_) => work.report.removed("iam:instance-profile", name),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_no_such_entity_exception()) => {}
            Err(err) => return Err(Error::aws(format!("DeleteInstanceProfile {name}"), err)),
        }
    }
    if !foreign.is_empty() {
        // EKS removes a node group's profile with the node group; anything else holding
        // the role is not this deployment's to change.
        return Ok(Some(format!(
            "role {role} is still in instance profile(s) {} that are not this deployment's: remove it from them",
            foreign.join(", ")
        )));
    }
    match iam.delete_role().role_name(role).send().await {
        Ok(_) => {}
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_no_such_entity_exception()) => {}
        Err(err) => return Err(Error::aws(format!("DeleteRole {role}"), err)),
    }
    work.report.removed("iam:role", role);
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::karpenters_profile;

    const CLUSTER: &str = "apiary-acme-eks";

    #[test]
    fn a_profile_is_karpenters_for_this_cluster_only_by_a_tag_that_names_it() {
        assert!(karpenters_profile(
            [("karpenter.sh/managed-by", CLUSTER)],
            CLUSTER
        ));
        assert!(karpenters_profile(
            [
                ("kubernetes.io/cluster/apiary-acme-eks", "owned"),
                ("eks:eks-cluster-name", CLUSTER)
            ],
            CLUSTER
        ));
        // Another cluster's, one whose cluster name extends ours, and an untagged one.
        assert!(!karpenters_profile(
            [("eks:eks-cluster-name", "apiary-acme-prod-eks")],
            CLUSTER
        ));
        assert!(!karpenters_profile(
            [("karpenter.sh/managed-by", "apiary-other-eks")],
            CLUSTER
        ));
        assert!(!karpenters_profile([], CLUSTER));
        assert!(!karpenters_profile([("Name", CLUSTER)], CLUSTER));
    }
}
