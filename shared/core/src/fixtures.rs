//! The one test fixture of a deployment: its spec and the outputs of its built layers, as
//! the state table holds them. Every test that needs a spec or the outputs of earlier
//! layers, unit or emulator, in any crate, starts here and edits what it needs:
//!
//! ```
//! use apiary_core::fixtures::{self, Fixture};
//! use apiary_core::naming::Layer;
//!
//! // As the databases steps find `acme`: keys, network, dns and storage built.
//! let fixture = Fixture::named("acme").before(Layer::Databases).with_size("medium");
//! let network = fixture.layers.network().unwrap();
//! assert_eq!(network.private_subnet_ids(), fixtures::PRIVATE_SUBNETS);
//! assert!(fixture.layers.databases.is_none());
//! ```
//!
//! The outputs are the typed layer outputs ([`crate::outputs`]), so a field a layer stops
//! returning breaks the build here, once, instead of drifting in JSON copied between
//! crates. Tests assert against the constants and functions of this module
//! ([`PRIVATE_SUBNETS`], [`key_arn`], ...) rather than repeating the values.
//!
//! Ordinary library code, not `#[cfg(test)]` (other crates' tests use it) and not behind
//! a cargo feature (a feature turned on only by dev-dependencies would make `cargo run`
//! and `cargo test` build this crate twice). Nothing but tests calls it.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::naming::{Layer, Names};
use crate::outputs::{
    ClusterOutput, DatabasesOutput, DatastoreEndpoint, DnsOutput, KeyRef, KeysOutput, Layers,
    NetworkOutput, SecurityGroups, StorageOutput, SubnetRef,
};
use crate::spec::DeploymentSpec;
use crate::step::MemoryRecorder;

/// The deployment of [`Fixture::test`].
pub const NAME: &str = "acme-prod";
pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-west-2";
pub const DOMAIN: &str = "honeyhive.acme.example.com";
pub const INGESTION_IMAGE: &str = "public.ecr.aws/honeyhive/ingestion:1.0.0";
/// The cluster of [`NAME`], as the cluster layer reports it.
pub const CLUSTER_ARN: &str = "arn:aws:eks:us-west-2:123456789012:cluster/apiary-acme-prod";

/// The keys layer's scopes: a key for each.
pub const KEY_SCOPES: [&str; 7] = ["eks-secrets", "rds", "s3", "app", "docdb", "redis", "ebs"];

pub const VPC_ID: &str = "vpc-0aaa";
pub const VPC_CIDR: &str = "10.42.0.0/16";
/// The public subnets, one per zone of [`ZONES`].
pub const PUBLIC_SUBNETS: [&str; 2] = ["subnet-0pub1", "subnet-0pub2"];
pub const PUBLIC_CIDRS: [&str; 2] = ["10.42.0.0/20", "10.42.16.0/20"];
/// The private subnets (where the cluster and the data stores live), one per zone.
pub const PRIVATE_SUBNETS: [&str; 2] = ["subnet-0prv1", "subnet-0prv2"];
pub const PRIVATE_CIDRS: [&str; 2] = ["10.42.128.0/19", "10.42.160.0/19"];
/// The availability zones of [`REGION`] the subnets are in.
pub const ZONES: [&str; 2] = ["us-west-2a", "us-west-2b"];
pub const ALB_SG: &str = "sg-0alb";
pub const CLUSTER_SG: &str = "sg-0cluster";
pub const DATABASES_SG: &str = "sg-0db";
pub const CONTROL_PLANE_SG: &str = "sg-0cp";
pub const HOSTED_ZONE_ID: &str = "Z0123";

/// One deployment: its spec (as a client submits it) and the outputs of its layers.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub name: String,
    pub spec: Value,
    pub layers: Layers,
}

impl Fixture {
    /// [`NAME`], every layer before workloads built.
    pub fn test() -> Self {
        Fixture::named(NAME)
    }

    /// A deployment called `name`, every layer before workloads built; the names in its
    /// outputs follow it.
    pub fn named(name: &str) -> Self {
        Fixture {
            name: name.to_owned(),
            spec: json!({
                "name": name,
                "region": REGION,
                "size": "small",
                "dns": {"domain": DOMAIN},
                "network": {"ingress_cidrs": ["203.0.113.0/24"]},
                "workloads": {"ingestion_image": INGESTION_IMAGE}
            }),
            layers: built_layers(name),
        }
    }

    /// The deployment as `layer`'s steps find it: only the layers built before it (in
    /// [`Layer::ALL`] order) have outputs.
    pub fn before(mut self, layer: Layer) -> Self {
        let earlier: Vec<&str> = Layer::ALL
            .into_iter()
            .take_while(|l| *l != layer)
            .map(Layer::as_str)
            .collect();
        let mut slots = self.layers_json();
        if let Some(slots) = slots.as_object_mut() {
            slots.retain(|slot, _| earlier.contains(&slot.as_str()));
        }
        self.layers = serde_json::from_value(slots).expect("layer outputs read back");
        self
    }

    /// The spec as if `edit` had happened to it (it must stay valid to be stored).
    pub fn with_spec(mut self, edit: impl FnOnce(&mut Value)) -> Self {
        edit(&mut self.spec);
        self
    }

    /// The spec with `size` as its size preset (`small`, `medium`, `large`).
    pub fn with_size(self, size: &str) -> Self {
        self.with_spec(|spec| spec["size"] = json!(size))
    }

    /// The spec with `image` as the ingestion image.
    pub fn with_image(self, image: &str) -> Self {
        self.with_spec(|spec| spec["workloads"]["ingestion_image"] = json!(image))
    }

    /// The layers as if `edit` had happened to them (a layer not built yet: set it to
    /// `None`; nothing built: `*layers = Layers::default()`).
    pub fn with_layers(mut self, edit: impl FnOnce(&mut Layers)) -> Self {
        edit(&mut self.layers);
        self
    }

    /// The spec, parsed and with its defaults, as the steps read it.
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
        crate::step::event(action, &self.name)
    }
}

/// The ARN of the fixture's key for `scope` (one of [`KEY_SCOPES`]); the same for every
/// deployment name.
pub fn key_arn(scope: &str) -> String {
    arn("kms", &format!("key/{}", key_id(scope)))
}

fn key_id(scope: &str) -> String {
    format!("{scope}-key")
}

fn arn(service: &str, resource: &str) -> String {
    format!("arn:aws:{service}:{REGION}:{ACCOUNT}:{resource}")
}

fn subnets(ids: [&str; 2], cidrs: [&str; 2]) -> Vec<SubnetRef> {
    ids.iter()
        .zip(ZONES)
        .zip(cidrs)
        .map(|((id, zone), cidr)| SubnetRef {
            id: (*id).to_owned(),
            availability_zone: zone.to_owned(),
            cidr: cidr.to_owned(),
        })
        .collect()
}

fn datastore(
    identifier: String,
    host: &str,
    port: u16,
    secret: &str,
    app_secret: Option<&str>,
) -> DatastoreEndpoint {
    DatastoreEndpoint {
        identifier,
        host: host.to_owned(),
        port,
        secret_arn: arn("secretsmanager", &format!("secret:{secret}-AbCdEf")),
        app_secret_arn: app_secret
            .map(|name| arn("secretsmanager", &format!("secret:{name}-GhIjKl"))),
    }
}

fn built_layers(name: &str) -> Layers {
    let names = Names::new(name);
    let key = |scope: &str| {
        let key = KeyRef {
            key_id: key_id(scope),
            arn: key_arn(scope),
            alias: names.key_alias(scope),
        };
        (scope.to_owned(), key)
    };
    let bucket = |purpose: &str| (purpose.to_owned(), names.bucket(purpose, ACCOUNT, REGION));
    Layers {
        keys: Some(KeysOutput {
            keys: KEY_SCOPES.map(key).into(),
        }),
        network: Some(NetworkOutput {
            vpc_id: VPC_ID.into(),
            vpc_cidr: VPC_CIDR.into(),
            public_subnets: subnets(PUBLIC_SUBNETS, PUBLIC_CIDRS),
            private_subnets: subnets(PRIVATE_SUBNETS, PRIVATE_CIDRS),
            nat_gateway_ids: vec!["nat-0aaa".into()],
            security_groups: SecurityGroups {
                alb: ALB_SG.into(),
                cluster: CLUSTER_SG.into(),
                databases: DATABASES_SG.into(),
                control_plane: CONTROL_PLANE_SG.into(),
            },
            endpoints: BTreeMap::new(),
        }),
        dns: Some(DnsOutput {
            domain: DOMAIN.into(),
            hosted_zone_id: HOSTED_ZONE_ID.into(),
            certificate_arn: arn("acm", "certificate/abcd-1234"),
            certificate_status: Some(crate::outputs::CERTIFICATE_ISSUED.into()),
        }),
        storage: Some(StorageOutput {
            buckets: ["metrics", "logs", "config", "backups"].map(bucket).into(),
            access_logs_bucket: names.bucket("access", ACCOUNT, REGION),
            exports: None,
        }),
        databases: Some(DatabasesOutput {
            postgres: Some(datastore(
                format!("apiary-{name}-pg"),
                "pg.internal",
                5432,
                "pg",
                Some(&format!("apiary-{name}-postgres-app")),
            )),
            documentdb: None,
            redis: Some(datastore(
                format!("apiary-{name}-redis"),
                "redis.internal",
                6379,
                "redis",
                None,
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
            cluster_security_group_id: "sg-0eks0cluster0000".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_is_a_valid_stored_state() {
        let fixture = Fixture::test();
        assert_eq!(fixture.spec().name, NAME);
        let cluster = fixture.layers.cluster().unwrap();
        assert_eq!(cluster.cluster_arn, CLUSTER_ARN);
        // What the table holds reads back as the same layers.
        let saved = fixture.layers_json().as_object().unwrap().clone();
        let read = crate::step::assemble(saved.into_iter().collect()).unwrap();
        assert_eq!(read, fixture.layers);
        let keys = read.keys().unwrap();
        for scope in KEY_SCOPES {
            assert_eq!(keys.key(scope).unwrap().arn, key_arn(scope));
        }
    }

    #[test]
    fn names_follow_the_deployment_and_before_keeps_the_earlier_layers() {
        let fixture = Fixture::named("acme").before(Layer::Cluster);
        let keys = fixture.layers.keys().unwrap();
        assert_eq!(keys.key("rds").unwrap().alias, "alias/apiary/acme/rds");
        assert!(fixture.layers.databases.is_some());
        assert!(fixture.layers.cluster.is_none());
        let json = fixture.layers_json();
        assert!(json.get("cluster").is_none(), "{json}");
        assert_eq!(fixture.event("ensure")["deployment"], "acme");

        let nothing = Fixture::named("acme").before(Layer::Keys);
        assert_eq!(nothing.layers, Layers::default());
        assert_eq!(nothing.layers_json(), json!({}));
    }
}
