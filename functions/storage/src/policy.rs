//! Bucket policies: TLS only everywhere, and log delivery into the logs bucket: S3
//! server access logs, the CloudTrail trail and the VPC flow logs, each service only
//! under its own prefix and only on behalf of this account (and, where AWS documents
//! it, this trail).

use serde_json::{Value, json};

use crate::access_log_prefix;

use apiary_core::aws::{arn, partition};

pub fn bucket_arn(region: &str, bucket: &str) -> String {
    arn(partition(region), "s3", "", "", bucket)
}

/// Denies every request to the bucket and its objects that does not use TLS.
///
/// The principal is written `{"AWS": "*"}`, which IAM treats exactly as `"*"`: the local
/// emulator's log-delivery check fails (HTTP 500) on a policy with a bare-string
/// principal when logging is turned on.
fn deny_insecure_transport(region: &str, bucket: &str) -> Value {
    let arn = bucket_arn(region, bucket);
    json!({
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "s3:*",
        "Resource": [arn.clone(), format!("{arn}/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}
    })
}

pub fn tls_only_policy(region: &str, bucket: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [deny_insecure_transport(region, bucket)]
    })
    .to_string()
}

/// The trail's log files go under `cloudtrail/AWSLogs/<account>/`.
pub const TRAIL_PREFIX: &str = "cloudtrail";

/// The trail this deployment's CloudTrail statements name (`aws:SourceArn`).
pub fn trail_arn(region: &str, account: &str, trail: &str) -> String {
    arn(
        partition(region),
        "cloudtrail",
        region,
        account,
        &format!("trail/{trail}"),
    )
}

/// Who may deliver audit logs into the logs bucket.
pub struct Audit<'a> {
    /// The deployment's own trail; `None` when an organisation trail records the account
    /// (it writes into the organisation's bucket, never this one).
    pub trail: Option<&'a str>,
}

/// The statements AWS documents for CloudTrail and for log delivery (VPC flow logs).
///
/// CloudTrail: `s3:GetBucketAcl` on the bucket and `s3:PutObject` under
/// `cloudtrail/AWSLogs/<account>/`, both only for this trail (`aws:SourceArn`), the write
/// only with the `bucket-owner-full-control` ACL CloudTrail sends. Log delivery: the
/// ACL check (and `s3:ListBucket`, which it also asks) on the bucket and `s3:PutObject`
/// under `AWSLogs/<account>/`, only for log sources of this account in this region.
fn audit_statements(region: &str, account: &str, logs: &str, audit: &Audit<'_>) -> Vec<Value> {
    let bucket = bucket_arn(region, logs);
    let mut statements = Vec::new();
    if let Some(trail) = audit.trail {
        let source = trail_arn(region, account, trail);
        statements.push(json!({
            "Sid": "CloudTrailAclCheck",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "s3:GetBucketAcl",
            "Resource": bucket,
            "Condition": {"StringEquals": {"aws:SourceArn": source}}
        }));
        statements.push(json!({
            "Sid": "CloudTrailWrite",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": format!("{bucket}/{TRAIL_PREFIX}/AWSLogs/{account}/*"),
            "Condition": {"StringEquals": {
                "s3:x-amz-acl": "bucket-owner-full-control",
                "aws:SourceArn": source
            }}
        }));
    }
    let log_sources = arn(partition(region), "logs", region, account, "*");
    statements.push(json!({
        "Sid": "LogDeliveryAclCheck",
        "Effect": "Allow",
        "Principal": {"Service": "delivery.logs.amazonaws.com"},
        "Action": ["s3:GetBucketAcl", "s3:ListBucket"],
        "Resource": bucket,
        "Condition": {
            "StringEquals": {"aws:SourceAccount": account},
            "ArnLike": {"aws:SourceArn": log_sources}
        }
    }));
    statements.push(json!({
        "Sid": "LogDeliveryWrite",
        "Effect": "Allow",
        "Principal": {"Service": "delivery.logs.amazonaws.com"},
        "Action": "s3:PutObject",
        "Resource": format!("{bucket}/AWSLogs/{account}/*"),
        "Condition": {
            "StringEquals": {
                "s3:x-amz-acl": "bucket-owner-full-control",
                "aws:SourceAccount": account
            },
            "ArnLike": {"aws:SourceArn": log_sources}
        }
    }));
    statements
}

/// TLS only, plus one statement per source bucket letting the S3 logging service write
/// that bucket's access logs under its own prefix, only on behalf of that bucket in this
/// account (the confused-deputy conditions AWS recommends). The access-logs bucket's
/// policy.
pub fn access_logs_bucket_policy(
    region: &str,
    account: &str,
    access: &str,
    sources: &[&str],
) -> String {
    let mut statements = vec![deny_insecure_transport(region, access)];
    statements.extend(server_access_log_statements(
        region, account, access, sources,
    ));
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}

fn server_access_log_statements(
    region: &str,
    account: &str,
    target: &str,
    sources: &[&str],
) -> Vec<Value> {
    sources
        .iter()
        .enumerate()
        .map(|(i, source)| {
            json!({
                "Sid": format!("S3ServerAccessLogs{i}"),
                "Effect": "Allow",
                "Principal": {"Service": "logging.s3.amazonaws.com"},
                "Action": ["s3:PutObject"],
                "Resource": format!("{}/{}*", bucket_arn(region, target), access_log_prefix(source)),
                "Condition": {
                    "ArnLike": {"aws:SourceArn": bucket_arn(region, source)},
                    "StringEquals": {"aws:SourceAccount": account}
                }
            })
        })
        .collect()
}

/// TLS only, plus the server-access-log statements for `sources` (none since access logs
/// have their own bucket), plus the audit deliveries.
pub fn logs_bucket_policy(
    region: &str,
    account: &str,
    logs: &str,
    sources: &[&str],
    audit: &Audit<'_>,
) -> String {
    let mut statements = vec![deny_insecure_transport(region, logs)];
    statements.extend(server_access_log_statements(region, account, logs, sources));
    statements.extend(audit_statements(region, account, logs, audit));
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}
