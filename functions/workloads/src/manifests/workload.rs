//! The ingestion service itself: namespace, service account, endpoints, Deployment,
//! Service, autoscaler and disruption budget.

use std::collections::BTreeMap;

use apiary_core::Result;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvFromSource, HTTPGetAction, Namespace, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext, Service, ServiceAccount, ServicePort,
    ServiceSpec, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::{
    APP, CONFIG_HASH_ANNOTATION, CONFIG_MAP, CONTAINER_PORT, Context, LIVENESS_PATH, Manifest,
    NAMESPACE, NODE_POOL, READINESS_PATH, SERVICE_ACCOUNT, SERVICE_PORT,
};

/// A non-root user and group the image does not need to define.
pub const RUN_AS_USER: i64 = 65532;
pub const CPU_REQUEST: &str = "500m";
pub const CPU_LIMIT: &str = "2";
pub const MEMORY_REQUEST: &str = "1Gi";
pub const MEMORY_LIMIT: &str = "2Gi";
/// Average CPU use, as a share of the request, the autoscaler holds the pods at.
pub const CPU_TARGET_PERCENT: i32 = 70;
pub const ZONE_KEY: &str = "topology.kubernetes.io/zone";
pub const HOSTNAME_KEY: &str = "kubernetes.io/hostname";
/// The label Karpenter puts on the nodes of a pool.
pub const NODE_POOL_LABEL: &str = "karpenter.sh/nodepool";

pub fn namespace(ctx: &Context) -> Result<Manifest> {
    let mut metadata = ctx.metadata(NAMESPACE, None);
    // The API server itself refuses pods that break the "restricted" Pod Security
    // Standard, so a later change cannot quietly weaken the pods' security context.
    let labels = metadata.labels.get_or_insert_with(BTreeMap::new);
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".to_owned(),
        );
    }
    Manifest::typed(&Namespace {
        metadata,
        ..Namespace::default()
    })
}

/// The pods' identity. EKS Pod Identity binds it to an IAM role by an association
/// (namespace + name), so it needs no annotation; the pods never call the Kubernetes
/// API, so no API token is mounted.
pub fn service_account(ctx: &Context) -> Result<Manifest> {
    Manifest::typed(&ServiceAccount {
        metadata: ctx.metadata(SERVICE_ACCOUNT, Some(NAMESPACE)),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    })
}

/// Where the data plane's pieces are. Credentials are not here: the pods read them from
/// Secrets Manager (by the ARNs below) with their Pod Identity role.
pub fn config_map(ctx: &Context) -> ConfigMap {
    let mut data = BTreeMap::new();
    let mut put = |key: &str, value: String| {
        data.insert(key.to_owned(), value);
    };
    put("APIARY_DEPLOYMENT", ctx.deployment.clone());
    put("AWS_REGION", ctx.region.clone());
    put("AWS_DEFAULT_REGION", ctx.region.clone());
    put("SDK_ENDPOINT", format!("https://{}", ctx.domain));
    put("APP_KMS_KEY_ARN", ctx.app_key_arn.clone());
    for (prefix, store) in [
        ("POSTGRES", &ctx.databases.postgres),
        ("DOCUMENTDB", &ctx.databases.documentdb),
        ("REDIS", &ctx.databases.redis),
    ] {
        let enabled = store.is_some();
        put(&format!("{prefix}_ENABLED"), enabled.to_string());
        if let Some(store) = store {
            put(&format!("{prefix}_HOST"), store.host.clone());
            put(&format!("{prefix}_PORT"), store.port.to_string());
        }
    }
    for (purpose, bucket) in &ctx.buckets {
        let key = purpose.to_ascii_uppercase().replace('-', "_");
        put(&format!("S3_BUCKET_{key}"), bucket.clone());
    }
    ConfigMap {
        metadata: ctx.metadata(CONFIG_MAP, Some(NAMESPACE)),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// A stable hash of the ConfigMap's data.
pub fn config_hash(config_map: &ConfigMap) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in config_map.data.iter().flatten() {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn service(ctx: &Context) -> Result<Manifest> {
    Manifest::typed(&Service {
        metadata: ctx.metadata(APP, Some(NAMESPACE)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(ctx.selector()),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::String("http".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

fn quantity(value: &str) -> Quantity {
    Quantity(value.to_owned())
}

fn http_probe(path: &str, initial_delay: i32, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            scheme: Some("HTTP".to_owned()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        success_threshold: Some(1),
        ..Probe::default()
    }
}

fn spread(key: &str, when_unsatisfiable: &str, ctx: &Context) -> TopologySpreadConstraint {
    TopologySpreadConstraint {
        max_skew: 1,
        topology_key: key.to_owned(),
        when_unsatisfiable: when_unsatisfiable.to_owned(),
        label_selector: Some(LabelSelector {
            match_labels: Some(ctx.selector()),
            ..LabelSelector::default()
        }),
        // Count only pods of the current revision, so a rollout is not blocked by the
        // placement of the pods it is replacing.
        match_label_keys: Some(vec!["pod-template-hash".to_owned()]),
        ..TopologySpreadConstraint::default()
    }
}

fn container(ctx: &Context) -> Container {
    Container {
        name: APP.to_owned(),
        image: Some(ctx.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: CONTAINER_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        // The stores' credentials, from the Secret the CSI driver syncs (EKS only).
        env: ctx.auto_mode.then(|| super::credentials::env(ctx)),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: CONFIG_MAP.to_owned(),
                optional: Some(false),
            }),
            ..EnvFromSource::default()
        }]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), quantity(CPU_REQUEST)),
                ("memory".to_owned(), quantity(MEMORY_REQUEST)),
            ])),
            limits: Some(BTreeMap::from([
                ("cpu".to_owned(), quantity(CPU_LIMIT)),
                ("memory".to_owned(), quantity(MEMORY_LIMIT)),
            ])),
            ..ResourceRequirements::default()
        }),
        readiness_probe: Some(http_probe(READINESS_PATH, 5, 10)),
        liveness_probe: Some(http_probe(LIVENESS_PATH, 15, 20)),
        security_context: Some(SecurityContext {
            read_only_root_filesystem: Some(true),
            run_as_group: Some(RUN_AS_USER),
            ..restricted(RUN_AS_USER)
        }),
        // The root filesystem is read-only; scratch space lives here.
        volume_mounts: Some(
            std::iter::once(VolumeMount {
                name: "tmp".to_owned(),
                mount_path: "/tmp".to_owned(),
                ..VolumeMount::default()
            })
            .chain(ctx.auto_mode.then(super::credentials::volume_mount))
            .collect(),
        ),
        ..Container::default()
    }
}

/// The pod-level half of [`restricted`]: a non-root user and group (and the volumes'
/// group), the runtime's seccomp profile.
pub fn restricted_pod(user: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(user),
        run_as_group: Some(user),
        fs_group: Some(user),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// Pins a pod to the Auto Mode ingestion pool: its nodes run the Pod Identity agent and
/// enforce network policies.
pub fn node_pool_selector() -> BTreeMap<String, String> {
    BTreeMap::from([(NODE_POOL_LABEL.to_owned(), NODE_POOL.to_owned())])
}

/// A container context the Pod Security Standard "restricted" admits: `user`, non-root,
/// no privilege escalation, every capability dropped, the runtime's seccomp profile.
pub fn restricted(user: i64) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        run_as_non_root: Some(true),
        run_as_user: Some(user),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

/// The ingestion Deployment. `replicas` is deliberately absent: the autoscaler owns it,
/// and a server-side apply that set it would undo every scaling decision on each run.
pub fn deployment(ctx: &Context, config_hash: &str) -> Result<Manifest> {
    let node_selector = ctx.auto_mode.then(node_pool_selector);
    let pod = PodSpec {
        service_account_name: Some(SERVICE_ACCOUNT.to_owned()),
        automount_service_account_token: Some(false),
        security_context: Some(restricted_pod(RUN_AS_USER)),
        containers: vec![container(ctx)],
        volumes: Some(
            std::iter::once(Volume {
                name: "tmp".to_owned(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(quantity("256Mi")),
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            })
            .chain(ctx.auto_mode.then(super::credentials::volume))
            .collect(),
        ),
        // Zones are a hard constraint (Karpenter launches nodes in the zone that keeps
        // the spread); hosts are a preference, so a small pool can still place pods.
        topology_spread_constraints: Some(vec![
            spread(ZONE_KEY, "DoNotSchedule", ctx),
            spread(HOSTNAME_KEY, "ScheduleAnyway", ctx),
        ]),
        node_selector,
        termination_grace_period_seconds: Some(30),
        ..PodSpec::default()
    };
    Manifest::typed(&Deployment {
        metadata: ctx.metadata(APP, Some(NAMESPACE)),
        spec: DeploymentSpec {
            selector: LabelSelector {
                match_labels: Some(ctx.selector()),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".to_owned())),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            min_ready_seconds: Some(5),
            progress_deadline_seconds: Some(600),
            revision_history_limit: Some(5),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(ctx.labels()),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_owned(),
                        config_hash.to_owned(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    })
}

pub fn autoscaler(ctx: &Context) -> Result<Manifest> {
    Manifest::typed(&HorizontalPodAutoscaler {
        metadata: ctx.metadata(APP, Some(NAMESPACE)),
        spec: HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name: APP.to_owned(),
            },
            min_replicas: Some(ctx.sizing.ingestion_replicas_min),
            max_replicas: ctx.sizing.ingestion_replicas_max,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_owned(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_owned(),
                    target: MetricTarget {
                        type_: "Utilization".to_owned(),
                        average_utilization: Some(CPU_TARGET_PERCENT),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            ..HorizontalPodAutoscalerSpec::default()
        },
        ..HorizontalPodAutoscaler::default()
    })
}

/// Voluntary disruptions (node consolidation, upgrades) take one pod at a time.
pub fn disruption_budget(ctx: &Context) -> Result<Manifest> {
    Manifest::typed(&PodDisruptionBudget {
        metadata: ctx.metadata(APP, Some(NAMESPACE)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(ctx.selector()),
                ..LabelSelector::default()
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}
