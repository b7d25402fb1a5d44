//! Steps 6e-6f: the control plane's in-VPC functions are detached first (Lambda then
//! releases their network interfaces, which can take tens of minutes on AWS and would
//! otherwise block the subnets and the security group), then the network goes in the
//! order EC2 accepts: endpoints, NAT gateways (about a minute each) and their addresses,
//! flow logs, the internet gateway, what is left in the subnets, subnets, route tables,
//! security groups (their rules first, also the rules of other groups that name them),
//! and the VPC.

use apiary_core::{Error, Result};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    Filter, IpPermission, NatGatewayState, NetworkInterfaceStatus, UserIdGroupPair,
};
use aws_sdk_lambda::types::VpcConfig;

use crate::Work;
use crate::ownership::ec2_tags;

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// Detaches the in-VPC functions and waits until no Lambda interface is left in the VPC.
pub async fn detach(work: &mut Work<'_>) -> Result<Vec<String>> {
    let mut pending = Vec::new();
    let deps = work.deps;
    for function in &deps.in_vpc_functions {
        let config = match deps
            .lambda
            .get_function_configuration()
            .function_name(function)
            .send()
            .await
        {
            Ok(out) => out,
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                continue;
            }
            Err(err) => {
                return Err(Error::aws(
                    format!("GetFunctionConfiguration {function}"),
                    err,
                ));
            }
        };
        let attached = config
            .vpc_config()
            .is_some_and(|v| !v.subnet_ids().is_empty());
        if attached {
            match deps
                .lambda
                .update_function_configuration()
                .function_name(function)
                .vpc_config(
                    VpcConfig::builder()
                        .set_subnet_ids(Some(Vec::new()))
                        .set_security_group_ids(Some(Vec::new()))
                        .build(),
                )
                .send()
                .await
            {
                Ok(_) => {}
                // Another update is in progress: try again on the next poll.
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_conflict_exception()) =>
                {
                    pending.push(format!("function {function} is being updated"));
                    continue;
                }
                Err(err) => {
                    return Err(Error::aws(
                        format!("UpdateFunctionConfiguration {function}"),
                        err,
                    ));
                }
            }
            work.report.removed("lambda:vpc-attachment", function);
        }
    }
    if let Some(vpc) = work.owner.vpc_id.clone() {
        let found = deps
            .ec2
            .describe_network_interfaces()
            .filters(filter("vpc-id", &vpc))
            .filters(filter("interface-type", "lambda"))
            .send()
            .await
            .map_err(|e| Error::aws("DescribeNetworkInterfaces", e))?;
        for eni in found.network_interfaces() {
            let id = eni.network_interface_id().unwrap_or_default();
            if eni.status() == Some(&NetworkInterfaceStatus::Available) {
                continue; // the network step deletes it
            }
            pending.push(format!("Lambda network interface {id} is not released yet"));
        }
    }
    Ok(pending)
}

/// What is in the deployment's VPC but not the deployment's (by the ownership rule,
/// [`crate::Owner`]): never deleted, and named when it keeps the VPC from going.
#[derive(Default)]
struct Foreign {
    found: Vec<String>,
    /// The interfaces AWS made for this deployment's endpoints and NAT gateways (their
    /// own, untagged): ours.
    made_for_ours: std::collections::BTreeSet<String>,
}

impl Foreign {
    fn add(&mut self, kind: &str, id: &str) {
        self.found.push(format!("{kind} {id}"));
    }
}

pub async fn run(work: &mut Work<'_>) -> Result<Vec<String>> {
    let Some(vpc) = find_vpc(work).await? else {
        return Ok(Vec::new());
    };
    let mut pending = Vec::new();
    let mut foreign = Foreign::default();
    endpoints(work, &vpc, &mut pending, &mut foreign).await?;
    nat_gateways(work, &vpc, &mut pending, &mut foreign).await?;
    if !pending.is_empty() && foreign.found.is_empty() {
        return Ok(pending);
    }
    addresses(work, &mut pending).await?;
    flow_logs(work, &vpc, &mut foreign).await?;
    internet_gateways(work, &vpc, &mut foreign).await?;
    interfaces(work, &vpc, &mut pending, &mut foreign).await?;
    subnets(work, &vpc, &mut pending, &mut foreign).await?;
    route_tables(work, &vpc, &mut pending, &mut foreign).await?;
    security_groups(work, &vpc, &mut pending, &mut foreign).await?;
    // What is not ours never goes, and the VPC cannot go while it is there: the run
    // fails naming it (after removing what is ours), rather than waiting for it.
    if !foreign.found.is_empty() {
        return Err(Error::fatal(format!(
            "VPC {vpc} holds what is not deployment {}'s: {}. The teardown deletes only what \
             is this deployment's (tagged apiary:deployment={} or by its cluster); these block \
             DeleteVpc: remove them (or move them out of the VPC), then run the teardown again",
            work.owner.deployment,
            foreign.found.join(", "),
            work.owner.deployment
        )));
    }
    if !pending.is_empty() {
        return Ok(pending);
    }
    match work.deps.ec2.delete_vpc().vpc_id(&vpc).send().await {
        Ok(_) => work.report.removed("ec2:vpc", &vpc),
        Err(err) if err.code() == Some("InvalidVpcID.NotFound") => {
            work.report.removed("ec2:vpc", &vpc)
        }
        Err(err) if err.code() == Some("DependencyViolation") => {
            pending.push(format!(
                "VPC {vpc} still has dependencies: {}",
                err.message().unwrap_or_default()
            ));
        }
        Err(err) => return Err(Error::aws(format!("DeleteVpc {vpc}"), err)),
    }
    Ok(pending)
}

/// The VPC the network layer recorded, when it still exists and is tagged as ours.
async fn find_vpc(work: &mut Work<'_>) -> Result<Option<String>> {
    let found = work
        .deps
        .ec2
        .describe_vpcs()
        .filters(filter("tag:apiary:deployment", &work.owner.deployment))
        .send()
        .await
        .map_err(|e| Error::aws("DescribeVpcs", e))?;
    let recorded = work.owner.vpc_id.clone();
    let vpc = found
        .vpcs()
        .iter()
        .filter(|v| work.owner.tagged(ec2_tags(v.tags())))
        .filter_map(|v| v.vpc_id())
        .find(|id| recorded.as_deref().is_none_or(|r| r == *id))
        .map(str::to_owned);
    Ok(vpc)
}

async fn endpoints(
    work: &mut Work<'_>,
    vpc: &str,
    pending: &mut Vec<String>,
    foreign: &mut Foreign,
) -> Result<()> {
    let deps = work.deps;
    let found = deps
        .ec2
        .describe_vpc_endpoints()
        .filters(filter("vpc-id", vpc))
        .send()
        .await
        .map_err(|e| Error::aws("DescribeVpcEndpoints", e))?;
    let mut delete = Vec::new();
    for endpoint in found.vpc_endpoints() {
        let Some(id) = endpoint.vpc_endpoint_id() else {
            continue;
        };
        let state = endpoint
            .state()
            .map(|s| s.as_str().to_ascii_lowercase())
            .unwrap_or_default();
        let ours = work.owner.owns(ec2_tags(endpoint.tags()), true);
        if ours {
            foreign
                .made_for_ours
                .extend(endpoint.network_interface_ids().iter().cloned());
        }
        if state == "deleted" {
            continue;
        }
        if !ours {
            foreign.add("VPC endpoint", id);
            continue;
        }
        work.report.removed("ec2:vpc-endpoint", id);
        if state == "deleting" {
            pending.push(format!("VPC endpoint {id} is being deleted"));
        } else {
            delete.push(id.to_owned());
        }
    }
    if !delete.is_empty() {
        deps.ec2
            .delete_vpc_endpoints()
            .set_vpc_endpoint_ids(Some(delete.clone()))
            .send()
            .await
            .map_err(|e| Error::aws("DeleteVpcEndpoints", e))?;
        // Interface endpoints take a minute to go; gateway endpoints go at once.
        let again = deps
            .ec2
            .describe_vpc_endpoints()
            .set_vpc_endpoint_ids(Some(delete))
            .send()
            .await;
        if let Ok(again) = again {
            for endpoint in again.vpc_endpoints() {
                let state = endpoint
                    .state()
                    .map(|s| s.as_str().to_ascii_lowercase())
                    .unwrap_or_default();
                if state != "deleted" {
                    pending.push(format!(
                        "VPC endpoint {} is being deleted",
                        endpoint.vpc_endpoint_id().unwrap_or_default()
                    ));
                }
            }
        }
    }
    Ok(())
}

async fn nat_gateways(
    work: &mut Work<'_>,
    vpc: &str,
    pending: &mut Vec<String>,
    foreign: &mut Foreign,
) -> Result<()> {
    let deps = work.deps;
    let found = deps
        .ec2
        .describe_nat_gateways()
        .filter(filter("vpc-id", vpc))
        .send()
        .await
        .map_err(|e| Error::aws("DescribeNatGateways", e))?;
    for gateway in found.nat_gateways() {
        let Some(id) = gateway.nat_gateway_id() else {
            continue;
        };
        let ours = work.owner.owns(ec2_tags(gateway.tags()), true);
        if ours {
            foreign.made_for_ours.extend(
                gateway
                    .nat_gateway_addresses()
                    .iter()
                    .filter_map(|a| a.network_interface_id().map(str::to_owned)),
            );
        }
        if gateway.state() != Some(&NatGatewayState::Deleted) && !ours {
            foreign.add("NAT gateway", id);
            continue;
        }
        match gateway.state() {
            Some(NatGatewayState::Deleted) => continue,
            Some(NatGatewayState::Deleting) => {}
            _ => {
                match deps
                    .ec2
                    .delete_nat_gateway()
                    .nat_gateway_id(id)
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(err) if err.code() == Some("NatGatewayNotFound") => continue,
                    Err(err) => return Err(Error::aws(format!("DeleteNatGateway {id}"), err)),
                }
            }
        }
        work.report.removed("ec2:natgateway", id);
        let now = deps
            .ec2
            .describe_nat_gateways()
            .nat_gateway_ids(id)
            .send()
            .await;
        let gone = now.is_ok_and(|out| {
            out.nat_gateways()
                .iter()
                .all(|g| g.state() == Some(&NatGatewayState::Deleted))
        });
        if !gone {
            pending.push(format!("NAT gateway {id} is being deleted"));
        }
    }
    Ok(())
}

async fn addresses(work: &mut Work<'_>, pending: &mut Vec<String>) -> Result<()> {
    let deps = work.deps;
    let found = deps
        .ec2
        .describe_addresses()
        .filters(filter("tag:apiary:deployment", &work.owner.deployment))
        .send()
        .await
        .map_err(|e| Error::aws("DescribeAddresses", e))?;
    for address in found.addresses() {
        let Some(id) = address.allocation_id() else {
            continue;
        };
        if !work.owner.tagged(ec2_tags(address.tags())) {
            continue;
        }
        // Its NAT gateway is deleted by now (the step waits for that first); EC2 may
        // still show the association for a moment, and then refuses the release.
        match deps.ec2.release_address().allocation_id(id).send().await {
            Ok(_) => work.report.removed("ec2:elastic-ip", id),
            Err(err) if err.code() == Some("InvalidAllocationID.NotFound") => {
                work.report.removed("ec2:elastic-ip", id)
            }
            Err(err) if matches!(err.code(), Some("InvalidIPAddress.InUse" | "AuthFailure")) => {
                pending.push(format!("Elastic IP {id} is still associated"));
            }
            Err(err) => return Err(Error::aws(format!("ReleaseAddress {id}"), err)),
        }
    }
    Ok(())
}

async fn flow_logs(work: &mut Work<'_>, vpc: &str, foreign: &mut Foreign) -> Result<()> {
    let deps = work.deps;
    let found = deps
        .ec2
        .describe_flow_logs()
        .filter(filter("resource-id", vpc))
        .send()
        .await
        .map_err(|e| Error::aws("DescribeFlowLogs", e))?;
    let mut ids = Vec::new();
    for log in found.flow_logs() {
        let Some(id) = log.flow_log_id() else {
            continue;
        };
        if work.owner.owns(ec2_tags(log.tags()), true) {
            ids.push(id.to_owned());
        } else {
            foreign.add("flow log", id);
        }
    }
    if !ids.is_empty() {
        deps.ec2
            .delete_flow_logs()
            .set_flow_log_ids(Some(ids.clone()))
            .send()
            .await
            .map_err(|e| Error::aws("DeleteFlowLogs", e))?;
        for id in ids {
            work.report.removed("ec2:vpc-flow-log", &id);
        }
    }
    Ok(())
}

async fn internet_gateways(work: &mut Work<'_>, vpc: &str, foreign: &mut Foreign) -> Result<()> {
    let deps = work.deps;
    let found = deps
        .ec2
        .describe_internet_gateways()
        .filters(filter("attachment.vpc-id", vpc))
        .send()
        .await
        .map_err(|e| Error::aws("DescribeInternetGateways", e))?;
    for gateway in found.internet_gateways() {
        let Some(id) = gateway.internet_gateway_id() else {
            continue;
        };
        if !work.owner.owns(ec2_tags(gateway.tags()), true) {
            foreign.add("internet gateway", id);
            continue;
        }
        match deps
            .ec2
            .detach_internet_gateway()
            .internet_gateway_id(id)
            .vpc_id(vpc)
            .send()
            .await
        {
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.code(),
                    Some("Gateway.NotAttached" | "InvalidInternetGatewayID.NotFound")
                ) => {}
            Err(err) => return Err(Error::aws(format!("DetachInternetGateway {id}"), err)),
        }
        match deps
            .ec2
            .delete_internet_gateway()
            .internet_gateway_id(id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(err) if err.code() == Some("InvalidInternetGatewayID.NotFound") => {}
            Err(err) => return Err(Error::aws(format!("DeleteInternetGateway {id}"), err)),
        }
        work.report.removed("ec2:internet-gateway", id);
    }
    Ok(())
}

/// Detached interfaces of this deployment go; an attached one names what still blocks
/// the subnets; a detached one that is not ours is named as foreign.
async fn interfaces(
    work: &mut Work<'_>,
    vpc: &str,
    pending: &mut Vec<String>,
    foreign: &mut Foreign,
) -> Result<()> {
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
        if eni.status() == Some(&NetworkInterfaceStatus::Available) {
            if !foreign.made_for_ours.contains(id)
                && !work.owner.owns_interface(
                    ec2_tags(eni.tag_set()),
                    eni.description().unwrap_or_default(),
                    &deps.in_vpc_functions,
                )
            {
                foreign.add("network interface", id);
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
                Err(err) if err.code() == Some("InvalidNetworkInterfaceID.NotFound") => {}
                Err(err) => return Err(Error::aws(format!("DeleteNetworkInterface {id}"), err)),
            }
        } else {
            let instance = eni.attachment().and_then(|a| a.instance_id());
            if work.deps.emulator && terminated(work, instance).await? {
                // EC2 deletes a terminated instance's primary interface with it; the
                // emulator keeps it attached forever.
                work.report.note(format!(
                    "network interface {id}: the emulator keeps a terminated instance's interface; not waited for"
                ));
                continue;
            }
            pending.push(format!(
                "network interface {id} ({}) is still in use",
                eni.description().unwrap_or("no description")
            ));
        }
    }
    Ok(())
}

/// Whether `instance` (an interface's attachment) is terminated.
async fn terminated(work: &Work<'_>, instance: Option<&str>) -> Result<bool> {
    let Some(instance) = instance else {
        return Ok(false);
    };
    let described = work
        .deps
        .ec2
        .describe_instances()
        .instance_ids(instance)
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeInstances {instance}"), e))?;
    Ok(described
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .all(|i| {
            i.state().and_then(|s| s.name())
                == Some(&aws_sdk_ec2::types::InstanceStateName::Terminated)
        }))
}

async fn subnets(
    work: &mut Work<'_>,
    vpc: &str,
    pending: &mut Vec<String>,
    foreign: &mut Foreign,
) -> Result<()> {
    let deps = work.deps;
    let found = deps
        .ec2
        .describe_subnets()
        .filters(filter("vpc-id", vpc))
        .send()
        .await
        .map_err(|e| Error::aws("DescribeSubnets", e))?;
    for subnet in found.subnets() {
        let Some(id) = subnet.subnet_id() else {
            continue;
        };
        if !work.owner.owns(ec2_tags(subnet.tags()), true) {
            foreign.add("subnet", id);
            continue;
        }
        match deps.ec2.delete_subnet().subnet_id(id).send().await {
            Ok(_) => work.report.removed("ec2:subnet", id),
            Err(err) if err.code() == Some("InvalidSubnetID.NotFound") => {
                work.report.removed("ec2:subnet", id)
            }
            Err(err) if err.code() == Some("DependencyViolation") => {
                pending.push(format!("subnet {id} still has dependencies"));
            }
            Err(err) => return Err(Error::aws(format!("DeleteSubnet {id}"), err)),
        }
    }
    Ok(())
}

async fn route_tables(
    work: &mut Work<'_>,
    vpc: &str,
    pending: &mut Vec<String>,
    foreign: &mut Foreign,
) -> Result<()> {
    let deps = work.deps;
    let found = deps
        .ec2
        .describe_route_tables()
        .filters(filter("vpc-id", vpc))
        .send()
        .await
        .map_err(|e| Error::aws("DescribeRouteTables", e))?;
    for table in found.route_tables() {
        let Some(id) = table.route_table_id() else {
            continue;
        };
        if table.associations().iter().any(|a| a.main() == Some(true)) {
            continue; // the main table goes with the VPC
        }
        if !work.owner.owns(ec2_tags(table.tags()), true) {
            foreign.add("route table", id);
            continue;
        }
        for association in table.associations() {
            if let Some(association) = association.route_table_association_id() {
                match deps
                    .ec2
                    .disassociate_route_table()
                    .association_id(association)
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(err) if err.code() == Some("InvalidAssociationID.NotFound") => {}
                    Err(err) => {
                        return Err(Error::aws(
                            format!("DisassociateRouteTable {association}"),
                            err,
                        ));
                    }
                }
            }
        }
        match deps
            .ec2
            .delete_route_table()
            .route_table_id(id)
            .send()
            .await
        {
            Ok(_) => work.report.removed("ec2:route-table", id),
            Err(err) if err.code() == Some("InvalidRouteTableID.NotFound") => {}
            Err(err) if err.code() == Some("DependencyViolation") => {
                pending.push(format!("route table {id} still has dependencies"));
            }
            Err(err) => return Err(Error::aws(format!("DeleteRouteTable {id}"), err)),
        }
    }
    Ok(())
}

async fn security_groups(
    work: &mut Work<'_>,
    vpc: &str,
    pending: &mut Vec<String>,
    foreign: &mut Foreign,
) -> Result<()> {
    let deps = work.deps;
    let found = deps
        .ec2
        .describe_security_groups()
        .filters(filter("vpc-id", vpc))
        .send()
        .await
        .map_err(|e| Error::aws("DescribeSecurityGroups", e))?;
    let mut groups = Vec::new();
    for group in found.security_groups() {
        let Some(id) = group.group_id() else {
            continue;
        };
        if group.group_name() == Some("default") {
            continue; // goes with the VPC
        }
        if work.owner.owns(ec2_tags(group.tags()), true) {
            groups.push(id.to_owned());
        } else {
            foreign.add("security group", id);
        }
    }
    // Rules that name these groups (in them, or in groups outside the VPC) block their
    // deletion: revoked first.
    for group in &groups {
        revoke_references(work, group).await?;
    }
    for group in &groups {
        match deps
            .ec2
            .delete_security_group()
            .group_id(group)
            .send()
            .await
        {
            Ok(_) => work.report.removed("ec2:security-group", group),
            Err(err) if err.code() == Some("InvalidGroup.NotFound") => {
                work.report.removed("ec2:security-group", group)
            }
            Err(err) if err.code() == Some("DependencyViolation") => {
                pending.push(format!("security group {group} is still in use"));
            }
            Err(err) => return Err(Error::aws(format!("DeleteSecurityGroup {group}"), err)),
        }
    }
    Ok(())
}

/// Revokes every rule, in any group of the region, that names `group` as its source or
/// destination: such a rule (e.g. a customer's bastion group admitting the cluster)
/// blocks the group's deletion. The rule is about this deployment's group; the rest of
/// the other group is left as it is.
pub async fn revoke_references(work: &mut Work<'_>, group: &str) -> Result<()> {
    let deps = work.deps;
    let mut pages = deps.ec2.describe_security_groups().into_paginator().send();
    while let Some(page) = pages
        .try_next()
        .await
        .map_err(|e| Error::aws("DescribeSecurityGroups", e))?
    {
        for holder in page.security_groups() {
            let Some(holder_id) = holder.group_id() else {
                continue;
            };
            let ingress = naming(holder.ip_permissions(), group);
            let egress = naming(holder.ip_permissions_egress(), group);
            if !ingress.is_empty() {
                match deps
                    .ec2
                    .revoke_security_group_ingress()
                    .group_id(holder_id)
                    .set_ip_permissions(Some(ingress))
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(err)
                        if matches!(
                            err.code(),
                            Some("InvalidPermission.NotFound" | "InvalidGroup.NotFound")
                        ) => {}
                    Err(err) => {
                        return Err(Error::aws(
                            format!("RevokeSecurityGroupIngress {holder_id}"),
                            err,
                        ));
                    }
                }
                work.report.removed(
                    "ec2:security-group-rule",
                    &format!("{holder_id} ingress from {group}"),
                );
            }
            if !egress.is_empty() {
                match deps
                    .ec2
                    .revoke_security_group_egress()
                    .group_id(holder_id)
                    .set_ip_permissions(Some(egress))
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(err)
                        if matches!(
                            err.code(),
                            Some("InvalidPermission.NotFound" | "InvalidGroup.NotFound")
                        ) => {}
                    Err(err) => {
                        return Err(Error::aws(
                            format!("RevokeSecurityGroupEgress {holder_id}"),
                            err,
                        ));
                    }
                }
                work.report.removed(
                    "ec2:security-group-rule",
                    &format!("{holder_id} egress to {group}"),
                );
            }
        }
    }
    Ok(())
}

/// The parts of `permissions` that name `group`, each with only that group pair.
fn naming(permissions: &[IpPermission], group: &str) -> Vec<IpPermission> {
    permissions
        .iter()
        .filter_map(|p| {
            let pairs: Vec<UserIdGroupPair> = p
                .user_id_group_pairs()
                .iter()
                .filter(|pair| pair.group_id() == Some(group))
                .map(|pair| {
                    UserIdGroupPair::builder()
                        .set_group_id(pair.group_id().map(str::to_owned))
                        .build()
                })
                .collect();
            (!pairs.is_empty()).then(|| {
                IpPermission::builder()
                    .set_ip_protocol(p.ip_protocol().map(str::to_owned))
                    .set_from_port(p.from_port())
                    .set_to_port(p.to_port())
                    .set_user_id_group_pairs(Some(pairs))
                    .build()
            })
        })
        .collect()
}
