//! Step 6a: the data stores. Deletion protection is lifted here and nowhere else; the
//! final snapshots (step 1) are the copy that is kept, so the deletes skip their own.
//! RDS takes 5-10 minutes to delete an instance, ElastiCache about as long; their
//! subnet and parameter groups can go only after them, so the workflow polls.

use apiary_core::{Error, Result};

use crate::Work;

pub async fn run(work: &mut Work<'_>) -> Result<Vec<String>> {
    let mut pending = Vec::new();
    postgres(work, &mut pending).await?;
    documentdb(work, &mut pending).await?;
    redis(work, &mut pending).await?;
    if pending.is_empty() {
        groups(work, &mut pending).await?;
    }
    Ok(pending)
}

async fn postgres(work: &mut Work<'_>, pending: &mut Vec<String>) -> Result<()> {
    let deps = work.deps;
    let id = work.step.names.resource("postgres");
    let Some(found) = apiary_core::aws::answer_or_none(
        format!("DescribeDBInstances {id}"),
        deps.rds
            .describe_db_instances()
            .db_instance_identifier(&id)
            .send(),
        |e| e.is_db_instance_not_found_fault(),
    )
    .await?
    else {
        return Ok(());
    };
    let Some(instance) = found.db_instances().first() else {
        return Ok(());
    };
    let tags: Vec<(&str, &str)> = instance
        .tag_list()
        .iter()
        .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
        .collect();
    if !work.owner.tagged(tags) {
        work.report.note(format!(
            "RDS instance {id} is not tagged as this deployment's: left alone"
        ));
        return Ok(());
    }
    work.report.removed("rds:db", &id);
    if instance.db_instance_status() == Some("deleting") {
        pending.push(format!("RDS instance {id} is being deleted"));
        return Ok(());
    }
    if instance.deletion_protection() == Some(true) {
        deps.rds
            .modify_db_instance()
            .db_instance_identifier(&id)
            .deletion_protection(false)
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| {
                Error::aws(
                    format!("ModifyDBInstance {id} (deletion protection off)"),
                    e,
                )
            })?;
    }
    match deps
        .rds
        .delete_db_instance()
        .db_instance_identifier(&id)
        .skip_final_snapshot(true)
        .delete_automated_backups(true)
        .send()
        .await
    {
        Ok(_) => {}
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_db_instance_not_found_fault()) =>
        {
            return Ok(());
        }
        // Modifying (the protection change) or backing up: try again on the next poll.
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_invalid_db_instance_state_fault()) => {}
        Err(err) => return Err(Error::aws(format!("DeleteDBInstance {id}"), err)),
    }
    if apiary_core::aws::answer_or_none(
        format!("DescribeDBInstances {id}"),
        deps.rds
            .describe_db_instances()
            .db_instance_identifier(&id)
            .send(),
        |e| e.is_db_instance_not_found_fault(),
    )
    .await?
    .is_some_and(|out| !out.db_instances().is_empty())
    {
        pending.push(format!("RDS instance {id} is being deleted"));
    }
    Ok(())
}

async fn documentdb(work: &mut Work<'_>, pending: &mut Vec<String>) -> Result<()> {
    let deps = work.deps;
    let cluster_id = work.step.names.resource("docdb");
    let found = match deps
        .docdb
        .describe_db_clusters()
        .db_cluster_identifier(&cluster_id)
        .send()
        .await
    {
        Ok(out) => out,
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_db_cluster_not_found_fault()) =>
        {
            return Ok(());
        }
        Err(err) => return Err(Error::aws(format!("DescribeDBClusters {cluster_id}"), err)),
    };
    let Some(cluster) = found.db_clusters().first() else {
        return Ok(());
    };
    work.report.removed("docdb:cluster", &cluster_id);
    let members: Vec<String> = cluster
        .db_cluster_members()
        .iter()
        .filter_map(|m| m.db_instance_identifier().map(str::to_owned))
        .collect();
    for member in &members {
        match deps
            .docdb
            .delete_db_instance()
            .db_instance_identifier(member)
            .send()
            .await
        {
            Ok(_) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_db_instance_not_found_fault()) =>
            {
                continue;
            }
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_invalid_db_instance_state_fault()) => {}
            Err(err) => return Err(Error::aws(format!("DeleteDBInstance {member}"), err)),
        }
        work.report.removed("docdb:instance", member);
        pending.push(format!("DocumentDB instance {member} is being deleted"));
    }
    if !members.is_empty() {
        return Ok(());
    }
    if cluster.deletion_protection() == Some(true) {
        deps.docdb
            .modify_db_cluster()
            .db_cluster_identifier(&cluster_id)
            .deletion_protection(false)
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| {
                Error::aws(
                    format!("ModifyDBCluster {cluster_id} (deletion protection off)"),
                    e,
                )
            })?;
    }
    match deps
        .docdb
        .delete_db_cluster()
        .db_cluster_identifier(&cluster_id)
        .skip_final_snapshot(true)
        .send()
        .await
    {
        Ok(_) => pending.push(format!("DocumentDB cluster {cluster_id} is being deleted")),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_db_cluster_not_found_fault()) => {}
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_invalid_db_cluster_state_fault()) =>
        {
            pending.push(format!("DocumentDB cluster {cluster_id} is being deleted"));
        }
        Err(err) => return Err(Error::aws(format!("DeleteDBCluster {cluster_id}"), err)),
    }
    Ok(())
}

async fn redis(work: &mut Work<'_>, pending: &mut Vec<String>) -> Result<()> {
    let deps = work.deps;
    let id = work.step.names.resource("redis");
    let Some(found) = apiary_core::aws::answer_or_none(
        format!("DescribeReplicationGroups {id}"),
        deps.elasticache
            .describe_replication_groups()
            .replication_group_id(&id)
            .send(),
        |e| e.is_replication_group_not_found_fault(),
    )
    .await?
    else {
        return Ok(());
    };
    let Some(group) = found.replication_groups().first() else {
        return Ok(());
    };
    work.report.removed("elasticache:replicationgroup", &id);
    if group.status() == Some("deleting") {
        if work.deps.emulator {
            // The emulator keeps a deleted replication group `deleting` forever.
            work.report.note(format!(
                "ElastiCache {id}: the emulator never finishes deleting a replication group; counted as gone locally"
            ));
            return Ok(());
        }
        pending.push(format!("ElastiCache {id} is being deleted"));
        return Ok(());
    }
    match deps
        .elasticache
        .delete_replication_group()
        .replication_group_id(&id)
        .retain_primary_cluster(false)
        .send()
        .await
    {
        Ok(_) => {}
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_replication_group_not_found_fault()) =>
        {
            return Ok(());
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_invalid_replication_group_state_fault()) => {}
        Err(err) => return Err(Error::aws(format!("DeleteReplicationGroup {id}"), err)),
    }
    if apiary_core::aws::answer_or_none(
        format!("DescribeReplicationGroups {id}"),
        deps.elasticache
            .describe_replication_groups()
            .replication_group_id(&id)
            .send(),
        |e| e.is_replication_group_not_found_fault(),
    )
    .await?
    .is_some_and(|out| !out.replication_groups().is_empty())
    {
        if work.deps.emulator {
            work.report.note(format!(
                "ElastiCache {id}: the emulator never finishes deleting a replication group; counted as gone locally"
            ));
        } else {
            pending.push(format!("ElastiCache {id} is being deleted"));
        }
    }
    Ok(())
}

/// The stores' subnet and parameter groups, once the stores are gone.
async fn groups(work: &mut Work<'_>, pending: &mut Vec<String>) -> Result<()> {
    let deps = work.deps;
    let prefix = work.step.names.resource("");
    // RDS and DocumentDB share the RDS API's subnet groups (names `apiary-<d>-postgres`,
    // `apiary-<d>-docdb`); the name is checked with the tags, never the prefix alone.
    let subnet_groups = deps
        .rds
        .describe_db_subnet_groups()
        .send()
        .await
        .map_err(|e| Error::aws("DescribeDBSubnetGroups", e))?;
    for group in subnet_groups.db_subnet_groups() {
        let (Some(name), Some(arn)) = (group.db_subnet_group_name(), group.db_subnet_group_arn())
        else {
            continue;
        };
        if !name.starts_with(&prefix) || !rds_tagged(work, arn).await? {
            continue;
        }
        match deps
            .rds
            .delete_db_subnet_group()
            .db_subnet_group_name(name)
            .send()
            .await
        {
            Ok(_) => work.report.removed("rds:subgrp", name),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_db_subnet_group_not_found_fault()) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_invalid_db_subnet_group_state_fault()) =>
            {
                pending.push(format!("DB subnet group {name} is still in use"));
            }
            Err(err) => return Err(Error::aws(format!("DeleteDBSubnetGroup {name}"), err)),
        }
    }
    let parameter_groups = deps
        .rds
        .describe_db_parameter_groups()
        .send()
        .await
        .map_err(|e| Error::aws("DescribeDBParameterGroups", e))?;
    for group in parameter_groups.db_parameter_groups() {
        let (Some(name), Some(arn)) = (
            group.db_parameter_group_name(),
            group.db_parameter_group_arn(),
        ) else {
            continue;
        };
        if !name.starts_with(&prefix) || !rds_tagged(work, arn).await? {
            continue;
        }
        match deps
            .rds
            .delete_db_parameter_group()
            .db_parameter_group_name(name)
            .send()
            .await
        {
            Ok(_) => work.report.removed("rds:pg", name),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_db_parameter_group_not_found_fault()) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_invalid_db_parameter_group_state_fault()) =>
            {
                pending.push(format!("DB parameter group {name} is still in use"));
            }
            Err(err) => return Err(Error::aws(format!("DeleteDBParameterGroup {name}"), err)),
        }
    }
    let cache_groups = deps
        .elasticache
        .describe_cache_subnet_groups()
        .send()
        .await
        .map_err(|e| Error::aws("DescribeCacheSubnetGroups", e))?;
    for group in cache_groups.cache_subnet_groups() {
        let Some(name) = group.cache_subnet_group_name() else {
            continue;
        };
        if name != work.step.names.resource("redis") {
            continue;
        }
        match deps
            .elasticache
            .delete_cache_subnet_group()
            .cache_subnet_group_name(name)
            .send()
            .await
        {
            Ok(_) => work.report.removed("elasticache:subnetgroup", name),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_cache_subnet_group_not_found_fault()) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_cache_subnet_group_in_use()) =>
            {
                pending.push(format!("cache subnet group {name} is still in use"));
            }
            // The emulator does not implement this call (HTTP 500, NotImplementedError).
            Err(err)
                if work.deps.emulator
                    && err
                        .raw_response()
                        .is_some_and(|r| r.status().as_u16() == 500) =>
            {
                work.report.kept(
                    "elasticache:subnetgroup",
                    name,
                    None,
                    "the local emulator does not implement DeleteCacheSubnetGroup (on AWS it is deleted here)",
                );
            }
            Err(err) => return Err(Error::aws(format!("DeleteCacheSubnetGroup {name}"), err)),
        }
    }
    Ok(())
}

async fn rds_tagged(work: &Work<'_>, arn: &str) -> Result<bool> {
    let tags = work
        .deps
        .rds
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .map_err(|e| Error::aws(format!("ListTagsForResource {arn}"), e))?;
    Ok(work.owner.tagged(
        tags.tag_list()
            .iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
    ))
}

/// Days a deleted secret can still be restored: the shortest window Secrets Manager
/// allows, so a teardown started by mistake can still be undone for the credentials.
pub const SECRET_RECOVERY_DAYS: i64 = 7;

/// Step 6b: the deployment's secrets, scheduled for deletion with a recovery window.
/// The secrets RDS manages for its instances go with the instances.
pub async fn secrets(work: &mut Work<'_>) -> Result<Vec<String>> {
    let deps = work.deps;
    let mut pages = deps
        .secrets
        .list_secrets()
        .include_planned_deletion(true)
        .filters(
            aws_sdk_secretsmanager::types::Filter::builder()
                .key(aws_sdk_secretsmanager::types::FilterNameStringType::TagValue)
                .values(&work.owner.deployment)
                .build(),
        )
        .into_paginator()
        .send();
    let mut found = Vec::new();
    while let Some(page) = pages
        .try_next()
        .await
        .map_err(|e| Error::aws("ListSecrets", e))?
    {
        found.extend(page.secret_list().iter().cloned());
    }
    for secret in found {
        let (Some(name), Some(arn)) = (secret.name(), secret.arn()) else {
            continue;
        };
        if !work.owner.tagged(
            secret
                .tags()
                .iter()
                .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
        ) {
            continue;
        }
        if secret.owning_service().is_some() {
            // RDS's own master-user secret: deleted by RDS with its instance.
            continue;
        }
        if secret.deleted_date().is_none() {
            match deps
                .secrets
                .delete_secret()
                .secret_id(arn)
                .recovery_window_in_days(SECRET_RECOVERY_DAYS)
                .send()
                .await
            {
                Ok(_) => {}
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    continue;
                }
                Err(err) => return Err(Error::aws(format!("DeleteSecret {name}"), err)),
            }
        }
        work.report.kept(
            "secretsmanager:secret",
            name,
            Some(arn),
            format!(
                "scheduled for deletion: Secrets Manager removes it after {SECRET_RECOVERY_DAYS} days (restore-secret undoes it until then)"
            ),
        );
    }
    Ok(Vec::new())
}
