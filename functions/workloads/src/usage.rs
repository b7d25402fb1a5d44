//! `pool-usage`: how much of its limits the ingestion NodePool holds, as a CloudWatch
//! metric the stack's `pool-ingestion-at-limit` alarm watches (and handle-alert, through
//! that alarm, raises the pool within its size preset).
//!
//! Karpenter keeps what a NodePool's nodes hold in `status.resources` and stops
//! launching once that reaches `spec.limits`; it reports this only as its own metrics and
//! Kubernetes events, neither of which reaches CloudWatch or EventBridge from EKS Auto
//! Mode's managed Karpenter. So a schedule calls this action every few minutes: it reads
//! the NodePool and puts `Apiary/Pools` `LimitUsedPercent` (the larger of CPU and
//! memory, dimensions `Deployment` and `Pool`). A frozen pool (limits 0) is at its limit
//! on purpose: nothing is put, so the alarm never raises it. A routine run is not
//! journaled (it runs 288 times a day); a failure is.
//!
//! Without a cluster (the manifests rendered locally) there is no NodePool to read: the
//! output says "not verified locally" and nothing is put.

use apiary_core::step::{Done, StepContext};
use apiary_core::store::DeploymentStatus;
use apiary_core::{Error, Result};
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use serde::Serialize;
use serde_json::Value;

use crate::manifests::{self, Context};
use crate::{Deps, Target, WorkloadsAction};

/// The CloudWatch namespace and metric the alarm reads.
pub const METRIC_NAMESPACE: &str = "Apiary/Pools";
pub const METRIC: &str = "LimitUsedPercent";
/// The `Pool` dimension of the ingestion NodePool's figure.
pub const POOL: &str = "ingestion";

#[derive(Debug, Clone, Serialize)]
pub struct UsageOutput {
    /// The NodePool was read from a cluster.
    pub verified: bool,
    /// Percent of each limit in use, `cpu` and `memory` (absent when not read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_percent: Option<f64>,
    /// What was put, or why nothing was.
    pub metric: String,
    pub detail: String,
}

impl UsageOutput {
    /// Nothing read or put, and why.
    fn not_measured(detail: String) -> UsageOutput {
        UsageOutput {
            verified: false,
            cpu_percent: None,
            memory_percent: None,
            metric: "nothing put".to_owned(),
            detail,
        }
    }
}

/// A Kubernetes quantity (`"64"`, `"500m"`, `"256Gi"`, `"1.5e3"`, `"48123456Ki"`) as a
/// number of its base unit; `None` for anything else.
pub fn quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("Pi", 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("Ei", 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, factor)| text.strip_suffix(suffix).map(|n| (n, *factor)))
        .or_else(|| text.strip_suffix('P').map(|n| (n, 1e15)))
        .or_else(|| text.strip_suffix('E').map(|n| (n, 1e18)))
        .unwrap_or((text, 1.0));
    if number.is_empty()
        || !number
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
    {
        return None;
    }
    number
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(|n| n * factor)
}

/// Percent of `limit` that `used` is, from a NodePool's `spec.limits` and
/// `status.resources`; `None` when the limit is missing or 0 (frozen: nothing to raise).
fn percent(node_pool: &Value, resource: &str) -> Result<Option<f64>> {
    let read = |pointer: &str| -> Result<Option<f64>> {
        match node_pool.pointer(pointer) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => quantity(text).map(Some).ok_or_else(|| {
                Error::fatal(format!(
                    "the NodePool's {pointer} {text:?} is not a Kubernetes quantity"
                ))
            }),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err(Error::fatal(format!(
                "the NodePool's {pointer} {other} is not a Kubernetes quantity"
            ))),
        }
    };
    let Some(limit) = read(&format!("/spec/limits/{resource}"))?.filter(|l| *l > 0.0) else {
        return Ok(None);
    };
    // No status yet (no node launched): nothing in use.
    let used = read(&format!("/status/resources/{resource}"))?.unwrap_or(0.0);
    Ok(Some((used / limit * 1000.0).round() / 10.0))
}

/// The schedule ticks from the stack's creation on. Nothing is measured (and no
/// cluster is connected to) while the deployment is torn down, or before a provision
/// has made what the NodePool is built from. A deployment that is not READY (a failed
/// provision, one waiting for DNS) is still measured when its cluster runs: its pool
/// can be at its limit all the same. `None`: measure.
pub async fn nothing_to_measure(
    deps: &Deps,
    step: &StepContext<'_, WorkloadsAction>,
) -> Result<Option<UsageOutput>> {
    if step.action != WorkloadsAction::PoolUsage {
        return Ok(None);
    }
    let status = deps.recorder.status(&step.spec.name).await?;
    let why = match status {
        Some(status @ (DeploymentStatus::TearingDown | DeploymentStatus::Deleted)) => {
            format!("the deployment is {}", status.as_str())
        }
        _ if step.layers.cluster.is_none() => "the cluster is not made yet".to_owned(),
        Some(DeploymentStatus::Ready) | None => return Ok(None),
        Some(_) => match Context::new(&step.spec, &step.layers) {
            Ok(_) => return Ok(None),
            Err(err) => format!("provision has not made every layer yet ({err})"),
        },
    };
    Ok(Some(UsageOutput::not_measured(format!(
        "nothing to measure: {why}"
    ))))
}

pub async fn usage(
    deps: &Deps,
    step: &StepContext<'_, WorkloadsAction>,
    target: Target,
) -> Result<Done<UsageOutput>> {
    let ctx = Context::new(&step.spec, &step.layers)?;
    let manifest = manifests::node_pool(&ctx)?;
    let client = match target {
        Target::Render(_) => {
            let detail = format!(
                "not verified locally: there is no cluster to read {} from; on AWS its \
                 status.resources over spec.limits is put as {METRIC_NAMESPACE} {METRIC}",
                manifest.display()
            );
            return Ok(Done::ready(UsageOutput::not_measured(detail)));
        }
        Target::Apply {
            auto_mode: false, ..
        } => {
            let detail = format!(
                "the cluster does not serve EKS Auto Mode's resources, so there is no {} to read",
                manifest.display()
            );
            return Ok(Done::ready(UsageOutput::not_measured(detail)));
        }
        Target::Apply { client, .. } => client,
    };
    let Some(node_pool) = crate::scale::read(&client, &manifest).await? else {
        let status = deps.recorder.status(&step.spec.name).await?;
        if matches!(status, Some(DeploymentStatus::Ready) | None) {
            return Err(Error::fatal(format!(
                "{} is not in the cluster: run provision to put it back",
                manifest.display()
            )));
        }
        // A provision not yet at its workloads step (or one that failed before it).
        let detail = format!(
            "nothing to measure: {} is not applied yet and the deployment is not READY",
            manifest.display()
        );
        return Ok(Done::ready(UsageOutput::not_measured(detail)));
    };
    let cpu = percent(&node_pool, "cpu")?;
    let memory = percent(&node_pool, "memory")?;
    let used = match (cpu, memory) {
        (Some(c), Some(m)) => Some(c.max(m)),
        (one, other) => one.or(other),
    };
    let metric = match used {
        None => format!(
            "nothing put: {} has no limit above 0 (frozen), so it is at its limit on purpose",
            manifest.display()
        ),
        Some(value) => put(deps, &step.spec.name, value).await?,
    };
    let detail = format!(
        "{}: cpu {} memory {} of its limits; {metric}",
        manifest.display(),
        shown(cpu),
        shown(memory)
    );
    Ok(Done::ready(UsageOutput {
        verified: true,
        cpu_percent: cpu,
        memory_percent: memory,
        metric,
        detail,
    }))
}

fn shown(percent: Option<f64>) -> String {
    percent.map_or_else(|| "no limit".to_owned(), |p| format!("{p}%"))
}

async fn put(deps: &Deps, deployment: &str, value: f64) -> Result<String> {
    let dimension = |name: &str, value: &str| Dimension::builder().name(name).value(value).build();
    let sent = deps
        .cloudwatch
        .put_metric_data()
        .namespace(METRIC_NAMESPACE)
        .metric_data(
            MetricDatum::builder()
                .metric_name(METRIC)
                .value(value)
                .unit(StandardUnit::Percent)
                .dimensions(dimension("Deployment", deployment))
                .dimensions(dimension("Pool", POOL))
                .build(),
        )
        .send()
        .await;
    match sent {
        Ok(_) => Ok(format!("put {METRIC_NAMESPACE} {METRIC}={value}")),
        Err(err) if apiary_core::aws::not_emulated(deps.emulator, &err) => {
            Ok(apiary_core::aws::NOT_EMULATED_CLOUDWATCH.to_owned())
        }
        Err(err) => Err(Error::aws("PutMetricData (pool usage)", err)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use apiary_core::fixtures::Fixture;
    use aws_sdk_cloudwatch::operation::put_metric_data::{PutMetricDataInput, PutMetricDataOutput};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use serde_json::json;

    use super::*;
    use crate::KubeAccess;
    use crate::fake_api::{self, Reply};
    use crate::test_support::{Against, mock_deps_over};

    /// pool-usage against an API server holding `node_pool` (or none: rendered), with
    /// CloudWatch recording what is put.
    async fn run(
        node_pool: Option<Value>,
    ) -> (apiary_core::Result<Value>, Vec<PutMetricDataInput>, usize) {
        let fixture = Fixture::test();
        let (mut deps, recorder) = mock_deps_over(&fixture, &[], &[], KubeAccess::Eks, false);
        let put: Arc<Mutex<Vec<PutMetricDataInput>>> = Arc::default();
        let seen = put.clone();
        let rule = mock!(aws_sdk_cloudwatch::Client::put_metric_data)
            .match_requests(move |r| {
                seen.lock().unwrap().push(r.clone());
                true
            })
            .then_output(|| PutMetricDataOutput::builder().build());
        deps.cloudwatch = mock_client!(aws_sdk_cloudwatch, RuleMode::MatchAny, [&rule]);
        let client = node_pool.map(|pool| {
            fake_api::start(move |r| match r.method.as_str() {
                "GET" => match &pool {
                    Value::Null => Reply::Json(404, fake_api::status(404, "NotFound", "gone")),
                    pool => Reply::Json(200, pool.clone()),
                },
                _ => Reply::Json(405, fake_api::status(405, "MethodNotAllowed", "read only")),
            })
            .0
        });
        let out =
            apiary_core::step::run(&Against { deps, client }, fixture.event("pool-usage")).await;
        let journaled = recorder.entries.lock().unwrap().len();
        let put = put.lock().unwrap().clone();
        (out, put, journaled)
    }

    #[tokio::test]
    async fn the_larger_share_of_the_limits_is_put_for_the_alarm_and_not_journaled() {
        let pool = json!({
            "metadata": {"name": "ingestion"},
            "spec": {"limits": {"cpu": "64", "memory": "256Gi"}},
            "status": {"resources": {"cpu": "60", "memory": "128Gi"}},
        });
        let (out, put, journaled) = run(Some(pool)).await;
        let out = out.expect("pool-usage");
        assert_eq!(out["verified"], json!(true), "{out}");
        assert_eq!(out["cpu_percent"], json!(93.8));
        assert_eq!(out["memory_percent"], json!(50.0));
        assert_eq!(put.len(), 1);
        assert_eq!(put[0].namespace(), Some(METRIC_NAMESPACE));
        let datum = &put[0].metric_data()[0];
        assert_eq!(datum.metric_name(), Some(METRIC));
        assert_eq!(datum.value(), Some(93.8));
        let dims: Vec<(&str, &str)> = datum
            .dimensions()
            .iter()
            .map(|d| (d.name().unwrap(), d.value().unwrap()))
            .collect();
        assert_eq!(dims, [("Deployment", "acme-prod"), ("Pool", POOL)]);
        assert_eq!(journaled, 0, "a routine run is not journaled");
    }

    #[tokio::test]
    async fn a_frozen_pool_puts_nothing_and_a_missing_one_fails_journaled() {
        let frozen = json!({"spec": {"limits": {"cpu": "0", "memory": "0Gi"}},
                            "status": {"resources": {"cpu": "0"}}});
        let (out, put, _) = run(Some(frozen)).await;
        assert!(put.is_empty(), "a frozen pool is never raised: {put:?}");
        assert!(out.unwrap()["metric"].as_str().unwrap().contains("frozen"));
        let (out, put, journaled) = run(Some(Value::Null)).await;
        let err = out.unwrap_err().to_string();
        assert!(err.contains("not in the cluster"), "{err}");
        assert!(put.is_empty());
        assert_eq!(journaled, 1, "a failure is journaled");
    }

    #[tokio::test]
    async fn before_the_cluster_exists_or_while_torn_down_nothing_is_measured() {
        use apiary_core::naming::Layer;
        let fixture = Fixture::test().before(Layer::Cluster);
        let (deps, recorder) = mock_deps_over(&fixture, &[], &[], KubeAccess::Eks, false);
        // KubeAccess::Eks with no cluster layer: connecting would fail; nothing does.
        let out = crate::handle(&deps, fixture.event("pool-usage"))
            .await
            .expect("a tick before the cluster exists is not an error");
        assert!(
            out["detail"].as_str().unwrap().contains("not made yet"),
            "{out}"
        );
        assert!(recorder.entries.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn locally_nothing_is_read_or_put() {
        let (out, put, _) = run(None).await;
        let out = out.unwrap();
        assert_eq!(out["verified"], json!(false));
        assert!(
            out["detail"]
                .as_str()
                .unwrap()
                .contains("not verified locally")
        );
        assert!(put.is_empty());
    }

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        for (text, value) in [
            ("64", 64.0),
            ("500m", 0.5),
            ("256Gi", 256.0 * 1024.0 * 1024.0 * 1024.0),
            ("48123456Ki", 48_123_456.0 * 1024.0),
            ("2k", 2000.0),
            ("1.5", 1.5),
            ("1e3", 1000.0),
            ("3M", 3e6),
        ] {
            assert_eq!(quantity(text), Some(value), "{text}");
        }
        for bad in ["", "Gi", "-1", "ten", "1Zi", "1 Gi", "NaN"] {
            assert_eq!(quantity(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_usage_is_status_over_limits_and_a_frozen_pool_has_none() {
        let pool = json!({
            "spec": {"limits": {"cpu": "64", "memory": "256Gi"}},
            "status": {"resources": {"cpu": "60", "memory": "128Gi", "nodes": "15"}},
        });
        assert_eq!(percent(&pool, "cpu").unwrap(), Some(93.8));
        assert_eq!(percent(&pool, "memory").unwrap(), Some(50.0));
        let frozen = json!({"spec": {"limits": {"cpu": "0", "memory": "0"}},
                            "status": {"resources": {"cpu": "0"}}});
        assert_eq!(percent(&frozen, "cpu").unwrap(), None);
        let fresh = json!({"spec": {"limits": {"cpu": "64"}}});
        assert_eq!(percent(&fresh, "cpu").unwrap(), Some(0.0), "no status yet");
        assert_eq!(percent(&fresh, "memory").unwrap(), None, "no memory limit");
        let bad = json!({"spec": {"limits": {"cpu": "lots"}}});
        let err = percent(&bad, "cpu").unwrap_err().to_string();
        assert!(err.contains("/spec/limits/cpu"), "{err}");
    }
}
