//! Unit tests with mocked EC2 for what the emulator cannot show: a NAT gateway that is
//! still pending (the layer reports not ready and keeps going) or that failed.

use std::sync::Arc;

use apiary_core::ErrorName;
use apiary_core::step::MemoryRecorder;
use aws_sdk_ec2::Client as Ec2;
use aws_sdk_ec2::operation::describe_addresses::DescribeAddressesOutput;
use aws_sdk_ec2::operation::describe_availability_zones::DescribeAvailabilityZonesOutput;
use aws_sdk_ec2::operation::describe_internet_gateways::DescribeInternetGatewaysOutput;
use aws_sdk_ec2::operation::describe_nat_gateways::DescribeNatGatewaysOutput;
use aws_sdk_ec2::operation::describe_route_tables::DescribeRouteTablesOutput;
use aws_sdk_ec2::operation::describe_security_groups::DescribeSecurityGroupsOutput;
use aws_sdk_ec2::operation::describe_subnets::DescribeSubnetsOutput;
use aws_sdk_ec2::operation::describe_vpc_attribute::DescribeVpcAttributeOutput;
use aws_sdk_ec2::operation::describe_vpc_endpoints::DescribeVpcEndpointsOutput;
use aws_sdk_ec2::operation::describe_vpcs::DescribeVpcsOutput;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, AvailabilityZone, InternetGateway, InternetGatewayAttachment,
    IpPermission, IpRange, NatGateway, NatGatewayState, Route, RouteTable, RouteTableAssociation,
    SecurityGroup, Subnet, UserIdGroupPair, Vpc, VpcEndpoint,
};
use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
use serde_json::{Value, json};

use super::*;

const CIDR: &str = "10.7.0.0/16";

fn event() -> Value {
    apiary_core::step::event("ensure", "acme")
}

/// Deployment acme as the lock step stored it; the network needs no earlier layer.
fn state() -> MemoryRecorder {
    MemoryRecorder::with(
        &json!({"name": "acme", "dns": {"domain": "hh.example.com"},
            "network": {"vpc_cidr": CIDR, "az_count": 2}}),
        &json!({}),
    )
}

/// The tags of deployment acme's first NAT gateway.
/// This deployment's NAT gateway `nat-1`, tagged as the step tags it, in `state`.
fn our_nat(state: NatGatewayState) -> NatGateway {
    NatGateway::builder()
        .nat_gateway_id("nat-1")
        .set_tags(Some(nat_tags()))
        .state(state)
        .build()
}

fn nat_tags() -> Vec<aws_sdk_ec2::types::Tag> {
    let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
    vec![
        tag("apiary:deployment", "acme"),
        tag("apiary:role", "nat-0"),
    ]
}

/// Everything exists already, except what `nat` says about the NAT gateway.
fn existing_network(nat: NatGateway) -> Vec<Rule> {
    let on = || AttributeBooleanValue::builder().value(true).build();
    vec![
        mock!(Ec2::describe_availability_zones).then_output(|| {
            DescribeAvailabilityZonesOutput::builder()
                .availability_zones(AvailabilityZone::builder().zone_name("us-west-2a").build())
                .availability_zones(AvailabilityZone::builder().zone_name("us-west-2b").build())
                .build()
        }),
        mock!(Ec2::describe_vpcs).then_output(|| {
            DescribeVpcsOutput::builder()
                .vpcs(Vpc::builder().vpc_id("vpc-1").cidr_block(CIDR).build())
                .build()
        }),
        mock!(Ec2::describe_vpc_attribute).then_output(move || {
            DescribeVpcAttributeOutput::builder()
                .enable_dns_support(on())
                .enable_dns_hostnames(on())
                .build()
        }),
        mock!(Ec2::describe_subnets).then_output(|| {
            DescribeSubnetsOutput::builder()
                .subnets(Subnet::builder().subnet_id("subnet-1").build())
                .build()
        }),
        mock!(Ec2::describe_internet_gateways).then_output(|| {
            DescribeInternetGatewaysOutput::builder()
                .internet_gateways(
                    InternetGateway::builder()
                        .internet_gateway_id("igw-1")
                        .attachments(InternetGatewayAttachment::builder().vpc_id("vpc-1").build())
                        .build(),
                )
                .build()
        }),
        mock!(Ec2::describe_nat_gateways).then_output(move || {
            DescribeNatGatewaysOutput::builder()
                .nat_gateways(nat.clone())
                .build()
        }),
        mock!(Ec2::describe_addresses).then_output(|| DescribeAddressesOutput::builder().build()),
        mock!(Ec2::describe_route_tables).then_output(|| {
            DescribeRouteTablesOutput::builder()
                .route_tables(
                    RouteTable::builder()
                        .route_table_id("rtb-1")
                        .routes(
                            Route::builder()
                                .destination_cidr_block("0.0.0.0/0")
                                .gateway_id("igw-1")
                                .build(),
                        )
                        .associations(
                            RouteTableAssociation::builder()
                                .subnet_id("subnet-1")
                                .build(),
                        )
                        .build(),
                )
                .build()
        }),
        mock!(Ec2::describe_security_groups)
            .match_requests(|r| !is_alb(r))
            .then_output(|| {
                let rule = |port: i32| {
                    IpPermission::builder()
                        .ip_protocol("tcp")
                        .from_port(port)
                        .to_port(port)
                        .user_id_group_pairs(UserIdGroupPair::builder().group_id("sg-1").build())
                        .ip_ranges(IpRange::builder().cidr_ip(CIDR).build())
                        .build()
                };
                let all = IpPermission::builder()
                    .ip_protocol("-1")
                    .user_id_group_pairs(UserIdGroupPair::builder().group_id("sg-1").build())
                    .build();
                // The database ports go to the VPC (the live stores and the restore
                // test's scratch copies), not to one group: a group-only rule would be
                // authorized again, which this mock does not answer.
                let to_vpc = |port: i32| {
                    IpPermission::builder()
                        .ip_protocol("tcp")
                        .from_port(port)
                        .to_port(port)
                        .ip_ranges(IpRange::builder().cidr_ip(CIDR).build())
                        .build()
                };
                // The control plane's narrowed egress (no default allow-all rule).
                let https_out = IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(443)
                    .to_port(443)
                    .ip_ranges(IpRange::builder().cidr_ip(CIDR).build())
                    .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                    .build();
                DescribeSecurityGroupsOutput::builder()
                    .security_groups(
                        SecurityGroup::builder()
                            .group_id("sg-1")
                            .ip_permissions(all)
                            .ip_permissions(rule(443))
                            .ip_permissions(rule(8080))
                            .ip_permissions(
                                IpPermission::builder()
                                    .ip_protocol("tcp")
                                    .from_port(8080)
                                    .to_port(8080)
                                    .user_id_group_pairs(
                                        UserIdGroupPair::builder().group_id("sg-alb").build(),
                                    )
                                    .build(),
                            )
                            .ip_permissions(rule(5432))
                            .ip_permissions(rule(27017))
                            .ip_permissions(rule(6379))
                            .ip_permissions_egress(https_out)
                            .ip_permissions_egress(to_vpc(5432))
                            .ip_permissions_egress(to_vpc(27017))
                            .ip_permissions_egress(to_vpc(6379))
                            .build(),
                    )
                    .build()
            }),
        mock!(Ec2::describe_vpc_endpoints).then_output(|| {
            DescribeVpcEndpointsOutput::builder()
                .vpc_endpoints(VpcEndpoint::builder().vpc_endpoint_id("vpce-1").build())
                .build()
        }),
        // The load balancer's group: exactly 443 from the VPC (the spec names no customer
        // network), so nothing is revoked from it.
        mock!(Ec2::describe_security_groups)
            .match_requests(is_alb)
            .then_output(|| {
                DescribeSecurityGroupsOutput::builder()
                    .security_groups(
                        SecurityGroup::builder()
                            .group_id("sg-alb")
                            .ip_permissions(
                                IpPermission::builder()
                                    .ip_protocol("tcp")
                                    .from_port(443)
                                    .to_port(443)
                                    .ip_ranges(IpRange::builder().cidr_ip(CIDR).build())
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            }),
    ]
}

/// A lookup of the load balancer's group.
fn is_alb(
    r: &aws_sdk_ec2::operation::describe_security_groups::DescribeSecurityGroupsInput,
) -> bool {
    r.filters()
        .iter()
        .any(|f| f.name() == Some("tag:apiary:role") && f.values() == ["alb"])
}

fn run_with(rules: &[Rule], extra: &[&Rule]) -> Deps {
    let mut all: Vec<&Rule> = rules.iter().collect();
    all.extend(extra.iter().copied());
    Deps {
        ec2: mock_client!(aws_sdk_ec2, RuleMode::MatchAny, all.as_slice()),
        lambda: no_lambda(),
        recorder: Arc::new(state()),
        in_vpc_functions: Vec::new(),
    }
}

/// A Lambda client that answers nothing: the network's own `ensure` never calls Lambda.
fn no_lambda() -> aws_sdk_lambda::Client {
    mock_client!(aws_sdk_lambda, RuleMode::MatchAny, &[])
}

#[tokio::test]
async fn a_pending_nat_gateway_leaves_the_layer_not_ready_without_a_private_route() {
    let nat = our_nat(NatGatewayState::Pending);
    let rules = existing_network(nat);
    let create_route = mock!(Ec2::create_route)
        .then_output(|| aws_sdk_ec2::operation::create_route::CreateRouteOutput::builder().build());
    let replace_route = mock!(Ec2::replace_route).then_output(|| {
        aws_sdk_ec2::operation::replace_route::ReplaceRouteOutput::builder().build()
    });
    let deps = run_with(&rules, &[&create_route, &replace_route]);
    let out = handle(&deps, event()).await.expect("ensure");
    assert_eq!(out["ready"], json!(false));
    assert!(
        out["pending"][0]
            .as_str()
            .unwrap()
            .contains("nat-1 is pending"),
        "{out}"
    );
    assert_eq!(
        create_route.num_calls() + replace_route.num_calls(),
        0,
        "no route to a pending NAT"
    );
}

#[tokio::test]
async fn a_failed_nat_gateway_fails_the_layer_naming_it() {
    let nat = NatGateway::builder()
        .nat_gateway_id("nat-9")
        .set_tags(Some(nat_tags()))
        .state(NatGatewayState::Failed)
        .failure_message("Elastic IP address is already associated")
        .build();
    let rules = existing_network(nat);
    let deps = run_with(&rules, &[]);
    let err = handle(&deps, event()).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(
        err.to_string()
            .contains("NAT gateway nat-9 failed: Elastic IP"),
        "{err}"
    );
}

#[tokio::test]
async fn a_vpc_with_another_cidr_is_a_conflict_not_a_new_vpc() {
    let nat = our_nat(NatGatewayState::Available);
    let mut rules = existing_network(nat);
    rules[1] = mock!(Ec2::describe_vpcs).then_output(|| {
        DescribeVpcsOutput::builder()
            .vpcs(
                Vpc::builder()
                    .vpc_id("vpc-1")
                    .cidr_block("10.8.0.0/16")
                    .build(),
            )
            .build()
    });
    let create_vpc = mock!(Ec2::create_vpc)
        .then_output(|| aws_sdk_ec2::operation::create_vpc::CreateVpcOutput::builder().build());
    let deps = run_with(&rules, &[&create_vpc]);
    let err = handle(&deps, event()).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Conflict);
    assert!(err.to_string().contains("cannot change"), "{err}");
    assert_eq!(create_vpc.num_calls(), 0);
}

#[tokio::test]
async fn unknown_action_is_rejected() {
    let deps = run_with(&[], &[]);
    let err = handle(&deps, apiary_core::step::event("status", "acme"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::InvalidInput);
}

#[tokio::test]
async fn another_deployments_nat_gateway_is_never_adopted() {
    // A Describe that ignores the tag filters returns someone else's gateway.
    let foreign = NatGateway::builder()
        .nat_gateway_id("nat-theirs")
        .state(NatGatewayState::Available)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("apiary:deployment")
                .value("other")
                .build(),
        )
        .build();
    let rules = existing_network(foreign);
    let create = mock!(Ec2::create_nat_gateway).then_output(|| {
        aws_sdk_ec2::operation::create_nat_gateway::CreateNatGatewayOutput::builder()
            .nat_gateway(
                NatGateway::builder()
                    .nat_gateway_id("nat-ours")
                    .state(NatGatewayState::Pending)
                    .build(),
            )
            .build()
    });
    let allocate = mock!(Ec2::allocate_address).then_output(|| {
        aws_sdk_ec2::operation::allocate_address::AllocateAddressOutput::builder()
            .allocation_id("eipalloc-ours")
            .build()
    });
    let deps = run_with(&rules, &[&create, &allocate]);
    let out = handle(&deps, event()).await.expect("network");
    assert_eq!(create.num_calls(), 1, "a gateway of its own was created");
    assert!(
        !out.to_string().contains("nat-theirs"),
        "the foreign gateway is not used: {out}"
    );
}

mod in_vpc;
mod real_aws;
