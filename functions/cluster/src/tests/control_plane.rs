use apiary_core::ErrorName;
use aws_sdk_eks::Client as Eks;
use aws_sdk_eks::operation::create_cluster::{CreateClusterError, CreateClusterOutput};
use aws_sdk_eks::operation::describe_cluster::{DescribeClusterError, DescribeClusterOutput};
use aws_sdk_eks::operation::update_cluster_config::{
    UpdateClusterConfigError, UpdateClusterConfigOutput,
};
use aws_sdk_eks::types::{
    AuthenticationMode, ClusterHealth, ClusterIssue, ClusterIssueCode, ClusterStatus, LogType,
    VpcConfigResponse,
};
use aws_sdk_iam::Client as Iam;
use aws_sdk_iam::operation::attach_role_policy::AttachRolePolicyOutput;
use aws_sdk_iam::operation::create_role::CreateRoleOutput;
use aws_sdk_iam::operation::list_attached_role_policies::ListAttachedRolePoliciesOutput;
use aws_smithy_mocks::{Rule, mock};
use serde_json::json;

use super::*;

fn create_role_any() -> Rule {
    mock!(Iam::create_role).then_compute_output(|r| {
        CreateRoleOutput::builder()
            .role(role(r.role_name().unwrap()))
            .build()
    })
}

fn attach_any() -> Rule {
    mock!(Iam::attach_role_policy).then_output(|| AttachRolePolicyOutput::builder().build())
}

fn create_cluster_any() -> Rule {
    mock!(Eks::create_cluster).then_output(|| {
        CreateClusterOutput::builder()
            .cluster(cluster(ClusterStatus::Creating))
            .build()
    })
}

#[tokio::test]
async fn an_existing_cluster_and_roles_are_reported_and_nothing_is_created() {
    let (roles, policies, describe) = (
        roles_found(),
        policies_attached(),
        describe_cluster(ClusterStatus::Active),
    );
    let (create_role, attach, create) = (create_role_any(), attach_any(), create_cluster_any());
    let mocks = Mocks {
        eks: vec![&describe, &create],
        iam: vec![&roles, &policies, &create_role, &attach],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps();
    let out = handle(&deps, event("ensure-cluster"))
        .await
        .expect("ensure");
    for rule in [&create_role, &attach, &create] {
        assert_eq!(
            rule.num_calls(),
            0,
            "an unchanged deployment makes no change"
        );
    }
    assert_eq!(out["ready"], json!(true));
    assert_eq!(out["created"], json!([]));
    assert_eq!(out["cluster_name"], json!(CLUSTER));
    assert_eq!(out["endpoint"], json!(ENDPOINT));
    assert_eq!(out["certificate_authority"], json!("LS0tLS1CRUdJTg=="));
    assert_eq!(
        out["node_role_arn"],
        json!(role_arn("apiary-acme-eks-node"))
    );
    assert_eq!(
        out["nodegroup_role_arn"],
        json!(role_arn("apiary-acme-eks-nodegroup"))
    );
    assert_eq!(out["nodegroup_name"], json!("apiary-acme-system"));
    assert_eq!(out["cluster_status"], json!("ACTIVE"));
    let entries = recorder.entries.lock().unwrap();
    assert_eq!(entries[0].outcome, "unchanged");
    assert_eq!(entries[0].step, "cluster");
    let resources = recorder.resources.lock().unwrap();
    assert_eq!(resources.iter().filter(|r| r.kind == "iam:role").count(), 3);
    assert!(
        resources
            .iter()
            .any(|r| r.kind == "eks:cluster" && r.id == CLUSTER)
    );
}

#[tokio::test]
#[allow(deprecated)] // `EncryptionConfig::resources`: sent on purpose, see `secrets_encryption`.
async fn a_new_cluster_gets_every_security_and_auto_mode_setting() {
    let (missing_roles, describe_missing) = (roles_missing(), cluster_not_found());
    let none_attached = mock!(Iam::list_attached_role_policies)
        .then_output(|| ListAttachedRolePoliciesOutput::builder().build());
    let create_cluster_role = mock!(Iam::create_role)
        .match_requests(|r| {
            r.role_name() == Some("apiary-acme-eks-cluster")
                && r.assume_role_policy_document().is_some_and(|d| {
                    let doc: Value = serde_json::from_str(d).unwrap();
                    doc["Statement"][0]["Principal"]["Service"] == json!("eks.amazonaws.com")
                        && doc["Statement"][0]["Action"]
                            == json!(["sts:AssumeRole", "sts:TagSession"])
                })
        })
        .then_compute_output(|r| {
            CreateRoleOutput::builder()
                .role(role(r.role_name().unwrap()))
                .build()
        });
    let create_node_role = mock!(Iam::create_role)
        .match_requests(|r| {
            r.role_name() == Some("apiary-acme-eks-node")
                && r.tags()
                    .iter()
                    .any(|t| t.key() == "karpenter.sh/discovery" && t.value() == CLUSTER)
                && r.assume_role_policy_document()
                    .is_some_and(|d| d.contains("ec2.amazonaws.com"))
        })
        .then_compute_output(|r| {
            CreateRoleOutput::builder()
                .role(role(r.role_name().unwrap()))
                .build()
        });
    let create_nodegroup_role = mock!(Iam::create_role)
        .match_requests(|r| r.role_name() == Some("apiary-acme-eks-nodegroup"))
        .then_compute_output(|r| {
            CreateRoleOutput::builder()
                .role(role(r.role_name().unwrap()))
                .build()
        });
    let attach_cluster = mock!(Iam::attach_role_policy)
        .match_requests(|r| {
            r.role_name() == Some("apiary-acme-eks-cluster")
                && CLUSTER_POLICIES
                    .iter()
                    .any(|p| r.policy_arn() == Some(&format!("arn:aws:iam::aws:policy/{p}")))
        })
        .then_output(|| AttachRolePolicyOutput::builder().build());
    let attach_node = mock!(Iam::attach_role_policy)
        .match_requests(|r| {
            r.role_name() == Some("apiary-acme-eks-node")
                && NODE_POLICIES
                    .iter()
                    .any(|p| r.policy_arn() == Some(&format!("arn:aws:iam::aws:policy/{p}")))
        })
        .then_output(|| AttachRolePolicyOutput::builder().build());
    let attach_nodegroup = mock!(Iam::attach_role_policy)
        .match_requests(|r| {
            r.role_name() == Some("apiary-acme-eks-nodegroup")
                && NODEGROUP_POLICIES
                    .iter()
                    .any(|p| r.policy_arn() == Some(&format!("arn:aws:iam::aws:policy/{p}")))
        })
        .then_output(|| AttachRolePolicyOutput::builder().build());
    let secrets_key = fixtures::key_arn("eks-secrets");
    let create = mock!(Eks::create_cluster)
        .match_requests(move |r| {
            let vpc = r.resources_vpc_config().unwrap();
            let logging = &r.logging().unwrap().cluster_logging()[0];
            let compute = r.compute_config().unwrap();
            let access = r.access_config().unwrap();
            r.name() == Some(CLUSTER)
                && r.version() == Some("1.33")
                && r.role_arn() == Some(role_arn("apiary-acme-eks-cluster").as_str())
                && vpc.subnet_ids() == fixtures::PRIVATE_SUBNETS
                && vpc.security_group_ids() == [fixtures::CLUSTER_SG]
                && vpc.endpoint_private_access() == Some(true)
                && vpc.endpoint_public_access() == Some(false)
                && r.encryption_config().len() == 1
                && r.encryption_config()[0].resources() == ["secrets"]
                && vpc.public_access_cidrs().is_empty()
                && r.encryption_config()[0]
                    .provider()
                    .and_then(|p| p.key_arn())
                    == Some(secrets_key.as_str())
                && logging.enabled() == Some(true)
                && logging.types()
                    == [
                        LogType::Api,
                        LogType::Audit,
                        LogType::Authenticator,
                        LogType::ControllerManager,
                        LogType::Scheduler,
                    ]
                && access.authentication_mode() == Some(&AuthenticationMode::Api)
                && access.bootstrap_cluster_creator_admin_permissions() == Some(false)
                && r.bootstrap_self_managed_addons() == Some(false)
                && compute.enabled() == Some(true)
                && compute.node_pools.as_deref() == Some(&[][..])
                && compute.node_role_arn().is_none()
                && r.storage_config()
                    .and_then(|s| s.block_storage())
                    .and_then(|b| b.enabled())
                    == Some(true)
                && r.kubernetes_network_config()
                    .and_then(|k| k.elastic_load_balancing())
                    .and_then(|e| e.enabled())
                    == Some(true)
                && r.tags()
                    .is_some_and(|t| t.get("apiary:deployment").map(String::as_str) == Some("acme"))
        })
        .then_output(|| {
            CreateClusterOutput::builder()
                .cluster(cluster(ClusterStatus::Creating))
                .build()
        });
    let mocks = Mocks {
        eks: vec![&describe_missing, &create],
        iam: vec![
            &missing_roles,
            &none_attached,
            &create_cluster_role,
            &create_node_role,
            &create_nodegroup_role,
            &attach_cluster,
            &attach_node,
            &attach_nodegroup,
        ],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps();
    let out = handle(&deps, event("ensure-cluster"))
        .await
        .expect("ensure");
    assert_eq!(create.num_calls(), 1, "the request carries every setting");
    assert_eq!(attach_cluster.num_calls(), 5);
    assert_eq!(attach_node.num_calls(), 2);
    assert_eq!(attach_nodegroup.num_calls(), 3);
    assert_eq!(
        out["ready"],
        json!(false),
        "a CREATING cluster is not ready"
    );
    assert_eq!(out["cluster_status"], json!("CREATING"));
    assert_eq!(
        out["created"],
        json!([
            "apiary-acme-eks-cluster",
            "apiary-acme-eks-node",
            "apiary-acme-eks-nodegroup",
            CLUSTER
        ])
    );
    // Created, but not ready: the kit journals what the step still waits for.
    let entries = recorder.entries.lock().unwrap();
    assert_eq!(entries[0].outcome, "not-ready");
    assert_eq!(
        entries[0].detail.as_deref(),
        Some("EKS cluster apiary-acme-eks is CREATING")
    );
}

#[tokio::test]
async fn a_public_endpoint_is_opt_in() {
    let (roles, policies, missing) = (roles_found(), policies_attached(), cluster_not_found());
    let create = mock!(Eks::create_cluster)
        .match_requests(|r| {
            let vpc = r.resources_vpc_config().unwrap();
            vpc.endpoint_public_access() == Some(true)
                && vpc.endpoint_private_access() == Some(true)
                && vpc.public_access_cidrs() == ["198.51.100.0/24", "203.0.113.0/24"]
        })
        .then_output(|| {
            CreateClusterOutput::builder()
                .cluster(cluster(ClusterStatus::Creating))
                .build()
        });
    let mocks = Mocks {
        eks: vec![&missing, &create],
        iam: vec![&roles, &policies],
        ..Default::default()
    };
    let public = acme().with_spec(|spec| {
        spec["cluster"] = json!({
            "public_endpoint": true,
            "version": "1.32",
            "public_access_cidrs": ["203.0.113.0/24", "198.51.100.0/24"]
        })
    });
    let (deps, _) = mocks.deps_with(&public);
    handle(&deps, event("ensure-cluster"))
        .await
        .expect("ensure");
    assert_eq!(create.num_calls(), 1);
}

#[tokio::test]
async fn status_polls_without_creating() {
    let (roles, describe) = (roles_found(), describe_cluster(ClusterStatus::Creating));
    let create = create_cluster_any();
    let mocks = Mocks {
        eks: vec![&describe, &create],
        iam: vec![&roles],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps();
    let out = handle(&deps, event("status-cluster"))
        .await
        .expect("status");
    assert_eq!(out["ready"], json!(false));
    assert_eq!(out["cluster_status"], json!("CREATING"));
    assert_eq!(create.num_calls(), 0);
    assert_eq!(recorder.entries.lock().unwrap()[0].outcome, "not-ready");

    let (missing_roles, missing) = (roles_missing(), cluster_not_found());
    let mocks = Mocks {
        eks: vec![&missing, &create],
        iam: vec![&missing_roles],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("status-cluster"))
        .await
        .expect("status");
    assert_eq!(out["ready"], json!(false));
    assert_eq!(
        out["missing"],
        json!([
            "apiary-acme-eks-cluster",
            "apiary-acme-eks-node",
            "apiary-acme-eks-nodegroup",
            CLUSTER
        ])
    );
    assert_eq!(create.num_calls(), 0, "status never creates");
}

#[tokio::test]
async fn a_failed_cluster_fails_fast_naming_it_and_the_cause() {
    let roles = roles_found();
    let failed = mock!(Eks::describe_cluster).then_output(|| {
        let mut failed = cluster(ClusterStatus::Failed);
        failed.health = Some(
            ClusterHealth::builder()
                .issues(
                    ClusterIssue::builder()
                        .code(ClusterIssueCode::Ec2SubnetNotFound)
                        .message("Subnet subnet-a was deleted")
                        .build(),
                )
                .build(),
        );
        DescribeClusterOutput::builder().cluster(failed).build()
    });
    let mocks = Mocks {
        eks: vec![&failed],
        iam: vec![&roles],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("status-cluster")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(text.contains(CLUSTER) && text.contains("FAILED"), "{text}");
    assert!(text.contains("Subnet subnet-a was deleted"), "{text}");
}

#[tokio::test]
async fn a_cluster_being_deleted_is_a_conflict() {
    let (roles, deleting) = (roles_found(), describe_cluster(ClusterStatus::Deleting));
    let mocks = Mocks {
        eks: vec![&deleting],
        iam: vec![&roles],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("status-cluster")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Conflict);
}

#[tokio::test]
async fn access_denied_is_fatal_and_throttling_is_retryable() {
    let (roles, policies, missing) = (roles_found(), policies_attached(), cluster_not_found());
    let denied = mock!(Eks::create_cluster).then_error(|| {
        CreateClusterError::generic(meta(
            "AccessDeniedException",
            "User is not authorized to perform: eks:CreateCluster",
        ))
    });
    let mocks = Mocks {
        eks: vec![&missing, &denied],
        iam: vec![&roles, &policies],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("ensure-cluster")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(
        err.to_string().contains("CreateCluster apiary-acme-eks"),
        "{err}"
    );
    assert_eq!(denied.num_calls(), 1);

    let roles = roles_found();
    let throttled = mock!(Eks::describe_cluster)
        .then_error(|| DescribeClusterError::generic(meta("ThrottlingException", "Rate exceeded")));
    let mocks = Mocks {
        eks: vec![&throttled],
        iam: vec![&roles],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("status-cluster")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Retryable);
}

#[tokio::test]
async fn a_role_iam_has_not_propagated_yet_is_retryable() {
    let (roles, policies, missing) = (roles_found(), policies_attached(), cluster_not_found());
    let not_yet = mock!(Eks::create_cluster).then_error(|| {
        CreateClusterError::InvalidParameterException(
            aws_sdk_eks::types::error::InvalidParameterException::builder()
                .message("Role with arn: arn:aws:iam::123456789012:role/apiary-acme-eks-cluster, could not be assumed because it does not exist or the trusted entity is not correct")
                .meta(meta("InvalidParameterException", "could not be assumed"))
                .build(),
        )
    });
    let mocks = Mocks {
        eks: vec![&missing, &not_yet],
        iam: vec![&roles, &policies],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("ensure-cluster")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::NotReady);
    assert!(err.is_retryable());
    assert!(err.to_string().contains("apiary-acme-eks-cluster"), "{err}");

    let (roles, policies, missing) = (roles_found(), policies_attached(), cluster_not_found());
    let invalid = mock!(Eks::create_cluster).then_error(|| {
        CreateClusterError::InvalidParameterException(
            aws_sdk_eks::types::error::InvalidParameterException::builder()
                .message("unsupported Kubernetes version 1.10")
                .meta(meta(
                    "InvalidParameterException",
                    "unsupported Kubernetes version 1.10",
                ))
                .build(),
        )
    });
    let mocks = Mocks {
        eks: vec![&missing, &invalid],
        iam: vec![&roles, &policies],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("ensure-cluster")).await.unwrap_err();
    assert_eq!(
        err.name(),
        ErrorName::Fatal,
        "other bad parameters are not retried"
    );
}

/// An ACTIVE cluster whose endpoint access is `public` (with `cidrs`), private on.
fn cluster_with_access(public: bool, cidrs: &[&str]) -> Rule {
    let cidrs: Vec<String> = cidrs.iter().map(|c| (*c).to_owned()).collect();
    mock!(Eks::describe_cluster).then_output(move || {
        let mut active = cluster(ClusterStatus::Active);
        active.resources_vpc_config = Some(
            VpcConfigResponse::builder()
                .endpoint_private_access(true)
                .endpoint_public_access(public)
                .set_public_access_cidrs(Some(cidrs.clone()))
                .cluster_security_group_id("sg-0eks")
                .build(),
        );
        DescribeClusterOutput::builder().cluster(active).build()
    })
}

fn public_to(cidrs: &[&str]) -> Fixture {
    let cidrs = json!(cidrs);
    acme().with_spec(move |spec| {
        spec["cluster"] = json!({"public_endpoint": true, "public_access_cidrs": cidrs})
    })
}

#[tokio::test]
async fn endpoint_access_follows_the_spec_with_one_update() {
    // Private today, public to one network in the spec: one update with exactly the
    // endpoint fields (EKS takes one kind of update per call).
    let (roles, policies) = (roles_found(), policies_attached());
    let private = cluster_with_access(false, &["0.0.0.0/0"]);
    let update = mock!(Eks::update_cluster_config)
        .match_requests(|r| {
            let vpc = r.resources_vpc_config().unwrap();
            r.name() == Some(CLUSTER)
                && vpc.endpoint_public_access() == Some(true)
                && vpc.endpoint_private_access() == Some(true)
                && vpc.public_access_cidrs() == ["203.0.113.0/24"]
                && vpc.subnet_ids().is_empty()
                && vpc.security_group_ids().is_empty()
                && r.logging().is_none()
        })
        .then_output(|| UpdateClusterConfigOutput::builder().build());
    let mocks = Mocks {
        eks: vec![&private, &update],
        iam: vec![&roles, &policies],
        ..Default::default()
    };
    let (deps, _) = mocks.deps_with(&public_to(&["203.0.113.0/24"]));
    let out = handle(&deps, event("ensure-cluster"))
        .await
        .expect("ensure");
    assert_eq!(update.num_calls(), 1);
    assert_eq!(out["created"], json!(["apiary-acme-eks:endpoint-access"]));

    // A network removed from the list is removed from the cluster.
    let (roles, policies) = (roles_found(), policies_attached());
    let two = cluster_with_access(true, &["203.0.113.0/24", "198.51.100.0/24"]);
    let narrowed = mock!(Eks::update_cluster_config)
        .match_requests(|r| {
            r.resources_vpc_config()
                .is_some_and(|v| v.public_access_cidrs() == ["203.0.113.0/24"])
        })
        .then_output(|| UpdateClusterConfigOutput::builder().build());
    let mocks = Mocks {
        eks: vec![&two, &narrowed],
        iam: vec![&roles, &policies],
        ..Default::default()
    };
    let (deps, _) = mocks.deps_with(&public_to(&["203.0.113.0/24"]));
    handle(&deps, event("ensure-cluster"))
        .await
        .expect("ensure");
    assert_eq!(narrowed.num_calls(), 1);

    // Public turned off: the endpoint goes private; the networks are not sent.
    let (roles, policies) = (roles_found(), policies_attached());
    let public = cluster_with_access(true, &["203.0.113.0/24"]);
    let closed = mock!(Eks::update_cluster_config)
        .match_requests(|r| {
            r.resources_vpc_config().is_some_and(|v| {
                v.endpoint_public_access() == Some(false) && v.public_access_cidrs.is_none()
            })
        })
        .then_output(|| UpdateClusterConfigOutput::builder().build());
    let mocks = Mocks {
        eks: vec![&public, &closed],
        iam: vec![&roles, &policies],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    handle(&deps, event("ensure-cluster"))
        .await
        .expect("ensure");
    assert_eq!(closed.num_calls(), 1);
}

#[tokio::test]
async fn endpoint_access_already_as_specified_makes_no_update() {
    let update = mock!(Eks::update_cluster_config)
        .then_output(|| UpdateClusterConfigOutput::builder().build());
    for (cluster, fixture) in [
        // Same networks in another order.
        (
            cluster_with_access(true, &["203.0.113.0/24", "198.51.100.0/24"]),
            public_to(&["198.51.100.0/24", "203.0.113.0/24"]),
        ),
        // A private endpoint: the networks EKS keeps for it do not matter.
        (cluster_with_access(false, &["0.0.0.0/0"]), acme()),
    ] {
        let (roles, policies) = (roles_found(), policies_attached());
        let mocks = Mocks {
            eks: vec![&cluster, &update],
            iam: vec![&roles, &policies],
            ..Default::default()
        };
        let (deps, _) = mocks.deps_with(&fixture);
        let out = handle(&deps, event("ensure-cluster"))
            .await
            .expect("ensure");
        assert_eq!(out["created"], json!([]));
        // The group EKS made for the cluster is recorded: the Auto Mode nodes join it.
        assert_eq!(out["cluster_security_group_id"], json!("sg-0eks"));
    }
    assert_eq!(
        update.num_calls(),
        0,
        "an unchanged endpoint is not updated"
    );
}

#[tokio::test]
async fn an_update_in_progress_is_retried_later() {
    let (roles, policies) = (roles_found(), policies_attached());
    let private = cluster_with_access(false, &[]);
    let busy = mock!(Eks::update_cluster_config).then_error(|| {
        UpdateClusterConfigError::ResourceInUseException(
            aws_sdk_eks::types::error::ResourceInUseException::builder()
                .message("Cluster has an update in progress")
                .meta(meta("ResourceInUseException", "update in progress"))
                .build(),
        )
    });
    let mocks = Mocks {
        eks: vec![&private, &busy],
        iam: vec![&roles, &policies],
        ..Default::default()
    };
    let (deps, _) = mocks.deps_with(&public_to(&["203.0.113.0/24"]));
    let err = handle(&deps, event("ensure-cluster")).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string()
            .contains("UpdateClusterConfig apiary-acme-eks"),
        "{err}"
    );
}

#[tokio::test]
async fn an_existing_role_without_the_deployments_tag_gets_it() {
    let (policies, describe) = (policies_attached(), describe_cluster(ClusterStatus::Active));
    let untagged = mock!(Iam::get_role).then_compute_output(|r| {
        let mut found = role(r.role_name().unwrap());
        found.tags = None;
        aws_sdk_iam::operation::get_role::GetRoleOutput::builder()
            .role(found)
            .build()
    });
    let tag = mock!(Iam::tag_role)
        .match_requests(|r| {
            r.tags()
                .iter()
                .any(|t| t.key() == "apiary:deployment" && t.value() == "acme")
        })
        .then_output(|| aws_sdk_iam::operation::tag_role::TagRoleOutput::builder().build());
    let mocks = Mocks {
        eks: vec![&describe],
        iam: vec![&untagged, &policies, &tag],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    handle(&deps, event("ensure-cluster"))
        .await
        .expect("ensure");
    // The teardown role deletes only roles tagged as the deployment's: each of the three
    // cluster roles is tagged once.
    assert_eq!(tag.num_calls(), 3);
}

/// The control plane's log group is made before the cluster, tagged as the deployment's,
/// and gets its retention; EKS would make it untagged and keep the logs forever.
#[tokio::test]
async fn the_control_plane_log_group_is_made_first_with_a_retention() {
    use aws_sdk_cloudwatchlogs::operation::create_log_group::CreateLogGroupOutput;
    use aws_sdk_cloudwatchlogs::operation::put_retention_policy::PutRetentionPolicyOutput;
    let group = "/aws/eks/apiary-acme-eks/cluster";
    let make = mock!(aws_sdk_cloudwatchlogs::Client::create_log_group)
        .match_requests(move |r| {
            r.log_group_name() == Some(group)
                && r.tags()
                    .is_some_and(|t| t.get("apiary:deployment").map(String::as_str) == Some("acme"))
        })
        .then_output(|| CreateLogGroupOutput::builder().build());
    let retention = mock!(aws_sdk_cloudwatchlogs::Client::put_retention_policy)
        .match_requests(move |r| {
            r.log_group_name() == Some(group)
                && r.retention_in_days() == Some(crate::log_group::RETENTION_DAYS)
        })
        .then_output(|| PutRetentionPolicyOutput::builder().build());
    let (roles, policies, describe) = (
        roles_found(),
        policies_attached(),
        describe_cluster(ClusterStatus::Active),
    );
    let none = described_log_group(None);
    let mocks = Mocks {
        eks: vec![&describe],
        iam: vec![&roles, &policies],
        logs: vec![&make, &none, &retention],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps();
    let out = handle(&deps, event("ensure-cluster"))
        .await
        .expect("ensure");
    assert_eq!(make.num_calls(), 1, "made, tagged as the deployment's");
    assert_eq!(retention.num_calls(), 1, "kept 365 days");
    assert_eq!(out["created"], json!([group]));
    assert!(
        recorder
            .resources
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.kind == "logs:log-group" && r.id == group),
        "in the inventory"
    );
}

/// A longer retention a customer set (for compliance) is left alone: lowering it would
/// delete the older events.
#[tokio::test]
async fn a_longer_retention_on_the_control_plane_log_group_is_kept() {
    use aws_sdk_cloudwatchlogs::operation::put_retention_policy::PutRetentionPolicyOutput;
    let (there, _, _) = log_group_there();
    let longer = described_log_group(Some(3653));
    let retention = mock!(aws_sdk_cloudwatchlogs::Client::put_retention_policy)
        .then_output(|| PutRetentionPolicyOutput::builder().build());
    let (roles, policies, describe) = (
        roles_found(),
        policies_attached(),
        describe_cluster(ClusterStatus::Active),
    );
    let mocks = Mocks {
        eks: vec![&describe],
        iam: vec![&roles, &policies],
        logs: vec![&there, &longer, &retention],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    handle(&deps, event("ensure-cluster"))
        .await
        .expect("ensure");
    assert_eq!(retention.num_calls(), 0, "ten years stay ten years");
}

/// On AWS the group is made encrypted with the stack's state key; one EKS made
/// unencrypted gets the key associated; one encrypted with another key keeps it.
#[tokio::test]
async fn the_control_plane_log_group_is_encrypted_with_the_state_key() {
    use aws_sdk_cloudwatchlogs::operation::associate_kms_key::AssociateKmsKeyOutput;
    use aws_sdk_cloudwatchlogs::operation::create_log_group::CreateLogGroupOutput;
    const KEY: &str = "arn:aws:kms:us-west-2:123456789012:key/state";
    let group = "/aws/eks/apiary-acme-eks/cluster";
    let make = mock!(aws_sdk_cloudwatchlogs::Client::create_log_group)
        .match_requests(move |r| r.log_group_name() == Some(group) && r.kms_key_id() == Some(KEY))
        .then_output(|| CreateLogGroupOutput::builder().build());
    let associate = mock!(aws_sdk_cloudwatchlogs::Client::associate_kms_key)
        .match_requests(move |r| r.log_group_name() == Some(group) && r.kms_key_id() == Some(KEY))
        .then_output(|| AssociateKmsKeyOutput::builder().build());
    let with_key = |key: Option<&'static str>| {
        mock!(aws_sdk_cloudwatchlogs::Client::describe_log_groups).then_output(move || {
            aws_sdk_cloudwatchlogs::operation::describe_log_groups::DescribeLogGroupsOutput::builder()
                .log_groups(
                    aws_sdk_cloudwatchlogs::types::LogGroup::builder()
                        .log_group_name(group)
                        .retention_in_days(crate::log_group::RETENTION_DAYS)
                        .set_kms_key_id(key.map(str::to_owned))
                        .build(),
                )
                .build()
        })
    };
    let (there, _, _) = log_group_there();
    for (made, found, associated) in [
        // Made with the key: found encrypted, nothing more.
        (&make, Some(KEY), 0),
        // EKS made it unencrypted: the key is associated.
        (&there, None, 1),
        // The customer's own key stays.
        (
            &there,
            Some("arn:aws:kms:us-west-2:123456789012:key/theirs"),
            0,
        ),
    ] {
        let before = associate.num_calls();
        let described = with_key(found);
        let (roles, policies, describe) = (
            roles_found(),
            policies_attached(),
            describe_cluster(ClusterStatus::Active),
        );
        let mocks = Mocks {
            eks: vec![&describe],
            iam: vec![&roles, &policies],
            logs: vec![made, &described, &associate],
            ..Default::default()
        };
        let (deps, _) = mocks.deps();
        let deps = deps.with_log_key(Some(KEY.to_owned()));
        handle(&deps, event("ensure-cluster"))
            .await
            .expect("ensure");
        assert_eq!(
            associate.num_calls() - before,
            associated,
            "found with {found:?}"
        );
    }
    assert_eq!(make.num_calls(), 1, "made with the key");
}
