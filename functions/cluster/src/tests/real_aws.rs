//! What only real AWS does, with mocked clients: idempotency tokens on CreateCluster and
//! CreateNodegroup, and the propagation delays of IAM right after a role is made.

use std::sync::{Arc, Mutex};

use apiary_core::ErrorName;
use aws_sdk_eks::Client as Eks;
use aws_sdk_eks::operation::create_cluster::CreateClusterOutput;
use aws_sdk_eks::operation::create_nodegroup::{CreateNodegroupError, CreateNodegroupOutput};
use aws_sdk_eks::operation::describe_nodegroup::DescribeNodegroupError;
use aws_sdk_eks::types::{ClusterStatus, Nodegroup, NodegroupStatus};
use aws_sdk_iam::Client as Iam;
use aws_sdk_iam::operation::create_role::CreateRoleOutput;
use aws_sdk_iam::operation::list_attached_role_policies::ListAttachedRolePoliciesError;
use aws_smithy_mocks::{Rule, mock};
use serde_json::json;

use super::nodegroup::{ASSUMED, access_and_addons_present, roles_with_caller};
use super::*;

/// The tokens a create was sent with, in order.
#[derive(Clone, Default)]
struct Tokens(Arc<Mutex<Vec<String>>>);

impl Tokens {
    fn record(&self, token: Option<&str>) {
        let token = token.expect("a client request token is sent");
        self.0.lock().unwrap().push(token.to_owned());
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// GetRole, every role with the unique id `id` (IAM gives a re-created role a new one).
fn roles_with_id(id: &'static str) -> Rule {
    mock!(Iam::get_role).then_compute_output(move |r| {
        let mut found = role(r.role_name().unwrap());
        found.role_id = id.to_owned();
        aws_sdk_iam::operation::get_role::GetRoleOutput::builder()
            .role(found)
            .build()
    })
}

#[tokio::test]
async fn a_cluster_is_created_with_a_token_that_is_stable_and_follows_its_inputs() {
    let tokens = Tokens::default();
    let create = {
        let tokens = tokens.clone();
        mock!(Eks::create_cluster).then_compute_output(move |r| {
            tokens.record(r.client_request_token());
            CreateClusterOutput::builder()
                .cluster(cluster(ClusterStatus::Creating))
                .build()
        })
    };
    let run = |role_id: &'static str, fixture: Fixture| {
        let create = &create;
        async move {
            let (roles, policies, missing) = (
                roles_with_id(role_id),
                policies_attached(),
                cluster_not_found(),
            );
            let mocks = Mocks {
                eks: vec![&missing, create],
                iam: vec![&roles, &policies],
                ..Default::default()
            };
            let (deps, _) = mocks.deps_with(&fixture);
            handle(&deps, event("ensure-cluster"))
                .await
                .expect("ensure");
        }
    };
    // A run repeated after a timeout, before DescribeCluster shows the cluster.
    run("AROAFIRST", acme()).await;
    run("AROAFIRST", acme()).await;
    // Another version is another request; a re-created role or another VPC is another
    // incarnation of the data plane.
    let newer = acme().with_spec(|spec| spec["cluster"] = json!({"version": "1.32"}));
    run("AROAFIRST", newer).await;
    run("AROASECOND", acme()).await;
    let other_vpc = acme().with_layers(|layers| {
        layers.network.as_mut().unwrap().vpc_id = "vpc-0other".to_owned();
    });
    run("AROAFIRST", other_vpc).await;
    let sent = tokens.all();
    assert_eq!(sent.len(), 5, "{sent:?}");
    assert_eq!(sent[0], sent[1], "stable across runs");
    for (i, what) in [(2, "version"), (3, "role id"), (4, "VPC")] {
        assert_ne!(sent[0], sent[i], "follows the {what}");
    }
    assert!(sent.iter().all(|t| t.len() <= 64 && t.is_ascii()));
}

fn nodegroup_missing() -> Rule {
    mock!(Eks::describe_nodegroup).then_error(|| {
        DescribeNodegroupError::ResourceNotFoundException(
            aws_sdk_eks::types::error::ResourceNotFoundException::builder()
                .message("No node group found")
                .meta(meta("ResourceNotFoundException", "No node group found"))
                .build(),
        )
    })
}

/// Runs `ensure-nodegroup` for `fixture` with an ACTIVE cluster, everything else of the
/// node group present, and `create` standing in for CreateNodegroup.
async fn ensure_nodegroup(create: &Rule, fixture: &Fixture) -> apiary_core::Result<Value> {
    let (cluster, roles, identity, missing) = (
        describe_cluster(ClusterStatus::Active),
        roles_with_caller(),
        caller(ASSUMED),
        nodegroup_missing(),
    );
    let [entries, policies, addons] = access_and_addons_present();
    let mocks = Mocks {
        eks: vec![&cluster, &missing, &entries, &policies, &addons, create],
        iam: vec![&roles],
        sts: vec![&identity],
        ..Default::default()
    };
    let (deps, _) = mocks.deps_with(fixture);
    handle(&deps, event("ensure-nodegroup")).await
}

#[tokio::test]
async fn a_node_group_is_created_with_a_token_that_is_stable_and_follows_its_sizes() {
    let tokens = Tokens::default();
    let create = {
        let tokens = tokens.clone();
        mock!(Eks::create_nodegroup).then_compute_output(move |r| {
            tokens.record(r.client_request_token());
            CreateNodegroupOutput::builder()
                .nodegroup(
                    Nodegroup::builder()
                        .nodegroup_name("apiary-acme-system")
                        .status(NodegroupStatus::Creating)
                        .build(),
                )
                .build()
        })
    };
    for fixture in [acme(), acme(), acme().with_size("medium")] {
        ensure_nodegroup(&create, &fixture).await.expect("ensure");
    }
    let sent = tokens.all();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[0], sent[1], "stable across runs");
    assert_ne!(sent[0], sent[2], "follows the preset's sizes");
}

#[tokio::test]
async fn a_node_group_role_eks_cannot_use_yet_is_retryable_and_a_bad_parameter_is_not() {
    let not_yet = mock!(Eks::create_nodegroup).then_error(|| {
        CreateNodegroupError::InvalidParameterException(
            aws_sdk_eks::types::error::InvalidParameterException::builder()
                .message("The provided role doesn't have the Amazon EKS Managed Policies associated with it. Please ensure the following policies [arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy] are attached")
                .meta(meta("InvalidParameterException", "The provided role doesn't have the Amazon EKS Managed Policies associated with it"))
                .build(),
        )
    });
    let err = ensure_nodegroup(&not_yet, &acme()).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Retryable, "{err}");
    assert!(err.to_string().contains("CreateNodegroup"), "{err}");

    let invalid = mock!(Eks::create_nodegroup).then_error(|| {
        CreateNodegroupError::InvalidParameterException(
            aws_sdk_eks::types::error::InvalidParameterException::builder()
                .message("Requested instance type is not supported")
                .meta(meta(
                    "InvalidParameterException",
                    "Requested instance type is not supported",
                ))
                .build(),
        )
    });
    let err = ensure_nodegroup(&invalid, &acme()).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal, "{err}");
}

#[tokio::test]
async fn a_role_iam_does_not_list_yet_after_creating_it_is_retryable() {
    let (missing_roles, missing_cluster) = (roles_missing(), cluster_not_found());
    let create_role = mock!(Iam::create_role).then_compute_output(|r| {
        CreateRoleOutput::builder()
            .role(role(r.role_name().unwrap()))
            .build()
    });
    let not_yet = mock!(Iam::list_attached_role_policies).then_error(|| {
        ListAttachedRolePoliciesError::NoSuchEntityException(
            aws_sdk_iam::types::error::NoSuchEntityException::builder()
                .message("The role with name apiary-acme-eks-cluster cannot be found.")
                .meta(meta(
                    "NoSuchEntity",
                    "The role with name apiary-acme-eks-cluster cannot be found.",
                ))
                .build(),
        )
    });
    let mocks = Mocks {
        eks: vec![&missing_cluster],
        iam: vec![&missing_roles, &create_role, &not_yet],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("ensure-cluster")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Retryable, "{err}");
    assert_eq!(err.aws_code(), Some("NoSuchEntity"));
    assert_eq!(create_role.num_calls(), 1);
}
