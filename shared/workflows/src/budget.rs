//! The longest path of a state machine, in time and in history events, computed from the
//! definition itself (so a hand edit of a generated file is measured too).
//!
//! The analyzer walks the states from `StartAt`, taking every way a state can go: both
//! answers of a Choice rule that reads something only known at run time (a step's
//! `ready`, the input's `queue`), the `Next` and every `Catch` of a Task. What the
//! definition itself sets is followed exactly: the loop counters the `<X>Wait` Pass
//! states count in `$.polls.<X>`, the waits they take from their schedule, the bounds the
//! Choice rules compare the counters with. So a loop runs exactly to its bound, and a loop
//! that can come back to a state with nothing changed is reported as unbounded.
//!
//! What each state costs, at worst ([`Model::WORST`]):
//! - Task: every retrier used to its `MaxAttempts`, each attempt lasting the Task's
//!   `TimeoutSeconds` (required), each retry waiting its full backoff (capped by
//!   `MaxDelaySeconds`; jitter only shortens it). History: entered and exited, plus
//!   scheduled, started and succeeded/failed/timed out per attempt.
//! - Wait: its seconds (a `SecondsPath` must resolve to a known number). Pass, Choice,
//!   Succeed: no time, two events; Fail: one.
//! - Parallel: the slowest branch's time; the events of all branches, plus four.
//! - The execution: started and succeeded/failed, two events.

mod data;

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde_json::{Map, Value, json};

/// AWS keeps at most 25,000 events per execution and then fails it; the workflows stay
/// under this, with room for the unexpected.
pub const MAX_EVENTS: u64 = 20_000;
/// The longest path must fit in this share of the execution's `TimeoutSeconds`.
pub const MAX_TIMEOUT_SHARE: f64 = 0.9;

/// How long a path takes and how many history events it writes.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Budget {
    pub seconds: f64,
    pub events: u64,
}

impl Budget {
    fn then(self, other: Budget) -> Budget {
        Budget {
            seconds: self.seconds + other.seconds,
            events: self.events + other.events,
        }
    }

    /// The worse of two paths, in each measure (each maximum is a bound on its own).
    fn or(self, other: Budget) -> Budget {
        Budget {
            seconds: self.seconds.max(other.seconds),
            events: self.events.max(other.events),
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.0} s ({:.1} hours), {} history events",
            self.seconds,
            self.seconds / 3600.0,
            self.events
        )
    }
}

/// What a Task costs in the analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    /// Every Task uses all of its retries; else each Task runs once.
    pub retries: bool,
    /// Every attempt lasts its `TimeoutSeconds`; else attempts take no time (as in the
    /// embedded engine with handlers that answer at once).
    pub attempt_time: bool,
}

impl Model {
    pub const WORST: Model = Model {
        retries: true,
        attempt_time: true,
    };
}

/// The longest path of `definition` at worst.
pub fn worst_case(definition: &Value) -> Result<Budget, String> {
    analyze(definition, Model::WORST)
}

/// The longest path of `definition` when Tasks cost what `model` says.
pub fn analyze(definition: &Value, model: Model) -> Result<Budget, String> {
    let mut analyzer = Analyzer {
        model,
        memo: HashMap::new(),
        visiting: HashSet::new(),
        reads: HashMap::new(),
        depth: 0,
    };
    let graph = Graph::of(definition, "")?;
    let execution = Budget {
        seconds: 0.0,
        events: 2,
    };
    Ok(execution.then(analyzer.from(&graph, &graph.start, json!({}))?))
}

/// The deepest chain of states the analyzer follows before it calls a path endless.
const MAX_DEPTH: usize = 2_000;

struct Graph<'a> {
    /// JSON pointer of the graph's `States`' owner, to tell branches apart.
    id: String,
    start: String,
    states: &'a Map<String, Value>,
}

impl<'a> Graph<'a> {
    fn of(owner: &'a Value, id: &str) -> Result<Self, String> {
        let start = owner.get("StartAt").and_then(Value::as_str);
        let states = owner.get("States").and_then(Value::as_object);
        match (start, states) {
            (Some(start), Some(states)) => Ok(Graph {
                id: id.to_owned(),
                start: start.to_owned(),
                states,
            }),
            _ => Err(format!("{id}: no StartAt or States")),
        }
    }
}

type Key = (String, String, String);

struct Analyzer {
    model: Model,
    memo: HashMap<Key, Budget>,
    visiting: HashSet<Key>,
    reads: HashMap<(String, String), Vec<Vec<String>>>,
    depth: usize,
}

impl Analyzer {
    /// The longest path from entering `name` with `data` known to the graph's end.
    fn from(&mut self, graph: &Graph<'_>, name: &str, data: Value) -> Result<Budget, String> {
        let reads = self.reads_from(graph, name);
        let data = data::prune(&data, &mut Vec::new(), &reads);
        let key = (graph.id.clone(), name.to_owned(), data.to_string());
        if let Some(budget) = self.memo.get(&key) {
            return Ok(*budget);
        }
        let here = format!("{}/States/{name}", graph.id);
        if !self.visiting.insert(key.clone()) {
            return Err(format!(
                "{here}: the workflow can come back here with nothing changed, so this loop has no bound"
            ));
        }
        self.depth += 1;
        let result = if self.depth > MAX_DEPTH {
            Err(format!(
                "{here}: a path longer than {MAX_DEPTH} states; a loop without a bound?"
            ))
        } else {
            self.state(graph, name, data, &here)
        };
        self.depth -= 1;
        self.visiting.remove(&key);
        let budget = result?;
        self.memo.insert(key, budget);
        Ok(budget)
    }

    fn state(
        &mut self,
        graph: &Graph<'_>,
        name: &str,
        data: Value,
        here: &str,
    ) -> Result<Budget, String> {
        let state = graph
            .states
            .get(name)
            .ok_or_else(|| format!("{here}: no such state"))?;
        let kind = state
            .get("Type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let two_events = Budget {
            seconds: 0.0,
            events: 2,
        };
        let (cost, next): (Budget, Vec<(Option<String>, Value)>) = match kind {
            "Pass" => {
                let input = data::get(&data, str_field(state, "InputPath").unwrap_or("$"))
                    .cloned()
                    .unwrap_or_else(|| json!({}));
                let result = match (state.get("Result"), state.get("Parameters")) {
                    (Some(result), _) => result.clone(),
                    (None, Some(parameters)) => data::template(parameters, &input),
                    (None, None) => input,
                };
                let mut output = data.clone();
                data::put(&mut output, result_path(state), Some(result))?;
                (
                    two_events,
                    vec![(next_of(state), output_path(state, output))],
                )
            }
            "Wait" => {
                let seconds = match (state.get("Seconds"), str_field(state, "SecondsPath")) {
                    (Some(s), _) => s.as_f64(),
                    (None, Some(path)) => data::get(&data, path).and_then(Value::as_f64),
                    (None, None) => None,
                }
                .ok_or_else(|| format!("{here}: cannot tell how long this Wait lasts"))?;
                let cost = Budget { seconds, events: 2 };
                (cost, vec![(next_of(state), output_path(state, data))])
            }
            "Choice" => (two_events, choices(state, &data, here)?),
            "Succeed" => (two_events, vec![(None, data)]),
            "Fail" => (
                Budget {
                    seconds: 0.0,
                    events: 1,
                },
                vec![(None, data)],
            ),
            "Task" => {
                let timeout = state
                    .get("TimeoutSeconds")
                    .and_then(Value::as_f64)
                    .ok_or_else(|| {
                        format!("{here}: a Task without TimeoutSeconds can run for a year")
                    })?;
                let one = Budget {
                    seconds: if self.model.attempt_time {
                        timeout
                    } else {
                        0.0
                    },
                    events: 3,
                };
                (self.attempts(state, one, 2), outcomes(state, &data)?)
            }
            "Parallel" => {
                let input = match state.get("Parameters") {
                    Some(parameters) => data::template(parameters, &data),
                    None => data.clone(),
                };
                let branches = state
                    .get("Branches")
                    .and_then(Value::as_array)
                    .ok_or_else(|| format!("{here}: no Branches"))?;
                let mut one = Budget {
                    seconds: 0.0,
                    events: 2,
                };
                for (i, branch) in branches.iter().enumerate() {
                    let graph = Graph::of(branch, &format!("{here}/Branches/{i}"))?;
                    let cost = self.from(&graph, &graph.start, input.clone())?;
                    one.seconds = one.seconds.max(cost.seconds);
                    one.events += cost.events;
                }
                (self.attempts(state, one, 2), outcomes(state, &data)?)
            }
            other => {
                return Err(format!(
                    "{here}: the analyzer does not know {other:?} states"
                ));
            }
        };
        let mut longest: Option<Budget> = None;
        for (next, data) in next {
            let rest = match next {
                Some(next) => self.from(graph, &next, data)?,
                None => Budget::default(),
            };
            longest = Some(longest.map_or(rest, |l| l.or(rest)));
        }
        Ok(cost.then(longest.unwrap_or_default()))
    }

    /// A Task's or Parallel's cost: `fixed` events once, `one` per attempt, every retry.
    fn attempts(&self, state: &Value, one: Budget, fixed: u64) -> Budget {
        let mut attempts = 1.0;
        let mut delays = 0.0;
        if self.model.retries {
            for retrier in state
                .get("Retry")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let max = retrier
                    .get("MaxAttempts")
                    .and_then(Value::as_u64)
                    .unwrap_or(3);
                let interval = retrier
                    .get("IntervalSeconds")
                    .and_then(Value::as_f64)
                    .unwrap_or(1.0);
                let rate = retrier
                    .get("BackoffRate")
                    .and_then(Value::as_f64)
                    .unwrap_or(2.0);
                let cap = retrier.get("MaxDelaySeconds").and_then(Value::as_f64);
                for k in 0..max {
                    let delay = interval * rate.powi(i32::try_from(k).unwrap_or(i32::MAX));
                    delays += cap.map_or(delay, |cap| delay.min(cap));
                }
                attempts += max as f64;
            }
        }
        Budget {
            seconds: attempts * one.seconds + delays,
            events: fixed + (attempts as u64) * one.events,
        }
    }

    /// The paths read by `name` and every state reachable from it.
    fn reads_from(&mut self, graph: &Graph<'_>, name: &str) -> Vec<Vec<String>> {
        let key = (graph.id.clone(), name.to_owned());
        if let Some(reads) = self.reads.get(&key) {
            return reads.clone();
        }
        let mut seen = HashSet::new();
        let mut queue = vec![name.to_owned()];
        let mut reads = Vec::new();
        while let Some(name) = queue.pop() {
            let Some(state) = graph.states.get(&name) else {
                continue;
            };
            if !seen.insert(name) {
                continue;
            }
            data::reads(state, &mut reads);
            queue.extend(targets(state));
        }
        reads.sort();
        reads.dedup();
        self.reads.insert(key, reads.clone());
        reads
    }
}

fn str_field<'a>(state: &'a Value, field: &str) -> Option<&'a str> {
    state.get(field).and_then(Value::as_str)
}

fn next_of(state: &Value) -> Option<String> {
    str_field(state, "Next").map(str::to_owned)
}

/// `Some(path)`, or `None` for `"ResultPath": null`; `$` when absent.
fn result_path(state: &Value) -> Option<&str> {
    match state.get("ResultPath") {
        None => Some("$"),
        Some(Value::Null) => None,
        Some(path) => path.as_str(),
    }
}

fn output_path(state: &Value, data: Value) -> Value {
    match str_field(state, "OutputPath") {
        None | Some("$") => data,
        Some(path) => data::get(&data, path).cloned().unwrap_or_else(|| json!({})),
    }
}

/// Every state a state can go to.
fn targets(state: &Value) -> Vec<String> {
    let mut out: Vec<String> = ["Next", "Default"]
        .iter()
        .filter_map(|f| str_field(state, f).map(str::to_owned))
        .collect();
    for list in ["Choices", "Catch"] {
        for item in state
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.extend(str_field(item, "Next").map(str::to_owned));
        }
    }
    out
}

/// A Task's or Parallel's ways out: its result (never known) at ResultPath, then Next;
/// or a caught error at the catcher's ResultPath, then the catcher's Next; or an
/// uncaught error, which ends the graph.
fn outcomes(state: &Value, data: &Value) -> Result<Vec<(Option<String>, Value)>, String> {
    let mut out = Vec::new();
    let mut done = data.clone();
    data::put(&mut done, result_path(state), None)?;
    out.push((next_of(state), output_path(state, done)));
    for catcher in state
        .get("Catch")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut caught = data.clone();
        data::put(&mut caught, result_path(catcher), None)?;
        out.push((next_of(catcher), caught));
    }
    out.push((None, Value::Null));
    Ok(out)
}

/// The rules a Choice can take with what is known, in order, then its Default.
fn choices(
    state: &Value,
    data: &Value,
    here: &str,
) -> Result<Vec<(Option<String>, Value)>, String> {
    let input = data::get(data, str_field(state, "InputPath").unwrap_or("$"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut out = Vec::new();
    for rule in state
        .get("Choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let next = next_of(rule).ok_or_else(|| format!("{here}: a rule without Next"))?;
        match data::rule(rule, &input) {
            Some(true) => {
                out.push((Some(next), output_path(state, data.clone())));
                return Ok(out);
            }
            None => out.push((Some(next), output_path(state, data.clone()))),
            Some(false) => {}
        }
    }
    match str_field(state, "Default") {
        Some(default) => out.push((Some(default.to_owned()), output_path(state, data.clone()))),
        // No rule matched and no Default: States.NoChoiceMatched ends the execution.
        None => out.push((None, Value::Null)),
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
