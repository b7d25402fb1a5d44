//! `copy-dr` and `copy-status`: when `backup.dr_region` is set, each run's snapshots go to
//! the DR region re-encrypted with the DR-region key (`alias/apiary/<deployment>/dr`,
//! made by the keys function's `ensure-dr`): RDS `CopyDBSnapshot` and DocumentDB
//! `CopyDBClusterSnapshot` (with a `PreSignedUrl`, see [`crate::presign`]), both called
//! in the DR region. ElastiCache has no cross-region snapshot copy: the way across is an
//! export to an S3 bucket that grants ElastiCache write access, then replication of that
//! bucket to the DR region, and neither the grant nor the replication is built. So Redis
//! is reported as skipped with that reason (the RPO ledger shows no DR copy for it), never
//! as copied; see the README.
//!
//! Copies can take hours (AWS-TIMINGS.md: "can take hours"; requests queue when 20 copies
//! per region pair are running): the workflow polls `copy-status` for up to 12 hours.

use std::time::SystemTime;

use apiary_core::inputs::backup::StoreName;
use apiary_core::step::{Done, StepContext};
use apiary_core::{Error, Result};
use aws_sdk_rds::config::ProvideCredentials;
use serde_json::{Map, Value, json};

use crate::engine::{self, Clients, snapshot_id};
use crate::plan::{self, BACKUP};
use crate::{Action, Deps, Regional, presign};

/// The scope of the DR-region key: `alias/apiary/<deployment>/dr`.
pub const DR_KEY_SCOPE: &str = "dr";

pub(crate) async fn run(
    deps: &Deps,
    step: &StepContext<'_, Action>,
    create: bool,
) -> Result<Done<Value>> {
    let plan = plan::load(deps, step, BACKUP).await?;
    let Some(dr_region) = step.spec.backup.dr_region.clone() else {
        return Ok(Done::ready(json!({
            "dr_region": null,
            "copies": {},
            "note": "backup.dr_region is not set: no cross-region copy"
        })));
    };
    let regional = (deps.regional)(&dr_region);
    let dr = Clients::dr(&regional);
    let primary = Clients::primary(deps, &step.spec.region);
    let mut key: Option<String> = None;
    let mut copies = Map::new();
    let mut skipped = Map::new();
    let mut pending = Vec::new();
    for store in plan.stores.iter().copied() {
        if let Err(reason) = engine::source(step, store) {
            skipped.insert(store.as_str().to_owned(), json!(reason));
            continue;
        }
        if store == StoreName::Redis {
            skipped.insert(store.as_str().to_owned(), json!(REDIS_NOT_COPIED));
            continue;
        }
        let id = snapshot_id(&step.names, store, &plan);
        let mut found = dr.describe(store, &id).await?;
        if found.is_none() && create {
            let Some(source) = primary.describe(store, &id).await? else {
                return Err(Error::fatal(format!(
                    "{} snapshot {id} does not exist in {}: nothing to copy",
                    store.as_str(),
                    step.spec.region
                )));
            };
            if !source.available() {
                pending.push(format!(
                    "{} snapshot {id} is {}",
                    store.as_str(),
                    source.status
                ));
                continue;
            }
            let key_arn = match &key {
                Some(key) => key.clone(),
                None => key.insert(dr_key(&regional, &step.names).await?).clone(),
            };
            if start_copy(deps, &regional, step, store, &source.arn, &id, &key_arn).await? {
                step.log.created(&format!("{dr_region}:{id}"));
            }
            found = dr.describe(store, &id).await?;
        }
        let Some(copy) = found else {
            pending.push(format!(
                "{} copy {id} is not visible in {dr_region} yet",
                store.as_str()
            ));
            continue;
        };
        if copy.failed() {
            return Err(Error::fatal(format!(
                "the {dr_region} copy {id} of {} is {}",
                store.as_str(),
                copy.status
            )));
        }
        if !copy.available() {
            pending.push(format!(
                "{} copy {id} in {dr_region} is {}",
                store.as_str(),
                copy.status
            ));
        }
        step.log
            .resource(
                &format!("{}-copy", crate::snapshot::kind(store)),
                &format!("{dr_region}/{id}"),
                Some(&copy.arn),
            )
            .await?;
        copies.insert(
            store.as_str().to_owned(),
            serde_json::to_value(&copy).map_err(|e| Error::fatal(e.to_string()))?,
        );
    }
    Ok(Done::pending(
        json!({"dr_region": dr_region, "copies": copies, "skipped": skipped}),
        pending,
    ))
}

/// Why Redis has no DR copy.
pub const REDIS_NOT_COPIED: &str = "no DR copy: ElastiCache has no cross-region snapshot \
    copy, and the export to a bucket that grants ElastiCache access with that bucket's \
    replication to the DR region is not built";

/// The DR-region key's ARN. The keys function's `ensure-dr` runs earlier in the workflow.
async fn dr_key(regional: &Regional, names: &apiary_core::Names) -> Result<String> {
    let alias = names.key_alias(DR_KEY_SCOPE);
    let described = apiary_core::aws::answer_or_none(
        format!("DescribeKey {alias} ({})", regional.region),
        regional.kms.describe_key().key_id(&alias).send(),
        |e| e.is_not_found_exception(),
    )
    .await?
    .and_then(|out| out.key_metadata)
    .ok_or_else(|| {
        Error::fatal(format!(
            "the DR key {alias} does not exist in {}: the keys function's ensure-dr step makes it",
            regional.region
        ))
    })?;
    described
        .arn
        .ok_or_else(|| Error::fatal(format!("DescribeKey {alias} returned no ARN")))
}

/// Starts a copy in the DR region; `false` when one was already started.
async fn start_copy(
    deps: &Deps,
    regional: &Regional,
    step: &StepContext<'_, Action>,
    store: StoreName,
    source_arn: &str,
    id: &str,
    key: &str,
) -> Result<bool> {
    let source_region = step.spec.region.as_str();
    let dr_region = regional.region.as_str();
    match store {
        StoreName::Postgres => {
            // RDS reads a PreSignedUrl only between GovCloud regions.
            let url = if apiary_core::aws::partition(source_region) == "aws-us-gov" {
                Some(
                    presigned(
                        deps,
                        "CopyDBSnapshot",
                        &[
                            ("SourceDBSnapshotIdentifier", source_arn),
                            ("TargetDBSnapshotIdentifier", id),
                            ("KmsKeyId", key),
                            ("DestinationRegion", dr_region),
                        ],
                        source_region,
                    )
                    .await?,
                )
            } else {
                None
            };
            match regional
                .rds
                .copy_db_snapshot()
                .source_db_snapshot_identifier(source_arn)
                .target_db_snapshot_identifier(id)
                .kms_key_id(key)
                .copy_tags(true)
                .set_pre_signed_url(url)
                .send()
                .await
            {
                Ok(_) => Ok(true),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_db_snapshot_already_exists_fault()) =>
                {
                    Ok(false)
                }
                Err(e) => Err(Error::aws_transient_if(
                    format!("CopyDBSnapshot {id} to {dr_region}"),
                    e,
                    |e| e.is_invalid_db_snapshot_state_fault(),
                )),
            }
        }
        StoreName::Documentdb => {
            let url = presigned(
                deps,
                "CopyDBClusterSnapshot",
                &[
                    ("SourceDBClusterSnapshotIdentifier", source_arn),
                    ("TargetDBClusterSnapshotIdentifier", id),
                    ("KmsKeyId", key),
                    ("DestinationRegion", dr_region),
                ],
                source_region,
            )
            .await?;
            match regional
                .docdb
                .copy_db_cluster_snapshot()
                .source_db_cluster_snapshot_identifier(source_arn)
                .target_db_cluster_snapshot_identifier(id)
                .kms_key_id(key)
                .pre_signed_url(url)
                .copy_tags(true)
                .send()
                .await
            {
                Ok(_) => Ok(true),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_db_cluster_snapshot_already_exists_fault()) =>
                {
                    Ok(false)
                }
                Err(e) => Err(Error::aws_transient_if(
                    format!("CopyDBClusterSnapshot {id} to {dr_region}"),
                    e,
                    |e| e.is_invalid_db_cluster_snapshot_state_fault(),
                )),
            }
        }
        StoreName::Redis => Err(Error::fatal("Redis snapshots are exported, not copied")),
    }
}

async fn presigned(
    deps: &Deps,
    action: &str,
    params: &[(&str, &str)],
    source_region: &str,
) -> Result<String> {
    let provider = deps.credentials.as_ref().ok_or_else(|| {
        Error::fatal(format!(
            "{action}: no credentials to sign the PreSignedUrl with"
        ))
    })?;
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|e| Error::fatal(format!("{action}: credentials for the PreSignedUrl: {e}")))?;
    presign::presigned_url(
        action,
        params,
        source_region,
        &credentials,
        SystemTime::now(),
    )
}
