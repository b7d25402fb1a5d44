//! The managed node group for system workloads, and what its nodes need first.
//!
//! The cluster is created with `bootstrapSelfManagedAddons = false` (Auto Mode brings its
//! own networking, DNS and storage for its nodes), so the node group's plain AL2023 nodes
//! get the VPC CNI, kube-proxy and CoreDNS as EKS managed add-ons before they join.

use apiary_core::error::transient;
use apiary_core::naming::client_token;
use apiary_core::{Error, Result};
use aws_sdk_eks::types::{
    AmiTypes, CapacityTypes, LaunchTemplateSpecification, Nodegroup, NodegroupScalingConfig,
    NodegroupStatus, ResolveConflicts,
};

use crate::{
    Addon, Presence, View, Work, access, control_plane, iam, is_not_implemented, launch_template,
};

/// EKS managed add-ons a node group's nodes need to become Ready.
/// The EKS Pod Identity agent too: Auto Mode's nodes have it built in, the node group's
/// plain nodes do not, and the Fluent Bit pods they run get their role through it.
pub const NODEGROUP_ADDONS: [&str; 4] =
    ["vpc-cni", "kube-proxy", "coredns", "eks-pod-identity-agent"];
/// EKS add-ons the workloads need: the Kubernetes Metrics Server (an EKS community
/// add-on), the source of the CPU and memory figures the ingestion
/// HorizontalPodAutoscaler scales on; without it the autoscaler never scales.
/// The Secrets Store CSI driver with its AWS provider (an AWS add-on) brings the stores'
/// secrets into the ingestion pods as a synced Kubernetes Secret (see the workloads
/// step's `manifests::credentials`).
/// Fluent Bit (an EKS community add-on) ships container and node logs into the logs
/// bucket (see [`LOG_SHIPPER_ADDON`]).
/// kube-state-metrics and the Prometheus node exporter (EKS community add-ons) export
/// the objects' and the nodes' state that the workloads step's Prometheus scrapes and
/// alerts on (pods not ready, pending, restarting; node pressure; disks filling).
pub const CLUSTER_ADDONS: [&str; 5] = [
    "metrics-server",
    SECRETS_STORE_ADDON,
    LOG_SHIPPER_ADDON,
    "kube-state-metrics",
    "prometheus-node-exporter",
];
pub const SECRETS_STORE_ADDON: &str = "aws-secrets-store-csi-driver-provider";
/// The fluent-bit community add-on: its namespace and service account are both
/// `fluent-bit`, which the bootstrap stack's `LogShipperRole` trusts (Pod Identity).
pub const LOG_SHIPPER_ADDON: &str = "fluent-bit";
pub const LOG_SHIPPER_SERVICE_ACCOUNT: &str = "fluent-bit";
/// Where in the logs bucket the cluster's logs go (`LogShipperRole` may write only
/// here): `eks/containers/` and `eks/nodes/`, then `YYYY/MM/DD/HH/`.
pub const LOG_PREFIX: &str = "eks";
/// How often the driver re-reads a mounted secret and updates the synced Secret: a
/// rotation is in the pods' Secret within this (rotate-keys waits for it), then a
/// restart puts it in their environment.
pub use apiary_core::naming::SECRET_ROTATION_POLL;

/// The configuration an add-on is created with (and brought back to when it differs):
/// the CSI driver syncs mounted secrets into Kubernetes Secrets and re-reads them;
/// Fluent Bit writes to `logs_bucket` in `region`. Values follow each upstream chart
/// (the add-on's schema: `aws eks describe-addon-configuration`).
pub fn addon_configuration(
    addon: &str,
    logs_bucket: &str,
    region: &str,
) -> Option<serde_json::Value> {
    match addon {
        SECRETS_STORE_ADDON => Some(serde_json::json!({
            "secrets-store-csi-driver": {
                "syncSecret": {"enabled": true},
                "enableSecretRotation": true,
                "rotationPollInterval": SECRET_ROTATION_POLL,
            }
        })),
        // The chart's default inputs tag container logs `kube.*` (enriched by its
        // kubernetes filter) and the kubelet's journal `host.*`; only the outputs change.
        // One object per upload timeout or 50 MB, gzip, keyed by hour; PutObject only,
        // so the role needs no multipart rights and a crash leaves no upload behind.
        LOG_SHIPPER_ADDON => {
            let output = |tag: &str, kind: &str| {
                format!(
                    "[OUTPUT]\n    Name s3\n    Match {tag}\n    bucket {logs_bucket}\n    region {region}\n    total_file_size 50M\n    upload_timeout 5m\n    use_put_object On\n    compression gzip\n    store_dir /tmp/fluent-bit/s3-{kind}\n    s3_key_format /{LOG_PREFIX}/{kind}/%Y/%m/%d/%H/$UUID.gz\n"
                )
            };
            Some(serde_json::json!({
                "config": {
                    "outputs": format!("{}{}", output("kube.*", "containers"), output("host.*", "nodes"))
                }
            }))
        }
        _ => None,
    }
}

/// What `ensure-nodegroup` makes an add-on with: its configuration and, for Fluent
/// Bit, the Pod Identity association of its service account.
struct AddonPlan {
    configuration: Option<serde_json::Value>,
    pod_identity: Option<aws_sdk_eks::types::AddonPodIdentityAssociations>,
    /// Why a missing add-on is not made (no role to give it).
    missing: Option<String>,
}

fn plan(step: &Work<'_>, addon: &str, account: &str) -> Result<AddonPlan> {
    // The logs bucket's name is the storage layer's rule (`Names::bucket`), not its
    // output: provision builds storage in parallel with the cluster. Until the bucket
    // exists Fluent Bit keeps its chunks and retries.
    let region = &step.spec.region;
    let logs_bucket = step.names.bucket("logs", account, region);
    let (mut pod_identity, mut missing) = (None, None);
    if addon == LOG_SHIPPER_ADDON {
        match &step.deps.log_shipper_role {
            Some(role) => {
                pod_identity = Some(
                    aws_sdk_eks::types::AddonPodIdentityAssociations::builder()
                        .service_account(LOG_SHIPPER_SERVICE_ACCOUNT)
                        .role_arn(role)
                        .build()
                        .map_err(|e| {
                            Error::fatal(format!("the fluent-bit Pod Identity association: {e}"))
                        })?,
                );
            }
            None => {
                missing = Some(
                    "no log shipper role (the bootstrap stack's LogShipperRole, \
                     APIARY_LOG_SHIPPER_ROLE_ARN): Fluent Bit would have no right to write the \
                     logs"
                        .to_owned(),
                );
            }
        }
    }
    Ok(AddonPlan {
        configuration: addon_configuration(addon, &logs_bucket, region),
        pod_identity,
        missing,
    })
}

const AMI_TYPE: AmiTypes = AmiTypes::Al2023X8664Standard;

/// `ensure-nodegroup`: needs an ACTIVE cluster; makes the access entries, the add-ons and
/// the node group.
pub(crate) async fn ensure(step: &Work<'_>, view: &mut View) -> Result<()> {
    let network = step.layers.network()?;
    let subnets = network.private_subnet_ids();
    if subnets.is_empty() {
        return Err(Error::invalid_input(
            "layers.network has no private subnets",
        ));
    }
    control_plane::require_active(step, view).await?;
    let node_role = required_role(step, &step.resources.node_role).await?;
    view.output.node_role_arn = node_role.arn().to_owned();
    let nodegroup_role = required_role(step, &step.resources.nodegroup_role).await?;
    view.nodegroup_role_arn = nodegroup_role.arn().to_owned();

    view.access_entries = Some(access::ensure_all(step, node_role.arn()).await?);
    // The account, for the logs bucket's name: the node role's ARN carries it.
    let account = node_role
        .arn()
        .split(':')
        .nth(4)
        .unwrap_or_default()
        .to_owned();
    let mut addons = Vec::new();
    for addon in NODEGROUP_ADDONS.into_iter().chain(CLUSTER_ADDONS) {
        addons.push(ensure_addon(step, addon, &account).await?);
    }
    view.addons = Some(addons);

    let nodegroup = match describe(step).await? {
        Some(nodegroup) => reconcile_scaling(step, nodegroup).await?,
        None => {
            let template = launch_template::ensure(step).await?;
            create(step, &nodegroup_role, &network.vpc_id, subnets, &template).await?
        }
    };
    observe(step, view, &nodegroup).await
}

/// A changed size preset (or the pools scale-pools recorded) reaches an existing node
/// group: min and max follow the record; the desired size is the one scale-pools
/// recorded, else left to whatever scales it unless it falls outside the new range.
/// Only an ACTIVE group is updated (EKS refuses updates while one is in progress).
async fn reconcile_scaling(step: &Work<'_>, nodegroup: Nodegroup) -> Result<Nodegroup> {
    let sizing = step.spec.sizing();
    let Some(current) = nodegroup.scaling_config() else {
        return Ok(nodegroup);
    };
    let (min, max) = (current.min_size(), current.max_size());
    let recorded_desired = step.spec.cluster.pools.system.desired;
    let desired_as_recorded =
        recorded_desired.is_none_or(|desired| current.desired_size() == Some(desired));
    if nodegroup.status() != Some(&NodegroupStatus::Active)
        || (min == Some(sizing.nodes_min) && max == Some(sizing.nodes_max) && desired_as_recorded)
    {
        return Ok(nodegroup);
    }
    let desired = recorded_desired
        .or(current.desired_size())
        .unwrap_or(sizing.nodes_desired)
        .clamp(sizing.nodes_min, sizing.nodes_max);
    let (cluster, name) = (&step.resources.cluster, &step.resources.nodegroup);
    step.deps
        .eks
        .update_nodegroup_config()
        .cluster_name(cluster)
        .nodegroup_name(name)
        .scaling_config(
            NodegroupScalingConfig::builder()
                .min_size(sizing.nodes_min)
                .desired_size(desired)
                .max_size(sizing.nodes_max)
                .build(),
        )
        .send()
        .await
        .map_err(|e| Error::aws(format!("UpdateNodegroupConfig {cluster} {name}"), e))?;
    step.log.created(&format!("{name}:scaling"));
    // The group is UPDATING now; the poll loop waits for it to be ACTIVE again.
    Ok(describe(step).await?.unwrap_or(nodegroup))
}

/// `status-nodegroup`: ready once the node group is ACTIVE.
pub(crate) async fn status(step: &Work<'_>, view: &mut View) -> Result<()> {
    match control_plane::describe(step).await? {
        Some(cluster) => {
            if !control_plane::observe(step, view, &cluster).await? {
                view.cluster_pending(&step.resources.cluster);
            }
        }
        None => {
            view.missing.push(step.resources.cluster.clone());
            return Ok(());
        }
    }
    if let Some(role) = iam::find(step, &step.resources.node_role).await? {
        view.output.node_role_arn = role.arn().to_owned();
    }
    match describe(step).await? {
        Some(nodegroup) => observe(step, view, &nodegroup).await,
        None => {
            view.missing.push(step.resources.nodegroup.clone());
            Ok(())
        }
    }
}

/// A role `ensure-cluster` made; its absence means that step has not run.
async fn required_role(step: &Work<'_>, name: &str) -> Result<aws_sdk_iam::types::Role> {
    iam::find(step, name).await?.ok_or_else(|| Error::NotReady {
        resource: format!("IAM role {name}"),
        detail: "it does not exist yet; run ensure-cluster first".to_owned(),
    })
}

async fn ensure_addon(step: &Work<'_>, addon: &str, account: &str) -> Result<Addon> {
    let eks = &step.deps.eks;
    let cluster = &step.resources.cluster;
    let plan = plan(step, addon, account)?;
    match eks
        .describe_addon()
        .cluster_name(cluster)
        .addon_name(addon)
        .send()
        .await
    {
        Ok(out) => {
            let found = out.addon;
            step.log
                .resource(
                    "eks:addon",
                    &format!("{cluster}/{addon}"),
                    found.as_ref().and_then(|a| a.addon_arn()),
                )
                .await?;
            let configured = found
                .as_ref()
                .and_then(|a| a.configuration_values())
                .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok());
            if let Some(wanted) = &plan.configuration
                && configured.as_ref() != Some(wanted)
            {
                reconfigure(step, addon, wanted).await?;
            }
            let status = found.and_then(|a| a.status).map(|s| s.as_str().to_owned());
            return Ok(Addon::new(addon, Presence::Present, status));
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) => {}
        Err(err) if is_not_implemented(&err) => {
            return Ok(Addon {
                reason: Some(
                    "the EKS endpoint does not implement add-ons (moto 5.2.5 answers 404); on \
                     AWS this add-on is created"
                        .to_owned(),
                ),
                ..Addon::new(addon, Presence::NotEmulated, None)
            });
        }
        Err(err) => return Err(Error::aws(format!("DescribeAddon {cluster} {addon}"), err)),
    }
    if let Some(reason) = plan.missing {
        return Ok(Addon {
            reason: Some(reason),
            ..Addon::new(addon, Presence::Skipped, None)
        });
    }
    let created = eks
        .create_addon()
        .cluster_name(cluster)
        .addon_name(addon)
        .resolve_conflicts(ResolveConflicts::Overwrite)
        .set_configuration_values(plan.configuration.as_ref().map(|c| c.to_string()))
        .set_pod_identity_associations(plan.pod_identity.map(|p| vec![p]))
        .set_tags(Some(step.tags("addon").into_iter().collect()))
        .send()
        .await;
    let (state, arn, status) = match created {
        Ok(out) => {
            step.log.created(&format!("{cluster}/{addon}"));
            let addon = out.addon;
            (
                Presence::Created,
                addon.as_ref().and_then(|a| a.addon_arn.clone()),
                addon.and_then(|a| a.status).map(|s| s.as_str().to_owned()),
            )
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            (Presence::Present, None, None)
        }
        Err(err) => return Err(Error::aws(format!("CreateAddon {cluster} {addon}"), err)),
    };
    step.log
        .resource("eks:addon", &format!("{cluster}/{addon}"), arn.as_deref())
        .await?;
    Ok(Addon::new(addon, state, status))
}

/// An add-on whose configuration differs from ours (changed by hand, or made before
/// this one was set) gets it back. EKS refuses an update while the add-on is still
/// creating or updating (`ResourceInUseException`): the next provision converges it.
async fn reconfigure(step: &Work<'_>, addon: &str, wanted: &serde_json::Value) -> Result<()> {
    let cluster = &step.resources.cluster;
    let sent = step
        .deps
        .eks
        .update_addon()
        .cluster_name(cluster)
        .addon_name(addon)
        .resolve_conflicts(ResolveConflicts::Overwrite)
        .configuration_values(wanted.to_string())
        .send()
        .await;
    match sent {
        Ok(_) => {
            tracing::info!(
                addon,
                "add-on configuration brought back to the deployment's"
            );
            Ok(())
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            tracing::info!(
                addon,
                "add-on busy; its configuration is converged by the next provision"
            );
            Ok(())
        }
        Err(err) => Err(Error::aws(format!("UpdateAddon {cluster} {addon}"), err)),
    }
}

pub(crate) async fn describe(step: &Work<'_>) -> Result<Option<Nodegroup>> {
    let cluster = &step.resources.cluster;
    let name = &step.resources.nodegroup;
    Ok(apiary_core::aws::answer_or_none(
        format!("DescribeNodegroup {cluster} {name}"),
        step.deps
            .eks
            .describe_nodegroup()
            .cluster_name(cluster)
            .nodegroup_name(name)
            .send(),
        |e| e.is_resource_not_found_exception(),
    )
    .await?
    .and_then(|out| out.nodegroup))
}

/// Creates the node group with an idempotency token made like the cluster's: the VPC and
/// the node group role's unique id (both new after a teardown), then the parameters.
async fn create(
    step: &Work<'_>,
    role: &aws_sdk_iam::types::Role,
    vpc_id: &str,
    subnets: Vec<String>,
    template: &launch_template::TemplateRef,
) -> Result<Nodegroup> {
    let cluster = &step.resources.cluster;
    let name = &step.resources.nodegroup;
    let sizing = step.spec.sizing();
    let role_arn = role.arn();
    let sizes = [sizing.nodes_min, sizing.nodes_desired, sizing.nodes_max].map(|n| n.to_string());
    let mut token = vec![
        step.names.deployment(),
        vpc_id,
        role.role_id(),
        cluster.as_str(),
        name.as_str(),
        role_arn,
        sizing.node_instance_type,
        AMI_TYPE.as_str(),
        template.id.as_str(),
        template.version.as_str(),
    ];
    token.extend(sizes.iter().map(String::as_str));
    token.extend(subnets.iter().map(String::as_str));
    let created = step
        .deps
        .eks
        .create_nodegroup()
        .cluster_name(cluster)
        .nodegroup_name(name)
        .client_request_token(client_token(&token))
        .node_role(role_arn)
        // EKS defaults to the control plane's version; said explicitly so the group is
        // level with the recorded version the upgrade workflow moves one step at a time.
        .version(&step.spec.cluster.version)
        .set_subnets(Some(subnets))
        .instance_types(sizing.node_instance_type)
        .ami_type(AMI_TYPE)
        .capacity_type(CapacityTypes::OnDemand)
        // The root volume (100 GiB gp3, the deployment's ebs key) comes from the template,
        // so no disk size is given here (EKS refuses both).
        .launch_template(
            LaunchTemplateSpecification::builder()
                .id(&template.id)
                .version(&template.version)
                .build(),
        )
        .scaling_config(
            NodegroupScalingConfig::builder()
                .min_size(sizing.nodes_min)
                .desired_size(sizing.nodes_desired)
                .max_size(sizing.nodes_max)
                .build(),
        )
        .labels("apiary.io/pool", "system")
        .set_tags(Some(step.tags("nodegroup").into_iter().collect()))
        .send()
        .await;
    match created {
        Ok(out) => {
            step.log.created(name);
            out.nodegroup.ok_or_else(|| {
                Error::fatal(format!(
                    "CreateNodegroup {cluster} {name} returned no node group"
                ))
            })
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            describe(step).await?.ok_or_else(|| {
                Error::Conflict(format!("node group {name} exists but cannot be described"))
            })
        }
        // A role made or given its policies a moment ago may not have reached EKS yet.
        Err(err) => Err(Error::aws_transient_if(
            format!("CreateNodegroup {cluster} {name}"),
            err,
            |e| {
                e.is_invalid_parameter_exception()
                    && transient::eks_role_not_yet_usable(
                        aws_sdk_eks::error::ProvideErrorMetadata::message(e),
                    )
            },
        )),
    }
}

async fn observe(step: &Work<'_>, view: &mut View, nodegroup: &Nodegroup) -> Result<()> {
    let name = &step.resources.nodegroup;
    step.log
        .resource("eks:nodegroup", name, nodegroup.nodegroup_arn())
        .await?;
    let status = nodegroup.status().cloned();
    view.nodegroup_status = status.as_ref().map(|s| s.as_str().to_owned());
    let issues = || {
        nodegroup
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
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    };
    match status {
        Some(NodegroupStatus::Active) => {}
        Some(
            failed @ (NodegroupStatus::CreateFailed
            | NodegroupStatus::DeleteFailed
            | NodegroupStatus::Degraded),
        ) => {
            return Err(Error::fatal(format!(
                "EKS node group {name} is {}: {}",
                failed.as_str(),
                issues()
            )));
        }
        Some(NodegroupStatus::Deleting) => {
            return Err(Error::Conflict(format!(
                "EKS node group {name} is DELETING: a teardown is removing it; run provision again once it is gone"
            )));
        }
        _ => view.pending.push(format!(
            "EKS node group {name} is {}",
            view.nodegroup_status.as_deref().unwrap_or("unknown")
        )),
    }
    Ok(())
}
