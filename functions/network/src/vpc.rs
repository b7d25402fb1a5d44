//! The VPC, its DNS attributes, the availability zones and the subnets.

use apiary_core::spec::SpecErrors;
use apiary_core::{Error, Result};
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, VpcAttributeName};
use ipnet::Ipv4Net;

use crate::Run;
use crate::ec2::{filter, on_known_id, role_filters, tag_spec, without_sdk_retries};

/// The first `count` available zones of the region, in name order (stable across runs).
pub async fn zones(run: &Run<'_>, count: usize) -> Result<Vec<String>> {
    let out = run
        .deps
        .ec2
        .describe_availability_zones()
        .filters(filter("state", "available"))
        .send()
        .await
        .map_err(|e| Error::aws("DescribeAvailabilityZones", e))?;
    let mut names: Vec<String> = out
        .availability_zones()
        .iter()
        .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
        .filter_map(|z| z.zone_name().map(str::to_owned))
        .collect();
    names.sort();
    if names.len() < count {
        return Err(Error::InvalidSpec(SpecErrors::single(
            "network.az_count",
            format!(
                "{} has only {} availability zones; asked for {count}",
                run.region,
                names.len()
            ),
        )));
    }
    names.truncate(count);
    Ok(names)
}

/// Finds the deployment's VPC by tag or creates it. Before creating, refuses a CIDR that
/// overlaps another VPC in the region (peering and routing would break), naming it.
pub async fn ensure_vpc(run: &Run<'_>, cidr: Ipv4Net) -> Result<String> {
    let ec2 = &run.deps.ec2;
    let found = ec2
        .describe_vpcs()
        .set_filters(Some(role_filters(run.names, "vpc")))
        .send()
        .await
        .map_err(|e| Error::aws("DescribeVpcs", e))?;
    let vpc_id = if let Some(vpc) = found.vpcs().first() {
        let id = vpc.vpc_id().unwrap_or_default().to_owned();
        if vpc.cidr_block() != Some(cidr.to_string().as_str()) {
            return Err(Error::Conflict(format!(
                "VPC {id} of deployment {} has CIDR {}, the spec asks for {cidr}; a VPC's CIDR cannot change",
                run.names.deployment(),
                vpc.cidr_block().unwrap_or("?")
            )));
        }
        id
    } else {
        check_overlap(run, cidr).await?;
        let created = ec2
            .create_vpc()
            .cidr_block(cidr.to_string())
            .tag_specifications(tag_spec(ResourceType::Vpc, run.names, "vpc", &[]))
            .customize()
            .config_override(without_sdk_retries())
            .send()
            .await
            .map_err(|e| Error::aws(format!("CreateVpc {cidr}"), e))?;
        let id = created
            .vpc()
            .and_then(|v| v.vpc_id())
            .ok_or_else(|| Error::fatal("CreateVpc returned no VPC id"))?
            .to_owned();
        run.log.created(&id);
        id
    };
    ensure_dns_attribute(run, &vpc_id, VpcAttributeName::EnableDnsSupport).await?;
    ensure_dns_attribute(run, &vpc_id, VpcAttributeName::EnableDnsHostnames).await?;
    run.log.resource("ec2:vpc", &vpc_id, None).await?;
    Ok(vpc_id)
}

async fn check_overlap(run: &Run<'_>, cidr: Ipv4Net) -> Result<()> {
    let all = run
        .deps
        .ec2
        .describe_vpcs()
        .send()
        .await
        .map_err(|e| Error::aws("DescribeVpcs", e))?;
    for vpc in all.vpcs() {
        let Some(other) = vpc.cidr_block().and_then(|c| c.parse::<Ipv4Net>().ok()) else {
            continue;
        };
        if other.contains(&cidr) || cidr.contains(&other) {
            return Err(Error::InvalidSpec(SpecErrors::single(
                "network.vpc_cidr",
                format!(
                    "{cidr} overlaps {other} of VPC {} already in {}; choose another /16",
                    vpc.vpc_id().unwrap_or("?"),
                    run.region
                ),
            )));
        }
    }
    Ok(())
}

async fn ensure_dns_attribute(
    run: &Run<'_>,
    vpc_id: &str,
    attribute: VpcAttributeName,
) -> Result<()> {
    let ec2 = &run.deps.ec2;
    let current = ec2
        .describe_vpc_attribute()
        .vpc_id(vpc_id)
        .attribute(attribute.clone())
        .send()
        .await
        .map_err(|e| on_known_id(format!("DescribeVpcAttribute {vpc_id}"), e))?;
    let enabled = match attribute {
        VpcAttributeName::EnableDnsSupport => current.enable_dns_support(),
        _ => current.enable_dns_hostnames(),
    }
    .and_then(|v| v.value())
    .unwrap_or(false);
    if enabled {
        return Ok(());
    }
    let on = AttributeBooleanValue::builder().value(true).build();
    let request = ec2.modify_vpc_attribute().vpc_id(vpc_id);
    let request = match attribute {
        VpcAttributeName::EnableDnsSupport => request.enable_dns_support(on),
        _ => request.enable_dns_hostnames(on),
    };
    request
        .send()
        .await
        .map_err(|e| on_known_id(format!("ModifyVpcAttribute {vpc_id}"), e))?;
    Ok(())
}

/// Finds the subnet with `role` or creates it in `zone`.
pub async fn ensure_subnet(
    run: &Run<'_>,
    vpc_id: &str,
    role: &str,
    cidr: Ipv4Net,
    zone: &str,
    extra_tags: &[(&str, &str)],
) -> Result<String> {
    let ec2 = &run.deps.ec2;
    let mut filters = role_filters(run.names, role);
    filters.push(filter("vpc-id", vpc_id));
    let found = ec2
        .describe_subnets()
        .set_filters(Some(filters))
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeSubnets {role}"), e))?;
    let id = if let Some(subnet) = found.subnets().first() {
        subnet.subnet_id().unwrap_or_default().to_owned()
    } else {
        let created = ec2
            .create_subnet()
            .vpc_id(vpc_id)
            .cidr_block(cidr.to_string())
            .availability_zone(zone)
            .tag_specifications(tag_spec(ResourceType::Subnet, run.names, role, extra_tags))
            .customize()
            .config_override(without_sdk_retries())
            .send()
            .await
            .map_err(|e| on_known_id(format!("CreateSubnet {role} {cidr} in {zone}"), e))?;
        let id = created
            .subnet()
            .and_then(|s| s.subnet_id())
            .ok_or_else(|| Error::fatal("CreateSubnet returned no subnet id"))?
            .to_owned();
        run.log.created(&id);
        id
    };
    run.log.resource("ec2:subnet", &id, None).await?;
    Ok(id)
}
