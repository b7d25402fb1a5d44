use apiary_core::ErrorName;
use aws_sdk_eks::operation::create_pod_identity_association::CreatePodIdentityAssociationError;
use aws_sdk_eks::operation::update_pod_identity_association::UpdatePodIdentityAssociationOutput;
use aws_sdk_eks::types::error::InvalidParameterException;
use aws_smithy_mocks::mock;
use aws_smithy_types::error::ErrorMetadata;

use serde_json::json;

use super::*;
use crate::KubeAccess;
use crate::test_support::*;
use apiary_core::fixtures::{self, Fixture};

async fn run(deps: &Deps) -> Result<(PodIdentity, Vec<String>)> {
    let log = StepLog::new(
        deps.recorder.as_ref(),
        fixtures::NAME,
        Layer::Workloads,
        "workloads",
        "exec-1",
        "ensure",
    );
    let names = Names::new(fixtures::NAME);
    let identity = ensure(deps, &names, &Fixture::test().layers, "us-west-2", &log).await?;
    Ok((identity, log.created_ids()))
}

fn render() -> KubeAccess {
    KubeAccess::Render(std::env::temp_dir())
}

#[tokio::test]
async fn creates_the_role_its_policy_and_the_association() {
    let iam = FreshIam::new();
    let eks = FreshEks::new();
    let (deps, recorder) = mock_deps(&eks.rules(), &iam.rules(), render(), false);
    let (identity, created) = run(&deps).await.unwrap();
    assert_eq!(identity.role_name, ROLE_NAME);
    assert_eq!(identity.role_arn, ROLE_ARN);
    assert_eq!(
        identity.association,
        Association::Bound {
            id: ASSOCIATION_ID.into(),
            arn: ASSOCIATION_ARN.into(),
            change: "created"
        }
    );
    assert_eq!(created, [ROLE_NAME, ASSOCIATION_ID]);
    assert_eq!(iam.create_role.num_calls(), 1);
    assert_eq!(iam.put_policy.num_calls(), 1);
    assert_eq!(eks.create.num_calls(), 1);
    let resources = recorder.resources.lock().unwrap().clone();
    let kinds: Vec<(&str, &str)> = resources
        .iter()
        .map(|r| (r.kind.as_str(), r.id.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("iam:role", ROLE_NAME),
            ("eks:pod-identity-association", ASSOCIATION_ID)
        ]
    );
    assert!(resources.iter().all(|r| r.layer == "workloads"));
}

#[tokio::test]
async fn a_second_run_reads_and_changes_nothing() {
    let iam = ExistingIam::new();
    let eks = ExistingEks::new(ROLE_ARN);
    // No create, put, tag or update rule: any write would panic in the mock.
    let (deps, _recorder) = mock_deps(&eks.rules(), &iam.rules(), render(), false);
    let (identity, created) = run(&deps).await.unwrap();
    assert!(created.is_empty(), "{created:?}");
    assert_eq!(
        identity.association,
        Association::Bound {
            id: ASSOCIATION_ID.into(),
            arn: ASSOCIATION_ARN.into(),
            change: "unchanged"
        }
    );
    assert_eq!(iam.get_role.num_calls(), 1);
    assert_eq!(iam.get_policy.num_calls(), 1);
    assert_eq!(eks.describe.num_calls(), 1);
}

#[tokio::test]
async fn an_association_bound_to_another_role_is_rebound() {
    let iam = ExistingIam::new();
    let eks = ExistingEks::new("arn:aws:iam::123456789012:role/someone-else");
    let update = mock!(aws_sdk_eks::Client::update_pod_identity_association)
        .match_requests(|r| {
            r.association_id() == Some(ASSOCIATION_ID) && r.role_arn() == Some(ROLE_ARN)
        })
        .then_output(|| UpdatePodIdentityAssociationOutput::builder().build());
    let (deps, _recorder) = mock_deps(
        &[&eks.list, &eks.describe, &update],
        &iam.rules(),
        render(),
        false,
    );
    let (identity, _) = run(&deps).await.unwrap();
    assert!(matches!(
        identity.association,
        Association::Bound {
            change: "updated",
            ..
        }
    ));
    assert_eq!(update.num_calls(), 1);
}

#[tokio::test]
async fn a_just_created_role_not_yet_visible_to_eks_is_retried() {
    let iam = FreshIam::new();
    let list = FreshEks::new().list;
    let create = mock!(aws_sdk_eks::Client::create_pod_identity_association).then_error(|| {
        CreatePodIdentityAssociationError::InvalidParameterException(
            InvalidParameterException::builder()
                .message("Role arn:aws:iam::123456789012:role/apiary-acme-prod-ingestion cannot be assumed")
                .meta(ErrorMetadata::builder().code("InvalidParameterException").build())
                .build(),
        )
    });
    let (deps, _recorder) = mock_deps(&[&list, &create], &iam.rules(), render(), false);
    let err = run(&deps).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::NotReady);
    assert!(err.to_string().contains("not visible to EKS yet"), "{err}");
}

fn html_404() -> aws_smithy_runtime_api::http::Response {
    aws_smithy_runtime_api::http::Response::new(
        aws_smithy_runtime_api::http::StatusCode::try_from(404).unwrap(),
        aws_smithy_types::body::SdkBody::from(
            "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>",
        ),
    )
}

#[tokio::test]
async fn an_emulator_without_the_pod_identity_api_is_reported_not_hidden() {
    let iam = FreshIam::new();
    let list =
        mock!(aws_sdk_eks::Client::list_pod_identity_associations).then_http_response(html_404);
    let (deps, recorder) = mock_deps(&[&list], &iam.rules(), render(), true);
    let (identity, created) = run(&deps).await.unwrap();
    let Association::Unsupported { detail } = &identity.association else {
        panic!("{identity:?}");
    };
    assert!(detail.contains("ListPodIdentityAssociations"), "{detail}");
    let json = serde_json::to_value(identity.report()).unwrap();
    assert_eq!(json["association"], "not-created");
    assert_eq!(json["association_id"], Value::Null);
    // The role is real and recorded; no association is claimed.
    assert_eq!(created, [ROLE_NAME]);
    let kinds: Vec<String> = recorder
        .resources
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.kind.clone())
        .collect();
    assert_eq!(kinds, ["iam:role"]);
}

#[tokio::test]
async fn a_missing_api_on_a_real_endpoint_is_an_error() {
    let iam = FreshIam::new();
    let list =
        mock!(aws_sdk_eks::Client::list_pod_identity_associations).then_http_response(html_404);
    let (deps, _recorder) = mock_deps(&[&list], &iam.rules(), render(), false);
    let err = run(&deps).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(
        err.to_string().contains("ListPodIdentityAssociations"),
        "{err}"
    );
}

#[test]
fn the_role_may_write_data_buckets_use_its_keys_and_read_secrets_only() {
    let policy = expected_policy();
    let statements = policy["Statement"].as_array().unwrap();
    let sids: Vec<&str> = statements
        .iter()
        .map(|s| s["Sid"].as_str().unwrap())
        .collect();
    assert_eq!(
        sids,
        [
            "ListDataBuckets",
            "WriteDataBuckets",
            "UseAppKey",
            "UseBucketKeyThroughS3",
            "ReadDataStoreSecrets"
        ]
    );
    let text = policy.to_string();
    assert!(
        !text.contains("backups"),
        "backups belong to the backup workflow: {text}"
    );
    assert!(!text.contains("\"*\""), "no wildcard resource: {text}");
    assert_eq!(
        statements[1]["Resource"],
        json!([
            "arn:aws:s3:::apiary-acme-prod-config-123456789012-us-west-2/*",
            "arn:aws:s3:::apiary-acme-prod-logs-123456789012-us-west-2/*",
            "arn:aws:s3:::apiary-acme-prod-metrics-123456789012-us-west-2/*"
        ])
    );
    assert_eq!(statements[2]["Resource"], fixtures::key_arn("app"));
    assert_eq!(
        statements[3]["Condition"],
        json!({"StringEquals": {"kms:ViaService": "s3.us-west-2.amazonaws.com"}})
    );
    assert_eq!(
        statements[4]["Resource"],
        json!([
            "arn:aws:secretsmanager:us-west-2:123456789012:secret:apiary-acme-prod-postgres-app-GhIjKl",
            "arn:aws:secretsmanager:us-west-2:123456789012:secret:redis-AbCdEf"
        ])
    );
    for statement in statements {
        assert_eq!(statement["Effect"], "Allow");
        for action in statement["Action"].as_array().unwrap() {
            let action = action.as_str().unwrap();
            assert!(
                ["s3:", "kms:", "secretsmanager:"]
                    .iter()
                    .any(|p| action.starts_with(p)),
                "{action}"
            );
            assert!(
                !action.contains("Delete") || action == "s3:DeleteObject",
                "{action}"
            );
        }
    }
}

#[test]
fn policies_compare_whether_iam_encodes_them_or_not() {
    let policy = expected_policy();
    assert_eq!(parse_policy(&policy.to_string()), Some(policy.clone()));
    assert_eq!(parse_policy(&url_encode(&policy.to_string())), Some(policy));
    assert_eq!(parse_policy("%7B%22a%22%3A1%7D"), Some(json!({"a": 1})));
    assert_eq!(parse_policy("%zz"), None);
}

#[test]
fn bucket_grants_name_the_regions_partition() {
    let policy = permissions_policy(&Fixture::test().layers, "us-gov-west-1").unwrap();
    let text = policy.to_string();
    assert!(text.contains("arn:aws-us-gov:s3:::"), "{text}");
    assert!(!text.contains("arn:aws:s3:::"), "{text}");
}

#[tokio::test]
async fn the_role_is_created_with_the_permissions_boundary() {
    // FreshIam's CreateRole rule matches only a request naming BOUNDARY_ARN.
    let iam = FreshIam::new();
    let eks = FreshEks::new();
    let (deps, _recorder) = mock_deps(&eks.rules(), &iam.rules(), render(), false);
    run(&deps).await.unwrap();
    assert_eq!(iam.create_role.num_calls(), 1);
}

#[tokio::test]
async fn a_role_found_without_the_boundary_gets_it() {
    let get_role = mock!(aws_sdk_iam::Client::get_role).then_output(|| {
        aws_sdk_iam::operation::get_role::GetRoleOutput::builder()
            .role(role_without_boundary())
            .build()
    });
    let put_boundary = mock!(aws_sdk_iam::Client::put_role_permissions_boundary)
        .match_requests(|r| {
            r.role_name() == Some(ROLE_NAME) && r.permissions_boundary() == Some(BOUNDARY_ARN)
        })
        .then_output(|| {
            aws_sdk_iam::operation::put_role_permissions_boundary::PutRolePermissionsBoundaryOutput::builder()
                .build()
        });
    let existing = ExistingIam::new();
    let eks = ExistingEks::new(ROLE_ARN);
    let (deps, _recorder) = mock_deps(
        &eks.rules(),
        &[&get_role, &put_boundary, &existing.get_policy],
        render(),
        false,
    );
    run(&deps).await.unwrap();
    assert_eq!(put_boundary.num_calls(), 1);
}

#[tokio::test]
async fn a_role_with_another_boundary_gets_ours() {
    let get_role = mock!(aws_sdk_iam::Client::get_role).then_output(|| {
        let mut role = role();
        role.permissions_boundary = Some(
            aws_sdk_iam::types::AttachedPermissionsBoundary::builder()
                .permissions_boundary_arn("arn:aws:iam::aws:policy/AdministratorAccess")
                .build(),
        );
        aws_sdk_iam::operation::get_role::GetRoleOutput::builder()
            .role(role)
            .build()
    });
    let put_boundary = mock!(aws_sdk_iam::Client::put_role_permissions_boundary)
        .match_requests(|r| r.permissions_boundary() == Some(BOUNDARY_ARN))
        .then_output(|| {
            aws_sdk_iam::operation::put_role_permissions_boundary::PutRolePermissionsBoundaryOutput::builder()
                .build()
        });
    let existing = ExistingIam::new();
    let eks = ExistingEks::new(ROLE_ARN);
    let (deps, _recorder) = mock_deps(
        &eks.rules(),
        &[&get_role, &put_boundary, &existing.get_policy],
        render(),
        false,
    );
    run(&deps).await.unwrap();
    assert_eq!(put_boundary.num_calls(), 1);
}

#[tokio::test]
async fn without_a_boundary_a_real_endpoint_fails_before_any_write() {
    // Only reads are mocked: a CreateRole would find no rule and panic.
    let get_role = FreshIam::new().get_role;
    let (mut deps, _recorder) = mock_deps(&[], &[&get_role], render(), false);
    deps.permissions_boundary = None;
    let err = run(&deps).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(
        err.to_string().contains(crate::PERMISSIONS_BOUNDARY_ENV),
        "{err}"
    );
}

#[tokio::test]
async fn the_emulator_without_a_boundary_creates_the_role_without_one() {
    let iam = FreshIam::new();
    let create_role = mock!(aws_sdk_iam::Client::create_role)
        .match_requests(|r| r.role_name() == Some(ROLE_NAME) && r.permissions_boundary().is_none())
        .then_output(|| {
            aws_sdk_iam::operation::create_role::CreateRoleOutput::builder()
                .role(role_without_boundary())
                .build()
        });
    let eks = FreshEks::new();
    let (mut deps, _recorder) = mock_deps(
        &eks.rules(),
        &[
            &iam.get_role,
            &create_role,
            &iam.get_policy,
            &iam.put_policy,
        ],
        render(),
        true,
    );
    deps.permissions_boundary = None;
    run(&deps).await.unwrap();
    assert_eq!(create_role.num_calls(), 1);
}

#[test]
fn the_boundary_can_be_set_on_deps_built_from_a_config() {
    let config = aws_config::SdkConfig::builder().build();
    let (_, recorder) = mock_deps(&[], &[], render(), false);
    let deps = Deps::new(&config, std::sync::Arc::new(recorder), render());
    assert_eq!(deps.permissions_boundary, None);
    let deps = deps.with_permissions_boundary(BOUNDARY_ARN);
    assert_eq!(deps.permissions_boundary.as_deref(), Some(BOUNDARY_ARN));
}
