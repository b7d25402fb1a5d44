//! `copy-dr` and `copy-status`: when `backup.dr_region` is set, each run's snapshots go to
//! the DR region re-encrypted with the DR-region key (`alias/apiary/<deployment>/dr`,
//! made by the keys function's `ensure-dr`): RDS `CopyDBSnapshot` and DocumentDB
//! `CopyDBClusterSnapshot` (with a `PreSignedUrl`, see [`crate::presign`]), both called
//! in the DR region. ElastiCache has no cross-region snapshot copy: the Redis snapshot is
//! exported (`CopySnapshot` with `TargetBucket`) into the storage layer's export bucket,
//! which grants ElastiCache write access and which S3 replicates into its DR twin (see
//! the storage function's `exports` module). The step tags the exported files with the
//! snapshot's tags, and the copy is done when the replica in the DR region carries them;
//! a file S3 reports `FAILED`, or one it will never replicate, fails the step by name.
//!
//! Copies can take hours (AWS-TIMINGS.md: "can take hours"; requests queue when 20 copies
//! per region pair are running): the workflow polls `copy-status` for up to 11 hours.

use std::time::SystemTime;

use apiary_core::inputs::backup::StoreName;
use apiary_core::step::{Done, StepContext};
use apiary_core::{Error, Result};
use aws_sdk_rds::config::ProvideCredentials;
use aws_sdk_s3::types::ReplicationStatus;
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
    let Some(dr_region) = step.spec.dr_region().map(str::to_owned) else {
        return Ok(Done::ready(json!({
            "dr_region": null,
            "copies": {},
            "note": "backup.dr_region is not set: no cross-region copy"
        })));
    };
    let regional = (deps.regional)(&dr_region);
    let dr = Clients::dr(&regional, &step.layers);
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
            match export_redis(deps, step, &primary, &dr, &regional, &plan, create).await? {
                Export::Skipped(reason) => {
                    skipped.insert(store.as_str().to_owned(), json!(reason));
                }
                Export::Waiting(why) => pending.push(why),
                Export::Reported(value) => {
                    copies.insert(store.as_str().to_owned(), value);
                }
            }
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

/// Why Redis has no DR copy when the storage layer made no export buckets.
pub const REDIS_NOT_COPIED: &str = "no DR copy: ElastiCache has no cross-region snapshot \
    copy and the storage layer made no export buckets for it (provision makes them when \
    backup.dr_region is set, in every region where AWS documents how to grant ElastiCache \
    access to a bucket)";

/// Where a Redis snapshot's way to the DR region stands.
enum Export {
    Skipped(String),
    Waiting(String),
    /// Done (the replica, as a snapshot), or not possible here (the emulator).
    Reported(Value),
}

/// The Redis snapshot `id` exported into the primary export bucket, tagged, replicated:
/// started when none of its files is there and the snapshot is not exporting (by
/// `copy-dr`, or by `copy-status` when an export ended without writing anything), then
/// followed through S3's replication status until the replica in the DR bucket has every
/// file (one per shard) and the snapshot's tags.
async fn export_redis(
    deps: &Deps,
    step: &StepContext<'_, Action>,
    primary: &Clients<'_>,
    dr: &Clients<'_>,
    regional: &Regional,
    plan: &plan::Plan,
    create: bool,
) -> Result<Export> {
    let store = StoreName::Redis;
    let id = snapshot_id(&step.names, store, plan);
    let Some(exports) = step.layers.storage()?.exports.clone() else {
        return Ok(Export::Skipped(REDIS_NOT_COPIED.to_owned()));
    };
    if exports.dr_region != dr.region {
        return Ok(Export::Skipped(format!(
            "no DR copy: the export buckets were made for {}, and backup.dr_region is now {}; provision with this spec makes them for it",
            exports.dr_region, dr.region
        )));
    }
    let deployment = step.names.deployment();
    // The replica is there, whole, with the snapshot's tags: done once every file is
    // encrypted with the DR key (S3 replicates with the source's SSE-S3).
    if let Some(mut replica) = dr.describe(store, &id).await?
        && replica.ours(deployment)
        && replica.available()
    {
        let key = dr_key(regional, &step.names).await?;
        let still = encrypt_replica(&regional.s3, &exports.dr, &id, &key, step).await?;
        if !still.is_empty() {
            return Ok(Export::Waiting(still.join("; ")));
        }
        replica.kms_key_id = Some(key);
        return Ok(Export::Reported(
            serde_json::to_value(&replica).map_err(|e| Error::fatal(e.to_string()))?,
        ));
    }
    let Some(source) = primary.describe(store, &id).await? else {
        return Err(Error::fatal(format!(
            "redis snapshot {id} does not exist, so it cannot be exported (or its export's tags, deployment and sentinel, be given to the files)"
        )));
    };
    let expected = source.parts.max(1);
    let bucket = exports.primary.as_str();
    let files = export_files(&deps.s3, bucket, &id).await?;
    if files.len() < expected {
        if !source.available() {
            // Still being made, or being exported (`exporting`).
            return Ok(Export::Waiting(format!(
                "redis snapshot {id} is {}; {} of {expected} files in s3://{bucket}",
                source.status,
                files.len()
            )));
        }
        if !files.is_empty() {
            return Err(Error::fatal(format!(
                "the export of redis snapshot {id} ended with {} of its {expected} files in s3://{bucket}; the bucket keeps them for {} days and the next backup exports its own snapshot",
                files.len(),
                apiary_core::outputs::EXPORT_STAGING_DAYS
            )));
        }
        if !create && deps.emulator {
            return Ok(Export::Reported(not_emulated(bucket)));
        }
        // Nothing there and the snapshot available: not started yet, or an export that
        // ended without writing (ElastiCache reports most refusals when asked, the rest
        // only by not writing): ask (again).
        return start_export(deps, step, &id, bucket).await;
    }
    // The files are there: give them the snapshot's tags and how many files make it
    // whole (replication carries tags, and the DR region's pruning and ledger go by
    // them), then follow their replication.
    let mut tags: std::collections::BTreeMap<String, String> = source
        .tags
        .into_iter()
        // Only Apiary's own tags: S3 allows ten per object, and the customer's tags on
        // the snapshot are not this copy's business.
        .filter(|(k, _)| k.starts_with("apiary:"))
        .collect();
    tags.insert(engine::TAG_PARTS.to_owned(), expected.to_string());
    let mut waiting = Vec::new();
    for key in &files {
        let current = engine::object_tags(&deps.s3, bucket, key)
            .await
            .map_err(|e| not_ours(e, bucket, key))?;
        if !tags.iter().all(|(k, v)| current.get(k) == Some(v)) {
            put_tags(&deps.s3, bucket, key, &tags)
                .await
                .map_err(|e| not_ours(e, bucket, key))?;
        }
        let head = deps
            .s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                not_ours(
                    Error::aws(format!("HeadObject s3://{bucket}/{key}"), e),
                    bucket,
                    key,
                )
            })?;
        match head.replication_status() {
            Some(ReplicationStatus::Failed) => {
                return Err(Error::fatal(format!(
                    "S3 could not replicate s3://{bucket}/{key} to s3://{} in {} (replication status FAILED): check the role {} and that the DR bucket is versioned; the next backup exports again",
                    exports.dr,
                    exports.dr_region,
                    step.names.resource("s3-replication")
                )));
            }
            None => {
                return Err(Error::fatal(format!(
                    "s3://{bucket}/{key} has no replication status, so S3 will not replicate it to {}: either the bucket's replication rule is missing (provision puts it back) or the file is not the account's (ElastiCache wrote it without giving the bucket owner full control)",
                    exports.dr_region
                )));
            }
            Some(status) => waiting.push(format!(
                "s3://{bucket}/{key} is replicating to {} ({})",
                exports.dr_region,
                status.as_str()
            )),
        }
    }
    if waiting.is_empty() {
        waiting.push(format!(
            "the replica of redis snapshot {id} in s3://{} is not whole or has not received its tags yet",
            exports.dr
        ));
    }
    Ok(Export::Waiting(waiting.join("; ")))
}

/// The part size of a multipart copy (S3 allows 5 MiB to 5 GiB, and 10,000 parts).
const COPY_PART: i64 = 1024 * 1024 * 1024;
/// The largest file copied by one CopyObject; a larger one is copied in parts. S3 would
/// take up to 5 GiB in one call, but S3 answers a copy only when it is done, and the
/// SDK gives up on an attempt after 30 s (`apiary_core::aws::load`): a copy of several
/// GiB would time out (and be retried) while S3 is still copying. One part's worth
/// keeps each call well inside that.
const COPY_LIMIT: i64 = COPY_PART;
/// Parts copied per poll: each is a server-side copy of up to 1 GiB, and a poll must
/// end well within the function's timeout; the next poll resumes the upload.
const PARTS_PER_POLL: usize = 3;

/// Re-encrypts, in place, the replica `id`'s files in the DR bucket that are not under
/// the DR key `key` (SSE-KMS, with an S3 Bucket Key), keeping their tags, then deletes
/// each file's older versions (the SSE-S3 copy S3 replicated). One file, or a few parts
/// of one, per poll, so that a poll ends well within the function's timeout. Returns what
/// is still being done (nothing: every file is under the DR key, and only that version
/// remains). A crash anywhere is finished by a later poll: a copy not made is made, an
/// upload in progress is resumed, an SSE-S3 version left is deleted.
async fn encrypt_replica(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    id: &str,
    key: &str,
    step: &StepContext<'_, Action>,
) -> Result<Vec<String>> {
    use aws_sdk_s3::types::ServerSideEncryption;
    for file in &export_files(s3, bucket, id).await? {
        let file = file.as_str();
        let head = s3
            .head_object()
            .bucket(bucket)
            .key(file)
            .send()
            .await
            .map_err(|e| Error::aws(format!("HeadObject s3://{bucket}/{file}"), e))?;
        let under_key = head.server_side_encryption() == Some(&ServerSideEncryption::AwsKms)
            && head.ssekms_key_id() == Some(key);
        if under_key {
            delete_older_versions(s3, bucket, file, head.version_id()).await?;
            continue;
        }
        // Keep the time S3 replicated the file (the copy gives it a new one): the
        // replica's age, for pruning and the RPO, counts from it.
        let tags = engine::object_tags(s3, bucket, file).await?;
        if !tags.contains_key(engine::TAG_REPLICATED_AT)
            && let Some(at) = head.last_modified()
        {
            let mut tags = tags;
            tags.insert(
                engine::TAG_REPLICATED_AT.to_owned(),
                at.fmt(aws_smithy_types::date_time::Format::DateTime)
                    .map_err(|e| Error::fatal(e.to_string()))?,
            );
            put_tags(s3, bucket, file, &tags).await?;
        }
        let size = head.content_length().unwrap_or_default();
        if size > COPY_LIMIT {
            let (done, total) = copy_in_parts(s3, bucket, file, size, key).await?;
            return Ok(vec![format!(
                "s3://{bucket}/{file}: {done} of {total} parts copied under the DR key"
            )]);
        }
        s3.copy_object()
            .bucket(bucket)
            .key(file)
            .copy_source(copy_source(bucket, file))
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(key)
            .bucket_key_enabled(true)
            .send()
            .await
            .map_err(|e| {
                Error::aws(
                    format!("CopyObject s3://{bucket}/{file} onto itself under {key}"),
                    e,
                )
            })?;
        step.log
            .created(&format!("s3://{bucket}/{file} (under {key})"));
        return Ok(vec![format!(
            "s3://{bucket}/{file} re-encrypted with the DR key; its SSE-S3 version goes next"
        )]);
    }
    Ok(Vec::new())
}

/// The export files of snapshot `id` in `bucket` (`<id>-NNNN.rdb`, one per shard).
async fn export_files(s3: &aws_sdk_s3::Client, bucket: &str, id: &str) -> Result<Vec<String>> {
    let prefix = format!("{id}-");
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&prefix)
        .send()
        .await
        .map_err(|e| Error::aws(format!("ListObjectsV2 s3://{bucket}/{prefix}"), e))?;
    Ok(listed
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .filter(|k| engine::export_snapshot_id(k) == Some(id))
        .map(str::to_owned)
        .collect())
}

/// `bucket/key` as CopyObject's source (the key URL-encoded, `/` kept).
fn copy_source(bucket: &str, key: &str) -> String {
    let encoded: Vec<String> = key.split('/').map(apiary_core::sigv4::uri_encode).collect();
    format!("{bucket}/{}", encoded.join("/"))
}

/// Up to [`PARTS_PER_POLL`] more parts of the copy onto itself of a file over
/// [`COPY_LIMIT`], resuming the upload an earlier poll started (found by
/// ListMultipartUploads, its parts by ListParts), completed once every part is there.
/// Returns (parts copied, parts in all). A part that fails aborts the upload, so nothing
/// half-made stays behind, and fails the step naming the part.
async fn copy_in_parts(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    file: &str,
    size: i64,
    key: &str,
) -> Result<(usize, usize)> {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, ServerSideEncryption};
    let total = usize::try_from((size + COPY_PART - 1) / COPY_PART).unwrap_or(usize::MAX);
    let uploads = s3
        .list_multipart_uploads()
        .bucket(bucket)
        .prefix(file)
        .send()
        .await
        .map_err(|e| Error::aws(format!("ListMultipartUploads s3://{bucket}/{file}"), e))?;
    let started = uploads
        .uploads()
        .iter()
        .find(|u| u.key() == Some(file))
        .and_then(|u| u.upload_id())
        .map(str::to_owned);
    let upload_id = match started {
        Some(id) => id,
        None => {
            let tags = engine::object_tags(s3, bucket, file).await?;
            let tagging = tags
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        apiary_core::sigv4::uri_encode(k),
                        apiary_core::sigv4::uri_encode(v)
                    )
                })
                .collect::<Vec<_>>()
                .join("&");
            s3.create_multipart_upload()
                .bucket(bucket)
                .key(file)
                .server_side_encryption(ServerSideEncryption::AwsKms)
                .ssekms_key_id(key)
                .bucket_key_enabled(true)
                .tagging(tagging)
                .send()
                .await
                .map_err(|e| Error::aws(format!("CreateMultipartUpload s3://{bucket}/{file}"), e))?
                .upload_id()
                .ok_or_else(|| {
                    Error::fatal(format!(
                        "CreateMultipartUpload s3://{bucket}/{file}: no upload id"
                    ))
                })?
                .to_owned()
        }
    };
    let copied = async {
        let mut parts: std::collections::BTreeMap<i32, Option<String>> = Default::default();
        let mut listed = s3
            .list_parts()
            .bucket(bucket)
            .key(file)
            .upload_id(&upload_id)
            .into_paginator()
            .send();
        while let Some(page) = listed
            .try_next()
            .await
            .map_err(|e| Error::aws(format!("ListParts s3://{bucket}/{file}"), e))?
        {
            for part in page.parts() {
                if let Some(n) = part.part_number() {
                    parts.insert(n, part.e_tag().map(str::to_owned));
                }
            }
        }
        let mut this_poll = 0;
        for number in 1..=i32::try_from(total).unwrap_or(i32::MAX) {
            if parts.contains_key(&number) {
                continue;
            }
            if this_poll == PARTS_PER_POLL {
                return Ok(parts.len());
            }
            let start = i64::from(number - 1) * COPY_PART;
            let end = (start + COPY_PART).min(size) - 1;
            let part = s3
                .upload_part_copy()
                .bucket(bucket)
                .key(file)
                .upload_id(&upload_id)
                .part_number(number)
                .copy_source(copy_source(bucket, file))
                .copy_source_range(format!("bytes={start}-{end}"))
                .send()
                .await
                .map_err(|e| {
                    Error::aws(
                        format!("UploadPartCopy s3://{bucket}/{file} part {number}"),
                        e,
                    )
                })?;
            parts.insert(
                number,
                part.copy_part_result()
                    .and_then(|r| r.e_tag())
                    .map(str::to_owned),
            );
            this_poll += 1;
        }
        let completed: Vec<CompletedPart> = parts
            .iter()
            .map(|(n, e_tag)| {
                CompletedPart::builder()
                    .part_number(*n)
                    .set_e_tag(e_tag.clone())
                    .build()
            })
            .collect();
        s3.complete_multipart_upload()
            .bucket(bucket)
            .key(file)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| Error::aws(format!("CompleteMultipartUpload s3://{bucket}/{file}"), e))?;
        Ok::<usize, Error>(parts.len())
    }
    .await;
    match copied {
        Ok(done) => Ok((done, total)),
        Err(err) => {
            // Best effort: the error is what the step reports.
            let _ = s3
                .abort_multipart_upload()
                .bucket(bucket)
                .key(file)
                .upload_id(&upload_id)
                .send()
                .await;
            Err(err)
        }
    }
}

/// Deletes the versions of `file` older than `keep` (the one under the DR key), only
/// while `keep` is the newest: a version written after it (a replication, an overlapping
/// poll) is never touched.
async fn delete_older_versions(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    file: &str,
    keep: Option<&str>,
) -> Result<()> {
    let Some(keep) = keep else {
        return Ok(());
    };
    let versions = s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(file)
        .send()
        .await
        .map_err(|e| Error::aws(format!("ListObjectVersions s3://{bucket}/{file}"), e))?;
    let own: Vec<_> = versions
        .versions()
        .iter()
        .filter(|v| v.key() == Some(file))
        .collect();
    let Some(kept) = own.iter().find(|v| v.version_id() == Some(keep)) else {
        return Ok(());
    };
    if kept.is_latest() != Some(true) {
        return Ok(());
    }
    for version in &own {
        let Some(v) = version.version_id() else {
            continue;
        };
        let older = match (version.last_modified(), kept.last_modified()) {
            (Some(a), Some(b)) => a <= b,
            _ => true,
        };
        if v == keep || version.is_latest() == Some(true) || !older {
            continue;
        }
        s3.delete_object()
            .bucket(bucket)
            .key(file)
            .version_id(v)
            .send()
            .await
            .map_err(|e| {
                Error::aws(
                    format!("DeleteObject s3://{bucket}/{file} version {v} (the SSE-S3 copy)"),
                    e,
                )
            })?;
    }
    Ok(())
}

/// An access refusal on an exported file says what it most likely means.
fn not_ours(err: Error, bucket: &str, key: &str) -> Error {
    match &err {
        Error::Aws { code, .. } if code.as_deref() == Some("AccessDenied") => {
            Error::fatal(format!(
                "s3://{bucket}/{key} is not readable by this account: ElastiCache wrote it without giving the bucket owner full control, so S3 will not replicate it either ({err})"
            ))
        }
        _ => err,
    }
}

/// Asks ElastiCache to export snapshot `id` into `bucket`.
async fn start_export(
    deps: &Deps,
    step: &StepContext<'_, Action>,
    id: &str,
    bucket: &str,
) -> Result<Export> {
    let started = deps
        .elasticache
        .copy_snapshot()
        .source_snapshot_name(id)
        .target_snapshot_name(id)
        .target_bucket(bucket)
        .send()
        .await;
    match started {
        Ok(_) => step.log.created(&format!("s3://{bucket}/{id}")),
        // Started by an earlier attempt whose answer was lost: as a snapshot of that
        // name, or as files already in the bucket.
        Err(e)
            if e.as_service_error().is_some_and(|e| {
                e.is_snapshot_already_exists_fault()
                    || aws_sdk_elasticache::error::ProvideErrorMetadata::message(e)
                        .is_some_and(|m| m.contains("already contains an object"))
            }) => {}
        // The emulator answers an operation it lacks with an HTML page, not an AWS error.
        Err(e)
            if deps.emulator
                && e.as_service_error().is_none_or(|e| {
                    aws_sdk_elasticache::error::ProvideErrorMetadata::code(e).is_none()
                }) =>
        {
            tracing::warn!(snapshot = %id, "ElastiCache CopySnapshot is not emulated here");
            return Ok(Export::Reported(not_emulated(bucket)));
        }
        Err(e) => {
            return Err(Error::aws_transient_if(
                format!("CopySnapshot {id} to s3://{bucket}"),
                e,
                |e| e.is_invalid_snapshot_state_fault(),
            ));
        }
    }
    Ok(Export::Waiting(format!(
        "redis snapshot {id} is being exported to s3://{bucket}"
    )))
}

fn not_emulated(bucket: &str) -> Value {
    json!({
        "exported": false, "emulated": false, "bucket": bucket,
        "reason": "the local emulator does not implement ElastiCache CopySnapshot (export to S3)"
    })
}

async fn put_tags(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    tags: &std::collections::BTreeMap<String, String>,
) -> Result<()> {
    let set = tags
        .iter()
        .map(|(k, v)| {
            aws_sdk_s3::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
                .map_err(|e| Error::fatal(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    s3.put_object_tagging()
        .bucket(bucket)
        .key(key)
        .tagging(
            aws_sdk_s3::types::Tagging::builder()
                .set_tag_set(Some(set))
                .build()
                .map_err(|e| Error::fatal(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| Error::aws(format!("PutObjectTagging s3://{bucket}/{key}"), e))?;
    Ok(())
}

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
