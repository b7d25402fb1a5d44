//! Checks across states: every transition names a state of the same graph, and every
//! state can be reached from StartAt.

use std::collections::{HashSet, VecDeque};

use serde_json::{Map, Value};

use super::{Graph, Kind, Transition};
use crate::error::{ValidationError, pointer_token};

fn state_pointer(graph_pointer: &str, name: &str) -> String {
    format!("{graph_pointer}/States/{}", pointer_token(name))
}

/// The transitions out of a state, each with the pointer of the field that names it.
fn targets(
    graph_pointer: &str,
    name: &str,
    kind: &Kind,
    transition: &Transition,
    catch: &[super::Catcher],
) -> Vec<(String, String)> {
    let here = state_pointer(graph_pointer, name);
    let mut out = Vec::new();
    if let Transition::Next(next) = transition {
        out.push((next.clone(), format!("{here}/Next")));
    }
    if let Kind::Choice { rules, default } = kind {
        for (i, rule) in rules.iter().enumerate() {
            out.push((rule.next.clone(), format!("{here}/Choices/{i}/Next")));
        }
        if let Some(d) = default {
            out.push((d.clone(), format!("{here}/Default")));
        }
    }
    for (i, c) in catch.iter().enumerate() {
        out.push((c.next.clone(), format!("{here}/Catch/{i}/Next")));
    }
    out
}

pub(super) fn check(
    graph: &Graph,
    raw_states: &Map<String, Value>,
    graph_pointer: &str,
    errors: &mut Vec<ValidationError>,
) {
    let exists = |name: &str| raw_states.contains_key(name);
    if !exists(&graph.start_at) {
        errors.push(ValidationError {
            pointer: format!("{graph_pointer}/StartAt"),
            message: format!(
                "StartAt names the state '{}', which does not exist",
                graph.start_at
            ),
        });
    }
    for (name, state) in &graph.states {
        for (target, pointer) in targets(
            graph_pointer,
            name,
            &state.kind,
            &state.transition,
            &state.catch,
        ) {
            if !exists(&target) {
                errors.push(ValidationError {
                    pointer,
                    message: format!(
                        "Missing transition target: the state '{target}' does not exist"
                    ),
                });
            }
        }
    }
    // Reachability is only meaningful once every state parsed.
    if graph.states.len() != raw_states.len() || !exists(&graph.start_at) {
        return;
    }
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([graph.start_at.clone()]);
    while let Some(name) = queue.pop_front() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(state) = graph.states.get(&name) {
            for (target, _) in targets(
                graph_pointer,
                &name,
                &state.kind,
                &state.transition,
                &state.catch,
            ) {
                if !seen.contains(&target) {
                    queue.push_back(target);
                }
            }
        }
    }
    for name in raw_states.keys() {
        if !seen.contains(name) {
            errors.push(ValidationError {
                pointer: state_pointer(graph_pointer, name),
                message: format!("The state '{name}' is not reachable from StartAt"),
            });
        }
    }
}
