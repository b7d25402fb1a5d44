//! Step 6c: the buckets, emptied with every object version and delete marker, then
//! deleted; the backups bucket, the Redis export buckets (in both regions) and the
//! access-log bucket that records their access only with `"delete_backups": true`. CloudTrail's trail writes into the logs bucket, so it
//! goes first.
//!
//! A bucket can hold millions of objects: one call deletes at most [`MAX_BATCHES`]
//! batches of 1,000 and reports the bucket as pending, and the workflow calls again.

use apiary_core::{Error, Result};
use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use crate::Work;

/// Batches of 1,000 keys one call deletes before it hands back to the workflow.
pub const MAX_BATCHES: usize = 20;

/// The storage layer's purposes (functions/storage) and its access-log bucket.
const PURPOSES: [&str; 4] = ["logs", "metrics", "config", "backups"];
const ACCESS_LOGS: &str = "access";
const BACKUPS: &str = "backups";
/// The Redis export buckets (storage's `exports`): one in the deployment's region, its
/// replica twin in `backup.dr_region`. They hold backups, so they are kept like the
/// backups bucket.
const EXPORTS: &str = "exports";

/// One bucket to delete or keep, with the client of its region.
struct Bucket {
    purpose: &'static str,
    name: String,
    s3: aws_sdk_s3::Client,
}

pub async fn run(work: &mut Work<'_>) -> Result<Vec<String>> {
    trail(work).await?;
    let mut pending = Vec::new();
    let keep_backups = !work.input.delete_backups;
    for bucket in buckets(work).await? {
        let Bucket { purpose, name, s3 } = bucket;
        let bucket = name;
        if keep_backups && [BACKUPS, EXPORTS, ACCESS_LOGS].contains(&purpose) {
            let why = match purpose {
                BACKUPS => {
                    "the backups bucket is kept unless the input says \"delete_backups\": true"
                }
                EXPORTS => {
                    "holds exported Redis backups: kept unless the input says \"delete_backups\": true"
                }
                _ => "receives the kept backups bucket's access logs",
            };
            if bucket_tagged(work, &s3, &bucket).await? == Some(true) {
                let arn = apiary_core::aws::arn(
                    apiary_core::aws::partition(&work.step.spec.region),
                    "s3",
                    "",
                    "",
                    &bucket,
                );
                // The backups bucket uses the s3 key; the access-log and export buckets
                // SSE-S3 (functions/storage), so keeping them keeps no key.
                if purpose == BACKUPS {
                    work.report.kept("s3:bucket", &bucket, Some(&arn), why);
                } else {
                    work.report
                        .kept_keyless("s3:bucket", &bucket, Some(&arn), why);
                }
            }
            continue;
        }
        match bucket_tagged(work, &s3, &bucket).await? {
            None => continue,
            Some(false) => {
                work.report.note(format!(
                    "bucket {bucket} is not tagged as this deployment's: left alone"
                ));
                continue;
            }
            Some(true) => {}
        }
        if !empty(work, &s3, &bucket).await? {
            pending.push(format!("bucket {bucket} is still being emptied"));
            continue;
        }
        match s3.delete_bucket().bucket(&bucket).send().await {
            Ok(_) => work.report.removed("s3:bucket", &bucket),
            Err(err) if err.code() == Some("NoSuchBucket") => {
                work.report.removed("s3:bucket", &bucket)
            }
            // A writer (log delivery) added an object since: empty it again next call.
            Err(err) if err.code() == Some("BucketNotEmpty") => {
                pending.push(format!("bucket {bucket} received new objects"));
            }
            Err(err) => return Err(Error::aws(format!("DeleteBucket {bucket}"), err)),
        }
    }
    Ok(pending)
}

use aws_sdk_s3::error::ProvideErrorMetadata;

/// Every bucket the storage layer makes: by the names it recorded, else by the names it
/// gives them (a run that failed before recording still made them).
async fn buckets(work: &Work<'_>) -> Result<Vec<Bucket>> {
    let recorded = work.step.layers.storage.clone().unwrap_or_default();
    let account = account(work).await?;
    let region = work.step.spec.region.clone();
    let names = &work.step.names;
    let here = |purpose: &'static str, name: String| Bucket {
        purpose,
        name,
        s3: work.deps.s3.clone(),
    };
    let mut out: Vec<Bucket> = PURPOSES
        .into_iter()
        .map(|purpose| {
            let bucket = recorded
                .buckets
                .get(purpose)
                .cloned()
                .unwrap_or_else(|| names.bucket(purpose, &account, &region));
            here(purpose, bucket)
        })
        .collect();
    let access = Some(recorded.access_logs_bucket.clone())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| names.bucket(ACCESS_LOGS, &account, &region));
    out.push(here(ACCESS_LOGS, access));
    let exports = recorded.exports.clone();
    out.push(here(
        EXPORTS,
        exports
            .as_ref()
            .map(|e| e.primary.clone())
            .unwrap_or_else(|| names.bucket(EXPORTS, &account, &region)),
    ));
    let dr = match exports {
        Some(e) => Some((e.dr_region, e.dr)),
        None => work.step.spec.dr_region().map(|r| {
            let name = names.bucket(EXPORTS, &account, r);
            (r.to_owned(), name)
        }),
    };
    if let Some((dr_region, name)) = dr {
        out.push(Bucket {
            purpose: EXPORTS,
            name,
            s3: (work.deps.regional)(&dr_region).s3,
        });
    }
    Ok(out)
}

async fn account(work: &Work<'_>) -> Result<String> {
    work.deps
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| Error::aws("GetCallerIdentity", e))?
        .account
        .ok_or_else(|| Error::fatal("GetCallerIdentity returned no account"))
}

/// `None`: no such bucket; else whether it is tagged as this deployment's.
async fn bucket_tagged(
    work: &Work<'_>,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<Option<bool>> {
    match s3.get_bucket_tagging().bucket(bucket).send().await {
        Ok(out) => Ok(Some(
            work.owner
                .tagged(out.tag_set().iter().map(|t| (t.key(), t.value()))),
        )),
        Err(err) if err.code() == Some("NoSuchBucket") => Ok(None),
        Err(err) if err.code() == Some("NoSuchTagSet") => Ok(Some(false)),
        Err(err) => Err(Error::aws(format!("GetBucketTagging {bucket}"), err)),
    }
}

/// Deletes up to [`MAX_BATCHES`] batches of versions; true when the bucket is empty.
async fn empty(work: &Work<'_>, s3: &aws_sdk_s3::Client, bucket: &str) -> Result<bool> {
    // The TLS-only policy stays until the objects are gone on AWS (the calls here use
    // TLS); the emulator answers plain HTTP, which that policy refuses, so there it goes
    // first. The bucket is deleted right after either way.
    if work.deps.emulator {
        match s3.delete_bucket_policy().bucket(bucket).send().await {
            Ok(_) => {}
            Err(err) if err.code() == Some("NoSuchBucket") => return Ok(true),
            Err(err) => return Err(Error::aws(format!("DeleteBucketPolicy {bucket}"), err)),
        }
    }
    for _ in 0..MAX_BATCHES {
        let listed = match s3
            .list_object_versions()
            .bucket(bucket)
            .max_keys(1000)
            .send()
            .await
        {
            Ok(out) => out,
            Err(err) if err.code() == Some("NoSuchBucket") => return Ok(true),
            Err(err) => return Err(Error::aws(format!("ListObjectVersions {bucket}"), err)),
        };
        let mut objects = Vec::new();
        for version in listed.versions() {
            objects.push(identifier(version.key(), version.version_id())?);
        }
        for marker in listed.delete_markers() {
            objects.push(identifier(marker.key(), marker.version_id())?);
        }
        if objects.is_empty() {
            return Ok(true);
        }
        let count = objects.len();
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| Error::fatal(format!("DeleteObjects {bucket}: {e}")))?;
        let out = s3
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| Error::aws(format!("DeleteObjects {bucket}"), e))?;
        if let Some(failed) = out.errors().first() {
            return Err(Error::Aws {
                operation: format!("DeleteObjects {bucket}"),
                code: failed.code().map(str::to_owned),
                message: format!(
                    "{} of {count} objects were not deleted, e.g. {}: {}",
                    out.errors().len(),
                    failed.key().unwrap_or_default(),
                    failed.message().unwrap_or_default()
                ),
                retryable: failed.code() == Some("InternalError")
                    || failed.code() == Some("SlowDown"),
            });
        }
        tracing::info!(bucket, count, "deleted object versions");
    }
    Ok(false)
}

fn identifier(key: Option<&str>, version: Option<&str>) -> Result<ObjectIdentifier> {
    ObjectIdentifier::builder()
        .key(key.unwrap_or_default())
        .set_version_id(version.map(str::to_owned))
        .build()
        .map_err(|e| Error::fatal(format!("object identifier: {e}")))
}

/// The storage layer's CloudTrail trail (it writes into the logs bucket).
async fn trail(work: &mut Work<'_>) -> Result<()> {
    let name = work.step.names.resource("trail");
    match work.deps.cloudtrail.delete_trail().name(&name).send().await {
        Ok(_) => work.report.removed("cloudtrail:trail", &name),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_trail_not_found_exception()) => {}
        Err(err) => return Err(Error::aws(format!("DeleteTrail {name}"), err)),
    }
    Ok(())
}
