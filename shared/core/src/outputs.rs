//! What each layer returns to the state machine, and so what later layers receive.
//!
//! The provision workflow keeps every layer's output under `$.layers.<layer>` and passes
//! `$.layers` to each later step. These types are that contract.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A customer-managed KMS key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRef {
    pub key_id: String,
    pub arn: String,
    pub alias: String,
}

/// The keys layer: one key per scope (`eks-secrets`, `rds`, `s3`, `app`, `state`,
/// `docdb`, `redis`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysOutput {
    pub keys: BTreeMap<String, KeyRef>,
}

impl KeysOutput {
    pub fn key(&self, scope: &str) -> crate::Result<&KeyRef> {
        self.keys.get(scope).ok_or_else(|| {
            crate::Error::invalid_input(format!("layers.keys has no key for scope {scope}"))
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetRef {
    pub id: String,
    pub availability_zone: String,
    pub cidr: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroups {
    /// The load balancer: 443 from the customer's networks.
    pub alb: String,
    /// The EKS cluster and its nodes.
    pub cluster: String,
    /// The data stores: 5432, 27017, 6379 from the cluster (and from the control plane's
    /// in-VPC functions).
    pub databases: String,
    /// Apiary's own functions that run inside the VPC (the workloads function): admitted
    /// by the cluster on 443 and by the data stores on their ports. Empty in outputs saved
    /// before the group existed.
    #[serde(default)]
    pub control_plane: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkOutput {
    pub vpc_id: String,
    pub vpc_cidr: String,
    pub public_subnets: Vec<SubnetRef>,
    pub private_subnets: Vec<SubnetRef>,
    pub nat_gateway_ids: Vec<String>,
    pub security_groups: SecurityGroups,
    /// Service name -> VPC endpoint id.
    #[serde(default)]
    pub endpoints: BTreeMap<String, String>,
}

impl NetworkOutput {
    pub fn private_subnet_ids(&self) -> Vec<String> {
        self.private_subnets.iter().map(|s| s.id.clone()).collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsOutput {
    pub domain: String,
    pub hosted_zone_id: String,
    pub certificate_arn: String,
    /// The certificate's status as ACM last reported it (`ISSUED`, `PENDING_VALIDATION`,
    /// ...). Absent in outputs saved before it was recorded: read as not issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_status: Option<String>,
}

/// ACM's status of a certificate it has issued.
pub const CERTIFICATE_ISSUED: &str = "ISSUED";

impl DnsOutput {
    /// ACM has issued the certificate, so a listener may use it.
    pub fn certificate_issued(&self) -> bool {
        self.certificate_status.as_deref() == Some(CERTIFICATE_ISSUED)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageOutput {
    /// Purpose (`metrics`, `logs`, `config`, `backups`) -> bucket name.
    pub buckets: BTreeMap<String, String>,
    /// The bucket receiving the other buckets' S3 server access logs (SSE-S3: access-log
    /// delivery cannot write with a KMS key). Empty in outputs saved before it existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub access_logs_bucket: String,
    /// Where Redis backups cross to the DR region (only when `backup.dr_region` is set):
    /// ElastiCache has no cross-region snapshot copy, so the backup workflow exports each
    /// Redis snapshot into `primary`, which S3 replication copies into `dr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exports: Option<ExportBuckets>,
}

/// Days an export's files stay in the primary export bucket (its lifecycle): long enough
/// for replication (the backup workflow waits at most 11 hours), short enough that no
/// second copy of the data lingers.
pub const EXPORT_STAGING_DAYS: i32 = 3;

/// The two buckets a Redis snapshot's export goes through on its way to the DR region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportBuckets {
    /// In the deployment's region; ElastiCache writes the export here.
    pub primary: String,
    /// In `dr_region`; S3 replication writes here.
    pub dr: String,
    pub dr_region: String,
}

/// The state-table slot of the backup's RPO ledger (written by the backup function).
pub const BACKUP_LEDGER_SLOT: &str = "backup.ledger";
/// The state-table slot with the newest restore-test report's time and verdict.
pub const RESTORE_TEST_REPORTED_SLOT: &str = "restore-test.reported";

/// The workloads step's shard whose `serving.load_balancer` names the load balancer in
/// front of the ingestion pods (the `status` poll's output).
pub const ROLLOUT_SLOT: &str = "workloads#rollout";

/// The load balancer in front of the ingestion pods, as the workloads step found it and
/// the dns step's alias record names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancer {
    pub arn: String,
    pub dns_name: String,
    /// The zone of the load balancer's DNS name, which an alias record names.
    pub canonical_hosted_zone_id: String,
    pub scheme: String,
    /// The ARNs of its target groups (absent in outputs saved before they were kept).
    #[serde(default)]
    pub target_groups: Vec<String>,
}

/// The `LoadBalancer` or `TargetGroup` dimension CloudWatch's AWS/ApplicationELB metrics
/// use: the part of the ARN after `loadbalancer/` (`app/<name>/<id>`), or after the
/// resource type's colon (`targetgroup/<name>/<id>`). `None` for anything else.
pub fn elb_metric_dimension(arn: &str) -> Option<&str> {
    let resource = arn.splitn(6, ':').nth(5)?;
    match resource.strip_prefix("loadbalancer/") {
        Some(rest) if rest.starts_with("app/") => Some(rest),
        Some(_) => None,
        None => resource.starts_with("targetgroup/").then_some(resource),
    }
}

impl LoadBalancer {
    /// The load balancer in a saved rollout output (`None`: the workloads step found none
    /// yet). A value that is there but does not read is an error naming the slot, never
    /// taken for "none".
    pub fn from_rollout(rollout: Option<&serde_json::Value>) -> crate::Result<Option<Self>> {
        let Some(found) = rollout
            .and_then(|r| r.get("serving"))
            .and_then(|s| s.get("load_balancer"))
            .filter(|v| !v.is_null())
        else {
            return Ok(None);
        };
        serde_json::from_value(found.clone())
            .map(Some)
            .map_err(|e| {
                crate::Error::invalid_input(format!(
                    "the state table's {ROLLOUT_SLOT} serving.load_balancer does not read: {e}"
                ))
            })
    }
}

/// A data store the ingestion service connects to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatastoreEndpoint {
    pub identifier: String,
    pub host: String,
    pub port: u16,
    /// Secrets Manager ARN of the credentials (never the credentials themselves): the
    /// master user's for PostgreSQL and DocumentDB, the AUTH token's for Redis.
    pub secret_arn: String,
    /// PostgreSQL and DocumentDB: the secret of the pods' own user ([`app_users`]), which
    /// the databases layer makes and the verifier creates in the store. The ingestion
    /// pods read this one, never the master secret. Absent in an output kept before it
    /// existed, and for Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_secret_arn: Option<String>,
}

/// The ingestion pods' own database users, one way for PostgreSQL and DocumentDB.
///
/// Two login users take turns (the alternating-users rotation): the app secret names
/// the one the pods use; rotate-keys gives the other a new password, proves it logs in,
/// makes it current and restarts the pods, so the pods still running keep a user that
/// works until they are replaced. In PostgreSQL both are members of one group role that
/// owns what the service creates (each login sets `role` to it), so a switch of user
/// changes no privilege; in DocumentDB both have `readWrite` on the service's database.
pub mod app_users {
    use crate::naming::Names;

    /// The login users, in turn order.
    pub const USERS: [&str; 2] = ["honeyhive_app_a", "honeyhive_app_b"];
    /// PostgreSQL: the group role both users belong to, owner of the service's objects.
    pub const GROUP: &str = "honeyhive_app";
    /// The database the service uses (the one the databases layer creates).
    pub const DATABASE: &str = "honeyhive";
    /// The stores that have app users (Redis has its AUTH token).
    pub const STORES: [&str; 2] = ["postgres", "documentdb"];

    /// The secret of `store`'s app user: `apiary-<name>-<store>-app`.
    pub fn secret_name(names: &Names, store: &str) -> String {
        names.resource(&format!("{store}-app"))
    }

    /// The user a rotation moves to from `current` (the first one for anything else).
    pub fn next(current: &str) -> &'static str {
        if current == USERS[0] {
            USERS[1]
        } else {
            USERS[0]
        }
    }
}

/// A store the spec disabled (`"enabled": false`) or that the local emulator cannot build
/// (`"emulated": false`) has no endpoint: `None`. Anything else must be a full endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabasesOutput {
    #[serde(default, deserialize_with = "endpoint_unless_absent")]
    pub postgres: Option<DatastoreEndpoint>,
    #[serde(default, deserialize_with = "endpoint_unless_absent")]
    pub documentdb: Option<DatastoreEndpoint>,
    #[serde(default, deserialize_with = "endpoint_unless_absent")]
    pub redis: Option<DatastoreEndpoint>,
}

impl DatabasesOutput {
    /// The secrets the ingestion pods read: their own PostgreSQL and DocumentDB users'
    /// and the Redis AUTH token's. Never a master user's.
    pub fn pod_secrets(&self) -> Vec<String> {
        [&self.postgres, &self.documentdb]
            .into_iter()
            .flatten()
            .filter_map(|store| store.app_secret_arn.clone())
            .chain(self.redis.iter().map(|redis| redis.secret_arn.clone()))
            .filter(|arn| !arn.is_empty())
            .collect()
    }
}

fn endpoint_unless_absent<'de, D>(deserializer: D) -> Result<Option<DatastoreEndpoint>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    let absent = value.is_null()
        || value.get("enabled") == Some(&serde_json::Value::Bool(false))
        || value.get("emulated") == Some(&serde_json::Value::Bool(false));
    if absent {
        return Ok(None);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterOutput {
    pub cluster_name: String,
    pub cluster_arn: String,
    /// API server URL.
    pub endpoint: String,
    /// Base64 PEM of the cluster CA, as DescribeCluster returns it.
    pub certificate_authority: String,
    pub node_role_arn: String,
    pub nodegroup_name: String,
    pub interruption_queue_url: String,
    /// The security group EKS made for the cluster (DescribeCluster's
    /// `clusterSecurityGroupId`): the system node group's nodes carry it, and so do the
    /// Auto Mode nodes, so that the two kinds of node reach each other. Empty in outputs
    /// saved before it was recorded, and locally when the emulator reports none.
    #[serde(default)]
    pub cluster_security_group_id: String,
}

/// Everything provisioned so far, as the state machine passes it along.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layers {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<KeysOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub databases: Option<DatabasesOutput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterOutput>,
}

macro_rules! require {
    ($name:ident, $ty:ty) => {
        pub fn $name(&self) -> crate::Result<&$ty> {
            self.$name.as_ref().ok_or_else(|| {
                crate::Error::invalid_input(concat!(
                    "layers.",
                    stringify!($name),
                    " is missing: this step runs after that layer"
                ))
            })
        }
    };
}

impl Layers {
    require!(keys, KeysOutput);
    require!(network, NetworkOutput);
    require!(dns, DnsOutput);
    require!(storage, StorageOutput);
    require!(databases, DatabasesOutput);
    require!(cluster, ClusterOutput);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn disabled_or_unemulated_stores_have_no_endpoint() {
        let layers: Layers = serde_json::from_value(json!({"databases": {
            "postgres": {"identifier": "db", "host": "db.local", "port": 5432, "secret_arn": "arn:s", "ready": true},
            "documentdb": {"ready": true, "enabled": true, "emulated": false, "reason": "not supported"},
            "redis": {"ready": true, "enabled": false}
        }}))
        .unwrap();
        let databases = layers.databases().unwrap();
        assert_eq!(databases.postgres.as_ref().unwrap().port, 5432);
        assert_eq!(databases.documentdb, None);
        assert_eq!(databases.redis, None);
        let broken =
            serde_json::from_value::<Layers>(json!({"databases": {"redis": {"ready": true}}}));
        assert!(
            broken.is_err(),
            "an enabled store without an endpoint is an error"
        );
    }
}
