//! The role's policy documents: who may assume it and what it may do.

use apiary_core::Result;
use apiary_core::outputs::Layers;
use serde_json::{Value, json};

use crate::manifests::{NAMESPACE, SERVICE_ACCOUNT};

/// Bucket purposes the pods never write: backups belong to the backup workflow.
const BUCKETS_NOT_FOR_PODS: &[&str] = &["backups"];

/// Only EKS Pod Identity may assume the role, and only for our service account in our
/// cluster (the session tags it sets when it assumes a role).
pub fn trust_policy(cluster_arn: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "EksPodIdentity",
            "Effect": "Allow",
            "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {
                "aws:RequestTag/eks-cluster-arn": cluster_arn,
                "aws:RequestTag/kubernetes-namespace": NAMESPACE,
                "aws:RequestTag/kubernetes-service-account": SERVICE_ACCOUNT
            }}
        }]
    })
}

/// The role's permissions. The s3 key is usable only through S3, because writing to a
/// bucket with SSE-KMS needs it; the app key is the pods' own.
pub fn permissions_policy(layers: &Layers, region: &str) -> Result<Value> {
    let storage = layers.storage()?;
    let keys = layers.keys()?;
    let databases = layers.databases()?;
    let buckets: Vec<&String> = storage
        .buckets
        .iter()
        .filter(|(purpose, _)| !BUCKETS_NOT_FOR_PODS.contains(&purpose.as_str()))
        .map(|(_, bucket)| bucket)
        .collect();
    let partition = apiary_core::aws::partition(region);
    let bucket_arn = |suffix: &str| -> Vec<String> {
        buckets
            .iter()
            .map(|b| apiary_core::aws::arn(partition, "s3", "", "", &format!("{b}{suffix}")))
            .collect()
    };
    let mut statements = Vec::new();
    if !buckets.is_empty() {
        statements.push(json!({
            "Sid": "ListDataBuckets",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
            "Resource": bucket_arn("")
        }));
        statements.push(json!({
            "Sid": "WriteDataBuckets",
            "Effect": "Allow",
            "Action": [
                "s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"
            ],
            "Resource": bucket_arn("/*")
        }));
    }
    statements.push(json!({
        "Sid": "UseAppKey",
        "Effect": "Allow",
        "Action": [
            "kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*",
            "kms:GenerateDataKey*", "kms:DescribeKey"
        ],
        "Resource": keys.key("app")?.arn
    }));
    if let Ok(s3_key) = keys.key("s3") {
        statements.push(json!({
            "Sid": "UseBucketKeyThroughS3",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": s3_key.arn,
            "Condition": {"StringEquals": {"kms:ViaService": format!("s3.{region}.amazonaws.com")}}
        }));
    }
    // The pods' own users' secrets and the Redis token's: never a master user's.
    let secrets = databases.pod_secrets();
    if !secrets.is_empty() {
        statements.push(json!({
            "Sid": "ReadDataStoreSecrets",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            "Resource": secrets
        }));
    }
    Ok(json!({"Version": "2012-10-17", "Statement": statements}))
}

/// IAM returns policy documents URL-encoded (RFC 3986); some emulators return them
/// plain. Either way, the parsed document.
pub fn parse_policy(text: &str) -> Option<Value> {
    serde_json::from_str(text)
        .ok()
        .or_else(|| serde_json::from_str(&percent_decode(text)?).ok())
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}
