//! The deployment spec: one typed document that says what data plane to build.
//!
//! A spec arrives as JSON (the CLI, the console's execution input) or as the
//! CloudFormation parameters map of the bootstrap stack. [`DeploymentSpec::parse`]
//! accepts both, fills defaults and returns either a valid spec or **every** problem at
//! once, each naming its field path.

mod cfn;
mod changes;
pub mod pools;
mod sizing;
mod validate;

use ipnet::Ipv4Net;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use cfn::{parameter_for, parameter_names};
pub use changes::check_change;
pub use pools::PoolsSpec;
pub use sizing::{SizePreset, Sizing};
pub use validate::{
    MAX_OPERATOR_PRINCIPALS, Problem, SpecErrors, check_principal_arn, image_problem,
    is_kubernetes_version,
};

use crate::error::{Error, Result};

pub const DEFAULT_REGION: &str = "us-west-2";
pub const DEFAULT_KUBERNETES_VERSION: &str = "1.33";
pub const DEFAULT_INGESTION_IMAGE: &str = "public.ecr.aws/honeyhive/ingestion:1.0.0";
pub const DEFAULT_BACKUP_SCHEDULE: &str = "cron(0 3 * * ? *)";

/// A HoneyHive data plane to build in the customer's account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Deployment name: lowercase letters, digits and hyphens, starting with a letter,
    /// at most 24 characters. Every resource name and tag derives from it.
    #[serde(default)]
    pub name: String,
    /// AWS region of the data plane.
    #[serde(default = "default_region")]
    pub region: String,
    /// Size preset; see the sizing table in the README.
    #[serde(default)]
    pub size: SizePreset,
    #[serde(default)]
    pub network: NetworkSpec,
    #[serde(default)]
    pub dns: DnsSpec,
    #[serde(default)]
    pub cluster: ClusterSpec,
    #[serde(default)]
    pub databases: DatabasesSpec,
    #[serde(default)]
    pub storage: StorageSpec,
    #[serde(default)]
    pub backup: BackupSpec,
    #[serde(default)]
    pub workloads: WorkloadsSpec,
    #[serde(default)]
    pub keys: KeysSpec,
}

/// The customer-managed KMS keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeysSpec {
    /// Days between automatic rotations of every key (KMS `RotationPeriodInDays`,
    /// 90-2560).
    #[serde(default = "default_rotation_days")]
    pub rotation_days: u32,
}

impl Default for KeysSpec {
    fn default() -> Self {
        KeysSpec {
            rotation_days: default_rotation_days(),
        }
    }
}

/// KMS's default automatic rotation period.
pub const DEFAULT_KEY_ROTATION_DAYS: u32 = 365;

fn default_rotation_days() -> u32 {
    DEFAULT_KEY_ROTATION_DAYS
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// VPC CIDR: a /16 inside RFC 1918 space. Default: 10.<n>.0.0/16 with n derived
    /// from the deployment name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_cidr: Option<String>,
    /// Availability zones to spread subnets over: 2 or 3.
    #[serde(default = "default_az_count")]
    pub az_count: u8,
    /// One NAT gateway for the VPC, or one per availability zone.
    #[serde(default)]
    pub nat_mode: NatMode,
    /// Customer networks allowed to reach the data plane's endpoint on port 443.
    #[serde(default)]
    pub ingress_cidrs: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NatMode {
    #[default]
    Single,
    PerAz,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    /// The domain the data plane serves, e.g. `honeyhive.example.com`.
    #[serde(default)]
    pub domain: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// EKS Kubernetes version, e.g. `1.33`.
    #[serde(default = "default_kubernetes_version")]
    pub version: String,
    /// Expose the EKS API endpoint publicly too. Off by default: private only.
    #[serde(default)]
    pub public_endpoint: bool,
    /// The public networks allowed to reach a public EKS API endpoint (EKS
    /// `publicAccessCidrs`). Required, and only allowed, when `public_endpoint` is true;
    /// never `0.0.0.0/0`.
    #[serde(default)]
    pub public_access_cidrs: Vec<String>,
    /// The node pools' limits as the scale-pools workflow set them (see `spec::pools`);
    /// unset: the size preset's. Only scale-pools changes them: a provision that leaves
    /// them out keeps the recorded ones.
    #[serde(default, skip_serializing_if = "PoolsSpec::is_empty")]
    pub pools: PoolsSpec,
    /// The people and systems that may use the Kubernetes API (EKS access entries).
    #[serde(default, skip_serializing_if = "AccessSpec::is_empty")]
    pub access: AccessSpec,
}

/// Operator access to the cluster: IAM roles or users (their ARNs, a role's path
/// included) given EKS access entries. Stack parameters `ClusterAdminArns` and
/// `ClusterViewerArns`. A principal removed from a list loses its entry on the next
/// provision; one listed under the other heading has its access policy swapped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessSpec {
    /// Cluster administrators: `AmazonEKSClusterAdminPolicy` on the whole cluster.
    #[serde(default)]
    pub admins: Vec<String>,
    /// Read-only operators: `AmazonEKSViewPolicy` on the whole cluster (every object
    /// but Secrets).
    #[serde(default)]
    pub viewers: Vec<String>,
    /// A Twingate connector for operator access without any inbound rule: the ARN of a
    /// Secrets Manager secret (in the deployment's account and region) holding
    /// `{"network", "access_token", "refresh_token"}`. Stack parameter
    /// `TwingateSecretArn`; unset: no connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twingate_secret_arn: Option<String>,
}

impl AccessSpec {
    pub fn is_empty(&self) -> bool {
        self.admins.is_empty() && self.viewers.is_empty() && self.twingate_secret_arn.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabasesSpec {
    /// Multi-AZ RDS. Default: off for `small`, on for `medium` and `large`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_az: Option<bool>,
    /// Build the DocumentDB cluster.
    #[serde(default = "yes")]
    pub documentdb: bool,
    /// Build the ElastiCache Redis replication group.
    #[serde(default = "yes")]
    pub redis: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageSpec {
    /// Days objects are kept in the metrics and logs buckets before they expire.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Where the cluster's metrics are kept: unset, the metrics bucket (Prometheus's
    /// two-hour blocks, shipped by a Thanos sidecar); set, the Amazon Managed Service
    /// for Prometheus workspace this ARN names (in the deployment's region), which
    /// Prometheus remote-writes to. The customer makes and keeps the
    /// workspace (its key, its retention); teardown never touches it. Stack parameter
    /// `MetricsWorkspaceArn`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_workspace_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupSpec {
    /// EventBridge Scheduler expression for backups: `cron(...)` or `rate(...)`.
    #[serde(default = "default_backup_schedule")]
    pub schedule: String,
    /// Days automated database backups are kept (1-35).
    #[serde(default = "default_backup_retention")]
    pub retention_days: u32,
    /// Region that receives copies of backups. None: no cross-region copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dr_region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkloadsSpec {
    /// Container image of the ingestion service, pinned by tag or digest.
    #[serde(default = "default_ingestion_image")]
    pub ingestion_image: String,
}

fn default_region() -> String {
    DEFAULT_REGION.to_owned()
}
fn default_az_count() -> u8 {
    3
}
fn default_kubernetes_version() -> String {
    DEFAULT_KUBERNETES_VERSION.to_owned()
}
fn default_retention_days() -> u32 {
    30
}
fn default_backup_schedule() -> String {
    DEFAULT_BACKUP_SCHEDULE.to_owned()
}
fn default_backup_retention() -> u32 {
    7
}
fn default_ingestion_image() -> String {
    DEFAULT_INGESTION_IMAGE.to_owned()
}
fn yes() -> bool {
    true
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            vpc_cidr: None,
            az_count: default_az_count(),
            nat_mode: NatMode::default(),
            ingress_cidrs: Vec::new(),
        }
    }
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            version: default_kubernetes_version(),
            public_endpoint: false,
            public_access_cidrs: Vec::new(),
            pools: PoolsSpec::default(),
            access: AccessSpec::default(),
        }
    }
}

impl Default for DatabasesSpec {
    fn default() -> Self {
        DatabasesSpec {
            multi_az: None,
            documentdb: true,
            redis: true,
        }
    }
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            retention_days: default_retention_days(),
            metrics_workspace_arn: None,
        }
    }
}

impl Default for BackupSpec {
    fn default() -> Self {
        BackupSpec {
            schedule: default_backup_schedule(),
            retention_days: default_backup_retention(),
            dr_region: None,
        }
    }
}

impl Default for WorkloadsSpec {
    fn default() -> Self {
        WorkloadsSpec {
            ingestion_image: default_ingestion_image(),
        }
    }
}

impl DeploymentSpec {
    /// The region backups are copied to: `backup.dr_region` when it is set and is not the
    /// deployment's own region.
    pub fn dr_region(&self) -> Option<&str> {
        self.backup
            .dr_region
            .as_deref()
            .filter(|r| !r.is_empty() && *r != self.region)
    }

    /// Parses a spec document (JSON spec or CloudFormation parameters map), fills
    /// defaults and validates it. Returns every problem found, not just the first.
    pub fn parse(document: &serde_json::Value) -> Result<DeploymentSpec, SpecErrors> {
        validate::parse(document)
    }

    /// Parses a spec from JSON text.
    pub fn parse_str(text: &str) -> Result<DeploymentSpec, SpecErrors> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| SpecErrors::single("", format!("not valid JSON: {e}")))?;
        Self::parse(&value)
    }

    /// A complete, valid example for a size preset.
    pub fn example(size: SizePreset) -> DeploymentSpec {
        let mut spec = DeploymentSpec {
            name: "acme-prod".to_owned(),
            region: default_region(),
            size,
            network: NetworkSpec {
                ingress_cidrs: vec!["203.0.113.0/24".to_owned()],
                nat_mode: if size == SizePreset::Small {
                    NatMode::Single
                } else {
                    NatMode::PerAz
                },
                ..NetworkSpec::default()
            },
            dns: DnsSpec {
                domain: "honeyhive.acme.example.com".to_owned(),
            },
            cluster: ClusterSpec::default(),
            databases: DatabasesSpec::default(),
            storage: StorageSpec::default(),
            backup: BackupSpec {
                dr_region: (size != SizePreset::Small).then(|| "us-east-1".to_owned()),
                ..BackupSpec::default()
            },
            workloads: WorkloadsSpec::default(),
            keys: KeysSpec::default(),
        };
        spec.fill_defaults();
        spec
    }

    /// The JSON Schema of the spec document, for console users and editors.
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(DeploymentSpec))
            .expect("a JSON schema always serialises")
    }

    /// The sizing the preset stands for, with the spec's overrides applied: the recorded
    /// pools (`cluster.pools`) over the preset's node and Karpenter limits.
    pub fn sizing(&self) -> Sizing {
        let mut sizing = self.size.sizing();
        if let Some(multi_az) = self.databases.multi_az {
            sizing.multi_az = multi_az;
        }
        self.cluster.pools.apply(&mut sizing);
        sizing
    }

    /// The VPC CIDR (given or derived). Fails only for a spec that skipped validation.
    pub fn vpc_cidr(&self) -> Result<Ipv4Net> {
        match &self.network.vpc_cidr {
            Some(text) => text.parse().map_err(|_| {
                Error::InvalidSpec(SpecErrors::single(
                    "network.vpc_cidr",
                    format!("{text} is not an IPv4 CIDR"),
                ))
            }),
            None => Ok(default_vpc_cidr(&self.name)),
        }
    }

    /// Customer networks allowed on port 443.
    pub fn ingress_cidrs(&self) -> Result<Vec<Ipv4Net>> {
        self.network
            .ingress_cidrs
            .iter()
            .enumerate()
            .map(|(i, text)| {
                text.parse().map_err(|_| {
                    Error::InvalidSpec(SpecErrors::single(
                        format!("network.ingress_cidrs[{i}]"),
                        format!("{text} is not an IPv4 CIDR"),
                    ))
                })
            })
            .collect()
    }

    /// Makes every derived default explicit, so the stored spec says what was built.
    fn fill_defaults(&mut self) {
        if self.network.vpc_cidr.is_none() {
            self.network.vpc_cidr = Some(default_vpc_cidr(&self.name).to_string());
        }
        if self.databases.multi_az.is_none() {
            self.databases.multi_az = Some(self.size.sizing().multi_az);
        }
    }
}

/// 10.<n>.0.0/16 with n taken from a hash of the name, so two deployments in one account
/// do not collide by default (and the same name always gets the same network).
pub fn default_vpc_cidr(name: &str) -> Ipv4Net {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(name.as_bytes());
    Ipv4Net::new(std::net::Ipv4Addr::new(10, digest[0], 0, 0), 16)
        .expect("a /16 prefix is always valid")
}

#[cfg(test)]
mod tests;
