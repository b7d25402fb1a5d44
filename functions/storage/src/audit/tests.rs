//! The trail, the flow log and the policies that let them deliver, with mocked clients.

use aws_sdk_cloudtrail::Client as CloudTrail;
use aws_sdk_cloudtrail::operation::create_trail::CreateTrailOutput;
use aws_sdk_cloudtrail::operation::get_trail::GetTrailError;
use aws_sdk_cloudtrail::operation::get_trail_status::GetTrailStatusOutput;
use aws_sdk_cloudtrail::operation::start_logging::StartLoggingOutput;
use aws_sdk_cloudtrail::operation::update_trail::UpdateTrailOutput;
use aws_sdk_cloudtrail::types::error::TrailNotFoundException;
use aws_sdk_ec2::Client as Ec2;
use aws_sdk_ec2::operation::create_flow_logs::CreateFlowLogsOutput;
use aws_sdk_ec2::operation::describe_flow_logs::DescribeFlowLogsOutput;
use aws_sdk_ec2::types::{FlowLogsResourceType, LogDestinationType, ResourceType, TrafficType};
use aws_sdk_s3::Client as S3;
use aws_sdk_s3::operation::get_bucket_tagging::GetBucketTaggingOutput;
use aws_sdk_s3::operation::head_bucket::HeadBucketOutput;
use aws_smithy_mocks::{Rule, mock};
use serde_json::{Value, json};

use crate::policy::{self, Audit};
use crate::tests::{
    ACCOUNT, AuditInPlace, KEY, VPC, bucket, deps_with_audit, event, expected_trail, keys_built,
    state_with,
};
use crate::{TrailChoice, handle};

const TRAIL_ARN: &str = "arn:aws:cloudtrail:us-west-2:123456789012:trail/apiary-acme-trail";

/// Every S3 call answered as for buckets that exist and are tagged: only the audit
/// calls differ between the tests here.
fn buckets_in_place() -> Vec<Rule> {
    let tag = aws_sdk_s3::types::Tag::builder()
        .key("apiary:deployment")
        .value("acme")
        .build()
        .unwrap();
    vec![
        mock!(S3::head_bucket).then_output(|| HeadBucketOutput::builder().build()),
        mock!(S3::get_bucket_tagging).then_output(move || {
            GetBucketTaggingOutput::builder()
                .tag_set(tag.clone())
                .build()
                .unwrap()
        }),
        mock!(S3::put_bucket_tagging).then_output(|| {
            aws_sdk_s3::operation::put_bucket_tagging::PutBucketTaggingOutput::builder().build()
        }),
        mock!(S3::put_bucket_ownership_controls).then_output(|| {
            aws_sdk_s3::operation::put_bucket_ownership_controls::PutBucketOwnershipControlsOutput::builder().build()
        }),
        mock!(S3::put_public_access_block).then_output(|| {
            aws_sdk_s3::operation::put_public_access_block::PutPublicAccessBlockOutput::builder()
                .build()
        }),
        mock!(S3::put_bucket_encryption).then_output(|| {
            aws_sdk_s3::operation::put_bucket_encryption::PutBucketEncryptionOutput::builder()
                .build()
        }),
        mock!(S3::put_bucket_versioning).then_output(|| {
            aws_sdk_s3::operation::put_bucket_versioning::PutBucketVersioningOutput::builder()
                .build()
        }),
        mock!(S3::put_bucket_lifecycle_configuration).then_output(|| {
            aws_sdk_s3::operation::put_bucket_lifecycle_configuration::PutBucketLifecycleConfigurationOutput::builder().build()
        }),
        mock!(S3::put_bucket_logging).then_output(|| {
            aws_sdk_s3::operation::put_bucket_logging::PutBucketLoggingOutput::builder().build()
        }),
    ]
}

/// PutBucketPolicy on the logs bucket, keeping the policy it was sent.
fn logs_policy_put() -> (Rule, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = seen.clone();
    let rule = mock!(S3::put_bucket_policy)
        .match_requests(move |r| {
            if r.bucket() == Some(bucket("logs", "us-west-2").as_str()) {
                keep.lock()
                    .unwrap()
                    .push(r.policy().unwrap_or_default().to_owned());
            }
            true
        })
        .then_output(|| {
            aws_sdk_s3::operation::put_bucket_policy::PutBucketPolicyOutput::builder().build()
        });
    (rule, seen)
}

/// What a first run sees: no trail, no flow log.
struct Missing {
    get_trail: Rule,
    create_trail: Rule,
    trail_status: Rule,
    start_logging: Rule,
    no_flow_logs: Rule,
    create_flow_logs: Rule,
}

impl Missing {
    fn new() -> Self {
        let logs = bucket("logs", "us-west-2");
        let destination = format!("arn:aws:s3:::{logs}");
        Missing {
            get_trail: mock!(CloudTrail::get_trail).then_error(|| {
                GetTrailError::TrailNotFoundException(
                    TrailNotFoundException::builder()
                        .message("Unknown trail")
                        .build(),
                )
            }),
            create_trail: mock!(CloudTrail::create_trail)
                .match_requests(move |r| {
                    r.name() == Some("apiary-acme-trail")
                        && r.s3_bucket_name() == Some(logs.as_str())
                        && r.s3_key_prefix() == Some("cloudtrail")
                        && r.kms_key_id() == Some(KEY)
                        && r.enable_log_file_validation() == Some(true)
                        && r.include_global_service_events() == Some(true)
                        && r.is_multi_region_trail() == Some(true)
                        && r.tags_list()
                            .iter()
                            .any(|t| t.key() == "apiary:deployment" && t.value() == Some("acme"))
                })
                .then_output(|| CreateTrailOutput::builder().trail_arn(TRAIL_ARN).build()),
            trail_status: mock!(CloudTrail::get_trail_status)
                .then_output(|| GetTrailStatusOutput::builder().is_logging(false).build()),
            start_logging: mock!(CloudTrail::start_logging)
                .match_requests(|r| r.name() == Some("apiary-acme-trail"))
                .then_output(|| StartLoggingOutput::builder().build()),
            no_flow_logs: mock!(Ec2::describe_flow_logs)
                .then_output(|| DescribeFlowLogsOutput::builder().build()),
            create_flow_logs: mock!(Ec2::create_flow_logs)
                .match_requests(move |r| {
                    r.resource_ids() == [VPC]
                        && r.resource_type() == Some(&FlowLogsResourceType::Vpc)
                        && r.traffic_type() == Some(&TrafficType::All)
                        && r.log_destination_type() == Some(&LogDestinationType::S3)
                        && r.log_destination() == Some(destination.as_str())
                        && r.max_aggregation_interval() == Some(600)
                        && r.client_token().is_some_and(|t| t.starts_with("apiary-"))
                        && r.tag_specifications().first().is_some_and(|s| {
                            s.resource_type() == Some(&ResourceType::VpcFlowLog)
                                && s.tags()
                                    .iter()
                                    .any(|t| t.key() == Some("apiary:deployment"))
                        })
                })
                .then_output(|| {
                    CreateFlowLogsOutput::builder()
                        .flow_log_ids("fl-new")
                        .build()
                }),
        }
    }
}

#[tokio::test]
async fn a_first_run_creates_the_trail_and_the_flow_log_after_the_bucket_policy() {
    let s3 = buckets_in_place();
    let (policy, policies) = logs_policy_put();
    let mut s3_rules: Vec<&Rule> = s3.iter().collect();
    s3_rules.push(&policy);
    let missing = Missing::new();
    let (deps, recorder) = deps_with_audit(
        state_with(keys_built()),
        "us-west-2",
        &s3_rules,
        &[&missing.no_flow_logs, &missing.create_flow_logs],
        &[
            &missing.get_trail,
            &missing.create_trail,
            &missing.trail_status,
            &missing.start_logging,
        ],
    );

    let out = handle(&deps, event()).await.expect("ensure");
    assert_eq!(missing.create_trail.num_calls(), 1);
    assert_eq!(missing.start_logging.num_calls(), 1);
    assert_eq!(missing.create_flow_logs.num_calls(), 1);
    assert_eq!(out["created"], json!(["apiary-acme-trail", "fl-new"]));
    assert_eq!(out["trail_arn"], json!(TRAIL_ARN));
    assert_eq!(out["flow_log_id"], json!("fl-new"));
    assert_eq!(recorder.entries.lock().unwrap()[0].outcome, "created");
    // The logs bucket's policy admitted both services before they were set up.
    let sent: Value = serde_json::from_str(&policies.lock().unwrap()[0]).unwrap();
    let sids: Vec<&str> = sent["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["Sid"].as_str())
        .collect();
    for sid in [
        "CloudTrailAclCheck",
        "CloudTrailWrite",
        "LogDeliveryAclCheck",
        "LogDeliveryWrite",
    ] {
        assert!(sids.contains(&sid), "{sid} in {sids:?}");
    }
}

#[tokio::test]
async fn a_second_run_creates_nothing() {
    let s3 = buckets_in_place();
    let (policy, _) = logs_policy_put();
    let mut s3_rules: Vec<&Rule> = s3.iter().collect();
    s3_rules.push(&policy);
    let in_place = AuditInPlace::new("us-west-2");
    let missing = Missing::new();
    let mut cloudtrail = in_place.cloudtrail();
    cloudtrail.extend([&missing.create_trail, &missing.start_logging]);
    let mut ec2 = in_place.ec2();
    ec2.push(&missing.create_flow_logs);
    let (deps, recorder) = deps_with_audit(
        state_with(keys_built()),
        "us-west-2",
        &s3_rules,
        &ec2,
        &cloudtrail,
    );

    let out = handle(&deps, event()).await.expect("ensure");
    assert_eq!(out["created"], json!([]), "{out}");
    assert_eq!(missing.create_trail.num_calls(), 0);
    assert_eq!(missing.start_logging.num_calls(), 0);
    assert_eq!(missing.create_flow_logs.num_calls(), 0);
    assert_eq!(out["trail_arn"], json!(TRAIL_ARN));
    assert_eq!(recorder.entries.lock().unwrap()[0].outcome, "unchanged");
}

#[tokio::test]
async fn a_trail_changed_by_hand_is_brought_back() {
    let s3 = buckets_in_place();
    let (policy, _) = logs_policy_put();
    let mut s3_rules: Vec<&Rule> = s3.iter().collect();
    s3_rules.push(&policy);
    let in_place = AuditInPlace::new("us-west-2");
    let unencrypted = mock!(CloudTrail::get_trail).then_output(|| {
        let mut trail = expected_trail("us-west-2");
        trail.kms_key_id = None;
        trail.log_file_validation_enabled = Some(false);
        aws_sdk_cloudtrail::operation::get_trail::GetTrailOutput::builder()
            .trail(trail)
            .build()
    });
    let update = mock!(CloudTrail::update_trail)
        .match_requests(|r| {
            r.kms_key_id() == Some(KEY) && r.enable_log_file_validation() == Some(true)
        })
        .then_output(|| UpdateTrailOutput::builder().build());
    let (deps, _) = deps_with_audit(
        state_with(keys_built()),
        "us-west-2",
        &s3_rules,
        &in_place.ec2(),
        &[&unencrypted, &update, &in_place.trail_status],
    );
    let out = handle(&deps, event()).await.expect("ensure");
    assert_eq!(update.num_calls(), 1);
    assert_eq!(out["created"], json!([]));
}

#[tokio::test]
async fn an_organisation_trail_is_used_and_no_trail_is_made() {
    let s3 = buckets_in_place();
    let (policy, policies) = logs_policy_put();
    let mut s3_rules: Vec<&Rule> = s3.iter().collect();
    s3_rules.push(&policy);
    let in_place = AuditInPlace::new("us-west-2");
    let missing = Missing::new();
    let (deps, _) = deps_with_audit(
        state_with(keys_built()),
        "us-west-2",
        &s3_rules,
        &in_place.ec2(),
        &[&missing.get_trail, &missing.create_trail],
    );
    let org = "arn:aws:cloudtrail:us-east-1:999988887777:trail/org-trail";
    let deps = deps.with_trail(TrailChoice::from_parameter(Some(format!(" {org} "))));
    let out = handle(&deps, event()).await.expect("ensure");
    assert_eq!(out["trail_arn"], json!(org));
    assert_eq!(missing.get_trail.num_calls(), 0);
    assert_eq!(missing.create_trail.num_calls(), 0);
    let sent = policies.lock().unwrap()[0].clone();
    assert!(!sent.contains("cloudtrail.amazonaws.com"), "{sent}");
    assert!(sent.contains("delivery.logs.amazonaws.com"), "{sent}");
}

#[test]
fn an_empty_parameter_means_the_deployment_s_own_trail() {
    assert_eq!(TrailChoice::from_parameter(None), TrailChoice::Own);
    assert_eq!(
        TrailChoice::from_parameter(Some("  ".to_owned())),
        TrailChoice::Own
    );
}

#[test]
fn the_logs_bucket_admits_cloudtrail_and_log_delivery_only_under_their_prefixes() {
    let policy: Value = serde_json::from_str(&policy::logs_bucket_policy(
        "us-west-2",
        ACCOUNT,
        "logs",
        &[],
        &Audit {
            trail: Some("apiary-acme-trail"),
        },
    ))
    .unwrap();
    let by_sid = |sid: &str| -> Value {
        policy["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == json!(sid))
            .cloned()
            .unwrap_or_else(|| panic!("{sid}"))
    };
    let acl = by_sid("CloudTrailAclCheck");
    assert_eq!(
        acl["Principal"]["Service"],
        json!("cloudtrail.amazonaws.com")
    );
    assert_eq!(acl["Action"], json!("s3:GetBucketAcl"));
    assert_eq!(acl["Resource"], json!("arn:aws:s3:::logs"));
    assert_eq!(
        acl["Condition"],
        json!({"StringEquals": {"aws:SourceArn": TRAIL_ARN}})
    );
    let write = by_sid("CloudTrailWrite");
    assert_eq!(write["Action"], json!("s3:PutObject"));
    assert_eq!(
        write["Resource"],
        json!(format!("arn:aws:s3:::logs/cloudtrail/AWSLogs/{ACCOUNT}/*"))
    );
    assert_eq!(
        write["Condition"],
        json!({"StringEquals": {
            "s3:x-amz-acl": "bucket-owner-full-control",
            "aws:SourceArn": TRAIL_ARN
        }})
    );

    let sources =
        json!({"ArnLike": {"aws:SourceArn": format!("arn:aws:logs:us-west-2:{ACCOUNT}:*")}});
    let check = by_sid("LogDeliveryAclCheck");
    assert_eq!(
        check["Principal"]["Service"],
        json!("delivery.logs.amazonaws.com")
    );
    assert_eq!(check["Action"], json!(["s3:GetBucketAcl", "s3:ListBucket"]));
    assert_eq!(check["Resource"], json!("arn:aws:s3:::logs"));
    assert_eq!(
        check["Condition"]["StringEquals"]["aws:SourceAccount"],
        json!(ACCOUNT)
    );
    assert_eq!(check["Condition"]["ArnLike"], sources["ArnLike"]);
    let deliver = by_sid("LogDeliveryWrite");
    assert_eq!(
        deliver["Resource"],
        json!(format!("arn:aws:s3:::logs/AWSLogs/{ACCOUNT}/*"))
    );
    assert_eq!(
        deliver["Condition"]["StringEquals"],
        json!({"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceAccount": ACCOUNT})
    );
    assert_eq!(deliver["Condition"]["ArnLike"], sources["ArnLike"]);
}

/// A trail in one region outside us-east-1 never sees IAM's events: it is not the trail
/// this deployment expects, and a run brings it back to every region.
#[test]
fn a_single_region_trail_does_not_match() {
    let logs = bucket("logs", "us-west-2");
    let mut trail = expected_trail("us-west-2");
    assert!(crate::audit::trail_matches(&trail, &logs, KEY));
    trail.is_multi_region_trail = Some(false);
    assert!(!crate::audit::trail_matches(&trail, &logs, KEY));
}

/// CloudTrail checks the bucket and key policies when the trail is made; on AWS a policy
/// written a moment earlier may not be visible yet: retried, not fatal.
#[tokio::test]
async fn a_policy_not_yet_visible_to_cloudtrail_is_retried() {
    use aws_sdk_cloudtrail::operation::create_trail::CreateTrailError;
    use aws_sdk_cloudtrail::types::error::InsufficientEncryptionPolicyException;

    let s3 = buckets_in_place();
    let (policy, _) = logs_policy_put();
    let mut s3_rules: Vec<&Rule> = s3.iter().collect();
    s3_rules.push(&policy);
    let missing = Missing::new();
    let refused = mock!(CloudTrail::create_trail).then_error(|| {
        CreateTrailError::InsufficientEncryptionPolicyException(
            InsufficientEncryptionPolicyException::builder()
                .message("Insufficient permissions to access S3 bucket or KMS key")
                .build(),
        )
    });
    let (deps, _) = deps_with_audit(
        state_with(keys_built()),
        "us-west-2",
        &s3_rules,
        &[&missing.no_flow_logs, &missing.create_flow_logs],
        &[&missing.get_trail, &refused],
    );
    let err = handle(&deps, event()).await.unwrap_err();
    assert_eq!(err.name(), apiary_core::ErrorName::Retryable, "{err}");
    assert!(
        err.to_string().contains("CreateTrail apiary-acme-trail"),
        "{err}"
    );
}
