//! The slow and refusing paths of real AWS, which the emulator never shows: a node group
//! that stays DELETING, a cluster someone else tagged.

use std::collections::HashMap;

use aws_sdk_eks::operation::delete_nodegroup::DeleteNodegroupError;
use aws_sdk_eks::operation::describe_cluster::DescribeClusterOutput;
use aws_sdk_eks::operation::list_nodegroups::ListNodegroupsOutput;
use aws_sdk_eks::types::Cluster;
use aws_sdk_eks::types::error::ResourceInUseException;
use aws_smithy_mocks::{RuleMode, mock, mock_client};

use super::*;

fn cluster_tagged(deployment: &str) -> DescribeClusterOutput {
    DescribeClusterOutput::builder()
        .cluster(
            Cluster::builder()
                .name(format!("apiary-{}-eks", apiary_core::fixtures::NAME))
                .set_tags(Some(HashMap::from([(
                    "apiary:deployment".to_owned(),
                    deployment.to_owned(),
                )])))
                .build(),
        )
        .build()
}

fn confirmed(fixture: &Fixture, action: &str) -> serde_json::Value {
    let mut event = fixture.event(action);
    event["options"] = json!({"input": {"confirm": fixture.name}});
    event
}

#[tokio::test]
async fn a_node_group_still_deleting_keeps_the_cluster_and_is_pending() {
    let fixture = Fixture::test();
    let state = Arc::new(fixture.state());
    let mut deps = deps(state.clone());
    let name = fixture.name.clone();
    let describe =
        mock!(aws_sdk_eks::Client::describe_cluster).then_output(move || cluster_tagged(&name));
    let list = mock!(aws_sdk_eks::Client::list_nodegroups)
        .then_output(|| ListNodegroupsOutput::builder().nodegroups("system").build());
    let busy = mock!(aws_sdk_eks::Client::delete_nodegroup).then_error(|| {
        DeleteNodegroupError::ResourceInUseException(
            ResourceInUseException::builder()
                .message("deleting")
                .build(),
        )
    });
    let delete_cluster = mock!(aws_sdk_eks::Client::delete_cluster).then_output(|| {
        aws_sdk_eks::operation::delete_cluster::DeleteClusterOutput::builder().build()
    });
    deps.eks = mock_client!(
        aws_sdk_eks,
        RuleMode::MatchAny,
        [&describe, &list, &busy, &delete_cluster]
    );

    let out = handle(&deps, confirmed(&fixture, "cluster")).await.unwrap();
    assert_eq!(out["ready"], json!(false));
    assert!(
        out["pending"][0]
            .as_str()
            .unwrap()
            .contains("node group system"),
        "{out}"
    );
    assert_eq!(
        delete_cluster.num_calls(),
        0,
        "the cluster waits for its node groups"
    );
    let saved = state
        .saved(&fixture.name, "teardown.cluster")
        .expect("progress saved while pending");
    assert_eq!(saved["removed"], json!(["eks:nodegroup system"]));
}

#[tokio::test]
async fn a_cluster_tagged_for_another_deployment_is_refused() {
    let fixture = Fixture::test();
    let mut deps = deps(Arc::new(fixture.state()));
    let describe =
        mock!(aws_sdk_eks::Client::describe_cluster).then_output(|| cluster_tagged("someone-else"));
    let delete = mock!(aws_sdk_eks::Client::delete_cluster).then_output(|| {
        aws_sdk_eks::operation::delete_cluster::DeleteClusterOutput::builder().build()
    });
    deps.eks = mock_client!(aws_sdk_eks, RuleMode::MatchAny, [&describe, &delete]);
    let err = handle(&deps, confirmed(&fixture, "cluster"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), apiary_core::ErrorName::Conflict, "{err}");
    assert_eq!(delete.num_calls(), 0);
}

#[tokio::test]
async fn a_resource_the_receipt_cannot_explain_keeps_the_receipt_pending() {
    use aws_sdk_resourcegroupstagging::operation::get_resources::GetResourcesOutput;
    use aws_sdk_resourcegroupstagging::types::ResourceTagMapping;
    let fixture = Fixture::test();
    let mut deps = deps(Arc::new(fixture.state()));
    let found = mock!(aws_sdk_resourcegroupstagging::Client::get_resources).then_output(|| {
        GetResourcesOutput::builder()
            .resource_tag_mapping_list(
                ResourceTagMapping::builder()
                    .resource_arn("arn:aws:ec2:us-west-2:123456789012:volume/vol-0left")
                    .build(),
            )
            .build()
    });
    deps.tagging = mock_client!(aws_sdk_resourcegroupstagging, RuleMode::MatchAny, [&found]);
    let out = handle(&deps, confirmed(&fixture, "receipt")).await.unwrap();
    assert_eq!(out["ready"], json!(false));
    assert_eq!(
        out["scan"]["unexplained"],
        json!(["arn:aws:ec2:us-west-2:123456789012:volume/vol-0left"]),
        "{out}"
    );
    assert!(
        out["pending"][0].as_str().unwrap().contains("vol-0left"),
        "{out}"
    );
}
