//! The artifact bucket of one region: made if missing, then set up so that other
//! accounts can read releases and nothing else.

use std::time::Duration;

use anyhow::{Context, bail};
use apiary_core::error::sentence;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, ObjectOwnership,
    OwnershipControls, OwnershipControlsRule, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
};

use super::policy::{Readers, bucket_policy};

/// Every key under `prefix` (ListObjectsV2, all pages).
pub async fn keys_under(s3: &Client, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| anyhow::anyhow!("listing s3://{bucket}/{prefix}: {}", sentence(&e)))?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
    }
    Ok(keys)
}

/// Makes the bucket in `region` unless this account already has it.
pub async fn create(s3: &Client, bucket: &str, region: &str) -> anyhow::Result<()> {
    let mut request = s3.create_bucket().bucket(bucket);
    // us-east-1 is the one region that takes no location constraint.
    if region != "us-east-1" {
        request = request.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        );
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(err) => {
            if let Some(service) = err.as_service_error() {
                if service.is_bucket_already_owned_by_you() {
                    return Ok(());
                }
                if service.is_bucket_already_exists() {
                    bail!(
                        "bucket {bucket}: the name belongs to another account (bucket names are \
                         global); choose another --bucket-prefix"
                    );
                }
            }
            bail!("creating bucket {bucket} in {region}: {}", sentence(&err))
        }
    }
}

/// Object ownership, encryption, versioning, Block Public Access and the policy.
///
/// SSE-S3, not SSE-KMS: a reader in another account could not decrypt with the
/// vendor's KMS key. Ownership is enforced so that the policy covers every object.
/// Block Public Access keeps blocking ACLs always; it allows the bucket policy only
/// when the readers are any account (that policy is public in S3's sense), and must be
/// set before the policy, which S3 would refuse otherwise.
pub async fn configure(
    s3: &Client,
    bucket: &str,
    readers: &Readers,
    tls_only: bool,
) -> anyhow::Result<()> {
    let ownership = OwnershipControls::builder()
        .rules(
            OwnershipControlsRule::builder()
                .object_ownership(ObjectOwnership::BucketOwnerEnforced)
                .build()
                .context("ownership rule")?,
        )
        .build()
        .context("ownership controls")?;
    retry_new_bucket(bucket, "PutBucketOwnershipControls", || {
        s3.put_bucket_ownership_controls()
            .bucket(bucket)
            .ownership_controls(ownership.clone())
            .send()
    })
    .await?;

    let encryption = ServerSideEncryptionConfiguration::builder()
        .rules(
            ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(
                    ServerSideEncryptionByDefault::builder()
                        .sse_algorithm(ServerSideEncryption::Aes256)
                        .build()
                        .context("encryption default")?,
                )
                .build(),
        )
        .build()
        .context("encryption configuration")?;
    retry_new_bucket(bucket, "PutBucketEncryption", || {
        s3.put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(encryption.clone())
            .send()
    })
    .await?;

    retry_new_bucket(bucket, "PutBucketVersioning", || {
        s3.put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
    })
    .await?;

    let public = readers.is_public();
    let block = PublicAccessBlockConfiguration::builder()
        .block_public_acls(true)
        .ignore_public_acls(true)
        .block_public_policy(!public)
        .restrict_public_buckets(!public)
        .build();
    retry_new_bucket(bucket, "PutPublicAccessBlock", || {
        s3.put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(block.clone())
            .send()
    })
    .await?;

    let policy = bucket_policy(bucket, readers, tls_only).to_string();
    let put = retry_new_bucket(bucket, "PutBucketPolicy", || {
        s3.put_bucket_policy()
            .bucket(bucket)
            .policy(policy.clone())
            .send()
    })
    .await;
    if let Err(err) = put {
        if public && err.to_string().contains("AccessDenied") {
            bail!(
                "{err}\nS3 Block Public Access of this account (or an organization policy) \
                 refuses public bucket policies. Publish for one AWS Organization with \
                 --organization-id, or allow public bucket policies for this account"
            );
        }
        return Err(err);
    }
    Ok(())
}

/// Runs a bucket call, again after a pause while S3 does not know the bucket yet: a
/// bucket made a moment ago can answer NoSuchBucket for a few seconds.
async fn retry_new_bucket<T, E, F, Fut>(bucket: &str, what: &str, call: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, aws_sdk_s3::error::SdkError<E>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let mut pause = Duration::from_secs(1);
    for attempt in 1.. {
        match call().await {
            Ok(output) => return Ok(output),
            Err(err) if attempt < 5 && err.code() == Some("NoSuchBucket") => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(err) => {
                let code = err.code().unwrap_or("error").to_owned();
                bail!("bucket {bucket}: {what}: {code}: {}", sentence(&err))
            }
        }
    }
    unreachable!("the loop returns")
}
