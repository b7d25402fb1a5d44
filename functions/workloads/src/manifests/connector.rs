//! The optional Twingate connector: operator access to the VPC (the private EKS
//! endpoint, the data stores) with no inbound rule anywhere. The connector dials out to
//! Twingate; people reach the data plane through it with their Twingate client.
//!
//! Built only when the spec names a connector secret (`cluster.access.twingate_secret_arn`,
//! stack parameter `TwingateSecretArn`): a namespace of its own, a service account that
//! Pod Identity gives the stack's `TwingateConnectorRole` (that one secret, nothing
//! else), the network name and token pair synced from the secret by the Secrets Store
//! CSI driver, one replica (a token pair belongs to one connector: two pods with it
//! would contend for it, so the rollout replaces the pod rather than overlapping), and
//! a network policy that admits nothing in.
//!
//! The pod follows Twingate's own chart (`Twingate/helm-charts`, `stable/connector`): a
//! non-root user, no privilege escalation, every capability dropped, `/connectorctl
//! health` as its probes. The image is pinned by tag and digest.

use std::collections::BTreeMap;

use apiary_core::Result;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ExecAction, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SecretKeySelector, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::credentials::{self, Credential};
use super::{Context, LABEL_NAME, Manifest};

pub const NAMESPACE: &str = "twingate";
/// The service account the stack's `TwingateConnectorRole` trusts (its
/// `kubernetes-service-account` session tag).
pub const SERVICE_ACCOUNT: &str = "twingate-connector";
pub const APP: &str = "twingate-connector";
/// The SecretProviderClass and the Secret it syncs.
pub const CLASS: &str = "twingate-connector";
/// Twingate's connector image, pinned by tag and digest.
pub const IMAGE: &str = "twingate/connector:1.90.0@sha256:833e7a968f1b3a5ad79b88b04f82aad1bfc8621f61b6b35f01be2411d35beba9";
/// The user Twingate's chart runs the connector as.
pub const RUN_AS_USER: i64 = 65532;

/// The connector's values, from the fields of its secret.
fn values(secret_arn: &str) -> Vec<Credential> {
    [
        ("TWINGATE_NETWORK", "network"),
        ("TWINGATE_ACCESS_TOKEN", "access_token"),
        ("TWINGATE_REFRESH_TOKEN", "refresh_token"),
    ]
    .into_iter()
    .map(|(env, field)| Credential {
        env: env.to_owned(),
        store: "twingate",
        field,
        secret_arn: secret_arn.to_owned(),
    })
    .collect()
}

fn metadata(ctx: &Context, name: &str, namespace: Option<&str>) -> ObjectMeta {
    ctx.component_metadata(APP, name, namespace)
}

/// Every object of the connector, in apply order; none when the spec names no secret.
pub fn build(ctx: &Context) -> Result<Vec<Manifest>> {
    let Some(secret_arn) = &ctx.twingate_secret_arn else {
        return Ok(Vec::new());
    };
    let values = values(secret_arn);
    let mut objects = vec![
        super::restricted_namespace(ctx, NAMESPACE, APP)?,
        Manifest::typed(&ServiceAccount {
            metadata: metadata(ctx, SERVICE_ACCOUNT, Some(NAMESPACE)),
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        })?,
        credentials::provider_class_for(ctx, CLASS, NAMESPACE, &values)?,
        deployment(ctx, &values)?,
        Manifest::typed(&NetworkPolicy {
            metadata: metadata(ctx, APP, Some(NAMESPACE)),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(LABEL_NAME.to_owned(), APP.to_owned())])),
                    ..LabelSelector::default()
                }),
                // Ingress listed with no rule: nothing may connect to the connector. It
                // only dials out (to Twingate, and to what operators reach through it).
                policy_types: Some(vec!["Ingress".to_owned()]),
                ingress: None,
                ..NetworkPolicySpec::default()
            }),
        })?,
    ];
    for object in &mut objects {
        object.auto_mode_only = true;
    }
    Ok(objects)
}

/// A connector the spec no longer names (`TwingateSecretArn` emptied): its namespace is
/// deleted, and with it the Deployment and the synced Secret that holds the tokens, so
/// no pod keeps using them. Only a namespace this deployment made (its labels say so) is
/// touched. Returns what was removed, or is still going.
pub async fn remove_unlisted(client: &kube::Client, ctx: &Context) -> Result<Option<String>> {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, DeleteParams};
    let api: Api<Namespace> = Api::all(client.clone());
    let found = api.get_opt(NAMESPACE).await.map_err(|e| {
        crate::apply::kube_error(&format!("Namespace {NAMESPACE}"), "get", e, false)
    })?;
    let Some(namespace) = found else {
        return Ok(None);
    };
    let labels = namespace.metadata.labels.clone().unwrap_or_default();
    let ours = labels.get(super::LABEL_DEPLOYMENT) == Some(&ctx.deployment)
        && labels.get(super::LABEL_MANAGED_BY).map(String::as_str) == Some("apiary");
    if !ours {
        return Ok(None);
    }
    if namespace.metadata.deletion_timestamp.is_some() {
        return Ok(Some(format!(
            "Namespace {NAMESPACE} (the Twingate connector the spec no longer names) is being deleted"
        )));
    }
    match api.delete(NAMESPACE, &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
        Err(err) => {
            return Err(crate::apply::kube_error(
                &format!("Namespace {NAMESPACE}"),
                "delete",
                err,
                false,
            ));
        }
    }
    Ok(Some(format!(
        "Namespace {NAMESPACE} deleted: the spec no longer names a Twingate connector (revoke its tokens in the Twingate admin console)"
    )))
}

fn deployment(ctx: &Context, values: &[Credential]) -> Result<Manifest> {
    let health = || Probe {
        exec: Some(ExecAction {
            command: Some(vec!["/connectorctl".to_owned(), "health".to_owned()]),
        }),
        initial_delay_seconds: Some(5),
        period_seconds: Some(5),
        ..Probe::default()
    };
    let mut env: Vec<EnvVar> = values
        .iter()
        .map(|v| EnvVar {
            name: v.env.clone(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: CLASS.to_owned(),
                    key: v.env.clone(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        })
        .collect();
    env.push(EnvVar {
        name: "TWINGATE_LABEL_DEPLOYED_BY".to_owned(),
        value: Some("apiary".to_owned()),
        ..EnvVar::default()
    });
    let container = Container {
        name: "connector".to_owned(),
        image: Some(IMAGE.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        env: Some(env),
        readiness_probe: Some(health()),
        liveness_probe: Some(health()),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("50m".to_owned())),
                ("memory".to_owned(), Quantity("200Mi".to_owned())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("512Mi".to_owned()),
            )])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(super::workload::restricted(RUN_AS_USER)),
        volume_mounts: Some(vec![credentials::volume_mount()]),
        ..Container::default()
    };
    let selector = BTreeMap::from([(LABEL_NAME.to_owned(), APP.to_owned())]);
    Manifest::typed(&Deployment {
        metadata: metadata(ctx, APP, Some(NAMESPACE)),
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            // One token pair, one connector: never two pods at once.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(ctx.component_labels(APP)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    // On the Auto Mode pool, as the ingestion pods: its nodes run the
                    // Pod Identity agent and enforce network policies.
                    node_selector: Some(super::workload::node_pool_selector()),
                    service_account_name: Some(SERVICE_ACCOUNT.to_owned()),
                    automount_service_account_token: Some(false),
                    security_context: Some(super::workload::restricted_pod(RUN_AS_USER)),
                    containers: vec![container],
                    volumes: Some(vec![credentials::volume_of(CLASS)]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    })
}
