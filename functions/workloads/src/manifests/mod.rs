//! Every Kubernetes object the workloads step owns, built as typed values (k8s-openapi
//! types for the built-in kinds, our own serde types for the EKS Auto Mode and Karpenter
//! custom resources) from the spec and the earlier layers' outputs.

pub mod connector;
pub mod credentials;
mod karpenter;
pub mod monitoring;
mod network;
pub mod schema;
mod workload;

use std::collections::BTreeMap;

use apiary_core::naming::{Layer, Names};
use apiary_core::outputs::{DatabasesOutput, Layers, SecurityGroups, SubnetRef};
use apiary_core::spec::{DeploymentSpec, Sizing};
use apiary_core::{Error, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use karpenter::{DISRUPTION_BUDGET, NodeClass, NodePool, node_pool};
pub use network::IngressClassParams;

/// The namespace of the data plane's pods.
pub const NAMESPACE: &str = "honeyhive";
/// The ingestion service: Deployment, Service, autoscaler, budget and policy share it.
pub const APP: &str = "ingestion";
/// The service account the Pod Identity association binds to the pods' IAM role.
pub const SERVICE_ACCOUNT: &str = "ingestion";
pub const CONFIG_MAP: &str = "ingestion-endpoints";
/// The Karpenter node pool (and its Auto Mode node class) the ingestion pods run on.
pub const NODE_POOL: &str = "apiary-ingestion";
pub const NODE_CLASS: &str = "apiary-ingestion";
/// The IngressClass (and its parameters) that makes EKS Auto Mode build the ALB.
pub const INGRESS_CLASS: &str = "apiary-alb";
/// The container's HTTP port (the one the network layer's cluster security group opens
/// to the load balancer) and the Service's port.
pub const CONTAINER_PORT: i32 = apiary_core::naming::INGESTION_PORT as i32;
pub const SERVICE_PORT: i32 = 80;
pub const READINESS_PATH: &str = "/readyz";
pub const LIVENESS_PATH: &str = "/healthz";
/// Labels every object carries; `app.kubernetes.io/name` also selects the pods.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_DEPLOYMENT: &str = "apiary.dev/deployment";
/// Pod template annotation: the hash of the endpoints ConfigMap, so that a changed
/// endpoint rolls the pods (environment from a ConfigMap is read only at start).
pub const CONFIG_HASH_ANNOTATION: &str = "apiary.dev/config-hash";

/// What the manifests are built from.
#[derive(Debug, Clone)]
pub struct Context {
    pub deployment: String,
    pub region: String,
    pub image: String,
    pub sizing: Sizing,
    /// The ingestion NodePool's disruption budget (`nodes`): the record's
    /// (`cluster.pools.ingestion`, `"0"` when frozen), else [`DISRUPTION_BUDGET`].
    pub disruption_budget: String,
    pub domain: String,
    pub certificate_arn: String,
    /// ACM has issued the certificate. Until it does, the HTTPS Ingress (which makes the
    /// load balancer's listener with it) is left out.
    pub certificate_issued: bool,
    /// The certificate's status as the dns layer last saw it, for the reason given.
    pub certificate_status: String,
    pub cluster_name: String,
    pub node_role_name: String,
    pub vpc_cidr: String,
    pub public_subnets: Vec<SubnetRef>,
    pub private_subnets: Vec<SubnetRef>,
    pub security_groups: SecurityGroups,
    /// The security group EKS made for the cluster, which the system node group's nodes
    /// carry (`layers.cluster.cluster_security_group_id`; None when not recorded).
    pub eks_security_group: Option<String>,
    /// Customer networks are given: an internet-facing ALB limited to them by its
    /// security group. None given: an internal ALB.
    pub internet_facing: bool,
    pub buckets: BTreeMap<String, String>,
    pub databases: DatabasesOutput,
    pub app_key_arn: String,
    /// The key of the nodes' EBS volumes (the NodeClass's `kmsKeyID`).
    pub ebs_key_arn: String,
    /// The Twingate connector's secret (`cluster.access.twingate_secret_arn`): the
    /// connector is built only with one.
    pub twingate_secret_arn: Option<String>,
    /// The deployment's alerts topic (the stack's `AlertTopic`), where Alertmanager
    /// publishes. None outside a stack.
    pub alert_topic_arn: Option<String>,
    /// The managed Prometheus workspace the metrics go to
    /// (`storage.metrics_workspace_arn`); None: the metrics bucket.
    pub metrics_workspace_arn: Option<String>,
    pub tags: Vec<(String, String)>,
    /// The cluster runs EKS Auto Mode (Karpenter, ALB): build the node class and pool,
    /// the ALB's IngressClassParams and pin the pods to the pool. Off only for a plain
    /// cluster reached through a kubeconfig (kind, k3d), which serves none of these.
    pub auto_mode: bool,
}

impl Context {
    pub fn new(spec: &DeploymentSpec, layers: &Layers) -> Result<Context> {
        let cluster = layers.cluster()?;
        let network = layers.network()?;
        let dns = layers.dns()?;
        let storage = layers.storage()?;
        let databases = layers.databases()?;
        let keys = layers.keys()?;
        let node_role_name = cluster
            .node_role_arn
            .rsplit('/')
            .next()
            .filter(|name| !name.is_empty() && cluster.node_role_arn.contains(":role/"))
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "layers.cluster.node_role_arn {:?} is not an IAM role ARN",
                    cluster.node_role_arn
                ))
            })?
            .to_owned();
        if network.private_subnets.is_empty() {
            return Err(Error::invalid_input(
                "layers.network.private_subnets is empty: the node pool needs subnets",
            ));
        }
        if dns.certificate_arn.is_empty() {
            return Err(Error::invalid_input(
                "layers.dns.certificate_arn is empty: the SDK endpoint needs its certificate",
            ));
        }
        Ok(Context {
            deployment: spec.name.clone(),
            region: spec.region.clone(),
            image: spec.workloads.ingestion_image.clone(),
            sizing: spec.sizing(),
            disruption_budget: spec
                .cluster
                .pools
                .disruption_budget(DISRUPTION_BUDGET)
                .to_owned(),
            domain: spec.dns.domain.clone(),
            certificate_arn: dns.certificate_arn.clone(),
            certificate_issued: dns.certificate_issued(),
            certificate_status: dns
                .certificate_status
                .clone()
                .unwrap_or_else(|| "not recorded".to_owned()),
            cluster_name: cluster.cluster_name.clone(),
            node_role_name,
            vpc_cidr: network.vpc_cidr.clone(),
            public_subnets: network.public_subnets.clone(),
            private_subnets: network.private_subnets.clone(),
            security_groups: network.security_groups.clone(),
            eks_security_group: Some(cluster.cluster_security_group_id.clone())
                .filter(|id| !id.is_empty()),
            internet_facing: !spec.network.ingress_cidrs.is_empty(),
            buckets: storage.buckets.clone(),
            databases: databases.clone(),
            app_key_arn: keys.key("app")?.arn.clone(),
            ebs_key_arn: keys.key("ebs")?.arn.clone(),
            twingate_secret_arn: spec.cluster.access.twingate_secret_arn.clone(),
            alert_topic_arn: None,
            metrics_workspace_arn: spec.storage.metrics_workspace_arn.clone(),
            tags: Names::new(&spec.name).tags(Layer::Workloads),
            auto_mode: true,
        })
    }

    /// The subnets the load balancer lives in (and so where its traffic comes from).
    pub fn load_balancer_subnets(&self) -> &[SubnetRef] {
        if self.internet_facing && !self.public_subnets.is_empty() {
            &self.public_subnets
        } else {
            &self.private_subnets
        }
    }

    /// The labels every object carries.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_owned(), APP.to_owned()),
            (LABEL_PART_OF.to_owned(), "honeyhive".to_owned()),
            (LABEL_MANAGED_BY.to_owned(), "apiary".to_owned()),
            (LABEL_DEPLOYMENT.to_owned(), self.deployment.clone()),
        ])
    }

    /// The labels that select the ingestion pods (stable across rollouts).
    pub fn selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(LABEL_NAME.to_owned(), APP.to_owned())])
    }

    pub fn metadata(&self, name: &str, namespace: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: namespace.map(str::to_owned),
            labels: Some(self.labels()),
            ..ObjectMeta::default()
        }
    }

    /// The labels of a platform component's objects: every object's, named `app`.
    pub fn component_labels(&self, app: &str) -> BTreeMap<String, String> {
        let mut labels = self.labels();
        labels.insert(LABEL_NAME.to_owned(), app.to_owned());
        labels
    }

    /// A platform component's object (the connector, the metrics stack).
    pub fn component_metadata(&self, app: &str, name: &str, namespace: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: namespace.map(str::to_owned),
            labels: Some(self.component_labels(app)),
            ..ObjectMeta::default()
        }
    }
}

/// A platform component's namespace, where the API server refuses any pod that breaks
/// the "restricted" Pod Security Standard.
pub fn restricted_namespace(ctx: &Context, name: &str, app: &str) -> Result<Manifest> {
    let mut metadata = ctx.component_metadata(app, name, None);
    metadata.labels.get_or_insert_default().extend([
        (
            "pod-security.kubernetes.io/enforce".to_owned(),
            "restricted".to_owned(),
        ),
        (
            "pod-security.kubernetes.io/enforce-version".to_owned(),
            "latest".to_owned(),
        ),
    ]);
    Manifest::typed(&k8s_openapi::api::core::v1::Namespace {
        metadata,
        ..Default::default()
    })
}

/// Checks that a rendered object is exactly a typed object: a file that parses back into
/// the type and serialises to the same document.
pub type Validate = fn(&Value) -> std::result::Result<(), String>;

/// One object to apply (or render).
#[derive(Debug, Clone)]
pub struct Manifest {
    pub api_version: String,
    pub kind: String,
    /// The resource's URL path segment, e.g. `deployments`.
    pub plural: String,
    pub namespace: Option<String>,
    pub name: String,
    pub body: Value,
    pub validate: Validate,
    /// The JSON Schema of a custom resource, checked when rendering.
    pub schema: Option<&'static str>,
    /// Served only by EKS Auto Mode clusters (a custom resource of Karpenter or EKS).
    pub auto_mode_only: bool,
}

impl Manifest {
    /// A built-in Kubernetes object.
    pub fn typed<K>(object: &K) -> Result<Manifest>
    where
        K: k8s_openapi::Resource
            + k8s_openapi::Metadata<Ty = ObjectMeta>
            + Serialize
            + DeserializeOwned,
    {
        Self::build(
            K::API_VERSION,
            K::KIND,
            K::URL_PATH_SEGMENT,
            object.metadata(),
            object,
            roundtrip::<K>,
        )
    }

    fn build<T: Serialize>(
        api_version: &str,
        kind: &str,
        plural: &str,
        metadata: &ObjectMeta,
        object: &T,
        validate: Validate,
    ) -> Result<Manifest> {
        let name = metadata
            .name
            .clone()
            .ok_or_else(|| Error::fatal(format!("a {kind} was built without a name")))?;
        let body = serde_json::to_value(object)
            .map_err(|e| Error::fatal(format!("{kind} {name} does not serialise: {e}")))?;
        Ok(Manifest {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            namespace: metadata.namespace.clone(),
            name,
            body,
            validate,
            schema: None,
            auto_mode_only: false,
        })
    }

    /// `Kind namespace/name`, or `Kind name` for a cluster-scoped object.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    /// The API group, empty for the core group.
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(group, _)| group)
            .unwrap_or("")
    }

    /// The collection URL path, e.g. `/apis/apps/v1/namespaces/honeyhive/deployments`.
    pub fn collection_path(&self) -> String {
        let prefix = if self.group().is_empty() {
            format!("/api/{}", self.api_version)
        } else {
            format!("/apis/{}", self.api_version)
        };
        match &self.namespace {
            Some(ns) => format!("{prefix}/namespaces/{ns}/{}", self.plural),
            None => format!("{prefix}/{}", self.plural),
        }
    }

    pub fn object_path(&self) -> String {
        format!("{}/{}", self.collection_path(), self.name)
    }

    /// The rendered file name: apply order first, so `kubectl apply -f DIR` keeps it.
    pub fn file_name(&self, index: usize) -> String {
        let scope = self
            .namespace
            .as_deref()
            .map(|ns| format!("{ns}-"))
            .unwrap_or_default();
        format!(
            "{index:02}-{}-{scope}{}.yaml",
            self.kind.to_ascii_lowercase(),
            self.name
        )
    }
}

/// A document is valid for `K` when it parses as `K` and serialises back unchanged: no
/// unknown or misspelt field survives, no field has the wrong type.
pub fn roundtrip<K: Serialize + DeserializeOwned>(
    value: &Value,
) -> std::result::Result<(), String> {
    let typed: K = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    if &back == value {
        Ok(())
    } else {
        Err(format!(
            "does not round-trip through its type: got {back}, expected {value}"
        ))
    }
}

/// The HTTPS Ingress of the SDK endpoint, whether or not [`build`] includes it.
pub fn https_ingress(ctx: &Context) -> Result<Manifest> {
    network::ingress(ctx)
}

/// Every object, in apply order: node capacity first (pods need somewhere to run), then
/// the namespace and what the pods reference, the workload, its policies, the platform
/// components (the optional Twingate connector, the metrics stack), and last the
/// ingress, which makes the load balancer once there is something to send traffic to,
/// and only once ACM has issued the certificate its HTTPS listener needs.
pub fn build(ctx: &Context) -> Result<Vec<Manifest>> {
    let mut objects = vec![
        karpenter::node_class(ctx)?,
        karpenter::node_pool(ctx)?,
        network::network_policy_switch(ctx)?,
        workload::namespace(ctx)?,
        workload::service_account(ctx)?,
        credentials::provider_class(ctx)?,
    ];
    let config_map = workload::config_map(ctx);
    let config_hash = workload::config_hash(&config_map);
    objects.push(Manifest::typed(&config_map)?);
    objects.push(workload::service(ctx)?);
    objects.push(workload::deployment(ctx, &config_hash)?);
    objects.push(workload::autoscaler(ctx)?);
    objects.push(workload::disruption_budget(ctx)?);
    objects.push(network::network_policy(ctx)?);
    objects.extend(connector::build(ctx)?);
    objects.extend(monitoring::build(ctx)?);
    objects.push(network::ingress_class_params(ctx)?);
    objects.push(network::ingress_class(ctx)?);
    if ctx.certificate_issued {
        objects.push(network::ingress(ctx)?);
    }
    // A plain cluster serves neither Auto Mode's resources nor the add-ons and Pod
    // Identity the platform components need: what is marked `auto_mode_only` is left
    // out (and listed as skipped by the step).
    objects.retain(|m| ctx.auto_mode || !m.auto_mode_only);
    Ok(objects)
}

#[cfg(test)]
mod monitoring_tests;
#[cfg(test)]
mod network_tests;
#[cfg(test)]
mod tests;
