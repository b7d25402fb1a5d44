//! Access entries: the control plane's role, callers that are not roles, and endpoints
//! that do not implement access entries or add-ons.

use apiary_core::ErrorName;
use aws_sdk_eks::Client as Eks;
use aws_sdk_eks::operation::create_access_entry::CreateAccessEntryOutput;
use aws_sdk_eks::operation::describe_access_entry::DescribeAccessEntryError;
use aws_sdk_eks::types::{ClusterStatus, NodegroupStatus};
use aws_smithy_mocks::mock;
use serde_json::json;

use super::nodegroup::{ASSUMED, access_and_addons_present, describe_nodegroup, roles_with_caller};
use super::*;

#[tokio::test]
async fn a_caller_that_is_not_a_role_is_skipped_and_said_so() {
    let (cluster, roles, identity, ready) = (
        describe_cluster(ClusterStatus::Active),
        roles_with_caller(),
        caller("arn:aws:iam::123456789012:user/moto"),
        describe_nodegroup(NodegroupStatus::Active),
    );
    let [entries, policies, addons] = access_and_addons_present();
    let create_entry =
        mock!(Eks::create_access_entry).then_output(|| CreateAccessEntryOutput::builder().build());
    let mocks = Mocks {
        eks: vec![
            &cluster,
            &ready,
            &entries,
            &policies,
            &addons,
            &create_entry,
        ],
        iam: vec![&roles],
        sts: vec![&identity],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("ensure-nodegroup"))
        .await
        .expect("ensure");
    let skipped = &out["access_entries"][0];
    assert_eq!(skipped["state"], json!("skipped"));
    assert_eq!(
        skipped["principal_arn"],
        json!("arn:aws:iam::123456789012:user/moto")
    );
    assert!(
        skipped["reason"]
            .as_str()
            .unwrap()
            .contains("not an assumed IAM role")
    );
    assert_eq!(out["access_entries"][1]["type"], json!("EC2"));
    assert_eq!(create_entry.num_calls(), 0);
}

#[tokio::test]
async fn an_endpoint_without_access_entries_or_addons_is_reported_not_hidden() {
    let html_404 = || {
        aws_smithy_runtime_api::http::Response::new(
            aws_smithy_runtime_api::http::StatusCode::try_from(404).unwrap(),
            aws_smithy_types::body::SdkBody::from("<!doctype html><title>404 Not Found</title>"),
        )
    };
    let (cluster, roles, identity, ready) = (
        describe_cluster(ClusterStatus::Active),
        roles_with_caller(),
        caller(ASSUMED),
        describe_nodegroup(NodegroupStatus::Active),
    );
    let entries = mock!(Eks::describe_access_entry).then_http_response(html_404);
    let addons = mock!(Eks::describe_addon).then_http_response(html_404);
    let mocks = Mocks {
        eks: vec![&cluster, &ready, &entries, &addons],
        iam: vec![&roles],
        sts: vec![&identity],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("ensure-nodegroup"))
        .await
        .expect("ensure");
    for entry in out["access_entries"].as_array().unwrap() {
        assert_eq!(entry["state"], json!("not-emulated"), "{entry}");
    }
    for addon in out["addons"].as_array().unwrap() {
        assert_eq!(addon["state"], json!("not-emulated"), "{addon}");
    }
    assert_eq!(out["ready"], json!(true));

    // A real AWS error on the same call (it always names its code) still fails.
    let (cluster, roles, identity) = (
        describe_cluster(ClusterStatus::Active),
        roles_with_caller(),
        caller(ASSUMED),
    );
    let denied = mock!(Eks::describe_access_entry).then_error(|| {
        DescribeAccessEntryError::generic(meta("AccessDeniedException", "not authorized"))
    });
    let mocks = Mocks {
        eks: vec![&cluster, &denied],
        iam: vec![&roles],
        sts: vec![&identity],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("ensure-nodegroup")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
}

#[tokio::test]
async fn named_kubernetes_admins_get_the_entry_instead_of_the_caller() {
    let workloads_role = "arn:aws:iam::123456789012:role/apiary-acme-fn-workloads";
    let (cluster, roles, identity, ready) = (
        describe_cluster(ClusterStatus::Active),
        roles_with_caller(),
        caller(ASSUMED),
        describe_nodegroup(NodegroupStatus::Active),
    );
    let [entries, policies, addons] = access_and_addons_present();
    let associate = mock!(Eks::associate_access_policy)
        .match_requests(move |r| {
            r.principal_arn() == Some(workloads_role)
                && r.policy_arn()
                    .is_some_and(|p| p.ends_with("/AmazonEKSClusterAdminPolicy"))
        })
        .then_output(|| {
            aws_sdk_eks::operation::associate_access_policy::AssociateAccessPolicyOutput::builder()
                .build()
        });
    let mocks = Mocks {
        eks: vec![&cluster, &ready, &entries, &policies, &addons, &associate],
        iam: vec![&roles],
        sts: vec![&identity],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let deps = deps.with_kubernetes_admins(vec![workloads_role.to_owned()]);
    let out = handle(&deps, event("ensure-nodegroup"))
        .await
        .expect("ensure");
    let admin = &out["access_entries"][0];
    assert_eq!(admin["principal_arn"], json!(workloads_role));
    assert_eq!(admin["policy"], json!(crate::access::CLUSTER_ADMIN_POLICY));
    assert_eq!(out["access_entries"][1]["type"], json!("EC2"));
    assert_eq!(out["access_entries"].as_array().unwrap().len(), 2);
    assert_eq!(
        associate.num_calls(),
        1,
        "the workloads role is made cluster admin"
    );
    assert_eq!(identity.num_calls(), 0, "the caller is not asked who it is");
}
