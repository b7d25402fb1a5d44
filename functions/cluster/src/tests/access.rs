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
use crate::access::{CLUSTER_ADMIN_POLICY, OPERATOR_ADMIN, OPERATOR_VIEWER, VIEW_POLICY};
use aws_smithy_mocks::{MockResponse, Rule};

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

const ADMIN: &str = "arn:aws:iam::123456789012:role/platform/admins";
const VIEWER: &str = "arn:aws:iam::210987654321:role/vendor-support";
const HAND_MADE: &str = "arn:aws:iam::123456789012:role/made-by-hand";

/// Deployment `acme` with these operators in `cluster.access`.
fn with_operators(admins: &[&str], viewers: &[&str]) -> Fixture {
    let (admins, viewers) = (json!(admins), json!(viewers));
    acme().with_spec(move |spec| {
        spec["cluster"]["access"] = json!({"admins": admins, "viewers": viewers});
    })
}

/// The access entries of the cluster as `entries` lists them: principal, `apiary:role`
/// tag (with the deployment tag `deployment`), associated policy names.
type Entries = Vec<(
    &'static str,
    Option<(&'static str, &'static str)>,
    Vec<&'static str>,
)>;

/// Describe, list and list-associated rules answering from `entries`; any other
/// principal (the control plane's and the nodes') has an untagged entry with its policy.
fn cluster_with(entries: Entries) -> [Rule; 3] {
    let described = entries.clone();
    let listed = entries.clone();
    let policies = entries;
    [
        mock!(Eks::describe_access_entry).then_compute_response(move |r| {
            let principal = r.principal_arn().unwrap().to_owned();
            let found = described.iter().find(|(p, _, _)| *p == principal);
            match found {
                Some((_, tags, _)) => {
                    let mut entry = aws_sdk_eks::types::AccessEntry::builder()
                        .principal_arn(&principal)
                        .access_entry_arn(format!(
                            "arn:aws:eks:us-west-2:123456789012:access-entry/{CLUSTER}/role/x/{principal}"
                        ));
                    if let Some((role, deployment)) = tags {
                        entry = entry
                            .tags("apiary:role", *role)
                            .tags("apiary:deployment", *deployment);
                    }
                    MockResponse::Output(aws_sdk_eks::operation::describe_access_entry::DescribeAccessEntryOutput::builder()
                        .access_entry(entry.build())
                        .build())
                }
                None if principal != ADMIN && principal != VIEWER => {
                    MockResponse::Output(aws_sdk_eks::operation::describe_access_entry::DescribeAccessEntryOutput::builder()
                        .access_entry(aws_sdk_eks::types::AccessEntry::builder().principal_arn(&principal).build())
                        .build())
                }
                None => MockResponse::Error(DescribeAccessEntryError::ResourceNotFoundException(
                    aws_sdk_eks::types::error::ResourceNotFoundException::builder().build(),
                )),
            }
        }),
        mock!(Eks::list_access_entries).then_output(move || {
            aws_sdk_eks::operation::list_access_entries::ListAccessEntriesOutput::builder()
                .set_access_entries(Some(listed.iter().map(|(p, _, _)| (*p).to_owned()).collect()))
                .build()
        }),
        mock!(Eks::list_associated_access_policies).then_compute_output(move |r| {
            let principal = r.principal_arn().unwrap();
            let names: Vec<&str> = match policies.iter().find(|(p, _, _)| *p == principal) {
                Some((_, _, names)) => names.clone(),
                None if principal == ADMIN || principal == VIEWER => Vec::new(),
                None if principal.ends_with("-eks-node") => vec!["AmazonEKSAutoNodePolicy"],
                None => vec!["AmazonEKSClusterAdminPolicy"],
            };
            aws_sdk_eks::operation::list_associated_access_policies::ListAssociatedAccessPoliciesOutput::builder()
                .set_associated_access_policies(Some(
                    names
                        .into_iter()
                        .map(|n| {
                            aws_sdk_eks::types::AssociatedAccessPolicy::builder()
                                .policy_arn(format!("arn:aws:eks::aws:cluster-access-policy/{n}"))
                                .build()
                        })
                        .collect(),
                ))
                .build()
        }),
    ]
}

/// The caller's role (see `roles_with_caller`), which has its own untagged entry.
const ASSUMED_ROLE: &str = "arn:aws:iam::123456789012:role/apiary/apiary-control-plane";

/// Every write an operator run can make, counted.
struct Writes {
    create: Rule,
    associate: Rule,
    disassociate: Rule,
    tag: Rule,
    delete: Rule,
}

impl Writes {
    fn new() -> Self {
        Writes {
            create: mock!(Eks::create_access_entry).then_output(|| {
                aws_sdk_eks::operation::create_access_entry::CreateAccessEntryOutput::builder().build()
            }),
            associate: mock!(Eks::associate_access_policy).then_output(|| {
                aws_sdk_eks::operation::associate_access_policy::AssociateAccessPolicyOutput::builder().build()
            }),
            disassociate: mock!(Eks::disassociate_access_policy).then_output(|| {
                aws_sdk_eks::operation::disassociate_access_policy::DisassociateAccessPolicyOutput::builder().build()
            }),
            tag: mock!(Eks::tag_resource).then_output(|| {
                aws_sdk_eks::operation::tag_resource::TagResourceOutput::builder().build()
            }),
            delete: mock!(Eks::delete_access_entry).then_output(|| {
                aws_sdk_eks::operation::delete_access_entry::DeleteAccessEntryOutput::builder().build()
            }),
        }
    }

    fn total(&self) -> usize {
        [
            &self.create,
            &self.associate,
            &self.disassociate,
            &self.tag,
            &self.delete,
        ]
        .iter()
        .map(|r| r.num_calls())
        .sum()
    }
}

/// Runs ensure-nodegroup for `fixture` over a cluster holding `entries`.
async fn run_operators(fixture: &Fixture, entries: Entries, writes: &Writes) -> Value {
    let [described, listed, policies] = cluster_with(entries);
    let rules = [
        &described,
        &listed,
        &policies,
        &writes.create,
        &writes.associate,
        &writes.disassociate,
        &writes.tag,
        &writes.delete,
    ];
    super::nodegroup::ensure_on_active(fixture, &rules, |_| {}).await
}

fn operator<'a>(out: &'a Value, principal: &str) -> &'a Value {
    out["access_entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["principal_arn"] == json!(principal))
        .unwrap_or_else(|| panic!("no entry for {principal} in {out}"))
}

#[tokio::test]
async fn operators_get_entries_tagged_with_their_heading_and_its_policy() {
    let writes = Writes::new();
    let creates = mock!(Eks::create_access_entry)
        .match_requests(|r| {
            let role = r
                .tags()
                .and_then(|t| t.get("apiary:role"))
                .map(String::as_str);
            r.r#type() == Some("STANDARD")
                && match r.principal_arn() {
                    Some(ADMIN) => role == Some(OPERATOR_ADMIN),
                    Some(VIEWER) => role == Some(OPERATOR_VIEWER),
                    _ => false,
                }
        })
        .then_output(|| {
            aws_sdk_eks::operation::create_access_entry::CreateAccessEntryOutput::builder().build()
        });
    let writes = Writes {
        create: creates,
        ..writes
    };
    let fixture = with_operators(&[ADMIN], &[VIEWER]);
    let out = run_operators(&fixture, Vec::new(), &writes).await;
    assert_eq!(
        writes.create.num_calls(),
        2,
        "both made, each with its heading's tag"
    );
    assert_eq!(operator(&out, ADMIN)["policy"], json!(CLUSTER_ADMIN_POLICY));
    assert_eq!(operator(&out, ADMIN)["state"], json!("created"));
    assert_eq!(operator(&out, VIEWER)["policy"], json!(VIEW_POLICY));
    assert_eq!(writes.associate.num_calls(), 2);
    assert_eq!(
        writes.disassociate.num_calls() + writes.delete.num_calls(),
        0
    );
}

#[tokio::test]
async fn operators_already_in_place_change_nothing() {
    let writes = Writes::new();
    let fixture = with_operators(&[ADMIN], &[VIEWER]);
    let entries: Entries = vec![
        (
            ADMIN,
            Some((OPERATOR_ADMIN, "acme")),
            vec![CLUSTER_ADMIN_POLICY],
        ),
        (VIEWER, Some((OPERATOR_VIEWER, "acme")), vec![VIEW_POLICY]),
    ];
    let out = run_operators(&fixture, entries, &writes).await;
    assert_eq!(writes.total(), 0, "a second run writes nothing");
    assert_eq!(operator(&out, VIEWER)["state"], json!("present"));
}

#[tokio::test]
async fn an_admin_moved_to_viewers_is_retagged_and_has_its_policy_swapped() {
    let writes = Writes::new();
    let fixture = with_operators(&[], &[ADMIN]);
    let entries: Entries = vec![(
        ADMIN,
        Some((OPERATOR_ADMIN, "acme")),
        vec![CLUSTER_ADMIN_POLICY],
    )];
    let out = run_operators(&fixture, entries, &writes).await;
    assert_eq!(operator(&out, ADMIN)["policy"], json!(VIEW_POLICY));
    assert_eq!(writes.tag.num_calls(), 1, "tagged operator-viewer");
    assert_eq!(writes.associate.num_calls(), 1, "view associated");
    assert_eq!(writes.disassociate.num_calls(), 1, "admin taken off");
    assert_eq!(writes.create.num_calls() + writes.delete.num_calls(), 0);
}

#[tokio::test]
async fn only_operator_entries_of_this_deployment_no_longer_listed_are_removed() {
    let delete = mock!(Eks::delete_access_entry)
        .match_requests(|r| r.principal_arn() == Some(VIEWER) && r.cluster_name() == Some(CLUSTER))
        .then_output(|| {
            aws_sdk_eks::operation::delete_access_entry::DeleteAccessEntryOutput::builder().build()
        });
    let writes = Writes {
        delete,
        ..Writes::new()
    };
    let other_deployment = "arn:aws:iam::123456789012:role/other-team";
    let entries: Entries = vec![
        (VIEWER, Some((OPERATOR_VIEWER, "acme")), vec![VIEW_POLICY]),
        (HAND_MADE, None, vec![CLUSTER_ADMIN_POLICY]),
        (
            other_deployment,
            Some((OPERATOR_ADMIN, "other")),
            vec![CLUSTER_ADMIN_POLICY],
        ),
        (ASSUMED_ROLE, None, vec![CLUSTER_ADMIN_POLICY]),
    ];
    let out = run_operators(&acme(), entries, &writes).await;
    assert_eq!(
        writes.delete.num_calls(),
        1,
        "only the unlisted operator's entry goes"
    );
    let removed = operator(&out, VIEWER);
    assert_eq!(removed["state"], json!("removed"));
    assert!(
        removed["reason"]
            .as_str()
            .unwrap()
            .contains("ClusterViewerArns"),
        "{removed}"
    );
    assert!(
        out["access_entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["principal_arn"] != json!(HAND_MADE)),
        "a hand-made entry is neither reported nor touched: {out}"
    );
}
