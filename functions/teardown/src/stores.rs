//! Step 6a: the data stores. Deletion protection is lifted here and nowhere else; the
//! final snapshots (step 1) are the copy that is kept, so the deletes skip their own.
//! RDS takes 5-10 minutes to delete an instance, ElastiCache about as long; their
//! subnet and parameter groups can go only after them, so the workflow polls. The
//! stores' alarms (`apiary-<name>-dp-*`, tagged as the deployment's) go with them.

use apiary_core::{Error, Result};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::Work;

pub async fn run(work: &mut Work<'_>) -> Result<Vec<String>> {
    let mut pending = Vec::new();
    Box::pin(alarms(work)).await?;
    postgres(work, &mut pending).await?;
    documentdb(work, &mut pending).await?;
    redis(work, &mut pending).await?;
    if pending.is_empty() {
        groups(work, &mut pending).await?;
    }
    Ok(pending)
}

/// The data stores' alarms: named `apiary-<name>-dp-*` and tagged as the deployment's
/// (a deployment named `a` must not take `a-dp-x`'s alarms, which share the prefix).
async fn alarms(work: &mut Work<'_>) -> Result<()> {
    let deps = work.deps;
    let prefix = databases::alarms::prefix(&work.step.names);
    let mut found = Vec::new();
    let mut pages = deps
        .cloudwatch
        .describe_alarms()
        .alarm_name_prefix(&prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = match page {
            Ok(page) => page,
            Err(e) if apiary_core::aws::not_emulated(deps.emulator, &e) => {
                work.report.note(format!(
                    "alarms {prefix}*: {}",
                    apiary_core::aws::NOT_EMULATED_CLOUDWATCH
                ));
                return Ok(());
            }
            Err(e) => return Err(Error::aws(format!("DescribeAlarms {prefix}*"), e)),
        };
        for alarm in page.metric_alarms() {
            if let (Some(name), Some(arn)) = (alarm.alarm_name(), alarm.alarm_arn()) {
                found.push((name.to_owned(), arn.to_owned()));
            }
        }
    }
    let mut ours = Vec::new();
    for (name, arn) in found {
        let tags = deps
            .cloudwatch
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .map_err(|e| Error::aws(format!("ListTagsForResource {name}"), e))?;
        let tags: Vec<(&str, &str)> = tags
            .tags()
            .iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
            .collect();
        if work.owner.tagged(tags) {
            ours.push(name);
        } else {
            work.report.note(format!(
                "alarm {name} is not tagged as this deployment's: left alone"
            ));
        }
    }
    // DeleteAlarms takes up to 100 names and ignores names that no longer exist.
    for batch in ours.chunks(100) {
        deps.cloudwatch
            .delete_alarms()
            .set_alarm_names(Some(batch.to_vec()))
            .send()
            .await
            .map_err(|e| Error::aws(format!("DeleteAlarms {}", batch.join(", ")), e))?;
        for name in batch {
            work.report.removed("cloudwatch:alarm", name);
        }
    }
    Ok(())
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
    let Some(found) = apiary_core::aws::answer_or_none(
        format!("DescribeDBClusters {cluster_id}"),
        deps.docdb
            .describe_db_clusters()
            .db_cluster_identifier(&cluster_id)
            .send(),
        |e| e.is_db_cluster_not_found_fault(),
    )
    .await?
    else {
        return Ok(());
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

/// The stores' subnet and parameter groups, once the stores are gone, each described
/// by the name functions/databases gives it (and deleted only when tagged as this
/// deployment's): RDS and DocumentDB share the RDS API's subnet groups
/// (`apiary-<d>-postgres`, `apiary-<d>-docdb`); the PostgreSQL parameter group
/// `apiary-<d>-postgres16`; DocumentDB's cluster parameter group `apiary-<d>-docdb5`; the
/// ElastiCache subnet group `apiary-<d>-redis`.
async fn groups(work: &mut Work<'_>, pending: &mut Vec<String>) -> Result<()> {
    let deps = work.deps;
    let names = &work.step.names;
    for store in ["postgres", "docdb"] {
        let name = names.resource(store);
        let found = apiary_core::aws::answer_or_none(
            format!("DescribeDBSubnetGroups {name}"),
            deps.rds
                .describe_db_subnet_groups()
                .db_subnet_group_name(&name)
                .send(),
            |e| e.is_db_subnet_group_not_found_fault(),
        )
        .await?;
        let arn = found.and_then(|out| {
            out.db_subnet_groups()
                .first()
                .and_then(|g| g.db_subnet_group_arn())
                .map(str::to_owned)
        });
        if !owned(work, arn.as_deref()).await? {
            continue;
        }
        let deleted = delete_named(
            format!("DeleteDBSubnetGroup {name}"),
            deps.rds
                .delete_db_subnet_group()
                .db_subnet_group_name(&name)
                .send(),
            |e| e.is_db_subnet_group_not_found_fault(),
            |e| e.is_invalid_db_subnet_group_state_fault(),
        )
        .await?;
        settle(
            work,
            pending,
            deleted,
            "rds:subgrp",
            &name,
            "DB subnet group",
        );
    }

    let name = databases::postgres_parameter_group(names);
    let found = apiary_core::aws::answer_or_none(
        format!("DescribeDBParameterGroups {name}"),
        deps.rds
            .describe_db_parameter_groups()
            .db_parameter_group_name(&name)
            .send(),
        |e| e.is_db_parameter_group_not_found_fault(),
    )
    .await?;
    let arn = found.and_then(|out| {
        out.db_parameter_groups()
            .first()
            .and_then(|g| g.db_parameter_group_arn())
            .map(str::to_owned)
    });
    if owned(work, arn.as_deref()).await? {
        let deleted = delete_named(
            format!("DeleteDBParameterGroup {name}"),
            deps.rds
                .delete_db_parameter_group()
                .db_parameter_group_name(&name)
                .send(),
            |e| e.is_db_parameter_group_not_found_fault(),
            |e| e.is_invalid_db_parameter_group_state_fault(),
        )
        .await?;
        settle(
            work,
            pending,
            deleted,
            "rds:pg",
            &name,
            "DB parameter group",
        );
    }

    let name = databases::documentdb_parameter_group(names);
    let found = apiary_core::aws::answer_or_none(
        format!("DescribeDBClusterParameterGroups {name}"),
        deps.docdb
            .describe_db_cluster_parameter_groups()
            .db_cluster_parameter_group_name(&name)
            .send(),
        |e| e.is_db_parameter_group_not_found_fault(),
    )
    .await?;
    let arn = found.and_then(|out| {
        out.db_cluster_parameter_groups()
            .first()
            .and_then(|g| g.db_cluster_parameter_group_arn())
            .map(str::to_owned)
    });
    if owned(work, arn.as_deref()).await? {
        let deleted = delete_named(
            format!("DeleteDBClusterParameterGroup {name}"),
            deps.docdb
                .delete_db_cluster_parameter_group()
                .db_cluster_parameter_group_name(&name)
                .send(),
            |e| e.is_db_parameter_group_not_found_fault(),
            |e| e.is_invalid_db_parameter_group_state_fault(),
        )
        .await?;
        settle(
            work,
            pending,
            deleted,
            "rds:cluster-pg",
            &name,
            "DB cluster parameter group",
        );
    }

    let name = names.resource("redis");
    let found = apiary_core::aws::answer_or_none(
        format!("DescribeCacheSubnetGroups {name}"),
        deps.elasticache
            .describe_cache_subnet_groups()
            .cache_subnet_group_name(&name)
            .send(),
        |e| e.is_cache_subnet_group_not_found_fault(),
    )
    .await?;
    if found.is_some_and(|out| !out.cache_subnet_groups().is_empty()) {
        match deps
            .elasticache
            .delete_cache_subnet_group()
            .cache_subnet_group_name(&name)
            .send()
            .await
        {
            // The emulator does not implement this call (HTTP 500, NotImplementedError).
            Err(err)
                if work.deps.emulator
                    && err
                        .raw_response()
                        .is_some_and(|r| r.status().as_u16() == 500) =>
            {
                work.report.kept(
                    "elasticache:subnetgroup",
                    &name,
                    None,
                    "the local emulator does not implement DeleteCacheSubnetGroup (on AWS it is deleted here)",
                );
            }
            answer => {
                let deleted = delete_named(
                    format!("DeleteCacheSubnetGroup {name}"),
                    std::future::ready(answer),
                    |e| e.is_cache_subnet_group_not_found_fault(),
                    |e| e.is_cache_subnet_group_in_use(),
                )
                .await?;
                settle(
                    work,
                    pending,
                    deleted,
                    "elasticache:subnetgroup",
                    &name,
                    "cache subnet group",
                );
            }
        }
    }
    Ok(())
}

/// A delete by name: `Some(true)` deleted (or already gone), `Some(false)` still in use
/// (the store it served is still going), or the failure.
async fn delete_named<O, E>(
    operation: String,
    call: impl std::future::Future<Output = std::result::Result<O, SdkError<E, HttpResponse>>>,
    not_found: impl FnOnce(&E) -> bool,
    in_use: impl Fn(&E) -> bool,
) -> Result<bool>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let mut busy = false;
    apiary_core::aws::answer_or_none(operation, call, |e| {
        busy = in_use(e);
        busy || not_found(e)
    })
    .await?;
    Ok(!busy)
}

fn settle(
    work: &mut Work<'_>,
    pending: &mut Vec<String>,
    deleted: bool,
    kind: &str,
    name: &str,
    what: &str,
) {
    if deleted {
        work.report.removed(kind, name);
    } else {
        pending.push(format!("{what} {name} is still in use"));
    }
}

/// Whether the group found (its ARN) is tagged as this deployment's; none found is not.
async fn owned(work: &Work<'_>, arn: Option<&str>) -> Result<bool> {
    match arn {
        Some(arn) => rds_tagged(work, arn).await,
        None => Ok(false),
    }
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
