//! The scratch resources of a restore test: names, tags, the scratch security group and
//! master-password secrets, and `cleanup`, which deletes every one of them, found by its
//! tag (this run's, and leftovers of runs that crashed before their cleanup).

use apiary_core::inputs::backup::StoreName;
use apiary_core::naming::{MANAGED_BY, Names, TAG_DEPLOYMENT, TAG_MANAGED_BY};
use apiary_core::step::{Done, StepContext};
use apiary_core::{Error, Result};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, ResourceType, TagSpecification, UserIdGroupPair,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::engine::{SCRATCH_VALUE, TAG_RUN, TAG_SCRATCH, TAG_STORE, short};
use crate::plan::Plan;
use crate::{Action, Deps};

/// The prefix of every scratch store's identifier: `apiary-<deployment>-rt`, which no
/// live store's name starts with (the IAM policy scopes the restores by it).
pub fn scratch_prefix(names: &Names) -> String {
    names.resource("rt")
}

/// A scratch store's identifier: `apiary-<deployment>-rt<6 hex>` (a hash of the run) for
/// Redis, within ElastiCache's 40 characters for a 24-character deployment name, and the
/// same with `-pg` / `-docdb` for the others.
pub fn scratch_id(names: &Names, store: StoreName, plan: &Plan) -> String {
    let digest = Sha256::digest(plan.run.as_bytes());
    let hex: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
    let base = format!("{}{hex}", scratch_prefix(names));
    match store {
        StoreName::Redis => base,
        other => format!("{base}-{}", short(other)),
    }
}

pub fn scratch_tags(names: &Names, store: Option<StoreName>, plan: &Plan) -> Vec<(String, String)> {
    let mut tags = vec![
        (TAG_DEPLOYMENT.to_owned(), names.deployment().to_owned()),
        (TAG_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (TAG_SCRATCH.to_owned(), SCRATCH_VALUE.to_owned()),
        (TAG_RUN.to_owned(), plan.run.clone()),
    ];
    if let Some(store) = store {
        tags.push((TAG_STORE.to_owned(), store.as_str().to_owned()));
    }
    tags
}

/// Whether a tag list marks a scratch resource of `deployment`.
pub fn is_scratch<'a>(
    deployment: &str,
    mut tags: impl Iterator<Item = (&'a str, &'a str)>,
) -> bool {
    let (mut scratch, mut ours) = (false, false);
    for (key, value) in tags.by_ref() {
        scratch |= key == TAG_SCRATCH && value == SCRATCH_VALUE;
        ours |= key == TAG_DEPLOYMENT && value == deployment;
    }
    scratch && ours
}

fn secret_name(names: &Names, store: StoreName, plan: &Plan) -> String {
    names.resource(&format!("restore-test-{}-{}", store.as_str(), plan.run))
}

/// The scratch security group of the run: ingress only from the control plane's group
/// (where the verifier runs) on the restored stores' ports, no egress.
pub(crate) async fn ensure_security_group(
    deps: &Deps,
    step: &StepContext<'_, Action>,
    plan: &Plan,
    ports: &[u16],
) -> Result<String> {
    let network = step.layers.network()?;
    let control_plane = network.security_groups.control_plane.as_str();
    if control_plane.is_empty() {
        return Err(Error::invalid_input(
            "layers.network.security_groups.control_plane is empty: a provision of this \
             version makes the control plane's group the verifier runs in",
        ));
    }
    let name = step.names.resource(&format!("restore-test-{}", plan.run));
    let filter = |name: &str, value: &str| Filter::builder().name(name).values(value).build();
    let found = deps
        .ec2
        .describe_security_groups()
        .filters(filter("vpc-id", &network.vpc_id))
        .filters(filter("group-name", &name))
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeSecurityGroups {name}"), e))?
        .security_groups()
        .first()
        .and_then(|g| g.group_id().map(str::to_owned));
    let group = match found {
        Some(group) => group,
        None => {
            let tags = scratch_tags(&step.names, None, plan)
                .into_iter()
                .chain([("Name".to_owned(), name.clone())])
                .map(|(k, v)| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build())
                .collect();
            let created = deps
                .ec2
                .create_security_group()
                .group_name(&name)
                .description(
                    "Apiary restore test: a scratch copy, reachable only from the control plane",
                )
                .vpc_id(&network.vpc_id)
                .tag_specifications(
                    TagSpecification::builder()
                        .resource_type(ResourceType::SecurityGroup)
                        .set_tags(Some(tags))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| Error::aws(format!("CreateSecurityGroup {name}"), e))?;
            let group = created
                .group_id()
                .ok_or_else(|| Error::fatal(format!("CreateSecurityGroup {name} returned no id")))?
                .to_owned();
            step.log.created(&group);
            group
        }
    };
    // No egress: a restored store needs none, and EC2's default allows everything.
    if let Err(e) = deps
        .ec2
        .revoke_security_group_egress()
        .group_id(&group)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("-1")
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .send()
        .await
        && e.code() != Some("InvalidPermission.NotFound")
    {
        return Err(Error::aws(format!("RevokeSecurityGroupEgress {group}"), e));
    }
    for port in ports {
        let rule = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(i32::from(*port))
            .to_port(i32::from(*port))
            .user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id(control_plane)
                    .description("Apiary control plane (the verifier)")
                    .build(),
            )
            .build();
        if let Err(e) = deps
            .ec2
            .authorize_security_group_ingress()
            .group_id(&group)
            .ip_permissions(rule)
            .send()
            .await
            && e.code() != Some("InvalidPermission.Duplicate")
        {
            return Err(Error::aws(
                format!("AuthorizeSecurityGroupIngress {group} {port}"),
                e,
            ));
        }
    }
    Ok(group)
}

/// A scratch store's credentials: `{"username", "password"}` (PostgreSQL, DocumentDB) or
/// `{"username": "default", "auth_token"}` (Redis), the shapes of the live secrets.
pub(crate) struct Credentials {
    pub arn: String,
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("arn", &self.arn)
            .field("secret", &"<redacted>")
            .finish()
    }
}

const SECRET_FIELD: &str = "password";
const TOKEN_FIELD: &str = "auth_token";

fn field(store: StoreName) -> &'static str {
    if store == StoreName::Redis {
        TOKEN_FIELD
    } else {
        SECRET_FIELD
    }
}

/// The scratch secret of `store` in this run, generating a fresh password when there is
/// none; `create: false` only reads it (`None`: not made yet).
pub(crate) async fn credentials(
    deps: &Deps,
    step: &StepContext<'_, Action>,
    store: StoreName,
    plan: &Plan,
    create: bool,
) -> Result<Option<Credentials>> {
    let name = secret_name(&step.names, store, plan);
    if let Some(found) = read(deps, &name, store).await? {
        return Ok(Some(found));
    }
    if !create {
        return Ok(None);
    }
    let secret = deps
        .secrets
        .get_random_password()
        .password_length(40)
        .exclude_punctuation(true)
        .send()
        .await
        .map_err(|e| Error::aws("GetRandomPassword", e))?
        .random_password
        .ok_or_else(|| Error::fatal("GetRandomPassword returned no password"))?;
    let username = if store == StoreName::Redis {
        "default"
    } else {
        "apiary"
    };
    let mut value = json!({"username": username, "engine": store.as_str()});
    value[field(store)] = json!(secret);
    let key = step.layers.keys()?.key("app")?.arn.clone();
    let tags = scratch_tags(&step.names, Some(store), plan)
        .into_iter()
        .map(|(k, v)| {
            aws_sdk_secretsmanager::types::Tag::builder()
                .key(k)
                .value(v)
                .build()
        })
        .collect();
    match apiary_core::aws::answer_or_none(
        format!("CreateSecret {name}"),
        deps.secrets
            .create_secret()
            .name(&name)
            .description(
                "Apiary restore test: the scratch copy's own credentials (never the live ones)",
            )
            .kms_key_id(key)
            .secret_string(value.to_string())
            .set_tags(Some(tags))
            .send(),
        |e| e.is_resource_exists_exception(),
    )
    .await?
    {
        Some(out) => {
            step.log.created(&name);
            Ok(Some(Credentials {
                arn: out.arn.unwrap_or_default(),
                secret,
            }))
        }
        None => read(deps, &name, store).await,
    }
}

async fn read(deps: &Deps, name: &str, store: StoreName) -> Result<Option<Credentials>> {
    let Some(value) = apiary_core::aws::answer_or_none(
        format!("GetSecretValue {name}"),
        deps.secrets.get_secret_value().secret_id(name).send(),
        |e| e.is_resource_not_found_exception(),
    )
    .await?
    else {
        return Ok(None);
    };
    let secret = value
        .secret_string()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| {
            v.get(field(store))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .ok_or_else(|| {
            Error::fatal(format!(
                "scratch secret {name} holds no {} field",
                field(store)
            ))
        })?;
    Ok(Some(Credentials {
        arn: value.arn.unwrap_or_default(),
        secret,
    }))
}

/// `cleanup`: deletes every scratch resource of the deployment (any run), stores first;
/// the security group once nothing uses it. Ready when nothing is left.
pub(crate) async fn cleanup(deps: &Deps, step: &StepContext<'_, Action>) -> Result<Done<Value>> {
    let deployment = step.names.deployment();
    let mut deleting = Vec::new();
    let mut pending = Vec::new();
    let mut stores_left = 0;

    // RDS PostgreSQL (DocumentDB's instances, listed by the same API, are left to their
    // cluster below).
    let mut pages = deps
        .rds
        .describe_db_instances()
        .into_paginator()
        .items()
        .send();
    let mut instances = Vec::new();
    while let Some(instance) = pages
        .try_next()
        .await
        .map_err(|e| Error::aws("DescribeDBInstances (scratch)", e))?
    {
        instances.push(instance);
    }
    for instance in instances {
        let tags = instance
            .tag_list()
            .iter()
            .filter_map(|t| Some((t.key()?, t.value()?)));
        if instance.engine() == Some("docdb") || !is_scratch(deployment, tags) {
            continue;
        }
        let id = instance
            .db_instance_identifier()
            .unwrap_or_default()
            .to_owned();
        stores_left += 1;
        if instance.db_instance_status() != Some("deleting") {
            match deps
                .rds
                .delete_db_instance()
                .db_instance_identifier(&id)
                .skip_final_snapshot(true)
                .delete_automated_backups(true)
                .send()
                .await
            {
                Ok(_) => step.log.created(&format!("deleted:{id}")),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_db_instance_not_found_fault()) =>
                {
                    stores_left -= 1;
                    continue;
                }
                // Still creating or modifying: deleted on a later poll.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_invalid_db_instance_state_fault()) => {}
                // A copy restored with deletion protection (the emulator copies the live
                // instance's; on AWS someone may have turned it on): off, then deleted on
                // a later poll. Only scratch copies reach this line.
                Err(e)
                    if aws_sdk_rds::error::ProvideErrorMetadata::code(&e)
                        == Some("InvalidParameterCombination")
                        && instance.deletion_protection() == Some(true) =>
                {
                    deps.rds
                        .modify_db_instance()
                        .db_instance_identifier(&id)
                        .deletion_protection(false)
                        .apply_immediately(true)
                        .send()
                        .await
                        .map_err(|e| {
                            Error::aws(
                                format!("ModifyDBInstance {id} (deletion protection off)"),
                                e,
                            )
                        })?;
                }
                Err(e) => return Err(Error::aws(format!("DeleteDBInstance {id}"), e)),
            }
        }
        deleting.push(json!({"kind": "rds:db-instance", "id": id}));
        pending.push(format!("scratch RDS instance {id} is being deleted"));
    }

    stores_left += crate::cleanup::documentdb(deps, step, &mut deleting, &mut pending).await?;
    stores_left += crate::cleanup::redis(deps, step, &mut deleting, &mut pending).await?;

    // Security groups: once no store holds a network interface in them.
    let groups = deps
        .ec2
        .describe_security_groups()
        .filters(
            Filter::builder()
                .name(format!("tag:{TAG_SCRATCH}"))
                .values(SCRATCH_VALUE)
                .build(),
        )
        .filters(
            Filter::builder()
                .name(format!("tag:{TAG_DEPLOYMENT}"))
                .values(deployment)
                .build(),
        )
        .send()
        .await
        .map_err(|e| Error::aws("DescribeSecurityGroups (scratch)", e))?;
    for group in groups.security_groups() {
        let id = group.group_id().unwrap_or_default().to_owned();
        if stores_left > 0 {
            pending.push(format!("scratch security group {id} waits for its stores"));
            continue;
        }
        match deps.ec2.delete_security_group().group_id(&id).send().await {
            Ok(_) => {
                step.log.created(&format!("deleted:{id}"));
                deleting.push(json!({"kind": "ec2:security-group", "id": id}));
            }
            Err(e) if e.code() == Some("InvalidGroup.NotFound") => {}
            // Network interfaces of a deleted store linger for minutes.
            Err(e) if e.code() == Some("DependencyViolation") => {
                pending.push(format!("scratch security group {id} is still in use"));
            }
            Err(e) => return Err(Error::aws(format!("DeleteSecurityGroup {id}"), e)),
        }
    }

    // Secrets: at once, without a recovery window (they guard only scratch copies).
    let mut pages = deps
        .secrets
        .list_secrets()
        .filters(
            aws_sdk_secretsmanager::types::Filter::builder()
                .key(aws_sdk_secretsmanager::types::FilterNameStringType::TagKey)
                .values(TAG_SCRATCH)
                .build(),
        )
        .into_paginator()
        .send();
    let mut secrets = Vec::new();
    while let Some(page) = pages
        .try_next()
        .await
        .map_err(|e| Error::aws("ListSecrets (scratch)", e))?
    {
        secrets.extend(page.secret_list().iter().cloned());
    }
    for secret in secrets {
        let tags = secret
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?, t.value()?)));
        if !is_scratch(deployment, tags) {
            continue;
        }
        let name = secret.name().unwrap_or_default().to_owned();
        apiary_core::aws::answer_or_none(
            format!("DeleteSecret {name}"),
            deps.secrets
                .delete_secret()
                .secret_id(&name)
                .force_delete_without_recovery(true)
                .send(),
            |e| e.is_resource_not_found_exception(),
        )
        .await?;
        step.log.created(&format!("deleted:{name}"));
        deleting.push(json!({"kind": "secretsmanager:secret", "id": name}));
    }

    let detail = if deleting.is_empty() {
        "no scratch resource left".to_owned()
    } else {
        format!(
            "{} scratch resources deleted or being deleted",
            deleting.len()
        )
    };
    Ok(Done::pending(json!({"deleted": deleting}), pending).with_detail(detail))
}
