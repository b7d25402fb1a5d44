//! `snapshot` and `snapshot-status`: one native snapshot per store and run, encrypted
//! (RDS and DocumentDB snapshots inherit the store's key; the ElastiCache snapshot is
//! given the redis key), tagged with the sentinel written just before it.

use apiary_core::inputs::backup::StoreName;
use apiary_core::step::{Done, StepContext};
use apiary_core::{Error, Result};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::engine::{self, Clients, NO_SENTINEL, backup_tags, snapshot_id};
use crate::plan::{self, BACKUP, Plan};
use crate::{Action, Deps};

/// The sentinel the verifier wrote into a store for this run, if it did.
#[derive(Debug, Clone, PartialEq)]
pub struct Sentinel {
    pub id: Option<String>,
    pub written_at: Option<DateTime<Utc>>,
    /// Why there is none (`sentinel: not written locally`, or none written).
    pub note: Option<String>,
}

/// Reads `sentinel.<store>` (saved by the verifier's `write-sentinel`), taking it only
/// when it was written during this run: an older sentinel proves nothing about this
/// snapshot.
pub async fn sentinel(
    deps: &Deps,
    deployment: &str,
    store: StoreName,
    plan: &Plan,
) -> Result<Sentinel> {
    let outputs = deps.recorder.outputs(deployment).await?;
    let Some(saved) = outputs.get(&format!("sentinel.{}", store.as_str())) else {
        return Ok(Sentinel {
            id: None,
            written_at: None,
            note: Some("no sentinel was written".to_owned()),
        });
    };
    let written = saved.get("written").and_then(Value::as_bool) == Some(true);
    let written_at = saved
        .get("written_at")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let id = saved
        .get("sentinel_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if !written {
        let note = saved
            .get("note")
            .and_then(Value::as_str)
            .unwrap_or("sentinel: not written")
            .to_owned();
        return Ok(Sentinel {
            id: None,
            written_at: None,
            note: Some(note),
        });
    }
    match written_at {
        Some(at) if at >= plan.started_at => Ok(Sentinel {
            id,
            written_at: Some(at),
            note: None,
        }),
        _ => Ok(Sentinel {
            id: None,
            written_at: None,
            note: Some("the last sentinel was written before this run".to_owned()),
        }),
    }
}

pub(crate) async fn run(
    deps: &Deps,
    step: &StepContext<'_, Action>,
    create: bool,
) -> Result<Done<Value>> {
    let plan = plan::load(deps, step, BACKUP).await?;
    let deployment = step.names.deployment();
    let clients = Clients::primary(deps, &step.spec.region);
    let mut snapshots = Map::new();
    let mut skipped = Map::new();
    let mut pending = Vec::new();
    for store in plan.stores.iter().copied() {
        let source = match engine::source(step, store) {
            Ok(source) => source,
            Err(reason) => {
                skipped.insert(store.as_str().to_owned(), json!(reason));
                continue;
            }
        };
        let id = snapshot_id(&step.names, store, &plan);
        let sentinel = sentinel(deps, deployment, store, &plan).await?;
        let found = match clients.describe(store, &id).await? {
            Some(found) => Some(found),
            None if create => {
                let tag = sentinel.id.as_deref().unwrap_or(NO_SENTINEL);
                if start(deps, step, store, &source, &id, &plan, tag).await? {
                    step.log.created(&id);
                }
                clients.describe(store, &id).await?
            }
            None => None,
        };
        let Some(snapshot) = found else {
            // Just created, not listed yet (AWS's lists lag a create by moments), or a
            // status poll of a run whose create never happened: the next poll decides.
            pending.push(format!(
                "{} snapshot {id} is not visible yet",
                store.as_str()
            ));
            continue;
        };
        if snapshot.failed() {
            return Err(Error::fatal(format!(
                "{} snapshot {id} is {}: the store could not be snapshotted; see its events",
                store.as_str(),
                snapshot.status
            )));
        }
        if !snapshot.available() {
            pending.push(format!(
                "{} snapshot {id} is {}",
                store.as_str(),
                snapshot.status
            ));
        }
        step.log
            .resource(kind(store), &id, Some(&snapshot.arn))
            .await?;
        let mut entry = serde_json::to_value(&snapshot).map_err(|e| Error::fatal(e.to_string()))?;
        entry["source"] = json!(source);
        entry["sentinel_id"] = json!(sentinel.id);
        if let Some(note) = &sentinel.note {
            entry["sentinel_note"] = json!(note);
        }
        snapshots.insert(store.as_str().to_owned(), entry);
    }
    let output = json!({"snapshots": snapshots, "skipped": skipped});
    Ok(Done::pending(output, pending))
}

pub(crate) fn kind(store: StoreName) -> &'static str {
    match store {
        StoreName::Postgres => "rds:db-snapshot",
        StoreName::Documentdb => "docdb:db-cluster-snapshot",
        StoreName::Redis => "elasticache:snapshot",
    }
}

/// Starts the snapshot; `false` when another attempt already had.
async fn start(
    deps: &Deps,
    step: &StepContext<'_, Action>,
    store: StoreName,
    source: &str,
    id: &str,
    plan: &Plan,
    sentinel: &str,
) -> Result<bool> {
    let tags = backup_tags(&step.names, store, plan, sentinel);
    let made = match store {
        StoreName::Postgres => {
            let tags = tags
                .into_iter()
                .map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build())
                .collect();
            match deps
                .rds
                .create_db_snapshot()
                .db_instance_identifier(source)
                .db_snapshot_identifier(id)
                .set_tags(Some(tags))
                .send()
                .await
            {
                Ok(_) => true,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_db_snapshot_already_exists_fault()) =>
                {
                    false
                }
                // The instance is busy (backing up, modifying): wait and try again.
                Err(e) => {
                    return Err(Error::aws_transient_if(
                        format!("CreateDBSnapshot {id} of {source}"),
                        e,
                        |e| e.is_invalid_db_instance_state_fault(),
                    ));
                }
            }
        }
        StoreName::Documentdb => {
            let tags = tags
                .into_iter()
                .map(|(k, v)| aws_sdk_docdb::types::Tag::builder().key(k).value(v).build())
                .collect();
            match deps
                .docdb
                .create_db_cluster_snapshot()
                .db_cluster_identifier(source)
                .db_cluster_snapshot_identifier(id)
                .set_tags(Some(tags))
                .send()
                .await
            {
                Ok(_) => true,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_db_cluster_snapshot_already_exists_fault()) =>
                {
                    false
                }
                Err(e) => {
                    return Err(Error::aws_transient_if(
                        format!("CreateDBClusterSnapshot {id} of {source}"),
                        e,
                        |e| e.is_invalid_db_cluster_state_fault(),
                    ));
                }
            }
        }
        StoreName::Redis => {
            let key = step.layers.keys()?.key("redis")?.arn.clone();
            let tags = tags
                .into_iter()
                .map(|(k, v)| {
                    aws_sdk_elasticache::types::Tag::builder()
                        .key(k)
                        .value(v)
                        .build()
                })
                .collect();
            match deps
                .elasticache
                .create_snapshot()
                .replication_group_id(source)
                .snapshot_name(id)
                .kms_key_id(key)
                .set_tags(Some(tags))
                .send()
                .await
            {
                Ok(_) => true,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_snapshot_already_exists_fault()) =>
                {
                    false
                }
                Err(e) => {
                    return Err(Error::aws_transient_if(
                        format!("CreateSnapshot {id} of {source}"),
                        e,
                        |e| {
                            e.is_invalid_replication_group_state_fault()
                                || e.is_invalid_cache_cluster_state_fault()
                        },
                    ));
                }
            }
        }
    };
    Ok(made)
}
