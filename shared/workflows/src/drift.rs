//! The drift workflow: what AWS reports for the deployment's recorded resources against
//! the record, security-relevant settings first (the drift function; see its crate).
//!
//! ```text
//! {"deployment": "<name>", "repair": false}
//!   -> Check (drift: compare, then report in the journal, an EventBridge event and
//!      metrics)
//!   -> Repair? -- repair and something drifted --> Repair (control: start a provision
//!      with the recorded spec, queued behind any running workflow)
//!   -> Checked
//!   (any failure -> Failed, with the function's error)
//! ```
//!
//! It takes no lock: it only reads. A provision running meanwhile may show as drift it is
//! about to fix; the next day's run reads the settled state.

use serde_json::{Value, json};

use crate::flow::{Task, start_states};
use crate::function::Function;

pub const NAME: &str = apiary_core::inputs::drift::WORKFLOW;

/// Two Tasks, each with every attempt running to its timeout and every retry: under 20
/// minutes.
pub const TIMEOUT_SECONDS: u64 = 1800;

pub fn definition() -> Value {
    let check = Task::new(
        "Check",
        Function::Drift,
        json!({
            "action": "check",
            "deployment.$": "$.deployment",
            "execution_id.$": "$$.Execution.Id",
            "options": {"input.$": "$.input"}
        }),
    )
    .comment("Compare AWS with the record: security groups, buckets, the EKS endpoint, PostgreSQL, keys; report every difference (journal, EventBridge event, Apiary/Drift metrics)")
    .keep(
        json!({
            "total.$": "$.total",
            "security.$": "$.security",
            "repairable.$": "$.repairable",
            "repair.$": "$.repair",
            "findings.$": "$.findings",
            "checked.$": "$.checked"
        }),
        "$.drift",
    )
    .catch(&["States.ALL"], json!("$.failure"), "Failed");
    let repair = Task::new(
        "Repair",
        Function::Control,
        json!({
            "action": "drift-repair",
            "deployment.$": "$.deployment",
            "execution_id.$": "$$.Execution.Id",
            "options": {"workflow": NAME}
        }),
    )
    .comment("Start a provision with the recorded spec (queued behind any running workflow); it converges AWS back to the record")
    .keep(json!({"execution.$": "$.execution", "detail.$": "$.detail"}), "$.repair")
    .catch(&["States.ALL"], json!("$.failure"), "Failed");
    let mut states = serde_json::Map::new();
    for (name, state) in start_states(
        "Options the input may leave out: repair (start a provision when something drifted), false by default. A missing deployment is refused by the drift function",
        json!({"deployment": "", "repair": false}),
        None,
        json!({"deployment.$": "$.merged.deployment", "input.$": "$.merged", "repair": {"execution": null, "detail": "not asked"}}),
        check.name(),
    ) {
        states.insert(name.into(), state);
    }
    let mut state = check.state();
    state["Next"] = json!("Repair?");
    states.insert(check.name().to_owned(), state);
    states.insert(
        "Repair?".into(),
        json!({
            "Type": "Choice",
            "Comment": "Repair only when the input asks and something drifted that a provision changes back",
            "Choices": [{
                "And": [
                    {"Variable": "$.drift.repair", "BooleanEquals": true},
                    {"Variable": "$.drift.repairable", "NumericGreaterThan": 0}
                ],
                "Next": repair.name()
            }],
            "Default": "Checked"
        }),
    );
    let mut state = repair.state();
    state["Next"] = json!("Checked");
    states.insert(repair.name().to_owned(), state);
    states.insert(
        "Checked".into(),
        json!({
            "Type": "Pass",
            "Parameters": {"deployment.$": "$.deployment", "drift.$": "$.drift", "repair.$": "$.repair"},
            "End": true
        }),
    );
    states.insert(
        "Failed".into(),
        json!({
            "Type": "Fail",
            "Comment": "The check could not read AWS or the record, or the repair could not start",
            "ErrorPath": "$.failure.Error",
            "CausePath": "$.failure.Cause"
        }),
    );
    json!({
        "Comment": "Compare the deployment's recorded resources with what AWS reports (security groups, buckets, the EKS endpoint, PostgreSQL, keys) and report each difference; read-only unless the input asks to repair. Input {\"deployment\": \"<name>\"} | {\"deployment\": \"<name>\", \"repair\": true}. Generated from shared/workflows/src/drift.rs by `apiary workflows generate`: change the Rust, not this file",
        "StartAt": "Defaults",
        "TimeoutSeconds": TIMEOUT_SECONDS,
        "States": states
    })
}
