//! The phone-home workflow: the deployment's signed status report, sent outbound to the
//! vendor's endpoint (the report function; see `apiary_core::phone_home`).
//!
//! ```text
//! {"deployment": "<name>"}
//!   -> Report (report: make this run's report, keep it, send every kept report in order)
//!   -> Reported
//!   (any failure -> Failed, with the function's error: the reports stay kept)
//! ```
//!
//! It takes no lock: it only reads the state table and writes its own outbox, so it
//! never waits for (or delays) a workflow that changes the deployment. Two runs at once
//! do not send twice at once: the report function holds a short lease of its own while
//! it sends.

use serde_json::{Value, json};

use crate::flow::{Task, start_states};
use crate::function::Function;

pub const NAME: &str = apiary_core::phone_home::WORKFLOW;

/// One Task: every attempt running to its timeout with every retry is under 10 minutes.
pub const TIMEOUT_SECONDS: u64 = 900;

pub fn definition() -> Value {
    let report = Task::new(
        "Report",
        Function::Report,
        json!({
            "action": "report",
            "deployment.$": "$.deployment",
            "execution_id.$": "$$.Execution.Id"
        }),
    )
    .comment("Make this run's status report, keep it in the outbox, and send every kept report in order, signed, to the stack's PhoneHomeUrl")
    .keep(
        json!({
            "enabled.$": "$.enabled",
            "host.$": "$.host",
            "key_id.$": "$.key_id",
            "made.$": "$.made",
            "delivered.$": "$.delivered",
            "kept.$": "$.kept",
            "stopped.$": "$.stopped"
        }),
        "$.report",
    )
    .catch(&["States.ALL"], json!("$.failure"), "Failed");
    let mut states = serde_json::Map::new();
    for (name, state) in start_states(
        "The report function refuses a missing deployment by name",
        json!({"deployment": ""}),
        None,
        json!({"deployment.$": "$.merged.deployment"}),
        report.name(),
    ) {
        states.insert(name.into(), state);
    }
    let mut state = report.state();
    state["Next"] = json!("Reported");
    states.insert(report.name().to_owned(), state);
    states.insert(
        "Reported".into(),
        json!({
            "Type": "Pass",
            "Parameters": {"deployment.$": "$.deployment", "report.$": "$.report"},
            "End": true
        }),
    );
    states.insert(
        "Failed".into(),
        json!({
            "Type": "Fail",
            "Comment": "The report could not be made, or the endpoint refused it or has not been reached for a day; the reports stay kept",
            "ErrorPath": "$.failure.Error",
            "CausePath": "$.failure.Cause"
        }),
    );
    json!({
        "Comment": "Send the deployment's signed status report to the vendor (outbound only; off when the stack's PhoneHomeUrl is empty). Input {\"deployment\": \"<name>\"}. Reports wait in the state table while the endpoint cannot be reached and are sent in order later. Generated from shared/workflows/src/phone_home.rs by `apiary workflows generate`: change the Rust, not this file",
        "StartAt": "Defaults",
        "TimeoutSeconds": TIMEOUT_SECONDS,
        "States": states
    })
}
