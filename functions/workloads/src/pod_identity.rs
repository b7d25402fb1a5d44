//! The ingestion pods' AWS identity: an IAM role that EKS Pod Identity hands to the
//! `honeyhive/ingestion` service account through a Pod Identity association.
//!
//! The role may write the deployment's data buckets, use its app key, read the data
//! stores' secrets, and nothing else. It carries the stack's permissions boundary
//! (`Deps::permissions_boundary`), so whatever its inline policy says, it can never do
//! more than that boundary allows; the function's own role may only create or change it
//! with that boundary attached.

use apiary_core::naming::{Layer, Names};
use apiary_core::outputs::Layers;
use apiary_core::step::StepLog;
use apiary_core::{Error, Result};
use aws_sdk_eks::error::ProvideErrorMetadata;
use aws_sdk_iam::types::Tag;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use serde::Serialize;
use serde_json::Value;

mod policy;

pub use policy::{parse_policy, permissions_policy, trust_policy};

use crate::Deps;
use crate::manifests::{NAMESPACE, SERVICE_ACCOUNT};

/// The inline policy holding the role's permissions.
pub const POLICY_NAME: &str = "ingestion-data-plane";

/// What `ensure` found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    pub role_name: String,
    pub role_arn: String,
    pub association: Association,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Association {
    /// The association exists (found, created or updated) with this id and ARN.
    Bound {
        id: String,
        arn: String,
        change: &'static str,
    },
    /// The AWS endpoint (the local emulator) does not implement the Pod Identity API, so
    /// no association exists. Only ever reported for an emulator endpoint.
    Unsupported { detail: String },
}

/// The pod identity as the step reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PodIdentityReport {
    pub role_name: String,
    pub role_arn: String,
    pub namespace: &'static str,
    pub service_account: &'static str,
    /// `null` when no association exists (the emulator has no Pod Identity API).
    pub association_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub association_arn: Option<String>,
    /// `created`, `updated`, `unchanged`, or `not-created`.
    pub association: &'static str,
    /// Why no association was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub association_detail: Option<String>,
}

impl PodIdentity {
    pub fn report(&self) -> PodIdentityReport {
        let (association_id, association_arn, association, association_detail) =
            match &self.association {
                Association::Bound { id, arn, change } => {
                    (Some(id.clone()), Some(arn.clone()), *change, None)
                }
                Association::Unsupported { detail } => {
                    (None, None, "not-created", Some(detail.clone()))
                }
            };
        PodIdentityReport {
            role_name: self.role_name.clone(),
            role_arn: self.role_arn.clone(),
            namespace: NAMESPACE,
            service_account: SERVICE_ACCOUNT,
            association_id,
            association_arn,
            association,
            association_detail,
        }
    }
}

pub fn role_name(names: &Names) -> String {
    names.resource("ingestion")
}

/// Makes sure the role exists with our trust policy, permissions and tags, and that the
/// service account is associated with it.
pub async fn ensure(
    deps: &Deps,
    names: &Names,
    layers: &Layers,
    region: &str,
    log: &StepLog<'_>,
) -> Result<PodIdentity> {
    let cluster = layers.cluster()?;
    let (role_name, role_arn, role_created) =
        ensure_role(deps, names, &cluster.cluster_arn, log).await?;
    ensure_permissions(deps, &role_name, &permissions_policy(layers, region)?).await?;
    log.resource("iam:role", &role_name, Some(&role_arn))
        .await?;
    let association = ensure_association(
        deps,
        names,
        &cluster.cluster_name,
        (NAMESPACE, SERVICE_ACCOUNT),
        &role_arn,
        role_created,
        log,
    )
    .await?;
    if let Association::Bound { id, arn, .. } = &association {
        log.resource("eks:pod-identity-association", id, Some(arn))
            .await?;
    }
    Ok(PodIdentity {
        role_name,
        role_arn,
        association,
    })
}

fn iam_tags(names: &Names) -> Result<Vec<Tag>> {
    names
        .tags(Layer::Workloads)
        .into_iter()
        .map(|(key, value)| {
            Tag::builder()
                .key(key)
                .value(value)
                .build()
                .map_err(|e| Error::fatal(e.to_string()))
        })
        .collect()
}

/// The boundary the role must carry. Only the emulator may run without one: on AWS the
/// function's role is denied creating or changing the role without it, so a missing
/// setting fails here, with its name, instead of as an access denial.
fn permissions_boundary(deps: &Deps) -> Result<Option<&str>> {
    match deps.permissions_boundary.as_deref() {
        Some(arn) => Ok(Some(arn)),
        None if deps.emulator => {
            tracing::warn!(
                "no permissions boundary configured ({}): the emulator's ingestion role is \
                 made without one",
                crate::PERMISSIONS_BOUNDARY_ENV
            );
            Ok(None)
        }
        None => Err(Error::fatal(format!(
            "no permissions boundary configured: set {} to the ARN of the stack's \
             IngestionBoundary policy",
            crate::PERMISSIONS_BOUNDARY_ENV
        ))),
    }
}

async fn ensure_role(
    deps: &Deps,
    names: &Names,
    cluster_arn: &str,
    log: &StepLog<'_>,
) -> Result<(String, String, bool)> {
    let name = role_name(names);
    let trust = trust_policy(cluster_arn);
    let boundary = permissions_boundary(deps)?;
    match apiary_core::aws::answer_or_none(
        format!("GetRole {name}"),
        deps.iam.get_role().role_name(&name).send(),
        |e| e.is_no_such_entity_exception(),
    )
    .await?
    {
        Some(found) => {
            let role = found
                .role
                .ok_or_else(|| Error::fatal(format!("GetRole {name} returned no role")))?;
            // First, before anything else changes: the function's role may put the
            // inline policy only on a role that already carries the boundary.
            if let Some(boundary) = boundary {
                let attached = role
                    .permissions_boundary
                    .as_ref()
                    .and_then(|b| b.permissions_boundary_arn());
                if attached != Some(boundary) {
                    deps.iam
                        .put_role_permissions_boundary()
                        .role_name(&name)
                        .permissions_boundary(boundary)
                        .send()
                        .await
                        .map_err(|e| Error::aws(format!("PutRolePermissionsBoundary {name}"), e))?;
                }
            }
            let current = role
                .assume_role_policy_document
                .as_deref()
                .and_then(parse_policy);
            if current.as_ref() != Some(&trust) {
                deps.iam
                    .update_assume_role_policy()
                    .role_name(&name)
                    .policy_document(trust.to_string())
                    .send()
                    .await
                    .map_err(|e| Error::aws(format!("UpdateAssumeRolePolicy {name}"), e))?;
            }
            let wanted = iam_tags(names)?;
            let have = role.tags.unwrap_or_default();
            let missing: Vec<Tag> = wanted.into_iter().filter(|t| !have.contains(t)).collect();
            if !missing.is_empty() {
                deps.iam
                    .tag_role()
                    .role_name(&name)
                    .set_tags(Some(missing))
                    .send()
                    .await
                    .map_err(|e| Error::aws(format!("TagRole {name}"), e))?;
            }
            Ok((role.role_name, role.arn, false))
        }
        None => {
            match deps
                .iam
                .create_role()
                .role_name(&name)
                .description(format!(
                    "HoneyHive ingestion pods of Apiary deployment {}",
                    names.deployment()
                ))
                .assume_role_policy_document(trust.to_string())
                .set_permissions_boundary(boundary.map(str::to_owned))
                .set_tags(Some(iam_tags(names)?))
                .send()
                .await
            {
                Ok(out) => {
                    let role = out.role.ok_or_else(|| {
                        Error::fatal(format!("CreateRole {name} returned no role"))
                    })?;
                    log.created(&role.role_name);
                    Ok((role.role_name, role.arn, true))
                }
                // Another run created it between our lookup and now.
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_entity_already_exists_exception()) =>
                {
                    Err(Error::NotReady {
                        resource: format!("IAM role {name}"),
                        detail: "created concurrently by another run; retry to converge".into(),
                    })
                }
                Err(err) => Err(Error::aws(format!("CreateRole {name}"), err)),
            }
        }
    }
}

async fn ensure_permissions(deps: &Deps, role: &str, policy: &Value) -> Result<()> {
    let current = apiary_core::aws::answer_or_none(
        format!("GetRolePolicy {role}/{POLICY_NAME}"),
        deps.iam
            .get_role_policy()
            .role_name(role)
            .policy_name(POLICY_NAME)
            .send(),
        |e| e.is_no_such_entity_exception(),
    )
    .await?
    .and_then(|out| parse_policy(&out.policy_document));
    if current.as_ref() != Some(policy) {
        deps.iam
            .put_role_policy()
            .role_name(role)
            .policy_name(POLICY_NAME)
            .policy_document(policy.to_string())
            .send()
            .await
            .map_err(|e| Error::aws(format!("PutRolePolicy {role}/{POLICY_NAME}"), e))?;
    }
    Ok(())
}

/// True when the endpoint answered as if the operation did not exist: a 404 that is not
/// one of the service's own errors. moto 5.2.5 answers the Pod Identity API this way.
fn endpoint_lacks_operation<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    let status = err.raw_response().map(|r| r.status().as_u16());
    let code = match err {
        SdkError::ServiceError(service) => service.err().code().map(str::to_owned),
        _ => None,
    };
    status == Some(404)
        && !matches!(
            code.as_deref(),
            Some("ResourceNotFoundException" | "NotFoundException")
        )
}

/// A platform component's service account (the Twingate connector, Prometheus,
/// Alertmanager) bound to its role, made by the bootstrap stack (so never new here).
pub async fn ensure_stack_role(
    deps: &Deps,
    names: &Names,
    cluster: &str,
    service_account: (&str, &str),
    role_arn: &str,
    log: &StepLog<'_>,
) -> Result<Association> {
    ensure_association(deps, names, cluster, service_account, role_arn, false, log).await
}

async fn ensure_association(
    deps: &Deps,
    names: &Names,
    cluster: &str,
    (namespace, service_account): (&str, &str),
    role_arn: &str,
    role_is_new: bool,
    log: &StepLog<'_>,
) -> Result<Association> {
    let target = format!("Pod Identity association {cluster}/{namespace}/{service_account}");
    let listed = deps
        .eks
        .list_pod_identity_associations()
        .cluster_name(cluster)
        .namespace(namespace)
        .service_account(service_account)
        .send()
        .await;
    let listed = match listed {
        Ok(out) => out,
        Err(err) if endpoint_lacks_operation(&err) => {
            return unsupported(deps, &target, "ListPodIdentityAssociations", err);
        }
        Err(err) => {
            return Err(Error::aws(
                format!("ListPodIdentityAssociations {cluster}"),
                err,
            ));
        }
    };
    if let Some(found) = listed.associations.unwrap_or_default().into_iter().next() {
        let id = found.association_id.unwrap_or_default();
        let described = deps
            .eks
            .describe_pod_identity_association()
            .cluster_name(cluster)
            .association_id(&id)
            .send()
            .await
            .map_err(|e| Error::aws(format!("DescribePodIdentityAssociation {id}"), e))?
            .association
            .ok_or_else(|| {
                Error::fatal(format!(
                    "{target}: DescribePodIdentityAssociation returned nothing"
                ))
            })?;
        let arn = described.association_arn.unwrap_or_default();
        if described.role_arn.as_deref() == Some(role_arn) {
            return Ok(Association::Bound {
                id,
                arn,
                change: "unchanged",
            });
        }
        deps.eks
            .update_pod_identity_association()
            .cluster_name(cluster)
            .association_id(&id)
            .role_arn(role_arn)
            .send()
            .await
            .map_err(|e| Error::aws(format!("UpdatePodIdentityAssociation {id}"), e))?;
        return Ok(Association::Bound {
            id,
            arn,
            change: "updated",
        });
    }
    let mut request = deps
        .eks
        .create_pod_identity_association()
        .cluster_name(cluster)
        .namespace(namespace)
        .service_account(service_account)
        .role_arn(role_arn);
    for (key, value) in names.tags(Layer::Workloads) {
        request = request.tags(key, value);
    }
    match request.send().await {
        Ok(out) => {
            let association = out.association.ok_or_else(|| {
                Error::fatal(format!(
                    "{target}: CreatePodIdentityAssociation returned nothing"
                ))
            })?;
            let id = association.association_id.unwrap_or_default();
            log.created(&id);
            Ok(Association::Bound {
                id,
                arn: association.association_arn.unwrap_or_default(),
                change: "created",
            })
        }
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            Err(Error::NotReady {
                resource: target,
                detail: "created concurrently by another run; retry to converge".into(),
            })
        }
        // IAM is eventually consistent: a role made seconds ago may not be visible to EKS.
        Err(err)
            if role_is_new
                && err
                    .as_service_error()
                    .is_some_and(|e| e.is_invalid_parameter_exception()) =>
        {
            Err(Error::NotReady {
                resource: target,
                detail: format!(
                    "the new IAM role is not visible to EKS yet: {}",
                    err.as_service_error()
                        .and_then(|e| e.message())
                        .unwrap_or("invalid parameter")
                ),
            })
        }
        Err(err) if endpoint_lacks_operation(&err) => {
            unsupported(deps, &target, "CreatePodIdentityAssociation", err)
        }
        Err(err) => Err(Error::aws(
            format!("CreatePodIdentityAssociation {cluster}"),
            err,
        )),
    }
}

/// The Pod Identity API is missing. Against the emulator that is a known gap, reported
/// in the output; against anything else it is an error, never silently skipped.
fn unsupported<E>(
    deps: &Deps,
    target: &str,
    operation: &str,
    err: SdkError<E, HttpResponse>,
) -> Result<Association>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if deps.emulator {
        let detail = format!(
            "the AWS endpoint does not implement {operation} (HTTP 404): the local emulator \
             has no EKS Pod Identity API, so no association was made"
        );
        tracing::warn!(target, detail, "pod identity association skipped");
        Ok(Association::Unsupported { detail })
    } else {
        Err(Error::aws(format!("{operation} for {target}"), err))
    }
}

#[cfg(test)]
mod tests;
