//! One bucket: found or created, tagged, and configured.

use apiary_core::naming::{Layer, TAG_DEPLOYMENT};
use apiary_core::{Error, Result};
use aws_sdk_s3::error::{BuildError, ProvideErrorMetadata};
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, BucketLocationConstraint,
    BucketLoggingStatus, BucketVersioningStatus, CreateBucketConfiguration, ExpirationStatus,
    LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, LoggingEnabled,
    NoncurrentVersionExpiration, ObjectOwnership, OwnershipControls, OwnershipControlsRule,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
    VersioningConfiguration,
};

use crate::exports::{DR_EXPORTS, EXPORTS, STAGING_DAYS};
use crate::{
    ABORT_MULTIPART_DAYS, ACCESS_LOG_RETENTION_DAYS, ACCESS_LOGS, EXPIRING, Run, access_log_prefix,
};

/// ACLs off everywhere but in the Redis export bucket, whose grant to ElastiCache is an
/// ACL in the regions enabled by default: there objects written with
/// `bucket-owner-full-control` become the account's.
pub fn ownership(purpose: &str) -> ObjectOwnership {
    if purpose == EXPORTS {
        ObjectOwnership::BucketOwnerPreferred
    } else {
        ObjectOwnership::BucketOwnerEnforced
    }
}

fn built<T>(result: std::result::Result<T, BuildError>) -> Result<T> {
    result.map_err(|e| Error::fatal(e.to_string()))
}

/// Finds the bucket or creates it. HeadBucket names this account as the expected owner,
/// so a bucket of that name in another account answers 403 and is a conflict (bucket
/// names are global; Apiary cannot use one it does not own).
pub async fn ensure_exists(run: &Run<'_>, purpose: &str, name: &str) -> Result<()> {
    let s3 = &run.deps.s3;
    let head = s3
        .head_bucket()
        .bucket(name)
        .expected_bucket_owner(&run.account)
        .send()
        .await;
    match head {
        Ok(_) => {}
        Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => {
            create(run, purpose, name).await?;
        }
        Err(err)
            if err
                .raw_response()
                .is_some_and(|r| r.status().as_u16() == 403) =>
        {
            return Err(Error::Conflict(format!(
                "S3 bucket {name} (the {purpose} bucket of deployment {}) already exists and is owned by another account; bucket names are global, so this deployment cannot use it",
                run.names.deployment()
            )));
        }
        Err(err) => return Err(Error::aws(format!("HeadBucket {name}"), err)),
    }
    ensure_tags(run, name).await
}

async fn create(run: &Run<'_>, purpose: &str, name: &str) -> Result<()> {
    let mut request = run
        .deps
        .s3
        .create_bucket()
        .bucket(name)
        .object_ownership(ownership(purpose));
    // us-east-1 is the one region that rejects an explicit location constraint; every
    // other region requires it.
    if run.region != "us-east-1" {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(run.region.as_str()))
                .build(),
        );
    }
    match request.send().await {
        Ok(_) => {
            run.log.created(name);
            Ok(())
        }
        // A concurrent run of this deployment made it between HeadBucket and now.
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_bucket_already_owned_by_you()) =>
        {
            Ok(())
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_bucket_already_exists()) =>
        {
            Err(Error::Conflict(format!(
                "S3 bucket {name} was just created by another account; bucket names are global"
            )))
        }
        Err(err) => Err(Error::aws(format!("CreateBucket {name}"), err)),
    }
}

/// Adds the layer's tags, keeping any the customer added (PutBucketTagging replaces the
/// whole set). A bucket tagged for another deployment is not this one's to change.
async fn ensure_tags(run: &Run<'_>, name: &str) -> Result<()> {
    let s3 = &run.deps.s3;
    let existing: Vec<Tag> = match s3.get_bucket_tagging().bucket(name).send().await {
        Ok(out) => out.tag_set().to_vec(),
        Err(err) if err.as_service_error().and_then(|e| e.code()) == Some("NoSuchTagSet") => {
            Vec::new()
        }
        Err(err) => return Err(Error::aws(format!("GetBucketTagging {name}"), err)),
    };
    if let Some(other) = existing
        .iter()
        .find(|t| t.key() == TAG_DEPLOYMENT && t.value() != run.names.deployment())
    {
        return Err(Error::Conflict(format!(
            "S3 bucket {name} is tagged {TAG_DEPLOYMENT}={}, not {}",
            other.value(),
            run.names.deployment()
        )));
    }
    let mut tags = existing.clone();
    for (key, value) in run.names.tags(Layer::Storage) {
        if !existing
            .iter()
            .any(|t| t.key() == key && t.value() == value)
        {
            tags.retain(|t| t.key() != key);
            tags.push(built(Tag::builder().key(key).value(value).build())?);
        }
    }
    if tags == existing {
        return Ok(());
    }
    s3.put_bucket_tagging()
        .bucket(name)
        .tagging(built(Tagging::builder().set_tag_set(Some(tags)).build())?)
        .send()
        .await
        .map_err(|e| Error::aws(format!("PutBucketTagging {name}"), e))?;
    Ok(())
}

/// Applies ownership, public access block, encryption, versioning and lifecycle. Each PUT
/// sets the whole setting to the same value every run.
pub async fn configure(run: &Run<'_>, purpose: &str, name: &str) -> Result<()> {
    let s3 = &run.deps.s3;
    s3.put_bucket_ownership_controls()
        .bucket(name)
        .ownership_controls(built(
            OwnershipControls::builder()
                .rules(built(
                    OwnershipControlsRule::builder()
                        .object_ownership(ownership(purpose))
                        .build(),
                )?)
                .build(),
        )?)
        .send()
        .await
        .map_err(|e| Error::aws(format!("PutBucketOwnershipControls {name}"), e))?;

    s3.put_public_access_block()
        .bucket(name)
        .public_access_block_configuration(
            PublicAccessBlockConfiguration::builder()
                .block_public_acls(true)
                .ignore_public_acls(true)
                .block_public_policy(true)
                .restrict_public_buckets(true)
                .build(),
        )
        .send()
        .await
        .map_err(|e| Error::aws(format!("PutPublicAccessBlock {name}"), e))?;

    s3.put_bucket_encryption()
        .bucket(name)
        .server_side_encryption_configuration(built(
            ServerSideEncryptionConfiguration::builder()
                .rules(encryption_rule(run, purpose)?)
                .build(),
        )?)
        .send()
        .await
        .map_err(|e| Error::aws(format!("PutBucketEncryption {name}"), e))?;

    s3.put_bucket_versioning()
        .bucket(name)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(|e| Error::aws(format!("PutBucketVersioning {name}"), e))?;

    s3.put_bucket_lifecycle_configuration()
        .bucket(name)
        .lifecycle_configuration(built(
            BucketLifecycleConfiguration::builder()
                .rules(lifecycle_rule(purpose, retention_days(run, purpose))?)
                .build(),
        )?)
        .send()
        .await
        .map_err(|e| Error::aws(format!("PutBucketLifecycleConfiguration {name}"), e))?;
    Ok(())
}

/// SSE-KMS with the deployment's s3 key for the data buckets; SSE-S3 for the access-logs
/// bucket, since S3 server access logs cannot be delivered into an SSE-KMS bucket, and
/// for the Redis export buckets, which ElastiCache writes as its own principal (see
/// [`crate::exports`]).
pub fn encryption_rule(run: &Run<'_>, purpose: &str) -> Result<ServerSideEncryptionRule> {
    if [ACCESS_LOGS, EXPORTS, DR_EXPORTS].contains(&purpose) {
        return Ok(ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(built(
                ServerSideEncryptionByDefault::builder()
                    .sse_algorithm(ServerSideEncryption::Aes256)
                    .build(),
            )?)
            .build());
    }
    Ok(ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(built(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::AwsKms)
                .kms_master_key_id(&run.key_arn)
                .build(),
        )?)
        // Bucket keys cut KMS requests (and cost) by orders of magnitude.
        .bucket_key_enabled(true)
        .build())
}

/// The access logs keep their own retention, the staged Redis exports theirs; the data
/// buckets follow the spec (in the DR export bucket: how long an overwritten or deleted
/// version stays; the replicas themselves are pruned by the backup workflow).
fn retention_days(run: &Run<'_>, purpose: &str) -> i32 {
    match purpose {
        ACCESS_LOGS => ACCESS_LOG_RETENTION_DAYS,
        EXPORTS => STAGING_DAYS,
        _ => run.retention_days,
    }
}

/// The retention rule: in metrics, logs, access logs and the staged Redis exports current
/// objects expire after the retention; in every bucket old versions expire after it too,
/// and stale multipart uploads go.
pub fn lifecycle_rule(purpose: &str, retention_days: i32) -> Result<LifecycleRule> {
    let mut rule = LifecycleRule::builder()
        .id("apiary-retention")
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .noncurrent_version_expiration(
            NoncurrentVersionExpiration::builder()
                .noncurrent_days(retention_days)
                .build(),
        )
        .abort_incomplete_multipart_upload(
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(ABORT_MULTIPART_DAYS)
                .build(),
        );
    if EXPIRING.contains(&purpose) || [ACCESS_LOGS, EXPORTS].contains(&purpose) {
        rule = rule.expiration(LifecycleExpiration::builder().days(retention_days).build());
    }
    built(rule.build())
}

/// Server access logs of `name` into the access-logs bucket under `s3-access/<name>/`.
pub async fn put_logging(run: &Run<'_>, name: &str, logs: &str) -> Result<()> {
    run.deps
        .s3
        .put_bucket_logging()
        .bucket(name)
        .bucket_logging_status(
            BucketLoggingStatus::builder()
                .logging_enabled(built(
                    LoggingEnabled::builder()
                        .target_bucket(logs)
                        .target_prefix(access_log_prefix(name))
                        .build(),
                )?)
                .build(),
        )
        .send()
        .await
        .map_err(|e| Error::aws(format!("PutBucketLogging {name}"), e))?;
    Ok(())
}

pub async fn put_policy(run: &Run<'_>, name: &str, policy: &str) -> Result<()> {
    run.deps
        .s3
        .put_bucket_policy()
        .bucket(name)
        .policy(policy)
        .send()
        .await
        .map_err(|e| Error::aws(format!("PutBucketPolicy {name}"), e))?;
    Ok(())
}
