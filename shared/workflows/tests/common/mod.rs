//! Runs a generated workflow in the embedded engine against scripted functions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use apiary_asl::{ExecutionOptions, ExecutionResult, HandlerRegistry, StateMachine, TaskError};
use apiary_workflows::provision::POLLS;
use apiary_workflows::{Function, Workflow};
use serde_json::{Value, json};

/// How the scripted functions answer.
#[derive(Debug, Clone, Default)]
pub struct Script {
    /// Polls (after the first call) until a loop's resource is ready; absent: ready at once.
    pub polls_until_ready: HashMap<&'static str, usize>,
    /// Times `lock` answers Apiary.Conflict before it succeeds.
    pub lock_conflicts: usize,
    /// `(function, action, error name)` that fails every time.
    pub failing: Option<(&'static str, &'static str, &'static str)>,
    /// A second one.
    pub also_failing: Option<(&'static str, &'static str, &'static str)>,
    /// The status `ready` records; absent: READY.
    pub ready_status: Option<&'static str>,
    /// `upgrade-revert` finds nothing this run changed (a rerun).
    pub nothing_to_revert: bool,
}

/// Every event a function received, as `(function, event)`.
pub type Calls = Arc<Mutex<Vec<(String, Value)>>>;

pub fn handlers(script: Script, calls: Calls) -> HandlerRegistry {
    let mut loops: HashMap<(&str, &str), &str> = HashMap::new();
    let upgrade = apiary_workflows::upgrade::ROLL_IMAGE;
    for poll in POLLS.iter().chain([&upgrade]) {
        loops.insert((poll.function.name(), poll.ensure), poll.name);
        loops.insert((poll.function.name(), poll.status), poll.name);
    }
    let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut registry = HandlerRegistry::new();
    for function in Function::ALL {
        let (script, loops, counts, calls) = (
            script.clone(),
            loops.clone(),
            Arc::clone(&counts),
            Arc::clone(&calls),
        );
        let name = function.name();
        registry.register_fn(name, move |event: Value| {
            calls.lock().unwrap().push((name.to_owned(), event.clone()));
            let action = event["action"].as_str().unwrap_or_default().to_owned();
            let count = |key: &str| {
                let mut counts = counts.lock().unwrap();
                let n = counts.entry(key.to_owned()).or_default();
                *n += 1;
                *n
            };
            let fails = [script.failing, script.also_failing]
                .into_iter()
                .flatten()
                .find(|(f, a, _)| *f == name && *a == action);
            let result = match (name, action.as_str()) {
                (function, action) if fails.is_some() => {
                    let error = fails.unwrap().2;
                    Err(TaskError::new(
                        error,
                        format!("scripted {function} {action}"),
                    ))
                }
                ("control", "validate") => Ok(json!({"deployment": "acme"})),
                // As the control function answers: the kit refuses an empty deployment.
                ("control", "validate-input") if event["deployment"] == "" => Err(TaskError::new(
                    "Apiary.InvalidInput",
                    "step input field `deployment` is missing",
                )),
                ("control", "validate-input") => {
                    let mut input = event["options"]["input"].clone();
                    input.as_object_mut().unwrap().remove("deployment");
                    input.as_object_mut().unwrap().remove("queue");
                    Ok(json!({"deployment": event["deployment"], "input": input}))
                }
                ("control", "finish") => Ok(json!({"status": "READY"})),
                // As the control function answers for the upgrade's input.
                ("control", "upgrade-plan") => {
                    let kind = match event["options"]["input"].get("image") {
                        Some(_) => "image",
                        None => "kubernetes_version",
                    };
                    Ok(json!({"kind": kind, "before": "old", "after": "new", "changes": true}))
                }
                ("control", "upgrade-revert") if script.nothing_to_revert => Ok(json!({
                    "changes": false,
                    "after": "new",
                    "detail": "nothing to roll back: this run changed no recorded image"
                })),
                ("control", "upgrade-revert") => Ok(json!({
                    "changes": true,
                    "after": "old",
                    "detail": "rolled back the record: ingestion image new -> old"
                })),
                ("control", "lock") if count("lock") <= script.lock_conflicts => Err(
                    TaskError::new("Apiary.Conflict", "another workflow holds the lock"),
                ),
                ("control", "ready") => Ok(json!({
                    "status": script.ready_status.unwrap_or("READY"),
                    "layers": {"keys": {"key_arn": "arn:key"}}
                })),
                ("control", _) => Ok(json!({})),
                // The launch function asked by stack-delete: not done for as many polls as
                // the script says (`Watch`), then answered.
                ("launch", _) => {
                    let polls = script.polls_until_ready.get("Watch").copied().unwrap_or(0);
                    Ok(if count("Watch") > polls {
                        json!({"done": true, "status": "SUCCESS"})
                    } else {
                        json!({"done": false, "status": "RUNNING"})
                    })
                }
                (function, action) => {
                    let ready = match loops.get(&(function, action)) {
                        Some(name) => {
                            let polls = script.polls_until_ready.get(name).copied().unwrap_or(0);
                            count(name) > polls
                        }
                        None => true,
                    };
                    let mut out = json!({"ready": ready, "created": []});
                    // What the upgrade's steps always return besides (the workflow keeps
                    // it in its result).
                    if action.starts_with("upgrade-") || action.starts_with("rollback-") {
                        out["detail"] = json!(format!("scripted {function} {action}"));
                        out["upgrade"] = json!({"target": "1.34"});
                    }
                    Ok(out)
                }
            };
            async move { result }
        });
    }
    registry
}

pub async fn run(workflow: &Workflow, input: Value, script: Script) -> (ExecutionResult, Calls) {
    let subs: HashMap<String, String> = Function::ALL
        .into_iter()
        .map(|f| {
            let arn = format!(
                "arn:aws:lambda:us-east-1:123456789012:function:{}",
                f.name()
            );
            (f.placeholder_name(), arn)
        })
        .collect();
    let machine = StateMachine::load(&workflow.render(), &subs).unwrap();
    let calls = Calls::default();
    let result = machine
        .execute(
            input,
            ExecutionOptions {
                handlers: handlers(script, Arc::clone(&calls)),
                ..Default::default()
            },
        )
        .await;
    (result, calls)
}

pub fn provision() -> Workflow {
    apiary_workflows::all()
        .into_iter()
        .find(|w| w.name == "provision")
        .unwrap()
}
