//! Network policy, ingress and node pool content.

use serde_json::json;

use super::tests::{body, built, find};
use super::*;
use crate::test_support::context;

#[test]
fn network_policy_admits_only_the_load_balancer_the_namespace_and_prometheus() {
    let objects = built();
    let spec = &body(&objects, "NetworkPolicy", APP)["spec"];
    assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        spec["podSelector"],
        json!({"matchLabels": {"app.kubernetes.io/name": "ingestion"}})
    );
    // Internet-facing (the spec lists customer networks): the ALB is in the public subnets.
    assert_eq!(
        spec["ingress"],
        json!([
            {"from": [{"ipBlock": {"cidr": "10.42.0.0/20"}}, {"ipBlock": {"cidr": "10.42.16.0/20"}}],
             "ports": [{"port": 8080, "protocol": "TCP"}]},
            {"from": [{"podSelector": {}}]},
            {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                       "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]}
        ])
    );
}

#[test]
fn network_policy_lets_pods_reach_only_data_stores_dns_identity_and_aws() {
    let objects = built();
    let egress = &body(&objects, "NetworkPolicy", APP)["spec"]["egress"];
    let private =
        json!([{"ipBlock": {"cidr": "10.42.128.0/19"}}, {"ipBlock": {"cidr": "10.42.160.0/19"}}]);
    assert_eq!(
        egress,
        &json!([
            {"to": [{"podSelector": {}}]},
            {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]},
            // DocumentDB is off in the fixture: only PostgreSQL and Redis ports.
            {"to": private, "ports": [{"port": 5432, "protocol": "TCP"}, {"port": 6379, "protocol": "TCP"}]},
            {"to": [{"ipBlock": {"cidr": "169.254.170.23/32"}}], "ports": [{"port": 80, "protocol": "TCP"}]},
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443, "protocol": "TCP"}]}
        ])
    );
    // Every rule but the namespace one names its ports: no rule opens all ports outward.
    for rule in egress.as_array().unwrap().iter().skip(1) {
        assert!(
            rule["ports"].as_array().is_some_and(|p| !p.is_empty()),
            "{rule}"
        );
    }

    let mut no_stores = context();
    no_stores.databases = Default::default();
    let objects = build(&no_stores).unwrap();
    let egress = body(&objects, "NetworkPolicy", APP)["spec"]["egress"].clone();
    assert!(
        !egress.to_string().contains("5432") && !egress.to_string().contains("10.42.128.0/19"),
        "{egress}"
    );
}

#[test]
fn internal_load_balancer_when_no_customer_networks_are_given() {
    let mut ctx = context();
    ctx.internet_facing = false;
    let objects = build(&ctx).unwrap();
    let params = &body(&objects, "IngressClassParams", INGRESS_CLASS)["spec"];
    assert_eq!(params["scheme"], "internal");
    assert_eq!(
        params["subnets"]["ids"],
        json!(["subnet-0prv1", "subnet-0prv2"])
    );
    let ingress = &body(&objects, "NetworkPolicy", APP)["spec"]["ingress"][0]["from"];
    assert_eq!(
        ingress,
        &json!([{"ipBlock": {"cidr": "10.42.128.0/19"}}, {"ipBlock": {"cidr": "10.42.160.0/19"}}])
    );
}

#[test]
fn ingress_serves_the_domain_over_https_with_the_certificate() {
    let objects = built();
    let params = body(&objects, "IngressClassParams", INGRESS_CLASS);
    assert_eq!(params["apiVersion"], "eks.amazonaws.com/v1");
    assert_eq!(params["spec"]["scheme"], "internet-facing");
    assert_eq!(
        params["spec"]["certificateARNs"],
        json!(["arn:aws:acm:us-west-2:123456789012:certificate/abcd-1234"])
    );
    assert_eq!(
        params["spec"]["subnets"]["ids"],
        json!(["subnet-0pub1", "subnet-0pub2"])
    );
    assert!(
        params["spec"]["tags"]
            .as_array()
            .unwrap()
            .contains(&json!({"key": "apiary:deployment", "value": "acme-prod"}))
    );
    let class = body(&objects, "IngressClass", INGRESS_CLASS);
    assert_eq!(
        class["spec"],
        json!({"controller": "eks.amazonaws.com/alb",
               "parameters": {"apiGroup": "eks.amazonaws.com", "kind": "IngressClassParams", "name": "apiary-alb"}})
    );
    let ingress = body(&objects, "Ingress", APP);
    let annotations = &ingress["metadata"]["annotations"];
    assert_eq!(
        annotations["alb.ingress.kubernetes.io/listen-ports"],
        r#"[{"HTTPS":443}]"#
    );
    assert_eq!(annotations["alb.ingress.kubernetes.io/target-type"], "ip");
    assert_eq!(
        annotations["alb.ingress.kubernetes.io/security-groups"],
        "sg-0alb"
    );
    assert_eq!(ingress["spec"]["ingressClassName"], INGRESS_CLASS);
    assert_eq!(
        ingress["spec"]["rules"],
        json!([{"host": "honeyhive.acme.example.com", "http": {"paths": [{
            "backend": {"service": {"name": "ingestion", "port": {"number": 80}}},
            "path": "/", "pathType": "Prefix"}]}}])
    );
    let service = body(&objects, "Service", APP);
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}])
    );
}

#[test]
fn node_pool_is_limited_by_the_size_preset_on_our_node_class() {
    let objects = built();
    let pool = find(&objects, "NodePool", NODE_POOL);
    assert!(pool.auto_mode_only);
    assert_eq!(pool.body["apiVersion"], "karpenter.sh/v1");
    let spec = &pool.body["spec"];
    assert_eq!(spec["limits"], json!({"cpu": "64", "memory": "256Gi"}));
    assert_eq!(
        spec["template"]["spec"]["nodeClassRef"],
        json!({"group": "eks.amazonaws.com", "kind": "NodeClass", "name": "apiary-ingestion"})
    );
    let requirements = spec["template"]["spec"]["requirements"].as_array().unwrap();
    assert!(requirements.contains(&json!({
        "key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-west-2a", "us-west-2b"]
    })));
    assert!(requirements.contains(&json!({
        "key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]
    })));
    assert_eq!(
        spec["disruption"],
        json!({"budgets": [{"nodes": "10%"}], "consolidateAfter": "5m",
               "consolidationPolicy": "WhenEmptyOrUnderutilized"})
    );
    assert_eq!(schema::check(schema::NODE_POOL, &pool.body), Ok(()));

    let class = find(&objects, "NodeClass", NODE_CLASS);
    assert_eq!(class.body["spec"]["role"], "apiary-acme-prod-node");
    assert_eq!(
        class.body["spec"]["subnetSelectorTerms"],
        json!([{"id": "subnet-0prv1"}, {"id": "subnet-0prv2"}])
    );
    // The deployment's group and the one EKS made, which the system nodes carry: each
    // admits only its members, so Auto Mode and system nodes reach each other only so.
    assert_eq!(
        class.body["spec"]["securityGroupSelectorTerms"],
        json!([{"id": "sg-0cluster"}, {"id": "sg-0eks0cluster0000"}])
    );
    assert_eq!(schema::check(schema::NODE_CLASS, &class.body), Ok(()));
    // An output saved before EKS's group was recorded: the deployment's group alone.
    let mut unrecorded = context();
    unrecorded.eks_security_group = None;
    let objects_without = build(&unrecorded).unwrap();
    assert_eq!(
        body(&objects_without, "NodeClass", NODE_CLASS)["spec"]["securityGroupSelectorTerms"],
        json!([{"id": "sg-0cluster"}])
    );
    let params = find(&objects, "IngressClassParams", INGRESS_CLASS);
    assert_eq!(
        schema::check(schema::INGRESS_CLASS_PARAMS, &params.body),
        Ok(())
    );

    // A larger preset raises the limits; the scaling workflow changes the same fields.
    let mut large = context();
    large.sizing = apiary_core::spec::SizePreset::Large.sizing();
    let objects = build(&large).unwrap();
    assert_eq!(
        body(&objects, "NodePool", NODE_POOL)["spec"]["limits"],
        json!({"cpu": "1600", "memory": "6400Gi"})
    );
    let hpa = &body(&objects, "HorizontalPodAutoscaler", APP)["spec"];
    assert_eq!(hpa["minReplicas"], 6);
    assert_eq!(hpa["maxReplicas"], 200);
}
