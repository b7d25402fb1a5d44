//! Whose is it: the one rule every delete of the teardown goes through.
//!
//! A resource is this deployment's when it carries `apiary:deployment=<name>`, or a tag
//! that names this deployment's EKS cluster (the tags the controllers write:
//! `kubernetes.io/cluster/<cluster>`, `elbv2.k8s.aws/cluster`, `eks:eks-cluster-name`,
//! `aws:eks:cluster-name`, `cluster.k8s.amazonaws.com/name`, `KubernetesCluster`), or a
//! controller's tag (`karpenter.sh/*`, `ingress.eks.amazonaws.com/*`,
//! `service.eks.amazonaws.com/*`, `elbv2.k8s.aws/*`) while it sits in this deployment's VPC.
//! Nothing else is touched: an untagged instance a person started in the VPC is reported,
//! never deleted.

use apiary_core::naming::{Names, TAG_DEPLOYMENT};
use apiary_core::outputs::Layers;
use apiary_core::spec::DeploymentSpec;

/// Tags whose value is the cluster's name.
const CLUSTER_NAME_TAGS: &[&str] = &[
    "elbv2.k8s.aws/cluster",
    "eks:eks-cluster-name",
    "aws:eks:cluster-name",
    "cluster.k8s.amazonaws.com/name",
    "KubernetesCluster",
    "karpenter.sh/discovery",
];

/// Tag key prefixes the controllers write; ours only inside the deployment's VPC.
const CONTROLLER_PREFIXES: &[&str] = &[
    "karpenter.sh/",
    "karpenter.k8s.aws/",
    "ingress.eks.amazonaws.com/",
    "service.eks.amazonaws.com/",
    "elbv2.k8s.aws/",
    "ebs.csi.aws.com/",
    "kubernetes.io/created-for/",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub deployment: String,
    pub cluster: String,
    /// The VPC, when the network layer recorded one (or the run found it by tag).
    pub vpc_id: Option<String>,
    /// What the reports of this data plane are filed under.
    pub incarnation: String,
}

impl Owner {
    pub fn of(spec: &DeploymentSpec, names: &Names, layers: &Layers) -> Self {
        let cluster = layers
            .cluster
            .as_ref()
            .map(|c| c.cluster_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| names.resource("eks"));
        let vpc_id = layers
            .network
            .as_ref()
            .map(|n| n.vpc_id.clone())
            .filter(|v| !v.is_empty());
        Owner {
            deployment: spec.name.clone(),
            incarnation: vpc_id.clone().unwrap_or_else(|| spec.name.clone()),
            cluster,
            vpc_id,
        }
    }

    /// Tagged `apiary:deployment=<name>`.
    pub fn tagged<'a>(&self, tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
        tags.into_iter()
            .any(|(k, v)| k == TAG_DEPLOYMENT && v == self.deployment)
    }

    /// Whether a resource with these tags is this deployment's; `in_vpc` says whether it
    /// sits in the deployment's VPC (or subnets).
    pub fn owns<'a>(
        &self,
        tags: impl IntoIterator<Item = (&'a str, &'a str)>,
        in_vpc: bool,
    ) -> bool {
        let tags: Vec<(&str, &str)> = tags.into_iter().collect();
        if self.tagged(tags.iter().copied()) {
            return true;
        }
        let cluster_tag = format!("kubernetes.io/cluster/{}", self.cluster);
        let names_cluster = |(k, _): &(&str, &str)| {
            CLUSTER_NAME_TAGS.contains(k) || k.starts_with("kubernetes.io/cluster/")
        };
        let names_ours = |(k, v): &(&str, &str)| {
            *k == cluster_tag || (CLUSTER_NAME_TAGS.contains(k) && *v == self.cluster)
        };
        // A tag naming another cluster makes it that cluster's, wherever it sits.
        if tags.iter().any(|t| names_cluster(t) && !names_ours(t)) {
            return false;
        }
        tags.iter().any(names_ours)
            || (in_vpc
                && tags
                    .iter()
                    .any(|(k, _)| CONTROLLER_PREFIXES.iter().any(|p| k.starts_with(p))))
    }

    /// Whether a network interface in the deployment's VPC is this deployment's: by its
    /// tags, or (the VPC CNI leaves its interfaces untagged) by what its description
    /// says made it: the VPC CNI (`aws-K8S-...`), EKS for this cluster
    /// (`Amazon EKS <cluster>`), or one of the control plane's in-VPC `functions`
    /// (`AWS Lambda VPC ENI-<function>-...`). Tags naming another cluster make it that
    /// cluster's, whatever the description.
    pub fn owns_interface<'a>(
        &self,
        tags: impl IntoIterator<Item = (&'a str, &'a str)>,
        description: &str,
        functions: &[String],
    ) -> bool {
        let tags: Vec<(&str, &str)> = tags.into_iter().collect();
        if self.owns(tags.iter().copied(), true) {
            return true;
        }
        let names_a_cluster = tags
            .iter()
            .any(|(k, _)| CLUSTER_NAME_TAGS.contains(k) || k.starts_with("kubernetes.io/cluster/"));
        if names_a_cluster {
            return false;
        }
        description.starts_with("aws-K8S-")
            || description == format!("Amazon EKS {}", self.cluster)
            || functions
                .iter()
                .any(|f| description.starts_with(&format!("AWS Lambda VPC ENI-{f}-")))
    }

    /// The tag keys a scan by tag looks for besides `apiary:deployment`.
    pub fn cluster_tag_filters(&self) -> Vec<(String, Option<String>)> {
        let mut filters = vec![(format!("kubernetes.io/cluster/{}", self.cluster), None)];
        for key in CLUSTER_NAME_TAGS {
            filters.push(((*key).to_owned(), Some(self.cluster.clone())));
        }
        filters
    }
}

/// EC2 tags as pairs.
pub fn ec2_tags(tags: &[aws_sdk_ec2::types::Tag]) -> Vec<(&str, &str)> {
    tags.iter()
        .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            deployment: "acme".into(),
            cluster: "apiary-acme-eks".into(),
            vpc_id: Some("vpc-1".into()),
            incarnation: "vpc-1".into(),
        }
    }

    #[test]
    fn only_this_deployments_tags_make_it_ours() {
        let o = owner();
        assert!(o.owns([("apiary:deployment", "acme")], false));
        assert!(!o.owns([("apiary:deployment", "acme-prod")], false));
        assert!(o.owns([("kubernetes.io/cluster/apiary-acme-eks", "owned")], false));
        assert!(!o.owns([("kubernetes.io/cluster/apiary-other-eks", "owned")], false));
        assert!(o.owns([("elbv2.k8s.aws/cluster", "apiary-acme-eks")], false));
        assert!(!o.owns([("elbv2.k8s.aws/cluster", "other")], true));
        assert!(o.owns([("eks:eks-cluster-name", "apiary-acme-eks")], false));
        // A controller's tag without the cluster's name: ours only inside our VPC.
        assert!(o.owns([("karpenter.sh/nodepool", "default")], true));
        assert!(!o.owns([("karpenter.sh/nodepool", "default")], false));
        assert!(o.owns([("service.eks.amazonaws.com/stack", "x")], true));
        // Untagged, even inside the VPC: never ours.
        assert!(!o.owns([("Name", "bastion")], true));
        assert!(!o.owns(Vec::<(&str, &str)>::new(), true));
    }

    #[test]
    fn an_untagged_interface_is_ours_only_by_what_made_it() {
        let o = owner();
        let none = Vec::<(&str, &str)>::new;
        let functions = ["apiary-acme-workloads".to_owned()];
        assert!(o.owns_interface(none(), "aws-K8S-i-0123456789", &functions));
        assert!(o.owns_interface(none(), "Amazon EKS apiary-acme-eks", &functions));
        assert!(o.owns_interface(
            none(),
            "AWS Lambda VPC ENI-apiary-acme-workloads-4f1c",
            &functions
        ));
        assert!(o.owns_interface([("apiary:deployment", "acme")], "", &functions));
        // A person's, or another cluster's: never.
        assert!(!o.owns_interface(none(), "bastion", &functions));
        assert!(!o.owns_interface(none(), "", &functions));
        assert!(!o.owns_interface(none(), "Amazon EKS apiary-acme-prod-eks", &functions));
        assert!(!o.owns_interface(
            none(),
            "AWS Lambda VPC ENI-apiary-acme-prod-workloads-4f1c",
            &functions
        ));
        assert!(!o.owns_interface(
            [("cluster.k8s.amazonaws.com/name", "other")],
            "aws-K8S-i-0123456789",
            &functions
        ));
    }
}
