//! The storage layer against the emulator: every bucket setting read back through the S3
//! API, the trail and the VPC's flow log read back through CloudTrail and EC2, and a
//! second run that creates nothing.

use std::io::{Read, Write};
use std::sync::Arc;

use apiary_core::step::MemoryRecorder;
use apiary_e2e::{minimal_layers, sdk_config, unique_cidr, unique_name};
use aws_config::SdkConfig;
use aws_sdk_s3::types::{ObjectOwnership, ServerSideEncryption};
use serde_json::{Value, json};

const RETENTION_DAYS: i32 = 45;

fn spec(name: &str, cidr: &str) -> Value {
    json!({
        "name": name,
        "dns": {"domain": "hh.example.com"},
        "network": {"vpc_cidr": cidr},
        "storage": {"retention_days": RETENTION_DAYS}
    })
}

/// The bucket's versioning status as the emulator's raw XML states it. The Rust SDK
/// cannot parse moto's GetBucketVersioning response (its root element is named
/// `GetBucketVersioningResponse`, not `VersioningConfiguration`), so the test reads the
/// same S3 API call over plain HTTP instead of skipping the check.
fn raw_versioning(config: &SdkConfig, bucket: &str) -> String {
    let endpoint = config.endpoint_url().expect("emulator endpoint");
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).expect("connect to the emulator");
    write!(
        stream,
        "GET /{bucket}?versioning HTTP/1.1\r\nHost: {host}\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/{region}/s3/aws4_request, SignedHeaders=host, Signature=0\r\nConnection: close\r\n\r\n",
        region = apiary_e2e::REGION
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

#[tokio::test]
async fn buckets_are_complete_and_idempotent() {
    let config = sdk_config().await;
    let name = unique_name("store");
    let spec = spec(&name, &unique_cidr(&config).await);
    // The keys the buckets are encrypted with, and the VPC the flow log records.
    let layers = minimal_layers(&config, &spec, "databases").await;
    let s3_key = layers["keys"]["keys"]["s3"]["arn"]
        .as_str()
        .unwrap()
        .to_owned();
    let vpc_id = layers["network"]["vpc_id"].as_str().unwrap().to_owned();
    let event = json!({"action": "ensure", "deployment": name, "execution_id": "exec-storage"});

    let recorder = MemoryRecorder::with(&spec, &layers);
    let deps = storage::Deps::new(&config, Arc::new(recorder.clone()));
    let first = storage::handle(&deps, event.clone())
        .await
        .expect("first ensure");
    assert_eq!(first["ready"], json!(true));
    // The buckets, the trail and the flow log.
    let created = first["created"].as_array().unwrap();
    assert!(
        created.contains(&json!(format!("apiary-{name}-trail")))
            && created.contains(&first["flow_log_id"]),
        "{first}"
    );
    let second = storage::handle(&deps, event).await.expect("second ensure");
    assert_eq!(
        second["created"],
        json!([]),
        "second run creates nothing: {second}"
    );
    assert_eq!(first["buckets"], second["buckets"]);

    // The trail, read back: into the logs bucket under its prefix, encrypted with the s3
    // key, with digest files, and logging.
    let logs = first["buckets"]["logs"].as_str().unwrap();
    let cloudtrail = aws_sdk_cloudtrail::Client::new(&config);
    let trail_name = format!("apiary-{name}-trail");
    let trail = cloudtrail
        .get_trail()
        .name(&trail_name)
        .send()
        .await
        .expect("the trail exists")
        .trail
        .expect("a trail");
    assert_eq!(trail.s3_bucket_name(), Some(logs));
    assert_eq!(trail.s3_key_prefix(), Some("cloudtrail"));
    assert_eq!(trail.kms_key_id(), Some(s3_key.as_str()));
    assert_eq!(trail.log_file_validation_enabled(), Some(true));
    assert_eq!(trail.include_global_service_events(), Some(true));
    assert_eq!(first["trail_arn"], json!(trail.trail_arn().unwrap()));
    let status = cloudtrail
        .get_trail_status()
        .name(&trail_name)
        .send()
        .await
        .unwrap();
    assert_eq!(status.is_logging(), Some(true));

    // The VPC's flow log, read back: all traffic into the logs bucket, tagged.
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let flow_logs = ec2
        .describe_flow_logs()
        .filter(
            aws_sdk_ec2::types::Filter::builder()
                .name("resource-id")
                .values(&vpc_id)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let [flow_log] = flow_logs.flow_logs() else {
        panic!("one flow log for {vpc_id}: {flow_logs:?}");
    };
    assert_eq!(first["flow_log_id"], json!(flow_log.flow_log_id().unwrap()));
    assert_eq!(
        flow_log.log_destination_type(),
        Some(&aws_sdk_ec2::types::LogDestinationType::S3)
    );
    assert_eq!(
        flow_log.log_destination(),
        Some(format!("arn:aws:s3:::{logs}").as_str())
    );
    assert_eq!(
        flow_log.traffic_type(),
        Some(&aws_sdk_ec2::types::TrafficType::All)
    );
    assert!(
        flow_log
            .tags()
            .iter()
            .any(|t| t.key() == Some("apiary:deployment") && t.value() == Some(name.as_str())),
        "{flow_log:?}"
    );

    let s3 = apiary_core::aws::s3_client(&config);
    let buckets = first["buckets"].as_object().unwrap();
    assert_eq!(buckets.len(), 4);
    let access = first["access_logs_bucket"].as_str().unwrap();
    assert!(
        access.starts_with(&format!("apiary-{name}-access-123456789012-")),
        "{access}"
    );
    assert!(created.contains(&json!(access)), "{first}");
    for (purpose, bucket) in buckets {
        let bucket = bucket.as_str().unwrap();
        assert!(
            bucket.starts_with(&format!("apiary-{name}-{purpose}-123456789012-")),
            "{bucket}"
        );

        // SSE-KMS with the deployment's s3 key and bucket keys on.
        let encryption = s3
            .get_bucket_encryption()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        let rule = &encryption
            .server_side_encryption_configuration()
            .unwrap()
            .rules()[0];
        let default = rule.apply_server_side_encryption_by_default().unwrap();
        assert_eq!(
            default.sse_algorithm(),
            &ServerSideEncryption::AwsKms,
            "{bucket}"
        );
        assert_eq!(
            default.kms_master_key_id(),
            Some(s3_key.as_str()),
            "{bucket}"
        );
        assert_eq!(rule.bucket_key_enabled(), Some(true), "{bucket}");

        // Versioning, read from the emulator's raw response (see `raw_versioning`).
        let versioning = raw_versioning(&config, bucket);
        assert!(
            versioning.contains("<Status>Enabled</Status>"),
            "{bucket}: {versioning}"
        );

        let block = s3
            .get_public_access_block()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        let block = block.public_access_block_configuration().unwrap();
        assert_eq!(
            [
                block.block_public_acls(),
                block.ignore_public_acls(),
                block.block_public_policy(),
                block.restrict_public_buckets()
            ],
            [Some(true); 4],
            "{bucket}"
        );

        let ownership = s3
            .get_bucket_ownership_controls()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        assert_eq!(
            ownership.ownership_controls().unwrap().rules()[0].object_ownership(),
            &ObjectOwnership::BucketOwnerEnforced
        );

        let lifecycle = s3
            .get_bucket_lifecycle_configuration()
            .bucket(bucket)
            .send()
            .await
            .unwrap();
        let rule = &lifecycle.rules()[0];
        let expires_current = purpose == "metrics" || purpose == "logs";
        assert_eq!(
            rule.expiration().and_then(|e| e.days()),
            expires_current.then_some(RETENTION_DAYS),
            "{bucket}"
        );
        assert_eq!(
            rule.noncurrent_version_expiration()
                .and_then(|n| n.noncurrent_days()),
            Some(RETENTION_DAYS)
        );
        assert_eq!(
            rule.abort_incomplete_multipart_upload()
                .and_then(|a| a.days_after_initiation()),
            Some(7)
        );

        // Every data bucket, the logs bucket too, logs into the access-logs bucket.
        let logging = s3.get_bucket_logging().bucket(bucket).send().await.unwrap();
        let enabled = logging.logging_enabled().expect("access logging on");
        assert_eq!(enabled.target_bucket(), access);
        assert_eq!(enabled.target_prefix(), format!("s3-access/{bucket}/"));

        let policy = s3.get_bucket_policy().bucket(bucket).send().await.unwrap();
        let policy: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
        let statements = policy["Statement"].as_array().unwrap();
        assert!(
            statements.iter().any(|s| s["Effect"] == json!("Deny")
                && s["Principal"] == json!({"AWS": "*"})
                && s["Condition"]["Bool"]["aws:SecureTransport"] == json!("false")),
            "{bucket}: {policy}"
        );
        assert!(
            !statements
                .iter()
                .any(|s| s["Principal"]["Service"] == json!("logging.s3.amazonaws.com")),
            "access logs are delivered to the access-logs bucket only: {policy}"
        );
        if purpose == "logs" {
            // The trail and log delivery (the flow logs) write under their prefixes.
            let trail_arn =
                format!("arn:aws:cloudtrail:us-west-2:123456789012:trail/apiary-{name}-trail");
            let by_service = |service: &str| -> Vec<&Value> {
                statements
                    .iter()
                    .filter(|s| s["Principal"]["Service"] == json!(service))
                    .collect()
            };
            let trail = by_service("cloudtrail.amazonaws.com");
            assert_eq!(trail.len(), 2, "{policy}");
            assert!(
                trail
                    .iter()
                    .all(|s| s["Condition"]["StringEquals"]["aws:SourceArn"] == json!(trail_arn)),
                "{policy}"
            );
            let delivery = by_service("delivery.logs.amazonaws.com");
            assert_eq!(delivery.len(), 2, "{policy}");
            assert!(
                delivery.iter().any(|s| s["Resource"]
                    == json!(format!("arn:aws:s3:::{logs}/AWSLogs/123456789012/*")))
            );
        }

        let tags = s3.get_bucket_tagging().bucket(bucket).send().await.unwrap();
        for (key, value) in [
            ("apiary:deployment", name.as_str()),
            ("apiary:layer", "storage"),
        ] {
            assert!(
                tags.tag_set()
                    .iter()
                    .any(|t| t.key() == key && t.value() == value),
                "{bucket}: {key}={value}"
            );
        }
    }

    // The access-logs bucket: SSE-S3 (log delivery cannot write with a KMS key), its
    // own retention, S3 log delivery for each data bucket, and no logging of its own.
    let encryption = s3
        .get_bucket_encryption()
        .bucket(access)
        .send()
        .await
        .unwrap();
    let default = encryption
        .server_side_encryption_configuration()
        .unwrap()
        .rules()[0]
        .apply_server_side_encryption_by_default()
        .unwrap()
        .clone();
    assert_eq!(default.sse_algorithm(), &ServerSideEncryption::Aes256);
    assert_eq!(default.kms_master_key_id(), None);
    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket(access)
        .send()
        .await
        .unwrap();
    assert_eq!(
        lifecycle.rules()[0].expiration().and_then(|e| e.days()),
        Some(storage::ACCESS_LOG_RETENTION_DAYS)
    );
    let logging = s3.get_bucket_logging().bucket(access).send().await.unwrap();
    assert!(
        logging.logging_enabled().is_none(),
        "it does not log itself"
    );
    let policy = s3.get_bucket_policy().bucket(access).send().await.unwrap();
    let policy: Value = serde_json::from_str(policy.policy().unwrap()).unwrap();
    let delivery: Vec<&Value> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Principal"]["Service"] == json!("logging.s3.amazonaws.com"))
        .collect();
    assert_eq!(delivery.len(), 4, "{policy}");
    assert!(
        delivery.iter().all(|s| {
            s["Condition"]["StringEquals"]["aws:SourceAccount"] == json!("123456789012")
        })
    );

    // The TLS-only policy is in force: a plain-HTTP object write is refused.
    let refused = s3
        .put_object()
        .bucket(buckets["config"].as_str().unwrap())
        .key("probe")
        .body(b"x".to_vec().into())
        .send()
        .await;
    let err = refused.expect_err("plain HTTP write refused by the TLS-only policy");
    // The emulator answers 403 with an empty body, so there is no error code to read.
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(403),
        "{err:?}"
    );

    let entries = recorder.entries.lock().unwrap();
    let outcomes: Vec<&str> = entries.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, ["created", "unchanged"]);
    let resources = recorder.resources.lock().unwrap();
    assert_eq!(
        resources.iter().filter(|r| r.kind == "s3:bucket").count(),
        5,
        "four data buckets and the access-logs bucket"
    );
}

/// With `backup.dr_region` the layer makes the Redis export bucket (ElastiCache granted
/// by ACL, replicating to its DR twin) and the DR bucket in the DR region; a second run
/// creates nothing.
#[tokio::test]
async fn redis_export_buckets_replicate_to_the_dr_region() {
    const DR_REGION: &str = "us-east-1";
    let config = sdk_config().await;
    let name = unique_name("export");
    let mut spec = spec(&name, &unique_cidr(&config).await);
    spec["backup"] = json!({"dr_region": DR_REGION});
    let layers = minimal_layers(&config, &spec, "databases").await;
    let event = json!({"action": "ensure", "deployment": name, "execution_id": "exec-export"});
    let recorder = MemoryRecorder::with(&spec, &layers);
    let deps = storage::Deps::new(&config, Arc::new(recorder.clone()));
    let first = storage::handle(&deps, event.clone()).await.expect("ensure");
    let exports = &first["exports"];
    let primary = exports["primary"]
        .as_str()
        .expect("export bucket")
        .to_owned();
    let dr = exports["dr"].as_str().expect("DR export bucket").to_owned();
    assert_eq!(exports["dr_region"], json!(DR_REGION));
    assert!(primary.ends_with(apiary_e2e::REGION), "{primary}");
    assert!(dr.ends_with(DR_REGION), "{dr}");
    let created = first["created"].as_array().unwrap();
    assert!(
        created.contains(&json!(primary)) && created.contains(&json!(dr)),
        "{first}"
    );
    let second = storage::handle(&deps, event).await.expect("second ensure");
    assert_eq!(second["created"], json!([]), "{second}");

    let s3 = apiary_core::aws::s3_client(&config);
    // ACLs on (bucket owner preferred) for ElastiCache's grant: list, write, read ACL.
    let ownership = s3
        .get_bucket_ownership_controls()
        .bucket(&primary)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ownership.ownership_controls().unwrap().rules()[0].object_ownership(),
        &ObjectOwnership::BucketOwnerPreferred
    );
    let acl = s3.get_bucket_acl().bucket(&primary).send().await.unwrap();
    let mut granted: Vec<String> = acl
        .grants()
        .iter()
        .filter(|g| {
            g.grantee().and_then(|e| e.id()) == Some(storage::exports::ELASTICACHE_CANONICAL_ID)
        })
        .map(|g| g.permission().unwrap().as_str().to_owned())
        .collect();
    granted.sort();
    assert_eq!(granted, ["READ", "READ_ACP", "WRITE"], "{acl:?}");
    // SSE-S3 (ElastiCache writes as its own principal), staging copies expire.
    let encryption = s3
        .get_bucket_encryption()
        .bucket(&primary)
        .send()
        .await
        .unwrap();
    let rule = &encryption
        .server_side_encryption_configuration()
        .unwrap()
        .rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm(),
        &ServerSideEncryption::Aes256
    );
    let lifecycle = s3
        .get_bucket_lifecycle_configuration()
        .bucket(&primary)
        .send()
        .await
        .unwrap();
    assert_eq!(
        lifecycle.rules()[0].expiration().and_then(|e| e.days()),
        Some(storage::exports::STAGING_DAYS)
    );
    // Replication to the DR bucket as the stack's replication role; deletes stay here.
    let replication = s3
        .get_bucket_replication()
        .bucket(&primary)
        .send()
        .await
        .unwrap();
    let replication = replication.replication_configuration().unwrap();
    assert_eq!(
        replication.role(),
        format!("arn:aws:iam::123456789012:role/apiary-{name}-s3-replication")
    );
    let [rule] = replication.rules() else {
        panic!("one rule: {replication:?}")
    };
    assert_eq!(
        rule.destination().map(|d| d.bucket()),
        Some(format!("arn:aws:s3:::{dr}").as_str())
    );
    assert_eq!(
        rule.delete_marker_replication().and_then(|d| d.status()),
        Some(&aws_sdk_s3::types::DeleteMarkerReplicationStatus::Disabled)
    );
    // Its access is logged like the others'.
    let logging = s3
        .get_bucket_logging()
        .bucket(&primary)
        .send()
        .await
        .unwrap();
    assert_eq!(
        logging.logging_enabled().map(|l| l.target_bucket()),
        first["access_logs_bucket"].as_str()
    );

    // The DR bucket, in the DR region: ACLs off, versioned (replication needs it), TLS only.
    let dr_config = apiary_e2e::in_region(&config, DR_REGION);
    let dr_s3 = apiary_core::aws::s3_client(&dr_config);
    let location = dr_s3
        .get_bucket_location()
        .bucket(&dr)
        .send()
        .await
        .unwrap();
    // us-east-1 is the one region S3 reports as no location constraint.
    assert!(
        matches!(
            location.location_constraint().map(|l| l.as_str()),
            None | Some("")
        ),
        "{location:?}"
    );
    let ownership = dr_s3
        .get_bucket_ownership_controls()
        .bucket(&dr)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ownership.ownership_controls().unwrap().rules()[0].object_ownership(),
        &ObjectOwnership::BucketOwnerEnforced
    );
    assert!(raw_versioning(&dr_config, &dr).contains("<Status>Enabled</Status>"));
    let policy = dr_s3.get_bucket_policy().bucket(&dr).send().await.unwrap();
    assert!(policy.policy().unwrap().contains("aws:SecureTransport"));
}
