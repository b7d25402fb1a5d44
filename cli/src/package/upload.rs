//! The artifact bucket: where it is, and putting the artifacts there.
//!
//! Every object is put with a SHA-256 checksum that S3 verifies and keeps. Before a put,
//! HeadObject asks for that checksum: an object that already holds the same bytes is left
//! alone, so packaging the same build again uploads nothing.

use std::io::Write;

use anyhow::{Context, bail};
use apiary_core::error::sentence;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
use sha2::{Digest, Sha256};

/// Fails unless `bucket` exists and is in `region`: Lambda reads function code only
/// from a bucket in the function's own region.
pub async fn check_bucket(s3: &Client, bucket: &str, region: &str) -> anyhow::Result<()> {
    let Some(location) = bucket_region(s3, bucket, region).await? else {
        bail!(
            "bucket {bucket} does not exist (or is not visible to these credentials); \
             create it in {region} first, e.g. `aws s3 mb s3://{bucket} --region {region}`"
        );
    };
    if location != region {
        bail!(
            "bucket {bucket} is in {location}, not {region}: Lambda reads function code only \
             from a bucket in its own region; package to a bucket in {region}, or pass \
             --region {location} to deploy the stack there"
        );
    }
    Ok(())
}

/// The region `bucket` is in, or `None` when there is no such bucket. A bucket that
/// exists but refuses these credentials (another account's, since bucket names are
/// global) is an error that says so. `region` is the one the client asks in.
pub async fn bucket_region(
    s3: &Client,
    bucket: &str,
    region: &str,
) -> anyhow::Result<Option<String>> {
    match s3.head_bucket().bucket(bucket).send().await {
        Ok(output) => Ok(Some(match output.bucket_region() {
            Some(found) => found.to_owned(),
            None => bucket_location(s3, bucket).await?,
        })),
        Err(err) => {
            // A bucket in another region answers 301 (or 400) with its region in a header.
            let redirected = err
                .raw_response()
                .and_then(|r| r.headers().get("x-amz-bucket-region"))
                .map(str::to_owned);
            if let Some(service) = err.as_service_error()
                && service.is_not_found()
            {
                return Ok(None);
            }
            match (redirected, err.raw_response().map(|r| r.status().as_u16())) {
                (Some(found), _) if found != region => Ok(Some(found)),
                (_, Some(403)) => bail!(
                    "bucket {bucket}: access denied; either another account owns this name \
                     (bucket names are global) or these credentials need s3:ListBucket, \
                     s3:GetObject and s3:PutObject on it"
                ),
                _ => bail!("bucket {bucket}: cannot check it: {}", sentence(&err)),
            }
        }
    }
}

/// GetBucketLocation, for an S3 that does not say the region in HeadBucket.
async fn bucket_location(s3: &Client, bucket: &str) -> anyhow::Result<String> {
    let output = s3
        .get_bucket_location()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("bucket {bucket}: GetBucketLocation: {}", sentence(&e)))?;
    Ok(
        match output
            .location_constraint()
            .map(|c| c.as_str())
            .unwrap_or("")
        {
            "" => "us-east-1".to_owned(),
            "EU" => "eu-west-1".to_owned(),
            other => other.to_owned(),
        },
    )
}

/// One object to put under the prefix.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Key below the prefix: `functions/keys.zip`, `statemachines/provision.asl.json`,
    /// `bootstrap.yaml`.
    pub name: String,
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

impl Artifact {
    pub fn new(name: impl Into<String>, body: Vec<u8>) -> Artifact {
        let name = name.into();
        let content_type = if name.ends_with(".zip") {
            "application/zip"
        } else if name.ends_with(".json") {
            "application/json"
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            "application/yaml"
        } else {
            "application/octet-stream"
        };
        Artifact {
            name,
            body,
            content_type,
        }
    }

    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.body).into()
    }
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Uploaded,
    /// The bucket already held these bytes under this key.
    Unchanged,
}

#[derive(Debug, Clone)]
pub struct Uploaded {
    pub key: String,
    pub size: usize,
    pub outcome: Outcome,
}

/// Puts every artifact under `prefix`, in the order given, logging each.
///
/// A function zip or state machine file already in the bucket under its key with other
/// bytes is refused before anything is put: CloudFormation replaces a function's code or
/// a state machine's definition only when the key changes, so overwriting it would leave
/// a stack update running the old code. (The default, content-hashed prefix never meets
/// this; a reused `--prefix` does.) Only `mutable` (the template, which CloudFormation
/// reads when the stack is created or updated) may be replaced.
pub async fn upload(
    s3: &Client,
    bucket: &str,
    prefix: &str,
    artifacts: &[Artifact],
    mutable: &str,
    log: &mut dyn Write,
) -> anyhow::Result<Vec<Uploaded>> {
    let mut found = Vec::with_capacity(artifacts.len());
    let mut changed = Vec::new();
    for artifact in artifacts {
        let key = format!("{prefix}{}", artifact.name);
        let held = holds(s3, bucket, &key, artifact).await;
        if held == Held::Other && artifact.name != mutable {
            changed.push(format!("s3://{bucket}/{key}"));
        }
        found.push(held);
    }
    if !changed.is_empty() {
        bail!(
            "these objects already hold other bytes, and CloudFormation would not notice \
             new ones under the same key (it replaces code only when the key changes):\n  {}\n\
             package under a new --prefix, or leave --prefix out for a content-hashed one; \
             nothing was uploaded",
            changed.join("\n  ")
        );
    }

    let mut done = Vec::with_capacity(artifacts.len());
    for (artifact, held) in artifacts.iter().zip(found) {
        let key = format!("{prefix}{}", artifact.name);
        let outcome = if held == Held::Same {
            Outcome::Unchanged
        } else {
            put(s3, bucket, &key, artifact, Put::Always).await?;
            Outcome::Uploaded
        };
        done.push(log_upload(log, bucket, key, artifact, outcome)?);
    }
    Ok(done)
}

/// Logs one object's outcome, and returns it.
pub fn log_upload(
    log: &mut dyn Write,
    bucket: &str,
    key: String,
    artifact: &Artifact,
    outcome: Outcome,
) -> anyhow::Result<Uploaded> {
    let verb = match outcome {
        Outcome::Uploaded => "uploaded ",
        Outcome::Unchanged => "unchanged",
    };
    writeln!(
        log,
        "  {verb} s3://{bucket}/{key} ({})",
        human_size(artifact.body.len())
    )
    .context("writing progress")?;
    Ok(Uploaded {
        key,
        size: artifact.body.len(),
        outcome,
    })
}

/// Whether a put may replace an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    Always,
    /// Only if no object has the key (`If-None-Match: *`): S3 refuses the put with 412
    /// when one does, even if it was written a moment ago by someone else.
    IfAbsent,
}

/// Puts one artifact with its SHA-256 checksum, which S3 verifies and keeps.
pub async fn put(
    s3: &Client,
    bucket: &str,
    key: &str,
    artifact: &Artifact,
    mode: Put,
) -> anyhow::Result<()> {
    let mut request = s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type(artifact.content_type)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .body(ByteStream::from(artifact.body.clone()));
    if mode == Put::IfAbsent {
        request = request.if_none_match("*");
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(err)
            if mode == Put::IfAbsent
                && err.raw_response().map(|r| r.status().as_u16()) == Some(412) =>
        {
            bail!(
                "s3://{bucket}/{key} appeared while this run was writing (another run of the \
                 same version?); it was not overwritten"
            )
        }
        Err(err) => bail!("uploading s3://{bucket}/{key}: {}", sentence(&err)),
    }
}

/// What the bucket holds under a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Nothing we can see (no object, or no permission to look): put it.
    Nothing,
    /// Exactly these bytes.
    Same,
    /// An object with other bytes, or one without a SHA-256 to compare.
    Other,
}

/// What `bucket` holds under `key`, compared with `artifact` by SHA-256 and size.
pub async fn holds(s3: &Client, bucket: &str, key: &str, artifact: &Artifact) -> Held {
    let checksum = base64(&artifact.sha256());
    let size = artifact.body.len();
    match s3
        .head_object()
        .bucket(bucket)
        .key(key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
    {
        Ok(head)
            if head.checksum_sha256() == Some(checksum.as_str())
                && head.content_length() == i64::try_from(size).ok() =>
        {
            Held::Same
        }
        Ok(_) => Held::Other,
        Err(_) => Held::Nothing,
    }
}

/// Standard base64 with padding: how S3 writes checksums.
pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `12.3 MB`, `4.0 KB`, `17 B`.
pub fn human_size(bytes: usize) -> String {
    const UNITS: [&str; 3] = ["KB", "MB", "GB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_written_as_s3_reports_them() {
        // SHA-256 of the empty string, as S3 reports it.
        let artifact = Artifact::new("x", Vec::new());
        assert_eq!(
            base64(&artifact.sha256()),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(
            Artifact::new("functions/keys.zip", vec![]).content_type,
            "application/zip"
        );
        assert_eq!(
            Artifact::new("statemachines/provision.asl.json", vec![]).content_type,
            "application/json"
        );
        assert_eq!(
            Artifact::new("bootstrap.yaml", vec![]).content_type,
            "application/yaml"
        );
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_size(17), "17 B");
        assert_eq!(human_size(4096), "4.0 KB");
        assert_eq!(human_size(12_900_000), "12.3 MB");
    }
}
