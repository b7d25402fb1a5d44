//! Unit tests with mocked clients: the paths the emulator cannot produce.

use std::sync::Arc;

use apiary_core::ErrorName;
use apiary_core::step::MemoryRecorder;
use aws_sdk_cloudtrail::Client as CloudTrail;
use aws_sdk_cloudtrail::operation::get_trail::GetTrailOutput;
use aws_sdk_cloudtrail::operation::get_trail_status::GetTrailStatusOutput;
use aws_sdk_cloudtrail::types::Trail;
use aws_sdk_ec2::Client as Ec2;
use aws_sdk_ec2::operation::describe_flow_logs::DescribeFlowLogsOutput;
use aws_sdk_ec2::types::{FlowLog, LogDestinationType, TrafficType};
use aws_sdk_s3::Client as S3;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::operation::create_bucket::{CreateBucketError, CreateBucketOutput};
use aws_sdk_s3::operation::get_bucket_tagging::{GetBucketTaggingError, GetBucketTaggingOutput};
use aws_sdk_s3::operation::head_bucket::{HeadBucketError, HeadBucketOutput};
use aws_sdk_s3::operation::put_bucket_encryption::PutBucketEncryptionOutput;
use aws_sdk_s3::operation::put_bucket_lifecycle_configuration::PutBucketLifecycleConfigurationOutput;
use aws_sdk_s3::operation::put_bucket_logging::PutBucketLoggingOutput;
use aws_sdk_s3::operation::put_bucket_ownership_controls::PutBucketOwnershipControlsOutput;
use aws_sdk_s3::operation::put_bucket_policy::PutBucketPolicyOutput;
use aws_sdk_s3::operation::put_bucket_tagging::PutBucketTaggingOutput;
use aws_sdk_s3::operation::put_bucket_versioning::PutBucketVersioningOutput;
use aws_sdk_s3::operation::put_public_access_block::PutPublicAccessBlockOutput;
use aws_sdk_s3::types::error::NotFound;
use aws_sdk_s3::types::{BucketVersioningStatus, ObjectOwnership, ServerSideEncryption, Tag};
use aws_sdk_sts::Client as Sts;
use aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityOutput;
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;
use serde_json::json;

use super::*;

pub(crate) const ACCOUNT: &str = "123456789012";
pub(crate) const KEY: &str = "arn:aws:kms:us-west-2:123456789012:key/s3-key";
pub(crate) const VPC: &str = "vpc-0abc";

pub(crate) fn event() -> Value {
    apiary_core::step::event("ensure", "acme")
}

/// Deployment acme as the lock step stored it, with `layers` built.
pub(crate) fn state_with(layers: Value) -> MemoryRecorder {
    MemoryRecorder::with(
        &json!({"name": "acme", "dns": {"domain": "hh.example.com"}, "storage": {"retention_days": 45}}),
        &layers,
    )
}

/// The keys layer the buckets are encrypted with, and the network layer whose VPC the
/// flow log records.
pub(crate) fn keys_built() -> Value {
    json!({
        "keys": {"keys": {"s3": {"key_id": "s3-key", "arn": KEY, "alias": "alias/apiary/acme/s3"}}},
        "network": {
            "vpc_id": VPC, "vpc_cidr": "10.0.0.0/16", "public_subnets": [], "private_subnets": [],
            "nat_gateway_ids": [],
            "security_groups": {"alb": "sg-1", "cluster": "sg-2", "databases": "sg-3"}
        }
    })
}

pub(crate) fn bucket(purpose: &str, region: &str) -> String {
    Names::new("acme").bucket(purpose, ACCOUNT, region)
}

fn deps_in(region: &'static str, rules: &[&Rule]) -> (Deps, MemoryRecorder) {
    deps_over(state_with(keys_built()), region, rules)
}

fn deps_over(
    recorder: MemoryRecorder,
    region: &'static str,
    rules: &[&Rule],
) -> (Deps, MemoryRecorder) {
    let audit = AuditInPlace::new(region);
    deps_with_audit(recorder, region, rules, &audit.ec2(), &audit.cloudtrail())
}

/// Deps whose S3, EC2 and CloudTrail clients answer with the given rules.
pub(crate) fn deps_with_audit(
    recorder: MemoryRecorder,
    region: &'static str,
    s3: &[&Rule],
    ec2: &[&Rule],
    cloudtrail: &[&Rule],
) -> (Deps, MemoryRecorder) {
    let identity = mock!(Sts::get_caller_identity)
        .then_output(|| GetCallerIdentityOutput::builder().account(ACCOUNT).build());
    (
        Deps {
            s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, s3, |c| c
                .region(Region::new(region))),
            sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&identity]),
            ec2: mock_client!(aws_sdk_ec2, RuleMode::MatchAny, ec2, |c| c
                .region(aws_sdk_ec2::config::Region::new(region))),
            cloudtrail: mock_client!(aws_sdk_cloudtrail, RuleMode::MatchAny, cloudtrail, |c| c
                .region(aws_sdk_cloudtrail::config::Region::new(region))),
            recorder: Arc::new(recorder.clone()),
            trail: TrailChoice::Own,
        },
        recorder,
    )
}

/// The trail and the flow log as a finished run left them: found, matching, logging.
pub(crate) struct AuditInPlace {
    pub get_trail: Rule,
    pub trail_status: Rule,
    pub flow_logs: Rule,
}

impl AuditInPlace {
    pub fn new(region: &'static str) -> Self {
        AuditInPlace {
            get_trail: mock!(CloudTrail::get_trail).then_output(move || {
                GetTrailOutput::builder()
                    .trail(expected_trail(region))
                    .build()
            }),
            trail_status: mock!(CloudTrail::get_trail_status)
                .then_output(|| GetTrailStatusOutput::builder().is_logging(true).build()),
            flow_logs: mock!(Ec2::describe_flow_logs).then_output(move || {
                DescribeFlowLogsOutput::builder()
                    .flow_logs(expected_flow_log(region))
                    .build()
            }),
        }
    }

    pub fn ec2(&self) -> Vec<&Rule> {
        vec![&self.flow_logs]
    }

    pub fn cloudtrail(&self) -> Vec<&Rule> {
        vec![&self.get_trail, &self.trail_status]
    }
}

/// The trail as this deployment makes it.
pub(crate) fn expected_trail(region: &str) -> Trail {
    Trail::builder()
        .name("apiary-acme-trail")
        .s3_bucket_name(bucket("logs", region))
        .s3_key_prefix("cloudtrail")
        .kms_key_id(KEY)
        .log_file_validation_enabled(true)
        .include_global_service_events(true)
        .is_multi_region_trail(true)
        .build()
}

/// The VPC's flow log as this deployment makes it.
pub(crate) fn expected_flow_log(region: &str) -> FlowLog {
    FlowLog::builder()
        .flow_log_id("fl-0abc")
        .resource_id(VPC)
        .log_destination_type(LogDestinationType::S3)
        .log_destination(format!("arn:aws:s3:::{}", bucket("logs", region)))
        .traffic_type(TrafficType::All)
        .build()
}

fn deps(rules: &[&Rule]) -> (Deps, MemoryRecorder) {
    deps_in("us-west-2", rules)
}

fn head_found() -> Rule {
    mock!(S3::head_bucket)
        .match_requests(|r| r.expected_bucket_owner() == Some(ACCOUNT))
        .then_output(|| HeadBucketOutput::builder().build())
}

fn head_not_found() -> Rule {
    mock!(S3::head_bucket).then_error(|| {
        HeadBucketError::NotFound(
            NotFound::builder()
                .meta(ErrorMetadata::builder().code("NotFound").build())
                .build(),
        )
    })
}

fn tags_of(deployment: &'static str) -> Rule {
    mock!(S3::get_bucket_tagging).then_output(move || {
        let mut out = GetBucketTaggingOutput::builder().tag_set(
            Tag::builder()
                .key("cost-center")
                .value("42")
                .build()
                .unwrap(),
        );
        for (k, v) in Names::new(deployment).tags(Layer::Storage) {
            out = out.tag_set(Tag::builder().key(k).value(v).build().unwrap());
        }
        out.build().unwrap()
    })
}

fn no_tags() -> Rule {
    mock!(S3::get_bucket_tagging).then_error(|| {
        GetBucketTaggingError::generic(
            ErrorMetadata::builder()
                .code("NoSuchTagSet")
                .message("The TagSet does not exist")
                .build(),
        )
    })
}

/// Accepting rules for every configuration PUT, in a fixed order.
struct Puts {
    /// The access-logs bucket's settings, matched before the data buckets' rules.
    access: AccessPuts,
    tagging: Rule,
    ownership: Rule,
    public_access: Rule,
    encryption: Rule,
    versioning: Rule,
    lifecycle_expiring: Rule,
    lifecycle_versions_only: Rule,
    logging: Rule,
    policy: Rule,
}

impl Puts {
    fn new() -> Self {
        Self::in_region("us-west-2")
    }

    fn in_region(region: &'static str) -> Self {
        Puts {
            access: AccessPuts::in_region(region),
            tagging: mock!(S3::put_bucket_tagging)
                .then_output(|| PutBucketTaggingOutput::builder().build()),
            ownership: mock!(S3::put_bucket_ownership_controls)
                .match_requests(|r| {
                    r.ownership_controls().is_some_and(|c| {
                        c.rules()[0].object_ownership() == &ObjectOwnership::BucketOwnerEnforced
                    })
                })
                .then_output(|| PutBucketOwnershipControlsOutput::builder().build()),
            public_access: mock!(S3::put_public_access_block)
                .match_requests(|r| {
                    r.public_access_block_configuration().is_some_and(|c| {
                        c.block_public_acls() == Some(true)
                            && c.ignore_public_acls() == Some(true)
                            && c.block_public_policy() == Some(true)
                            && c.restrict_public_buckets() == Some(true)
                    })
                })
                .then_output(|| PutPublicAccessBlockOutput::builder().build()),
            encryption: mock!(S3::put_bucket_encryption)
                .match_requests(|r| {
                    r.server_side_encryption_configuration().is_some_and(|c| {
                        let rule = &c.rules()[0];
                        let default = rule.apply_server_side_encryption_by_default().unwrap();
                        default.sse_algorithm() == &ServerSideEncryption::AwsKms
                            && default.kms_master_key_id() == Some(KEY)
                            && rule.bucket_key_enabled() == Some(true)
                    })
                })
                .then_output(|| PutBucketEncryptionOutput::builder().build()),
            versioning: mock!(S3::put_bucket_versioning)
                .match_requests(|r| {
                    r.versioning_configuration().and_then(|v| v.status())
                        == Some(&BucketVersioningStatus::Enabled)
                })
                .then_output(|| PutBucketVersioningOutput::builder().build()),
            lifecycle_expiring: mock!(S3::put_bucket_lifecycle_configuration)
                .match_requests(move |r| lifecycle_matches(r, region, Some(45)))
                .then_output(|| PutBucketLifecycleConfigurationOutput::builder().build()),
            lifecycle_versions_only: mock!(S3::put_bucket_lifecycle_configuration)
                .match_requests(move |r| lifecycle_matches(r, region, None))
                .then_output(|| PutBucketLifecycleConfigurationOutput::builder().build()),
            logging: mock!(S3::put_bucket_logging)
                .match_requests(move |r| {
                    let source = r.bucket().unwrap_or_default().to_owned();
                    r.bucket_logging_status()
                        .and_then(|s| s.logging_enabled())
                        .is_some_and(|l| {
                            l.target_bucket() == bucket("access", region)
                                && l.target_prefix() == format!("s3-access/{source}/")
                        })
                })
                .then_output(|| PutBucketLoggingOutput::builder().build()),
            policy: mock!(S3::put_bucket_policy)
                .match_requests(|r| {
                    r.policy()
                        .is_some_and(|p| p.contains("\"aws:SecureTransport\":\"false\""))
                })
                .then_output(|| PutBucketPolicyOutput::builder().build()),
        }
    }

    fn rules(&self) -> Vec<&Rule> {
        let mut rules = self.access.rules();
        rules.extend([
            &self.tagging,
            &self.ownership,
            &self.public_access,
            &self.encryption,
            &self.versioning,
            &self.lifecycle_expiring,
            &self.lifecycle_versions_only,
            &self.logging,
            &self.policy,
        ]);
        rules
    }
}

/// The access-logs bucket: SSE-S3 (no KMS key), its own retention, a policy admitting
/// S3 log delivery for each data bucket, and no access logging of its own.
struct AccessPuts {
    ownership: Rule,
    public_access: Rule,
    encryption: Rule,
    versioning: Rule,
    lifecycle: Rule,
    policy: Rule,
    logging: Rule,
}

impl AccessPuts {
    fn in_region(region: &'static str) -> Self {
        let access = move || bucket("access", region);
        let is_access = move |b: Option<&str>| b == Some(access().as_str());
        AccessPuts {
            ownership: mock!(S3::put_bucket_ownership_controls)
                .match_requests(move |r| is_access(r.bucket()))
                .then_output(|| PutBucketOwnershipControlsOutput::builder().build()),
            public_access: mock!(S3::put_public_access_block)
                .match_requests(move |r| {
                    is_access(r.bucket())
                        && r.public_access_block_configuration()
                            .is_some_and(|c| c.block_public_policy() == Some(true))
                })
                .then_output(|| PutPublicAccessBlockOutput::builder().build()),
            encryption: mock!(S3::put_bucket_encryption)
                .match_requests(move |r| {
                    is_access(r.bucket())
                        && r.server_side_encryption_configuration().is_some_and(|c| {
                            let default = c.rules()[0]
                                .apply_server_side_encryption_by_default()
                                .unwrap();
                            default.sse_algorithm() == &ServerSideEncryption::Aes256
                                && default.kms_master_key_id().is_none()
                        })
                })
                .then_output(|| PutBucketEncryptionOutput::builder().build()),
            versioning: mock!(S3::put_bucket_versioning)
                .match_requests(move |r| is_access(r.bucket()))
                .then_output(|| PutBucketVersioningOutput::builder().build()),
            lifecycle: mock!(S3::put_bucket_lifecycle_configuration)
                .match_requests(move |r| {
                    is_access(r.bucket())
                        && r.lifecycle_configuration().is_some_and(|c| {
                            let rule = &c.rules()[0];
                            rule.expiration().and_then(|e| e.days())
                                == Some(crate::ACCESS_LOG_RETENTION_DAYS)
                                && rule
                                    .noncurrent_version_expiration()
                                    .and_then(|n| n.noncurrent_days())
                                    == Some(crate::ACCESS_LOG_RETENTION_DAYS)
                        })
                })
                .then_output(|| PutBucketLifecycleConfigurationOutput::builder().build()),
            policy: mock!(S3::put_bucket_policy)
                .match_requests(move |r| {
                    is_access(r.bucket())
                        && r.policy().is_some_and(|p| {
                            let p: Value = serde_json::from_str(p).unwrap();
                            let delivery = p["Statement"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .filter(|s| {
                                    s["Principal"]["Service"] == json!("logging.s3.amazonaws.com")
                                })
                                .count();
                            delivery == PURPOSES.len()
                                && p.to_string().contains("\"aws:SecureTransport\":\"false\"")
                        })
                })
                .then_output(|| PutBucketPolicyOutput::builder().build()),
            logging: mock!(S3::put_bucket_logging)
                .match_requests(move |r| is_access(r.bucket()))
                .then_output(|| PutBucketLoggingOutput::builder().build()),
        }
    }

    fn rules(&self) -> Vec<&Rule> {
        vec![
            &self.ownership,
            &self.public_access,
            &self.encryption,
            &self.versioning,
            &self.lifecycle,
            &self.policy,
            &self.logging,
        ]
    }
}

fn bucket_name(purpose: &str) -> String {
    bucket(purpose, "us-west-2")
}

fn lifecycle_matches(
    r: &aws_sdk_s3::operation::put_bucket_lifecycle_configuration::PutBucketLifecycleConfigurationInput,
    region: &str,
    current_days: Option<i32>,
) -> bool {
    let Some(rule) = r.lifecycle_configuration().map(|c| &c.rules()[0]) else {
        return false;
    };
    let expiring = ["metrics", "logs"]
        .iter()
        .any(|p| r.bucket() == Some(bucket(p, region).as_str()));
    expiring == current_days.is_some()
        && rule.expiration().and_then(|e| e.days()) == current_days
        && rule
            .noncurrent_version_expiration()
            .and_then(|n| n.noncurrent_days())
            == Some(45)
        && rule
            .abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation())
            == Some(7)
}

#[tokio::test]
async fn existing_buckets_are_configured_and_nothing_is_created() {
    let head = head_found();
    let tags = tags_of("acme");
    let create = mock!(S3::create_bucket).then_output(|| CreateBucketOutput::builder().build());
    let puts = Puts::new();
    let mut rules = vec![&head, &tags, &create];
    rules.extend(puts.rules());
    let (deps, recorder) = deps(&rules);

    let out = handle(&deps, event()).await.expect("ensure");
    assert_eq!(create.num_calls(), 0);
    assert_eq!(puts.tagging.num_calls(), 0, "tags already there");
    assert_eq!(out["created"], json!([]));
    assert_eq!(out["ready"], json!(true));
    assert_eq!(out["kms_key_arn"], json!(KEY));
    for purpose in PURPOSES {
        assert_eq!(out["buckets"][purpose], json!(bucket_name(purpose)));
    }
    // Every setting on every bucket, with the values the spec asks for.
    assert_eq!(puts.ownership.num_calls(), 4);
    assert_eq!(puts.public_access.num_calls(), 4);
    assert_eq!(puts.encryption.num_calls(), 4);
    assert_eq!(puts.versioning.num_calls(), 4);
    assert_eq!(puts.lifecycle_expiring.num_calls(), 2, "metrics and logs");
    assert_eq!(
        puts.lifecycle_versions_only.num_calls(),
        2,
        "config and backups"
    );
    // Access logs have a bucket of their own now, so the logs bucket logs too.
    assert_eq!(puts.logging.num_calls(), 4, "every data bucket");
    assert_eq!(puts.policy.num_calls(), 4);
    for rule in puts.access.rules() {
        let expected = usize::from(!std::ptr::eq(rule, &puts.access.logging));
        assert_eq!(rule.num_calls(), expected, "the access-logs bucket, once");
    }
    assert_eq!(out["access_logs_bucket"], json!(bucket_name("access")));
    assert_eq!(recorder.entries.lock().unwrap()[0].outcome, "unchanged");
    // Four buckets, the access-logs bucket, the trail and the flow log.
    assert_eq!(recorder.resources.lock().unwrap().len(), 7);
    assert_eq!(
        out["trail_arn"],
        json!("arn:aws:cloudtrail:us-west-2:123456789012:trail/apiary-acme-trail")
    );
    assert_eq!(out["flow_log_id"], json!("fl-0abc"));
    let saved = recorder
        .saved("acme", "storage")
        .expect("kept for later layers");
    let layer: StorageOutput = serde_json::from_value(saved).expect("reads back as the layer");
    assert_eq!(layer.buckets["logs"], bucket_name("logs"));
}

#[tokio::test]
async fn missing_buckets_are_created_with_a_location_constraint_and_tagged() {
    let head = head_not_found();
    let tags = no_tags();
    let create = mock!(S3::create_bucket)
        .match_requests(|r| {
            r.object_ownership() == Some(&ObjectOwnership::BucketOwnerEnforced)
                && r.create_bucket_configuration()
                    .and_then(|c| c.location_constraint())
                    .is_some_and(|l| l.as_str() == "us-west-2")
        })
        .then_output(|| CreateBucketOutput::builder().build());
    let puts = Puts::new();
    let mut rules = vec![&head, &tags, &create];
    rules.extend(puts.rules());
    let (deps, recorder) = deps(&rules);

    let out = handle(&deps, event()).await.expect("ensure");
    assert_eq!(
        create.num_calls(),
        5,
        "four data buckets and the access-logs bucket"
    );
    assert_eq!(puts.tagging.num_calls(), 5);
    let mut created: Vec<String> = PURPOSES.iter().map(|p| bucket_name(p)).collect();
    created.push(bucket_name("access"));
    assert_eq!(out["created"], json!(created));
    assert_eq!(recorder.entries.lock().unwrap()[0].outcome, "created");
}

#[tokio::test]
async fn us_east_1_buckets_have_no_location_constraint() {
    let head = head_not_found();
    let tags = no_tags();
    let create = mock!(S3::create_bucket)
        .match_requests(|r| r.create_bucket_configuration().is_none())
        .then_output(|| CreateBucketOutput::builder().build());
    let puts = Puts::in_region("us-east-1");
    let mut rules = vec![&head, &tags, &create];
    rules.extend(puts.rules());
    let (deps, _) = deps_in("us-east-1", &rules);
    let out = handle(&deps, event()).await.expect("ensure");
    assert_eq!(create.num_calls(), 5);
    assert_eq!(out["buckets"]["logs"], json!(bucket("logs", "us-east-1")));
    assert_eq!(
        puts.logging.num_calls(),
        4,
        "every data bucket, into the access-logs one"
    );
    assert_eq!(puts.lifecycle_expiring.num_calls(), 2);
}

#[tokio::test]
async fn a_bucket_owned_by_another_account_is_a_conflict() {
    let head = mock!(S3::head_bucket).then_http_response(|| {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(403).unwrap(),
            aws_smithy_types::body::SdkBody::empty(),
        )
    });
    let create = mock!(S3::create_bucket).then_output(|| CreateBucketOutput::builder().build());
    let (deps, recorder) = deps(&[&head, &create]);
    let err = handle(&deps, event()).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Conflict);
    let text = err.to_string();
    assert!(
        text.contains(&bucket_name("logs")) && text.contains("owned by another account"),
        "{text}"
    );
    assert_eq!(create.num_calls(), 0);
    assert_eq!(recorder.entries.lock().unwrap()[0].outcome, "failed");
}

#[tokio::test]
async fn a_bucket_tagged_for_another_deployment_is_a_conflict() {
    let head = head_found();
    let tags = tags_of("other");
    let puts = Puts::new();
    let mut rules = vec![&head, &tags];
    rules.extend(puts.rules());
    let (deps, _) = deps(&rules);
    let err = handle(&deps, event()).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Conflict);
    assert!(err.to_string().contains("apiary:deployment=other"), "{err}");
    assert_eq!(puts.tagging.num_calls(), 0);
    assert_eq!(puts.encryption.num_calls(), 0);
}

#[tokio::test]
async fn access_denied_on_create_fails_fast_naming_the_bucket() {
    let head = head_not_found();
    let create = mock!(S3::create_bucket).then_error(|| {
        CreateBucketError::generic(
            ErrorMetadata::builder()
                .code("AccessDenied")
                .message("not authorized to perform s3:CreateBucket")
                .build(),
        )
    });
    let (deps, _) = deps(&[&head, &create]);
    let err = handle(&deps, event()).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(
        err.to_string()
            .contains(&format!("CreateBucket {}", bucket_name("logs"))),
        "{err}"
    );
    assert_eq!(create.num_calls(), 1);
}

#[tokio::test]
async fn missing_keys_layer_or_unknown_action_is_rejected_before_any_call() {
    let head = head_found();
    let (no_keys, _) = deps_over(state_with(json!({})), "us-west-2", &[&head]);
    let err = handle(&no_keys, event()).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
    assert!(err.to_string().contains("layers.keys"), "{err}");
    let (deps, _) = deps(&[&head]);
    let status = apiary_core::step::event("status", "acme");
    assert_eq!(
        handle(&deps, status).await.unwrap_err().name(),
        ErrorName::InvalidInput
    );
    assert_eq!(head.num_calls(), 0);
}

#[test]
fn policies_deny_plain_http_and_scope_log_delivery() {
    let tls: Value = serde_json::from_str(&policy::tls_only_policy("us-west-2", "b")).unwrap();
    let deny = &tls["Statement"][0];
    assert_eq!(deny["Effect"], json!("Deny"));
    assert_eq!(deny["Principal"], json!({"AWS": "*"}));
    assert_eq!(
        deny["Condition"]["Bool"]["aws:SecureTransport"],
        json!("false")
    );
    assert_eq!(
        deny["Resource"],
        json!(["arn:aws:s3:::b", "arn:aws:s3:::b/*"])
    );

    let logs: Value = serde_json::from_str(&policy::logs_bucket_policy(
        "us-gov-west-1",
        ACCOUNT,
        "logs",
        &["m", "c"],
        &policy::Audit { trail: None },
    ))
    .unwrap();
    let statements = logs["Statement"].as_array().unwrap();
    // TLS, two access-log sources, and log delivery's ACL check and write.
    assert_eq!(statements.len(), 5);
    assert_eq!(statements[0]["Sid"], json!("DenyInsecureTransport"));
    let delivery = &statements[1];
    assert_eq!(
        delivery["Principal"]["Service"],
        json!("logging.s3.amazonaws.com")
    );
    assert_eq!(
        delivery["Resource"],
        json!("arn:aws-us-gov:s3:::logs/s3-access/m/*")
    );
    assert_eq!(
        delivery["Condition"]["StringEquals"]["aws:SourceAccount"],
        json!(ACCOUNT)
    );
    assert_eq!(
        delivery["Condition"]["ArnLike"]["aws:SourceArn"],
        json!("arn:aws-us-gov:s3:::m")
    );
}

#[test]
fn elasticache_is_granted_the_way_aws_documents_for_the_region() {
    use crate::exports::{
        ELASTICACHE_CANONICAL_ID, ELASTICACHE_CANONICAL_ID_GOV_WEST, ElastiCacheGrant,
        elasticache_grant, primary_policy,
    };
    // Enabled by default (before 20 March 2019): the ACL grant.
    for region in ["us-east-1", "eu-north-1", "ap-northeast-3", "sa-east-1"] {
        assert_eq!(
            elasticache_grant(region),
            Ok(ElastiCacheGrant::Acl(ELASTICACHE_CANONICAL_ID)),
            "{region}"
        );
    }
    // Opt-in: the regional service principal in the bucket policy.
    assert_eq!(
        elasticache_grant("ap-east-1"),
        Ok(ElastiCacheGrant::Policy(
            "ap-east-1.elasticache-snapshot.amazonaws.com".into()
        ))
    );
    assert_eq!(
        elasticache_grant("us-gov-west-1"),
        Ok(ElastiCacheGrant::Acl(ELASTICACHE_CANONICAL_ID_GOV_WEST))
    );
    // No documented grant: said, never guessed.
    for region in ["cn-north-1", "us-gov-east-1"] {
        let why = elasticache_grant(region).unwrap_err();
        assert!(why.contains(region), "{why}");
    }

    let grant = elasticache_grant("me-south-1").unwrap();
    let policy: Value = serde_json::from_str(&primary_policy("me-south-1", "b", &grant)).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements[0]["Sid"], json!("DenyInsecureTransport"));
    assert_eq!(
        statements[1]["Principal"]["Service"],
        json!("me-south-1.elasticache-snapshot.amazonaws.com")
    );
    assert!(
        statements[1]["Action"]
            .as_array()
            .unwrap()
            .contains(&json!("s3:PutObject"))
    );
    // With the ACL grant the policy is TLS only.
    let acl = elasticache_grant("us-west-2").unwrap();
    let policy: Value = serde_json::from_str(&primary_policy("us-west-2", "b", &acl)).unwrap();
    assert_eq!(policy["Statement"].as_array().unwrap().len(), 1);
}

#[test]
fn the_export_acl_gives_elasticache_list_write_and_read_permissions_only() {
    use aws_sdk_s3::types::Permission;
    let grants = crate::exports::acl_grants("owner-id", "ec-id").unwrap();
    let of = |id: &str| -> Vec<Permission> {
        grants
            .iter()
            .filter(|g| g.grantee().and_then(|e| e.id()) == Some(id))
            .filter_map(|g| g.permission().cloned())
            .collect()
    };
    assert_eq!(of("owner-id"), [Permission::FullControl]);
    assert_eq!(
        of("ec-id"),
        [Permission::Read, Permission::Write, Permission::ReadAcp]
    );
}

#[test]
fn a_replication_rule_refused_for_versioning_not_yet_propagated_is_transient() {
    use crate::exports::versioning_not_yet_seen;
    assert!(versioning_not_yet_seen(
        Some("InvalidRequest"),
        Some("Destination bucket must have versioning enabled.")
    ));
    assert!(versioning_not_yet_seen(
        Some("InvalidRequest"),
        Some("Versioning must be 'Enabled' on the bucket to apply a replication configuration")
    ));
    // Anything else stays what it is.
    assert!(!versioning_not_yet_seen(
        Some("InvalidRequest"),
        Some("Role is not valid")
    ));
    assert!(!versioning_not_yet_seen(
        Some("AccessDenied"),
        Some("versioning")
    ));
    assert!(!versioning_not_yet_seen(None, None));
}
