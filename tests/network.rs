//! The network layer against the emulator: everything the spec asks for, read back
//! through the EC2 API, and a second run that creates nothing.

use std::sync::Arc;

use apiary_core::step::MemoryRecorder;
use apiary_e2e::{sdk_config, unique_cidr, unique_name};
use aws_sdk_ec2::types::Filter;
use serde_json::{Value, json};

fn spec(name: &str, cidr: &str, nat_mode: &str) -> Value {
    json!({
        "name": name,
        "dns": {"domain": "hh.example.com"},
        "network": {"vpc_cidr": cidr, "nat_mode": nat_mode, "ingress_cidrs": ["203.0.113.0/24"]}
    })
}

fn event(name: &str) -> Value {
    json!({"action": "ensure", "deployment": name, "execution_id": "exec-network"})
}

fn vpc_filter(vpc: &str) -> Filter {
    Filter::builder().name("vpc-id").values(vpc).build()
}

#[tokio::test]
async fn network_is_complete_and_idempotent() {
    let config = sdk_config().await;
    let name = unique_name("net");
    let cidr = unique_cidr(&config).await;
    let cidr = cidr.as_str();
    let recorder = MemoryRecorder::with(&spec(&name, cidr, "per-az"), &json!({}));
    let deps = network::Deps::new(&config, Arc::new(recorder.clone()));

    let first = network::handle(&deps, event(&name))
        .await
        .expect("first ensure");
    assert_eq!(first["ready"], json!(true), "{first}");
    assert!(!first["created"].as_array().unwrap().is_empty());
    let second = network::handle(&deps, event(&name))
        .await
        .expect("second ensure");
    assert_eq!(
        second["created"],
        json!([]),
        "second run creates nothing: {second}"
    );
    assert_eq!(first["vpc_id"], second["vpc_id"]);
    assert_eq!(first["private_subnets"], second["private_subnets"]);

    let ec2 = aws_sdk_ec2::Client::new(&config);
    let vpc = first["vpc_id"].as_str().unwrap();

    // Subnets: 3 public + 3 private, one of each per zone, inside the VPC CIDR.
    let subnets = ec2
        .describe_subnets()
        .filters(vpc_filter(vpc))
        .send()
        .await
        .unwrap();
    let subnets = subnets.subnets();
    assert_eq!(subnets.len(), 6);
    let mut zones: Vec<_> = subnets
        .iter()
        .filter_map(|s| s.availability_zone())
        .collect();
    zones.sort();
    zones.dedup();
    assert_eq!(zones.len(), 3, "{zones:?}");
    let prefix = cidr.trim_end_matches("0.0/16");
    assert!(
        subnets
            .iter()
            .all(|s| s.cidr_block().unwrap().starts_with(prefix))
    );

    // Per-AZ NAT: three gateways; each private route table sends 0.0.0.0/0 to a NAT,
    // the public one to the internet gateway.
    assert_eq!(first["nat_gateway_ids"].as_array().unwrap().len(), 3);
    let tables = ec2
        .describe_route_tables()
        .filters(vpc_filter(vpc))
        .send()
        .await
        .unwrap();
    let default_targets: Vec<(Option<String>, Option<String>)> = tables
        .route_tables()
        .iter()
        .flat_map(|t| t.routes())
        .filter(|r| r.destination_cidr_block() == Some("0.0.0.0/0"))
        .map(|r| {
            (
                r.gateway_id().map(str::to_owned),
                r.nat_gateway_id().map(str::to_owned),
            )
        })
        .collect();
    assert_eq!(
        default_targets
            .iter()
            .filter(|(_, nat)| nat.is_some())
            .count(),
        3,
        "{default_targets:?}"
    );
    assert_eq!(
        default_targets
            .iter()
            .filter(|(igw, _)| igw.as_deref().is_some_and(|g| g.starts_with("igw-")))
            .count(),
        1
    );
    for subnet in first["private_subnets"].as_array().unwrap() {
        let id = subnet["id"].as_str().unwrap();
        let table = tables
            .route_tables()
            .iter()
            .find(|t| t.associations().iter().any(|a| a.subnet_id() == Some(id)))
            .expect("private subnet has a route table");
        assert!(
            table.routes().iter().any(|r| r.nat_gateway_id().is_some()),
            "private route via NAT"
        );
    }

    // Endpoints: gateway S3/DynamoDB and the six interface endpoints.
    let endpoints = ec2
        .describe_vpc_endpoints()
        .filters(vpc_filter(vpc))
        .send()
        .await
        .unwrap();
    let services: Vec<_> = endpoints
        .vpc_endpoints()
        .iter()
        .filter_map(|e| e.service_name())
        .collect();
    for service in [
        "s3",
        "dynamodb",
        "ecr.api",
        "ecr.dkr",
        "kms",
        "secretsmanager",
        "sts",
        "logs",
    ] {
        assert!(
            services.contains(&format!("com.amazonaws.us-west-2.{service}").as_str()),
            "{service}: {services:?}"
        );
    }

    // Security groups: 443 from the customer on the ALB; database ports from the cluster only.
    let sg = |id: &str| {
        let ec2 = ec2.clone();
        let id = id.to_owned();
        async move {
            ec2.describe_security_groups()
                .group_ids(id)
                .send()
                .await
                .unwrap()
                .security_groups()[0]
                .clone()
        }
    };
    let alb = sg(first["security_groups"]["alb"].as_str().unwrap()).await;
    // One NAT gateway per zone, each address admitted (the load balancer is
    // internet-facing, so clients in the VPC arrive through them).
    let mut expected = vec![
        format!("tcp 443 {cidr}"),
        "tcp 443 203.0.113.0/24".to_owned(),
    ];
    for nat in ec2
        .describe_nat_gateways()
        .filter(vpc_filter(vpc))
        .send()
        .await
        .unwrap()
        .nat_gateways()
    {
        let ip = nat.nat_gateway_addresses()[0].public_ip().unwrap();
        expected.push(format!("tcp 443 {ip}/32"));
    }
    assert_eq!(
        expected.len(),
        5,
        "three zones, three NAT gateways: {expected:?}"
    );
    assert_eq!(ingress_sources(&alb), sorted(expected));
    let databases = sg(first["security_groups"]["databases"].as_str().unwrap()).await;
    let cluster_sg = first["security_groups"]["cluster"].as_str().unwrap();
    let mut ports: Vec<i32> = databases
        .ip_permissions()
        .iter()
        .filter_map(|p| p.from_port())
        .collect();
    ports.sort();
    assert_eq!(ports, [5432, 6379, 27017]);
    for permission in databases.ip_permissions() {
        assert!(
            permission.ip_ranges().is_empty(),
            "no CIDR may reach the data stores"
        );
        assert_eq!(
            permission.user_id_group_pairs()[0].group_id(),
            Some(cluster_sg)
        );
    }

    // The control plane sends the database ports into the VPC (the live stores and the
    // restore test's scratch copies), each target's ingress deciding; no allow-all rule.
    let control_plane = sg(first["security_groups"]["control_plane"].as_str().unwrap()).await;
    let mut egress: Vec<String> = Vec::new();
    for p in control_plane.ip_permissions_egress() {
        for range in p.ip_ranges() {
            egress.push(format!(
                "{} {} {}",
                p.ip_protocol().unwrap_or_default(),
                p.from_port().unwrap_or(-1),
                range.cidr_ip().unwrap_or_default()
            ));
        }
        assert!(
            p.user_id_group_pairs().is_empty(),
            "egress goes to CIDRs, not to one group: {p:?}"
        );
    }
    egress.sort();
    let mut expected = vec![
        format!("tcp 443 {cidr}"),
        "tcp 443 0.0.0.0/0".to_owned(),
        format!("tcp 5432 {cidr}"),
        format!("tcp 6379 {cidr}"),
        format!("tcp 27017 {cidr}"),
    ];
    expected.sort();
    assert_eq!(egress, expected);

    // The journal says what happened; the inventory lists the VPC once.
    let entries = recorder.entries.lock().unwrap();
    assert_eq!(
        entries
            .iter()
            .map(|e| e.outcome.as_str())
            .collect::<Vec<_>>(),
        ["created", "unchanged"]
    );
    let resources = recorder.resources.lock().unwrap();
    assert_eq!(resources.iter().filter(|r| r.kind == "ec2:vpc").count(), 1);
}

/// Every ingress rule of a group, one line per source: `tcp 443 10.0.0.0/16`.
fn ingress_sources(group: &aws_sdk_ec2::types::SecurityGroup) -> Vec<String> {
    let mut lines = Vec::new();
    for p in group.ip_permissions() {
        let head = format!(
            "{} {}",
            p.ip_protocol().unwrap_or_default(),
            p.from_port().unwrap_or(-1)
        );
        for range in p.ip_ranges() {
            lines.push(format!("{head} {}", range.cidr_ip().unwrap_or_default()));
        }
        for pair in p.user_id_group_pairs() {
            lines.push(format!("{head} {}", pair.group_id().unwrap_or_default()));
        }
    }
    lines.sort();
    lines
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

/// A network removed from `ingress_cidrs` is revoked on the next run, and a rule added
/// by hand to the load balancer's group is taken away: the group admits the VPC and the
/// spec's networks and nothing else.
#[tokio::test]
async fn the_load_balancer_admits_exactly_the_vpc_and_the_specs_networks() {
    let config = sdk_config().await;
    let name = unique_name("ingress");
    let cidr = unique_cidr(&config).await;
    let with = |cidrs: Value| {
        let mut spec = spec(&name, &cidr, "single");
        spec["network"]["ingress_cidrs"] = cidrs;
        Arc::new(MemoryRecorder::with(&spec, &json!({})))
    };
    let deps = network::Deps::new(&config, with(json!(["203.0.113.0/24", "198.51.100.0/24"])));
    let first = network::handle(&deps, event(&name))
        .await
        .expect("first ensure");
    let alb_id = first["security_groups"]["alb"].as_str().unwrap().to_owned();
    let ec2 = aws_sdk_ec2::Client::new(&config);
    // The load balancer is internet-facing: a client in the VPC arrives from the NAT
    // gateway's Elastic IP.
    let nat_ip = ec2
        .describe_nat_gateways()
        .filter(vpc_filter(first["vpc_id"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .nat_gateways()
        .iter()
        .flat_map(|n| n.nat_gateway_addresses())
        .find_map(|a| a.public_ip())
        .expect("the NAT gateway has a public address")
        .to_owned();
    let alb = || async {
        ec2.describe_security_groups()
            .group_ids(&alb_id)
            .send()
            .await
            .unwrap()
            .security_groups()[0]
            .clone()
    };
    assert_eq!(
        ingress_sources(&alb().await),
        sorted(vec![
            format!("tcp 443 {cidr}"),
            format!("tcp 443 {nat_ip}/32"),
            "tcp 443 198.51.100.0/24".to_owned(),
            "tcp 443 203.0.113.0/24".to_owned()
        ])
    );
    // Someone opens SSH by hand.
    ec2.authorize_security_group_ingress()
        .group_id(&alb_id)
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22)
        .cidr_ip("0.0.0.0/0")
        .send()
        .await
        .unwrap();

    let deps = network::Deps::new(&config, with(json!(["203.0.113.0/24"])));
    network::handle(&deps, event(&name))
        .await
        .expect("second ensure");
    assert_eq!(
        ingress_sources(&alb().await),
        sorted(vec![
            format!("tcp 443 {cidr}"),
            format!("tcp 443 {nat_ip}/32"),
            "tcp 443 203.0.113.0/24".to_owned()
        ])
    );
    // Without customer networks the load balancer is internal: the NAT's address goes.
    let deps = network::Deps::new(&config, with(json!([])));
    network::handle(&deps, event(&name))
        .await
        .expect("internal ensure");
    assert_eq!(ingress_sources(&alb().await), [format!("tcp 443 {cidr}")]);
    let deps = network::Deps::new(&config, with(json!(["203.0.113.0/24"])));
    network::handle(&deps, event(&name))
        .await
        .expect("internet-facing again");
    let third = network::handle(&deps, event(&name))
        .await
        .expect("third ensure");
    assert_eq!(
        third["created"],
        json!([]),
        "nothing left to change: {third}"
    );
}

#[tokio::test]
async fn overlapping_cidr_is_refused_before_anything_is_created() {
    let config = sdk_config().await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let cidr = unique_cidr(&config).await;
    ec2.create_vpc()
        .cidr_block(&cidr)
        .send()
        .await
        .expect("someone else's VPC");

    let name = unique_name("overlap");
    let state = MemoryRecorder::with(&spec(&name, &cidr, "single"), &json!({}));
    let deps = network::Deps::new(&config, Arc::new(state));
    let err = network::handle(&deps, event(&name)).await.unwrap_err();
    assert_eq!(err.name(), apiary_core::ErrorName::InvalidSpec);
    assert!(
        err.to_string()
            .contains(&format!("network.vpc_cidr: {cidr} overlaps")),
        "{err}"
    );
    let ours = ec2
        .describe_vpcs()
        .filters(
            Filter::builder()
                .name("tag:apiary:deployment")
                .values(&name)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(ours.vpcs().is_empty(), "nothing was created");
}
