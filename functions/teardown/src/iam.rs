//! Step 6g: the deployment's IAM roles (the cluster's, the nodes', the pods'), with
//! their policies and instance profiles. The bootstrap stack's own roles carry
//! `apiary:bootstrap`, not `apiary:deployment`, and are never touched: the stack owns them.

use apiary_core::{Error, Result};

use crate::Work;

pub async fn run(work: &mut Work<'_>) -> Result<Vec<String>> {
    let deps = work.deps;
    let prefix = work.step.names.resource("");
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
        delete_role(work, &role).await?;
    }
    Ok(Vec::new())
}

async fn delete_role(work: &mut Work<'_>, role: &str) -> Result<()> {
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
        Err(e) if gone(&e) => return Ok(()),
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
    let prefix = work.step.names.resource("");
    for profile in profiles.instance_profiles() {
        let name = profile.instance_profile_name();
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
        // Profiles Karpenter or EKS made for this role go with it; only ours by name.
        if name.starts_with(&prefix)
            || profile
                .tags()
                .iter()
                .any(|t| t.key() == "karpenter.sh/managed-by")
        {
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
    Ok(())
}
