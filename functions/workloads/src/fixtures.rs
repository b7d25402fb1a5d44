//! A deployment whose earlier layers are all built, as the state table holds it: the one
//! builder every test of this crate (unit and emulator) takes its spec and layer outputs
//! from. The outputs are typed (`apiary_core::outputs`), so a field the layers stop
//! returning breaks the build here rather than a test's hand-written JSON.
//!
//! Compiled for this crate's unit tests and, through the `fixtures` feature, for its
//! integration tests; never in a Lambda build.

use std::collections::BTreeMap;

use apiary_core::outputs::{
    ClusterOutput, DatabasesOutput, DatastoreEndpoint, DnsOutput, KeyRef, KeysOutput, Layers,
    NetworkOutput, SecurityGroups, StorageOutput, SubnetRef,
};
use apiary_core::spec::DeploymentSpec;
use apiary_core::step::MemoryRecorder;
use serde_json::{Value, json};

use crate::manifests::Context;

/// The deployment the unit tests work on.
pub const NAME: &str = "acme-prod";
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-west-2";
pub const DOMAIN: &str = "honeyhive.acme.example.com";
/// The cluster of [`NAME`], as the cluster layer reports it.
pub const CLUSTER_ARN: &str = "arn:aws:eks:us-west-2:123456789012:cluster/apiary-acme-prod";

/// One deployment: its spec and the outputs of the layers before workloads.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub name: String,
    pub spec: Value,
    pub layers: Layers,
}

impl Fixture {
    /// [`NAME`], every layer built.
    pub fn test() -> Self {
        Fixture::named(NAME)
    }

    /// A deployment called `name`, every layer built; the names in its outputs follow it.
    pub fn named(name: &str) -> Self {
        Fixture {
            name: name.to_owned(),
            spec: json!({
                "name": name,
                "region": REGION,
                "size": "small",
                "dns": {"domain": DOMAIN},
                "network": {"ingress_cidrs": ["203.0.113.0/24"]},
                "workloads": {"ingestion_image": "public.ecr.aws/honeyhive/ingestion:1.0.0"}
            }),
            layers: built_layers(name),
        }
    }

    /// The spec with `image` as the ingestion image.
    pub fn with_image(mut self, image: &str) -> Self {
        self.spec["workloads"]["ingestion_image"] = json!(image);
        self
    }

    /// The layers as if `edit` had happened to them (a layer not built yet: set it to
    /// `None`).
    pub fn with_layers(mut self, edit: impl FnOnce(&mut Layers)) -> Self {
        edit(&mut self.layers);
        self
    }

    pub fn spec(&self) -> DeploymentSpec {
        DeploymentSpec::parse(&self.spec).expect("the fixture spec is valid")
    }

    /// The layer outputs as the table saves them, one slot per layer.
    pub fn layers_json(&self) -> Value {
        serde_json::to_value(&self.layers).expect("layer outputs serialise")
    }

    /// A state table holding this deployment's spec and layer outputs.
    pub fn state(&self) -> MemoryRecorder {
        MemoryRecorder::with(&self.spec, &self.layers_json())
    }

    /// The event the state machine sends for `action` on this deployment.
    pub fn event(&self, action: &str) -> Value {
        apiary_core::step::event(action, &self.name)
    }

    /// What the manifests are built from.
    pub fn context(&self) -> Context {
        Context::new(&self.spec(), &self.layers).expect("the fixture context builds")
    }
}

fn arn(service: &str, resource: &str) -> String {
    format!("arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}")
}

fn subnet(id: &str, zone: &str, cidr: &str) -> SubnetRef {
    SubnetRef {
        id: id.to_owned(),
        availability_zone: format!("{REGION}{zone}"),
        cidr: cidr.to_owned(),
    }
}

fn key(name: &str, scope: &str, id: &str) -> (String, KeyRef) {
    let key = KeyRef {
        key_id: id.to_owned(),
        arn: arn("kms", &format!("key/{id}")),
        alias: format!("alias/apiary/{name}/{scope}"),
    };
    (scope.to_owned(), key)
}

fn datastore(identifier: String, host: &str, port: u16, secret: &str) -> DatastoreEndpoint {
    DatastoreEndpoint {
        identifier,
        host: host.to_owned(),
        port,
        secret_arn: arn("secretsmanager", &format!("secret:{secret}-AbCdEf")),
    }
}

fn built_layers(name: &str) -> Layers {
    let bucket = |purpose: &str| {
        (
            purpose.to_owned(),
            format!("apiary-{name}-{purpose}-{ACCOUNT}-{REGION}"),
        )
    };
    Layers {
        keys: Some(KeysOutput {
            keys: BTreeMap::from([key(name, "app", "1111-app"), key(name, "s3", "2222-s3")]),
        }),
        network: Some(NetworkOutput {
            vpc_id: "vpc-0aaa".into(),
            vpc_cidr: "10.42.0.0/16".into(),
            public_subnets: vec![
                subnet("subnet-0pub1", "a", "10.42.0.0/20"),
                subnet("subnet-0pub2", "b", "10.42.16.0/20"),
            ],
            private_subnets: vec![
                subnet("subnet-0prv1", "a", "10.42.128.0/19"),
                subnet("subnet-0prv2", "b", "10.42.160.0/19"),
            ],
            nat_gateway_ids: vec!["nat-0aaa".into()],
            security_groups: SecurityGroups {
                alb: "sg-0alb".into(),
                cluster: "sg-0cluster".into(),
                databases: "sg-0db".into(),
            },
            endpoints: BTreeMap::new(),
        }),
        dns: Some(DnsOutput {
            domain: DOMAIN.into(),
            hosted_zone_id: "Z0123".into(),
            certificate_arn: arn("acm", "certificate/abcd-1234"),
        }),
        storage: Some(StorageOutput {
            buckets: BTreeMap::from(["metrics", "logs", "config", "backups"].map(bucket)),
        }),
        databases: Some(DatabasesOutput {
            postgres: Some(datastore(
                format!("apiary-{name}-pg"),
                "pg.internal",
                5432,
                "pg",
            )),
            documentdb: None,
            redis: Some(datastore(
                format!("apiary-{name}-redis"),
                "redis.internal",
                6379,
                "redis",
            )),
        }),
        cluster: Some(ClusterOutput {
            cluster_name: format!("apiary-{name}"),
            cluster_arn: arn("eks", &format!("cluster/apiary-{name}")),
            endpoint: "https://ABCDEF.gr7.us-west-2.eks.amazonaws.com".into(),
            certificate_authority: String::new(),
            node_role_arn: format!("arn:aws:iam::{ACCOUNT}:role/apiary-{name}-node"),
            nodegroup_name: format!("apiary-{name}-system"),
            interruption_queue_url: format!("https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/q"),
        }),
    }
}

/// The spec of [`NAME`].
pub fn spec() -> DeploymentSpec {
    Fixture::test().spec()
}

/// The layer outputs of [`NAME`].
pub fn layers() -> Layers {
    Fixture::test().layers
}

/// What the manifests of [`NAME`] are built from.
pub fn context() -> Context {
    Fixture::test().context()
}
