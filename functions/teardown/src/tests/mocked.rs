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

/// The stores are gone; their groups are described by name. DocumentDB's cluster
/// parameter group is deleted by its name; still in use (the cluster is still going) it
/// is pending, not a failure; one already gone (or never made) is done.
#[tokio::test]
async fn the_documentdb_cluster_parameter_group_goes_by_name_and_in_use_is_pending() {
    use aws_sdk_docdb::operation::delete_db_cluster_parameter_group::DeleteDBClusterParameterGroupError;
    use aws_sdk_docdb::operation::describe_db_cluster_parameter_groups::DescribeDbClusterParameterGroupsOutput;
    use aws_sdk_docdb::types::DbClusterParameterGroup;
    use aws_sdk_docdb::types::error::InvalidDbParameterGroupStateFault;
    use aws_sdk_rds::operation::describe_db_instances::DescribeDBInstancesError;
    use aws_sdk_rds::operation::describe_db_parameter_groups::DescribeDBParameterGroupsError;
    use aws_sdk_rds::operation::describe_db_subnet_groups::DescribeDBSubnetGroupsError;
    use aws_sdk_rds::operation::list_tags_for_resource::ListTagsForResourceOutput;

    let fixture = Fixture::test();
    let mut deps = deps(Arc::new(fixture.state()));
    let group = format!("apiary-{}-docdb5", fixture.name);
    let arn = format!("arn:aws:rds:us-west-2:123456789012:cluster-pg:{group}");

    let no_instance = mock!(aws_sdk_rds::Client::describe_db_instances).then_error(|| {
        DescribeDBInstancesError::DbInstanceNotFoundFault(
            aws_sdk_rds::types::error::DbInstanceNotFoundFault::builder().build(),
        )
    });
    let no_subnet_group = mock!(aws_sdk_rds::Client::describe_db_subnet_groups).then_error(|| {
        DescribeDBSubnetGroupsError::DbSubnetGroupNotFoundFault(
            aws_sdk_rds::types::error::DbSubnetGroupNotFoundFault::builder().build(),
        )
    });
    let no_parameter_group =
        mock!(aws_sdk_rds::Client::describe_db_parameter_groups).then_error(|| {
            DescribeDBParameterGroupsError::DbParameterGroupNotFoundFault(
                aws_sdk_rds::types::error::DbParameterGroupNotFoundFault::builder().build(),
            )
        });
    let name = fixture.name.clone();
    let tagged = mock!(aws_sdk_rds::Client::list_tags_for_resource).then_output(move || {
        ListTagsForResourceOutput::builder()
            .tag_list(
                aws_sdk_rds::types::Tag::builder()
                    .key("apiary:deployment")
                    .value(name.clone())
                    .build(),
            )
            .build()
    });
    deps.rds = mock_client!(
        aws_sdk_rds,
        RuleMode::MatchAny,
        [&no_instance, &no_subnet_group, &no_parameter_group, &tagged]
    );

    let no_cluster = mock!(aws_sdk_docdb::Client::describe_db_clusters).then_error(|| {
        aws_sdk_docdb::operation::describe_db_clusters::DescribeDBClustersError::DbClusterNotFoundFault(
            aws_sdk_docdb::types::error::DbClusterNotFoundFault::builder().build(),
        )
    });
    let (found_name, found_arn) = (group.clone(), arn.clone());
    let found = mock!(aws_sdk_docdb::Client::describe_db_cluster_parameter_groups)
        .match_requests({
            let group = group.clone();
            move |r| r.db_cluster_parameter_group_name() == Some(group.as_str())
        })
        .then_output(move || {
            DescribeDbClusterParameterGroupsOutput::builder()
                .db_cluster_parameter_groups(
                    DbClusterParameterGroup::builder()
                        .db_cluster_parameter_group_name(found_name.clone())
                        .db_cluster_parameter_group_arn(found_arn.clone())
                        .build(),
                )
                .build()
        });
    let in_use = mock!(aws_sdk_docdb::Client::delete_db_cluster_parameter_group).then_error(|| {
        DeleteDBClusterParameterGroupError::InvalidDbParameterGroupStateFault(
            InvalidDbParameterGroupStateFault::builder()
                .message("in use by a cluster being deleted")
                .build(),
        )
    });
    deps.docdb = mock_client!(
        aws_sdk_docdb,
        RuleMode::MatchAny,
        [&no_cluster, &found, &in_use]
    );

    let no_group = mock!(aws_sdk_elasticache::Client::describe_replication_groups).then_error(|| {
        aws_sdk_elasticache::operation::describe_replication_groups::DescribeReplicationGroupsError::ReplicationGroupNotFoundFault(
            aws_sdk_elasticache::types::error::ReplicationGroupNotFoundFault::builder().build(),
        )
    });
    let no_cache_subnets = mock!(aws_sdk_elasticache::Client::describe_cache_subnet_groups)
        .then_error(|| {
            aws_sdk_elasticache::operation::describe_cache_subnet_groups::DescribeCacheSubnetGroupsError::CacheSubnetGroupNotFoundFault(
                aws_sdk_elasticache::types::error::CacheSubnetGroupNotFoundFault::builder().build(),
            )
        });
    deps.elasticache = mock_client!(
        aws_sdk_elasticache,
        RuleMode::MatchAny,
        [&no_group, &no_cache_subnets]
    );

    // The stores' alarms: this deployment's, and one of a deployment whose name extends
    // this one's (`<name>-dp-x`), which shares the name prefix but not the tag.
    use aws_sdk_cloudwatch::types::{MetricAlarm, Tag};
    let ours = format!("apiary-{}-dp-postgres-cpu", fixture.name);
    let theirs = format!("apiary-{}-dp-x-dp-postgres-cpu", fixture.name);
    let arn = |name: &str| format!("arn:aws:cloudwatch:us-west-2:123456789012:alarm:{name}");
    let (listed_ours, listed_theirs) = (ours.clone(), theirs.clone());
    let alarms = mock!(aws_sdk_cloudwatch::Client::describe_alarms).then_output(move || {
        aws_sdk_cloudwatch::operation::describe_alarms::DescribeAlarmsOutput::builder()
            .metric_alarms(
                MetricAlarm::builder()
                    .alarm_name(&listed_ours)
                    .alarm_arn(arn(&listed_ours))
                    .build(),
            )
            .metric_alarms(
                MetricAlarm::builder()
                    .alarm_name(&listed_theirs)
                    .alarm_arn(arn(&listed_theirs))
                    .build(),
            )
            .build()
    });
    let (tagged_name, theirs_tag) = (fixture.name.clone(), format!("{}-dp-x", fixture.name));
    let tags = mock!(aws_sdk_cloudwatch::Client::list_tags_for_resource).then_output(move || {
        aws_sdk_cloudwatch::operation::list_tags_for_resource::ListTagsForResourceOutput::builder()
            .tags(
                Tag::builder()
                    .key("apiary:deployment")
                    .value(&tagged_name)
                    .build(),
            )
            .build()
    });
    let foreign_tags = mock!(aws_sdk_cloudwatch::Client::list_tags_for_resource)
        .match_requests({
            let theirs = theirs.clone();
            move |r| r.resource_arn().is_some_and(|a| a.ends_with(&theirs))
        })
        .then_output(move || {
            aws_sdk_cloudwatch::operation::list_tags_for_resource::ListTagsForResourceOutput::builder()
                .tags(Tag::builder().key("apiary:deployment").value(&theirs_tag).build())
                .build()
        });
    let only_ours = ours.clone();
    let delete_alarms = mock!(aws_sdk_cloudwatch::Client::delete_alarms)
        .match_requests(move |r| r.alarm_names() == [only_ours.clone()])
        .then_output(|| {
            aws_sdk_cloudwatch::operation::delete_alarms::DeleteAlarmsOutput::builder().build()
        });
    deps.cloudwatch = mock_client!(
        aws_sdk_cloudwatch,
        RuleMode::MatchAny,
        [&alarms, &foreign_tags, &tags, &delete_alarms]
    );

    let out = handle(&deps, confirmed(&fixture, "stores")).await.unwrap();
    assert_eq!(out["ready"], json!(false), "{out}");
    assert_eq!(
        delete_alarms.num_calls(),
        1,
        "only this deployment's alarm is deleted"
    );
    assert_eq!(
        out["pending"],
        json!([format!(
            "DB cluster parameter group {group} is still in use"
        )]),
        "{out}"
    );
    assert_eq!(in_use.num_calls(), 1);
    // By name, not by listing: the subnet groups were asked for by their two names.
    assert_eq!(no_subnet_group.num_calls(), 2);
}
