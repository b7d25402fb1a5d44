//! The EKS cluster itself, created in EKS Auto Mode.
//!
//! Auto Mode is on with no built-in NodePools: the workloads step brings its own
//! NodeClass and NodePools. EKS rejects a `computeConfig.nodeRoleArn` with an empty
//! `nodePools` list (InvalidParameterException), and creates no access entry for the node
//! role in that case, so the node role is not named here: the workloads' NodeClass names
//! it, and `ensure-nodegroup` gives it its `EC2` access entry.

use apiary_core::error::transient;
use apiary_core::naming::client_token;
use apiary_core::{Error, Result};
use aws_sdk_eks::types::{
    AuthenticationMode, BlockStorage, Cluster, ClusterStatus, ComputeConfigRequest,
    CreateAccessConfigRequest, ElasticLoadBalancing, EncryptionConfig,
    KubernetesNetworkConfigRequest, LogSetup, LogType, Logging, Provider, StorageConfigRequest,
    VpcConfigRequest,
};

use crate::iam::{self, RoleKind};
use crate::{View, Work};

/// Every control-plane log type goes to CloudWatch Logs.
pub const LOG_TYPES: [LogType; 5] = [
    LogType::Api,
    LogType::Audit,
    LogType::Authenticator,
    LogType::ControllerManager,
    LogType::Scheduler,
];

struct Inputs {
    secrets_key_arn: String,
    vpc_id: String,
    subnet_ids: Vec<String>,
    security_group: String,
}

fn inputs(step: &Work<'_>) -> Result<Inputs> {
    let keys = step.layers.keys()?;
    let network = step.layers.network()?;
    let subnet_ids = network.private_subnet_ids();
    if subnet_ids.len() < 2 {
        return Err(Error::invalid_input(format!(
            "layers.network has {} private subnets; EKS needs at least 2 in different AZs",
            subnet_ids.len()
        )));
    }
    let security_group = network.security_groups.cluster.clone();
    if security_group.is_empty() {
        return Err(Error::invalid_input(
            "layers.network.security_groups.cluster is empty",
        ));
    }
    Ok(Inputs {
        secrets_key_arn: keys.key("eks-secrets")?.arn.clone(),
        vpc_id: network.vpc_id.clone(),
        subnet_ids,
        security_group,
    })
}

/// `ensure-cluster`: the three roles, then the cluster.
pub(crate) async fn ensure(step: &Work<'_>, view: &mut View) -> Result<()> {
    let inputs = inputs(step)?;
    let mut cluster_role_id = String::new();
    for kind in RoleKind::ALL {
        let role = iam::ensure(step, kind).await?;
        set_role_arn(view, kind, role.arn());
        if kind == RoleKind::Cluster {
            role.role_id().clone_into(&mut cluster_role_id);
        }
    }
    // Before the cluster: EKS would make it itself, untagged and kept forever.
    crate::log_group::ensure(step).await?;
    let cluster = match describe(step).await? {
        Some(cluster) => reconcile_endpoint_access(step, cluster).await?,
        None => create(step, &inputs, &view.cluster_role_arn, &cluster_role_id).await?,
    };
    if !observe(step, view, &cluster).await? {
        view.cluster_pending(&step.resources.cluster);
    }
    Ok(())
}

/// `status-cluster`: ready once the roles exist and the cluster is ACTIVE.
pub(crate) async fn status(step: &Work<'_>, view: &mut View) -> Result<()> {
    for kind in RoleKind::ALL {
        let name = kind.name(step);
        match iam::find(step, &name).await? {
            Some(role) => set_role_arn(view, kind, role.arn()),
            None => view.missing.push(name),
        }
    }
    match describe(step).await? {
        Some(cluster) => {
            if !observe(step, view, &cluster).await? {
                view.cluster_pending(&step.resources.cluster);
            }
        }
        None => view.missing.push(step.resources.cluster.clone()),
    }
    Ok(())
}

fn set_role_arn(view: &mut View, kind: RoleKind, arn: &str) {
    let slot = match kind {
        RoleKind::Cluster => &mut view.cluster_role_arn,
        RoleKind::Node => &mut view.output.node_role_arn,
        RoleKind::Nodegroup => &mut view.nodegroup_role_arn,
    };
    arn.clone_into(slot);
}

pub(crate) async fn describe(step: &Work<'_>) -> Result<Option<Cluster>> {
    let name = &step.resources.cluster;
    Ok(apiary_core::aws::answer_or_none(
        format!("DescribeCluster {name}"),
        step.deps.eks.describe_cluster().name(name).send(),
        |e| e.is_resource_not_found_exception(),
    )
    .await?
    .and_then(|out| out.cluster))
}

/// The cluster, which must exist and be ACTIVE: what the later actions build on.
/// Anything else is `Apiary.NotReady` (retryable), naming the cluster.
pub(crate) async fn require_active(step: &Work<'_>, view: &mut View) -> Result<Cluster> {
    let name = &step.resources.cluster;
    let cluster = describe(step).await?.ok_or_else(|| Error::NotReady {
        resource: format!("EKS cluster {name}"),
        detail: "it does not exist yet; run ensure-cluster first".to_owned(),
    })?;
    if !observe(step, view, &cluster).await? {
        return Err(Error::NotReady {
            resource: format!("EKS cluster {name}"),
            detail: format!(
                "status {}",
                view.cluster_status.as_deref().unwrap_or("unknown")
            ),
        });
    }
    Ok(cluster)
}

/// Records the cluster, copies its fields into the output and says whether it is
/// ACTIVE. A cluster that failed or is being deleted is an error.
pub(crate) async fn observe(step: &Work<'_>, view: &mut View, cluster: &Cluster) -> Result<bool> {
    let name = &step.resources.cluster;
    step.log
        .resource("eks:cluster", name, cluster.arn())
        .await?;
    let output = &mut view.output;
    output.cluster_arn = cluster.arn().unwrap_or_default().to_owned();
    output.endpoint = cluster.endpoint().unwrap_or_default().to_owned();
    output.certificate_authority = cluster
        .certificate_authority()
        .and_then(|c| c.data())
        .unwrap_or_default()
        .to_owned();
    output.cluster_security_group_id = cluster
        .resources_vpc_config()
        .and_then(|c| c.cluster_security_group_id())
        .unwrap_or_default()
        .to_owned();
    if view.cluster_role_arn.is_empty() {
        view.cluster_role_arn = cluster.role_arn().unwrap_or_default().to_owned();
    }
    let status = cluster.status().cloned();
    view.cluster_status = status.as_ref().map(|s| s.as_str().to_owned());
    match status {
        Some(ClusterStatus::Active) => Ok(true),
        Some(ClusterStatus::Failed) => {
            let issues: Vec<String> = cluster
                .health()
                .map(|h| {
                    h.issues()
                        .iter()
                        .map(|i| {
                            format!(
                                "{}: {}",
                                i.code().map(|c| c.as_str()).unwrap_or("unknown"),
                                i.message().unwrap_or_default()
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            Err(Error::fatal(format!(
                "EKS cluster {name} is FAILED{}; delete it and run provision again",
                if issues.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", issues.join("; "))
                }
            )))
        }
        Some(ClusterStatus::Deleting) => Err(Error::Conflict(format!(
            "EKS cluster {name} is DELETING: a teardown is removing it; run provision again once it is gone"
        ))),
        // CREATING, UPDATING, PENDING, or a status this SDK does not know yet.
        _ => Ok(false),
    }
}

/// The public networks allowed on the endpoint, sorted: `None` for a private endpoint,
/// whose `publicAccessCidrs` EKS keeps but does not use.
fn public_access_cidrs(step: &Work<'_>) -> Option<Vec<String>> {
    let cluster = &step.spec.cluster;
    cluster.public_endpoint.then(|| {
        let mut cidrs = cluster.public_access_cidrs.clone();
        cidrs.sort();
        cidrs.dedup();
        cidrs
    })
}

/// The endpoint settings the spec asks for: always private, public only to the listed
/// networks (the spec refuses a public endpoint without them, and 0.0.0.0/0).
fn endpoint_access(step: &Work<'_>) -> aws_sdk_eks::types::builders::VpcConfigRequestBuilder {
    VpcConfigRequest::builder()
        .endpoint_private_access(true)
        .endpoint_public_access(step.spec.cluster.public_endpoint)
        .set_public_access_cidrs(public_access_cidrs(step))
}

/// Whether the cluster's endpoint access differs from the spec's: the public switch, the
/// private one, and for a public endpoint its networks (compared as sets).
fn endpoint_access_differs(step: &Work<'_>, cluster: &Cluster) -> bool {
    let Some(vpc) = cluster.resources_vpc_config() else {
        return false;
    };
    if vpc.endpoint_public_access() != step.spec.cluster.public_endpoint
        || !vpc.endpoint_private_access()
    {
        return true;
    }
    match public_access_cidrs(step) {
        Some(wanted) => {
            let mut current = vpc.public_access_cidrs().to_vec();
            current.sort();
            current.dedup();
            current != wanted
        }
        None => false,
    }
}

/// Brings an ACTIVE cluster's endpoint access in line with the spec (public endpoint
/// on or off, its networks added or removed) with UpdateClusterConfig. Only the
/// endpoint fields are sent: EKS takes one kind of update per call. The cluster is
/// UPDATING afterwards, which the poll loop waits out. A cluster already being updated
/// is left for the next run.
async fn reconcile_endpoint_access(step: &Work<'_>, cluster: Cluster) -> Result<Cluster> {
    if cluster.status() != Some(&ClusterStatus::Active) || !endpoint_access_differs(step, &cluster)
    {
        return Ok(cluster);
    }
    let name = &step.resources.cluster;
    step.deps
        .eks
        .update_cluster_config()
        .name(name)
        .resources_vpc_config(endpoint_access(step).build())
        .send()
        .await
        .map_err(|e| {
            // Another update still in progress: it clears by itself.
            Error::aws_transient_if(format!("UpdateClusterConfig {name}"), e, |e| {
                e.is_resource_in_use_exception()
            })
        })?;
    step.log.created(&format!("{name}:endpoint-access"));
    Ok(describe(step).await?.unwrap_or(cluster))
}

/// KMS envelope encryption of Kubernetes secrets (on 1.28+ of all API data) with the
/// eks-secrets key. The SDK marks `resources` deprecated because EKS now defaults it; it
/// is sent anyway, so the request (and what an auditor reads in CloudTrail) says exactly
/// what the key encrypts.
#[allow(deprecated)]
pub(crate) fn secrets_encryption(key_arn: &str) -> EncryptionConfig {
    EncryptionConfig::builder()
        .resources("secrets")
        .provider(Provider::builder().key_arn(key_arn).build())
        .build()
}

/// The CreateCluster idempotency token. The incarnation is the VPC the cluster lives in
/// and the cluster role's unique id: a teardown deletes both, so a re-provision gets a
/// new token (EKS would otherwise answer a remembered token with the deleted cluster),
/// while a run repeated after a timeout sends the same one. The rest are the request's
/// parameters.
fn create_token(step: &Work<'_>, inputs: &Inputs, role_arn: &str, role_id: &str) -> String {
    let cluster_spec = &step.spec.cluster;
    let public = cluster_spec.public_endpoint.to_string();
    let public_cidrs = public_access_cidrs(step).unwrap_or_default();
    let mut parts = vec![
        step.names.deployment(),
        inputs.vpc_id.as_str(),
        role_id,
        step.resources.cluster.as_str(),
        cluster_spec.version.as_str(),
        role_arn,
        inputs.secrets_key_arn.as_str(),
        inputs.security_group.as_str(),
        public.as_str(),
    ];
    parts.extend(inputs.subnet_ids.iter().map(String::as_str));
    parts.extend(public_cidrs.iter().map(String::as_str));
    client_token(&parts)
}

async fn create(
    step: &Work<'_>,
    inputs: &Inputs,
    role_arn: &str,
    role_id: &str,
) -> Result<Cluster> {
    let name = &step.resources.cluster;
    let cluster_spec = &step.spec.cluster;
    let logging = Logging::builder()
        .cluster_logging(
            LogSetup::builder()
                .set_types(Some(LOG_TYPES.to_vec()))
                .enabled(true)
                .build(),
        )
        .build();
    match step
        .deps
        .eks
        .create_cluster()
        .name(name)
        .client_request_token(create_token(step, inputs, role_arn, role_id))
        .version(&cluster_spec.version)
        .role_arn(role_arn)
        .resources_vpc_config(
            endpoint_access(step)
                .set_subnet_ids(Some(inputs.subnet_ids.clone()))
                .security_group_ids(&inputs.security_group)
                .build(),
        )
        .encryption_config(secrets_encryption(&inputs.secrets_key_arn))
        .logging(logging)
        .access_config(
            CreateAccessConfigRequest::builder()
                .authentication_mode(AuthenticationMode::Api)
                // Access is granted by explicit, recorded access entries only.
                .bootstrap_cluster_creator_admin_permissions(false)
                .build(),
        )
        .bootstrap_self_managed_addons(false)
        .compute_config(
            ComputeConfigRequest::builder()
                .enabled(true)
                .set_node_pools(Some(Vec::new()))
                .build(),
        )
        .storage_config(
            StorageConfigRequest::builder()
                .block_storage(BlockStorage::builder().enabled(true).build())
                .build(),
        )
        .kubernetes_network_config(
            KubernetesNetworkConfigRequest::builder()
                .elastic_load_balancing(ElasticLoadBalancing::builder().enabled(true).build())
                .build(),
        )
        .set_tags(Some(step.tags("eks").into_iter().collect()))
        .send()
        .await
    {
        Ok(out) => {
            step.log.created(name);
            out.cluster
                .ok_or_else(|| Error::fatal(format!("CreateCluster {name} returned no cluster")))
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            describe(step).await?.ok_or_else(|| {
                Error::Conflict(format!("EKS cluster {name} exists but cannot be described"))
            })
        }
        // IAM is eventually consistent: a role made a moment ago may not be assumable
        // yet. That clears by itself, so it is worth a retry, unlike other bad parameters.
        Err(err)
            if err.as_service_error().is_some_and(|e| {
                e.is_invalid_parameter_exception()
                    && transient::eks_role_not_yet_usable(
                        aws_sdk_eks::error::ProvideErrorMetadata::message(e),
                    )
            }) =>
        {
            Err(Error::NotReady {
                resource: format!("IAM role {}", step.resources.cluster_role),
                detail: "EKS cannot assume it yet (IAM propagation)".to_owned(),
            })
        }
        Err(err) => Err(Error::aws(format!("CreateCluster {name}"), err)),
    }
}
