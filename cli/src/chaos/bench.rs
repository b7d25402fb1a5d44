//! The provision benchmark: the real provision workflow through the proxy with AWS's
//! timing, on the engine's real-time clock at a time scale, measured against the
//! longest chain of dependent resources the run created.
//!
//! Everything runs in workflow time: the engine's clock runs `scale` workflow seconds
//! per real second, and the proxy keeps each followed resource creating for its AWS
//! duration on that same clock. So the workflow's own time is what a customer would
//! wait on AWS, and real seconds are that divided by the scale.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use apiary_asl::{Clock, ExecutionStatus};
use apiary_core::aws::AwsSettings;
use apiary_core::store::{DEFAULT_TABLE, Store};
use apiary_proxy::{Applied, Config, Proxy};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Account, Options, input};
use crate::local::LocalEnv;

/// The provision states that wait for a layer, the proxy kinds each one waits for, and
/// the layers it waits on first.
const LAYERS: &[(&str, &[&str], &[&str])] = &[
    ("Network", &["ec2:nat-gateway", "ec2:vpc-endpoint"], &[]),
    // Waits for nothing AWS keeps creating: the layer is ready once the zone and the
    // validation records are written (their changes are not polled to INSYNC), and a
    // certificate not yet issued holds back only the HTTPS ingress (the run ends
    // WAITING_FOR_DNS_VALIDATION if it still is not issued then).
    ("Dns", &[], &["Network"]),
    ("Postgres", &["rds:db-instance"], &["Network"]),
    ("Redis", &["elasticache:replication-group"], &["Network"]),
    ("Cluster", &["eks:cluster"], &["Network"]),
    ("Nodegroup", &["eks:nodegroup", "eks:addon"], &["Cluster"]),
];

/// One layer's figures, in workflow seconds from the execution's start.
#[derive(Debug, Clone)]
pub struct Layer {
    pub name: &'static str,
    pub started: f64,
    /// When AWS would have made its last resource ready (`None`: nothing it waits for
    /// was created).
    pub aws_ready: Option<f64>,
    /// How long AWS took for it: from its first create to its last resource ready.
    pub aws_span: f64,
    /// When the workflow went on past it.
    pub seen_ready: Option<f64>,
}

impl Layer {
    /// How long the workflow waited beyond AWS's readiness (poll granularity).
    pub fn waited(&self) -> Option<f64> {
        Some(self.seen_ready? - self.aws_ready?)
    }
}

/// What one benchmark run measured.
#[derive(Debug, Clone)]
pub struct Figures {
    pub succeeded: bool,
    pub error: Option<String>,
    pub scale: f64,
    /// Real seconds the execution took.
    pub wall: f64,
    /// Workflow seconds the execution took (what the customer would wait on AWS).
    pub workflow: f64,
    /// The longest chain of dependent layers, by their AWS spans, workflow seconds.
    pub critical_path: f64,
    pub chain: Vec<&'static str>,
    pub layers: Vec<Layer>,
    pub applied: Vec<Applied>,
}

impl Figures {
    pub fn ratio(&self) -> f64 {
        if self.critical_path > 0.0 {
            self.workflow / self.critical_path
        } else {
            0.0
        }
    }

    pub fn render(&self) -> String {
        let s = self.scale;
        let mut out = format!(
            "{:<10} {:>9} {:>10} {:>11} {:>8}   unscaled (AWS): started, aws-ready, seen-ready, waited\n",
            "layer", "started", "aws-ready", "seen-ready", "waited"
        );
        let opt =
            |v: Option<f64>, div: f64| v.map_or("-".to_owned(), |v| format!("{:.1}s", v / div));
        for layer in &self.layers {
            let started = format!("{:.1}s", layer.started / s);
            out.push_str(&format!(
                "{:<10} {started:>9} {:>10} {:>11} {:>8}   {:.0}s, {}, {}, {}\n",
                layer.name,
                opt(layer.aws_ready, s),
                opt(layer.seen_ready, s),
                opt(layer.waited(), s),
                layer.started,
                opt(layer.aws_ready, 1.0),
                opt(layer.seen_ready, 1.0),
                opt(layer.waited(), 1.0),
            ));
        }
        out.push_str("resources held creating (AWS duration, source):\n");
        for a in &self.applied {
            out.push_str(&format!(
                "  {:<30} {:<28} {:>5}s  {}\n",
                a.kind, a.id, a.aws_seconds, a.source
            ));
        }
        out.push_str(&format!(
            "critical path: {} ({:.0}s on AWS)\n",
            self.chain.join(" -> "),
            self.critical_path
        ));
        out.push_str(&format!(
            "unscaled: provision {:.0}s critical-path {:.0}s (what a customer waits on AWS)\n",
            self.workflow, self.critical_path
        ));
        if let Some(error) = &self.error {
            out.push_str(&format!("the run FAILED: {error}\n"));
        }
        out.push_str(&format!(
            "provision wall {:.1}s critical-path {:.1}s ratio {:.2}",
            self.wall,
            self.critical_path / s,
            self.ratio()
        ));
        out
    }
}

/// Runs provision once on an emptied emulator at `scale` workflow seconds per real
/// second.
pub async fn provision(options: &Options, scale: f64) -> anyhow::Result<Figures> {
    let account = Account::fresh(options, "bench").await?;
    let clock = Clock::real_time(scale);
    let now = {
        let clock = clock.clone();
        std::sync::Arc::new(move || clock.now())
    };
    let proxy = Proxy::start(Config {
        time_scale: Some(1.0),
        now,
        ..Config::passthrough(&options.endpoint)
    })
    .await?;
    let settings = AwsSettings::local(&proxy.url(), &options.spec.region);
    let config = apiary_core::aws::load(&settings).await;
    let store = Store::new(
        apiary_core::client!(aws_sdk_dynamodb, &config),
        DEFAULT_TABLE,
    );
    let env = LocalEnv::new(config, store, account.state_dir.clone(), None).with_clock(clock);
    let machine = env.load(&options.root, "provision")?;
    let name = &options.spec.name;
    let started = Instant::now();
    let result = env
        .run(
            &machine,
            "provision",
            name,
            input("provision", &options.spec, &options.root)?,
            format!("provision-{name}-bench"),
            None,
        )
        .await;
    let wall = started.elapsed();
    let report = proxy.report();
    let history = result.history_json();
    let events = history["events"].as_array().cloned().unwrap_or_default();
    figures(
        result.status == ExecutionStatus::Succeeded,
        result
            .error
            .as_ref()
            .map(|e| format!("{e}: {}", result.cause.as_deref().unwrap_or(""))),
        scale,
        wall,
        result.start_date,
        result.stop_date,
        &events,
        report.applied,
    )
}

fn at(event: &Value) -> Option<DateTime<Utc>> {
    event["timestamp"].as_str()?.parse().ok()
}

fn state_name(event: &Value) -> Option<&str> {
    event["stateEnteredEventDetails"]["name"]
        .as_str()
        .or_else(|| event["stateExitedEventDetails"]["name"].as_str())
}

/// The figures from the history (workflow-time stamps) and the creating states the
/// proxy applied.
#[allow(clippy::too_many_arguments)]
pub fn figures(
    succeeded: bool,
    error: Option<String>,
    scale: f64,
    wall: Duration,
    start: DateTime<Utc>,
    stop: DateTime<Utc>,
    events: &[Value],
    applied: Vec<Applied>,
) -> anyhow::Result<Figures> {
    let seconds = |t: DateTime<Utc>| (t - start).num_milliseconds() as f64 / 1000.0;
    let mut layers = Vec::new();
    let mut spans: BTreeMap<&str, f64> = BTreeMap::new();
    for (layer, kinds, _) in LAYERS {
        let Some(entered) = events
            .iter()
            .filter(|e| e["type"] == "TaskStateEntered" && state_name(e) == Some(*layer))
            .find_map(at)
        else {
            continue;
        };
        let ready_state = format!("{layer}Ready?");
        let seen_ready = events
            .iter()
            .filter(|e| {
                e["type"] == "ChoiceStateExited" && state_name(e) == Some(ready_state.as_str())
            })
            .filter_map(at)
            .next_back();
        let mine: Vec<&Applied> = applied.iter().filter(|a| kinds.contains(&a.kind)).collect();
        let aws_ready = mine.iter().map(|a| a.ready_at).max();
        let first_create = mine.iter().map(|a| a.created_at).min();
        let aws_span = match (first_create, aws_ready) {
            (Some(from), Some(to)) => (to - from).num_milliseconds() as f64 / 1000.0,
            _ => 0.0,
        };
        spans.insert(layer, aws_span);
        layers.push(Layer {
            name: layer,
            started: seconds(entered),
            aws_ready: aws_ready.map(seconds),
            aws_span,
            seen_ready: seen_ready.map(seconds),
        });
    }
    // The longest chain through the layers' dependencies, by their AWS spans.
    fn longest(layer: &'static str, spans: &BTreeMap<&str, f64>) -> (f64, Vec<&'static str>) {
        let own = spans.get(layer).copied().unwrap_or(0.0);
        let (_, _, after) = LAYERS
            .iter()
            .find(|(name, _, _)| *name == layer)
            .expect("a known layer");
        let best = after
            .iter()
            .map(|before| longest(before, spans))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .unwrap_or((0.0, Vec::new()));
        let mut chain = best.1;
        chain.push(layer);
        (best.0 + own, chain)
    }
    let (critical_path, chain) = LAYERS
        .iter()
        .map(|(name, _, _)| longest(name, &spans))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .context("no layer")?;
    Ok(Figures {
        succeeded,
        error,
        scale,
        wall: wall.as_secs_f64(),
        workflow: seconds(stop),
        critical_path,
        chain,
        layers,
        applied,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn applied(kind: &'static str, from: i64, to: i64, start: DateTime<Utc>) -> Applied {
        Applied {
            kind,
            id: kind.to_owned(),
            aws_seconds: (to - from) as u32,
            scaled_seconds: (to - from) as f64,
            created_at: start + chrono::Duration::seconds(from),
            ready_at: start + chrono::Duration::seconds(to),
            source: "test",
        }
    }

    fn event(kind: &str, name: &str, at: DateTime<Utc>) -> Value {
        let details = if kind.ends_with("Entered") {
            "stateEnteredEventDetails"
        } else {
            "stateExitedEventDetails"
        };
        json!({"type": kind, "timestamp": at.to_rfc3339(), details: {"name": name}})
    }

    /// The figures are read from provision's history by state name: a renamed state
    /// would silently drop its layer from the table.
    #[test]
    fn every_layer_and_its_ready_choice_are_states_of_provision() {
        fn names(states: &Value, out: &mut Vec<String>) {
            for (name, state) in states.as_object().into_iter().flatten() {
                out.push(name.clone());
                for branch in state["Branches"].as_array().into_iter().flatten() {
                    names(&branch["States"], out);
                }
            }
        }
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../statemachines/provision.asl.json"
        );
        let machine: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut states = Vec::new();
        names(&machine["States"], &mut states);
        for (layer, _, _) in LAYERS {
            for state in [layer.to_string(), format!("{layer}Ready?")] {
                assert!(
                    states.contains(&state),
                    "{state} is not a state of provision"
                );
            }
        }
    }

    #[test]
    fn the_critical_path_is_the_longest_chain_and_waiting_is_measured_per_layer() {
        let start = Utc::now();
        let t = |s: i64| start + chrono::Duration::seconds(s);
        let events = vec![
            event("TaskStateEntered", "Network", t(1)),
            event("ChoiceStateExited", "NetworkReady?", t(100)),
            event("ChoiceStateExited", "NetworkReady?", t(120)),
            event("TaskStateEntered", "Cluster", t(121)),
            event("ChoiceStateExited", "ClusterReady?", t(760)),
            event("TaskStateEntered", "Nodegroup", t(761)),
            event("ChoiceStateExited", "NodegroupReady?", t(900)),
            event("TaskStateEntered", "Postgres", t(121)),
            event("ChoiceStateExited", "PostgresReady?", t(500)),
        ];
        let applied = vec![
            applied("ec2:nat-gateway", 2, 107, start),
            applied("eks:cluster", 122, 722, start),
            applied("eks:nodegroup", 762, 882, start),
            applied("rds:db-instance", 122, 422, start),
        ];
        let figures = figures(
            true,
            None,
            20.0,
            Duration::from_secs(46),
            start,
            t(910),
            &events,
            applied,
        )
        .unwrap();
        assert_eq!(figures.chain, vec!["Network", "Cluster", "Nodegroup"]);
        assert_eq!(figures.critical_path, 105.0 + 600.0 + 120.0);
        assert!((figures.ratio() - 910.0 / 825.0).abs() < 1e-9);
        let cluster = figures.layers.iter().find(|l| l.name == "Cluster").unwrap();
        assert_eq!(cluster.waited(), Some(760.0 - 722.0));
        let network = figures.layers.iter().find(|l| l.name == "Network").unwrap();
        assert_eq!(
            network.seen_ready,
            Some(120.0),
            "the last time it was seen ready"
        );
        let text = figures.render();
        let last = text.lines().last().unwrap();
        assert!(
            last.starts_with("provision wall 46.0s critical-path 41.")
                && last.ends_with("s ratio 1.10"),
            "{text}"
        );
    }
}
