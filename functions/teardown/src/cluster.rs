//! Step 4: the node groups, then the EKS cluster, then what the cluster layer made
//! around it (Karpenter's interruption queue and rules, the nodes' launch template).
//! EKS deletes a node group in 5-15 minutes and a cluster in about 5; the workflow polls.

use apiary_core::{Error, Result};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::Filter;

use crate::Work;
use crate::ownership::ec2_tags;

pub async fn run(work: &mut Work<'_>) -> Result<Vec<String>> {
    let mut pending = Vec::new();
    let cluster = work.owner.cluster.clone();
    let deps = work.deps;
    let described = apiary_core::aws::answer_or_none(
        format!("DescribeCluster {cluster}"),
        deps.eks.describe_cluster().name(&cluster).send(),
        |e| e.is_resource_not_found_exception(),
    )
    .await?;
    if let Some(described) = described.and_then(|d| d.cluster) {
        let tags = described.tags().cloned().unwrap_or_default();
        if !work
            .owner
            .tagged(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            return Err(Error::Conflict(format!(
                "EKS cluster {cluster} is not tagged apiary:deployment={}: not deleted",
                work.owner.deployment
            )));
        }
        let nodegroups = deps
            .eks
            .list_nodegroups()
            .cluster_name(&cluster)
            .send()
            .await
            .map_err(|e| Error::aws(format!("ListNodegroups {cluster}"), e))?;
        for nodegroup in nodegroups.nodegroups() {
            match deps
                .eks
                .delete_nodegroup()
                .cluster_name(&cluster)
                .nodegroup_name(nodegroup)
                .send()
                .await
            {
                Ok(_) => {}
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) =>
                {
                    work.report.removed("eks:nodegroup", nodegroup);
                    continue;
                }
                // Already deleting, or another change to it is in progress.
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_in_use_exception()) => {}
                Err(err) => return Err(Error::aws(format!("DeleteNodegroup {nodegroup}"), err)),
            }
            work.report.removed("eks:nodegroup", nodegroup);
            pending.push(format!("node group {nodegroup} is being deleted"));
        }
        if pending.is_empty() {
            match deps.eks.delete_cluster().name(&cluster).send().await {
                Ok(_) => {}
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception()) => {}
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_in_use_exception()) => {}
                Err(err) => return Err(Error::aws(format!("DeleteCluster {cluster}"), err)),
            }
            work.report.removed("eks:cluster", &cluster);
            // moto removes it at once; on AWS it stays DELETING for minutes.
            let still = apiary_core::aws::answer_or_none(
                format!("DescribeCluster {cluster}"),
                deps.eks.describe_cluster().name(&cluster).send(),
                |e| e.is_resource_not_found_exception(),
            )
            .await?;
            if still.and_then(|d| d.cluster).is_some() {
                pending.push(format!("EKS cluster {cluster} is being deleted"));
            }
        }
    }
    if !pending.is_empty() {
        return Ok(pending);
    }
    control_plane_logs(work).await?;
    interruption_queue(work).await?;
    launch_templates(work).await?;
    Ok(pending)
}

/// The control plane's log group, once the cluster is gone (EKS may write its last lines
/// while the cluster deletes, and would make the group again). Found by its name, which
/// names this deployment's cluster: a group EKS made itself before the cluster step made
/// it first carries no tags.
async fn control_plane_logs(work: &mut Work<'_>) -> Result<()> {
    let group = apiary_core::naming::eks_log_group(&work.owner.cluster);
    apiary_core::aws::answer_or_none(
        format!("DeleteLogGroup {group}"),
        work.deps
            .logs
            .delete_log_group()
            .log_group_name(&group)
            .send(),
        |e| e.is_resource_not_found_exception(),
    )
    .await?;
    work.report.removed("logs:log-group", &group);
    Ok(())
}

/// Karpenter's interruption queue and the EventBridge rules that feed it.
async fn interruption_queue(work: &mut Work<'_>) -> Result<()> {
    let deps = work.deps;
    let prefix = work.step.names.resource("karpenter-");
    let rules = deps
        .events
        .list_rules()
        .name_prefix(&prefix)
        .send()
        .await
        .map_err(|e| Error::aws(format!("ListRules {prefix}"), e))?;
    for rule in rules.rules() {
        let (Some(name), Some(arn)) = (rule.name(), rule.arn()) else {
            continue;
        };
        let tags = deps
            .events
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .map_err(|e| Error::aws(format!("ListTagsForResource {name}"), e))?;
        if !work
            .owner
            .tagged(tags.tags().iter().map(|t| (t.key(), t.value())))
        {
            continue;
        }
        let targets = deps
            .events
            .list_targets_by_rule()
            .rule(name)
            .send()
            .await
            .map_err(|e| Error::aws(format!("ListTargetsByRule {name}"), e))?;
        let ids: Vec<String> = targets
            .targets()
            .iter()
            .map(|t| t.id().to_owned())
            .collect();
        if !ids.is_empty() {
            deps.events
                .remove_targets()
                .rule(name)
                .set_ids(Some(ids))
                .send()
                .await
                .map_err(|e| Error::aws(format!("RemoveTargets {name}"), e))?;
        }
        match deps.events.delete_rule().name(name).send().await {
            Ok(_) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) => {}
            Err(err) => return Err(Error::aws(format!("DeleteRule {name}"), err)),
        }
        work.report.removed("events:rule", name);
    }
    let queue = work.step.names.resource("karpenter");
    let url = match deps.sqs.get_queue_url().queue_name(&queue).send().await {
        Ok(out) => out.queue_url,
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_queue_does_not_exist()) =>
        {
            None
        }
        Err(err) => return Err(Error::aws(format!("GetQueueUrl {queue}"), err)),
    };
    if let Some(url) = url {
        let tags = deps
            .sqs
            .list_queue_tags()
            .queue_url(&url)
            .send()
            .await
            .map_err(|e| Error::aws(format!("ListQueueTags {queue}"), e))?;
        let ours = tags.tags().is_some_and(|t| {
            work.owner
                .tagged(t.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        });
        if ours {
            match deps.sqs.delete_queue().queue_url(&url).send().await {
                Ok(_) => {}
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_queue_does_not_exist()) => {}
                Err(err) => return Err(Error::aws(format!("DeleteQueue {queue}"), err)),
            }
            work.report.removed("sqs:queue", &queue);
        }
    }
    Ok(())
}

/// Launch templates tagged for this deployment (the system nodes').
async fn launch_templates(work: &mut Work<'_>) -> Result<()> {
    let deps = work.deps;
    let found = deps
        .ec2
        .describe_launch_templates()
        .filters(
            Filter::builder()
                .name("tag:apiary:deployment")
                .values(&work.owner.deployment)
                .build(),
        )
        .send()
        .await
        .map_err(|e| Error::aws("DescribeLaunchTemplates", e))?;
    for template in found.launch_templates() {
        let Some(id) = template.launch_template_id() else {
            continue;
        };
        if !work.owner.tagged(ec2_tags(template.tags())) {
            continue;
        }
        match deps
            .ec2
            .delete_launch_template()
            .launch_template_id(id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(err) if err.code() == Some("InvalidLaunchTemplateId.NotFound") => {}
            Err(err) => return Err(Error::aws(format!("DeleteLaunchTemplate {id}"), err)),
        }
        work.report.removed("ec2:launch-template", id);
    }
    Ok(())
}
