//! scale-nodegroup with mocks: the timing the emulator does not have (moto applies a
//! scaling change at once and never reports UPDATING or ResourceInUseException).

use aws_sdk_eks::Client as Eks;
use aws_sdk_eks::operation::describe_nodegroup::DescribeNodegroupOutput;
use aws_sdk_eks::operation::update_nodegroup_config::{
    UpdateNodegroupConfigError, UpdateNodegroupConfigOutput,
};
use aws_sdk_eks::types::error::ResourceInUseException;
use aws_sdk_eks::types::{Nodegroup, NodegroupScalingConfig, NodegroupStatus, Update};
use aws_smithy_mocks::{Rule, mock};
use serde_json::json;

use super::*;

const NODEGROUP: &str = "apiary-acme-system";

fn group(status: NodegroupStatus, (min, desired, max): (i32, i32, i32)) -> Rule {
    mock!(Eks::describe_nodegroup).then_output(move || {
        let group = Nodegroup::builder()
            .nodegroup_name(NODEGROUP)
            .nodegroup_arn(format!(
                "arn:aws:eks:us-west-2:123456789012:nodegroup/{CLUSTER}/{NODEGROUP}/1"
            ))
            .cluster_name(CLUSTER)
            .status(status.clone())
            .scaling_config(
                NodegroupScalingConfig::builder()
                    .min_size(min)
                    .desired_size(desired)
                    .max_size(max)
                    .build(),
            )
            .build();
        DescribeNodegroupOutput::builder().nodegroup(group).build()
    })
}

fn update_to(expected: (i32, i32, i32)) -> Rule {
    mock!(Eks::update_nodegroup_config)
        .match_requests(move |r| {
            r.cluster_name() == Some(CLUSTER)
                && r.nodegroup_name() == Some(NODEGROUP)
                && r.scaling_config().is_some_and(|c| {
                    (c.min_size(), c.desired_size(), c.max_size())
                        == (Some(expected.0), Some(expected.1), Some(expected.2))
                })
        })
        .then_output(|| {
            UpdateNodegroupConfigOutput::builder()
                .update(Update::builder().id("upd-1").build())
                .build()
        })
}

/// The record after scale-pools set the system pool to 4..=12, 5 desired.
fn scaled() -> Fixture {
    acme().with_spec(|spec| {
        spec["cluster"] = json!({"pools": {"system": {"min": 4, "max": 12, "desired": 5}}});
    })
}

fn scale_event(pool: &str) -> Value {
    let mut event = event("scale-nodegroup");
    let input = match pool {
        "system" => json!({"pool": "system", "min": 4, "max": 12, "desired": 5}),
        _ => json!({"pool": "ingestion", "cpu": 32}),
    };
    event["options"] = json!({"input": input});
    event
}

#[tokio::test]
async fn an_active_group_with_other_sizes_gets_one_update_and_is_pending() {
    let (found, update) = (
        group(NodegroupStatus::Active, (3, 3, 10)),
        update_to((4, 5, 12)),
    );
    let mocks = Mocks {
        eks: vec![&found, &update],
        ..Default::default()
    };
    let (deps, recorder) = mocks.deps_with(&scaled());
    let out = handle(&deps, scale_event("system")).await.expect("scale");
    assert_eq!(update.num_calls(), 1, "the record's sizes are sent: {out}");
    assert_eq!(out["ready"], json!(false), "{out}");
    assert_eq!(out["scaling"]["update_id"], json!("upd-1"));
    assert_eq!(
        out["scaling"]["found"],
        json!({"min": 3, "max": 10, "desired": 3})
    );
    let journal = recorder.entries.lock().unwrap().clone();
    let detail = journal.last().and_then(|e| e.detail.clone()).unwrap();
    assert!(
        detail.contains("before") && detail.contains("after"),
        "{detail}"
    );
}

#[tokio::test]
async fn an_update_in_progress_is_pending_and_nothing_is_sent() {
    for status in [NodegroupStatus::Updating, NodegroupStatus::Creating] {
        let (found, update) = (group(status, (3, 3, 10)), update_to((4, 5, 12)));
        let mocks = Mocks {
            eks: vec![&found, &update],
            ..Default::default()
        };
        let (deps, _) = mocks.deps_with(&scaled());
        let out = handle(&deps, scale_event("system")).await.expect("pending");
        assert_eq!(out["ready"], json!(false));
        assert_eq!(update.num_calls(), 0);
    }
}

#[tokio::test]
async fn resource_in_use_is_pending_not_a_failure() {
    let found = group(NodegroupStatus::Active, (3, 3, 10));
    let busy = mock!(Eks::update_nodegroup_config).then_error(|| {
        UpdateNodegroupConfigError::ResourceInUseException(
            ResourceInUseException::builder()
                .message("Nodegroup cannot be updated as it is currently not in Active State")
                .meta(meta(
                    "ResourceInUseException",
                    "Nodegroup cannot be updated as it is currently not in Active State",
                ))
                .build(),
        )
    });
    let mocks = Mocks {
        eks: vec![&found, &busy],
        ..Default::default()
    };
    let (deps, _) = mocks.deps_with(&scaled());
    let out = handle(&deps, scale_event("system"))
        .await
        .expect("a busy group is waited for");
    assert_eq!(busy.num_calls(), 1);
    assert_eq!(out["ready"], json!(false), "{out}");
    assert!(
        out["scaling"]["detail"]
            .as_str()
            .unwrap()
            .contains("another update"),
        "{out}"
    );
}

#[tokio::test]
async fn applied_sizes_are_ready_and_a_failed_group_fails() {
    let (found, update) = (
        group(NodegroupStatus::Active, (4, 5, 12)),
        update_to((4, 5, 12)),
    );
    let mocks = Mocks {
        eks: vec![&found, &update],
        ..Default::default()
    };
    let (deps, _) = mocks.deps_with(&scaled());
    let out = handle(&deps, scale_event("system")).await.expect("ready");
    assert_eq!(out["ready"], json!(true), "{out}");
    assert_eq!(update.num_calls(), 0, "equal sizes: no update");

    let degraded = group(NodegroupStatus::Degraded, (3, 3, 10));
    let mocks = Mocks {
        eks: vec![&degraded],
        ..Default::default()
    };
    let (deps, _) = mocks.deps_with(&scaled());
    let err = handle(&deps, scale_event("system")).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal, "{err}");
}

#[tokio::test]
async fn an_ingestion_run_skips_the_node_group() {
    let found = group(NodegroupStatus::Active, (3, 3, 10));
    let mocks = Mocks {
        eks: vec![&found],
        ..Default::default()
    };
    let (deps, _) = mocks.deps_with(&scaled());
    let out = handle(&deps, scale_event("ingestion"))
        .await
        .expect("skipped");
    assert_eq!(out["ready"], json!(true));
    assert_eq!(out["scaling"]["skipped"], json!(true));
    assert_eq!(found.num_calls(), 0, "nothing is looked at");
}

/// The record was written but the run stopped before the apply: the next provision's
/// node group step converges the group to the recorded sizes, desired size included.
#[tokio::test]
async fn provision_converges_the_group_to_the_recorded_pools() {
    use aws_sdk_eks::types::ClusterStatus;

    use super::nodegroup::{ASSUMED, access_and_addons_present, roles_with_caller};

    let (cluster, roles) = (describe_cluster(ClusterStatus::Active), roles_with_caller());
    let identity = caller(ASSUMED);
    let [entries, policies, addons] = access_and_addons_present();
    // min and max already as recorded, the desired size not.
    let (found, update) = (
        group(NodegroupStatus::Active, (4, 3, 12)),
        update_to((4, 5, 12)),
    );
    let mocks = Mocks {
        eks: vec![&cluster, &found, &entries, &policies, &addons, &update],
        iam: vec![&roles],
        sts: vec![&identity],
        ..Default::default()
    };
    let (deps, _) = mocks.deps_with(&scaled());
    handle(&deps, event("ensure-nodegroup"))
        .await
        .expect("ensure-nodegroup");
    assert_eq!(update.num_calls(), 1, "the recorded desired size is sent");

    // As recorded: nothing to update.
    let (found, update) = (
        group(NodegroupStatus::Active, (4, 5, 12)),
        update_to((4, 5, 12)),
    );
    let mocks = Mocks {
        eks: vec![&cluster, &found, &entries, &policies, &addons, &update],
        iam: vec![&roles],
        sts: vec![&identity],
        ..Default::default()
    };
    let (deps, _) = mocks.deps_with(&scaled());
    handle(&deps, event("ensure-nodegroup"))
        .await
        .expect("ensure-nodegroup");
    assert_eq!(update.num_calls(), 0);
}
