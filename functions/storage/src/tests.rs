//! Unit tests with mocked clients: the paths the emulator cannot produce.

use std::sync::Arc;

use apiary_core::ErrorName;
use apiary_core::step::MemoryRecorder;
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

const ACCOUNT: &str = "123456789012";
const KEY: &str = "arn:aws:kms:us-west-2:123456789012:key/s3-key";

fn event() -> Value {
    apiary_core::step::event("ensure", "acme")
}

/// Deployment acme as the lock step stored it, with `layers` built.
fn state_with(layers: Value) -> MemoryRecorder {
    MemoryRecorder::with(
        &json!({"name": "acme", "dns": {"domain": "hh.example.com"}, "storage": {"retention_days": 45}}),
        &layers,
    )
}

/// The keys layer the buckets are encrypted with.
fn keys_built() -> Value {
    json!({"keys": {"keys": {"s3": {"key_id": "s3-key", "arn": KEY, "alias": "alias/apiary/acme/s3"}}}})
}

fn bucket(purpose: &str, region: &str) -> String {
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
    let identity = mock!(Sts::get_caller_identity)
        .then_output(|| GetCallerIdentityOutput::builder().account(ACCOUNT).build());
    (
        Deps {
            s3: mock_client!(aws_sdk_s3, RuleMode::MatchAny, rules, |c| c
                .region(Region::new(region))),
            sts: mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&identity]),
            recorder: Arc::new(recorder.clone()),
        },
        recorder,
    )
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
                            l.target_bucket() == bucket("logs", region)
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
        vec![
            &self.tagging,
            &self.ownership,
            &self.public_access,
            &self.encryption,
            &self.versioning,
            &self.lifecycle_expiring,
            &self.lifecycle_versions_only,
            &self.logging,
            &self.policy,
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
    assert_eq!(puts.logging.num_calls(), 3, "all but the logs bucket");
    assert_eq!(puts.policy.num_calls(), 4);
    assert_eq!(recorder.entries.lock().unwrap()[0].outcome, "unchanged");
    assert_eq!(recorder.resources.lock().unwrap().len(), 4);
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
    assert_eq!(create.num_calls(), 4);
    assert_eq!(puts.tagging.num_calls(), 4);
    let created: Vec<String> = PURPOSES.iter().map(|p| bucket_name(p)).collect();
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
    assert_eq!(create.num_calls(), 4);
    assert_eq!(out["buckets"]["logs"], json!(bucket("logs", "us-east-1")));
    assert_eq!(puts.logging.num_calls(), 3);
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
    ))
    .unwrap();
    let statements = logs["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 3);
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
