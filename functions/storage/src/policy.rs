//! Bucket policies: TLS only everywhere, and S3 log delivery into the logs bucket.

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

/// TLS only, plus one statement per source bucket letting the S3 logging service write
/// that bucket's access logs under its own prefix, only on behalf of that bucket in this
/// account (the confused-deputy conditions AWS recommends).
pub fn logs_bucket_policy(region: &str, account: &str, logs: &str, sources: &[&str]) -> String {
    let mut statements = vec![deny_insecure_transport(region, logs)];
    for (i, source) in sources.iter().enumerate() {
        statements.push(json!({
            "Sid": format!("S3ServerAccessLogs{i}"),
            "Effect": "Allow",
            "Principal": {"Service": "logging.s3.amazonaws.com"},
            "Action": ["s3:PutObject"],
            "Resource": format!("{}/{}*", bucket_arn(region, logs), access_log_prefix(source)),
            "Condition": {
                "ArnLike": {"aws:SourceArn": bucket_arn(region, source)},
                "StringEquals": {"aws:SourceAccount": account}
            }
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
}
