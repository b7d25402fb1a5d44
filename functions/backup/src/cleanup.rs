//! The cleanup of scratch DocumentDB clusters and Redis replication groups (the RDS
//! instances, security groups and secrets are in [`crate::scratch::cleanup`]). Each
//! returns how many stores are still there.

use apiary_core::step::StepContext;
use apiary_core::{Error, Result};
use serde_json::{Value, json};

use crate::scratch::is_scratch;
use crate::{Action, Deps};

/// Scratch DocumentDB clusters: their instances first, then the cluster.
pub(crate) async fn documentdb(
    deps: &Deps,
    step: &StepContext<'_, Action>,
    deleting: &mut Vec<Value>,
    pending: &mut Vec<String>,
) -> Result<usize> {
    let deployment = step.names.deployment();
    let clusters = match deps
        .docdb
        .describe_db_clusters()
        .filters(
            aws_sdk_docdb::types::Filter::builder()
                .name("engine")
                .values("docdb")
                .build(),
        )
        .send()
        .await
    {
        Ok(out) => out.db_clusters().to_vec(),
        // The local emulator has no DocumentDB: there is nothing of it to clean up.
        Err(e) if deps.emulator && e.as_service_error().is_none() => return Ok(0),
        Err(e) => return Err(Error::aws("DescribeDBClusters (scratch)", e)),
    };
    let mut left = 0;
    for cluster in clusters {
        let arn = cluster.db_cluster_arn().unwrap_or_default().to_owned();
        let tags = deps
            .docdb
            .list_tags_for_resource()
            .resource_name(&arn)
            .send()
            .await
            .map_err(|e| Error::aws(format!("ListTagsForResource {arn}"), e))?;
        let tags = tags
            .tag_list()
            .iter()
            .filter_map(|t| Some((t.key()?, t.value()?)));
        if !is_scratch(deployment, tags) {
            continue;
        }
        left += 1;
        let id = cluster
            .db_cluster_identifier()
            .unwrap_or_default()
            .to_owned();
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
                Ok(_) => step.log.created(&format!("deleted:{member}")),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_db_instance_not_found_fault()) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_invalid_db_instance_state_fault()) => {}
                Err(e) => return Err(Error::aws(format!("DeleteDBInstance {member}"), e)),
            }
            pending.push(format!(
                "scratch DocumentDB instance {member} is being deleted"
            ));
        }
        if members.is_empty() && cluster.status() != Some("deleting") {
            match deps
                .docdb
                .delete_db_cluster()
                .db_cluster_identifier(&id)
                .skip_final_snapshot(true)
                .send()
                .await
            {
                Ok(_) => step.log.created(&format!("deleted:{id}")),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_db_cluster_not_found_fault()) =>
                {
                    left -= 1;
                    continue;
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_invalid_db_cluster_state_fault()) => {}
                Err(e) => return Err(Error::aws(format!("DeleteDBCluster {id}"), e)),
            }
        }
        deleting.push(json!({"kind": "docdb:db-cluster", "id": id}));
        pending.push(format!("scratch DocumentDB cluster {id} is being deleted"));
    }
    Ok(left)
}

/// Scratch Redis replication groups.
pub(crate) async fn redis(
    deps: &Deps,
    step: &StepContext<'_, Action>,
    deleting: &mut Vec<Value>,
    pending: &mut Vec<String>,
) -> Result<usize> {
    let deployment = step.names.deployment();
    let mut pages = deps
        .elasticache
        .describe_replication_groups()
        .into_paginator()
        .items()
        .send();
    let mut groups = Vec::new();
    while let Some(group) = pages
        .try_next()
        .await
        .map_err(|e| Error::aws("DescribeReplicationGroups (scratch)", e))?
    {
        groups.push(group);
    }
    let mut left = 0;
    for group in groups {
        let id = group.replication_group_id().unwrap_or_default().to_owned();
        // Scratch groups have scratch names: the tags are read only for those.
        if !id.starts_with(&crate::scratch::scratch_prefix(&step.names)) {
            continue;
        }
        let arn = group.arn().unwrap_or_default().to_owned();
        let tags = deps
            .elasticache
            .list_tags_for_resource()
            .resource_name(&arn)
            .send()
            .await
            .map_err(|e| Error::aws(format!("ListTagsForResource {arn}"), e))?;
        let tags = tags
            .tag_list()
            .iter()
            .filter_map(|t| Some((t.key()?, t.value()?)));
        if !is_scratch(deployment, tags) {
            continue;
        }
        // The local emulator never removes a deleted replication group: it lists it as
        // `deleting` for ever (moto 5.2.5). On AWS the group is gone minutes later.
        if deps.emulator && group.status() == Some("deleting") {
            continue;
        }
        left += 1;
        if group.status() != Some("deleting") {
            match deps
                .elasticache
                .delete_replication_group()
                .replication_group_id(&id)
                .retain_primary_cluster(false)
                .send()
                .await
            {
                Ok(_) => step.log.created(&format!("deleted:{id}")),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_replication_group_not_found_fault()) =>
                {
                    left -= 1;
                    continue;
                }
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_invalid_replication_group_state_fault()) => {}
                Err(e) => return Err(Error::aws(format!("DeleteReplicationGroup {id}"), e)),
            }
        }
        deleting.push(json!({"kind": "elasticache:replication-group", "id": id}));
        pending.push(format!("scratch Redis group {id} is being deleted"));
    }
    Ok(left)
}
