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
    if let Some(skipped) = workloads["skipped"].as_array() {
        for object in skipped {
            if let Some(reason) = object["reason"].as_str() {
                notes.push(format!("workloads: {reason}"));
            }
        }
    }
    let dns = &layers["dns"];
    if let Some(note) = dns["validation_note"].as_str() {
        notes.push(format!("dns: {note}"));
    }
    match dns["certificate_status"].as_str() {
        Some("ISSUED") => notes.push(
            "dns: the certificate is ISSUED because the emulator issues every DNS-validated certificate without looking at DNS, MOTO_ACM_VALIDATION_WAIT seconds after the request (0 in the emulator Apiary starts); on AWS, ACM issues it only once it sees the validation records in public DNS, and until then the deployment is WAITING_FOR_DNS_VALIDATION".to_owned(),
        ),
        Some(status) => notes.push(format!(
            "dns: the certificate is {status}, so the deployment is WAITING_FOR_DNS_VALIDATION (the emulator this run used issues certificates only after MOTO_ACM_VALIDATION_WAIT seconds, 60 unless set; `scripts/emulator start` sets 0)"
        )),
        None => {}
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::notes_from;

    #[test]
    fn an_issued_certificate_is_said_to_be_the_emulators_doing() {
        let notes = notes_from(&json!({"dns": {"certificate_status": "ISSUED",
                                               "validation_note": "records NOT written"}}));
        assert!(
            notes.iter().any(|n| n == "dns: records NOT written"),
            "{notes:?}"
        );
        assert!(
            notes.iter().any(|n| n.contains("without looking at DNS")
                && n.contains("0 in the emulator Apiary starts")),
            "{notes:?}"
        );
    }

    #[test]
    fn a_pending_certificate_and_the_ingress_it_holds_back_are_noted() {
        let notes = notes_from(&json!({
            "dns": {"certificate_status": "PENDING_VALIDATION"},
            "workloads": {"mode": "rendered", "folder": "/tmp/w",
                          "skipped": [{"kind": "Ingress", "reason": "certificate arn:c is PENDING_VALIDATION, not ISSUED"}]}
        }));
        assert!(
            notes.iter().any(|n| n
                .contains("PENDING_VALIDATION, so the deployment is WAITING_FOR_DNS_VALIDATION")),
            "{notes:?}"
        );
        assert!(
            notes
                .iter()
                .any(|n| n == "workloads: certificate arn:c is PENDING_VALIDATION, not ISSUED"),
            "{notes:?}"
        );
    }
}
