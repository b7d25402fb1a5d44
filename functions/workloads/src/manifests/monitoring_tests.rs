//! The metrics stack: what is rendered, that its rules are PromQL Prometheus will load
//! and that they watch the objects this step actually makes, and that what it may do is
//! what the bootstrap stack's roles expect.

use serde_json::{Value, json};

use super::monitoring::{self, ALERTMANAGER, NAMESPACE, PROMETHEUS};
use super::tests::{body, built};
use super::*;
use crate::test_support::context;

const TOPIC: &str = "arn:aws:sns:us-west-2:123456789012:apiary-acme-prod-alerts";

/// The metrics stack's objects for the fixture deployment, in apply order.
pub(super) const STACK: [&str; 13] = [
    "Namespace monitoring",
    "ServiceAccount monitoring/prometheus",
    "ServiceAccount monitoring/alertmanager",
    "ClusterRole apiary-acme-prod-prometheus",
    "ClusterRoleBinding apiary-acme-prod-prometheus",
    "ConfigMap monitoring/prometheus-config",
    "ConfigMap monitoring/alertmanager-config",
    "StatefulSet monitoring/prometheus",
    "Deployment monitoring/alertmanager",
    "Service monitoring/prometheus",
    "Service monitoring/alertmanager",
    "NetworkPolicy monitoring/prometheus",
    "NetworkPolicy monitoring/alertmanager",
];

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).expect("the file is YAML")
}

fn config_file(objects: &[Manifest], config_map: &str, key: &str) -> Value {
    let data = &body(objects, "ConfigMap", config_map)["data"][key];
    yaml(
        data.as_str()
            .unwrap_or_else(|| panic!("{config_map} has no {key}")),
    )
}

#[test]
fn the_metrics_stack_is_built_after_the_ingestion_objects_and_only_for_auto_mode() {
    let objects = built();
    let stack: Vec<String> = objects
        .iter()
        .filter(|m| {
            m.namespace.as_deref() == Some(NAMESPACE)
                || m.name == NAMESPACE
                || m.name.contains("prometheus")
        })
        .map(Manifest::display)
        .collect();
    assert_eq!(stack, STACK);
    for m in objects
        .iter()
        .filter(|m| m.namespace.as_deref() == Some(NAMESPACE))
    {
        // Pod Identity and network policies: only Auto Mode nodes have both.
        assert!(m.auto_mode_only, "{}", m.display());
        (m.validate)(&m.body).unwrap_or_else(|e| panic!("{}: {e}", m.display()));
    }
    let mut plain = context();
    plain.auto_mode = false;
    let plain = build(&plain).unwrap();
    assert!(
        !plain
            .iter()
            .any(|m| m.namespace.as_deref() == Some(NAMESPACE)),
        "a plain cluster gets no metrics stack"
    );
    let namespace = body(&objects, "Namespace", NAMESPACE);
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}

#[test]
fn prometheus_ships_blocks_to_the_metrics_bucket_under_the_prefix_its_role_may_write() {
    let ctx = context();
    let objects = build(&ctx).unwrap();
    let bucket = config_file(&objects, "prometheus-config", "bucket.yml");
    assert_eq!(bucket["type"], "S3");
    assert_eq!(bucket["config"]["bucket"], json!(ctx.buckets["metrics"]));
    assert_eq!(bucket["config"]["region"], "us-west-2");
    assert_eq!(bucket["config"]["aws_sdk_auth"], true);
    assert_eq!(bucket["config"]["insecure"], false);
    assert_eq!(bucket["prefix"], monitoring::BUCKET_PREFIX);

    let sts = body(&objects, "StatefulSet", PROMETHEUS);
    assert_eq!(
        sts["spec"]["replicas"], 1,
        "two would ship every block twice"
    );
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], PROMETHEUS);
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(pod["nodeSelector"]["karpenter.sh/nodepool"], NODE_POOL);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let containers = pod["containers"].as_array().unwrap();
    let args = |name: &str| -> Vec<String> {
        let c = containers.iter().find(|c| c["name"] == name).unwrap();
        serde_json::from_value(c["args"].clone()).unwrap()
    };
    // Two-hour blocks never compacted locally: the sidecar uploads only those.
    let prometheus = args(PROMETHEUS);
    assert!(prometheus.contains(&"--storage.tsdb.min-block-duration=2h".to_owned()));
    assert!(prometheus.contains(&"--storage.tsdb.max-block-duration=2h".to_owned()));
    assert!(
        !prometheus.iter().any(|a| a.contains("enable-lifecycle")),
        "the unauthenticated reload endpoint stays off"
    );
    let sidecar = args("thanos-sidecar");
    assert!(sidecar.contains(&"--objstore.config-file=/etc/prometheus/bucket.yml".to_owned()));
    assert!(sidecar.contains(&"--grpc-address=127.0.0.1:10901".to_owned()));
    for c in containers {
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    }

    // Without the bucket the error names where it was looked for.
    let mut ctx = context();
    ctx.buckets.remove("metrics");
    let err = build(&ctx).unwrap_err().to_string();
    assert!(err.contains("layers.storage.buckets"), "{err}");
}

const WORKSPACE: &str =
    "arn:aws:aps:us-west-2:123456789012:workspace/ws-0123abcd-4567-89ef-0123-456789abcdef";

fn with_workspace() -> Context {
    let mut ctx = context();
    ctx.metrics_workspace_arn = Some(WORKSPACE.to_owned());
    ctx
}

/// With a managed workspace Prometheus remote-writes every sample to it, signed for the
/// deployment's region; nothing is shipped to the bucket (no sidecar, no bucket file,
/// no sidecar job an absent-rule would wait for), and the rules watch the remote write.
#[test]
fn with_a_workspace_prometheus_writes_to_it_and_ships_nothing_to_the_bucket() {
    let mut ctx = with_workspace();
    // The metrics bucket is not needed at all.
    ctx.buckets.remove("metrics");
    let objects = build(&ctx).unwrap();
    let config = config_file(&objects, "prometheus-config", "prometheus.yml");
    let writes = config["remote_write"].as_array().expect("remote_write");
    assert_eq!(writes.len(), 1);
    assert_eq!(
        writes[0]["url"],
        "https://aps-workspaces.us-west-2.amazonaws.com/workspaces/ws-0123abcd-4567-89ef-0123-456789abcdef/api/v1/remote_write"
    );
    assert_eq!(writes[0]["sigv4"], json!({"region": "us-west-2"}));
    let data = &body(&objects, "ConfigMap", "prometheus-config")["data"];
    assert!(data.get("bucket.yml").is_none(), "{data}");
    let jobs = config["scrape_configs"].to_string();
    assert!(!jobs.contains("thanos"), "{jobs}");
    let sts = body(&objects, "StatefulSet", PROMETHEUS);
    let containers = sts["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [PROMETHEUS]);
    assert!(
        !containers[0]["args"].to_string().contains("block-duration"),
        "local compaction stays on without a shipper"
    );
    let rules = monitoring::rules(&ctx);
    let shipped = rules
        .iter()
        .find(|r| r.alert == "MetricsNotShipped")
        .unwrap();
    assert!(
        shipped
            .expr
            .contains("prometheus_remote_storage_samples_failed_total"),
        "{}",
        shipped.expr
    );
    assert!(rules.iter().all(|r| !r.expr.contains("thanos")));

    // The bucket path, for contrast: a sidecar and no remote write.
    let objects = build(&context()).unwrap();
    let config = config_file(&objects, "prometheus-config", "prometheus.yml");
    assert!(config.get("remote_write").is_none(), "{config}");
    assert!(
        config["scrape_configs"]
            .to_string()
            .contains("thanos-sidecar")
    );
}

/// What each scraped series is labelled with: the object kube-state-metrics describes
/// keeps its own `node`; the blocks' external labels collide with no exporter's label
/// (read back from the bucket, an external label replaces a series' own); an annotated
/// pod is scraped on its annotated port.
#[test]
fn scraped_series_keep_their_own_labels() {
    let objects = built();
    let config = config_file(&objects, "prometheus-config", "prometheus.yml");
    let mut external: Vec<&String> = config["global"]["external_labels"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    external.sort();
    assert_eq!(external, ["apiary_cluster", "apiary_deployment"]);
    let job = |name: &str| {
        config["scrape_configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["job_name"] == name)
            .unwrap_or_else(|| panic!("no job {name}"))
            .clone()
    };
    let ksm = job("kube-state-metrics");
    assert_eq!(ksm["honor_labels"], true);
    assert!(
        !ksm["relabel_configs"]
            .to_string()
            .contains("\"target_label\":\"node\""),
        "{ksm}"
    );
    assert_eq!(ksm["kubernetes_sd_configs"][0]["role"], "endpointslice");
    let exporter = job("node-exporter");
    assert_eq!(exporter["honor_labels"], false);
    let pods = job("data-plane-pods");
    let port = pods["relabel_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["target_label"] == "__address__")
        .expect("the port annotation is honoured");
    // As Prometheus applies it: anchored, the source labels joined with `;`, `$1:$2`.
    let regex = regex::Regex::new(&format!("^(?:{})$", port["regex"].as_str().unwrap())).unwrap();
    let replacement = port["replacement"].as_str().unwrap();
    let relabel = |value: &str| {
        regex.captures(value).map(|c| {
            let mut out = String::new();
            c.expand(replacement, &mut out);
            out
        })
    };
    assert_eq!(
        relabel("10.0.0.7:8080;9102").as_deref(),
        Some("10.0.0.7:9102")
    );
    assert_eq!(relabel("10.0.0.7;9102").as_deref(), Some("10.0.0.7:9102"));
    assert_eq!(
        relabel("10.0.0.7:8080;"),
        None,
        "no annotation: the declared port stays"
    );
}

#[test]
fn a_changed_configuration_rolls_the_pods() {
    let ctx = context();
    let hash = |objects: &[Manifest], kind: &str, name: &str| {
        body(objects, kind, name)["spec"]["template"]["metadata"]["annotations"]
            [CONFIG_HASH_ANNOTATION]
            .clone()
    };
    let before = build(&ctx).unwrap();
    let mut changed = ctx.clone();
    changed.alert_topic_arn = Some(TOPIC.to_owned());
    let after = build(&changed).unwrap();
    assert_ne!(
        hash(&before, "Deployment", ALERTMANAGER),
        hash(&after, "Deployment", ALERTMANAGER)
    );
    assert_eq!(
        hash(&before, "StatefulSet", PROMETHEUS),
        hash(&after, "StatefulSet", PROMETHEUS)
    );
    let mut moved = ctx.clone();
    moved
        .buckets
        .insert("metrics".to_owned(), "another-bucket".to_owned());
    let moved = build(&moved).unwrap();
    assert_ne!(
        hash(&before, "StatefulSet", PROMETHEUS),
        hash(&moved, "StatefulSet", PROMETHEUS)
    );
}

#[test]
fn alerts_go_to_the_alerts_topic_and_nowhere_without_one() {
    let mut ctx = context();
    ctx.alert_topic_arn = Some(TOPIC.to_owned());
    let objects = build(&ctx).unwrap();
    let config = config_file(&objects, "alertmanager-config", "alertmanager.yml");
    let receivers = config["receivers"].as_array().unwrap();
    assert_eq!(receivers.len(), 1);
    assert_eq!(config["route"]["receiver"], receivers[0]["name"]);
    let sns = &receivers[0]["sns_configs"][0];
    assert_eq!(sns["topic_arn"], TOPIC);
    assert_eq!(sns["sigv4"]["region"], "us-west-2");
    assert_eq!(sns["send_resolved"], true);
    assert!(
        sns["subject"]
            .as_str()
            .unwrap()
            .starts_with("[{{ .Status | toUpper }}] Apiary acme-prod: "),
        "{sns}"
    );
    let prometheus = config_file(&objects, "prometheus-config", "prometheus.yml");
    assert_eq!(
        prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"],
        json!(["alertmanager.monitoring.svc:9093"])
    );
    let service = body(&objects, "Service", ALERTMANAGER);
    assert_eq!(service["spec"]["ports"][0]["port"], 9093);
    let governing = body(&objects, "Service", PROMETHEUS);
    assert_eq!(governing["spec"]["clusterIP"], "None");
    assert_eq!(
        body(&objects, "StatefulSet", PROMETHEUS)["spec"]["serviceName"],
        PROMETHEUS
    );

    let objects = build(&context()).unwrap();
    let config = config_file(&objects, "alertmanager-config", "alertmanager.yml");
    assert!(
        config["receivers"][0].get("sns_configs").is_none(),
        "{config}"
    );
}

/// Every expression is PromQL (Prometheus refuses a rule file with one bad expression,
/// and then no rule fires), every duration is one Prometheus reads, and every metric is
/// one a scraped source exports.
#[test]
fn every_alert_rule_is_promql_on_a_scraped_metric() {
    for ctx in [context(), with_workspace()] {
        every_rule_is_promql_on_a_scraped_metric(&ctx);
    }
}

fn every_rule_is_promql_on_a_scraped_metric(ctx: &Context) {
    let objects = build(ctx).unwrap();
    let file = config_file(&objects, "prometheus-config", "rules.yml");
    let rules = file["groups"][0]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), monitoring::rules(ctx).len());
    let config = config_file(&objects, "prometheus-config", "prometheus.yml");
    let jobs: Vec<&str> = config["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_name"].as_str().unwrap())
        .collect();
    // Thanos's metrics come from its sidecar, scraped only when there is one.
    let mut sources = vec!["kube_", "node_", "alertmanager_", "up", "prometheus_"];
    if jobs.contains(&"thanos-sidecar") {
        sources.push("thanos_");
    }
    for rule in rules {
        let name = rule["alert"].as_str().unwrap();
        let expr = rule["expr"].as_str().unwrap();
        let parsed = promql_parser::parser::parse(expr)
            .unwrap_or_else(|e| panic!("{name}: {expr:?} is not PromQL: {e}"));
        let mut metrics = Vec::new();
        collect_metrics(&parsed, &mut metrics);
        assert!(!metrics.is_empty(), "{name} selects no metric");
        for metric in metrics {
            assert!(
                sources.iter().any(|s| metric.starts_with(s)),
                "{name}: {metric} is exported by no scraped source"
            );
        }
        let for_ = rule["for"].as_str().unwrap();
        assert!(
            promql_parser::util::parse_duration(for_).is_ok(),
            "{name}: for {for_:?}"
        );
        assert!(
            ["critical", "warning"].contains(&rule["labels"]["severity"].as_str().unwrap()),
            "{name}"
        );
        assert!(!rule["annotations"]["summary"].as_str().unwrap().is_empty());
    }
}

fn collect_metrics(expr: &promql_parser::parser::Expr, out: &mut Vec<String>) {
    use promql_parser::parser::Expr;
    match expr {
        Expr::VectorSelector(v) => out.extend(v.name.clone()),
        Expr::MatrixSelector(m) => out.extend(m.vs.name.clone()),
        Expr::Binary(b) => {
            collect_metrics(&b.lhs, out);
            collect_metrics(&b.rhs, out);
        }
        Expr::Aggregate(a) => collect_metrics(&a.expr, out),
        Expr::Paren(p) => collect_metrics(&p.expr, out),
        Expr::Unary(u) => collect_metrics(&u.expr, out),
        Expr::Call(c) => {
            for arg in &c.args.args {
                collect_metrics(arg, out);
            }
        }
        Expr::Subquery(s) => collect_metrics(&s.expr, out),
        _ => {}
    }
}

/// The ingestion rules select the namespace, Deployment and autoscaler this step makes:
/// a rename of either would otherwise silence them.
#[test]
fn the_ingestion_rules_watch_the_objects_this_step_makes() {
    let objects = built();
    let deployment = body(&objects, "Deployment", APP);
    let hpa = body(&objects, "HorizontalPodAutoscaler", APP);
    assert_eq!(deployment["metadata"]["namespace"], super::NAMESPACE);
    assert_eq!(hpa["metadata"]["namespace"], super::NAMESPACE);
    let selects = |rule: &monitoring::Rule, label: &str, value: &str| {
        rule.expr.contains(&format!("{label}=\"{value}\""))
    };
    for rule in monitoring::rules(&context())
        .iter()
        .filter(|r| r.alert.starts_with("Ingestion"))
    {
        assert!(
            selects(rule, "namespace", super::NAMESPACE),
            "{}",
            rule.alert
        );
        if rule.expr.contains("kube_deployment_") {
            assert!(selects(rule, "deployment", APP), "{}", rule.alert);
        }
        if rule.expr.contains("kube_horizontalpodautoscaler_") {
            assert!(
                selects(rule, "horizontalpodautoscaler", APP),
                "{}",
                rule.alert
            );
        }
    }
}

#[test]
fn prometheus_reads_what_it_discovers_and_nothing_that_reaches_a_pod() {
    let objects = built();
    let role = body(&objects, "ClusterRole", "apiary-acme-prod-prometheus");
    for rule in role["rules"].as_array().unwrap() {
        assert_eq!(rule["verbs"], json!(["get", "list", "watch"]), "{rule}");
        for resource in rule["resources"].as_array().unwrap() {
            let resource = resource.as_str().unwrap();
            assert!(
                !["secrets", "nodes/proxy", "pods/exec", "*"].contains(&resource),
                "{resource}"
            );
        }
    }
    let binding = body(
        &objects,
        "ClusterRoleBinding",
        "apiary-acme-prod-prometheus",
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "prometheus", "namespace": "monitoring"}])
    );
    // Alertmanager calls no Kubernetes API: no token.
    let alertmanager = body(&objects, "ServiceAccount", ALERTMANAGER);
    assert_eq!(alertmanager["automountServiceAccountToken"], false);
}

#[test]
fn nothing_reaches_prometheus_and_only_prometheus_reaches_alertmanager_and_the_pods() {
    let objects = built();
    let closed = body(&objects, "NetworkPolicy", PROMETHEUS);
    assert_eq!(closed["spec"]["policyTypes"], json!(["Ingress"]));
    assert!(closed["spec"].get("ingress").is_none(), "{closed}");
    let alertmanager = body(&objects, "NetworkPolicy", ALERTMANAGER);
    assert_eq!(
        alertmanager["spec"]["ingress"],
        json!([{
            "from": [{"podSelector": {"matchLabels": {LABEL_NAME: PROMETHEUS}}}],
            "ports": [{"port": 9093, "protocol": "TCP"}],
        }])
    );
    let ingestion = body(&objects, "NetworkPolicy", APP);
    let from_prometheus = ingestion["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|rule| {
            rule["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                == NAMESPACE
        })
        .collect::<Vec<_>>();
    assert_eq!(from_prometheus.len(), 1, "{ingestion}");
    assert_eq!(
        from_prometheus[0]["from"][0]["podSelector"]["matchLabels"][LABEL_NAME],
        PROMETHEUS
    );
}
