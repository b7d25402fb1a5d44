//! Running a graph of states, and each state's data flow, retries and catchers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::dataflow::{backoff, find_catcher, find_retrier, in_state, place, select};
use super::{Failure, Shared};
use crate::definition::{FailField, Graph, Kind, State, Transition};
use crate::error::{StatesError, names};
use crate::history::{Cursor, MAX_EVENTS, not_truncated};
use crate::intrinsics::RandomSource;
use crate::path::{ContextObject, Env, Scope};
use crate::template::{DynamicValue, Template};

/// One line of execution: the top level, a Parallel branch or a Map iteration.
pub(crate) struct Thread {
    pub scope: Arc<Scope>,
    pub cursor: Cursor,
    /// `$$.Map` inside a Map iteration.
    pub map_item: Option<Arc<Value>>,
    pub in_branch: bool,
}

pub(crate) type GraphResult = Result<(Value, Cursor), Failure>;
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Runs states from StartAt until one ends the graph.
pub(crate) fn run_graph(
    shared: Arc<Shared>,
    graph: Arc<Graph>,
    input: Value,
    mut thread: Thread,
) -> BoxFuture<GraphResult> {
    Box::pin(async move {
        let mut name = graph.start_at.clone();
        let mut input = input;
        loop {
            if shared.history.len() >= MAX_EVENTS - 1 {
                return Err(Failure {
                    error: StatesError::runtime(format!(
                        "The execution reached the maximum number of history events ({MAX_EVENTS})."
                    )),
                    last: thread.cursor.last,
                });
            }
            let Some(state) = graph.states.get(&name).cloned() else {
                return Err(Failure {
                    error: StatesError::runtime(format!("The state '{name}' does not exist")),
                    last: thread.cursor.last,
                });
            };
            match run_state(&shared, &state, input, &mut thread).await? {
                Step::Next(next, output) => {
                    name = next;
                    input = output;
                }
                Step::End(output) => return Ok((output, thread.cursor)),
            }
        }
    })
}

pub(crate) enum Step {
    Next(String, Value),
    End(Value),
}

/// What a state knows about itself while it runs.
pub(crate) struct StateRun<'a> {
    pub shared: &'a Arc<Shared>,
    pub state: &'a State,
    pub entered: u64,
    pub entered_time: String,
    pub retry_count: u64,
    pub map_item: Option<Arc<Value>>,
}

impl StateRun<'_> {
    /// The context object as this state sees it.
    pub fn context(&self, task_token: Option<&str>) -> ContextObject {
        // AWS's order: Execution, StateMachine, State (Name, EnteredTime and, for the
        // states that can retry, RetryCount), then Task and Map when they apply.
        let mut state = serde_json::Map::with_capacity(3);
        state.insert("Name".into(), json!(self.state.name));
        state.insert("EnteredTime".into(), json!(self.entered_time));
        if matches!(
            self.state.kind,
            Kind::Task(_) | Kind::Parallel { .. } | Kind::Map(_)
        ) {
            state.insert("RetryCount".into(), json!(self.retry_count));
        }
        let mut parts = vec![
            ("Execution", Arc::clone(&self.shared.context_execution)),
            (
                "StateMachine",
                Arc::clone(&self.shared.context_state_machine),
            ),
            ("State", Arc::new(Value::Object(state))),
        ];
        if let Some(token) = task_token {
            parts.push(("Task", Arc::new(json!({"Token": token}))));
        }
        if let Some(item) = &self.map_item {
            parts.push(("Map", Arc::clone(item)));
        }
        ContextObject::new(parts)
    }

    /// An error the engine raises in this state, with AWS's prefix.
    pub fn fail(&self, error: StatesError, cursor: &Cursor) -> Failure {
        Failure {
            error: in_state(&self.state.name, self.entered, error),
            last: cursor.last,
        }
    }

    pub fn rng(&self) -> &dyn RandomSource {
        &self.shared.rng
    }
}

/// Evaluates Assign; returns the values to set (all read before any is written).
fn evaluate_assign(
    template: Option<&Template>,
    run: &StateRun<'_>,
    value: &Value,
    scope: &Scope,
    cursor: &Cursor,
) -> Result<Vec<(String, Value)>, Failure> {
    let Some(template) = template else {
        return Ok(Vec::new());
    };
    let context = run.context(None);
    let env = Env {
        input: value,
        context: &context,
        vars: scope,
    };
    match template.render(&env, run.rng()) {
        Ok(Value::Object(map)) => Ok(map.into_iter().collect()),
        Ok(_) => Ok(Vec::new()),
        Err(e) => Err(run.fail(e, cursor)),
    }
}

fn exit(run: &StateRun<'_>, thread: &mut Thread, output: &Value, assigned: Vec<(String, Value)>) {
    let mut details = Map::new();
    details.insert("name".into(), json!(run.state.name));
    details.insert("output".into(), json!(crate::json::compact(output)));
    details.insert("outputDetails".into(), not_truncated());
    if !assigned.is_empty() {
        let vars: Map<String, Value> = assigned
            .iter()
            .map(|(k, v)| (k.clone(), json!(crate::json::compact(v))))
            .collect();
        details.insert("assignedVariables".into(), Value::Object(vars));
        details.insert("assignedVariablesDetails".into(), not_truncated());
        thread.scope.assign(assigned);
    }
    let event = format!("{}StateExited", run.state.type_name());
    run.shared.emit(
        &mut thread.cursor,
        &event,
        Some(("stateExitedEventDetails", Value::Object(details))),
        true,
    );
}

fn step_after(state: &State, output: Value) -> Step {
    match &state.transition {
        Transition::Next(next) => Step::Next(next.clone(), output),
        Transition::End => Step::End(output),
    }
}

async fn run_state(
    shared: &Arc<Shared>,
    state: &Arc<State>,
    raw: Value,
    thread: &mut Thread,
) -> Result<Step, Failure> {
    let entered_time = crate::timestamp::format(shared.clock.now());
    let entered = shared.emit(
        &mut thread.cursor,
        &format!("{}StateEntered", state.type_name()),
        Some((
            "stateEnteredEventDetails",
            json!({"name": state.name, "input": crate::json::compact(&raw), "inputDetails": not_truncated()}),
        )),
        true,
    );
    let mut run = StateRun {
        shared,
        state,
        entered,
        entered_time,
        retry_count: 0,
        map_item: thread.map_item.clone(),
    };
    let context = run.context(None);
    let env = Env {
        input: &raw,
        context: &context,
        vars: &thread.scope,
    };
    let effective = match &state.kind {
        Kind::Fail { .. } => raw.clone(),
        _ => select(&state.input_path, &env).map_err(|e| run.fail(e, &thread.cursor))?,
    };

    match &state.kind {
        Kind::Pass { result } => {
            let env = Env {
                input: &effective,
                context: &context,
                vars: &thread.scope,
            };
            let value = match (result, &state.parameters) {
                (Some(r), _) => r.clone(),
                (None, Some(p)) => p
                    .render(&env, run.rng())
                    .map_err(|e| run.fail(e, &thread.cursor))?,
                (None, None) => effective.clone(),
            };
            finish(&run, thread, raw, value, None).map(|out| step_after(state, out))
        }
        Kind::Succeed => {
            let output = output_path(&run, thread, effective)?;
            exit(&run, thread, &output, Vec::new());
            Ok(Step::End(output))
        }
        Kind::Fail { error, cause } => {
            let env = Env {
                input: &raw,
                context: &context,
                vars: &thread.scope,
            };
            let error = fail_field(error, &env, &run, &thread.cursor)?;
            let cause = fail_field(cause, &env, &run, &thread.cursor)?;
            Err(Failure {
                error: StatesError {
                    error: error.unwrap_or_default(),
                    cause,
                },
                last: thread.cursor.last,
            })
        }
        Kind::Choice { rules, default } => {
            let env = Env {
                input: &effective,
                context: &context,
                vars: &thread.scope,
            };
            let mut chosen = None;
            for rule in rules {
                if crate::choice::evaluate(&rule.condition, &env)
                    .map_err(|e| run.fail(e, &thread.cursor))?
                {
                    chosen = Some((rule.next.clone(), rule.assign.as_ref()));
                    break;
                }
            }
            let (next, rule_assign) = match (chosen, default) {
                (Some(c), _) => c,
                (None, Some(d)) => (d.clone(), None),
                (None, None) => {
                    return Err(run.fail(
                        StatesError::runtime("Failed to transition out of the state. The state does not point to a next state."),
                        &thread.cursor,
                    ));
                }
            };
            let mut assigned = evaluate_assign(
                state.assign.as_ref(),
                &run,
                &effective,
                &thread.scope,
                &thread.cursor,
            )?;
            assigned.extend(evaluate_assign(
                rule_assign,
                &run,
                &effective,
                &thread.scope,
                &thread.cursor,
            )?);
            let output = output_path(&run, thread, effective)?;
            exit(&run, thread, &output, assigned);
            Ok(Step::Next(next, output))
        }
        Kind::Wait(wait) => {
            let until = super::wait::wait_until(wait, &effective, &run, thread)?;
            shared.clock.sleep_until(until).await;
            let assigned = evaluate_assign(
                state.assign.as_ref(),
                &run,
                &effective,
                &thread.scope,
                &thread.cursor,
            )?;
            let output = output_path(&run, thread, effective)?;
            exit(&run, thread, &output, assigned);
            Ok(step_after(state, output))
        }
        Kind::Task(_) | Kind::Parallel { .. } | Kind::Map(_) => {
            let result = with_retries(&mut run, thread, &effective).await;
            match result {
                Ok(value) => {
                    match finish(
                        &run,
                        thread,
                        raw.clone(),
                        value,
                        state.result_selector.as_ref(),
                    ) {
                        Ok(output) => Ok(step_after(state, output)),
                        // A ResultPath that cannot be applied is the state's own, catchable failure.
                        Err(failure) if failure.error.error == names::RESULT_PATH_MATCH_FAILURE => {
                            catch(&run, thread, raw, failure)
                        }
                        Err(failure) => Err(failure),
                    }
                }
                Err(failure) => catch(&run, thread, raw, failure),
            }
        }
    }
}

/// ResultSelector, Assign, ResultPath and OutputPath, then the Exited event.
fn finish(
    run: &StateRun<'_>,
    thread: &mut Thread,
    raw: Value,
    result: Value,
    selector: Option<&Template>,
) -> Result<Value, Failure> {
    let result = match selector {
        Some(selector) => {
            let context = run.context(None);
            let env = Env {
                input: &result,
                context: &context,
                vars: &thread.scope,
            };
            selector
                .render(&env, run.rng())
                .map_err(|e| run.fail(e, &thread.cursor))?
        }
        None => result,
    };
    let assigned = evaluate_assign(
        run.state.assign.as_ref(),
        run,
        &result,
        &thread.scope,
        &thread.cursor,
    )?;
    let placed =
        place(&run.state.result_path, raw, result).map_err(|e| run.fail(e, &thread.cursor))?;
    let output = output_path(run, thread, placed)?;
    exit(run, thread, &output, assigned);
    Ok(output)
}

fn output_path(run: &StateRun<'_>, thread: &Thread, value: Value) -> Result<Value, Failure> {
    if matches!(run.state.output_path, crate::definition::PathField::Whole) {
        return Ok(value);
    }
    let context = run.context(None);
    let env = Env {
        input: &value,
        context: &context,
        vars: &thread.scope,
    };
    select(&run.state.output_path, &env).map_err(|e| run.fail(e, &thread.cursor))
}

fn fail_field(
    field: &FailField,
    env: &Env<'_>,
    run: &StateRun<'_>,
    cursor: &Cursor,
) -> Result<Option<String>, Failure> {
    let value = match field {
        FailField::Absent => return Ok(None),
        FailField::Literal(s) => return Ok(Some(s.clone())),
        FailField::Dynamic(DynamicValue::Path(p)) => p
            .evaluate(env, false)
            .ok_or_else(|| run.fail(super::dataflow::no_results(p), cursor))?,
        FailField::Dynamic(DynamicValue::Intrinsic(call)) => call
            .evaluate(env, run.rng())
            .map_err(|e| run.fail(e, cursor))?,
    };
    match value {
        Value::String(s) => Ok(Some(s)),
        other => Err(run.fail(
            StatesError::runtime(format!(
                "The value at the path must be a string, but was {}",
                crate::json::compact(&other)
            )),
            cursor,
        )),
    }
}

/// Runs the state's work, retrying as its Retry list says.
async fn with_retries(
    run: &mut StateRun<'_>,
    thread: &mut Thread,
    effective: &Value,
) -> Result<Value, Failure> {
    let state = run.state;
    let mut counts = vec![0u64; state.retry.len()];
    loop {
        let attempt = match &state.kind {
            Kind::Task(spec) => super::task::attempt(run, spec, effective, thread).await,
            Kind::Parallel { branches } => {
                super::parallel::run_parallel(run, branches, effective, thread).await
            }
            Kind::Map(spec) => super::parallel::run_map(run, spec, effective, thread).await,
            _ => unreachable_kind(run, thread),
        };
        let failure = match attempt {
            Ok(value) => return Ok(value),
            Err(failure) => failure,
        };
        let Some(index) = find_retrier(&state.retry, &failure.error) else {
            return Err(failure);
        };
        let retrier = &state.retry[index];
        if counts[index] >= retrier.max_attempts {
            return Err(failure);
        }
        let mut delay = backoff(retrier, counts[index]);
        if retrier.jitter_full {
            delay *= run.shared.rng.unit();
        }
        counts[index] += 1;
        run.retry_count += 1;
        thread.cursor.last = failure.last;
        run.shared.clock.sleep(delay).await;
    }
}

fn unreachable_kind(run: &StateRun<'_>, thread: &Thread) -> Result<Value, Failure> {
    Err(run.fail(
        StatesError::runtime("This state type has no work to retry"),
        &thread.cursor,
    ))
}

/// A final failure of a Task, Parallel or Map: the kind's failed event, then a
/// matching catcher, if any.
fn catch(
    run: &StateRun<'_>,
    thread: &mut Thread,
    raw: Value,
    failure: Failure,
) -> Result<Step, Failure> {
    let state = run.state;
    let runtime = failure.error.is_uncatchable_runtime();
    thread.cursor.last = failure.last;
    if !runtime {
        match &state.kind {
            Kind::Parallel { .. } => {
                run.shared
                    .emit(&mut thread.cursor, "ParallelStateFailed", None, true);
            }
            Kind::Map(_) => {
                run.shared
                    .emit(&mut thread.cursor, "MapStateFailed", None, true);
            }
            _ => {}
        }
    }
    let Some(catcher) = find_catcher(&state.catch, &failure.error) else {
        if !runtime && thread.in_branch && matches!(state.kind, Kind::Task(_)) {
            run.shared
                .emit(&mut thread.cursor, "TaskStateAborted", None, false);
        }
        return Err(Failure {
            error: failure.error,
            last: thread.cursor.last,
        });
    };
    let error_output = failure.error.to_error_output();
    let assigned = evaluate_assign(
        catcher.assign.as_ref(),
        run,
        &error_output,
        &thread.scope,
        &thread.cursor,
    )?;
    let output =
        place(&catcher.result_path, raw, error_output).map_err(|e| run.fail(e, &thread.cursor))?;
    exit(run, thread, &output, assigned);
    Ok(Step::Next(catcher.next.clone(), output))
}

/// The error when a payload exceeds the 256 KiB quota.
pub(crate) fn data_limit(what: &str) -> StatesError {
    StatesError::new(
        names::DATA_LIMIT_EXCEEDED,
        format!(
            "The state/task '{what}' returned a result with a size exceeding the maximum number of bytes service limit."
        ),
    )
}
