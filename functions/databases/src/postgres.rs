//! RDS PostgreSQL: a DB subnet group on the private subnets, a parameter group that
//! forces TLS, and the instance itself (encrypted with the rds key, master password
//! managed by RDS in Secrets Manager, deletion protection on).

use apiary_core::outputs::DatastoreEndpoint;
use apiary_core::{Error, Result};
use aws_sdk_rds::types::{ApplyMethod, DbInstance, Parameter, Tag};

use crate::readiness::{self, Readiness, instance_readiness};
use crate::{Inputs, Report, Work, secrets, tag_pairs};

/// A major version: RDS picks its current default minor version and keeps the instance
/// patched (auto minor version upgrade), so a pinned minor can never be retired under us.
pub const POSTGRES_ENGINE_VERSION: &str = "16";
pub const POSTGRES_PARAMETER_FAMILY: &str = "postgres16";
pub const POSTGRES_PORT: u16 = 5432;
const MASTER_USERNAME: &str = "apiary";
const DATABASE_NAME: &str = "honeyhive";
const STORAGE_TYPE: &str = "gp3";
const FORCE_SSL: &str = "rds.force_ssl";

pub(crate) async fn run(step: &Work<'_>) -> Result<Report> {
    let id = step.names.resource("postgres");
    let inputs = if step.create {
        let inputs = step.inputs("rds")?;
        ensure_subnet_group(step, &inputs, &id).await?;
        ensure_parameter_group(step, &parameter_group_name(step)).await?;
        Some(inputs)
    } else {
        None
    };
    let (instance, waiting) = match (describe(step, &id).await?, &inputs) {
        (Some(instance), Some(_)) => converge(step, &id, instance).await?,
        (Some(instance), None) => (instance, None),
        (None, Some(inputs)) => (create(step, inputs, &id).await?, None),
        (None, None) => {
            return Ok(Report::missing(id.clone(), POSTGRES_PORT, None, vec![id]));
        }
    };
    step.log
        .resource("rds:db-instance", &id, instance.db_instance_arn())
        .await?;
    let secret_arn = instance
        .master_user_secret()
        .and_then(|s| s.secret_arn())
        .unwrap_or_default()
        .to_owned();
    if !secret_arn.is_empty() {
        step.log
            .resource("rds:master-user-secret", &secret_arn, Some(&secret_arn))
            .await?;
    }
    let status = instance
        .db_instance_status()
        .unwrap_or("unknown")
        .to_owned();
    let endpoint = instance.endpoint();
    let has_endpoint = endpoint
        .and_then(|e| e.address())
        .is_some_and(|a| !a.is_empty());
    // An instance that has served keeps serving while RDS backs it up, converts it to
    // Multi-AZ or grows its storage: nothing waits for that work to end (a Multi-AZ
    // conversion of a large database can outlast the poll), once every change the spec
    // asks for is made or pending in RDS.
    let serving =
        waiting.is_none() && has_endpoint && SERVING_WHILE_BUSY.contains(&status.as_str());
    let mut pending = Vec::new();
    let readiness = readiness::check(
        "RDS instance",
        &id,
        &status,
        if serving {
            Readiness::Ready
        } else {
            instance_readiness(&status)
        },
        &mut pending,
    )?;
    pending.extend(waiting);
    if readiness == Readiness::Stopped && step.create && status == "stopped" {
        start(step, &id).await?;
    }
    let app_secret_arn = secrets::app_secret(
        step,
        "postgres",
        inputs.as_ref().map(|i| i.app_key_arn.as_str()),
        &mut pending,
    )
    .await?;
    Ok(Report {
        endpoint: DatastoreEndpoint {
            identifier: id,
            host: endpoint
                .and_then(|e| e.address())
                .unwrap_or_default()
                .to_owned(),
            port: endpoint
                .and_then(|e| e.port())
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(POSTGRES_PORT),
            secret_arn,
            app_secret_arn,
        },
        status,
        pending,
        missing: Vec::new(),
    })
}

fn parameter_group_name(step: &Work<'_>) -> String {
    postgres_parameter_group(step.names)
}

/// The PostgreSQL parameter group's name (also the restore test's and the teardown's).
pub fn postgres_parameter_group(names: &apiary_core::Names) -> String {
    names.resource(POSTGRES_PARAMETER_FAMILY)
}

fn tags(step: &Work<'_>) -> Vec<Tag> {
    tag_pairs(step.names, "postgres")
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build())
        .collect()
}

async fn ensure_subnet_group(step: &Work<'_>, inputs: &Inputs, name: &str) -> Result<()> {
    let rds = &step.deps.rds;
    let found = apiary_core::aws::answer_or_none(
        format!("DescribeDBSubnetGroups {name}"),
        rds.describe_db_subnet_groups()
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
            rds.create_db_subnet_group()
                .db_subnet_group_name(name)
                .db_subnet_group_description(format!(
                    "Apiary {} PostgreSQL: private subnets",
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
        .resource("rds:db-subnet-group", name, arn.as_deref())
        .await
}

async fn ensure_parameter_group(step: &Work<'_>, name: &str) -> Result<()> {
    let rds = &step.deps.rds;
    let found = apiary_core::aws::answer_or_none(
        format!("DescribeDBParameterGroups {name}"),
        rds.describe_db_parameter_groups()
            .db_parameter_group_name(name)
            .send(),
        |e| e.is_db_parameter_group_not_found_fault(),
    )
    .await?
    .and_then(|out| out.db_parameter_groups().first().cloned());
    let (arn, fresh) = match found {
        Some(group) => (group.db_parameter_group_arn().map(str::to_owned), false),
        None => match apiary_core::aws::answer_or_none(
            format!("CreateDBParameterGroup {name}"),
            rds.create_db_parameter_group()
                .db_parameter_group_name(name)
                .db_parameter_group_family(POSTGRES_PARAMETER_FAMILY)
                .description(format!(
                    "Apiary {} PostgreSQL: TLS required",
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
                    out.db_parameter_group()
                        .and_then(|g| g.db_parameter_group_arn())
                        .map(str::to_owned),
                    true,
                )
            }
            None => (None, false),
        },
    };
    if fresh || !force_ssl_is_on(step, name).await? {
        rds.modify_db_parameter_group()
            .db_parameter_group_name(name)
            .parameters(
                Parameter::builder()
                    .parameter_name(FORCE_SSL)
                    .parameter_value("1")
                    // Applied when the instance boots with the group; on an instance that
                    // already runs, at its next reboot rather than by surprise.
                    .apply_method(ApplyMethod::PendingReboot)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Error::aws(format!("ModifyDBParameterGroup {name} {FORCE_SSL}=1"), e))?;
    }
    step.log
        .resource("rds:db-parameter-group", name, arn.as_deref())
        .await
}

/// Whether the group already sets `rds.force_ssl=1` (only parameters a user set are
/// listed, which keeps this to one short page).
async fn force_ssl_is_on(step: &Work<'_>, name: &str) -> Result<bool> {
    let mut pages = step
        .deps
        .rds
        .describe_db_parameters()
        .db_parameter_group_name(name)
        .source("user")
        .into_paginator()
        .items()
        .send();
    while let Some(parameter) = pages
        .try_next()
        .await
        .map_err(|e| Error::aws(format!("DescribeDBParameters {name}"), e))?
    {
        if parameter.parameter_name() == Some(FORCE_SSL) {
            return Ok(parameter.parameter_value() == Some("1"));
        }
    }
    Ok(false)
}

async fn describe(step: &Work<'_>, id: &str) -> Result<Option<DbInstance>> {
    Ok(apiary_core::aws::answer_or_none(
        format!("DescribeDBInstances {id}"),
        step.deps
            .rds
            .describe_db_instances()
            .db_instance_identifier(id)
            .send(),
        |e| e.is_db_instance_not_found_fault(),
    )
    .await?
    .and_then(|out| out.db_instances().first().cloned()))
}

async fn create(step: &Work<'_>, inputs: &Inputs, id: &str) -> Result<DbInstance> {
    let sizing = step.spec.sizing();
    let retention = i32::try_from(step.spec.backup.retention_days)
        .map_err(|_| Error::invalid_input("backup.retention_days is out of range"))?;
    match apiary_core::aws::answer_or_none(
        format!("CreateDBInstance {id}"),
        step.deps
            .rds
            .create_db_instance()
            .db_instance_identifier(id)
            .engine("postgres")
            .engine_version(POSTGRES_ENGINE_VERSION)
            .auto_minor_version_upgrade(true)
            .db_instance_class(sizing.db_instance_class)
            .allocated_storage(sizing.db_allocated_storage_gb)
            .max_allocated_storage(sizing.db_max_allocated_storage_gb)
            .storage_type(STORAGE_TYPE)
            .storage_encrypted(true)
            .kms_key_id(&inputs.key_arn)
            .master_username(MASTER_USERNAME)
            .manage_master_user_password(true)
            // The secret is read by the ingestion pods through Secrets Manager: encrypt it
            // with the app key their role may use (the data key only serves its service).
            .master_user_secret_kms_key_id(&inputs.app_key_arn)
            .db_name(DATABASE_NAME)
            .port(i32::from(POSTGRES_PORT))
            .db_subnet_group_name(id)
            .db_parameter_group_name(parameter_group_name(step))
            .vpc_security_group_ids(&inputs.security_group)
            .publicly_accessible(false)
            .multi_az(sizing.multi_az)
            .backup_retention_period(retention)
            .copy_tags_to_snapshot(true)
            .deletion_protection(true)
            .enable_cloudwatch_logs_exports("postgresql")
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
        // A parallel run won the race: use what it made.
        None => describe(step, id).await?.ok_or_else(|| {
            Error::Conflict(format!("RDS instance {id} exists but cannot be described"))
        }),
    }
}

/// What an existing instance must change to match the spec, as one ModifyDBInstance
/// (`None`: nothing). Multi-AZ, backup retention, the storage ceiling and deletion
/// protection change online and are applied at once; the instance class restarts the
/// database, so it waits for the instance's maintenance window. A change RDS already has
/// pending is not asked again, and the storage ceiling is only ever raised: the alert
/// runbook may have raised it past the preset.
pub(crate) fn modification(
    spec: &apiary_core::DeploymentSpec,
    instance: &DbInstance,
) -> Result<Option<Modification>> {
    let sizing = spec.sizing();
    let retention = i32::try_from(spec.backup.retention_days)
        .map_err(|_| Error::invalid_input("backup.retention_days is out of range"))?;
    let pending = instance.pending_modified_values();
    let mut change = Modification::default();
    let multi_az = pending.and_then(|p| p.multi_az()).or(instance.multi_az());
    if multi_az != Some(sizing.multi_az) {
        change.multi_az = Some(sizing.multi_az);
    }
    let kept = pending
        .and_then(|p| p.backup_retention_period())
        .unwrap_or(instance.backup_retention_period().unwrap_or_default());
    if kept != retention {
        change.backup_retention = Some(retention);
    }
    if instance
        .max_allocated_storage()
        .is_some_and(|max| max < sizing.db_max_allocated_storage_gb)
    {
        change.max_allocated_storage = Some(sizing.db_max_allocated_storage_gb);
    }
    if instance.deletion_protection() != Some(true) {
        change.deletion_protection = true;
    }
    let class = pending
        .and_then(|p| p.db_instance_class())
        .or(instance.db_instance_class());
    if class != Some(sizing.db_instance_class) {
        change.instance_class = Some(sizing.db_instance_class.to_owned());
    }
    Ok((change != Modification::default()).then_some(change))
}

/// The settings of an existing instance that differ from the spec.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Modification {
    pub multi_az: Option<bool>,
    pub backup_retention: Option<i32>,
    pub max_allocated_storage: Option<i32>,
    pub deletion_protection: bool,
    /// Applied in the next maintenance window (it restarts the database).
    pub instance_class: Option<String>,
}

/// RDS instance states in which an instance that has an endpoint still accepts
/// connections: work RDS does alongside, not a restart.
const SERVING_WHILE_BUSY: [&str; 7] = [
    "backing-up",
    "modifying",
    "storage-optimization",
    "configuring-enhanced-monitoring",
    "configuring-iam-database-auth",
    "configuring-log-exports",
    "resetting-master-credentials",
];

impl Modification {
    /// The settings that change without a restart.
    fn online(&self) -> bool {
        self.multi_az.is_some()
            || self.backup_retention.is_some()
            || self.max_allocated_storage.is_some()
            || self.deletion_protection
    }

    fn fields(&self) -> String {
        let mut fields = Vec::new();
        if self.multi_az.is_some() {
            fields.push("multi_az");
        }
        if self.backup_retention.is_some() {
            fields.push("backup retention");
        }
        if self.max_allocated_storage.is_some() {
            fields.push("storage ceiling");
        }
        if self.deletion_protection {
            fields.push("deletion protection");
        }
        if self.instance_class.is_some() {
            fields.push("instance class");
        }
        fields.join(", ")
    }
}

/// Brings an existing instance one ModifyDBInstance closer to the spec, and says what
/// still waits (`Some(why)`: the step is not ready). Provision's poll runs this on every
/// round, so a change the instance was too busy for is made once it is available.
///
/// One call per round, never two back to back: the second would meet the instance
/// `modifying` (`InvalidDBInstanceState`). The online settings go first with
/// `ApplyImmediately`; the instance class follows on a later round, for the maintenance
/// window (it restarts the database). `ApplyImmediately` also applies every change RDS
/// has pending, so while a class change is pending the online settings join it in the
/// window instead of restarting the database now.
async fn converge(
    step: &Work<'_>,
    id: &str,
    instance: DbInstance,
) -> Result<(DbInstance, Option<String>)> {
    let Some(change) = modification(step.spec, &instance)? else {
        return Ok((instance, None));
    };
    let status = instance.db_instance_status().unwrap_or("unknown");
    if status != "available" {
        let why = format!(
            "RDS instance {id} is {status}; the spec's {} wait for it to be available",
            change.fields()
        );
        return Ok((instance, Some(why)));
    }
    let class_pending = instance
        .pending_modified_values()
        .and_then(|p| p.db_instance_class())
        .is_some();
    let rds = &step.deps.rds;
    if change.online() {
        let mut call = rds
            .modify_db_instance()
            .db_instance_identifier(id)
            .apply_immediately(!class_pending)
            .set_multi_az(change.multi_az)
            .set_backup_retention_period(change.backup_retention)
            .set_max_allocated_storage(change.max_allocated_storage);
        if change.deletion_protection {
            call = call.deletion_protection(true);
        }
        call.send()
            .await
            .map_err(|e| modify_error(id, "Multi-AZ, backup retention, storage ceiling", e))?;
        tracing::info!(
            instance = id,
            ?change,
            in_maintenance_window = class_pending,
            "brought the RDS instance's online settings in line with the spec"
        );
    } else if let Some(class) = &change.instance_class {
        rds.modify_db_instance()
            .db_instance_identifier(id)
            .db_instance_class(class)
            .apply_immediately(false)
            .send()
            .await
            .map_err(|e| modify_error(id, "instance class", e))?;
        tracing::info!(
            instance = id,
            class,
            "instance class change scheduled for the maintenance window"
        );
    }
    step.log.created(&format!("{id}:modified"));
    // Described again: the status (`modifying`) and the pending values are what the
    // readiness check and the next round read.
    let instance = describe(step, id).await?.ok_or_else(|| {
        Error::Conflict(format!("RDS instance {id} vanished while being modified"))
    })?;
    let left = modification(step.spec, &instance)?;
    Ok((
        instance,
        left.map(|left| {
            format!(
                "RDS instance {id}: the spec's {} follow on the next round",
                left.fields()
            )
        }),
    ))
}

fn modify_error(
    id: &str,
    what: &str,
    err: aws_sdk_rds::error::SdkError<
        aws_sdk_rds::operation::modify_db_instance::ModifyDBInstanceError,
    >,
) -> Error {
    // The instance went busy between the describe and the call (a backup window, another
    // run): the next poll tries again.
    Error::aws_transient_if(format!("ModifyDBInstance {id} ({what})"), err, |e| {
        e.is_invalid_db_instance_state_fault()
    })
}

async fn start(step: &Work<'_>, id: &str) -> Result<()> {
    tracing::info!(instance = id, "starting a stopped RDS instance");
    step.deps
        .rds
        .start_db_instance()
        .db_instance_identifier(id)
        .send()
        .await
        .map_err(|e| Error::aws(format!("StartDBInstance {id}"), e))?;
    Ok(())
}

/// What handle-alert's low-storage runbook did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Raised {
    pub identifier: String,
    pub before_gib: i32,
    pub after_gib: i32,
    pub ceiling_gib: i32,
    /// The raise was already asked (a retried step, or RDS still applying it).
    pub already: bool,
    /// One line for a person.
    pub detail: String,
}

impl Raised {
    fn new(
        identifier: String,
        before_gib: i32,
        after_gib: i32,
        ceiling_gib: i32,
        already: bool,
    ) -> Self {
        let detail = if already {
            format!(
                "RDS instance {identifier} is already growing from {before_gib} GiB to \
                 {after_gib} GiB (ceiling {ceiling_gib} GiB)"
            )
        } else {
            format!(
                "raised RDS instance {identifier} from {before_gib} GiB to {after_gib} GiB \
                 (ceiling {ceiling_gib} GiB)"
            )
        };
        Raised {
            identifier,
            before_gib,
            after_gib,
            ceiling_gib,
            already,
            detail,
        }
    }
}

/// The allocated storage handle-alert's low-storage runbook asks for: a quarter more,
/// within the ceiling (the instance's storage autoscaling maximum). RDS refuses an
/// increase under 10 %, so an instance within 10 % of its ceiling cannot be raised:
/// `None`, and a person raises the ceiling.
pub(crate) fn raised_storage(allocated: i32, ceiling: i32) -> Option<i32> {
    let smallest = allocated + (allocated + 9) / 10;
    if smallest > ceiling {
        return None;
    }
    Some((allocated + (allocated + 3) / 4).clamp(smallest, ceiling))
}

/// handle-alert's runbook for RDS's low-storage event: raises the PostgreSQL instance's
/// allocated storage within its ceiling, at once (storage grows online). Never lowers,
/// never passes the ceiling, and asks once: a raise RDS already has pending or is
/// applying is reported, not asked again.
///
/// What real RDS does that the emulator does not: after a storage change the instance is
/// `storage-optimization` for hours, and RDS refuses another storage change for 6 hours
/// or until the optimization ends, whichever is longer; that is a refusal naming the
/// instance (a person decides), not something to retry for hours. Another change in
/// progress (`modifying`, `backing-up`) is transient.
pub(crate) async fn raise_storage(step: &Work<'_>) -> Result<Raised> {
    let id = step.names.resource("postgres");
    let instance = describe(step, &id).await?.ok_or_else(|| {
        Error::Conflict(format!(
            "RDS instance {id} does not exist: there is no storage to raise"
        ))
    })?;
    let allocated = instance.allocated_storage().unwrap_or_default();
    let ceiling = instance.max_allocated_storage().unwrap_or(allocated);
    let pending = instance
        .pending_modified_values()
        .and_then(|p| p.allocated_storage());
    if let Some(pending) = pending.filter(|p| *p > allocated) {
        return Ok(Raised::new(id, allocated, pending, ceiling, true));
    }
    let status = instance.db_instance_status().unwrap_or("unknown");
    match status {
        // `storage-full` is what the raise is for: RDS takes the change in that state.
        "available" | "storage-full" => {}
        // The storage just changed (storage autoscaling, or an earlier raise): RDS
        // allows the next change 6 hours after it at the earliest, so nothing is asked
        // and the report says so; the instance did grow.
        "storage-optimization" => {
            let mut raised = Raised::new(id, allocated, allocated, ceiling, true);
            raised.detail = format!(
                "RDS instance {} changed its storage recently (now {allocated} GiB, ceiling \
                 {ceiling} GiB; storage autoscaling or an earlier raise): RDS allows the next \
                 change 6 hours after the last at the earliest, so nothing was asked",
                raised.identifier
            );
            return Ok(raised);
        }
        other => {
            return Err(Error::NotReady {
                resource: format!("RDS instance {id}"),
                detail: format!("it is {other}; its storage is raised once it is available"),
            });
        }
    }
    let Some(target) = raised_storage(allocated, ceiling) else {
        return Err(Error::Conflict(format!(
            "RDS instance {id} has {allocated} GiB, at its {ceiling} GiB ceiling (RDS needs an \
             increase of at least 10 %): raise the ceiling (the size preset's storage, or \
             the instance's maximum storage) and free space; Apiary does not pass it on its own"
        )));
    };
    step.deps
        .rds
        .modify_db_instance()
        .db_instance_identifier(&id)
        .allocated_storage(target)
        .apply_immediately(true)
        .send()
        .await
        .map_err(|e| modify_error(&id, "allocated storage", e))?;
    step.log.created(&format!("{id}:storage-{target}"));
    tracing::info!(
        instance = id,
        before = allocated,
        after = target,
        ceiling,
        "raised the RDS instance's allocated storage"
    );
    Ok(Raised::new(id, allocated, target, ceiling, false))
}

/// The instance's allocated storage (GiB) as RDS reports it now; `None` while the
/// instance does not exist.
pub(crate) async fn allocated_storage(step: &Work<'_>, id: &str) -> Result<Option<i32>> {
    Ok(describe(step, id)
        .await?
        .and_then(|instance| instance.allocated_storage()))
}
