//! A deployment and the earlier layers' outputs, shaped as the provision workflow passes
//! them, for the unit tests.

use apiary_core::outputs::Layers;
use apiary_core::spec::DeploymentSpec;
use serde_json::{Value, json};

use super::Context;

pub const CLUSTER_ARN: &str = "arn:aws:eks:us-west-2:123456789012:cluster/apiary-acme-prod";

pub fn spec_json() -> Value {
    json!({
        "name": "acme-prod",
        "region": "us-west-2",
        "size": "small",
        "dns": {"domain": "honeyhive.acme.example.com"},
        "network": {"ingress_cidrs": ["203.0.113.0/24"]},
        "workloads": {"ingestion_image": "public.ecr.aws/honeyhive/ingestion:1.0.0"}
    })
}

pub fn layers_json() -> Value {
    let subnet =
        |id: &str, az: &str, cidr: &str| json!({"id": id, "availability_zone": az, "cidr": cidr});
    let key = |scope: &str, id: &str| {
        json!({
            "key_id": id,
            "arn": format!("arn:aws:kms:us-west-2:123456789012:key/{id}"),
            "alias": format!("alias/apiary/acme-prod/{scope}")
        })
    };
    json!({
        "keys": {"keys": {
            "app": key("app", "1111-app"),
            "s3": key("s3", "2222-s3")
        }},
        "network": {
            "vpc_id": "vpc-0aaa",
            "vpc_cidr": "10.42.0.0/16",
            "public_subnets": [
                subnet("subnet-0pub1", "us-west-2a", "10.42.0.0/20"),
                subnet("subnet-0pub2", "us-west-2b", "10.42.16.0/20")
            ],
            "private_subnets": [
                subnet("subnet-0prv1", "us-west-2a", "10.42.128.0/19"),
                subnet("subnet-0prv2", "us-west-2b", "10.42.160.0/19")
            ],
            "nat_gateway_ids": ["nat-0aaa"],
            "security_groups": {"alb": "sg-0alb", "cluster": "sg-0cluster", "databases": "sg-0db"}
        },
        "dns": {
            "domain": "honeyhive.acme.example.com",
            "hosted_zone_id": "Z0123",
            "certificate_arn": "arn:aws:acm:us-west-2:123456789012:certificate/abcd-1234"
        },
        "storage": {"buckets": {
            "metrics": "apiary-acme-prod-metrics-123456789012-us-west-2",
            "logs": "apiary-acme-prod-logs-123456789012-us-west-2",
            "config": "apiary-acme-prod-config-123456789012-us-west-2",
            "backups": "apiary-acme-prod-backups-123456789012-us-west-2"
        }},
        "databases": {
            "postgres": {"identifier": "apiary-acme-prod-pg", "host": "pg.internal", "port": 5432,
                         "secret_arn": "arn:aws:secretsmanager:us-west-2:123456789012:secret:pg-AbCdEf"},
            "documentdb": null,
            "redis": {"identifier": "apiary-acme-prod-redis", "host": "redis.internal", "port": 6379,
                      "secret_arn": "arn:aws:secretsmanager:us-west-2:123456789012:secret:redis-AbCdEf"}
        },
        "cluster": {
            "cluster_name": "apiary-acme-prod",
            "cluster_arn": CLUSTER_ARN,
            "endpoint": "https://ABCDEF.gr7.us-west-2.eks.amazonaws.com",
            "certificate_authority": "",
            "node_role_arn": "arn:aws:iam::123456789012:role/apiary-acme-prod-node",
            "nodegroup_name": "apiary-acme-prod-system",
            "interruption_queue_url": "https://sqs.us-west-2.amazonaws.com/123456789012/q"
        }
    })
}

pub fn event(action: &str) -> Value {
    json!({
        "action": action,
        "spec": spec_json(),
        "layers": layers_json(),
        "execution_id": "exec-1"
    })
}

pub fn spec() -> DeploymentSpec {
    DeploymentSpec::parse(&spec_json()).expect("the fixture spec is valid")
}

pub fn layers() -> Layers {
    serde_json::from_value(layers_json()).expect("the fixture layers parse")
}

pub fn context() -> Context {
    Context::new(&spec(), &layers()).expect("the fixture context builds")
}
