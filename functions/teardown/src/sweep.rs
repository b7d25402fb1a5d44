//! Step 5: the sweep by the AWS API of what nothing recorded: what the controllers in
//! the cluster made (Karpenter's and Auto Mode's instances, the load balancer
//! controller's load balancers, target groups and security groups, the EBS CSI driver's
//! volumes) and the network interfaces left in the deployment's subnets. It works when
//! the Kubernetes API is already gone: everything is found by the tags the controllers
//! write and by VPC membership, and only what [`Owner::owns`](crate::Owner::owns)
//! accepts is deleted.
//!
//! AWS releases a deleted load balancer's interfaces, and a terminated instance's volumes
//! and interfaces, minutes later: what is still attached is reported as pending and the
//! workflow polls again.

use std::collections::BTreeSet;

use apiary_core::naming::TAG_LAYER;
use apiary_core::{Error, Result};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, InstanceStateName, NetworkInterfaceStatus, VolumeState};

use crate::Work;
use crate::ownership::ec2_tags;

pub async fn run(work: &mut Work<'_>) -> Result<Vec<String>> {
    let mut pending = Vec::new();
    instances(work, &mut pending).await?;
    if let Some(vpc) = work.owner.vpc_id.clone() {
        load_balancers(work, &vpc, &mut pending).await?;
        target_groups(work, &vpc, &mut pending).await?;
        controller_groups(work, &vpc, &mut pending).await?;
        interfaces(work, &vpc, &mut pending).await?;
    }
    volumes(work, &mut pending).await?;
    Ok(pending)
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// Instances of this deployment: in its VPC with a controller's tag, or tagged with its
/// cluster's name anywhere in the region.
async fn instances(work: &mut Work<'_>, pending: &mut Vec<String>) -> Result<()> {
    let deps = work.deps;
    let mut found = Vec::new();
    let mut queries = vec![
        filter(
            "tag-key",
            &format!("kubernetes.io/cluster/{}", work.owner.cluster),
        ),
        filter("tag:eks:eks-cluster-name", &work.owner.cluster),
        filter("tag:aws:eks:cluster-name", &work.owner.cluster),
        filter("tag:apiary:deployment", &work.owner.deployment),
    ];
    if let Some(vpc) = &work.owner.vpc_id {
        queries.push(filter("vpc-id", vpc));
    }
    for query in queries {
        let mut pages = deps
            .ec2
            .describe_instances()
            .filters(query)
            .into_paginator()
            .send();
        while let Some(page) = pages
            .try_next()
            .await
            .map_err(|e| Error::aws("DescribeInstances", e))?
        {
            for reservation in page.reservations() {
                found.extend(reservation.instances().iter().cloned());
            }
        }
    }
    let mut terminate = BTreeSet::new();
    for instance in &found {
        let Some(id) = instance.instance_id() else {
            continue;
        };
        let in_vpc =
            instance.vpc_id().is_some() && instance.vpc_id() == work.owner.vpc_id.as_deref();
        if !work.owner.owns(ec2_tags(instance.tags()), in_vpc) {
            if in_vpc
                && !matches!(
                    instance.state().and_then(|s| s.name()),
                    Some(InstanceStateName::Terminated)
                )
            {
                work.report.note(format!(
                    "instance {id} in the VPC is not this deployment's (no tag of it): left alone; it will block the VPC's deletion"
                ));
            }
            continue;
        }
        match instance.state().and_then(|s| s.name()) {
            Some(InstanceStateName::Terminated) => {
                work.report.removed("ec2:instance", id);
            }
            Some(InstanceStateName::ShuttingDown) => {
                work.report.removed("ec2:instance", id);
                pending.push(format!("instance {id} is shutting down"));
            }
            _ => {
                terminate.insert(id.to_owned());
            }
        }
    }
    if !terminate.is_empty() {
        deps.ec2
            .terminate_instances()
            .set_instance_ids(Some(terminate.iter().cloned().collect()))
            .send()
            .await
            .map_err(|e| {
                Error::aws_transient_if(
                    "TerminateInstances",
                    e,
                    apiary_core::error::transient::ec2_not_yet_visible,
                )
            })?;
        for id in &terminate {
            work.report.removed("ec2:instance", id);
            pending.push(format!("instance {id} is being terminated"));
        }
    }
    Ok(())
}

/// Tags of ELBv2 resources, 20 ARNs per call.
async fn elb_tags(
    work: &Work<'_>,
    arns: &[String],
) -> Result<Vec<(String, Vec<(String, String)>)>> {
    let mut out = Vec::new();
    for chunk in arns.chunks(20) {
        let described = work
            .deps
            .elb
            .describe_tags()
            .set_resource_arns(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| Error::aws("DescribeTags (ELB)", e))?;
        for description in described.tag_descriptions() {
            let tags = description
                .tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_owned(),
                        t.value().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            out.push((
                description.resource_arn().unwrap_or_default().to_owned(),
                tags,
            ));
        }
    }
    Ok(out)
}

fn pairs(tags: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

async fn load_balancers(work: &mut Work<'_>, vpc: &str, pending: &mut Vec<String>) -> Result<()> {
    let deps = work.deps;
    let mut arns = Vec::new();
    let mut pages = deps.elb.describe_load_balancers().into_paginator().send();
    while let Some(page) = pages
        .try_next()
        .await
        .map_err(|e| Error::aws("DescribeLoadBalancers", e))?
    {
        for lb in page.load_balancers() {
            if lb.vpc_id() == Some(vpc) {
                arns.push(lb.load_balancer_arn().unwrap_or_default().to_owned());
            }
        }
    }
    for (arn, tags) in elb_tags(work, &arns).await? {
        if !work.owner.owns(pairs(&tags), true) {
            work.report.note(format!(
                "load balancer {arn} in the VPC is not this deployment's: left alone"
            ));
            continue;
        }
        // The controller may have turned deletion protection on (an annotation).
        deps.elb
            .modify_load_balancer_attributes()
            .load_balancer_arn(&arn)
            .attributes(
                aws_sdk_elasticloadbalancingv2::types::LoadBalancerAttribute::builder()
                    .key("deletion_protection.enabled")
                    .value("false")
                    .build(),
            )
            .send()
            .await
            .ok();
        match deps
            .elb
            .delete_load_balancer()
            .load_balancer_arn(&arn)
            .send()
            .await
        {
            Ok(_) => {}
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_load_balancer_not_found_exception()) => {}
            Err(err) => return Err(Error::aws(format!("DeleteLoadBalancer {arn}"), err)),
        }
        work.report
            .removed("elasticloadbalancing:loadbalancer", &arn);
        pending.push(format!("load balancer {arn} is being deleted"));
    }
    Ok(())
}

async fn target_groups(work: &mut Work<'_>, vpc: &str, pending: &mut Vec<String>) -> Result<()> {
    let deps = work.deps;
    let mut arns = Vec::new();
    let mut pages = deps.elb.describe_target_groups().into_paginator().send();
    while let Some(page) = pages
        .try_next()
        .await
        .map_err(|e| Error::aws("DescribeTargetGroups", e))?
    {
        for group in page.target_groups() {
            if group.vpc_id() == Some(vpc) {
                arns.push(group.target_group_arn().unwrap_or_default().to_owned());
            }
        }
    }
    for (arn, tags) in elb_tags(work, &arns).await? {
        if !work.owner.owns(pairs(&tags), true) {
            continue;
        }
        match deps
            .elb
            .delete_target_group()
            .target_group_arn(&arn)
            .send()
            .await
        {
            Ok(_) => work
                .report
                .removed("elasticloadbalancing:targetgroup", &arn),
            // Still used by a listener of a load balancer being deleted.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                pending.push(format!("target group {arn} is still in use"));
            }
            Err(err) => return Err(Error::aws(format!("DeleteTargetGroup {arn}"), err)),
        }
    }
    Ok(())
}

/// Security groups the controllers made in the VPC (not the network layer's own, which
/// the network step deletes last).
async fn controller_groups(
    work: &mut Work<'_>,
    vpc: &str,
    pending: &mut Vec<String>,
) -> Result<()> {
    let deps = work.deps;
    let groups = deps
        .ec2
        .describe_security_groups()
        .filters(filter("vpc-id", vpc))
        .send()
        .await
        .map_err(|e| Error::aws("DescribeSecurityGroups", e))?;
    for group in groups.security_groups() {
        let Some(id) = group.group_id() else { continue };
        let tags = ec2_tags(group.tags());
        let network_layer = tags.iter().any(|(k, _)| *k == TAG_LAYER);
        if group.group_name() == Some("default") || network_layer || !work.owner.owns(tags, true) {
            continue;
        }
        crate::network::revoke_references(work, id).await?;
        match deps.ec2.delete_security_group().group_id(id).send().await {
            Ok(_) => work.report.removed("ec2:security-group", id),
            Err(err) if err.code() == Some("InvalidGroup.NotFound") => {
                work.report.removed("ec2:security-group", id)
            }
            // Still attached to a load balancer's or instance's interface being released.
            Err(err) if err.code() == Some("DependencyViolation") => {
                pending.push(format!("security group {id} is still in use"));
            }
            Err(err) => return Err(Error::aws(format!("DeleteSecurityGroup {id}"), err)),
        }
    }
    Ok(())
}

/// Network interfaces of this deployment ([`crate::Owner::owns_interface`]) left
/// detached in its VPC. Attached ones belong to something still being deleted (or to the
/// network step's endpoints and gateways).
async fn interfaces(work: &mut Work<'_>, vpc: &str, pending: &mut Vec<String>) -> Result<()> {
    let deps = work.deps;
    let found = deps
        .ec2
        .describe_network_interfaces()
        .filters(filter("vpc-id", vpc))
        .send()
        .await
        .map_err(|e| Error::aws("DescribeNetworkInterfaces", e))?;
    for eni in found.network_interfaces() {
        let Some(id) = eni.network_interface_id() else {
            continue;
        };
        let tags = ec2_tags(eni.tag_set());
        if eni.status() == Some(&NetworkInterfaceStatus::Available) {
            if !work.owner.owns_interface(
                tags.iter().copied(),
                eni.description().unwrap_or_default(),
                &deps.in_vpc_functions,
            ) {
                // Not ours: left alone; the network step names it if it is still there.
                work.report.note(format!(
                    "network interface {id} in the VPC is not this deployment's: left alone"
                ));
                continue;
            }
            match deps
                .ec2
                .delete_network_interface()
                .network_interface_id(id)
                .send()
                .await
            {
                Ok(_) => work.report.removed("ec2:network-interface", id),
                Err(err) if err.code() == Some("InvalidNetworkInterfaceID.NotFound") => {
                    work.report.removed("ec2:network-interface", id)
                }
                Err(err) => return Err(Error::aws(format!("DeleteNetworkInterface {id}"), err)),
            }
        } else if work.owner.owns(tags, true) && !work.owner.tagged(ec2_tags(eni.tag_set())) {
            pending.push(format!(
                "network interface {id} (a controller's) is still attached"
            ));
        }
    }
    Ok(())
}

/// EBS volumes made for PersistentVolumeClaims (and Auto Mode's, which outlive it).
async fn volumes(work: &mut Work<'_>, pending: &mut Vec<String>) -> Result<()> {
    let deps = work.deps;
    let queries = [
        filter(
            "tag-key",
            &format!("kubernetes.io/cluster/{}", work.owner.cluster),
        ),
        filter("tag:KubernetesCluster", &work.owner.cluster),
        filter("tag:eks:eks-cluster-name", &work.owner.cluster),
        filter("tag:apiary:deployment", &work.owner.deployment),
    ];
    let mut seen = BTreeSet::new();
    for query in queries {
        let found = deps
            .ec2
            .describe_volumes()
            .filters(query)
            .send()
            .await
            .map_err(|e| Error::aws("DescribeVolumes", e))?;
        for volume in found.volumes() {
            let Some(id) = volume.volume_id() else {
                continue;
            };
            if !seen.insert(id.to_owned()) || !work.owner.owns(ec2_tags(volume.tags()), false) {
                continue;
            }
            match volume.state() {
                Some(VolumeState::Available) => {
                    match deps.ec2.delete_volume().volume_id(id).send().await {
                        Ok(_) => work.report.removed("ec2:volume", id),
                        Err(err) if err.code() == Some("InvalidVolume.NotFound") => {
                            work.report.removed("ec2:volume", id)
                        }
                        Err(err) => return Err(Error::aws(format!("DeleteVolume {id}"), err)),
                    }
                }
                Some(VolumeState::Deleting | VolumeState::Deleted) => {
                    work.report.removed("ec2:volume", id)
                }
                _ => pending.push(format!("volume {id} is still attached")),
            }
        }
    }
    Ok(())
}
