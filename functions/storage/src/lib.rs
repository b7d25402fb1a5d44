//! The storage layer: S3 buckets for metrics, logs, config and backups.
//!
//! Every bucket: SSE-KMS default encryption with the deployment's s3 key and bucket keys,
//! versioning, all four public access blocks, ACLs disabled (BucketOwnerEnforced), a
//! lifecycle that expires data after the spec's retention, server access logs into the
//! logs bucket, and a bucket policy that refuses any request not made over TLS.
//!
//! `ensure` finds a bucket by its deterministic name (HeadBucket with the expected owner)
//! and re-applies the whole configuration every run: each PUT replaces the setting with
//! the same value, so re-running converges a bucket someone changed by hand.

mod bucket;
pub mod policy;

use std::collections::BTreeMap;
use std::sync::Arc;

use apiary_core::naming::{Layer, Names};
use apiary_core::outputs::StorageOutput;
use apiary_core::step::{Done, Recorder, Step, StepContext, StepLog};
use apiary_core::{Error, Result};
use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

/// The buckets, logs first: the others deliver their access logs into it, and S3 checks
/// the logs bucket's policy when logging is turned on.
pub const PURPOSES: [&str; 4] = ["logs", "metrics", "config", "backups"];
/// Buckets whose current objects expire after the retention (the others keep their
/// current objects and expire only old versions).
pub const EXPIRING: [&str; 2] = ["metrics", "logs"];
pub const LOGS: &str = "logs";
/// Incomplete multipart uploads are aborted after this many days.
pub const ABORT_MULTIPART_DAYS: i32 = 7;

/// Where a bucket's server access logs go inside the logs bucket.
pub fn access_log_prefix(bucket: &str) -> String {
    format!("s3-access/{bucket}/")
}

pub struct Deps {
    pub s3: aws_sdk_s3::Client,
    pub sts: aws_sdk_sts::Client,
    pub recorder: Arc<dyn Recorder>,
}

impl Deps {
    pub fn new(config: &aws_config::SdkConfig, recorder: Arc<dyn Recorder>) -> Self {
        Deps {
            s3: apiary_core::aws::s3_client(config),
            sts: apiary_core::client!(aws_sdk_sts, config),
            recorder,
        }
    }
}

apiary_core::ensure_action!(
    /// What the storage function does.
    StorageAction,
    "storage"
);

/// What the layer returns: the shared [`StorageOutput`] and the key the buckets are
/// encrypted with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StorageReport {
    #[serde(flatten)]
    pub layer: StorageOutput,
    pub kms_key_arn: String,
}

/// One run of the layer: the clients, names and log shared by every part.
pub(crate) struct Run<'a> {
    pub deps: &'a Deps,
    pub names: &'a Names,
    pub log: &'a StepLog<'a>,
    pub account: String,
    pub region: String,
    pub key_arn: String,
    pub retention_days: i32,
}

pub async fn handle(deps: &Deps, event: Value) -> Result<Value> {
    apiary_core::step::run(deps, event).await
}

#[async_trait]
impl Step for Deps {
    const LAYER: Layer = Layer::Storage;
    type Action = StorageAction;
    type Output = StorageReport;

    async fn run(&self, step: &StepContext<'_, StorageAction>) -> Result<Done<StorageReport>> {
        let spec = &step.spec;
        let key_arn = step.layers.keys()?.key("s3")?.arn.clone();
        let retention_days = i32::try_from(spec.storage.retention_days).map_err(|_| {
            Error::invalid_input(format!(
                "storage.retention_days {} is too large",
                spec.storage.retention_days
            ))
        })?;
        let region = self
            .s3
            .config()
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| spec.region.clone());
        let run = Run {
            deps: self,
            names: &step.names,
            log: &step.log,
            account: account_id(self).await?,
            region,
            key_arn,
            retention_days,
        };
        let layer = ensure(&run).await?;
        Ok(Done::ready(StorageReport {
            layer,
            kms_key_arn: run.key_arn,
        }))
    }

    fn state(&self) -> &dyn Recorder {
        self.recorder.as_ref()
    }
}

async fn account_id(deps: &Deps) -> Result<String> {
    let identity = deps
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| Error::aws("GetCallerIdentity", e))?;
    identity
        .account
        .ok_or_else(|| Error::fatal("GetCallerIdentity returned no account"))
}

async fn ensure(run: &Run<'_>) -> Result<StorageOutput> {
    let mut buckets = BTreeMap::new();
    for purpose in PURPOSES {
        let name = run.names.bucket(purpose, &run.account, &run.region);
        bucket::ensure_exists(run, purpose, &name).await?;
        bucket::configure(run, purpose, &name).await?;
        run.log
            .resource(
                "s3:bucket",
                &name,
                Some(&policy::bucket_arn(&run.region, &name)),
            )
            .await?;
        buckets.insert(purpose.to_owned(), name);
    }
    let logs = buckets[LOGS].clone();
    let sources: Vec<&str> = PURPOSES
        .iter()
        .filter(|p| **p != LOGS)
        .map(|p| buckets[*p].as_str())
        .collect();

    // Bucket policies come last: with the TLS-only statement in place the local emulator
    // (like AWS over plain HTTP) refuses the object requests an http:// endpoint makes,
    // so nothing may need such a request afterwards. The logs bucket's policy also lets
    // S3 deliver access logs, and S3 checks it when logging is turned on, so it comes
    // before the other buckets' logging.
    let logs_policy = policy::logs_bucket_policy(&run.region, &run.account, &logs, &sources);
    bucket::put_policy(run, &logs, &logs_policy).await?;
    for source in &sources {
        bucket::put_logging(run, source, &logs).await?;
    }
    for source in &sources {
        let tls_only = policy::tls_only_policy(&run.region, source);
        bucket::put_policy(run, source, &tls_only).await?;
    }
    Ok(StorageOutput { buckets })
}

#[cfg(test)]
mod tests;
