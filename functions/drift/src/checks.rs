//! The comparisons, one resource kind each. Each reads AWS and adds what it compared to
//! `checked` and each difference to `findings`; a resource that is gone is a `missing`
//! finding, never an error. Any other AWS error fails the run (it is read-only, so the
//! workflow's retries are safe).

use apiary_core::outputs::{ClusterOutput, KeyRef, NetworkOutput, StorageOutput};
use apiary_core::step::StepContext;
use apiary_core::store::Resource;
use apiary_core::{Error, Result};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_elasticache::types::TransitEncryptionMode;
use aws_sdk_resourcegroupstagging::types::TagFilter;
use aws_sdk_s3::types::ServerSideEncryption;
use ipnet::Ipv4Net;
use network::security::{
    GroupIds, control_plane_egress, describe_permission, describe_rule, find_group, missing_egress,
    missing_rules, open_to_the_world, other_egress, other_ingress, wanted_ingress,
};
use serde::Serialize;

use crate::{Deps, DriftAction};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingKind {
    /// Recorded, and AWS no longer has it.
    Missing,
    /// AWS has it, not as recorded.
    Changed,
    /// AWS has it, tagged as this deployment's, and nothing recorded it: made by hand
    /// with the deployment's tags, or left by a run that never recorded it.
    Unrecorded,
}

/// One difference between the record and AWS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `security group sg-1 (alb)`, `S3 bucket apiary-demo-logs-...`.
    pub resource: String,
    pub kind: FindingKind,
    /// `ingress`, `default encryption`, `endpoint public access`, ...
    pub setting: String,
    pub wanted: String,
    pub found: String,
    /// It opens or unprotects something: the stack's `drift-security` alarm fires.
    pub security: bool,
    /// A provision changes it back; `{"repair": true}` starts one only for these.
    pub repairable: bool,
}

/// Settings a provision never changes on an existing resource: encryption chosen at
/// creation (Redis's AUTH token with it), PostgreSQL's public accessibility (never
/// modified after creation), and a key's state (a disabled key is the customer's kill switch; one pending deletion makes
/// the keys layer refuse).
const NOT_REPAIRABLE: [&str; 8] = [
    "storage encryption",
    "storage encryption key",
    "secrets encryption",
    "publicly accessible",
    "key state",
    // Redis: chosen at creation; the databases step never modifies them.
    "at-rest encryption",
    "in-transit encryption",
    "AUTH token",
];

impl Finding {
    pub fn sentence(&self) -> String {
        match self.kind {
            FindingKind::Missing => format!("{} is missing", self.resource),
            FindingKind::Unrecorded => format!(
                "{} is tagged as this deployment's and recorded nowhere",
                self.resource
            ),
            FindingKind::Changed => format!(
                "{} {}: wanted {}, found {}{}",
                self.resource,
                self.setting,
                self.wanted,
                self.found,
                if self.security { " (security)" } else { "" }
            ),
        }
    }
}

#[derive(Default)]
struct Found {
    checked: Vec<String>,
    findings: Vec<Finding>,
}

impl Found {
    fn missing(&mut self, resource: &str) {
        self.findings.push(Finding {
            resource: resource.to_owned(),
            kind: FindingKind::Missing,
            setting: "exists".to_owned(),
            wanted: "present".to_owned(),
            found: "absent".to_owned(),
            security: false,
            // A new key would not decrypt what the old one protected.
            repairable: !resource.starts_with("KMS key"),
        });
    }

    fn unrecorded(&mut self, arn: &str, tag: &str) {
        self.findings.push(Finding {
            resource: arn.to_owned(),
            kind: FindingKind::Unrecorded,
            setting: "inventory".to_owned(),
            wanted: "recorded by the step that made it".to_owned(),
            found: format!("tagged {tag}, not recorded"),
            security: false,
            // A provision never deletes; teardown's sweep by tag removes it.
            repairable: false,
        });
    }

    fn changed(
        &mut self,
        resource: &str,
        setting: &str,
        wanted: &str,
        found: &str,
        security: bool,
    ) {
        self.findings.push(Finding {
            resource: resource.to_owned(),
            kind: FindingKind::Changed,
            setting: setting.to_owned(),
            wanted: wanted.to_owned(),
            found: found.to_owned(),
            security,
            repairable: !NOT_REPAIRABLE.contains(&setting),
        });
    }
}

pub(crate) async fn run(
    deps: &Deps,
    step: &StepContext<'_, DriftAction>,
) -> Result<(Vec<String>, Vec<Finding>)> {
    let mut found = Found::default();
    let layers = &step.layers;
    if let Some(network) = &layers.network {
        security_groups(deps, step, network, &mut found).await?;
        control_plane_egress_rules(deps, network, &mut found).await?;
    }
    if let Some(keys) = &layers.keys {
        let s3_key = keys.keys.get("s3");
        if let Some(storage) = &layers.storage {
            buckets(deps, storage, s3_key, &mut found).await?;
        }
        for (scope, key) in &keys.keys {
            key_state(deps, step, scope, key, &mut found).await?;
        }
    }
    if let Some(cluster) = &layers.cluster {
        let secrets_key = layers
            .keys
            .as_ref()
            .and_then(|k| k.keys.get("eks-secrets"))
            .map(|k| k.arn.clone());
        eks(deps, step, cluster, secrets_key.as_deref(), &mut found).await?;
    }
    let key = |scope: &str| layers.keys.as_ref().and_then(|k| k.keys.get(scope));
    if let Some(databases) = &layers.databases {
        if let Some(postgres) = &databases.postgres {
            database(deps, &postgres.identifier, &mut found).await?;
        }
        if let Some(documentdb) = &databases.documentdb {
            document_db(&deps.rds, &documentdb.identifier, key("docdb"), &mut found).await?;
        }
        if let Some(redis) = &databases.redis {
            redis_group(
                &deps.elasticache,
                &redis.identifier,
                key("redis"),
                &mut found,
            )
            .await?;
        }
    }
    unrecorded(deps, step, &mut found).await?;
    Ok((found.checked, found.findings))
}

/// The control plane's group lets the in-VPC functions send only what they need
/// (`network::security::control_plane_egress`); only Apiary writes its egress, so a rule
/// it lacks is drift and any other rule (EC2's default allow-all put back, say) widens
/// what those functions can reach.
async fn control_plane_egress_rules(
    deps: &Deps,
    network: &NetworkOutput,
    found: &mut Found,
) -> Result<()> {
    let group_id = network.security_groups.control_plane.as_str();
    if group_id.is_empty() {
        return Ok(());
    }
    let vpc_cidr: Ipv4Net = network.vpc_cidr.parse().map_err(|e| {
        Error::fatal(format!(
            "the network layer's vpc_cidr {:?} does not read: {e}",
            network.vpc_cidr
        ))
    })?;
    let resource = format!("security group {group_id} (control-plane egress)");
    found.checked.push(resource.clone());
    // The ingress comparison already reports the group missing.
    let Some(group) = security_group(deps, group_id).await? else {
        return Ok(());
    };
    let wanted = control_plane_egress(vpc_cidr);
    for rule in missing_egress(&group, &wanted) {
        let to = describe_rule(rule).replacen(" from ", " to ", 1);
        found.changed(&resource, "egress", &to, "absent", false);
    }
    for extra in other_egress(&group, &wanted) {
        let shown = describe_permission(&extra).replacen(" from ", " to ", 1);
        found.changed(&resource, "egress", "no such rule", &shown, true);
        // A provision revokes EC2's default allow-all rule (IPv4) only; any other extra
        // rule stays until a person removes it.
        let allow_all = extra.ip_protocol() == Some("-1")
            && extra
                .ip_ranges()
                .iter()
                .any(|r| r.cidr_ip() == Some("0.0.0.0/0"));
        if let Some(last) = found.findings.last_mut() {
            last.repairable = allow_all;
        }
    }
    Ok(())
}

/// Tags the controllers write on what they make for the cluster (load balancers, their
/// groups, nodes, volumes): such a resource is the cluster's, not a step's, and nothing
/// records it by design (teardown sweeps it by these tags).
const CONTROLLER_TAGS: [&str; 8] = [
    "elbv2.k8s.aws/cluster",
    "eks:eks-cluster-name",
    "eks:cluster-name",
    "karpenter.sh/nodepool",
    "ingress.eks.amazonaws.com/",
    "service.eks.amazonaws.com/",
    "kubernetes.io/cluster/",
    "cluster.k8s.amazonaws.com/name",
];

/// `apiary:role` tags of what belongs to a recorded parent and goes with it, recorded
/// under the parent or by another name than its ARN: the cluster's access entries (the
/// control plane's are recorded by principal, the operators' listed in the cluster
/// layer's output) and add-ons, and the EBS volumes EC2 makes for the system nodes from
/// the launch template's tags.
const PART_OF_A_RECORDED_PARENT: [&str; 5] = [
    "access-entry",
    "operator-admin",
    "operator-viewer",
    "addon",
    "node-volume",
];

/// ARN parts of what the backup and restore-test workflows make: recorded in the
/// backup catalogue (and pruned by it), not in the inventory.
const BACKUP_ARNS: [&str; 3] = [":snapshot:", ":cluster-snapshot:", ":backup:"];

/// The tag of the restore test's scratch copies (databases, their group and secrets),
/// which the next run's cleanup finds by it.
const SCRATCH_TAG: &str = "apiary:scratch";

/// Whether `arn` is made and kept by a step under another name than its own: the data
/// plane's alarms (`apiary-<name>-dp-*`, put and reported stale by `ensure-alarms`,
/// deleted by name by teardown) and the nodes of a recorded Redis replication group
/// (`<group>-<nnn>`, which ElastiCache tags as the group).
fn recorded_by_parent(arn: &str, deployment: &str, inventory: &[Resource]) -> bool {
    if let Some(alarm) = arn.split(":alarm:").nth(1)
        && arn.contains(":cloudwatch:")
    {
        return alarm.starts_with(&format!("apiary-{deployment}-dp-"));
    }
    if let Some(node) = arn.split(":cluster:").nth(1)
        && arn.contains(":elasticache:")
        && let Some((group, number)) = node.rsplit_once('-')
    {
        return !number.is_empty()
            && number.chars().all(|c| c.is_ascii_digit())
            && inventory
                .iter()
                .any(|r| r.kind == "elasticache:replication-group" && r.id == group);
    }
    false
}

/// Everything the Resource Groups Tagging API lists with the deployment's tag, against
/// the inventory: what nothing recorded is reported `unrecorded`. The API is eventually
/// consistent (a just-made resource may be missing from it, a just-deleted one still
/// listed for about an hour), so one run's finding is a lead for a person, never an
/// action.
async fn unrecorded(
    deps: &Deps,
    step: &StepContext<'_, DriftAction>,
    found: &mut Found,
) -> Result<()> {
    let deployment = step.names.deployment();
    let inventory = deps.recorder.inventory(deployment).await?;
    let tag = format!("{}={deployment}", apiary_core::naming::TAG_DEPLOYMENT);
    found.checked.push(format!("resources tagged {tag}"));
    let filter = TagFilter::builder()
        .key(apiary_core::naming::TAG_DEPLOYMENT)
        .values(deployment)
        .build();
    let mut pages = deps
        .tagging
        .get_resources()
        .tag_filters(filter)
        .into_paginator()
        .send();
    while let Some(page) = pages
        .try_next()
        .await
        .map_err(|e| Error::aws("GetResources", e))?
    {
        for mapping in page.resource_tag_mapping_list() {
            let Some(arn) = mapping.resource_arn() else {
                continue;
            };
            let explained = mapping.tags().iter().any(|t| {
                CONTROLLER_TAGS.iter().any(|c| t.key().starts_with(c))
                    || t.key() == SCRATCH_TAG
                    || (t.key() == apiary_core::naming::TAG_ROLE
                        && PART_OF_A_RECORDED_PARENT.contains(&t.value()))
            });
            if explained
                || BACKUP_ARNS.iter().any(|b| arn.contains(b))
                || recorded_by_parent(arn, deployment, &inventory)
                || inventory.iter().any(|r| r.is(arn))
            {
                continue;
            }
            found.unrecorded(arn, &tag);
        }
    }
    Ok(())
}

async fn security_groups(
    deps: &Deps,
    step: &StepContext<'_, DriftAction>,
    network: &NetworkOutput,
    found: &mut Found,
) -> Result<()> {
    let vpc_cidr: Ipv4Net = network.vpc_cidr.parse().map_err(|e| {
        Error::fatal(format!(
            "the network layer's vpc_cidr {:?} does not read: {e}",
            network.vpc_cidr
        ))
    })?;
    // The load balancer admits the NAT gateways' addresses when it faces customer
    // networks: read them as provision does.
    let mut nat_ips = Vec::new();
    if !step.spec.ingress_cidrs()?.is_empty() {
        for id in &network.nat_gateway_ids {
            let described = deps
                .ec2
                .describe_nat_gateways()
                .nat_gateway_ids(id)
                .send()
                .await;
            match described {
                // Its first public address, as provision admits it.
                Ok(out) => nat_ips.extend(out.nat_gateways().iter().filter_map(|nat| {
                    nat.nat_gateway_addresses()
                        .iter()
                        .find_map(|a| a.public_ip())
                        .map(str::to_owned)
                })),
                Err(err) if code_is(&err, "NatGatewayNotFound") => {
                    found.missing(&format!("NAT gateway {id}"));
                }
                Err(err) => return Err(Error::aws(format!("DescribeNatGateways {id}"), err)),
            }
        }
    }
    let groups = &network.security_groups;
    // The interface endpoints' group is not in the layer's output: found by its tags, as
    // provision finds it. Gone while the layer recorded endpoints: missing.
    let endpoints = if network.endpoints.is_empty() {
        None
    } else {
        let group = find_group(&deps.ec2, &step.names, &network.vpc_id, "endpoints")
            .await?
            .and_then(|g| g.group_id().map(str::to_owned));
        if group.is_none() {
            found.missing(&format!("security group (endpoints) of {}", network.vpc_id));
        }
        group
    };
    let ids = GroupIds {
        alb: &groups.alb,
        cluster: &groups.cluster,
        databases: &groups.databases,
        endpoints: endpoints.as_deref(),
        control_plane: &groups.control_plane,
    };
    for wanted in wanted_ingress(&step.spec, vpc_cidr, &nat_ips, &ids)? {
        let resource = format!("security group {} ({})", wanted.group_id, wanted.role);
        found.checked.push(resource.clone());
        let Some(group) = security_group(deps, wanted.group_id).await? else {
            found.missing(&resource);
            continue;
        };
        for rule in missing_rules(&group, &wanted.rules) {
            found.changed(&resource, "ingress", &describe_rule(rule), "absent", false);
        }
        for extra in other_ingress(&group, &wanted.rules) {
            // On the cluster's group EKS and the load balancer controller add their own
            // rules; only one open to the internet is drift there.
            if wanted.only_apiary || open_to_the_world(&extra) {
                found.changed(
                    &resource,
                    "ingress",
                    "no such rule",
                    &describe_permission(&extra),
                    true,
                );
                // Provision revokes other ingress only on the load balancer's group.
                if let Some(last) = found.findings.last_mut() {
                    last.repairable = wanted.revoke_others;
                }
            }
        }
    }
    Ok(())
}

/// The group `group_id`, `None` when EC2 no longer has it.
async fn security_group(
    deps: &Deps,
    group_id: &str,
) -> Result<Option<aws_sdk_ec2::types::SecurityGroup>> {
    let described = deps
        .ec2
        .describe_security_groups()
        .group_ids(group_id)
        .send()
        .await;
    match described {
        Ok(out) => Ok(out.security_groups().first().cloned()),
        Err(err) if code_is(&err, "InvalidGroup.NotFound") => Ok(None),
        Err(err) => Err(Error::aws(
            format!("DescribeSecurityGroups {group_id}"),
            err,
        )),
    }
}

fn code_is<E: ProvideErrorMetadata>(err: &E, code: &str) -> bool {
    err.code() == Some(code)
}

/// Whether `found` names `key` (EKS and S3 give back the ARN, a key id or an alias).
fn names_key(found: &str, key: &KeyRef) -> bool {
    found == key.arn
        || found == key.key_id
        || found == key.alias
        || found.ends_with(&format!("/{}", key.key_id))
}

async fn buckets(
    deps: &Deps,
    storage: &StorageOutput,
    s3_key: Option<&KeyRef>,
    found: &mut Found,
) -> Result<()> {
    let mut buckets: Vec<(&str, &str, bool)> = storage
        .buckets
        .iter()
        .map(|(purpose, name)| (purpose.as_str(), name.as_str(), true))
        .collect();
    if !storage.access_logs_bucket.is_empty() {
        buckets.push(("access-logs", storage.access_logs_bucket.as_str(), false));
    }
    for (purpose, bucket, kms) in buckets {
        let resource = format!("S3 bucket {bucket} ({purpose})");
        found.checked.push(resource.clone());
        let encryption = deps.s3.get_bucket_encryption().bucket(bucket).send().await;
        let rule = match encryption {
            Ok(out) => out
                .server_side_encryption_configuration()
                .and_then(|c| c.rules().first())
                .and_then(|r| r.apply_server_side_encryption_by_default())
                .map(|d| {
                    (
                        d.sse_algorithm().clone(),
                        d.kms_master_key_id().map(str::to_owned),
                    )
                }),
            Err(err) if code_is(&err, "NoSuchBucket") => {
                found.missing(&resource);
                continue;
            }
            Err(err) if code_is(&err, "ServerSideEncryptionConfigurationNotFoundError") => None,
            Err(err) => return Err(Error::aws(format!("GetBucketEncryption {bucket}"), err)),
        };
        let shown = match &rule {
            Some((algorithm, Some(key))) => format!("{} with {key}", algorithm.as_str()),
            Some((algorithm, None)) => algorithm.as_str().to_owned(),
            None => "none".to_owned(),
        };
        match (kms, s3_key) {
            (true, Some(key)) => {
                let ok = matches!(&rule, Some((ServerSideEncryption::AwsKms, Some(id))) if names_key(id, key));
                if !ok {
                    let wanted = format!("aws:kms with {}", key.arn);
                    found.changed(&resource, "default encryption", &wanted, &shown, true);
                }
            }
            (false, _) => {
                if !matches!(&rule, Some((ServerSideEncryption::Aes256, _))) {
                    found.changed(
                        &resource,
                        "default encryption",
                        "AES256 (SSE-S3)",
                        &shown,
                        true,
                    );
                }
            }
            (true, None) => {}
        }
        let block = deps
            .s3
            .get_public_access_block()
            .bucket(bucket)
            .send()
            .await;
        let blocked = match block {
            Ok(out) => out.public_access_block_configuration().map(|c| {
                [
                    c.block_public_acls(),
                    c.ignore_public_acls(),
                    c.block_public_policy(),
                    c.restrict_public_buckets(),
                ]
            }),
            Err(err) if code_is(&err, "NoSuchPublicAccessBlockConfiguration") => None,
            Err(err) => return Err(Error::aws(format!("GetPublicAccessBlock {bucket}"), err)),
        };
        if blocked != Some([Some(true); 4]) {
            let shown = match blocked {
                Some(flags) => format!("{flags:?}"),
                None => "none".to_owned(),
            };
            found.changed(
                &resource,
                "Block Public Access",
                "all four settings on",
                &shown,
                true,
            );
        }
        if purpose == "backups" {
            let versioning = match deps.s3.get_bucket_versioning().bucket(bucket).send().await {
                Ok(versioning) => versioning,
                // moto answers GetBucketVersioning with a root element the SDK does not
                // parse (`GetBucketVersioningResponse`): no code, only against it.
                Err(err) if deps.emulator && err.code().is_none() => {
                    found.checked.push(format!(
                        "{resource}: versioning not read (the local emulator's answer does \
                         not parse)"
                    ));
                    continue;
                }
                Err(err) => return Err(Error::aws(format!("GetBucketVersioning {bucket}"), err)),
            };
            let status = versioning.status().map(|s| s.as_str().to_owned());
            if status.as_deref() != Some("Enabled") {
                found.changed(
                    &resource,
                    "versioning",
                    "Enabled",
                    status.as_deref().unwrap_or("never enabled"),
                    true,
                );
            }
        }
    }
    Ok(())
}

async fn key_state(
    deps: &Deps,
    step: &StepContext<'_, DriftAction>,
    scope: &str,
    key: &KeyRef,
    found: &mut Found,
) -> Result<()> {
    let resource = format!("KMS key {} ({scope})", key.key_id);
    found.checked.push(resource.clone());
    let described = deps.kms.describe_key().key_id(&key.arn).send().await;
    let metadata = match described {
        Ok(out) => out.key_metadata,
        Err(err) if code_is(&err, "NotFoundException") => None,
        Err(err) => return Err(Error::aws(format!("DescribeKey {}", key.key_id), err)),
    };
    let Some(metadata) = metadata else {
        found.missing(&resource);
        return Ok(());
    };
    let state = metadata
        .key_state()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default();
    if state != "Enabled" {
        // A disabled key or one pending deletion is the customer's kill switch or a
        // mistake; either way the data it protects is unreadable: the keys-check
        // decides what to do, this only reports it.
        found.changed(&resource, "key state", "Enabled", &state, true);
        return Ok(());
    }
    let rotation = deps
        .kms
        .get_key_rotation_status()
        .key_id(&key.arn)
        .send()
        .await
        .map_err(|e| Error::aws(format!("GetKeyRotationStatus {}", key.key_id), e))?;
    if !rotation.key_rotation_enabled() {
        found.changed(&resource, "automatic rotation", "on", "off", true);
    }
    key_policy(deps, step, scope, key, &resource, found).await
}

/// The key's policy against the one the keys layer writes for its scope (compared as
/// JSON, as the keys layer does): who may use, grant and change the key. Only the
/// scopes the keys layer makes in the deployment's region; a DR-region key has its own.
async fn key_policy(
    deps: &Deps,
    step: &StepContext<'_, DriftAction>,
    scope: &str,
    key: &KeyRef,
    resource: &str,
    found: &mut Found,
) -> Result<()> {
    let Some((_, service)) = keys::SCOPES.iter().find(|(s, _)| *s == scope) else {
        return Ok(());
    };
    // arn:<partition>:kms:<region>:<account>:key/<id>
    let parts: Vec<&str> = key.arn.split(':').collect();
    let (Some(region), Some(account)) = (parts.get(3), parts.get(4)) else {
        return Ok(());
    };
    if *region != step.spec.region {
        return Ok(());
    }
    let wanted = keys::key_policy_for(account, region, scope, *service, &step.names);
    let current = deps
        .kms
        .get_key_policy()
        .key_id(&key.arn)
        .policy_name("default")
        .send()
        .await
        .map_err(|e| Error::aws(format!("GetKeyPolicy {}", key.key_id), e))?;
    let parse = |text: &str| serde_json::from_str::<serde_json::Value>(text).ok();
    if current.policy().and_then(parse) != parse(&wanted) {
        found.changed(
            resource,
            "key policy",
            "the policy the keys layer writes",
            "another policy (GetKeyPolicy shows it)",
            true,
        );
    }
    Ok(())
}

async fn eks(
    deps: &Deps,
    step: &StepContext<'_, DriftAction>,
    cluster: &ClusterOutput,
    secrets_key: Option<&str>,
    found: &mut Found,
) -> Result<()> {
    let name = &cluster.cluster_name;
    let resource = format!("EKS cluster {name}");
    found.checked.push(resource.clone());
    let described = deps.eks.describe_cluster().name(name).send().await;
    let cluster = match described {
        Ok(out) => out.cluster,
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            None
        }
        Err(err) => return Err(Error::aws(format!("DescribeCluster {name}"), err)),
    };
    let Some(cluster) = cluster else {
        found.missing(&resource);
        return Ok(());
    };
    let spec = &step.spec.cluster;
    if let Some(vpc) = cluster.resources_vpc_config() {
        if vpc.endpoint_public_access() != spec.public_endpoint {
            found.changed(
                &resource,
                "endpoint public access",
                &spec.public_endpoint.to_string(),
                &vpc.endpoint_public_access().to_string(),
                true,
            );
        } else if spec.public_endpoint {
            let mut wanted = spec.public_access_cidrs.clone();
            wanted.sort();
            wanted.dedup();
            let mut current = vpc.public_access_cidrs().to_vec();
            current.sort();
            current.dedup();
            if current != wanted {
                found.changed(
                    &resource,
                    "endpoint public access networks",
                    &wanted.join(", "),
                    &current.join(", "),
                    true,
                );
            }
        }
        if !vpc.endpoint_private_access() {
            found.changed(&resource, "endpoint private access", "true", "false", false);
        }
    }
    if let Some(key) = secrets_key {
        let encrypted = cluster.encryption_config().iter().any(|c| {
            c.provider()
                .and_then(|p| p.key_arn())
                .is_some_and(|arn| arn == key)
        });
        if !encrypted {
            found.changed(
                &resource,
                "secrets encryption",
                &format!("with {key}"),
                "not with that key",
                true,
            );
        }
    }
    Ok(())
}

async fn database(deps: &Deps, identifier: &str, found: &mut Found) -> Result<()> {
    let resource = format!("RDS instance {identifier}");
    found.checked.push(resource.clone());
    let instance = apiary_core::aws::answer_or_none(
        format!("DescribeDBInstances {identifier}"),
        deps.rds
            .describe_db_instances()
            .db_instance_identifier(identifier)
            .send(),
        |e| e.is_db_instance_not_found_fault(),
    )
    .await?
    .and_then(|out| out.db_instances().first().cloned());
    let Some(instance) = instance else {
        found.missing(&resource);
        return Ok(());
    };
    expect_flag(
        found,
        &resource,
        &[
            ("storage encryption", true, instance.storage_encrypted()),
            ("deletion protection", true, instance.deletion_protection()),
            ("publicly accessible", false, instance.publicly_accessible()),
        ],
    );
    Ok(())
}

/// A boolean setting that must be `wanted`: a `changed` finding when it is not (or
/// when AWS did not say).
fn expect_flag(found: &mut Found, resource: &str, settings: &[(&str, bool, Option<bool>)]) {
    for (setting, wanted, actual) in settings {
        if *actual != Some(*wanted) {
            let shown = actual
                .map(|a| a.to_string())
                .unwrap_or_else(|| "unknown".to_owned());
            found.changed(resource, setting, &wanted.to_string(), &shown, true);
        }
    }
}

/// The key a store's data is encrypted with, against the deployment's key for it.
fn expect_key(found: &mut Found, resource: &str, actual: Option<&str>, key: Option<&KeyRef>) {
    if let Some(key) = key
        && !actual.is_some_and(|a| names_key(a, key))
    {
        found.changed(
            resource,
            "storage encryption key",
            &key.arn,
            actual.unwrap_or("none"),
            true,
        );
    }
}

/// The DocumentDB cluster, through the RDS API (DocumentDB's management API is RDS's):
/// encrypted with the deployment's `docdb` key, deletion protection on.
async fn document_db(
    rds: &aws_sdk_rds::Client,
    identifier: &str,
    key: Option<&KeyRef>,
    found: &mut Found,
) -> Result<()> {
    let resource = format!("DocumentDB cluster {identifier}");
    found.checked.push(resource.clone());
    let cluster = apiary_core::aws::answer_or_none(
        format!("DescribeDBClusters {identifier}"),
        rds.describe_db_clusters()
            .db_cluster_identifier(identifier)
            .send(),
        |e| e.is_db_cluster_not_found_fault(),
    )
    .await?
    .and_then(|out| out.db_clusters().first().cloned());
    let Some(cluster) = cluster else {
        found.missing(&resource);
        return Ok(());
    };
    expect_flag(
        found,
        &resource,
        &[
            ("storage encryption", true, cluster.storage_encrypted()),
            ("deletion protection", true, cluster.deletion_protection()),
        ],
    );
    if cluster.storage_encrypted() == Some(true) {
        expect_key(found, &resource, cluster.kms_key_id(), key);
    }
    // Deletion protection is put back by the databases step (ModifyDBCluster); the
    // encryption and its key, chosen at creation, are not (NOT_REPAIRABLE).
    Ok(())
}

/// The Redis replication group: encrypted at rest with the deployment's `redis` key, in
/// transit (TLS only), and behind an AUTH token.
async fn redis_group(
    elasticache: &aws_sdk_elasticache::Client,
    identifier: &str,
    key: Option<&KeyRef>,
    found: &mut Found,
) -> Result<()> {
    let resource = format!("Redis replication group {identifier}");
    found.checked.push(resource.clone());
    let group = apiary_core::aws::answer_or_none(
        format!("DescribeReplicationGroups {identifier}"),
        elasticache
            .describe_replication_groups()
            .replication_group_id(identifier)
            .send(),
        |e| e.is_replication_group_not_found_fault(),
    )
    .await?
    .and_then(|out| out.replication_groups().first().cloned());
    let Some(group) = group else {
        found.missing(&resource);
        return Ok(());
    };
    expect_flag(
        found,
        &resource,
        &[
            (
                "at-rest encryption",
                true,
                group.at_rest_encryption_enabled(),
            ),
            (
                // `preferred` mode (on the way to turning TLS off) still says enabled
                // but accepts plaintext: only `required` counts; an engine too old to
                // report a mode has TLS required whenever it is enabled.
                "in-transit encryption",
                true,
                group.transit_encryption_enabled().map(|on| {
                    on && group
                        .transit_encryption_mode()
                        .is_none_or(|mode| *mode == TransitEncryptionMode::Required)
                }),
            ),
            ("AUTH token", true, group.auth_token_enabled()),
        ],
    );
    if group.at_rest_encryption_enabled() == Some(true) {
        expect_key(found, &resource, group.kms_key_id(), key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> KeyRef {
        KeyRef {
            key_id: "1234abcd-12ab-34cd-56ef-1234567890ab".into(),
            arn: "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                .into(),
            alias: "alias/apiary/demo/s3".into(),
        }
    }

    #[test]
    fn alarms_and_redis_nodes_are_recorded_through_what_made_them() {
        let group = Resource {
            layer: "databases".into(),
            kind: "elasticache:replication-group".into(),
            id: "apiary-demo-redis".into(),
            arn: None,
        };
        let inventory = [group];
        let node = |id: &str| format!("arn:aws:elasticache:us-west-2:123456789012:cluster:{id}");
        assert!(recorded_by_parent(
            &node("apiary-demo-redis-002"),
            "demo",
            &inventory
        ));
        assert!(!recorded_by_parent(
            &node("apiary-demo-redis-x"),
            "demo",
            &inventory
        ));
        assert!(!recorded_by_parent(
            &node("apiary-other-002"),
            "demo",
            &inventory
        ));
        assert!(!recorded_by_parent(
            &node("apiary-demo-redis-002"),
            "demo",
            &[]
        ));
        let alarm = |name: &str| format!("arn:aws:cloudwatch:us-west-2:123456789012:alarm:{name}");
        assert!(recorded_by_parent(
            &alarm("apiary-demo-dp-postgres-cpu"),
            "demo",
            &[]
        ));
        assert!(!recorded_by_parent(
            &alarm("apiary-demo-by-hand"),
            "demo",
            &[]
        ));
        assert!(!recorded_by_parent(
            &alarm("apiary-demo-eu-dp-postgres-cpu"),
            "demo",
            &[]
        ));
    }

    #[test]
    fn a_key_is_named_by_its_arn_id_or_alias_and_no_other() {
        let key = key();
        for found in [key.arn.as_str(), key.key_id.as_str(), key.alias.as_str()] {
            assert!(names_key(found, &key), "{found}");
        }
        assert!(!names_key(
            "arn:aws:kms:us-west-2:123456789012:key/99999999-0000-0000-0000-000000000000",
            &key
        ));
        assert!(!names_key("alias/aws/s3", &key));
    }

    #[test]
    fn a_finding_reads_as_a_sentence() {
        let mut found = Found::default();
        found.missing("S3 bucket b (logs)");
        found.changed(
            "security group sg-1 (alb)",
            "ingress",
            "no such rule",
            "tcp 22 from 0.0.0.0/0",
            true,
        );
        assert_eq!(
            found.findings[0].sentence(),
            "S3 bucket b (logs) is missing"
        );
        assert_eq!(
            found.findings[1].sentence(),
            "security group sg-1 (alb) ingress: wanted no such rule, found tcp 22 from 0.0.0.0/0 (security)"
        );
        assert_eq!(
            serde_json::to_value(&found.findings[0]).unwrap()["kind"],
            "missing"
        );
        found.unrecorded(
            "arn:aws:ec2:us-west-2:123456789012:security-group/sg-9",
            "apiary:deployment=demo",
        );
        let unrecorded = &found.findings[2];
        assert_eq!(
            unrecorded.sentence(),
            "arn:aws:ec2:us-west-2:123456789012:security-group/sg-9 is tagged as this deployment's and recorded nowhere"
        );
        assert_eq!(
            serde_json::to_value(unrecorded).unwrap()["kind"],
            "unrecorded"
        );
        assert!(!unrecorded.repairable && !unrecorded.security);
    }

    mod stores {
        use aws_sdk_elasticache::operation::describe_replication_groups::{
            DescribeReplicationGroupsError, DescribeReplicationGroupsOutput,
        };
        use aws_sdk_elasticache::types::ReplicationGroup;
        use aws_sdk_elasticache::types::error::ReplicationGroupNotFoundFault;
        use aws_sdk_rds::operation::describe_db_clusters::DescribeDbClustersOutput;
        use aws_sdk_rds::types::DbCluster;
        use aws_smithy_mocks::{RuleMode, mock, mock_client};

        use super::*;

        fn settings(found: &Found) -> Vec<(&str, &str, bool, bool)> {
            found
                .findings
                .iter()
                .map(|f| {
                    (
                        f.setting.as_str(),
                        f.found.as_str(),
                        f.security,
                        f.repairable,
                    )
                })
                .collect()
        }

        #[tokio::test]
        async fn a_documentdb_cluster_unprotected_or_on_another_key_is_reported() {
            let cluster = DbCluster::builder()
                .db_cluster_identifier("apiary-demo-docdb")
                .storage_encrypted(true)
                .kms_key_id("arn:aws:kms:us-west-2:123456789012:key/other")
                .deletion_protection(false)
                .build();
            let rule = mock!(aws_sdk_rds::Client::describe_db_clusters).then_output(move || {
                DescribeDbClustersOutput::builder()
                    .db_clusters(cluster.clone())
                    .build()
            });
            let rds = mock_client!(aws_sdk_rds, RuleMode::MatchAny, &[&rule]);
            let mut found = Found::default();
            document_db(&rds, "apiary-demo-docdb", Some(&key()), &mut found)
                .await
                .unwrap();
            assert_eq!(found.checked, ["DocumentDB cluster apiary-demo-docdb"]);
            assert_eq!(
                settings(&found),
                [
                    ("deletion protection", "false", true, true),
                    (
                        "storage encryption key",
                        "arn:aws:kms:us-west-2:123456789012:key/other",
                        true,
                        false
                    ),
                ]
            );
        }

        #[tokio::test]
        async fn a_redis_group_without_tls_or_auth_is_reported_and_a_gone_one_missing() {
            let group = ReplicationGroup::builder()
                .replication_group_id("apiary-demo-redis")
                .at_rest_encryption_enabled(true)
                .kms_key_id(key().arn)
                .transit_encryption_enabled(true)
                .transit_encryption_mode(
                    aws_sdk_elasticache::types::TransitEncryptionMode::Preferred,
                )
                .auth_token_enabled(false)
                .build();
            let rule = mock!(aws_sdk_elasticache::Client::describe_replication_groups).then_output(
                move || {
                    DescribeReplicationGroupsOutput::builder()
                        .replication_groups(group.clone())
                        .build()
                },
            );
            let elasticache = mock_client!(aws_sdk_elasticache, RuleMode::MatchAny, &[&rule]);
            let mut found = Found::default();
            redis_group(&elasticache, "apiary-demo-redis", Some(&key()), &mut found)
                .await
                .unwrap();
            assert_eq!(
                settings(&found),
                [
                    ("in-transit encryption", "false", true, false),
                    ("AUTH token", "false", true, false),
                ]
            );

            let gone =
                mock!(aws_sdk_elasticache::Client::describe_replication_groups).then_error(|| {
                    DescribeReplicationGroupsError::ReplicationGroupNotFoundFault(
                        ReplicationGroupNotFoundFault::builder().build(),
                    )
                });
            let elasticache = mock_client!(aws_sdk_elasticache, RuleMode::MatchAny, &[&gone]);
            let mut found = Found::default();
            redis_group(&elasticache, "apiary-demo-redis", Some(&key()), &mut found)
                .await
                .unwrap();
            assert_eq!(
                found.findings[0].sentence(),
                "Redis replication group apiary-demo-redis is missing"
            );
        }
    }
}
