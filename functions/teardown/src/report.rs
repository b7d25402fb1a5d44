//! What an action removed and kept, kept in the state table across its polls and re-runs.

use apiary_core::Result;
use apiary_core::step::{Action, Recorder};
use serde::{Deserialize, Serialize};

use crate::TeardownAction;

/// One action's part of the receipt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The data plane this report is about (its VPC id, or the deployment's name once no
    /// VPC is known): a report of an earlier data plane of the same name is not continued.
    #[serde(default)]
    pub incarnation: String,
    /// `<kind> <id>` of everything this action deleted (or found being deleted).
    #[serde(default)]
    pub removed: Vec<String>,
    /// What it left on purpose, and why.
    #[serde(default)]
    pub kept: Vec<Kept>,
    /// Notes for the receipt (what was not possible, e.g. locally).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// `<kind> <id>`.
    pub resource: String,
    /// The ARN or id a scan by tag reports it under, when it differs from the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    pub why: String,
    /// Encrypted without any of the deployment's keys (SSE-S3: the access-log and Redis
    /// export buckets), so keeping it keeps no key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keyless: bool,
}

impl Report {
    /// This report, when it is about `incarnation`; else a new one.
    pub fn continued(self, incarnation: &str) -> Report {
        if self.incarnation == incarnation {
            self
        } else {
            Report {
                incarnation: incarnation.to_owned(),
                ..Report::default()
            }
        }
    }

    /// Notes that `kind id` was deleted (once); it is no longer kept.
    pub fn removed(&mut self, kind: &str, id: &str) {
        let entry = format!("{kind} {id}");
        self.kept.retain(|k| k.resource != entry);
        if !self.removed.contains(&entry) {
            tracing::info!(resource = %entry, "removed");
            self.removed.push(entry);
        }
    }

    /// Notes that `kind id` is kept on purpose (once; the latest reason wins).
    pub fn kept(&mut self, kind: &str, id: &str, arn: Option<&str>, why: impl Into<String>) {
        let resource = format!("{kind} {id}");
        self.kept.retain(|k| k.resource != resource);
        self.kept.push(Kept {
            resource,
            arn: arn.map(str::to_owned),
            why: why.into(),
            keyless: false,
        });
    }

    /// Like [`Report::kept`], for what none of the deployment's keys encrypts.
    pub fn kept_keyless(
        &mut self,
        kind: &str,
        id: &str,
        arn: Option<&str>,
        why: impl Into<String>,
    ) {
        self.kept(kind, id, arn, why);
        if let Some(kept) = self.kept.last_mut() {
            kept.keyless = true;
        }
    }

    pub fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
}

/// Where an action's report is kept: `teardown.<action>`.
pub fn slot(action: TeardownAction) -> String {
    format!("teardown.{}", action.as_str())
}

/// The report an earlier call of the action saved, if any.
pub async fn previous(recorder: &dyn Recorder, deployment: &str, slot: &str) -> Result<Report> {
    let outputs = recorder.outputs(deployment).await?;
    Ok(outputs
        .get(slot)
        .and_then(|value| serde_json::from_value(value.clone()).ok())
        .unwrap_or_default())
}

/// Every action's saved report, in the workflow's order.
pub async fn all(
    recorder: &dyn Recorder,
    deployment: &str,
) -> Result<Vec<(TeardownAction, Report)>> {
    let outputs = recorder.outputs(deployment).await?;
    Ok(TeardownAction::ALL
        .into_iter()
        .filter(|action| *action != TeardownAction::Receipt)
        .filter_map(|action| {
            let report = outputs.get(&slot(action))?;
            Some((action, serde_json::from_value(report.clone()).ok()?))
        })
        .collect())
}
