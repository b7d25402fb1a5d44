//! The `PreSignedUrl` of a cross-region DocumentDB copy (and of an RDS copy between
//! GovCloud regions): a SigV4 query-signed `GET` of the same copy request against the
//! SOURCE region's endpoint, which the destination region calls to read the snapshot.
//! The other SDKs build it from a `SourceRegion` parameter; the Rust SDK does not, so it
//! is signed here (`apiary_core::sigv4`).

use std::time::{Duration, SystemTime};

use apiary_core::Result;
use apiary_core::sigv4::uri_encode;
use aws_sdk_rds::config::Credentials;
use aws_smithy_runtime_api::client::identity::Identity;

/// How long the destination region may use the URL (what botocore's presigner sets).
pub const EXPIRES_IN: Duration = Duration::from_secs(3600);
/// The RDS query API version (DocumentDB shares RDS's API).
const VERSION: &str = "2014-10-31";

/// The regional endpoint of the RDS API (DocumentDB's management API is RDS's).
pub fn endpoint(region: &str) -> String {
    format!(
        "https://rds.{region}.{}/",
        apiary_core::aws::dns_suffix(region)
    )
}

/// The presigned URL of `action` with `params` in `source_region`, signed at `time`.
pub fn presigned_url(
    action: &str,
    params: &[(&str, &str)],
    source_region: &str,
    credentials: &Credentials,
    time: SystemTime,
) -> Result<String> {
    let base = endpoint(source_region);
    let mut query = format!("Action={action}&Version={VERSION}");
    for (name, value) in params {
        query.push('&');
        query.push_str(name);
        query.push('=');
        query.push_str(&uri_encode(value));
    }
    let url = format!("{base}?{query}");
    let identity: Identity = credentials.clone().into();
    let signed = apiary_core::sigv4::presign_get(
        &format!("{action} PreSignedUrl"),
        &url,
        "rds",
        source_region,
        &[],
        EXPIRES_IN,
        &identity,
        time,
    )?;
    for (name, value) in &signed {
        query.push('&');
        query.push_str(name);
        query.push('=');
        query.push_str(&uri_encode(value));
    }
    Ok(format!("{base}?{query}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(token: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token.map(str::to_owned),
            None,
            "test",
        )
    }

    #[test]
    fn the_url_is_a_signed_get_of_the_copy_in_the_source_region() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600); // 2026-01-01
        let source = "arn:aws:rds:us-west-2:123456789012:cluster-snapshot:apiary-acme-docdb-20260101-0a1b2c3d4e";
        let params = [
            ("SourceDBClusterSnapshotIdentifier", source),
            (
                "TargetDBClusterSnapshotIdentifier",
                "apiary-acme-docdb-20260101-0a1b2c3d4e",
            ),
            ("KmsKeyId", "arn:aws:kms:us-east-1:123456789012:key/dr-key"),
            ("DestinationRegion", "us-east-1"),
        ];
        let url = presigned_url(
            "CopyDBClusterSnapshot",
            &params,
            "us-west-2",
            &credentials(None),
            time,
        )
        .unwrap();
        assert!(url.starts_with("https://rds.us-west-2.amazonaws.com/?Action=CopyDBClusterSnapshot&Version=2014-10-31&"), "{url}");
        assert!(url.contains("SourceDBClusterSnapshotIdentifier=arn%3Aaws%3Ards%3Aus-west-2%3A123456789012%3Acluster-snapshot%3A"), "{url}");
        assert!(url.contains("DestinationRegion=us-east-1"), "{url}");
        assert!(url.contains("X-Amz-Algorithm=AWS4-HMAC-SHA256"), "{url}");
        assert!(
            url.contains(
                "X-Amz-Credential=AKIDEXAMPLE%2F20260101%2Fus-west-2%2Frds%2Faws4_request"
            ),
            "{url}"
        );
        assert!(url.contains("X-Amz-Date=20260101T000000Z"), "{url}");
        assert!(url.contains("X-Amz-Expires=3600"), "{url}");
        let signature = url.split("X-Amz-Signature=").nth(1).expect("signed");
        assert_eq!(signature.len(), 64, "{url}");
        assert!(
            !url.contains("wJalrXUtnFEMI"),
            "the secret key never appears"
        );
        // The same request, credentials and clock sign the same way.
        let again = presigned_url(
            "CopyDBClusterSnapshot",
            &params,
            "us-west-2",
            &credentials(None),
            time,
        )
        .unwrap();
        assert_eq!(url, again);
        // Temporary credentials (a Lambda's) carry their session token.
        let with_token = presigned_url(
            "CopyDBClusterSnapshot",
            &params,
            "us-west-2",
            &credentials(Some("tok/en")),
            time,
        )
        .unwrap();
        assert!(
            with_token.contains("X-Amz-Security-Token=tok%2Fen"),
            "{with_token}"
        );
        assert!(endpoint("cn-north-1").ends_with("amazonaws.com.cn/"));
    }
}
