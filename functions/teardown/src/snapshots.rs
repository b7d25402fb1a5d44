//! Step 1: a final snapshot of every store, taken before anything is deleted and kept
//! (with the key that protects it) after the teardown.
//!
//! Each snapshot's name carries the store's creation time, so a re-run of the same
//! teardown finds the snapshot it started instead of taking a second one, and a later
//! data plane of the same name gets its own. The backup workflow's copy to the DR region
//! is not repeated here: the DR region keeps the scheduled backups' copies. A snapshot
//! is looked up with the backup crate's own code ([`backup::Clients`]).

use apiary_core::inputs::backup::StoreName;
use apiary_core::naming::{Layer, MANAGED_BY, TAG_DEPLOYMENT, TAG_LAYER, TAG_MANAGED_BY, TAG_ROLE};
use apiary_core::{Error, Result};
use backup::Clients;

use crate::Work;

/// Why a final snapshot is kept.
pub const KEPT: &str = "final snapshot taken before the teardown: kept so the data can be restored; delete it yourself when no longer needed";

/// `apiary-<deployment>-<store>-final-<yyyymmddhhmm of the store's creation>`.
pub fn final_name(
    work: &Work<'_>,
    store: &str,
    created: Option<&aws_smithy_types::DateTime>,
) -> String {
    let stamp = created
        .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), 0))
        .map(|t| t.format("%Y%m%d%H%M").to_string())
        .unwrap_or_else(|| "0".to_owned());
    work.step.names.resource(&format!("{store}-final-{stamp}"))
}

/// The backup crate's snapshot lookups, in the primary region.
fn primary<'a>(work: &Work<'a>) -> Clients<'a> {
    crate::backups::primary(work.deps, &work.step.spec.region)
}

pub async fn run(work: &mut Work<'_>) -> Result<Vec<String>> {
    let mut pending = Vec::new();
    postgres(work, &mut pending).await?;
    redis(work, &mut pending).await?;
    documentdb(work, &mut pending).await?;
    Ok(pending)
}

fn rds_tags(work: &Work<'_>) -> Vec<aws_sdk_rds::types::Tag> {
    snapshot_tags(work)
        .into_iter()
        .map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build())
        .collect()
}

fn snapshot_tags(work: &Work<'_>) -> Vec<(String, String)> {
    vec![
        (TAG_DEPLOYMENT.to_owned(), work.owner.deployment.clone()),
        (TAG_LAYER.to_owned(), Layer::Databases.as_str().to_owned()),
        (TAG_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (TAG_ROLE.to_owned(), crate::backups::FINAL_ROLE.to_owned()),
    ]
}

async fn postgres(work: &mut Work<'_>, pending: &mut Vec<String>) -> Result<()> {
    let id = work.step.names.resource("postgres");
    let deps = work.deps;
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
            "RDS instance {id} is not tagged as this deployment's: not snapshotted"
        ));
        return Ok(());
    }
    if instance.db_instance_status() == Some("deleting") {
        return Ok(());
    }
    let name = final_name(work, "postgres", instance.instance_create_time());
    let (status, arn) = match primary(work).describe(StoreName::Postgres, &name).await? {
        Some(s) => (s.status, Some(s.arn)),
        None => {
            let made = match deps
                .rds
                .create_db_snapshot()
                .db_instance_identifier(&id)
                .db_snapshot_identifier(&name)
                .set_tags(Some(rds_tags(work)))
                .send()
                .await
            {
                Ok(out) => out.db_snapshot,
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_db_snapshot_already_exists_fault()) =>
                {
                    None
                }
                // The instance is busy (backing up, modifying): not yet.
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_invalid_db_instance_state_fault()) =>
                {
                    pending.push(format!(
                        "RDS instance {id} is busy; its final snapshot waits"
                    ));
                    return Ok(());
                }
                Err(err) => return Err(Error::aws(format!("CreateDBSnapshot {name}"), err)),
            };
            work.step.log.created(&name);
            (
                made.as_ref()
                    .and_then(|s| s.status())
                    .unwrap_or("creating")
                    .to_owned(),
                made.as_ref()
                    .and_then(|s| s.db_snapshot_arn())
                    .map(str::to_owned),
            )
        }
    };
    work.report
        .kept("rds:snapshot", &name, arn.as_deref(), KEPT);
    if status != "available" {
        pending.push(format!("RDS snapshot {name} is {status}"));
    }
    Ok(())
}

async fn redis(work: &mut Work<'_>, pending: &mut Vec<String>) -> Result<()> {
    let id = work.step.names.resource("redis");
    let deps = work.deps;
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
    if group.status() == Some("deleting") {
        return Ok(());
    }
    let name = final_name(work, "redis", group.replication_group_create_time());
    let (status, arn) = match primary(work).describe(StoreName::Redis, &name).await? {
        Some(s) => (s.status, Some(s.arn)),
        None => {
            let tags = snapshot_tags(work)
                .into_iter()
                .map(|(k, v)| {
                    aws_sdk_elasticache::types::Tag::builder()
                        .key(k)
                        .value(v)
                        .build()
                })
                .collect();
            let made = match deps
                .elasticache
                .create_snapshot()
                .replication_group_id(&id)
                .snapshot_name(&name)
                .set_tags(Some(tags))
                .send()
                .await
            {
                Ok(out) => out.snapshot,
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_snapshot_already_exists_fault()) =>
                {
                    None
                }
                Err(err)
                    if err.as_service_error().is_some_and(|e| {
                        e.is_invalid_replication_group_state_fault()
                            || e.is_invalid_cache_cluster_state_fault()
                    }) =>
                {
                    pending.push(format!(
                        "ElastiCache {id} is busy; its final snapshot waits"
                    ));
                    return Ok(());
                }
                Err(err) => return Err(Error::aws(format!("CreateSnapshot {name}"), err)),
            };
            work.step.log.created(&name);
            (
                made.as_ref()
                    .and_then(|s| s.snapshot_status())
                    .unwrap_or("creating")
                    .to_owned(),
                made.as_ref().and_then(|s| s.arn()).map(str::to_owned),
            )
        }
    };
    work.report
        .kept("elasticache:snapshot", &name, arn.as_deref(), KEPT);
    if status != "available" {
        pending.push(format!("ElastiCache snapshot {name} is {status}"));
    }
    Ok(())
}

async fn documentdb(work: &mut Work<'_>, pending: &mut Vec<String>) -> Result<()> {
    let id = work.step.names.resource("docdb");
    let deps = work.deps;
    let Some(found) = apiary_core::aws::answer_or_none(
        format!("DescribeDBClusters {id}"),
        deps.docdb
            .describe_db_clusters()
            .db_cluster_identifier(&id)
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
    if cluster.status() == Some("deleting") {
        return Ok(());
    }
    let name = final_name(work, "docdb", cluster.cluster_create_time());
    let (status, arn) = match primary(work).describe(StoreName::Documentdb, &name).await? {
        Some(s) => (s.status, Some(s.arn)),
        None => {
            let tags = snapshot_tags(work)
                .into_iter()
                .map(|(k, v)| aws_sdk_docdb::types::Tag::builder().key(k).value(v).build())
                .collect();
            let made = match deps
                .docdb
                .create_db_cluster_snapshot()
                .db_cluster_identifier(&id)
                .db_cluster_snapshot_identifier(&name)
                .set_tags(Some(tags))
                .send()
                .await
            {
                Ok(out) => out.db_cluster_snapshot,
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_db_cluster_snapshot_already_exists_fault()) =>
                {
                    None
                }
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_invalid_db_cluster_state_fault()) =>
                {
                    pending.push(format!("DocumentDB {id} is busy; its final snapshot waits"));
                    return Ok(());
                }
                Err(err) => return Err(Error::aws(format!("CreateDBClusterSnapshot {name}"), err)),
            };
            work.step.log.created(&name);
            (
                made.as_ref()
                    .and_then(|s| s.status())
                    .unwrap_or("creating")
                    .to_owned(),
                made.as_ref()
                    .and_then(|s| s.db_cluster_snapshot_arn())
                    .map(str::to_owned),
            )
        }
    };
    work.report
        .kept("docdb:cluster-snapshot", &name, arn.as_deref(), KEPT);
    if status != "available" {
        pending.push(format!("DocumentDB snapshot {name} is {status}"));
    }
    Ok(())
}
