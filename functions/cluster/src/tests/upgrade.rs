//! The upgrade steps with mocks: the emulator implements none of EKS's upgrade APIs
//! (insights, UpdateClusterVersion, UpdateNodegroupVersion, add-on versions), and never
//! shows an update UPDATING, failed, or refused while another runs.

use aws_sdk_eks::operation::describe_addon::DescribeAddonOutput;
use aws_sdk_eks::operation::describe_addon_versions::DescribeAddonVersionsOutput;
use aws_sdk_eks::operation::describe_nodegroup::DescribeNodegroupOutput;
use aws_sdk_eks::operation::list_insights::ListInsightsOutput;
use aws_sdk_eks::operation::update_addon::UpdateAddonOutput;
use aws_sdk_eks::operation::update_cluster_version::{
    UpdateClusterVersionError, UpdateClusterVersionOutput,
};
use aws_sdk_eks::operation::update_nodegroup_version::UpdateNodegroupVersionOutput;
use aws_sdk_eks::types::error::ResourceInUseException;
use aws_sdk_eks::types::{
    Addon, AddonInfo, AddonStatus, AddonVersionInfo, Compatibility, ErrorCode, ErrorDetail,
    InsightStatus, InsightStatusValue, InsightSummary, Nodegroup, NodegroupStatus, Update,
    UpdateStatus,
};
use aws_smithy_mocks::{Rule, mock};
use serde_json::json;

use super::*;
use crate::nodegroup::{CLUSTER_ADDONS, NODEGROUP_ADDONS};
use apiary_core::step::Recorder;

const FROM: &str = "1.33";
const TO: &str = "1.34";
const NODEGROUP: &str = "apiary-acme-system";

fn version_event(action: &str, version: &str) -> Value {
    let mut event = event(action);
    event["options"] = json!({"input": {"kubernetes_version": version}});
    event
}

fn at(status: ClusterStatus, version: &'static str) -> Rule {
    mock!(Eks::describe_cluster).then_output(move || {
        let mut found = cluster(status.clone());
        found.version = Some(version.to_owned());
        DescribeClusterOutput::builder().cluster(found).build()
    })
}

fn group(status: NodegroupStatus, version: &'static str) -> Rule {
    mock!(Eks::describe_nodegroup).then_output(move || {
        DescribeNodegroupOutput::builder()
            .nodegroup(
                Nodegroup::builder()
                    .nodegroup_name(NODEGROUP)
                    .nodegroup_arn(format!(
                        "arn:aws:eks:us-west-2:123456789012:nodegroup/{CLUSTER}/{NODEGROUP}/1"
                    ))
                    .cluster_name(CLUSTER)
                    .status(status.clone())
                    .version(version)
                    .build(),
            )
            .build()
    })
}

fn update(status: UpdateStatus, errors: Vec<ErrorDetail>) -> Update {
    Update::builder()
        .id("upd-1")
        .status(status)
        .set_errors(Some(errors))
        .build()
}

fn update_version(status: UpdateStatus) -> Rule {
    mock!(Eks::update_cluster_version)
        .match_requests(|r| {
            r.name() == Some(CLUSTER)
                && r.version() == Some(TO)
                && r.client_request_token().is_some_and(|t| !t.is_empty())
        })
        .then_output(move || {
            UpdateClusterVersionOutput::builder()
                .update(update(status.clone(), Vec::new()))
                .build()
        })
}

#[tokio::test]
async fn the_control_plane_is_asked_once_level_and_active_then_waited_for() {
    let (found, level, send) = (
        at(ClusterStatus::Active, FROM),
        group(NodegroupStatus::Active, FROM),
        update_version(UpdateStatus::InProgress),
    );
    let mocks = Mocks {
        eks: vec![&found, &level, &send],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, version_event("upgrade-control-plane", TO))
        .await
        .expect("asked");
    assert_eq!(send.num_calls(), 1, "{out}");
    assert_eq!(out["ready"], json!(false), "{out}");
    assert_eq!(out["upgrade"]["update_id"], "upd-1");
    assert_eq!(out["upgrade"]["found"], FROM);

    // UPDATING: pending, nothing sent; ACTIVE at the target: ready.
    for (status, version, ready) in [
        (ClusterStatus::Updating, FROM, false),
        (ClusterStatus::Active, TO, true),
        (ClusterStatus::Updating, TO, false),
    ] {
        let (found, send) = (
            at(status.clone(), version),
            update_version(UpdateStatus::InProgress),
        );
        let mocks = Mocks {
            eks: vec![&found, &level, &send],
            ..Default::default()
        };
        let (deps, _) = mocks.deps();
        let out = handle(&deps, version_event("upgrade-control-plane", TO))
            .await
            .expect("polled");
        assert_eq!(out["ready"], json!(ready), "{status:?} {version}: {out}");
        assert_eq!(send.num_calls(), 0, "{status:?} {version}");
    }
}

#[tokio::test]
async fn a_failed_update_names_eks_errors_and_a_busy_cluster_is_waited_for() {
    let (found, level) = (
        at(ClusterStatus::Active, FROM),
        group(NodegroupStatus::Active, FROM),
    );
    let failed = mock!(Eks::update_cluster_version).then_output(|| {
        UpdateClusterVersionOutput::builder()
            .update(update(
                UpdateStatus::Failed,
                vec![
                    ErrorDetail::builder()
                        .error_code(ErrorCode::InsufficientFreeAddresses)
                        .error_message("One or more of the subnets has too few free addresses")
                        .resource_ids("subnet-1")
                        .build(),
                ],
            ))
            .build()
    });
    let mocks = Mocks {
        eks: vec![&found, &level, &failed],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, version_event("upgrade-control-plane", TO))
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("InsufficientFreeAddresses") && text.contains("subnet-1"),
        "{text}"
    );

    let busy = mock!(Eks::update_cluster_version).then_error(|| {
        UpdateClusterVersionError::ResourceInUseException(
            ResourceInUseException::builder()
                .message("an update is in progress")
                .meta(meta("ResourceInUseException", "an update is in progress"))
                .build(),
        )
    });
    let mocks = Mocks {
        eks: vec![&found, &level, &busy],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, version_event("upgrade-control-plane", TO))
        .await
        .expect("waited for");
    assert_eq!(out["ready"], json!(false));
    assert_eq!(busy.num_calls(), 1);
}

#[tokio::test]
async fn a_lagging_node_group_or_a_skipped_version_refuses_before_asking() {
    let send = update_version(UpdateStatus::InProgress);
    let (found, behind) = (
        at(ClusterStatus::Active, FROM),
        group(NodegroupStatus::Active, "1.32"),
    );
    let mocks = Mocks {
        eks: vec![&found, &behind, &send],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, version_event("upgrade-control-plane", TO))
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::Conflict, "{err}");
    assert!(err.to_string().contains("1.32"), "{err}");

    let old = at(ClusterStatus::Active, "1.31");
    let mocks = Mocks {
        eks: vec![&old, &send],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, version_event("upgrade-control-plane", TO))
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::Conflict, "{err}");
    assert_eq!(send.num_calls(), 0);
}

fn insights(statuses: &'static [InsightStatusValue]) -> Rule {
    mock!(Eks::list_insights)
        .match_requests(|r| {
            r.cluster_name() == Some(CLUSTER)
                && r.filter().is_some_and(|f| {
                    f.kubernetes_versions() == [TO.to_owned()]
                        && f.statuses() == [InsightStatusValue::Error]
                })
        })
        .then_output(move || {
            let insights = statuses
                .iter()
                .map(|status| {
                    InsightSummary::builder()
                        .id("i-1")
                        .name("Deprecated APIs removed in Kubernetes v1.34")
                        .insight_status(
                            InsightStatus::builder()
                                .status(status.clone())
                                .reason("flowcontrol.apiserver.k8s.io/v1beta3 is still called")
                                .build(),
                        )
                        .build()
                })
                .collect();
            ListInsightsOutput::builder()
                .set_insights(Some(insights))
                .build()
        })
}

#[tokio::test]
async fn insights_in_error_refuse_by_name_and_none_pass() {
    let (below, blocking) = (
        at(ClusterStatus::Active, FROM),
        insights(&[InsightStatusValue::Error]),
    );
    let mocks = Mocks {
        eks: vec![&below, &blocking],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, version_event("upgrade-insights", TO))
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::Conflict);
    assert!(
        err.to_string().contains("Deprecated APIs removed") && err.to_string().contains("v1beta3"),
        "{err}"
    );

    // A passing insight EKS returned despite the filter does not block.
    let clear = insights(&[InsightStatusValue::Passing]);
    let mocks = Mocks {
        eks: vec![&below, &clear],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, version_event("upgrade-insights", TO))
        .await
        .expect("clear");
    assert_eq!(out["ready"], json!(true), "{out}");

    // A rerun after the control plane moved: insights are not consulted.
    let (moved, any) = (
        at(ClusterStatus::Active, TO),
        insights(&[InsightStatusValue::Error]),
    );
    let mocks = Mocks {
        eks: vec![&moved, &any],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, version_event("upgrade-insights", TO))
        .await
        .expect("not consulted");
    assert_eq!(out["ready"], json!(true), "{out}");
    assert_eq!(any.num_calls(), 0);
}

/// After an update is accepted EKS may still report the cluster ACTIVE at the old
/// version (eventually consistent), and does again once the update failed: the update
/// this execution started decides, and nothing is sent twice.
#[tokio::test]
async fn a_started_update_is_followed_not_sent_again() {
    use aws_sdk_eks::operation::describe_update::DescribeUpdateOutput;

    for (status, fails) in [
        (UpdateStatus::InProgress, false),
        (UpdateStatus::Failed, true),
    ] {
        let (found, level, send) = (
            at(ClusterStatus::Active, FROM),
            group(NodegroupStatus::Active, FROM),
            update_version(UpdateStatus::InProgress),
        );
        let shown = status.clone();
        let followed = mock!(Eks::describe_update)
            .match_requests(|r| r.name() == Some(CLUSTER) && r.update_id() == Some("upd-7"))
            .then_output(move || {
                let errors = if fails {
                    vec![
                        ErrorDetail::builder()
                            .error_code(ErrorCode::SubnetNotFound)
                            .error_message("subnet-1 was deleted")
                            .build(),
                    ]
                } else {
                    Vec::new()
                };
                DescribeUpdateOutput::builder()
                    .update(update(shown.clone(), errors))
                    .build()
            });
        let mocks = Mocks {
            eks: vec![&found, &level, &send, &followed],
            ..Default::default()
        };
        let (deps, recorder) = mocks.deps();
        recorder
            .save_output(
                "acme",
                "upgrade.eks.control-plane",
                &json!({"execution_id": "exec-1", "target": TO, "update_id": "upd-7"}),
            )
            .await
            .unwrap();
        let out = handle(&deps, version_event("upgrade-control-plane", TO)).await;
        assert_eq!(send.num_calls(), 0, "{status:?}: not sent again");
        assert_eq!(followed.num_calls(), 1, "{status:?}");
        match out {
            Ok(out) => {
                assert!(!fails, "{out}");
                assert_eq!(out["ready"], json!(false), "{out}");
            }
            Err(err) => {
                assert!(fails, "{err}");
                assert!(err.to_string().contains("SubnetNotFound"), "{err}");
            }
        }
    }

    // Another execution's update (an earlier run's, failed) does not stop a new run from
    // asking EKS again.
    let (found, level, send) = (
        at(ClusterStatus::Active, FROM),
        group(NodegroupStatus::Active, FROM),
        update_version(UpdateStatus::InProgress),
    );
    let mocks = Mocks {
        eks: vec![&found, &level, &send],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps();
    recorder
        .save_output(
            "acme",
            "upgrade.eks.control-plane",
            &json!({"execution_id": "an-earlier-run", "target": TO, "update_id": "upd-0"}),
        )
        .await
        .unwrap();
    handle(&deps, version_event("upgrade-control-plane", TO))
        .await
        .expect("asked again");
    assert_eq!(send.num_calls(), 1);
}

#[tokio::test]
async fn the_node_group_follows_and_a_blocked_drain_is_named() {
    let (old, send) = (
        group(NodegroupStatus::Active, FROM),
        mock!(Eks::update_nodegroup_version)
            .match_requests(|r| {
                r.cluster_name() == Some(CLUSTER)
                    && r.nodegroup_name() == Some(NODEGROUP)
                    && r.version() == Some(TO)
            })
            .then_output(|| {
                UpdateNodegroupVersionOutput::builder()
                    .update(update(UpdateStatus::InProgress, Vec::new()))
                    .build()
            }),
    );
    let mocks = Mocks {
        eks: vec![&old, &send],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, version_event("upgrade-nodegroup", TO))
        .await
        .expect("asked");
    assert_eq!(send.num_calls(), 1);
    assert_eq!(out["ready"], json!(false));

    let drained = mock!(Eks::update_nodegroup_version).then_output(|| {
        UpdateNodegroupVersionOutput::builder()
            .update(update(
                UpdateStatus::Failed,
                vec![
                    ErrorDetail::builder()
                        .error_code(ErrorCode::PodEvictionFailure)
                        .error_message("Reached max retries while trying to evict pods from nodes")
                        .build(),
                ],
            ))
            .build()
    });
    let mocks = Mocks {
        eks: vec![&old, &drained],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let err = handle(&deps, version_event("upgrade-nodegroup", TO))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("PodEvictionFailure"), "{err}");

    let done = group(NodegroupStatus::Active, TO);
    let mocks = Mocks {
        eks: vec![&done, &send],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, version_event("upgrade-nodegroup", TO))
        .await
        .expect("level");
    assert_eq!(out["ready"], json!(true));
    assert_eq!(send.num_calls(), 1, "nothing more sent");
}

fn addon_at(version: &'static str) -> Rule {
    mock!(Eks::describe_addon).then_output(move || {
        DescribeAddonOutput::builder()
            .addon(
                Addon::builder()
                    .addon_name("any")
                    .status(AddonStatus::Active)
                    .addon_version(version)
                    .build(),
            )
            .build()
    })
}

fn versions() -> Rule {
    mock!(Eks::describe_addon_versions)
        .match_requests(|r| r.kubernetes_version() == Some(TO))
        .then_output(|| {
            let version = |v: &str, default: bool| {
                AddonVersionInfo::builder()
                    .addon_version(v)
                    .compatibilities(
                        Compatibility::builder()
                            .cluster_version(TO)
                            .default_version(default)
                            .build(),
                    )
                    .build()
            };
            DescribeAddonVersionsOutput::builder()
                .addons(
                    AddonInfo::builder()
                        .addon_name("any")
                        .addon_versions(version("v2.0.0-eksbuild.1", true))
                        .addon_versions(version("v1.9.0-eksbuild.1", false))
                        .build(),
                )
                .build()
        })
}

#[tokio::test]
async fn addons_move_to_the_default_only_when_not_compatible() {
    let update = mock!(Eks::update_addon)
        .match_requests(|r| r.addon_version() == Some("v2.0.0-eksbuild.1"))
        .then_output(|| UpdateAddonOutput::builder().build());
    let (old, listed) = (addon_at("v1.0.0-eksbuild.3"), versions());
    let mocks = Mocks {
        eks: vec![&old, &listed, &update],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, version_event("upgrade-addons", TO))
        .await
        .expect("asked");
    let addons = NODEGROUP_ADDONS.len() + CLUSTER_ADDONS.len();
    assert_eq!(update.num_calls(), addons, "{out}");
    assert_eq!(out["ready"], json!(false));

    let compatible = addon_at("v1.9.0-eksbuild.1");
    let mocks = Mocks {
        eks: vec![&compatible, &listed, &update],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    let out = handle(&deps, version_event("upgrade-addons", TO))
        .await
        .expect("compatible");
    assert_eq!(out["ready"], json!(true), "{out}");
    assert_eq!(update.num_calls(), addons, "nothing more sent");
}

#[tokio::test]
async fn an_image_upgrade_skips_every_cluster_step() {
    let found = at(ClusterStatus::Active, FROM);
    let mocks = Mocks {
        eks: vec![&found],
        ..Default::default()
    };
    let (deps, _) = mocks.deps();
    for action in [
        "upgrade-insights",
        "upgrade-control-plane",
        "upgrade-nodegroup",
        "upgrade-addons",
    ] {
        let mut event = event(action);
        event["options"] = json!({"input": {"image": "example.com/ingestion:2.0.0"}});
        let out = handle(&deps, event).await.expect("skipped");
        assert_eq!(out["ready"], json!(true), "{action}");
        assert_eq!(out["upgrade"]["skipped"], json!(true), "{action}");
    }
    assert_eq!(found.num_calls(), 0);
}

/// An add-on DEGRADED before this run asked it anything fails at once, naming it; one
/// DEGRADED after this run's update is waited for.
#[tokio::test]
async fn an_addon_degraded_before_the_upgrade_fails_at_once() {
    let degraded = mock!(Eks::describe_addon).then_output(|| {
        DescribeAddonOutput::builder()
            .addon(
                Addon::builder()
                    .addon_name("vpc-cni")
                    .status(AddonStatus::Degraded)
                    .addon_version("v1.0.0-eksbuild.3")
                    .build(),
            )
            .build()
    });
    let mocks = Mocks {
        eks: vec![&degraded],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps();
    let err = handle(&deps, version_event("upgrade-addons", TO))
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal, "{err}");
    assert!(err.to_string().contains("already DEGRADED"), "{err}");

    // After this run's update of it: pending.
    for addon in NODEGROUP_ADDONS.into_iter().chain(CLUSTER_ADDONS) {
        recorder
            .save_output(
                "acme",
                &format!("upgrade.eks.addon-{addon}"),
                &json!({"execution_id": "exec-1", "target": TO, "update_id": "upd-9"}),
            )
            .await
            .unwrap();
    }
    let out = handle(&deps, version_event("upgrade-addons", TO))
        .await
        .expect("waited for");
    assert_eq!(out["ready"], json!(false), "{out}");
}
