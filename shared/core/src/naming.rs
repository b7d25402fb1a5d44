//! Deterministic names and the tags on everything Apiary creates.
//!
//! A step finds what an earlier run made by these names and tags, so they must never
//! depend on anything but the deployment name, the layer and the resource's purpose.

use std::fmt;

pub const TAG_DEPLOYMENT: &str = "apiary:deployment";

/// The log group EKS writes `cluster`'s control plane logs to (the cluster step makes it
/// first, with a retention; the teardown deletes it after the cluster).
pub fn eks_log_group(cluster: &str) -> String {
    format!("/aws/eks/{cluster}/cluster")
}
pub const TAG_LAYER: &str = "apiary:layer";
pub const TAG_MANAGED_BY: &str = "apiary:managed-by";
pub const MANAGED_BY: &str = "apiary";
/// A tag naming the resource's role inside its layer (e.g. `private-a`, `rds`).
pub const TAG_ROLE: &str = "apiary:role";

/// The port the ingestion pods listen on; the cluster security group admits the load
/// balancer to it.
pub const INGESTION_PORT: u16 = 8080;
/// How often the Secrets Store CSI driver (configured by the cluster step) re-reads a
/// mounted secret and updates the synced Kubernetes Secret.
pub const SECRET_ROTATION_POLL: &str = "2m";

/// The layers of a data plane, in build order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    Keys,
    Network,
    Dns,
    Storage,
    Databases,
    Cluster,
    Workloads,
    /// Not a layer of the data plane: the control steps (validate, lock, unlock, mark).
    Control,
}

impl Layer {
    pub const ALL: [Layer; 7] = [
        Layer::Keys,
        Layer::Network,
        Layer::Dns,
        Layer::Storage,
        Layer::Databases,
        Layer::Cluster,
        Layer::Workloads,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Layer::Keys => "keys",
            Layer::Network => "network",
            Layer::Dns => "dns",
            Layer::Storage => "storage",
            Layer::Databases => "databases",
            Layer::Cluster => "cluster",
            Layer::Workloads => "workloads",
            Layer::Control => "control",
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names for one deployment's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    deployment: String,
}

impl Names {
    pub fn new(deployment: impl Into<String>) -> Self {
        Names {
            deployment: deployment.into(),
        }
    }

    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    /// `apiary-<deployment>-<purpose>`: the general form (at most 7 + 24 + 1 + purpose).
    pub fn resource(&self, purpose: &str) -> String {
        format!("apiary-{}-{purpose}", self.deployment)
    }

    /// `alias/apiary/<deployment>/<scope>`.
    pub fn key_alias(&self, scope: &str) -> String {
        format!("alias/apiary/{}/{scope}", self.deployment)
    }

    /// S3 bucket names are global: the account id and region keep them unique, and the
    /// whole name stays within S3's 63 characters for a 24-character deployment name
    /// and purposes of up to 7 characters.
    pub fn bucket(&self, purpose: &str, account: &str, region: &str) -> String {
        let name = format!("apiary-{}-{purpose}-{account}-{region}", self.deployment);
        if name.len() <= 63 {
            return name;
        }
        // Regions with long names: fall back to a stable hash of the region.
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(region.as_bytes());
        let short: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
        format!("apiary-{}-{purpose}-{account}-{short}", self.deployment)
    }

    /// The tags every resource of this deployment carries, for one layer.
    pub fn tags(&self, layer: Layer) -> Vec<(String, String)> {
        vec![
            (TAG_DEPLOYMENT.to_owned(), self.deployment.clone()),
            (TAG_LAYER.to_owned(), layer.as_str().to_owned()),
            (TAG_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        ]
    }

    /// Layer tags plus `Name` and a role tag, the shape EC2 resources want.
    pub fn tags_named(&self, layer: Layer, role: &str) -> Vec<(String, String)> {
        let mut tags = self.tags(layer);
        tags.push(("Name".to_owned(), self.resource(role)));
        tags.push((TAG_ROLE.to_owned(), role.to_owned()));
        tags
    }
}

/// The idempotency token of a create: the same parts always give the same token, so a
/// create repeated after a timeout (by the SDK, or by the workflow re-running the step)
/// gets back what the first attempt made instead of a second resource.
///
/// Pass the deployment, its incarnation (an id that a teardown and re-provision
/// changes, such as the VPC id, so that a new data plane never receives a deleted
/// resource from an old token), the resource and every parameter of the create: AWS
/// refuses a known token with different parameters, so a changed spec must give a new
/// token. The result is `apiary-` and 40 hex digits of a SHA-256 over the parts (each
/// length-prefixed, so `["ab", "c"]` and `["a", "bc"]` differ): 47 ASCII characters,
/// within EC2's limit of 64 and EKS's of 64.
pub fn client_token(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let hex: String = digest.iter().take(20).map(|b| format!("{b:02x}")).collect();
    format!("apiary-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_are_stable_bounded_and_follow_every_part() {
        let parts = ["acme", "vpc-0abc", "nat-0", "subnet-1", "eipalloc-1"];
        let token = client_token(&parts);
        assert_eq!(token, client_token(&parts), "same parts, same token");
        assert_eq!(token.len(), 47);
        assert!(token.len() <= 64 && token.is_ascii(), "{token}");
        assert!(token.starts_with("apiary-"));
        // A new incarnation, resource or parameter gives a new token.
        for (i, changed) in ["beta", "vpc-0def", "nat-1", "subnet-2", "eipalloc-2"]
            .into_iter()
            .enumerate()
        {
            let mut other = parts;
            other[i] = changed;
            assert_ne!(token, client_token(&other), "part {i}");
        }
        // Parts are not simply concatenated.
        assert_ne!(client_token(&["ab", "c"]), client_token(&["a", "bc"]));
        assert_ne!(client_token(&["a"]), client_token(&["a", ""]));
    }

    #[test]
    fn names_are_deterministic_and_bounded() {
        let names = Names::new("abcdefghijklmnopqrstuvwx"); // 24 characters, the maximum
        assert_eq!(names.resource("rds"), "apiary-abcdefghijklmnopqrstuvwx-rds");
        assert_eq!(
            names.key_alias("eks-secrets"),
            "alias/apiary/abcdefghijklmnopqrstuvwx/eks-secrets"
        );
        for region in ["us-west-2", "ap-southeast-2", "us-gov-west-1"] {
            for purpose in ["metrics", "logs", "config", "backups"] {
                let bucket = names.bucket(purpose, "123456789012", region);
                assert!(bucket.len() <= 63, "{bucket} is {} long", bucket.len());
                assert_eq!(bucket, names.bucket(purpose, "123456789012", region));
            }
        }
        // ElastiCache replication group ids allow 40 characters.
        assert!(names.resource("redis").len() <= 40);
    }

    #[test]
    fn tags_name_deployment_layer_and_owner() {
        let tags = Names::new("acme").tags_named(Layer::Network, "vpc");
        let get = |k: &str| {
            tags.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get(TAG_DEPLOYMENT), Some("acme"));
        assert_eq!(get(TAG_LAYER), Some("network"));
        assert_eq!(get(TAG_MANAGED_BY), Some("apiary"));
        assert_eq!(get("Name"), Some("apiary-acme-vpc"));
        assert_eq!(get(TAG_ROLE), Some("vpc"));
    }
}
