//! The ingestion pods' database and Redis credentials, as a Kubernetes Secret synced from
//! Secrets Manager.
//!
//! The Secrets Store CSI driver and its AWS provider (the EKS add-on
//! `aws-secrets-store-csi-driver-provider`, which the cluster step installs with secret
//! sync and rotation on) read the stores' secrets with the pods' own identity (EKS Pod
//! Identity, `usePodIdentity`), so the ingestion role's policy is what scopes them. The
//! `SecretProviderClass` names each secret and the fields the pods need; the driver
//! mounts them into the pods and keeps them in the Secret `ingestion-credentials`, from
//! which the container's environment reads them. The pods never see an ARN and never
//! call Secrets Manager themselves.
//!
//! Kubernetes reads a Secret into a container's environment only when it starts, so a
//! rotation reaches the pods by a restart (rotate-keys' `restart` step), after the driver
//! has synced the new value (`rotationPollInterval`). The Secret exists while a pod
//! mounts the class: the first pod's container waits (`CreateContainerConfigError`,
//! retried by the kubelet) until the driver has written it.
//!
//! The class is a custom resource the add-on's driver serves, so it is built only for an
//! EKS cluster (the `auto_mode` context); a plain cluster reached through a kubeconfig
//! gets the pods without credentials, and the output says so.

use std::collections::BTreeMap;

use apiary_core::{Error, Result};
use k8s_openapi::api::core::v1::{
    CSIVolumeSource, EnvVar, EnvVarSource, SecretKeySelector, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Context, Manifest, NAMESPACE, roundtrip, schema};

pub const GROUP: &str = "secrets-store.csi.x-k8s.io";
/// The SecretProviderClass and the Secret it syncs share this name.
pub const CLASS: &str = "ingestion-credentials";
pub const SECRET: &str = "ingestion-credentials";
pub const CSI_DRIVER: &str = "secrets-store.csi.k8s.io";
pub const VOLUME: &str = "credentials";
pub const MOUNT_PATH: &str = "/mnt/credentials";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretProviderClass {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ProviderClassSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderClassSpec {
    pub provider: String,
    /// The AWS provider's parameters: `objects` (a YAML list, [`AwsObject`]), `region`,
    /// `usePodIdentity`.
    pub parameters: BTreeMap<String, String>,
    pub secret_objects: Vec<SecretObject>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretObject {
    pub secret_name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub labels: BTreeMap<String, String>,
    pub data: Vec<SecretObjectData>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretObjectData {
    /// A file the provider mounts (a `jmesPath` alias below).
    pub object_name: String,
    pub key: String,
}

/// One entry of the AWS provider's `objects` parameter, as its README documents it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsObject {
    /// The secret's full ARN (a name would match a secret of another deployment's
    /// prefix only by accident, an ARN never).
    pub object_name: String,
    pub object_type: String,
    pub object_alias: String,
    pub jmes_path: Vec<JmesPath>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JmesPath {
    pub path: String,
    pub object_alias: String,
}

/// One value the container's environment takes from the synced Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The environment variable, also the Secret's key.
    pub env: String,
    /// The store's alias (`postgres`, `documentdb`, `redis`).
    pub store: &'static str,
    /// The field of the store's secret (`username`, `password`, `auth_token`).
    pub field: &'static str,
    pub secret_arn: String,
}

impl Credential {
    /// The file the provider mounts it as (also the id the driver reports its version
    /// under).
    pub fn file(&self) -> String {
        format!("{}-{}", self.store, self.field.replace('_', "-"))
    }
}

/// Every credential the pods get, from the stores the deployment has: the pods' own
/// PostgreSQL and DocumentDB users' secrets (`username`, `password`; never the master
/// user's, see [`apiary_core::outputs::app_users`]) and the Redis AUTH token secret
/// (`username`, `auth_token`). A store kept without an app secret (an output from
/// before it existed) is refused by [`provider_class`], named, rather than given the
/// master's.
pub fn credentials(ctx: &Context) -> Vec<Credential> {
    let stores: [(&'static str, &Option<_>, [&'static str; 2]); 3] = [
        (
            "postgres",
            &ctx.databases.postgres,
            ["username", "password"],
        ),
        (
            "documentdb",
            &ctx.databases.documentdb,
            ["username", "password"],
        ),
        ("redis", &ctx.databases.redis, ["username", "auth_token"]),
    ];
    let mut out = Vec::new();
    for (store, endpoint, fields) in stores {
        let Some(endpoint) = endpoint else { continue };
        let secret_arn = if store == "redis" {
            endpoint.secret_arn.clone()
        } else {
            endpoint.app_secret_arn.clone().unwrap_or_default()
        };
        for field in fields {
            out.push(Credential {
                env: format!(
                    "{}_{}",
                    store.to_ascii_uppercase(),
                    field.to_ascii_uppercase()
                ),
                store,
                field,
                secret_arn: secret_arn.clone(),
            });
        }
    }
    out
}

/// The SecretProviderClass of the ingestion pods' credentials.
pub fn provider_class(ctx: &Context) -> Result<Manifest> {
    let credentials = credentials(ctx);
    require_secrets(&credentials)?;
    provider_class_for(ctx, CLASS, NAMESPACE, &credentials)
}

/// Refuses, named, a credential with no secret: a PostgreSQL or DocumentDB endpoint kept
/// without its app secret (an output from before it existed). Every step that reads the
/// pods' secrets asks this before any call, rather than fall back to the master's.
pub fn require_secrets(credentials: &[Credential]) -> Result<()> {
    match credentials.iter().find(|c| c.secret_arn.is_empty()) {
        Some(missing) => Err(Error::invalid_input(format!(
            "layers.databases.{store}.app_secret_arn is missing: the pods log in as their own \
             {store} user, never the master; run provision, whose databases step makes its \
             secret",
            store = missing.store
        ))),
        None => Ok(()),
    }
}

/// A SecretProviderClass named `class` in `namespace` that mounts `credentials` and
/// syncs them into the Secret of the same name, read with the pods' own identity.
pub fn provider_class_for(
    ctx: &Context,
    class: &str,
    namespace: &str,
    credentials: &[Credential],
) -> Result<Manifest> {
    let mut objects: Vec<AwsObject> = Vec::new();
    for credential in credentials {
        let path = JmesPath {
            path: credential.field.to_owned(),
            object_alias: credential.file(),
        };
        match objects
            .iter_mut()
            .find(|o| o.object_name == credential.secret_arn)
        {
            Some(object) => object.jmes_path.push(path),
            None => objects.push(AwsObject {
                object_name: credential.secret_arn.clone(),
                object_type: "secretsmanager".to_owned(),
                object_alias: credential.store.to_owned(),
                jmes_path: vec![path],
            }),
        }
    }
    let objects = serde_yaml::to_string(&objects)
        .map_err(|e| Error::fatal(format!("the provider's objects do not serialise: {e}")))?;
    let class = SecretProviderClass {
        api_version: format!("{GROUP}/v1"),
        kind: "SecretProviderClass".to_owned(),
        metadata: ctx.metadata(class, Some(namespace)),
        spec: ProviderClassSpec {
            provider: "aws".to_owned(),
            parameters: BTreeMap::from([
                ("objects".to_owned(), objects),
                ("region".to_owned(), ctx.region.clone()),
                ("usePodIdentity".to_owned(), "true".to_owned()),
            ]),
            secret_objects: vec![SecretObject {
                secret_name: class.to_owned(),
                kind: "Opaque".to_owned(),
                labels: ctx.labels(),
                data: credentials
                    .iter()
                    .map(|c| SecretObjectData {
                        object_name: c.file(),
                        key: c.env.clone(),
                    })
                    .collect(),
            }],
        },
    };
    let mut manifest = Manifest::build(
        &class.api_version,
        &class.kind,
        "secretproviderclasses",
        &class.metadata,
        &class,
        validate,
    )?;
    manifest.schema = Some(schema::secret_provider_class());
    manifest.auto_mode_only = true;
    Ok(manifest)
}

/// The class parses as its type, its `objects` parameter as the AWS provider's list, and
/// every value the Secret takes is a file some object mounts.
fn validate(value: &Value) -> std::result::Result<(), String> {
    roundtrip::<SecretProviderClass>(value)?;
    let class: SecretProviderClass =
        serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let objects = class
        .spec
        .parameters
        .get("objects")
        .ok_or("spec.parameters.objects is missing")?;
    let objects: Vec<AwsObject> = serde_yaml::from_str(objects)
        .map_err(|e| format!("spec.parameters.objects is not the AWS provider's list: {e}"))?;
    for object in &objects {
        if object.object_type != "secretsmanager" {
            return Err(format!(
                "spec.parameters.objects: {} has objectType {:?}, not secretsmanager",
                object.object_name, object.object_type
            ));
        }
        if !object.object_name.starts_with("arn:") {
            return Err(format!(
                "spec.parameters.objects: {:?} is not a secret ARN",
                object.object_name
            ));
        }
    }
    let files: Vec<&str> = objects
        .iter()
        .flat_map(|o| o.jmes_path.iter().map(|p| p.object_alias.as_str()))
        .collect();
    for secret in &class.spec.secret_objects {
        for data in &secret.data {
            if !files.contains(&data.object_name.as_str()) {
                return Err(format!(
                    "spec.secretObjects: {} takes {} from {:?}, which no object mounts",
                    secret.secret_name, data.key, data.object_name
                ));
            }
        }
    }
    if class
        .spec
        .parameters
        .get("usePodIdentity")
        .map(String::as_str)
        != Some("true")
    {
        return Err(
            "spec.parameters.usePodIdentity must be \"true\": the pods' own role reads the secrets"
                .to_owned(),
        );
    }
    Ok(())
}

/// The ingestion pod's CSI volume of its class (read-only).
pub fn volume() -> Volume {
    volume_of(CLASS)
}

/// A pod's read-only CSI volume of `class`, named [`VOLUME`].
pub fn volume_of(class: &str) -> Volume {
    Volume {
        name: VOLUME.to_owned(),
        csi: Some(CSIVolumeSource {
            driver: CSI_DRIVER.to_owned(),
            read_only: Some(true),
            volume_attributes: Some(BTreeMap::from([(
                "secretProviderClass".to_owned(),
                class.to_owned(),
            )])),
            ..CSIVolumeSource::default()
        }),
        ..Volume::default()
    }
}

pub fn volume_mount() -> VolumeMount {
    VolumeMount {
        name: VOLUME.to_owned(),
        mount_path: MOUNT_PATH.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// The container's environment from the synced Secret (required: a pod does not start
/// without its credentials).
pub fn env(ctx: &Context) -> Vec<EnvVar> {
    credentials(ctx)
        .into_iter()
        .map(|c| EnvVar {
            name: c.env.clone(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: SECRET.to_owned(),
                    key: c.env,
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        })
        .collect()
}
