//! `restore` and `restore-status`: the newest snapshot of each store into a scratch copy
//! in the private subnets (the live store's subnet group), behind the run's scratch
//! security group, on the smallest class, with deletion protection off and a fresh
//! master password kept in a scratch secret (never the live one):
//! - PostgreSQL: `RestoreDBInstanceFromDBSnapshot` (db.t4g.micro), then, once available,
//!   `ModifyDBInstance` with the fresh password (a restore keeps the snapshot's password,
//!   and a managed one stays with the live instance's secret);
//! - DocumentDB: `RestoreDBClusterFromSnapshot` creates a cluster without instances: one
//!   db.t3.medium instance is added, and the password set with `ModifyDBCluster`;
//! - Redis: `CreateReplicationGroup` from the snapshot, one cache.t4g.micro node, TLS and
//!   encryption at rest, the fresh AUTH token set at creation.
//!
//! When a store is ready its coordinates are kept in slot `restore-test.<store>` for the
//! verifier: `endpoint`, `port`, `secret_arn` (the scratch secret), `sentinel_id`,
//! `snapshot_id`, `restore_started_at`. A store this run does not test gets
//! `{"skipped": reason}` there, so no verifier reads an older run's coordinates.

use apiary_core::inputs::backup::StoreName;
use apiary_core::step::{Done, StepContext};
use apiary_core::{Error, Result};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::engine::{self, Clients, Snapshot};
use crate::plan::{self, Plan, RESTORE_TEST};
use crate::scratch::{self, Credentials, scratch_id, scratch_tags};
use crate::{Action, Deps};

pub const POSTGRES_CLASS: &str = "db.t4g.micro";
pub const DOCUMENTDB_CLASS: &str = "db.t3.medium";
pub const REDIS_NODE_TYPE: &str = "cache.t4g.micro";
/// Set on a scratch store once its fresh password is applied.
const TAG_PASSWORD: &str = "apiary:password";

fn port(store: StoreName) -> u16 {
    match store {
        StoreName::Postgres => 5432,
        StoreName::Documentdb => 27017,
        StoreName::Redis => 6379,
    }
}

/// One store's state after this call.
enum State {
    Ready { host: String, port: u16 },
    Waiting(String),
}

struct Target<'a> {
    store: StoreName,
    id: String,
    /// The live store: its identifier is also its subnet group's name.
    live: String,
    snapshot: &'a Snapshot,
    group: Option<&'a str>,
    credentials: &'a Credentials,
}

pub(crate) async fn run(
    deps: &Deps,
    step: &StepContext<'_, Action>,
    create: bool,
) -> Result<Done<Value>> {
    let plan = plan::load(deps, step, RESTORE_TEST).await?;
    let deployment = step.names.deployment();
    let primary = Clients::primary(deps, &step.spec.region);
    let outputs = deps.recorder.outputs(deployment).await?;

    // What each store restores, decided before anything is made.
    let mut chosen: Vec<(StoreName, String, Snapshot)> = Vec::new();
    let mut skipped = Map::new();
    for store in StoreName::ALL {
        if !plan.stores.contains(&store) {
            skipped.insert(store.as_str().into(), json!("not in this run's input"));
            continue;
        }
        let live = match engine::source(step, store) {
            Ok(live) => live,
            Err(reason) => {
                skipped.insert(store.as_str().into(), json!(reason));
                continue;
            }
        };
        let listed = primary.list(store, &live, deployment).await?;
        let Some(newest) = listed.into_iter().find(Snapshot::available) else {
            return Err(Error::fatal(format!(
                "{} has no available snapshot to restore: run the backup workflow first",
                store.as_str()
            )));
        };
        chosen.push((store, live, newest));
    }
    if create {
        for (store, reason) in &skipped {
            let slot = format!("restore-test.{store}");
            let value = json!({"execution_id": plan.execution_id, "skipped": reason});
            deps.recorder.save_output(deployment, &slot, &value).await?;
        }
    }
    let group = if create && !chosen.is_empty() {
        let ports: Vec<u16> = chosen.iter().map(|(s, _, _)| port(*s)).collect();
        Some(scratch::ensure_security_group(deps, step, &plan, &ports).await?)
    } else {
        None
    };

    let mut stores = Map::new();
    let mut pending = Vec::new();
    for (store, live, snapshot) in &chosen {
        let slot = format!("restore-test.{}", store.as_str());
        let earlier = outputs.get(&slot).filter(|v| {
            v.get("execution_id").and_then(Value::as_str) == Some(plan.execution_id.as_str())
        });
        let started_at = earlier
            .and_then(|v| v.get("restore_started_at"))
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc));
        let Some(credentials) = scratch::credentials(deps, step, *store, &plan, create).await?
        else {
            pending.push(format!(
                "{}: the scratch secret does not exist yet",
                store.as_str()
            ));
            continue;
        };
        let target = Target {
            store: *store,
            id: scratch_id(&step.names, *store, &plan),
            live: live.clone(),
            snapshot,
            group: group.as_deref(),
            credentials: &credentials,
        };
        let started_at = match started_at {
            Some(at) => at,
            None => {
                let now = Utc::now();
                let value = coordinates(&plan, &target, now, None, "restoring");
                deps.recorder.save_output(deployment, &slot, &value).await?;
                now
            }
        };
        let state = match store {
            StoreName::Postgres => postgres(deps, step, &plan, &target, create).await?,
            StoreName::Documentdb => documentdb(deps, step, &plan, &target, create).await?,
            StoreName::Redis => redis(deps, step, &plan, &target, create).await?,
        };
        let value = match state {
            State::Ready { host, port } => {
                let value =
                    coordinates(&plan, &target, started_at, Some((host, port)), "available");
                deps.recorder.save_output(deployment, &slot, &value).await?;
                value
            }
            State::Waiting(what) => {
                pending.push(what);
                coordinates(&plan, &target, started_at, None, "restoring")
            }
        };
        stores.insert(store.as_str().into(), value);
    }
    Ok(Done::pending(
        json!({"stores": stores, "skipped": skipped}),
        pending,
    ))
}

fn coordinates(
    plan: &Plan,
    target: &Target<'_>,
    started_at: DateTime<Utc>,
    endpoint: Option<(String, u16)>,
    status: &str,
) -> Value {
    let (host, port) = endpoint.unwrap_or_else(|| (String::new(), port(target.store)));
    json!({
        "execution_id": plan.execution_id,
        "status": status,
        "scratch_id": target.id,
        "endpoint": host,
        "port": port,
        "secret_arn": target.credentials.arn,
        "sentinel_id": target.snapshot.sentinel(),
        "snapshot_id": target.snapshot.id,
        "snapshot_created_at": target.snapshot.created_at,
        "restore_started_at": started_at,
    })
}

fn group_of(target: &Target<'_>) -> Result<String> {
    target
        .group
        .map(str::to_owned)
        .ok_or_else(|| Error::fatal("the scratch security group is not known on a status call"))
}

async fn postgres(
    deps: &Deps,
    step: &StepContext<'_, Action>,
    plan: &Plan,
    target: &Target<'_>,
    create: bool,
) -> Result<State> {
    let id = target.id.as_str();
    let describe = || async {
        Ok::<_, Error>(
            apiary_core::aws::answer_or_none(
                format!("DescribeDBInstances {id}"),
                deps.rds
                    .describe_db_instances()
                    .db_instance_identifier(id)
                    .send(),
                |e| e.is_db_instance_not_found_fault(),
            )
            .await?
            .and_then(|out| out.db_instances().first().cloned()),
        )
    };
    let Some(instance) = describe().await? else {
        if !create {
            return Ok(State::Waiting(format!(
                "scratch RDS instance {id} is not visible yet"
            )));
        }
        let tags = scratch_tags(&step.names, Some(target.store), plan)
            .into_iter()
            .map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build())
            .collect();
        match deps
            .rds
            .restore_db_instance_from_db_snapshot()
            .db_instance_identifier(id)
            .db_snapshot_identifier(&target.snapshot.id)
            .db_instance_class(POSTGRES_CLASS)
            .db_subnet_group_name(&target.live)
            .vpc_security_group_ids(group_of(target)?)
            .db_parameter_group_name(databases::postgres_parameter_group(&step.names))
            .publicly_accessible(false)
            .multi_az(false)
            .deletion_protection(false)
            // A scratch copy lives for the test only: no automated backups (it would
            // otherwise take the live instance's retention and start with a backup,
            // `backing-up`, before the verifier may read it).
            .backup_retention_period(0)
            .set_tags(Some(tags))
            .send()
            .await
        {
            Ok(_) => step.log.created(id),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_db_instance_already_exists_fault()) => {}
            Err(e) => {
                return Err(Error::aws_transient_if(
                    format!(
                        "RestoreDBInstanceFromDBSnapshot {id} from {}",
                        target.snapshot.id
                    ),
                    e,
                    |e| e.is_invalid_db_snapshot_state_fault(),
                ));
            }
        }
        return Ok(State::Waiting(format!(
            "scratch RDS instance {id} is being restored"
        )));
    };
    let status = instance.db_instance_status().unwrap_or("unknown");
    if status != "available" {
        return Ok(State::Waiting(format!(
            "scratch RDS instance {id} is {status}"
        )));
    }
    let password_set = instance
        .tag_list()
        .iter()
        .any(|t| t.key() == Some(TAG_PASSWORD));
    if !password_set {
        let managed = instance.master_user_secret().is_some();
        deps.rds
            .modify_db_instance()
            .db_instance_identifier(id)
            .master_user_password(&target.credentials.secret)
            // A password RDS manages cannot be set; the scratch copy gets its own.
            .set_manage_master_user_password(managed.then_some(false))
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| {
                Error::aws_transient_if(format!("ModifyDBInstance {id} (password)"), e, |e| {
                    e.is_invalid_db_instance_state_fault()
                })
            })?;
        deps.rds
            .add_tags_to_resource()
            .resource_name(instance.db_instance_arn().unwrap_or_default())
            .tags(
                aws_sdk_rds::types::Tag::builder()
                    .key(TAG_PASSWORD)
                    .value("set")
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Error::aws(format!("AddTagsToResource {id}"), e))?;
        return Ok(State::Waiting(format!(
            "scratch RDS instance {id}: the fresh password is being applied"
        )));
    }
    if instance
        .pending_modified_values()
        .is_some_and(|p| p.master_user_password().is_some())
    {
        return Ok(State::Waiting(format!(
            "scratch RDS instance {id}: the fresh password is being applied"
        )));
    }
    let endpoint = instance.endpoint();
    Ok(State::Ready {
        host: endpoint
            .and_then(|e| e.address())
            .unwrap_or_default()
            .to_owned(),
        port: endpoint
            .and_then(|e| e.port())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(port(target.store)),
    })
}

async fn documentdb(
    deps: &Deps,
    step: &StepContext<'_, Action>,
    plan: &Plan,
    target: &Target<'_>,
    create: bool,
) -> Result<State> {
    let id = target.id.as_str();
    let instance_id = format!("{id}-1");
    let tags = || {
        scratch_tags(&step.names, Some(target.store), plan)
            .into_iter()
            .map(|(k, v)| aws_sdk_docdb::types::Tag::builder().key(k).value(v).build())
            .collect::<Vec<_>>()
    };
    let cluster = apiary_core::aws::answer_or_none(
        format!("DescribeDBClusters {id}"),
        deps.docdb
            .describe_db_clusters()
            .db_cluster_identifier(id)
            .send(),
        |e| e.is_db_cluster_not_found_fault(),
    )
    .await?
    .and_then(|out| out.db_clusters().first().cloned());
    let Some(cluster) = cluster else {
        if !create {
            return Ok(State::Waiting(format!(
                "scratch DocumentDB cluster {id} is not visible yet"
            )));
        }
        match deps
            .docdb
            .restore_db_cluster_from_snapshot()
            .db_cluster_identifier(id)
            .snapshot_identifier(&target.snapshot.arn)
            .engine("docdb")
            .db_subnet_group_name(&target.live)
            .vpc_security_group_ids(group_of(target)?)
            .deletion_protection(false)
            .set_tags(Some(tags()))
            .send()
            .await
        {
            Ok(_) => step.log.created(id),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_db_cluster_already_exists_fault()) => {}
            Err(e) => {
                return Err(Error::aws_transient_if(
                    format!(
                        "RestoreDBClusterFromSnapshot {id} from {}",
                        target.snapshot.id
                    ),
                    e,
                    |e| e.is_invalid_db_cluster_snapshot_state_fault(),
                ));
            }
        }
        return Ok(State::Waiting(format!(
            "scratch DocumentDB cluster {id} is being restored"
        )));
    };
    // A restored cluster has no instance: one is added, the smallest class.
    let instance = apiary_core::aws::answer_or_none(
        format!("DescribeDBInstances {instance_id}"),
        deps.docdb
            .describe_db_instances()
            .db_instance_identifier(&instance_id)
            .send(),
        |e| e.is_db_instance_not_found_fault(),
    )
    .await?
    .and_then(|out| out.db_instances().first().cloned());
    let Some(instance) = instance else {
        match deps
            .docdb
            .create_db_instance()
            .db_instance_identifier(&instance_id)
            .db_cluster_identifier(id)
            .db_instance_class(DOCUMENTDB_CLASS)
            .engine("docdb")
            .set_tags(Some(tags()))
            .send()
            .await
        {
            Ok(_) => step.log.created(&instance_id),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_db_instance_already_exists_fault()) => {}
            Err(e) => {
                return Err(Error::aws_transient_if(
                    format!("CreateDBInstance {instance_id}"),
                    e,
                    |e| e.is_invalid_db_cluster_state_fault(),
                ));
            }
        }
        return Ok(State::Waiting(format!(
            "scratch DocumentDB instance {instance_id} is being created"
        )));
    };
    let status = cluster.status().unwrap_or("unknown");
    let instance_status = instance.db_instance_status().unwrap_or("unknown");
    if status != "available" || instance_status != "available" {
        return Ok(State::Waiting(format!(
            "scratch DocumentDB cluster {id} is {status}, its instance {instance_status}"
        )));
    }
    let arn = cluster.db_cluster_arn().unwrap_or_default().to_owned();
    let tagged = deps
        .docdb
        .list_tags_for_resource()
        .resource_name(&arn)
        .send()
        .await
        .map_err(|e| Error::aws(format!("ListTagsForResource {arn}"), e))?;
    if !tagged
        .tag_list()
        .iter()
        .any(|t| t.key() == Some(TAG_PASSWORD))
    {
        deps.docdb
            .modify_db_cluster()
            .db_cluster_identifier(id)
            .master_user_password(&target.credentials.secret)
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| {
                Error::aws_transient_if(format!("ModifyDBCluster {id} (password)"), e, |e| {
                    e.is_invalid_db_cluster_state_fault()
                })
            })?;
        deps.docdb
            .add_tags_to_resource()
            .resource_name(&arn)
            .tags(
                aws_sdk_docdb::types::Tag::builder()
                    .key(TAG_PASSWORD)
                    .value("set")
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Error::aws(format!("AddTagsToResource {id}"), e))?;
        return Ok(State::Waiting(format!(
            "scratch DocumentDB cluster {id}: the fresh password is being applied"
        )));
    }
    Ok(State::Ready {
        host: cluster.endpoint().unwrap_or_default().to_owned(),
        port: cluster
            .port()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(port(target.store)),
    })
}

async fn redis(
    deps: &Deps,
    step: &StepContext<'_, Action>,
    plan: &Plan,
    target: &Target<'_>,
    create: bool,
) -> Result<State> {
    let id = target.id.as_str();
    let group = apiary_core::aws::answer_or_none(
        format!("DescribeReplicationGroups {id}"),
        deps.elasticache
            .describe_replication_groups()
            .replication_group_id(id)
            .send(),
        |e| e.is_replication_group_not_found_fault(),
    )
    .await?
    .and_then(|out| out.replication_groups().first().cloned());
    let Some(group) = group else {
        if !create {
            return Ok(State::Waiting(format!(
                "scratch Redis group {id} is not visible yet"
            )));
        }
        let key = step.layers.keys()?.key("redis")?.arn.clone();
        let tags = scratch_tags(&step.names, Some(target.store), plan)
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
            .create_replication_group()
            .replication_group_id(id)
            .replication_group_description("Apiary restore test: scratch copy")
            .snapshot_name(&target.snapshot.id)
            .engine("redis")
            .cache_node_type(REDIS_NODE_TYPE)
            .num_cache_clusters(1)
            .cache_subnet_group_name(&target.live)
            .security_group_ids(group_of(target)?)
            .transit_encryption_enabled(true)
            .at_rest_encryption_enabled(true)
            .kms_key_id(key)
            .auth_token(&target.credentials.secret)
            .port(i32::from(port(target.store)))
            .set_tags(Some(tags))
            .send()
            .await
        {
            Ok(_) => step.log.created(id),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_replication_group_already_exists_fault()) => {}
            Err(e) => {
                return Err(Error::aws(
                    format!("CreateReplicationGroup {id} from {}", target.snapshot.id),
                    e,
                ));
            }
        }
        return Ok(State::Waiting(format!(
            "scratch Redis group {id} is being restored"
        )));
    };
    let status = group.status().unwrap_or("unknown");
    if status != "available" {
        return Ok(State::Waiting(format!(
            "scratch Redis group {id} is {status}"
        )));
    }
    let endpoint = group
        .node_groups()
        .first()
        .and_then(|g| g.primary_endpoint())
        .or(group.configuration_endpoint());
    Ok(State::Ready {
        host: endpoint
            .and_then(|e| e.address())
            .unwrap_or_default()
            .to_owned(),
        port: endpoint
            .and_then(|e| e.port())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(port(target.store)),
    })
}
