//! The summary a local run ends with: what exists now, layer by layer, and what was not
//! done for real (never claimed).

use std::fmt::Write;

use apiary_core::store::{Resource, Store};
use serde_json::Value;

pub struct Summary {
    pub resources: Vec<Resource>,
    pub notes: Vec<String>,
}

const ORDER: &[&str] = &[
    "keys",
    "network",
    "dns",
    "storage",
    "databases",
    "cluster",
    "workloads",
];

/// Reads the inventory and picks the caveats out of the saved layer outputs.
pub async fn summarize(store: &Store, deployment: &str) -> anyhow::Result<Summary> {
    let layers = apiary_core::step::assemble_value(store.layer_outputs(deployment).await?)?;
    let layers = Some(&layers);
    let mut resources = store.inventory(deployment).await?;
    resources.sort_by_key(|r| {
        (
            ORDER
                .iter()
                .position(|l| *l == r.layer)
                .unwrap_or(ORDER.len()),
            r.kind.clone(),
            r.id.clone(),
        )
    });
    let mut notes = Vec::new();
    if let Some(layers) = layers {
        notes.extend(notes_from(layers));
    }
    Ok(Summary { resources, notes })
}

fn notes_from(layers: &Value) -> Vec<String> {
    let mut notes = Vec::new();
    for store in ["postgres", "documentdb", "redis"] {
        let out = &layers["databases"][store];
        if out["enabled"] == Value::Bool(false) {
            notes.push(format!("{store}: disabled in the spec"));
        }
        if out["emulated"] == Value::Bool(false) {
            let reason = out["reason"]
                .as_str()
                .unwrap_or("the local emulator does not support it");
            notes.push(format!("{store}: NOT created locally: {reason}"));
        }
    }
    let workloads = &layers["workloads"];
    match workloads["mode"].as_str() {
        Some("rendered") => notes.push(format!(
            "workloads: manifests rendered and validated in {}, not applied (no kubeconfig given)",
            workloads["folder"].as_str().unwrap_or("the state folder")
        )),
        Some("applied") => {
            notes.push("workloads: applied to the cluster and rolled out".to_owned())
        }
        _ => {}
    }
    if let Some(note) = layers["dns"]["validation_note"].as_str() {
        notes.push(format!("dns: {note}"));
    }
    notes
}

impl Summary {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let layer_width = self
            .resources
            .iter()
            .map(|r| r.layer.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let kind_width = self
            .resources
            .iter()
            .map(|r| r.kind.len())
            .max()
            .unwrap_or(8)
            .max(8);
        let _ = writeln!(
            out,
            "{:<layer_width$}  {:<kind_width$}  id",
            "layer", "resource"
        );
        let _ = writeln!(
            out,
            "{:-<layer_width$}  {:-<kind_width$}  {:-<24}",
            "", "", ""
        );
        for r in &self.resources {
            let _ = writeln!(
                out,
                "{:<layer_width$}  {:<kind_width$}  {}",
                r.layer, r.kind, r.id
            );
        }
        let _ = writeln!(out, "{} resources", self.resources.len());
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}
