//! Metrics and the alerts drawn from them: Prometheus scrapes the cluster and the
//! ingestion path, keeps a day on its own volume and ships every two-hour block to the
//! metrics bucket (a Thanos sidecar), or, when the spec names a managed Prometheus
//! workspace (`storage.metrics_workspace_arn`), remote-writes every sample to it
//! instead; its rules fire into Alertmanager, which publishes to the deployment's alerts
//! topic.
//!
//! - **What is scraped.** The kubelets and their cAdvisor (pods' CPU, memory, restarts as
//!   the node sees them), kube-state-metrics (the objects' state: replicas available,
//!   pods pending, the autoscaler's ceiling), the node exporter (node memory, disks),
//!   Prometheus, Alertmanager and the sidecar themselves, and any pod of the data plane
//!   annotated `prometheus.io/scrape: "true"`. kube-state-metrics and the node exporter
//!   are EKS community add-ons the cluster step makes.
//! - **Where it is kept.** Prometheus holds [`LOCAL_RETENTION`] on an `emptyDir`; the
//!   sidecar uploads each block as Prometheus closes it (every two hours) under
//!   `prometheus/` in the metrics bucket, whose encryption and lifecycle
//!   (`storage.retention_days`) the storage layer sets. The blocks are Thanos's bucket
//!   format: `thanos tools bucket inspect`, a Thanos store or Grafana through a Thanos
//!   query read them. A pod moved (a node consolidated, a changed configuration) before
//!   its block is shipped loses up to three hours, and Alertmanager its silences.
//!   With a workspace there is no sidecar: Prometheus signs its writes (SigV4, service
//!   `aps`) with the same role and sends each sample within seconds, so a moved pod
//!   loses only what it had not yet sent; the workspace's own retention and key apply,
//!   and the metrics bucket stays empty.
//! - **Who may do what.** Prometheus's service account gets the stack's
//!   `MetricsWriterRole` (write and read under `prometheus/` in the metrics bucket, and
//!   list it: the shipper checks a block is not there before sending it; no delete; with
//!   a workspace, `aps:RemoteWrite` on that workspace only);
//!   Alertmanager's gets `AlertRouterRole` (Publish to the alerts topic). Both by
//!   Pod Identity, made by this step. Prometheus reads the Kubernetes API with a cluster
//!   role that lists and reads what it discovers and the kubelets' `/metrics`, never
//!   `nodes/proxy` (which would reach every pod's exec).
//! - **What reaches it.** Nothing reaches Prometheus (operators port-forward); only
//!   Prometheus reaches Alertmanager. No inbound rule outside the cluster.
//!
//! The pieces are the upstream projects' own images, pinned by version; written here
//! rather than vendored from a chart because no upstream publishes plain manifests for
//! Prometheus with a sidecar (kube-prometheus needs its operator and several thousand
//! lines of CRDs for what these few objects do).

use std::collections::BTreeMap;

use apiary_core::Result;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, StatefulSet, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    HTTPGetAction, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Service, ServiceAccount,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use super::{CONFIG_HASH_ANNOTATION, Context, LABEL_NAME, Manifest};

pub const NAMESPACE: &str = "monitoring";
/// Prometheus's StatefulSet, service account and cluster role. The stack's
/// `MetricsWriterRole` trusts this service account (Pod Identity session tags).
pub const PROMETHEUS: &str = "prometheus";
/// Alertmanager's Deployment, Service and service account, which the stack's
/// `AlertRouterRole` trusts.
pub const ALERTMANAGER: &str = "alertmanager";
pub const PROMETHEUS_IMAGE: &str = "quay.io/prometheus/prometheus:v3.5.0";
pub const THANOS_IMAGE: &str = "quay.io/thanos/thanos:v0.39.2";
pub const ALERTMANAGER_IMAGE: &str = "quay.io/prometheus/alertmanager:v0.28.1";
/// The images' own unprivileged user (`nobody`).
pub const RUN_AS_USER: i64 = 65534;
pub const PROMETHEUS_PORT: i32 = 9090;
pub const ALERTMANAGER_PORT: i32 = 9093;
pub const SIDECAR_HTTP_PORT: i32 = 10902;
/// Where in the metrics bucket the blocks go (`MetricsWriterRole` may write only here).
pub const BUCKET_PREFIX: &str = "prometheus";
/// What Prometheus keeps on its own volume; older data is in the bucket.
pub const LOCAL_RETENTION: &str = "24h";
/// The metrics bucket's key in the storage layer's output.
pub const METRICS_BUCKET: &str = "metrics";
const CONFIG: &str = "prometheus-config";
const ALERTMANAGER_CONFIG: &str = "alertmanager-config";
const DATA: &str = "data";

/// One alert rule: fires when `expr` holds for `for_`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub alert: &'static str,
    pub expr: String,
    pub for_: &'static str,
    /// `critical`: the ingestion path is down or about to be; `warning`: degraded.
    pub severity: &'static str,
    pub summary: &'static str,
}

/// The rules that matter for the ingestion path, each on a metric the scraped sources
/// export (kube-state-metrics, the node exporter, Prometheus, Alertmanager, Thanos).
/// The ingestion image exports no queue metric we know of, so no lag rule; a pod
/// annotated for scraping is scraped, and a rule can be added on what it exports.
/// Whether the metrics leave the cluster is watched where they leave: the sidecar's
/// uploads, or Prometheus's remote write to the workspace.
pub fn rules(ctx: &Context) -> Vec<Rule> {
    let workspace = workspace(ctx).is_some();
    let ns = super::NAMESPACE;
    let app = super::APP;
    vec![
        Rule {
            alert: "IngestionUnavailable",
            expr: format!(
                "kube_deployment_status_replicas_available{{namespace=\"{ns}\",deployment=\"{app}\"}} == 0"
            ),
            for_: "2m",
            severity: "critical",
            summary: "No ingestion pod is ready: the SDK endpoint refuses every event.",
        },
        Rule {
            alert: "IngestionPodsNotReady",
            expr: format!(
                "kube_deployment_status_replicas_available{{namespace=\"{ns}\",deployment=\"{app}\"}} < kube_deployment_spec_replicas{{namespace=\"{ns}\",deployment=\"{app}\"}}"
            ),
            for_: "10m",
            severity: "warning",
            summary: "Fewer ingestion pods are ready than the Deployment wants.",
        },
        Rule {
            alert: "IngestionPodsPending",
            expr: format!(
                "sum(kube_pod_status_phase{{namespace=\"{ns}\",phase=\"Pending\"}}) > 0"
            ),
            for_: "15m",
            severity: "warning",
            summary: "Ingestion pods wait for a node: the node pool may be at its limit.",
        },
        Rule {
            alert: "IngestionPodRestarting",
            expr: format!(
                "increase(kube_pod_container_status_restarts_total{{namespace=\"{ns}\"}}[15m]) > 2"
            ),
            for_: "1m",
            severity: "warning",
            summary: "An ingestion container restarted more than twice in 15 minutes.",
        },
        Rule {
            alert: "IngestionAtMaxReplicas",
            expr: format!(
                "kube_horizontalpodautoscaler_status_current_replicas{{namespace=\"{ns}\",horizontalpodautoscaler=\"{app}\"}} >= kube_horizontalpodautoscaler_spec_max_replicas{{namespace=\"{ns}\",horizontalpodautoscaler=\"{app}\"}}"
            ),
            for_: "30m",
            severity: "warning",
            summary: "The ingestion autoscaler has been at its ceiling for 30 minutes: raise the size preset or scale-pools.",
        },
        Rule {
            alert: "NodeUnderPressure",
            expr: "kube_node_status_condition{condition=~\"MemoryPressure|DiskPressure|PIDPressure\",status=\"true\"} == 1".to_owned(),
            for_: "5m",
            severity: "warning",
            summary: "A node reports memory, disk or process pressure: its pods may be evicted.",
        },
        Rule {
            alert: "NodeNotReady",
            expr: "kube_node_status_condition{condition=\"Ready\",status=\"true\"} == 0".to_owned(),
            for_: "10m",
            severity: "warning",
            summary: "A node has not been Ready for 10 minutes.",
        },
        Rule {
            alert: "NodeDiskFilling",
            // Read-only filesystems (an immutable OS's root) are full by design.
            expr: "node_filesystem_avail_bytes{fstype!~\"tmpfs|overlay\"} / node_filesystem_size_bytes{fstype!~\"tmpfs|overlay\"} < 0.1 and node_filesystem_readonly{fstype!~\"tmpfs|overlay\"} == 0".to_owned(),
            for_: "15m",
            severity: "warning",
            summary: "A node filesystem has less than 10% free.",
        },
        if workspace {
            Rule {
                alert: "MetricsNotShipped",
                // Samples the workspace refused (permissions, a disabled key), or a
                // queue falling behind what was scraped (unreachable, throttled).
                expr: "increase(prometheus_remote_storage_samples_failed_total[15m]) > 0 or (max(prometheus_remote_storage_highest_timestamp_in_seconds) - max(prometheus_remote_storage_queue_highest_sent_timestamp_seconds)) > 600".to_owned(),
                for_: "5m",
                severity: "warning",
                summary: "Prometheus fails to write to the metrics workspace: metrics older than a day will be missing.",
            }
        } else {
            Rule {
                alert: "MetricsNotShipped",
                // The shipper counts a failed sync here (its upload-failures counter
                // moves only with out-of-order uploads, which are off).
                expr: "increase(thanos_shipper_dir_sync_failures_total[1h]) > 0".to_owned(),
                for_: "1m",
                severity: "warning",
                summary: "Prometheus blocks failed to upload to the metrics bucket: metrics older than a day will be missing.",
            }
        },
        Rule {
            alert: "MetricsSourceMissing",
            // A source never discovered has no `up` series at all, so `up == 0` stays
            // quiet and every rule on its metrics with it.
            expr: if workspace {
                "absent(up{job=\"kube-state-metrics\"}) or absent(up{job=\"node-exporter\"})"
            } else {
                "absent(up{job=\"kube-state-metrics\"}) or absent(up{job=\"node-exporter\"}) or absent(up{job=\"thanos-sidecar\"})"
            }
            .to_owned(),
            for_: "15m",
            severity: "warning",
            summary: "A metrics source is not discovered at all: the alerts that read it cannot fire.",
        },
        Rule {
            alert: "AlertsNotDelivered",
            expr: "increase(alertmanager_notifications_failed_total{integration=\"sns\"}[30m]) > 0".to_owned(),
            for_: "1m",
            severity: "critical",
            summary: "Alertmanager failed to publish to the alerts topic (this alert may not reach it either).",
        },
        Rule {
            alert: "MetricsTargetDown",
            expr: "up == 0".to_owned(),
            for_: "15m",
            severity: "warning",
            summary: "A scrape target has been unreachable for 15 minutes.",
        },
    ]
}

/// The rule file Prometheus loads.
pub fn rules_file(ctx: &Context) -> Result<String> {
    let rules: Vec<Value> = rules(ctx)
        .into_iter()
        .map(|r| {
            json!({
                "alert": r.alert,
                "expr": r.expr,
                "for": r.for_,
                "labels": {"severity": r.severity},
                "annotations": {"summary": r.summary},
            })
        })
        .collect();
    yaml(&json!({"groups": [{"name": "ingestion-path", "rules": rules}]}))
}

/// The workspace the metrics go to, and its remote-write URL (the spec checked the ARN:
/// `arn:<partition>:aps:<region>:<account>:workspace/<id>`, in the deployment's region).
pub fn workspace(ctx: &Context) -> Option<(String, String)> {
    let arn = ctx.metrics_workspace_arn.as_deref()?;
    let id = arn.rsplit_once(":workspace/")?.1;
    let url = format!(
        "https://aps-workspaces.{region}.{suffix}/workspaces/{id}/api/v1/remote_write",
        region = ctx.region,
        suffix = apiary_core::aws::dns_suffix(&ctx.region),
    );
    Some((arn.to_owned(), url))
}

fn yaml(value: &Value) -> Result<String> {
    serde_yaml::to_string(value).map_err(|e| {
        apiary_core::Error::fatal(format!("monitoring config does not serialise: {e}"))
    })
}

/// Where the scrape targets are and how to reach them. The kubelets are scraped
/// directly with the service account's token (`nodes/metrics`); a kubelet's serving
/// certificate is not signed by the cluster CA on every kind of node, so the connection
/// is TLS without verifying the name, as the upstream kube-prometheus configuration does.
pub fn prometheus_config(ctx: &Context) -> Result<String> {
    let token = "/var/run/secrets/kubernetes.io/serviceaccount/token";
    let ca = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
    let kubelet = |job: &str, path: &str| {
        json!({
            "job_name": job,
            "scheme": "https",
            "metrics_path": path,
            "authorization": {"credentials_file": token},
            "tls_config": {"ca_file": ca, "insecure_skip_verify": true},
            "kubernetes_sd_configs": [{"role": "node"}],
            "relabel_configs": [
                {"source_labels": ["__meta_kubernetes_node_name"], "target_label": "node"},
            ],
        })
    };
    // A Service of an add-on, found by its name label in whatever namespace it runs.
    // kube-state-metrics' series name the object they describe (`node`, `pod`,
    // `namespace`): its labels win over the target's. The node exporter's target is the
    // node it describes.
    let addon = |job: &str, name: &str, describes_objects: bool| {
        let mut relabel = vec![json!({
            "source_labels": ["__meta_kubernetes_service_label_app_kubernetes_io_name"],
            "regex": name,
            "action": "keep",
        })];
        if !describes_objects {
            relabel.push(json!({"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"}));
        }
        json!({
            "job_name": job,
            "honor_labels": describes_objects,
            "kubernetes_sd_configs": [{"role": "endpointslice"}],
            "relabel_configs": relabel,
        })
    };
    let mut config = json!({
        "global": {
            "scrape_interval": "30s",
            "evaluation_interval": "30s",
            // The sidecar requires them; they name whose blocks these are in the bucket
            // (or whose series these are in a shared workspace). Named apart from every
            // exporter's labels: read back, an external label replaces a series' own
            // (kube-state-metrics' `deployment`).
            "external_labels": {
                "apiary_deployment": ctx.deployment,
                "apiary_cluster": ctx.cluster_name,
            },
        },
        "rule_files": ["/etc/prometheus/rules.yml"],
        "alerting": {"alertmanagers": [{
            "static_configs": [{"targets": [format!("{ALERTMANAGER}.{NAMESPACE}.svc:{ALERTMANAGER_PORT}")]}],
        }]},
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [format!("localhost:{PROMETHEUS_PORT}")]}]},
            {"job_name": "alertmanager", "static_configs": [{"targets": [format!("{ALERTMANAGER}.{NAMESPACE}.svc:{ALERTMANAGER_PORT}")]}]},
            kubelet("kubelet", "/metrics"),
            kubelet("cadvisor", "/metrics/cadvisor"),
            addon("kube-state-metrics", "kube-state-metrics", true),
            addon("node-exporter", "prometheus-node-exporter", false),
            {
                "job_name": "data-plane-pods",
                "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [super::NAMESPACE]}}],
                "relabel_configs": [
                    {
                        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                        "regex": "true",
                        "action": "keep",
                    },
                    {
                        "source_labels": ["__meta_kubernetes_pod_phase"],
                        "regex": "Succeeded|Failed",
                        "action": "drop",
                    },
                    {
                        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                        "regex": "(.+)",
                        "target_label": "__metrics_path__",
                    },
                    // The annotated port, else each declared one.
                    {
                        "source_labels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"],
                        "regex": "([^:]+)(?::\\d+)?;(\\d+)",
                        "replacement": "$1:$2",
                        "target_label": "__address__",
                    },
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                ],
            },
        ],
    });
    match workspace(ctx) {
        // Signed with the pod's credentials (Pod Identity) for the workspace's region.
        Some((_, url)) => {
            config["remote_write"] = json!([{
                "url": url,
                "sigv4": {"region": ctx.region},
                "queue_config": {"max_samples_per_send": 1000, "max_shards": 200, "capacity": 2500},
            }]);
        }
        None => {
            config["scrape_configs"]
                .as_array_mut()
                .expect("scrape_configs is a list")
                .insert(1, json!({"job_name": "thanos-sidecar", "static_configs": [{"targets": [format!("localhost:{SIDECAR_HTTP_PORT}")]}]}));
        }
    }
    yaml(&config)
}

/// The sidecar's bucket: the storage layer's metrics bucket, by the SDK's default
/// credentials (Pod Identity), under [`BUCKET_PREFIX`]. The bucket's default encryption
/// (the deployment's s3 key) applies to every object.
pub fn bucket_config(ctx: &Context) -> Result<String> {
    let bucket = ctx.buckets.get(METRICS_BUCKET).ok_or_else(|| {
        apiary_core::Error::invalid_input(format!(
            "layers.storage.buckets has no {METRICS_BUCKET:?} bucket: Prometheus has nowhere to keep its metrics"
        ))
    })?;
    yaml(&json!({
        "type": "S3",
        "prefix": BUCKET_PREFIX,
        "config": {
            "bucket": bucket,
            "endpoint": format!("s3.{}.{}", ctx.region, apiary_core::aws::dns_suffix(&ctx.region)),
            "region": ctx.region,
            "aws_sdk_auth": true,
            "insecure": false,
        },
    }))
}

/// Every alert goes to the alerts topic, grouped by alert, resolved ones too. Without a
/// topic (a run outside the stack) Alertmanager keeps them for its own page only.
pub fn alertmanager_config(ctx: &Context) -> Result<String> {
    let mut receiver = json!({"name": "alerts-topic"});
    if let Some(topic) = &ctx.alert_topic_arn {
        receiver["sns_configs"] = json!([{
            "topic_arn": topic,
            "sigv4": {"region": ctx.region},
            "send_resolved": true,
            "subject": format!(
                "[{{{{ .Status | toUpper }}}}] Apiary {}: {{{{ .GroupLabels.alertname }}}}",
                ctx.deployment
            ),
        }]);
    }
    yaml(&json!({
        "route": {
            "receiver": "alerts-topic",
            "group_by": ["alertname"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
        },
        "receivers": [receiver],
    }))
}

fn selector(app: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_NAME.to_owned(), app.to_owned())])
}

fn label_selector(app: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector(app)),
        ..LabelSelector::default()
    }
}

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_owned()),
        ..NetworkPolicyPort::default()
    }
}

fn http_probe(path: &str, port: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(port),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(10),
        period_seconds: Some(15),
        ..Probe::default()
    }
}

fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity(memory_limit.to_owned()),
        )])),
        ..ResourceRequirements::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

fn config_volume(name: &str, config_map: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_owned(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// A pod template on the Auto Mode pool (its nodes run the Pod Identity agent and
/// enforce network policies), restricted, rolled when its configuration changes.
fn template(
    ctx: &Context,
    app: &str,
    config_hash: String,
    automount_token: bool,
    containers: Vec<Container>,
    volumes: Vec<Volume>,
) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(ctx.component_labels(app)),
            annotations: Some(BTreeMap::from([(
                CONFIG_HASH_ANNOTATION.to_owned(),
                config_hash,
            )])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            node_selector: Some(super::workload::node_pool_selector()),
            service_account_name: Some(app.to_owned()),
            automount_service_account_token: Some(automount_token),
            security_context: Some(super::workload::restricted_pod(RUN_AS_USER)),
            containers,
            volumes: Some(volumes),
            ..PodSpec::default()
        }),
    }
}

/// Every object of the metrics stack, in apply order.
pub fn build(ctx: &Context) -> Result<Vec<Manifest>> {
    let mut files = BTreeMap::from([
        ("prometheus.yml".to_owned(), prometheus_config(ctx)?),
        ("rules.yml".to_owned(), rules_file(ctx)?),
    ]);
    if workspace(ctx).is_none() {
        files.insert("bucket.yml".to_owned(), bucket_config(ctx)?);
    }
    let prometheus_config = ConfigMap {
        metadata: ctx.component_metadata(PROMETHEUS, CONFIG, Some(NAMESPACE)),
        data: Some(files),
        ..ConfigMap::default()
    };
    let alertmanager_config = ConfigMap {
        metadata: ctx.component_metadata(ALERTMANAGER, ALERTMANAGER_CONFIG, Some(NAMESPACE)),
        data: Some(BTreeMap::from([(
            "alertmanager.yml".to_owned(),
            alertmanager_config(ctx)?,
        )])),
        ..ConfigMap::default()
    };
    let prometheus_hash = super::workload::config_hash(&prometheus_config);
    let alertmanager_hash = super::workload::config_hash(&alertmanager_config);
    let mut objects = vec![
        super::restricted_namespace(ctx, NAMESPACE, PROMETHEUS)?,
        service_account(ctx, PROMETHEUS, true)?,
        service_account(ctx, ALERTMANAGER, false)?,
        cluster_role(ctx)?,
        cluster_role_binding(ctx)?,
        Manifest::typed(&prometheus_config)?,
        Manifest::typed(&alertmanager_config)?,
        prometheus(ctx, prometheus_hash)?,
        alertmanager(ctx, alertmanager_hash)?,
        prometheus_service(ctx)?,
        alertmanager_service(ctx)?,
        network_policy(ctx, PROMETHEUS, Vec::new())?,
        network_policy(
            ctx,
            ALERTMANAGER,
            vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(label_selector(PROMETHEUS)),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: Some(vec![tcp(ALERTMANAGER_PORT)]),
            }],
        )?,
    ];
    for object in &mut objects {
        object.auto_mode_only = true;
    }
    Ok(objects)
}

/// Prometheus's token is mounted: it discovers its targets through the API and shows
/// it to the kubelets. Alertmanager calls no Kubernetes API.
fn service_account(ctx: &Context, app: &str, automount: bool) -> Result<Manifest> {
    Manifest::typed(&ServiceAccount {
        metadata: ctx.component_metadata(app, app, Some(NAMESPACE)),
        automount_service_account_token: Some(automount),
        ..ServiceAccount::default()
    })
}

/// What discovery reads, and the kubelets' metrics. Read-only; no Secret, no
/// `nodes/proxy`.
fn cluster_role(ctx: &Context) -> Result<Manifest> {
    let rule = |groups: &[&str], resources: &[&str]| PolicyRule {
        api_groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: vec!["get".to_owned(), "list".to_owned(), "watch".to_owned()],
        ..PolicyRule::default()
    };
    Manifest::typed(&ClusterRole {
        metadata: ctx.component_metadata(PROMETHEUS, &cluster_role_name(ctx), None),
        rules: Some(vec![
            rule(
                &[""],
                &["nodes", "nodes/metrics", "services", "endpoints", "pods"],
            ),
            rule(&["discovery.k8s.io"], &["endpointslices"]),
        ]),
        ..ClusterRole::default()
    })
}

/// Cluster-scoped names carry the deployment's, as the node pool's do.
pub fn cluster_role_name(ctx: &Context) -> String {
    format!("apiary-{}-prometheus", ctx.deployment)
}

fn cluster_role_binding(ctx: &Context) -> Result<Manifest> {
    let name = cluster_role_name(ctx);
    Manifest::typed(&ClusterRoleBinding {
        metadata: ctx.component_metadata(PROMETHEUS, &name, None),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "ClusterRole".to_owned(),
            name,
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: PROMETHEUS.to_owned(),
            namespace: Some(NAMESPACE.to_owned()),
            ..Subject::default()
        }]),
    })
}

/// One replica: two would upload the same blocks (or write the same series) twice. Its
/// data is an `emptyDir` bounded by what a day takes; everything older is in the bucket
/// or the workspace.
fn prometheus(ctx: &Context, config_hash: String) -> Result<Manifest> {
    let restricted = super::workload::restricted(RUN_AS_USER);
    let shipped = workspace(ctx).is_none();
    let mut args = vec![
        "--config.file=/etc/prometheus/prometheus.yml".to_owned(),
        "--storage.tsdb.path=/prometheus".to_owned(),
        format!("--storage.tsdb.retention.time={LOCAL_RETENTION}"),
    ];
    if shipped {
        // Blocks stay two hours long: the sidecar ships them, nothing compacts them
        // locally.
        args.push("--storage.tsdb.min-block-duration=2h".to_owned());
        args.push("--storage.tsdb.max-block-duration=2h".to_owned());
    }
    args.push(format!("--web.listen-address=:{PROMETHEUS_PORT}"));
    let prometheus = Container {
        name: PROMETHEUS.to_owned(),
        image: Some(PROMETHEUS_IMAGE.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(args),
        ports: Some(vec![ContainerPort {
            name: Some("web".to_owned()),
            container_port: PROMETHEUS_PORT,
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(http_probe("/-/ready", PROMETHEUS_PORT)),
        liveness_probe: Some(http_probe("/-/healthy", PROMETHEUS_PORT)),
        resources: Some(resources("250m", "1Gi", "2Gi")),
        security_context: Some(restricted.clone()),
        volume_mounts: Some(vec![
            mount("config", "/etc/prometheus", true),
            mount(DATA, "/prometheus", false),
        ]),
        ..Container::default()
    };
    let sidecar = Container {
        name: "thanos-sidecar".to_owned(),
        image: Some(THANOS_IMAGE.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(vec![
            "sidecar".to_owned(),
            "--tsdb.path=/prometheus".to_owned(),
            format!("--prometheus.url=http://localhost:{PROMETHEUS_PORT}"),
            "--objstore.config-file=/etc/prometheus/bucket.yml".to_owned(),
            format!("--http-address=0.0.0.0:{SIDECAR_HTTP_PORT}"),
            // Nothing queries the sidecar: its store API stays on loopback.
            "--grpc-address=127.0.0.1:10901".to_owned(),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("sidecar-http".to_owned()),
            container_port: SIDECAR_HTTP_PORT,
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(http_probe("/-/ready", SIDECAR_HTTP_PORT)),
        resources: Some(resources("50m", "128Mi", "512Mi")),
        security_context: Some(restricted),
        volume_mounts: Some(vec![
            mount("config", "/etc/prometheus", true),
            mount(DATA, "/prometheus", false),
        ]),
        ..Container::default()
    };
    let volumes = vec![
        config_volume("config", CONFIG),
        Volume {
            name: DATA.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("20Gi".to_owned())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    Manifest::typed(&StatefulSet {
        metadata: ctx.component_metadata(PROMETHEUS, PROMETHEUS, Some(NAMESPACE)),
        spec: StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(PROMETHEUS.to_owned()),
            selector: label_selector(PROMETHEUS),
            template: template(
                ctx,
                PROMETHEUS,
                config_hash,
                true,
                if shipped {
                    vec![prometheus, sidecar]
                } else {
                    vec![prometheus]
                },
                volumes,
            ),
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    })
}

/// One replica (a second would need its cluster peers; an alert delayed by a restart
/// is sent once the pod is back, since Prometheus re-sends firing alerts).
fn alertmanager(ctx: &Context, config_hash: String) -> Result<Manifest> {
    let container = Container {
        name: ALERTMANAGER.to_owned(),
        image: Some(ALERTMANAGER_IMAGE.to_owned()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        args: Some(vec![
            "--config.file=/etc/alertmanager/alertmanager.yml".to_owned(),
            "--storage.path=/alertmanager".to_owned(),
            format!("--web.listen-address=:{ALERTMANAGER_PORT}"),
            // A single replica: no gossip port.
            "--cluster.listen-address=".to_owned(),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("web".to_owned()),
            container_port: ALERTMANAGER_PORT,
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(http_probe("/-/ready", ALERTMANAGER_PORT)),
        liveness_probe: Some(http_probe("/-/healthy", ALERTMANAGER_PORT)),
        resources: Some(resources("25m", "64Mi", "256Mi")),
        security_context: Some(super::workload::restricted(RUN_AS_USER)),
        volume_mounts: Some(vec![
            mount("config", "/etc/alertmanager", true),
            mount(DATA, "/alertmanager", false),
        ]),
        ..Container::default()
    };
    let volumes = vec![
        config_volume("config", ALERTMANAGER_CONFIG),
        Volume {
            name: DATA.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    Manifest::typed(&Deployment {
        metadata: ctx.component_metadata(ALERTMANAGER, ALERTMANAGER, Some(NAMESPACE)),
        spec: DeploymentSpec {
            replicas: Some(1),
            selector: label_selector(ALERTMANAGER),
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                rolling_update: None,
            }),
            template: template(
                ctx,
                ALERTMANAGER,
                config_hash,
                false,
                vec![container],
                volumes,
            ),
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    })
}

/// The StatefulSet's governing Service (headless: it gives the pod its DNS name only;
/// the network policy still admits nobody).
fn prometheus_service(ctx: &Context) -> Result<Manifest> {
    Manifest::typed(&Service {
        metadata: ctx.component_metadata(PROMETHEUS, PROMETHEUS, Some(NAMESPACE)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            selector: Some(selector(PROMETHEUS)),
            ports: Some(vec![ServicePort {
                name: Some("web".to_owned()),
                port: PROMETHEUS_PORT,
                target_port: Some(IntOrString::Int(PROMETHEUS_PORT)),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

fn alertmanager_service(ctx: &Context) -> Result<Manifest> {
    Manifest::typed(&Service {
        metadata: ctx.component_metadata(ALERTMANAGER, ALERTMANAGER, Some(NAMESPACE)),
        spec: Some(ServiceSpec {
            selector: Some(selector(ALERTMANAGER)),
            ports: Some(vec![ServicePort {
                name: Some("web".to_owned()),
                port: ALERTMANAGER_PORT,
                target_port: Some(IntOrString::Int(ALERTMANAGER_PORT)),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// Ingress only by the rules given (none: nothing may connect). Egress is open:
/// Prometheus reaches every node and pod it scrapes, both reach AWS APIs.
fn network_policy(
    ctx: &Context,
    app: &str,
    ingress: Vec<NetworkPolicyIngressRule>,
) -> Result<Manifest> {
    Manifest::typed(&NetworkPolicy {
        metadata: ctx.component_metadata(app, app, Some(NAMESPACE)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(label_selector(app)),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: (!ingress.is_empty()).then_some(ingress),
            ..NetworkPolicySpec::default()
        }),
    })
}

/// The peer the ingestion pods' policy admits for scraping: Prometheus's pods.
pub fn scraper_peer() -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                NAMESPACE.to_owned(),
            )])),
            ..LabelSelector::default()
        }),
        pod_selector: Some(label_selector(PROMETHEUS)),
        ..NetworkPolicyPeer::default()
    }
}
