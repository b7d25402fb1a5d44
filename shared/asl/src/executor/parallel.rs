//! Parallel and Map: branches and iterations run as concurrent tokio tasks, each with
//! its own history chain and variable scope.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::Failure;
use super::state::{StateRun, Thread, run_graph};
use crate::clock::ActiveGuard;
use crate::definition::{Graph, MapSpec, NumberField};
use crate::error::{StatesError, names};
use crate::history::Cursor;
use crate::path::{ContextObject, Env};

/// AWS runs at most this many inline Map iterations at once.
const MAX_INLINE_CONCURRENCY: usize = 40;

fn join_failure(error: &tokio::task::JoinError, last: u64) -> Failure {
    Failure {
        error: StatesError::runtime(format!("A branch stopped unexpectedly: {error}")),
        last,
    }
}

/// One attempt of a Parallel state; returns the array of branch outputs.
pub(crate) async fn run_parallel(
    run: &StateRun<'_>,
    branches: &[Arc<Graph>],
    effective: &Value,
    thread: &mut Thread,
) -> Result<Value, Failure> {
    let shared = Arc::clone(run.shared);
    let input = match &run.state.parameters {
        Some(p) => {
            let context = run.context(None);
            let env = Env {
                input: effective,
                context: &context,
                vars: &thread.scope,
            };
            p.render(&env, run.rng())
                .map_err(|e| run.fail(e, &thread.cursor))?
        }
        None => effective.clone(),
    };
    let started = shared.emit(&mut thread.cursor, "ParallelStateStarted", None, true);
    let mut set = JoinSet::new();
    for (index, branch) in branches.iter().enumerate() {
        let guard = shared.clock.activate();
        let child = Thread {
            scope: thread.scope.child(),
            cursor: Cursor { last: started },
            map_item: None,
            in_branch: true,
        };
        let (shared, branch, input) = (Arc::clone(&shared), Arc::clone(branch), input.clone());
        // The branch hands its active guard back with its result: were it dropped when
        // the branch ends, every branch could count idle before the parent, woken, counts
        // active again, and the virtual clock would jump (to the execution's deadline,
        // when it is the only timer left) in between.
        set.spawn(async move {
            let out = run_graph(shared, branch, input, child).await;
            (index, out, guard)
        });
    }
    let mut outputs = vec![Value::Null; branches.len()];
    let mut last = started;
    let clock = shared.clock.clone();
    while let Some(joined) = clock.idle(set.join_next()).await {
        let (index, result, _branch_active) = joined.map_err(|e| join_failure(&e, last))?;
        match result {
            Ok((output, cursor)) => {
                outputs[index] = output;
                last = last.max(cursor.last);
            }
            Err(failure) => {
                set.abort_all();
                return Err(failure);
            }
        }
    }
    thread.cursor.last = last;
    shared.emit(&mut thread.cursor, "ParallelStateSucceeded", None, false);
    Ok(Value::Array(outputs))
}

fn resolve_number(
    field: Option<&NumberField>,
    env: &Env<'_>,
    name: &str,
) -> Result<Option<f64>, StatesError> {
    match field {
        None => Ok(None),
        Some(NumberField::Fixed(n)) => Ok(Some(*n)),
        Some(NumberField::Path(path)) => {
            let value = path
                .evaluate(env, false)
                .ok_or_else(|| super::dataflow::no_results(path))?;
            match value.as_f64() {
                Some(n) if n >= 0.0 => Ok(Some(n)),
                _ => Err(StatesError::runtime(format!(
                    "The {name}Path field refers to value {} which is not a valid non-negative number",
                    crate::json::compact(&value)
                ))),
            }
        }
    }
}

struct Tolerance {
    count: Option<f64>,
    percentage: Option<f64>,
}

impl Tolerance {
    fn configured(&self) -> bool {
        self.count.is_some() || self.percentage.is_some()
    }

    fn exceeded(&self, failures: usize, total: usize) -> bool {
        let over_count = self.count.is_none_or(|c| failures as f64 > c);
        let over_pct = self
            .percentage
            .is_none_or(|p| total > 0 && (failures as f64) * 100.0 / (total as f64) > p);
        match (self.count.is_some(), self.percentage.is_some()) {
            (true, true) => over_count || over_pct,
            (true, false) => over_count,
            (false, true) => over_pct,
            (false, false) => failures > 0,
        }
    }
}

type IterationResult = Result<(usize, Value, u64), (usize, Failure)>;

/// One attempt of a Map state (inline mode); returns the array of iteration outputs.
pub(crate) async fn run_map(
    run: &StateRun<'_>,
    spec: &MapSpec,
    effective: &Value,
    thread: &mut Thread,
) -> Result<Value, Failure> {
    let shared = Arc::clone(run.shared);
    let context = run.context(None);
    let env = Env {
        input: effective,
        context: &context,
        vars: &thread.scope,
    };
    let items = match &spec.items_path {
        None => effective.clone(),
        Some(path) => path
            .evaluate(&env, false)
            .ok_or_else(|| run.fail(super::dataflow::no_results(path), &thread.cursor))?,
    };
    let Value::Array(items) = items else {
        let path = spec.items_path.as_ref().map_or("$", |p| p.source.as_str());
        return Err(run.fail(
            StatesError::runtime(format!(
                "Invalid path '{path}': The ItemsPath field must reference a JSON array, but found {}",
                crate::json::compact(&items)
            )),
            &thread.cursor,
        ));
    };
    let fail = |e: StatesError, cursor: &Cursor| run.fail(e, cursor);
    let max = resolve_number(spec.max_concurrency.as_ref(), &env, "MaxConcurrency")
        .map_err(|e| fail(e, &thread.cursor))?;
    let tolerance = Tolerance {
        count: resolve_number(
            spec.tolerated_failure_count.as_ref(),
            &env,
            "ToleratedFailureCount",
        )
        .map_err(|e| fail(e, &thread.cursor))?,
        percentage: resolve_number(
            spec.tolerated_failure_percentage.as_ref(),
            &env,
            "ToleratedFailurePercentage",
        )
        .map_err(|e| fail(e, &thread.cursor))?,
    };
    let limit = match max {
        Some(m) if m >= 1.0 => (m as usize).min(MAX_INLINE_CONCURRENCY),
        _ => MAX_INLINE_CONCURRENCY,
    };

    let total = items.len();
    let started = shared.emit(
        &mut thread.cursor,
        "MapStateStarted",
        Some(("mapStateStartedEventDetails", json!({"length": total}))),
        true,
    );
    let name = run.state.name.clone();
    let mut outputs = vec![Value::Null; total];
    let mut pending = items.into_iter().enumerate();
    let mut set: JoinSet<(IterationResult, ActiveGuard)> = JoinSet::new();
    let mut running = 0usize;
    let mut failures = 0usize;
    let mut last = started;
    let clock = shared.clock.clone();
    loop {
        while running < limit {
            let Some((index, item)) = pending.next() else {
                break;
            };
            let iteration_input = match &spec.item_selector {
                None => item,
                Some(selector) => {
                    let item_context = map_context(&context, index, item);
                    let env = Env {
                        input: effective,
                        context: &item_context,
                        vars: &thread.scope,
                    };
                    selector
                        .render(&env, run.rng())
                        .map_err(|e| fail(e, &thread.cursor))?
                }
            };
            let guard = shared.clock.activate();
            let (shared, graph, name, scope) = (
                Arc::clone(&shared),
                Arc::clone(&spec.processor),
                name.clone(),
                thread.scope.child(),
            );
            running += 1;
            // As Parallel's branches: the guard goes back to the parent with the result.
            set.spawn(async move {
                let mut cursor = Cursor { last: started };
                let details = json!({"name": name, "index": index});
                shared.emit(
                    &mut cursor,
                    "MapIterationStarted",
                    Some(("mapIterationStartedEventDetails", details.clone())),
                    true,
                );
                let child = Thread {
                    scope,
                    cursor,
                    map_item: None,
                    in_branch: true,
                };
                let result =
                    match run_graph(Arc::clone(&shared), graph, iteration_input, child).await {
                        Ok((output, mut cursor)) => {
                            shared.emit(
                                &mut cursor,
                                "MapIterationSucceeded",
                                Some(("mapIterationSucceededEventDetails", details)),
                                true,
                            );
                            Ok((index, output, cursor.last))
                        }
                        Err(failure) => {
                            if !failure.error.is_uncatchable_runtime() {
                                let mut at = Cursor { last: failure.last };
                                shared.emit(
                                    &mut at,
                                    "MapIterationFailed",
                                    Some(("mapIterationFailedEventDetails", details)),
                                    false,
                                );
                            }
                            Err((index, failure))
                        }
                    };
                (result, guard)
            });
        }
        let Some(joined) = clock.idle(set.join_next()).await else {
            break;
        };
        running -= 1;
        let (result, _iteration_active) = joined.map_err(|e| join_failure(&e, last))?;
        match result {
            Ok((index, output, iteration_last)) => {
                outputs[index] = output;
                last = last.max(iteration_last);
            }
            Err((index, failure)) => {
                if failure.error.is_uncatchable_runtime() || !tolerance.configured() {
                    set.abort_all();
                    return Err(failure);
                }
                failures += 1;
                if tolerance.exceeded(failures, total) {
                    set.abort_all();
                    return Err(Failure {
                        error: StatesError::new(
                            names::EXCEED_TOLERATED_FAILURE_THRESHOLD,
                            "The specified tolerated failure threshold was exceeded",
                        ),
                        last: failure.last,
                    });
                }
                outputs[index] = failure.error.to_error_output();
                last = last.max(failure.last);
            }
        }
    }
    thread.cursor.last = last;
    shared.emit(&mut thread.cursor, "MapStateSucceeded", None, false);
    Ok(Value::Array(outputs))
}

/// The state's context object plus `Map.Item` for one iteration.
fn map_context(base: &ContextObject, index: usize, value: Value) -> ContextObject {
    let mut context = base.clone();
    context.push(
        "Map",
        Arc::new(json!({"Item": {"Index": index, "Value": value}})),
    );
    context
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_thresholds() {
        let none = Tolerance {
            count: None,
            percentage: None,
        };
        assert!(!none.configured());
        let count = Tolerance {
            count: Some(1.0),
            percentage: None,
        };
        assert!(!count.exceeded(1, 10));
        assert!(count.exceeded(2, 10));
        let pct = Tolerance {
            count: None,
            percentage: Some(25.0),
        };
        assert!(!pct.exceeded(1, 4));
        assert!(pct.exceeded(2, 4));
    }
}
