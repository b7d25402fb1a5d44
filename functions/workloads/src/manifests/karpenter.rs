//! The nodes the ingestion pods run on: a Karpenter `NodePool` (karpenter.sh/v1), which
//! EKS Auto Mode's managed Karpenter serves, and the Auto Mode `NodeClass` it launches
//! nodes from. The cluster is created without Auto Mode's built-in pools, so there is
//! no `default` NodeClass to point at (and AWS asks not to name a custom one `default`):
//! ours names the node role, the private subnets and the cluster security group.
//!
//! The pool's `limits` and disruption budget come from the record: the size preset's,
//! or what the scale-pools workflow recorded over it (`cluster.pools.ingestion`), so a
//! provision renders the scaled pool and never lowers it.

use std::collections::BTreeMap;

use apiary_core::Result;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::network::AUTO_MODE_GROUP;
use super::{Context, Manifest, NODE_CLASS, NODE_POOL, roundtrip, schema};

pub const KARPENTER_GROUP: &str = "karpenter.sh";
/// Nodes are replaced after two weeks, so they pick up patched AMIs.
pub const EXPIRE_AFTER: &str = "336h";
pub const CONSOLIDATE_AFTER: &str = "5m";
/// At most this share of the pool's nodes is disrupted at once, unless the record sets
/// another budget.
pub const DISRUPTION_BUDGET: &str = "10%";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodePool {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: NodePoolSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodePoolSpec {
    pub template: NodeClaimTemplate,
    pub disruption: Disruption,
    /// Resource name (`cpu`, `memory`) -> quantity: the most the pool may launch.
    pub limits: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeClaimTemplate {
    pub metadata: TemplateMetadata,
    pub spec: NodeClaimSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateMetadata {
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeClaimSpec {
    pub node_class_ref: NodeClassRef,
    pub requirements: Vec<Requirement>,
    pub expire_after: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeClassRef {
    pub group: String,
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Requirement {
    pub key: String,
    pub operator: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Disruption {
    pub consolidation_policy: String,
    pub consolidate_after: String,
    pub budgets: Vec<Budget>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Budget {
    pub nodes: String,
}

/// `eks.amazonaws.com/v1` `NodeClass`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeClass {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: NodeClassSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeClassSpec {
    /// The node IAM role's name (the cluster layer's node role).
    pub role: String,
    pub subnet_selector_terms: Vec<IdTerm>,
    pub security_group_selector_terms: Vec<IdTerm>,
    pub network_policy: String,
    pub network_policy_event_logs: String,
    pub snat_policy: String,
    pub ephemeral_storage: EphemeralStorage,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdTerm {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EphemeralStorage {
    pub size: String,
    pub iops: u32,
    pub throughput: u32,
    /// The customer's key for the nodes' volumes, not the account's default EBS key.
    #[serde(rename = "kmsKeyID")]
    pub kms_key_id: String,
}

fn requirement(key: &str, operator: &str, values: &[&str]) -> Requirement {
    Requirement {
        key: key.to_owned(),
        operator: operator.to_owned(),
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    }
}

pub fn node_pool(ctx: &Context) -> Result<Manifest> {
    let mut zones: Vec<&str> = ctx
        .private_subnets
        .iter()
        .map(|s| s.availability_zone.as_str())
        .collect();
    zones.sort_unstable();
    zones.dedup();
    let pool = NodePool {
        api_version: format!("{KARPENTER_GROUP}/v1"),
        kind: "NodePool".to_owned(),
        metadata: ctx.metadata(NODE_POOL, None),
        spec: NodePoolSpec {
            template: NodeClaimTemplate {
                metadata: TemplateMetadata {
                    labels: BTreeMap::from([
                        ("apiary.dev/pool".to_owned(), "ingestion".to_owned()),
                        (super::LABEL_DEPLOYMENT.to_owned(), ctx.deployment.clone()),
                    ]),
                },
                spec: NodeClaimSpec {
                    node_class_ref: NodeClassRef {
                        group: AUTO_MODE_GROUP.to_owned(),
                        kind: "NodeClass".to_owned(),
                        name: NODE_CLASS.to_owned(),
                    },
                    requirements: vec![
                        requirement(
                            "eks.amazonaws.com/instance-category",
                            "In",
                            &["c", "m", "r"],
                        ),
                        requirement("eks.amazonaws.com/instance-generation", "Gt", &["4"]),
                        requirement("kubernetes.io/arch", "In", &["amd64"]),
                        requirement("karpenter.sh/capacity-type", "In", &["on-demand"]),
                        requirement("topology.kubernetes.io/zone", "In", &zones),
                    ],
                    expire_after: EXPIRE_AFTER.to_owned(),
                },
            },
            disruption: Disruption {
                consolidation_policy: "WhenEmptyOrUnderutilized".to_owned(),
                consolidate_after: CONSOLIDATE_AFTER.to_owned(),
                budgets: vec![Budget {
                    nodes: ctx.disruption_budget.clone(),
                }],
            },
            limits: BTreeMap::from([
                ("cpu".to_owned(), ctx.sizing.karpenter_cpu_limit.to_string()),
                (
                    "memory".to_owned(),
                    format!("{}Gi", ctx.sizing.karpenter_memory_limit_gib),
                ),
            ]),
        },
    };
    let mut manifest = Manifest::build(
        &pool.api_version,
        &pool.kind,
        "nodepools",
        &pool.metadata,
        &pool,
        roundtrip::<NodePool>,
    )?;
    manifest.schema = Some(schema::NODE_POOL);
    manifest.auto_mode_only = true;
    Ok(manifest)
}

pub fn node_class(ctx: &Context) -> Result<Manifest> {
    let class = NodeClass {
        api_version: format!("{AUTO_MODE_GROUP}/v1"),
        kind: "NodeClass".to_owned(),
        metadata: ctx.metadata(NODE_CLASS, None),
        spec: NodeClassSpec {
            role: ctx.node_role_name.clone(),
            subnet_selector_terms: ctx
                .private_subnets
                .iter()
                .map(|s| IdTerm { id: s.id.clone() })
                .collect(),
            // The deployment's cluster group (the load balancer, the control plane's
            // in-VPC functions and the data stores admit it) and the one EKS made for
            // the cluster, which the system node group's nodes carry: each group admits
            // only its own members, so without both the two kinds of node could not
            // reach each other (the metrics server and Prometheus scrape every
            // kubelet).
            security_group_selector_terms: std::iter::once(&ctx.security_groups.cluster)
                .chain(&ctx.eks_security_group)
                .map(|id| IdTerm { id: id.clone() })
                .collect(),
            // Our NetworkPolicy restricts our pods; other workloads keep the default.
            network_policy: "DefaultAllow".to_owned(),
            network_policy_event_logs: "Disabled".to_owned(),
            snat_policy: "Random".to_owned(),
            // The same root volume as the system node group's: 100 GiB gp3 with the
            // deployment's ebs key (whose policy admits the Auto Mode cluster role).
            ephemeral_storage: EphemeralStorage {
                size: "100Gi".to_owned(),
                iops: 3000,
                throughput: 125,
                kms_key_id: ctx.ebs_key_arn.clone(),
            },
            tags: ctx.tags.iter().cloned().collect(),
        },
    };
    let mut manifest = Manifest::build(
        &class.api_version,
        &class.kind,
        "nodeclasses",
        &class.metadata,
        &class,
        roundtrip::<NodeClass>,
    )?;
    manifest.schema = Some(schema::NODE_CLASS);
    manifest.auto_mode_only = true;
    Ok(manifest)
}

#[cfg(test)]
mod volume_tests {
    use super::*;

    #[test]
    fn auto_mode_nodes_get_100_gib_encrypted_with_the_deployments_ebs_key() {
        let ctx = crate::test_support::context();
        let manifest = node_class(&ctx).unwrap();
        let storage = &manifest.body["spec"]["ephemeralStorage"];
        assert_eq!(storage["size"], "100Gi");
        assert_eq!(
            storage["kmsKeyID"],
            apiary_core::fixtures::key_arn("ebs").as_str()
        );
        assert_eq!(ctx.ebs_key_arn, apiary_core::fixtures::key_arn("ebs"));
        assert_ne!(
            ctx.ebs_key_arn, ctx.app_key_arn,
            "volumes have their own key"
        );
    }
}
