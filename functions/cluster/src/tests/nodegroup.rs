use apiary_core::ErrorName;
use aws_sdk_eks::Client as Eks;
use aws_sdk_eks::operation::associate_access_policy::AssociateAccessPolicyOutput;
use aws_sdk_eks::operation::create_access_entry::CreateAccessEntryOutput;
use aws_sdk_eks::operation::create_addon::CreateAddonOutput;
use aws_sdk_eks::operation::create_nodegroup::{CreateNodegroupError, CreateNodegroupOutput};
use aws_sdk_eks::operation::describe_access_entry::{
    DescribeAccessEntryError, DescribeAccessEntryOutput,
};
use aws_sdk_eks::operation::describe_addon::{DescribeAddonError, DescribeAddonOutput};
use aws_sdk_eks::operation::describe_nodegroup::{DescribeNodegroupError, DescribeNodegroupOutput};
use aws_sdk_eks::operation::list_associated_access_policies::ListAssociatedAccessPoliciesOutput;
use aws_sdk_eks::types::error::ResourceNotFoundException;
use aws_sdk_eks::types::{
    AccessEntry, AccessScopeType, Addon, AddonStatus, AmiTypes, AssociatedAccessPolicy,
    ClusterStatus, Issue, Nodegroup, NodegroupHealth, NodegroupIssueCode, NodegroupScalingConfig,
    NodegroupStatus,
};
use aws_smithy_mocks::{Rule, mock};
use serde_json::json;

use super::*;

const NODEGROUP: &str = "apiary-acme-system";
const CONTROL_ROLE: &str = "apiary-control-plane";
const CONTROL_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/apiary/apiary-control-plane";
pub(super) const ASSUMED: &str =
    "arn:aws:sts::123456789012:assumed-role/apiary-control-plane/provision";

fn not_found(code: &str) -> ResourceNotFoundException {
    ResourceNotFoundException::builder()
        .message("not found")
        .meta(meta(code, "not found"))
        .build()
}

/// GetRole for the three layer roles, and for the caller's role with its path.
pub(super) fn roles_with_caller() -> Rule {
    mock!(aws_sdk_iam::Client::get_role).then_compute_output(|r| {
        let name = r.role_name().unwrap();
        let mut found = role(name);
        if name == CONTROL_ROLE {
            found.arn = CONTROL_ROLE_ARN.to_owned();
            found.path = "/apiary/".to_owned();
        }
        aws_sdk_iam::operation::get_role::GetRoleOutput::builder()
            .role(found)
            .build()
    })
}

fn nodegroup(status: NodegroupStatus) -> Nodegroup {
    Nodegroup::builder()
        .nodegroup_name(NODEGROUP)
        .nodegroup_arn(format!(
            "arn:aws:eks:us-west-2:123456789012:nodegroup/{CLUSTER}/{NODEGROUP}/1"
        ))
        .cluster_name(CLUSTER)
        .status(status)
        .build()
}

pub(super) fn describe_nodegroup(status: NodegroupStatus) -> Rule {
    mock!(Eks::describe_nodegroup).then_output(move || {
        DescribeNodegroupOutput::builder()
            .nodegroup(nodegroup(status.clone()))
            .build()
    })
}

fn nodegroup_not_found() -> Rule {
    mock!(Eks::describe_nodegroup).then_error(|| {
        DescribeNodegroupError::ResourceNotFoundException(not_found("ResourceNotFoundException"))
    })
}

fn create_nodegroup_any() -> Rule {
    mock!(Eks::create_nodegroup).then_output(|| {
        CreateNodegroupOutput::builder()
            .nodegroup(nodegroup(NodegroupStatus::Creating))
            .build()
    })
}

/// Access entries, policy associations and add-ons that all exist already.
/// The fixture deployment's logs bucket.
fn logs_bucket() -> String {
    apiary_core::naming::Names::new("acme").bucket("logs", fixtures::ACCOUNT, fixtures::REGION)
}

pub(super) fn access_and_addons_present() -> [Rule; 3] {
    [
        mock!(Eks::describe_access_entry).then_compute_output(|r| {
            DescribeAccessEntryOutput::builder()
                .access_entry(
                    AccessEntry::builder()
                        .principal_arn(r.principal_arn().unwrap())
                        .build(),
                )
                .build()
        }),
        mock!(Eks::list_associated_access_policies).then_compute_output(|r| {
            let policy = if r.principal_arn() == Some(CONTROL_ROLE_ARN) {
                "AmazonEKSClusterAdminPolicy"
            } else {
                "AmazonEKSAutoNodePolicy"
            };
            ListAssociatedAccessPoliciesOutput::builder()
                .associated_access_policies(
                    AssociatedAccessPolicy::builder()
                        .policy_arn(format!("arn:aws:eks::aws:cluster-access-policy/{policy}"))
                        .build(),
                )
                .build()
        }),
        mock!(Eks::describe_addon).then_compute_output(|r| {
            DescribeAddonOutput::builder()
                .addon(
                    Addon::builder()
                        .addon_name(r.addon_name().unwrap())
                        .status(AddonStatus::Active)
                        .set_configuration_values(
                            crate::nodegroup::addon_configuration(
                                r.addon_name().unwrap(),
                                &logs_bucket(),
                                "us-west-2",
                            )
                            .map(|c| c.to_string()),
                        )
                        .build(),
                )
                .build()
        }),
    ]
}

/// `ensure-nodegroup` for `fixture` on an ACTIVE cluster and node group, the caller an
/// assumed role: the `eks` rules first (so they win), then access entries and add-ons
/// all present; `adjust` changes the dependencies before the run.
pub(super) async fn ensure_on_active(
    fixture: &Fixture,
    eks: &[&Rule],
    adjust: impl FnOnce(&mut Deps),
) -> serde_json::Value {
    let (cluster, roles, identity, ready) = (
        describe_cluster(ClusterStatus::Active),
        roles_with_caller(),
        caller(ASSUMED),
        describe_nodegroup(NodegroupStatus::Active),
    );
    let [entries, policies, addons] = access_and_addons_present();
    let mut rules: Vec<&Rule> = eks.to_vec();
    rules.extend([&cluster, &ready, &entries, &policies, &addons]);
    let mocks = Mocks {
        eks: rules,
        iam: vec![&roles],
        sts: vec![&identity],
        ..Default::default()
    };
    let (mut deps, _) = mocks.deps_with(fixture);
    adjust(&mut deps);
    handle(&deps, fixture.event("ensure-nodegroup"))
        .await
        .expect("ensure")
}

#[tokio::test]
async fn an_existing_node_group_is_reported_and_nothing_is_created() {
    let (cluster, roles, identity, ready) = (
        describe_cluster(ClusterStatus::Active),
        roles_with_caller(),
        caller(ASSUMED),
        describe_nodegroup(NodegroupStatus::Active),
    );
    let [entries, policies, addons] = access_and_addons_present();
    let create_entry =
        mock!(Eks::create_access_entry).then_output(|| CreateAccessEntryOutput::builder().build());
    let associate = mock!(Eks::associate_access_policy)
        .then_output(|| AssociateAccessPolicyOutput::builder().build());
    let create_addon =
        mock!(Eks::create_addon).then_output(|| CreateAddonOutput::builder().build());
    let create = create_nodegroup_any();
    let mocks = Mocks {
        eks: vec![
            &cluster,
            &ready,
            &entries,
            &policies,
            &addons,
            &create_entry,
            &associate,
            &create_addon,
            &create,
        ],
        iam: vec![&roles],
        sts: vec![&identity],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps();
    let out = handle(&deps, event("ensure-nodegroup"))
        .await
        .expect("ensure");
    for rule in [&create_entry, &associate, &create_addon, &create] {
        assert_eq!(
            rule.num_calls(),
            0,
            "an unchanged deployment makes no change"
        );
    }
    assert_eq!(out["ready"], json!(true));
    assert_eq!(out["created"], json!([]));
    assert_eq!(out["nodegroup_status"], json!("ACTIVE"));
    assert_eq!(out["nodegroup_name"], json!(NODEGROUP));
    assert_eq!(
        out["access_entries"],
        json!([
            {"principal_arn": CONTROL_ROLE_ARN, "type": "STANDARD", "policy": "AmazonEKSClusterAdminPolicy", "state": "present"},
            {"principal_arn": role_arn("apiary-acme-eks-node"), "type": "EC2", "policy": "AmazonEKSAutoNodePolicy", "state": "present"},
        ])
    );
    let addons: Vec<&str> = out["addons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        addons,
        [
            "vpc-cni",
            "kube-proxy",
            "coredns",
            "eks-pod-identity-agent",
            "metrics-server",
            "aws-secrets-store-csi-driver-provider",
            "fluent-bit",
            "kube-state-metrics",
            "prometheus-node-exporter"
        ]
    );
    assert_eq!(recorder.entries.lock().unwrap()[0].outcome, "unchanged");
}

#[tokio::test]
async fn a_new_node_group_gets_access_entries_addons_and_the_preset_sizes() {
    let (cluster, roles, identity, missing) = (
        describe_cluster(ClusterStatus::Active),
        roles_with_caller(),
        caller(ASSUMED),
        nodegroup_not_found(),
    );
    let no_entry = mock!(Eks::describe_access_entry).then_error(|| {
        DescribeAccessEntryError::ResourceNotFoundException(not_found("ResourceNotFoundException"))
    });
    let control_entry = mock!(Eks::create_access_entry)
        .match_requests(|r| {
            r.cluster_name() == Some(CLUSTER)
                && r.principal_arn() == Some(CONTROL_ROLE_ARN)
                && r.r#type() == Some("STANDARD")
        })
        .then_output(|| CreateAccessEntryOutput::builder().build());
    let node_role = role_arn("apiary-acme-eks-node");
    let node_entry = mock!(Eks::create_access_entry)
        .match_requests(move |r| {
            r.principal_arn() == Some(node_role.as_str()) && r.r#type() == Some("EC2")
        })
        .then_output(|| CreateAccessEntryOutput::builder().build());
    let none_associated = mock!(Eks::list_associated_access_policies)
        .then_output(|| ListAssociatedAccessPoliciesOutput::builder().build());
    let admin = mock!(Eks::associate_access_policy)
        .match_requests(|r| {
            r.principal_arn() == Some(CONTROL_ROLE_ARN)
                && r.policy_arn()
                    == Some("arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy")
                && r.access_scope().and_then(|s| s.r#type()) == Some(&AccessScopeType::Cluster)
        })
        .then_output(|| AssociateAccessPolicyOutput::builder().build());
    let auto_node = mock!(Eks::associate_access_policy)
        .match_requests(|r| {
            r.policy_arn() == Some("arn:aws:eks::aws:cluster-access-policy/AmazonEKSAutoNodePolicy")
                && r.access_scope().and_then(|s| s.r#type()) == Some(&AccessScopeType::Cluster)
        })
        .then_output(|| AssociateAccessPolicyOutput::builder().build());
    let no_addon = mock!(Eks::describe_addon).then_error(|| {
        DescribeAddonError::ResourceNotFoundException(not_found("ResourceNotFoundException"))
    });
    let create_addon = mock!(Eks::create_addon)
        .match_requests(|r| {
            let configured = r
                .configuration_values()
                .map(|c| serde_json::from_str::<serde_json::Value>(c).unwrap());
            r.cluster_name() == Some(CLUSTER)
                && match r.addon_name().unwrap_or_default() {
                    "vpc-cni"
                    | "kube-proxy"
                    | "coredns"
                    | "eks-pod-identity-agent"
                    | "metrics-server"
                    | "kube-state-metrics"
                    | "prometheus-node-exporter" => configured.is_none(),
                    // Secret sync and rotation on, or the pods never get their Secret.
                    "aws-secrets-store-csi-driver-provider" => {
                        configured.is_some_and(|c| {
                            let driver = &c["secrets-store-csi-driver"];
                            driver["syncSecret"]["enabled"] == json!(true)
                                && driver["enableSecretRotation"] == json!(true)
                        }) && r.pod_identity_associations().is_empty()
                    }
                    // Into the logs bucket under eks/, with the log shipper's role.
                    "fluent-bit" => {
                        let outputs = configured
                            .as_ref()
                            .and_then(|c| c["config"]["outputs"].as_str().map(str::to_owned))
                            .unwrap_or_default();
                        let identity = r.pod_identity_associations();
                        outputs.contains(&format!("bucket {}", logs_bucket()))
                            && outputs.contains("s3_key_format /eks/containers/%Y/%m/%d/%H/")
                            && outputs.contains("s3_key_format /eks/nodes/%Y/%m/%d/%H/")
                            && identity.len() == 1
                            && identity[0].service_account() == "fluent-bit"
                            && identity[0].role_arn() == LOG_SHIPPER
                    }
                    _ => false,
                }
        })
        .then_compute_output(|r| {
            CreateAddonOutput::builder()
                .addon(
                    Addon::builder()
                        .addon_name(r.addon_name().unwrap())
                        .status(AddonStatus::Creating)
                        .build(),
                )
                .build()
        });
    let nodegroup_role = role_arn("apiary-acme-eks-nodegroup");
    let create = mock!(Eks::create_nodegroup)
        .match_requests(move |r| {
            let scaling = r.scaling_config().unwrap();
            r.cluster_name() == Some(CLUSTER)
                && r.nodegroup_name() == Some(NODEGROUP)
                && r.node_role() == Some(nodegroup_role.as_str())
                && r.subnets() == fixtures::PRIVATE_SUBNETS
                && r.instance_types() == ["t3.large"]
                && r.ami_type() == Some(&AmiTypes::Al2023X8664Standard)
                && (
                    scaling.min_size(),
                    scaling.desired_size(),
                    scaling.max_size(),
                ) == (Some(3), Some(3), Some(10))
                && r.tags()
                    .is_some_and(|t| t.get("apiary:layer").map(String::as_str) == Some("cluster"))
        })
        .then_output(|| {
            CreateNodegroupOutput::builder()
                .nodegroup(nodegroup(NodegroupStatus::Creating))
                .build()
        });
    let mocks = Mocks {
        eks: vec![
            &cluster,
            &missing,
            &no_entry,
            &control_entry,
            &node_entry,
            &none_associated,
            &admin,
            &auto_node,
            &no_addon,
            &create_addon,
            &create,
        ],
        iam: vec![&roles],
        sts: vec![&identity],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("ensure-nodegroup"))
        .await
        .expect("ensure");
    assert_eq!(control_entry.num_calls(), 1);
    assert_eq!(node_entry.num_calls(), 1);
    assert_eq!(admin.num_calls(), 1);
    assert_eq!(auto_node.num_calls(), 1);
    assert_eq!(create_addon.num_calls(), 9);
    assert_eq!(create.num_calls(), 1, "the request carries every setting");
    assert_eq!(
        out["ready"],
        json!(false),
        "a CREATING node group is not ready"
    );
    assert_eq!(out["nodegroup_status"], json!("CREATING"));
    assert_eq!(out["access_entries"][0]["state"], json!("created"));
    assert_eq!(
        out["addons"][0],
        json!({"name": "vpc-cni", "state": "created", "status": "CREATING"})
    );
    assert_eq!(
        out["created"],
        json!([
            CONTROL_ROLE_ARN,
            role_arn("apiary-acme-eks-node"),
            format!("{CLUSTER}/vpc-cni"),
            format!("{CLUSTER}/kube-proxy"),
            format!("{CLUSTER}/coredns"),
            format!("{CLUSTER}/eks-pod-identity-agent"),
            format!("{CLUSTER}/metrics-server"),
            format!("{CLUSTER}/aws-secrets-store-csi-driver-provider"),
            format!("{CLUSTER}/fluent-bit"),
            format!("{CLUSTER}/kube-state-metrics"),
            format!("{CLUSTER}/prometheus-node-exporter"),
            NODEGROUP
        ])
    );
}

#[tokio::test]
async fn an_addon_configured_otherwise_gets_the_deployments_configuration_back() {
    let changed_by_hand = mock!(Eks::describe_addon).then_compute_output(|r| {
        DescribeAddonOutput::builder()
            .addon(
                Addon::builder()
                    .addon_name(r.addon_name().unwrap())
                    .status(AddonStatus::Active)
                    .set_configuration_values(
                        if r.addon_name() == Some(crate::nodegroup::SECRETS_STORE_ADDON) {
                            Some(
                                r#"{"secrets-store-csi-driver":{"syncSecret":{"enabled":false}}}"#
                                    .to_owned(),
                            )
                        } else {
                            crate::nodegroup::addon_configuration(
                                r.addon_name().unwrap(),
                                &logs_bucket(),
                                "us-west-2",
                            )
                            .map(|c| c.to_string())
                        },
                    )
                    .build(),
            )
            .build()
    });
    let update = mock!(Eks::update_addon)
        .match_requests(|r| {
            r.addon_name() == Some(crate::nodegroup::SECRETS_STORE_ADDON)
                && r.configuration_values()
                    .map(|c| serde_json::from_str::<serde_json::Value>(c).unwrap())
                    == crate::nodegroup::addon_configuration(
                        crate::nodegroup::SECRETS_STORE_ADDON,
                        "",
                        "",
                    )
        })
        .then_output(|| aws_sdk_eks::operation::update_addon::UpdateAddonOutput::builder().build());
    ensure_on_active(&acme(), &[&changed_by_hand, &update], |_| {}).await;
    assert_eq!(
        update.num_calls(),
        1,
        "only the add-on configured otherwise is updated"
    );
}

#[tokio::test]
async fn without_the_log_shippers_role_fluent_bit_is_skipped_and_said_so() {
    // Fluent Bit is not there yet; every other add-on is.
    let no_fluent_bit = mock!(Eks::describe_addon)
        .match_requests(|r| r.addon_name() == Some("fluent-bit"))
        .then_error(|| {
            DescribeAddonError::ResourceNotFoundException(not_found("ResourceNotFoundException"))
        });
    let create_addon =
        mock!(Eks::create_addon).then_output(|| CreateAddonOutput::builder().build());
    let out = ensure_on_active(&acme(), &[&no_fluent_bit, &create_addon], |deps| {
        deps.log_shipper_role = None
    })
    .await;
    let fluent = out["addons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "fluent-bit")
        .expect("fluent-bit reported");
    assert_eq!(fluent["state"], json!("skipped"));
    assert_eq!(
        create_addon.num_calls(),
        0,
        "made without a role it would only fail"
    );
    assert!(
        fluent["reason"]
            .as_str()
            .unwrap()
            .contains("LogShipperRole"),
        "{fluent}"
    );
}

#[tokio::test]
async fn larger_presets_size_the_node_group() {
    let (cluster, roles, identity, missing) = (
        describe_cluster(ClusterStatus::Active),
        roles_with_caller(),
        caller(ASSUMED),
        nodegroup_not_found(),
    );
    let [entries, policies, addons] = access_and_addons_present();
    let create = mock!(Eks::create_nodegroup)
        .match_requests(|r| {
            let s = r.scaling_config().unwrap();
            (s.min_size(), s.desired_size(), s.max_size()) == (Some(10), Some(10), Some(50))
        })
        .then_output(|| {
            CreateNodegroupOutput::builder()
                .nodegroup(nodegroup(NodegroupStatus::Creating))
                .build()
        });
    let mocks = Mocks {
        eks: vec![&cluster, &missing, &entries, &policies, &addons, &create],
        iam: vec![&roles],
        sts: vec![&identity],
        ..Default::default()
    };
    let (deps, _) = mocks.deps_with(&acme().with_size("medium"));
    handle(&deps, event("ensure-nodegroup"))
        .await
        .expect("ensure");
    assert_eq!(create.num_calls(), 1);
}

#[tokio::test]
async fn a_cluster_that_is_not_active_yet_is_not_ready_before_any_change() {
    let cluster = describe_cluster(ClusterStatus::Creating);
    let create = create_nodegroup_any();
    let mocks = Mocks {
        eks: vec![&cluster, &create],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("ensure-nodegroup")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::NotReady);
    assert!(err.to_string().contains(CLUSTER), "{err}");
    assert_eq!(create.num_calls(), 0);
}

#[tokio::test]
async fn status_polls_and_a_failed_node_group_fails_fast() {
    let (cluster, roles, creating) = (
        describe_cluster(ClusterStatus::Active),
        roles_found(),
        describe_nodegroup(NodegroupStatus::Creating),
    );
    let create = create_nodegroup_any();
    let mocks = Mocks {
        eks: vec![&cluster, &creating, &create],
        iam: vec![&roles],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, event("status-nodegroup"))
        .await
        .expect("status");
    assert_eq!(out["ready"], json!(false));
    assert_eq!(out["nodegroup_status"], json!("CREATING"));
    assert_eq!(create.num_calls(), 0, "status never creates");

    let (cluster, roles) = (describe_cluster(ClusterStatus::Active), roles_found());
    let failed = mock!(Eks::describe_nodegroup).then_output(|| {
        let mut failed = nodegroup(NodegroupStatus::CreateFailed);
        failed.health = Some(
            NodegroupHealth::builder()
                .issues(
                    Issue::builder()
                        .code(NodegroupIssueCode::NodeCreationFailure)
                        .message("Instances failed to join the kubernetes cluster")
                        .build(),
                )
                .build(),
        );
        DescribeNodegroupOutput::builder().nodegroup(failed).build()
    });
    let mocks = Mocks {
        eks: vec![&cluster, &failed],
        iam: vec![&roles],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("status-nodegroup")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    let text = err.to_string();
    assert!(
        text.contains(NODEGROUP) && text.contains("CREATE_FAILED"),
        "{text}"
    );
    assert!(text.contains("failed to join"), "{text}");
}

#[tokio::test]
async fn node_group_quota_errors_are_fatal_and_throttling_retryable() {
    let (cluster, roles, identity, missing) = (
        describe_cluster(ClusterStatus::Active),
        roles_with_caller(),
        caller(ASSUMED),
        nodegroup_not_found(),
    );
    let [entries, policies, addons] = access_and_addons_present();
    let quota = mock!(Eks::create_nodegroup).then_error(|| {
        CreateNodegroupError::generic(meta(
            "ResourceLimitExceededException",
            "node group limit reached",
        ))
    });
    let mocks = Mocks {
        eks: vec![&cluster, &missing, &entries, &policies, &addons, &quota],
        iam: vec![&roles],
        sts: vec![&identity],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("ensure-nodegroup")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(err.to_string().contains("CreateNodegroup"), "{err}");

    let (cluster, roles) = (describe_cluster(ClusterStatus::Active), roles_found());
    let throttled = mock!(Eks::describe_nodegroup).then_error(|| {
        DescribeNodegroupError::generic(meta("ThrottlingException", "Rate exceeded"))
    });
    let mocks = Mocks {
        eks: vec![&cluster, &throttled],
        iam: vec![&roles],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, event("status-nodegroup")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Retryable);
}

fn sized_nodegroup(min: i32, desired: i32, max: i32) -> Rule {
    mock!(Eks::describe_nodegroup).then_output(move || {
        let mut group = nodegroup(NodegroupStatus::Active);
        group.scaling_config = Some(
            NodegroupScalingConfig::builder()
                .min_size(min)
                .desired_size(desired)
                .max_size(max)
                .build(),
        );
        DescribeNodegroupOutput::builder().nodegroup(group).build()
    })
}

#[tokio::test]
async fn a_changed_preset_updates_the_node_group_range_once() {
    let (cluster, roles, identity) = (
        describe_cluster(ClusterStatus::Active),
        roles_with_caller(),
        caller(ASSUMED),
    );
    let [entries, policies, addons] = access_and_addons_present();
    // The group was made small (3-10, 4 running); the spec now says medium (10-50).
    let small = sized_nodegroup(3, 4, 10);
    let update = mock!(Eks::update_nodegroup_config)
        .match_requests(|r| {
            r.scaling_config().is_some_and(|c| {
                (c.min_size(), c.desired_size(), c.max_size()) == (Some(10), Some(10), Some(50))
            })
        })
        .then_output(|| {
            aws_sdk_eks::operation::update_nodegroup_config::UpdateNodegroupConfigOutput::builder()
                .build()
        });
    let mocks = Mocks {
        eks: vec![&cluster, &small, &entries, &policies, &addons, &update],
        iam: vec![&roles],
        sts: vec![&identity],
        ..Default::default()
    };
    let medium = acme().with_size("medium");
    let (deps, _) = mocks.deps_with(&medium);
    let out = handle(&deps, event("ensure-nodegroup"))
        .await
        .expect("ensure");
    assert_eq!(update.num_calls(), 1);
    assert!(
        out["created"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == &json!(format!("{NODEGROUP}:scaling"))),
        "{out}"
    );

    // Already in range: nothing to update.
    let in_range = sized_nodegroup(10, 17, 50);
    let update = mock!(Eks::update_nodegroup_config).then_output(|| {
        aws_sdk_eks::operation::update_nodegroup_config::UpdateNodegroupConfigOutput::builder()
            .build()
    });
    let mocks = Mocks {
        eks: vec![&cluster, &in_range, &entries, &policies, &addons, &update],
        iam: vec![&roles],
        sts: vec![&identity],
        ..Default::default()
    };
    let (deps, _) = mocks.deps_with(&medium);
    handle(&deps, event("ensure-nodegroup"))
        .await
        .expect("ensure");
    assert_eq!(update.num_calls(), 0, "an unchanged preset makes no update");
}
