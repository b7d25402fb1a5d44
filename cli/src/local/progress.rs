//! Live progress of a local run: one line per layer, fed by the engine's history events.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apiary_asl::{EventListener, HistoryEvent};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The provision layers, in the order they are shown, and how their states are named.
const LAYERS: &[(&str, &[&str])] = &[
    ("keys", &["Keys"]),
    ("network", &["Network"]),
    ("dns", &["Dns"]),
    ("storage", &["Storage"]),
    (
        "databases",
        &["Postgres", "DocumentDb", "Redis", "Databases"],
    ),
    ("cluster", &["Cluster", "Nodegroup", "Karpenter"]),
    ("workloads", &["Workloads"]),
];

/// The state whose exit (or, for `>`, whose entry) means the layer is done.
const DONE_WHEN: &[(&str, &str)] = &[
    ("Keys", "keys"),
    (">Layers", "network"),
    (">DnsDone", "dns"),
    ("Storage", "storage"),
    ("Databases", "databases"),
    ("Karpenter", "cluster"),
    (">MarkReady", "workloads"),
];

fn layer_of(state: &str) -> Option<&'static str> {
    LAYERS
        .iter()
        .find(|(_, prefixes)| prefixes.iter().any(|p| state.starts_with(p)))
        .map(|(layer, _)| *layer)
}

struct Inner {
    bars: HashMap<&'static str, ProgressBar>,
    started: Instant,
    plain: bool,
    done: Vec<&'static str>,
    /// Not provision: one line per Task state, since there are no layers to show.
    by_state: bool,
}

/// Shows progress per layer: spinners on a terminal, timestamped lines otherwise.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Mutex<Inner>>,
    _multi: Arc<MultiProgress>,
}

impl Progress {
    /// Progress for `workflow`: provision shows its layers; any other workflow a line
    /// per step as it starts and ends.
    pub fn new(workflow: &str) -> Self {
        let by_state = workflow != "provision";
        let plain = by_state || !std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if plain {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        let style =
            ProgressStyle::with_template("{spinner:.cyan} {prefix:<10} {wide_msg} {elapsed:>4}")
                .expect("a valid template")
                .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✓");
        let mut bars = HashMap::new();
        for (layer, _) in LAYERS.iter().filter(|_| !by_state) {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(style.clone());
            bar.set_prefix(*layer);
            bar.set_message("waiting");
            bar.enable_steady_tick(Duration::from_millis(120));
            bars.insert(*layer, bar);
        }
        Progress {
            inner: Arc::new(Mutex::new(Inner {
                bars,
                started: Instant::now(),
                plain,
                done: Vec::new(),
                by_state,
            })),
            _multi: Arc::new(multi),
        }
    }

    /// The listener to hand to the engine.
    pub fn listener(&self) -> EventListener {
        let inner = self.inner.clone();
        Arc::new(move |event: &HistoryEvent| {
            let mut inner = inner.lock().expect("progress lock");
            inner.on_event(event);
        })
    }

    /// Stops every spinner; layers not finished are marked with `why`.
    pub fn finish(&self, why: &str) {
        let mut inner = self.inner.lock().expect("progress lock");
        if inner.by_state {
            return;
        }
        let layers: Vec<&'static str> = LAYERS
            .iter()
            .map(|(l, _)| *l)
            .filter(|l| !inner.done.contains(l))
            .collect();
        for layer in layers {
            inner.set(layer, why, true);
        }
    }
}

impl Inner {
    fn set(&mut self, layer: &'static str, message: &str, finished: bool) {
        if self.done.contains(&layer) {
            return;
        }
        if self.plain {
            eprintln!(
                "[{:>6.1}s] {layer:<10} {message}",
                self.started.elapsed().as_secs_f64()
            );
        }
        if let Some(bar) = self.bars.get(layer) {
            if finished {
                bar.finish_with_message(message.to_owned());
                self.done.push(layer);
            } else {
                bar.set_message(message.to_owned());
            }
        }
    }

    fn on_event(&mut self, event: &HistoryEvent) {
        let Some(state) = event.state_name().map(str::to_owned) else {
            return;
        };
        if self.by_state {
            let what = match event.event_type.as_str() {
                "TaskStateEntered" => "running",
                "TaskStateExited" => "done",
                "WaitStateEntered" => "waiting to poll again",
                "FailStateEntered" => "failed",
                _ => return,
            };
            eprintln!(
                "[{:>6.1}s] {state:<24} {what}",
                self.started.elapsed().as_secs_f64()
            );
            return;
        }
        let entered = event.event_type.ends_with("StateEntered");
        let exited = event.event_type.ends_with("StateExited");
        for (marker, layer) in DONE_WHEN {
            let (on_entry, name) = match marker.strip_prefix('>') {
                Some(name) => (true, name),
                None => (false, *marker),
            };
            if name == state && ((on_entry && entered) || (!on_entry && exited)) {
                self.set(layer, "done", true);
                return;
            }
        }
        let Some(layer) = layer_of(&state) else {
            return;
        };
        if entered {
            let message = if event.event_type == "WaitStateEntered" {
                format!("waiting to poll again ({state})")
            } else if event.event_type == "TaskStateEntered" {
                format!("running {state}")
            } else {
                return;
            };
            self.set(layer, &message, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every state the progress lines wait for exists in the generated provision workflow
    /// (a renamed state would leave a layer spinning until the end).
    #[test]
    fn progress_follows_states_that_exist() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let text = std::fs::read_to_string(root.join("statemachines/provision.asl.json")).unwrap();
        let definition: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut names = Vec::new();
        collect(&definition["States"], &mut names);
        for (marker, layer) in DONE_WHEN {
            let state = marker.trim_start_matches('>');
            assert!(
                names.iter().any(|n| n == state),
                "{layer}: no state {state}"
            );
        }
        for (layer, prefixes) in LAYERS {
            for prefix in *prefixes {
                assert!(
                    names.iter().any(|n| n.starts_with(prefix)),
                    "{layer}: no state starts with {prefix}"
                );
            }
        }
    }

    fn collect(states: &serde_json::Value, names: &mut Vec<String>) {
        for (name, state) in states.as_object().into_iter().flatten() {
            names.push(name.clone());
            for branch in state["Branches"].as_array().into_iter().flatten() {
                collect(&branch["States"], names);
            }
        }
    }
}
