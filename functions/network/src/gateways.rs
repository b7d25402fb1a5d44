//! The internet gateway, Elastic IPs and NAT gateways.

use apiary_core::{Error, Result};
use aws_sdk_ec2::types::{DomainType, NatGateway, NatGatewayState, ResourceType};

use crate::Run;
use apiary_core::naming::client_token;

use crate::ec2::{filter, has_role, on_known_id, role_filters, tag_spec, without_sdk_retries};

pub async fn ensure_internet_gateway(run: &Run<'_>, vpc_id: &str) -> Result<String> {
    let ec2 = &run.deps.ec2;
    let found = ec2
        .describe_internet_gateways()
        .set_filters(Some(role_filters(run.names, "igw")))
        .send()
        .await
        .map_err(|e| Error::aws("DescribeInternetGateways", e))?;
    let (id, attached) = match found.internet_gateways().first() {
        Some(igw) => (
            igw.internet_gateway_id().unwrap_or_default().to_owned(),
            igw.attachments().iter().any(|a| a.vpc_id() == Some(vpc_id)),
        ),
        None => {
            let created = ec2
                .create_internet_gateway()
                .tag_specifications(tag_spec(
                    ResourceType::InternetGateway,
                    run.names,
                    "igw",
                    &[],
                ))
                .customize()
                .config_override(without_sdk_retries())
                .send()
                .await
                .map_err(|e| Error::aws("CreateInternetGateway", e))?;
            let id = created
                .internet_gateway()
                .and_then(|g| g.internet_gateway_id())
                .ok_or_else(|| Error::fatal("CreateInternetGateway returned no id"))?
                .to_owned();
            run.log.created(&id);
            (id, false)
        }
    };
    if !attached {
        ec2.attach_internet_gateway()
            .internet_gateway_id(&id)
            .vpc_id(vpc_id)
            .send()
            .await
            .map_err(|e| on_known_id(format!("AttachInternetGateway {id} to {vpc_id}"), e))?;
    }
    run.log.resource("ec2:internet-gateway", &id, None).await?;
    Ok(id)
}

pub struct Nat {
    pub id: String,
    pub state: String,
    pub available: bool,
    /// The Elastic IP traffic from the private subnets leaves by (once EC2 shows it).
    pub public_ip: Option<String>,
}

/// The i-th NAT gateway, in the given public subnet of the VPC, with its own Elastic IP.
pub async fn ensure_nat_gateway(
    run: &Run<'_>,
    index: usize,
    vpc_id: &str,
    subnet_id: &str,
) -> Result<Nat> {
    let ec2 = &run.deps.ec2;
    let role = format!("nat-{index}");
    // Deleted and failed gateways are history: only a live one counts.
    let mut filters = role_filters(run.names, &role);
    filters.push(
        aws_sdk_ec2::types::Filter::builder()
            .name("state")
            .values("pending")
            .values("available")
            .build(),
    );
    filters.push(filter("subnet-id", subnet_id));
    let found = ec2
        .describe_nat_gateways()
        .set_filter(Some(filters))
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeNatGateways {role}"), e))?;
    // Never adopt another deployment's gateway, whatever the filters did.
    let ours = found
        .nat_gateways()
        .iter()
        .find(|n| has_role(n.tags(), run.names, &role));
    let nat = match ours {
        Some(nat) => nat.clone(),
        None => {
            let allocation = ensure_elastic_ip(run, index).await?;
            let mut token = vec![
                run.names.deployment(),
                vpc_id,
                role.as_str(),
                subnet_id,
                allocation.as_str(),
            ];
            let mut nat = create_nat_gateway(run, &role, subnet_id, &allocation, &token).await?;
            // EC2 remembers a token after the gateway it made is deleted, and answers it
            // with that deleted gateway: someone deleted ours. Likewise a gateway that
            // failed (capacity, an address problem) stays `failed` for about an hour and
            // is what the token answers. Make a new one, with a token that names the dead
            // one (as stable as the first).
            let deleted_id = nat.nat_gateway_id().unwrap_or_default().to_owned();
            if matches!(
                nat.state(),
                Some(
                    NatGatewayState::Deleted | NatGatewayState::Deleting | NatGatewayState::Failed
                )
            ) {
                token.push(&deleted_id);
                nat = create_nat_gateway(run, &role, subnet_id, &allocation, &token).await?;
                if matches!(
                    nat.state(),
                    Some(
                        NatGatewayState::Deleted
                            | NatGatewayState::Deleting
                            | NatGatewayState::Failed
                    )
                ) {
                    return Err(Error::fatal(format!(
                        "CreateNatGateway {role} answered twice with a deleted or failed gateway ({deleted_id}, then {})",
                        nat.nat_gateway_id().unwrap_or("?")
                    )));
                }
            }
            run.log.created(nat.nat_gateway_id().unwrap_or_default());
            nat
        }
    };
    let id = nat.nat_gateway_id().unwrap_or_default().to_owned();
    let state = nat.state().cloned().unwrap_or(NatGatewayState::Pending);
    if matches!(state, NatGatewayState::Failed) {
        return Err(Error::fatal(format!(
            "NAT gateway {id} failed: {}",
            nat.failure_message().unwrap_or("no reason given")
        )));
    }
    run.log.resource("ec2:nat-gateway", &id, None).await?;
    let public_ip = nat
        .nat_gateway_addresses()
        .iter()
        .find_map(|a| a.public_ip())
        .map(str::to_owned);
    Ok(Nat {
        id,
        available: state == NatGatewayState::Available,
        state: state.as_str().to_owned(),
        public_ip,
    })
}

async fn create_nat_gateway(
    run: &Run<'_>,
    role: &str,
    subnet_id: &str,
    allocation: &str,
    token: &[&str],
) -> Result<NatGateway> {
    let created = run
        .deps
        .ec2
        .create_nat_gateway()
        .subnet_id(subnet_id)
        .allocation_id(allocation)
        .client_token(client_token(token))
        .tag_specifications(tag_spec(ResourceType::Natgateway, run.names, role, &[]))
        .send()
        .await
        .map_err(|e| on_known_id(format!("CreateNatGateway {role} in {subnet_id}"), e))?;
    created
        .nat_gateway()
        .cloned()
        .ok_or_else(|| Error::fatal("CreateNatGateway returned no gateway"))
}

async fn ensure_elastic_ip(run: &Run<'_>, index: usize) -> Result<String> {
    let ec2 = &run.deps.ec2;
    let role = format!("nat-eip-{index}");
    let found = ec2
        .describe_addresses()
        .set_filters(Some(role_filters(run.names, &role)))
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeAddresses {role}"), e))?;
    let id = match found.addresses().first().and_then(|a| a.allocation_id()) {
        Some(id) => id.to_owned(),
        None => {
            let created = ec2
                .allocate_address()
                .domain(DomainType::Vpc)
                .tag_specifications(tag_spec(ResourceType::ElasticIp, run.names, &role, &[]))
                .customize()
                .config_override(without_sdk_retries())
                .send()
                .await
                .map_err(|e| Error::aws(format!("AllocateAddress {role}"), e))?;
            let id = created
                .allocation_id()
                .ok_or_else(|| Error::fatal("AllocateAddress returned no allocation id"))?
                .to_owned();
            run.log.created(&id);
            id
        }
    };
    run.log.resource("ec2:elastic-ip", &id, None).await?;
    Ok(id)
}
