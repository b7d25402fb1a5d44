//! Functions that must reach private endpoints run inside the VPC: a provision attaches
//! the workloads function's stand-in (the local runner creates it under the stack's name)
//! to the private subnets with the control plane's group, which the cluster admits on 443
//! and the data stores on their ports. Read back through the Lambda and EC2 APIs; then
//! detached (as a teardown does) and attached again by the next run of the step.

use std::collections::BTreeSet;
use std::sync::Arc;

use apiary::local::in_vpc_functions;
use apiary_asl::ExecutionStatus;
use apiary_core::step::Recorder;
use apiary_e2e::{Local, REGION, unique_cidr, unique_name};
use aws_sdk_ec2::types::{IpPermission, SecurityGroup};
use serde_json::json;

fn group_admits(group: &SecurityGroup, port: i32, source: &str) -> bool {
    group.ip_permissions().iter().any(|p| {
        p.ip_protocol() == Some("tcp")
            && p.from_port() == Some(port)
            && p.to_port() == Some(port)
            && p.user_id_group_pairs()
                .iter()
                .any(|pair| pair.group_id() == Some(source))
    })
}

fn sends(rules: &[IpPermission], port: i32, cidr: &str) -> bool {
    rules.iter().any(|p| {
        p.ip_protocol() == Some("tcp")
            && p.from_port() == Some(port)
            && p.ip_ranges().iter().any(|r| r.cidr_ip() == Some(cidr))
    })
}

#[tokio::test]
async fn provision_places_the_workloads_function_in_the_private_subnets() {
    let f = Local::new("apiary-test-in-vpc").await;
    let (config, store) = (f.config.clone(), f.store.clone());
    let name = unique_name("invpc");
    let cidr = unique_cidr(&config).await;
    let spec = json!({
        "name": name,
        "region": REGION,
        "dns": {"domain": format!("{name}.example.com")},
        "network": {"vpc_cidr": cidr},
    });
    let result = f.provision(&spec, "first").await;
    assert_eq!(
        result.status,
        ExecutionStatus::Succeeded,
        "{:?}: {:?}",
        result.error,
        result.cause
    );

    let network = store
        .outputs(&name)
        .await
        .expect("outputs")
        .remove("network")
        .expect("the network layer's output");
    let network: apiary_core::outputs::NetworkOutput =
        serde_json::from_value(network).expect("a network output");
    let control_plane = network.security_groups.control_plane.clone();
    assert!(control_plane.starts_with("sg-"), "{network:?}");
    let private: BTreeSet<String> = network.private_subnet_ids().into_iter().collect();

    // The functions: in the private subnets, with the control plane's group only.
    let functions = in_vpc_functions(&name);
    assert_eq!(
        functions,
        [
            format!("apiary-{name}-workloads"),
            format!("apiary-{name}-verifier")
        ]
    );
    let lambda = aws_sdk_lambda::Client::new(&config);
    let read = |function: String| {
        let lambda = lambda.clone();
        async move {
            let config = lambda
                .get_function_configuration()
                .function_name(&function)
                .send()
                .await
                .expect("GetFunctionConfiguration");
            let vpc = config.vpc_config().cloned();
            let subnets: BTreeSet<String> = vpc
                .as_ref()
                .map(|v| v.subnet_ids().iter().cloned().collect())
                .unwrap_or_default();
            let groups: Vec<String> = vpc
                .as_ref()
                .map(|v| v.security_group_ids().to_vec())
                .unwrap_or_default();
            (subnets, groups)
        }
    };
    for function in &functions {
        let (subnets, groups) = read(function.clone()).await;
        assert_eq!(
            subnets, private,
            "{function} attached to the private subnets"
        );
        assert_eq!(groups, std::slice::from_ref(&control_plane), "{function}");
    }

    // The groups: the cluster admits the control plane on 443, the data stores on their
    // ports; the control plane sends HTTPS and no longer everything everywhere.
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let described = ec2
        .describe_security_groups()
        .group_ids(&network.security_groups.cluster)
        .group_ids(&network.security_groups.databases)
        .group_ids(&control_plane)
        .send()
        .await
        .expect("DescribeSecurityGroups");
    let group = |id: &str| {
        described
            .security_groups()
            .iter()
            .find(|g| g.group_id() == Some(id))
            .unwrap_or_else(|| panic!("group {id}"))
            .clone()
    };
    let cluster = group(&network.security_groups.cluster);
    assert!(
        group_admits(&cluster, 443, &control_plane),
        "the cluster admits the control plane on 443: {cluster:?}"
    );
    let databases = group(&network.security_groups.databases);
    for port in [5432, 27017, 6379] {
        assert!(
            group_admits(&databases, port, &control_plane),
            "the data stores admit the control plane on {port}: {databases:?}"
        );
    }
    let own = group(&control_plane);
    let egress = own.ip_permissions_egress();
    assert!(sends(egress, 443, &network.vpc_cidr), "{egress:?}");
    assert!(sends(egress, 443, "0.0.0.0/0"), "{egress:?}");
    assert!(
        !egress.iter().any(|p| p.ip_protocol() == Some("-1")
            && p.ip_ranges()
                .iter()
                .any(|r| r.cidr_ip() == Some("0.0.0.0/0"))),
        "the default allow-all egress is gone: {egress:?}"
    );

    // Detached (as a teardown does, or a hand in the console), then attached again by the
    // step, which a second look finds in place.
    assert!(
        network::in_vpc::detach(&lambda, &functions[0])
            .await
            .expect("detach")
    );
    let (subnets, groups) = read(functions[0].clone()).await;
    assert!(
        subnets.is_empty() && groups.is_empty(),
        "{subnets:?} {groups:?}"
    );
    let deps = network::Deps::new(&config, Arc::new(store.clone()))
        .with_in_vpc_functions(functions.clone());
    let event =
        |action: &str| json!({"action": action, "deployment": name, "execution_id": "exec-in-vpc"});
    let again = network::handle(&deps, event("ensure-in-vpc"))
        .await
        .expect("ensure-in-vpc");
    assert_eq!(again["ready"], json!(true), "{again}");
    assert_eq!(
        again["created"],
        json!([format!("{}:vpc-config", functions[0])])
    );
    let (subnets, groups) = read(functions[0].clone()).await;
    assert_eq!(subnets, private);
    assert_eq!(groups, [control_plane]);
    let unchanged = network::handle(&deps, event("ensure-in-vpc"))
        .await
        .expect("ensure-in-vpc");
    assert_eq!(unchanged["created"], json!([]), "{unchanged}");
    let status = network::handle(&deps, event("status-in-vpc"))
        .await
        .expect("status-in-vpc");
    assert_eq!(status["ready"], json!(true), "{status}");
}
