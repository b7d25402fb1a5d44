//! The handle-alert workflow's record steps.
//!
//! - `alert-triage`: reads the event ([`apiary_core::alerts::classify`]), claims its id
//!   in the state table so that a redelivered event acts once (a second execution for
//!   the same id ends as `duplicate` and does nothing, unless the claiming execution
//!   ended without finishing: then it takes the claim over), and records an alarm's state
//!   change (an alarm back to OK closes its record; a change older than the recorded one
//!   is ignored, as EventBridge does not promise order). Returns the runbook to run.
//! - `alert-notify`: publishes what happened (the event's summary, and what the runbook
//!   did or why it failed) to the deployment's alerts topic, when a person has not
//!   already been told: alarms publish their own state changes, so an alarm's event is
//!   published only when a runbook acted on it or failed.

use apiary_core::alerts::{Alert, Runbook, classify};
use apiary_core::step::{Done, StepContext};
use apiary_core::store::{AlarmRecord, Claim, DeploymentStatus};
use apiary_core::{Error, Result};
use chrono::Utc;
use serde::Serialize;
use serde_json::Value;

use crate::{ControlAction, ControlOutput, Deps};

/// The environment variable naming the alerts topic (`apiary-<name>-alerts`).
pub const ALERT_TOPIC_ENV: &str = "APIARY_ALERT_TOPIC_ARN";

/// SNS's subject: ASCII, no line break or control character, under 100 characters.
const SUBJECT_MAX: usize = 99;

/// Where notifications go.
#[derive(Clone, Debug)]
pub struct Notifier {
    pub sns: aws_sdk_sns::Client,
    pub topic_arn: String,
}

/// What `alert-triage` returns.
#[derive(Debug, Clone, Serialize)]
pub struct Triage {
    pub alert: Alert,
    pub runbook: Runbook,
    /// Another execution already handled this event: nothing more is done.
    pub duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handled_by: Option<String>,
    /// An alarm change older than the one recorded (delivered out of order) was ignored.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stale: bool,
}

/// What `alert-notify` returns.
#[derive(Debug, Clone, Serialize)]
pub struct Notified {
    pub notified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub why: String,
}

pub async fn triage(
    deps: &Deps,
    step: &StepContext<'_, ControlAction>,
) -> Result<Done<ControlOutput>> {
    let event = step.options.get("event").ok_or_else(|| {
        Error::invalid_input(
            "handle-alert input field `event` is missing: give the EventBridge event to handle",
        )
    })?;
    let keys: Vec<String> = step
        .layers
        .keys
        .as_ref()
        .map(|k| k.keys.values().map(|k| k.arn.clone()).collect())
        .unwrap_or_default();
    // The store secrets the pods read: their own database users' and the Redis token's.
    // A master password's rotation (RDS's schedule) reaches no pod, so restarts none.
    let secrets: Vec<String> = step
        .layers
        .databases
        .as_ref()
        .map(|d| d.pod_secrets())
        .unwrap_or_default();
    let deployment = step.spec.name.as_str();
    let mut alert = classify(deployment, event, &keys, &secrets)?;
    if alert.runbook == Runbook::RestartIngestion
        && let Some(why) = restart_needless(deps, step).await?
    {
        alert.runbook = Runbook::Record;
        alert.notify = false;
        alert.summary = format!("{}; not restarted: {why}", alert.summary);
        alert.quiet = Some(why);
    }
    let owner = deps.runs.owner(&step.execution_id);
    let mut claim = deps
        .store
        .claim_event(
            deployment,
            &alert.event_id,
            &owner,
            &alert.summary,
            Utc::now(),
        )
        .await?;
    // A claim whose execution ended without finishing (stopped, timed out, failed
    // before its runbook) never blocks the event: the next execution takes it over.
    if let Claim::Duplicate { by, done: false } = &claim
        && !deps.runs.is_running(by).await?
        && deps
            .store
            .take_over_event(deployment, &alert.event_id, by, &owner)
            .await?
    {
        tracing::warn!(previous = %by, event = %alert.event_id, "took over the claim of an execution that ended");
        claim = Claim::First;
    }
    if let Claim::Duplicate { by, .. } = claim {
        let detail = format!(
            "event {} was already handled by {by}: nothing is done again",
            alert.event_id
        );
        return Ok(Done::ready(ControlOutput::Triaged(Triage {
            runbook: alert.runbook,
            alert,
            duplicate: true,
            handled_by: Some(by),
            stale: false,
        }))
        .with_detail(detail));
    }
    let mut runbook = alert.runbook;
    let mut stale = false;
    if let Some(change) = &alert.alarm {
        let recorded = deps
            .store
            .record_alarm(
                deployment,
                &AlarmRecord {
                    name: change.name.clone(),
                    state: change.state.clone(),
                    summary: alert.summary.clone(),
                    changed_at: alert.time,
                },
            )
            .await?;
        if !recorded {
            // A newer change is recorded: this one is history, acted on by nobody.
            stale = true;
            runbook = Runbook::Record;
        }
    }
    let detail = format!(
        "{} -> {}{}",
        alert.summary,
        serde_json::to_value(runbook)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        if stale {
            " (older than the alarm's recorded state: ignored)"
        } else {
            ""
        }
    );
    Ok(Done::ready(ControlOutput::Triaged(Triage {
        alert,
        runbook,
        duplicate: false,
        handled_by: None,
        stale,
    }))
    .with_detail(detail))
}

/// Why a rotated secret needs no restart from handle-alert, if it needs none: there are no
/// pods to restart (no cluster yet, or the deployment is being torn down), or rotate-keys
/// is rotating the secrets and restarts the pods itself once they are all rotated (each
/// of its writes moves `AWSCURRENT`, and each would otherwise start a rollout).
async fn restart_needless(
    deps: &Deps,
    step: &StepContext<'_, ControlAction>,
) -> Result<Option<String>> {
    let deployment = step.spec.name.as_str();
    if step.layers.cluster.is_none() {
        return Ok(Some("the deployment has no cluster yet".to_owned()));
    }
    if let Some(record) = deps.store.get_deployment(deployment).await?
        && matches!(
            record.status,
            DeploymentStatus::TearingDown | DeploymentStatus::Deleted
        )
    {
        return Ok(Some(format!(
            "the deployment is {}",
            record.status.as_str()
        )));
    }
    if let Some(lock) = deps.store.current_lock(deployment).await?
        && holder_workflow(&lock.owner, deployment)
            == Some(apiary_core::inputs::rotate_keys::WORKFLOW)
        && deps.runs.is_running(&lock.owner).await?
    {
        return Ok(Some(format!(
            "rotate-keys ({}) is rotating the secrets and restarts the pods itself",
            lock.owner
        )));
    }
    Ok(None)
}

/// The workflow of a lock's holder, when its owner is a Step Functions execution of this
/// deployment (`…:execution:apiary-<name>-<workflow>:<run>`). A local owner names no
/// workflow.
pub fn holder_workflow<'a>(owner: &'a str, deployment: &str) -> Option<&'a str> {
    if !crate::runs::is_execution_arn(owner) {
        return None;
    }
    owner
        .split(':')
        .nth(6)?
        .strip_prefix(&format!("apiary-{deployment}-"))
}

/// The subject line SNS accepts: one line of ASCII, under 100 characters.
pub fn subject(deployment: &str, alert: &Alert, failed: bool) -> String {
    let what = if failed {
        format!("runbook failed: {}", alert.subject)
    } else {
        alert.detail_type.clone()
    };
    let line: String = format!("Apiary {deployment}: {what}")
        .chars()
        .map(|c| match c {
            c if c.is_ascii_control() => ' ',
            c if c.is_ascii() => c,
            _ => '?',
        })
        .collect();
    if line.len() <= SUBJECT_MAX {
        line
    } else {
        format!("{}...", &line[..SUBJECT_MAX - 3])
    }
}

pub async fn notify(
    deps: &Deps,
    step: &StepContext<'_, ControlAction>,
) -> Result<Done<ControlOutput>> {
    let alert: Alert = step
        .options
        .get("alert")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| Error::invalid_input(format!("step input field `options.alert`: {e}")))?
        .ok_or_else(|| Error::invalid_input("step input field `options.alert` is missing"))?;
    let notified = tell(deps, step, &alert).await?;
    // Handled only once the person was told (or needed no telling): a run that dies
    // before this, or whose Publish fails, leaves the claim for the next delivery to
    // take over. A crash between the two tells the person twice, never not at all.
    deps.store
        .finish_event(&step.spec.name, &alert.event_id, Utc::now())
        .await?;
    let why = notified.why.clone();
    Ok(Done::ready(ControlOutput::Notified(notified)).with_detail(why))
}

/// Publishes the alert to the alerts topic when a person has not been told yet.
async fn tell(
    deps: &Deps,
    step: &StepContext<'_, ControlAction>,
    alert: &Alert,
) -> Result<Notified> {
    let quiet = |why: String| Notified {
        notified: false,
        message_id: None,
        why,
    };
    let outcome = step.options.get("outcome").filter(|v| !v.is_null());
    let failure = step.options.get("failure").filter(|v| !v.is_null());
    let acted = outcome.is_some() && alert.runbook != Runbook::Close;
    if !(alert.notify || acted || failure.is_some()) {
        return Ok(quiet(
            alert
                .quiet
                .clone()
                .unwrap_or_else(|| "nothing to tell".to_owned()),
        ));
    }
    let Some(notifier) = &deps.notifier else {
        return Ok(quiet(format!(
            "no alerts topic is configured ({ALERT_TOPIC_ENV} is unset): the alert is in the \
             journal only"
        )));
    };
    let deployment = step.spec.name.as_str();
    let sent = notifier
        .sns
        .publish()
        .topic_arn(&notifier.topic_arn)
        .subject(subject(deployment, alert, failure.is_some()))
        .message(message(
            deployment,
            alert,
            outcome,
            failure,
            &step.execution_id,
        ))
        .send()
        .await
        .map_err(|e| Error::aws(format!("Publish to {}", notifier.topic_arn), e))?;
    Ok(Notified {
        notified: true,
        message_id: sent.message_id,
        why: format!("published to {}", notifier.topic_arn),
    })
}

/// The message a person reads: what happened, what Apiary did, where to look.
fn message(
    deployment: &str,
    alert: &Alert,
    outcome: Option<&Value>,
    failure: Option<&Value>,
    execution: &str,
) -> String {
    let mut text = format!(
        "Deployment {deployment}\n{}\n\nEvent {} ({} / {}) at {}\n",
        alert.summary, alert.event_id, alert.source, alert.detail_type, alert.time
    );
    if let Some(failure) = failure {
        let error = failure.get("Error").and_then(Value::as_str).unwrap_or("");
        let cause = failure.get("Cause").and_then(Value::as_str).unwrap_or("");
        text.push_str(&format!(
            "\nThe runbook could not act: {error}: {cause}\nA person must act on it.\n"
        ));
    } else if let Some(outcome) = outcome {
        let detail = outcome
            .get("detail")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| outcome.to_string());
        text.push_str(&format!("\nWhat Apiary did: {detail}\n"));
    } else {
        text.push_str("\nNo runbook acts on this event: it is recorded for a person to read.\n");
    }
    text.push_str(&format!(
        "\nHandled by {execution}; the deployment's journal (apiary status {deployment}) has \
         every step.\n"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_fit_what_sns_accepts() {
        let alert = Alert {
            event_id: "1".into(),
            source: "aws.rds".into(),
            detail_type: "RDS DB Instance Event\nwith a break".into(),
            time: Utc::now(),
            subject: "x".repeat(300),
            summary: String::new(),
            runbook: Runbook::Record,
            notify: true,
            quiet: None,
            alarm: None,
        };
        for failed in [false, true] {
            let line = subject("demo", &alert, failed);
            assert!(line.len() < 100 && line.is_ascii(), "{line}");
            assert!(!line.contains('\n'), "{line}");
            assert!(line.starts_with("Apiary demo: "), "{line}");
        }
    }

    #[test]
    fn a_lock_names_its_workflow_only_for_an_execution_of_this_deployment() {
        let arn = |machine: &str| {
            format!("arn:aws:states:us-west-2:123456789012:execution:{machine}:run-1")
        };
        assert_eq!(
            holder_workflow(&arn("apiary-demo-rotate-keys"), "demo"),
            Some("rotate-keys")
        );
        assert_eq!(
            holder_workflow(&arn("apiary-demo-backup"), "demo"),
            Some("backup")
        );
        assert_ne!(
            holder_workflow(&arn("apiary-demo-eu-rotate-keys"), "demo"),
            Some("rotate-keys"),
            "another deployment whose name starts with this one's"
        );
        assert_eq!(holder_workflow("local:host:1:2:demo-rotate", "demo"), None);
        assert_eq!(holder_workflow("someone", "demo"), None);
    }
}
