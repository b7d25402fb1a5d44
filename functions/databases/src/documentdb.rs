//! DocumentDB: a subnet group, a cluster parameter group with TLS on, the cluster
//! (encrypted with the docdb key, master password managed in Secrets Manager) and its
//! instances (one, or two across AZs when the spec asks for Multi-AZ).
//!
//! An existing cluster follows the spec ([`cluster_change`], when it is `available`): its
//! backup retention, and deletion protection put back. Multi-AZ turned on adds the
//! second instance; turned off, the second instance is kept (deleting one is the
//! teardown's right) and the step says so. The instance class is the same in every
//! preset; one changed by hand is left as it is.
//!
//! The local emulator (moto 5.2.5) rejects `Engine=docdb` on CreateDBCluster. The real
//! request is still made; that exact rejection is reported as
//! `{"emulated": false, "reason": ...}` instead of pretending a cluster exists.

use apiary_core::outputs::DatastoreEndpoint;
use apiary_core::step::Done;
use apiary_core::{Error, Result};
use aws_sdk_docdb::error::ProvideErrorMetadata;
use aws_sdk_docdb::types::{ApplyMethod, DbCluster, DbInstance, Parameter, Tag};

use crate::readiness::{self, Readiness, instance_readiness};
use crate::{DatastoreOutput, Inputs, Report, Work, secrets, tag_pairs};

pub const DOCDB_ENGINE_VERSION: &str = "5.0.0";
pub const DOCDB_PARAMETER_FAMILY: &str = "docdb5.0";
pub const DOCDB_PORT: u16 = 27017;
const ENGINE: &str = "docdb";
const MASTER_USERNAME: &str = "apiary";

pub(crate) async fn run(step: &Work<'_>) -> Result<Done<DatastoreOutput>> {
    let cluster_id = step.names.resource("docdb");
    let instance_count = if step.spec.sizing().multi_az { 2 } else { 1 };
    let instance_ids: Vec<String> = (1..=instance_count)
        .map(|i| step.names.resource(&format!("docdb-{i}")))
        .collect();
    let inputs = if step.create {
        let inputs = step.inputs("docdb")?;
        ensure_subnet_group(step, &inputs, &cluster_id).await?;
        ensure_parameter_group(step, &parameter_group_name(step)).await?;
        Some(inputs)
    } else {
        None
    };

    let cluster = match (describe_cluster(step, &cluster_id).await?, &inputs) {
        (Some(cluster), _) => cluster,
        (None, Some(inputs)) => match create_cluster(step, inputs, &cluster_id).await? {
            Created::Cluster(cluster) => *cluster,
            Created::NotEmulated(reason) => {
                tracing::warn!(cluster = %cluster_id, %reason, "DocumentDB is not emulated here");
                let note = reason.clone();
                return Ok(
                    Done::ready(DatastoreOutput::not_emulated(cluster_id, reason))
                        .with_detail(note),
                );
            }
        },
        (None, None) => {
            let mut missing = vec![cluster_id.clone()];
            missing.extend(instance_ids);
            return Ok(Report::missing(cluster_id, DOCDB_PORT, None, missing).done());
        }
    };
    step.log
        .resource("docdb:db-cluster", &cluster_id, cluster.db_cluster_arn())
        .await?;
    let secret_arn = cluster
        .master_user_secret()
        .and_then(|s| s.secret_arn())
        .unwrap_or_default()
        .to_owned();
    if !secret_arn.is_empty() {
        step.log
            .resource("docdb:master-user-secret", &secret_arn, Some(&secret_arn))
            .await?;
    }
    let (cluster, waiting) = if step.create {
        converge(step, &cluster_id, cluster).await?
    } else {
        (cluster, None)
    };
    let cluster_status = cluster.status().unwrap_or("unknown").to_owned();
    let mut pending: Vec<String> = waiting.into_iter().collect();
    let readiness = readiness::check(
        "DocumentDB cluster",
        &cluster_id,
        &cluster_status,
        instance_readiness(&cluster_status),
        &mut pending,
    )?;
    if readiness == Readiness::Stopped && step.create && cluster_status == "stopped" {
        // Its instances start with it.
        start_cluster(step, &cluster_id).await?;
    }

    let mut missing = Vec::new();
    for (i, id) in instance_ids.iter().enumerate() {
        let instance = match describe_instance(step, id).await? {
            Some(instance) => instance,
            None if step.create => create_instance(step, &cluster_id, id, i).await?,
            None => {
                missing.push(id.clone());
                continue;
            }
        };
        step.log
            .resource("docdb:db-instance", id, instance.db_instance_arn())
            .await?;
        let status = instance.db_instance_status().unwrap_or("unknown");
        readiness::check(
            "DocumentDB instance",
            id,
            status,
            instance_readiness(status),
            &mut pending,
        )?;
    }

    // Multi-AZ turned off: a second instance made earlier stays, serving reads.
    let extra = step
        .names
        .resource(&format!("docdb-{}", instance_count + 1));
    let kept = (instance_count == 1
        && cluster
            .db_cluster_members()
            .iter()
            .any(|m| m.db_instance_identifier() == Some(extra.as_str())))
    .then(|| {
        format!(
            "DocumentDB instance {extra} is kept though databases.multi_az is off: \
             removing an instance is the teardown's right; it goes with the deployment"
        )
    });
    let app_secret_arn = secrets::app_secret(
        step,
        "documentdb",
        inputs.as_ref().map(|i| i.app_key_arn.as_str()),
        &mut pending,
    )
    .await?;
    let report = Report {
        endpoint: DatastoreEndpoint {
            identifier: cluster_id,
            host: cluster.endpoint().unwrap_or_default().to_owned(),
            port: cluster
                .port()
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(DOCDB_PORT),
            secret_arn,
            app_secret_arn,
        },
        status: cluster_status,
        pending,
        missing,
    };
    Ok(match kept {
        Some(note) => report.done().with_detail(note),
        None => report.done(),
    })
}

/// What an existing cluster must change to match the spec, as one ModifyDBCluster
/// (`None`: nothing): the backup retention, and deletion protection back on. Both are
/// applied at once, online.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ClusterChange {
    pub backup_retention: Option<i32>,
    pub deletion_protection: bool,
}

pub(crate) fn cluster_change(
    spec: &apiary_core::DeploymentSpec,
    cluster: &DbCluster,
) -> Result<Option<ClusterChange>> {
    let retention = i32::try_from(spec.backup.retention_days)
        .map_err(|_| Error::invalid_input("backup.retention_days is out of range"))?;
    let change = ClusterChange {
        backup_retention: (cluster.backup_retention_period() != Some(retention))
            .then_some(retention),
        deletion_protection: cluster.deletion_protection() != Some(true),
    };
    Ok((change != ClusterChange::default()).then_some(change))
}

/// Makes the cluster's change when it is `available`, and says what still waits.
async fn converge(
    step: &Work<'_>,
    id: &str,
    cluster: DbCluster,
) -> Result<(DbCluster, Option<String>)> {
    let Some(change) = cluster_change(step.spec, &cluster)? else {
        return Ok((cluster, None));
    };
    let mut fields = Vec::new();
    if change.backup_retention.is_some() {
        fields.push("backup retention");
    }
    if change.deletion_protection {
        fields.push("deletion protection");
    }
    let fields = fields.join(", ");
    let status = cluster.status().unwrap_or("unknown");
    if status != "available" {
        let why = format!(
            "DocumentDB cluster {id} is {status}; the spec's {fields} wait for it to be available"
        );
        return Ok((cluster, Some(why)));
    }
    let mut call = step
        .deps
        .docdb
        .modify_db_cluster()
        .db_cluster_identifier(id)
        .apply_immediately(true)
        .set_backup_retention_period(change.backup_retention);
    if change.deletion_protection {
        call = call.deletion_protection(true);
    }
    call.send().await.map_err(|e| {
        // Busy between the describe and the call (a backup window, another run): the
        // next round tries again.
        Error::aws_transient_if(format!("ModifyDBCluster {id} ({fields})"), e, |e| {
            e.is_invalid_db_cluster_state_fault()
        })
    })?;
    tracing::info!(
        cluster = id,
        fields,
        "DocumentDB cluster brought in line with the spec"
    );
    step.log.created(&format!("{id}:modified"));
    let cluster = describe_cluster(step, id).await?.ok_or_else(|| {
        Error::Conflict(format!(
            "DocumentDB cluster {id} vanished while being modified"
        ))
    })?;
    Ok((cluster, None))
}

async fn start_cluster(step: &Work<'_>, id: &str) -> Result<()> {
    tracing::info!(cluster = id, "starting a stopped DocumentDB cluster");
    step.deps
        .docdb
        .start_db_cluster()
        .db_cluster_identifier(id)
        .send()
        .await
        .map_err(|e| Error::aws(format!("StartDBCluster {id}"), e))?;
    Ok(())
}

fn parameter_group_name(step: &Work<'_>) -> String {
    documentdb_parameter_group(step.names)
}

/// The DocumentDB cluster parameter group's name (also the teardown's).
pub fn documentdb_parameter_group(names: &apiary_core::Names) -> String {
    names.resource("docdb5")
}

fn tags(step: &Work<'_>) -> Vec<Tag> {
    tag_pairs(step.names, "documentdb")
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

async fn ensure_subnet_group(step: &Work<'_>, inputs: &Inputs, name: &str) -> Result<()> {
    let docdb = &step.deps.docdb;
    let found = apiary_core::aws::answer_or_none(
        format!("DescribeDBSubnetGroups {name}"),
        docdb
            .describe_db_subnet_groups()
            .db_subnet_group_name(name)
            .send(),
        |e| e.is_db_subnet_group_not_found_fault(),
    )
    .await?
    .and_then(|out| out.db_subnet_groups().first().cloned());
    let arn = match found {
        Some(group) => group.db_subnet_group_arn().map(str::to_owned),
        None => apiary_core::aws::answer_or_none(
            format!("CreateDBSubnetGroup {name}"),
            docdb
                .create_db_subnet_group()
                .db_subnet_group_name(name)
                .db_subnet_group_description(format!(
                    "Apiary {} DocumentDB: private subnets",
                    step.names.deployment()
                ))
                .set_subnet_ids(Some(inputs.subnet_ids.clone()))
                .set_tags(Some(tags(step)))
                .send(),
            |e| e.is_db_subnet_group_already_exists_fault(),
        )
        .await?
        .and_then(|out| {
            step.log.created(name);
            out.db_subnet_group()
                .and_then(|g| g.db_subnet_group_arn())
                .map(str::to_owned)
        }),
    };
    step.log
        .resource("docdb:db-subnet-group", name, arn.as_deref())
        .await
}

async fn ensure_parameter_group(step: &Work<'_>, name: &str) -> Result<()> {
    let docdb = &step.deps.docdb;
    let found = apiary_core::aws::answer_or_none(
        format!("DescribeDBClusterParameterGroups {name}"),
        docdb
            .describe_db_cluster_parameter_groups()
            .db_cluster_parameter_group_name(name)
            .send(),
        |e| e.is_db_parameter_group_not_found_fault(),
    )
    .await?
    .and_then(|out| out.db_cluster_parameter_groups().first().cloned());
    let (arn, fresh) = match found {
        Some(group) => (
            group.db_cluster_parameter_group_arn().map(str::to_owned),
            false,
        ),
        None => match apiary_core::aws::answer_or_none(
            format!("CreateDBClusterParameterGroup {name}"),
            docdb
                .create_db_cluster_parameter_group()
                .db_cluster_parameter_group_name(name)
                .db_parameter_group_family(DOCDB_PARAMETER_FAMILY)
                .description(format!(
                    "Apiary {} DocumentDB: TLS required",
                    step.names.deployment()
                ))
                .set_tags(Some(tags(step)))
                .send(),
            |e| e.is_db_parameter_group_already_exists_fault(),
        )
        .await?
        {
            Some(out) => {
                step.log.created(name);
                (
                    out.db_cluster_parameter_group()
                        .and_then(|g| g.db_cluster_parameter_group_arn())
                        .map(str::to_owned),
                    true,
                )
            }
            None => (None, false),
        },
    };
    if fresh || !tls_is_enabled(step, name).await? {
        docdb
            .modify_db_cluster_parameter_group()
            .db_cluster_parameter_group_name(name)
            .parameters(
                Parameter::builder()
                    .parameter_name("tls")
                    .parameter_value("enabled")
                    .apply_method(ApplyMethod::PendingReboot)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Error::aws(format!("ModifyDBClusterParameterGroup {name} tls"), e))?;
    }
    step.log
        .resource("docdb:db-cluster-parameter-group", name, arn.as_deref())
        .await
}

async fn tls_is_enabled(step: &Work<'_>, name: &str) -> Result<bool> {
    let mut marker = None;
    loop {
        let page = step
            .deps
            .docdb
            .describe_db_cluster_parameters()
            .db_cluster_parameter_group_name(name)
            .source("user")
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| Error::aws(format!("DescribeDBClusterParameters {name}"), e))?;
        if let Some(tls) = page
            .parameters()
            .iter()
            .find(|p| p.parameter_name() == Some("tls"))
        {
            return Ok(tls.parameter_value() == Some("enabled"));
        }
        match page.marker {
            Some(next) if !next.is_empty() => marker = Some(next),
            _ => return Ok(false),
        }
    }
}

async fn describe_cluster(step: &Work<'_>, id: &str) -> Result<Option<DbCluster>> {
    Ok(apiary_core::aws::answer_or_none(
        format!("DescribeDBClusters {id}"),
        step.deps
            .docdb
            .describe_db_clusters()
            .db_cluster_identifier(id)
            .send(),
        |e| e.is_db_cluster_not_found_fault(),
    )
    .await?
    .and_then(|out| out.db_clusters().first().cloned()))
}

enum Created {
    Cluster(Box<DbCluster>),
    NotEmulated(String),
}

/// The message moto gives for an engine it does not model; no AWS region says this for
/// `docdb`, so it identifies the emulator without a setting that could drift.
pub(crate) fn is_engine_not_emulated(code: Option<&str>, message: Option<&str>) -> bool {
    code == Some("InvalidParameterValue")
        && message.is_some_and(|m| m.contains("Engine 'docdb' is not supported"))
}

async fn create_cluster(step: &Work<'_>, inputs: &Inputs, id: &str) -> Result<Created> {
    let retention = i32::try_from(step.spec.backup.retention_days)
        .map_err(|_| Error::invalid_input("backup.retention_days is out of range"))?;
    match step
        .deps
        .docdb
        .create_db_cluster()
        .db_cluster_identifier(id)
        .engine(ENGINE)
        .engine_version(DOCDB_ENGINE_VERSION)
        .master_username(MASTER_USERNAME)
        .manage_master_user_password(true)
        // The secret is read by the ingestion pods through Secrets Manager: encrypt it
        // with the app key their role may use (the data key only serves its service).
        .master_user_secret_kms_key_id(&inputs.app_key_arn)
        .storage_encrypted(true)
        .kms_key_id(&inputs.key_arn)
        .port(i32::from(DOCDB_PORT))
        .db_subnet_group_name(id)
        .db_cluster_parameter_group_name(parameter_group_name(step))
        .vpc_security_group_ids(&inputs.security_group)
        .backup_retention_period(retention)
        .deletion_protection(true)
        .set_tags(Some(tags(step)))
        .send()
        .await
    {
        Ok(out) => {
            step.log.created(id);
            let cluster = out
                .db_cluster
                .ok_or_else(|| Error::fatal(format!("CreateDBCluster {id} returned no cluster")))?;
            Ok(Created::Cluster(Box::new(cluster)))
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_db_cluster_already_exists_fault()) =>
        {
            let cluster = describe_cluster(step, id).await?.ok_or_else(|| {
                Error::Conflict(format!(
                    "DocumentDB cluster {id} exists but cannot be described"
                ))
            })?;
            Ok(Created::Cluster(Box::new(cluster)))
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| is_engine_not_emulated(e.code(), e.message())) =>
        {
            let message = err
                .as_service_error()
                .and_then(|e| e.message())
                .unwrap_or_default()
                .to_owned();
            Ok(Created::NotEmulated(format!(
                "DocumentDB is not emulated locally: the endpoint rejected CreateDBCluster {id} \
                 with Engine=docdb ({message}); no DocumentDB cluster or instance exists"
            )))
        }
        Err(err) => Err(Error::aws(format!("CreateDBCluster {id}"), err)),
    }
}

async fn describe_instance(step: &Work<'_>, id: &str) -> Result<Option<DbInstance>> {
    Ok(apiary_core::aws::answer_or_none(
        format!("DescribeDBInstances {id}"),
        step.deps
            .docdb
            .describe_db_instances()
            .db_instance_identifier(id)
            .send(),
        |e| e.is_db_instance_not_found_fault(),
    )
    .await?
    .and_then(|out| out.db_instances().first().cloned()))
}

async fn create_instance(
    step: &Work<'_>,
    cluster_id: &str,
    id: &str,
    index: usize,
) -> Result<DbInstance> {
    match apiary_core::aws::answer_or_none(
        format!("CreateDBInstance {id}"),
        step.deps
            .docdb
            .create_db_instance()
            .db_instance_identifier(id)
            .db_cluster_identifier(cluster_id)
            .engine(ENGINE)
            .db_instance_class(step.spec.sizing().docdb_instance_class)
            .auto_minor_version_upgrade(true)
            // The first instance is the preferred writer on failover.
            .promotion_tier(i32::try_from(index).unwrap_or(15).min(15))
            .set_tags(Some(tags(step)))
            .send(),
        |e| e.is_db_instance_already_exists_fault(),
    )
    .await?
    {
        Some(out) => {
            step.log.created(id);
            out.db_instance
                .ok_or_else(|| Error::fatal(format!("CreateDBInstance {id} returned no instance")))
        }
        None => describe_instance(step, id).await?.ok_or_else(|| {
            Error::Conflict(format!(
                "DocumentDB instance {id} exists but cannot be described"
            ))
        }),
    }
}
