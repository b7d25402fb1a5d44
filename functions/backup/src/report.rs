//! `report`: the restore test's result, per store: passed (the verifier read the
//! sentinel back), failed, or not checked (`null`: locally the emulated stores have no
//! server, so the data check is not possible; never reported as passed), with RTO
//! (restore start to this report, right after verification) and RPO (restore start
//! minus the restored snapshot's time). Recorded three ways: the journal (this step's
//! entry), an EventBridge event (`source: apiary`, detail-type `Apiary Restore Test`)
//! and CloudWatch metrics (namespace `Apiary/RestoreTest`: `RtoSeconds` and
//! `RpoSeconds` per store, `Passed` 1 or 0 per deployment, which the failed-test alarm
//! watches). The report's time is kept (slot `restore-test.reported`) for the daily
//! ledger, whose `SecondsSinceRestoreTest` the missed-test alarm watches.
//!
//! A run whose verification failed is reported, then fails (`Apiary.Fatal` naming each
//! store's problem) so the execution fails after its cleanup. On the workflow's failure
//! path `options.failure` carries the error: every store is reported failed with it.

use apiary_core::inputs::backup::StoreName;
use apiary_core::step::{Done, StepContext};
use apiary_core::{Error, Result};
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::plan::{self, RESTORE_TEST};
use crate::{Action, Deps};

pub const NAMESPACE: &str = "Apiary/RestoreTest";
pub const EVENT_SOURCE: &str = "apiary";
pub const DETAIL_TYPE: &str = "Apiary Restore Test";
pub const NOT_POSSIBLE_LOCALLY: &str =
    "data check not possible locally: the emulated database has no server behind it";

fn time(value: Option<&Value>) -> Option<DateTime<Utc>> {
    value
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// One store's verdict from the verifier's result: `Some(true)` only when it says
/// `verified: true`.
pub fn verdict(verification: Option<&Value>) -> (Option<bool>, Option<String>) {
    let Some(result) = verification else {
        return (None, Some("no verification result was recorded".to_owned()));
    };
    let verified = result.get("verified").and_then(Value::as_bool);
    let note = result
        .get("mismatch")
        .or_else(|| result.get("note"))
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v.to_string())
        });
    match verified {
        Some(verified) => (Some(verified), note),
        None => (
            None,
            Some(note.unwrap_or_else(|| NOT_POSSIBLE_LOCALLY.to_owned())),
        ),
    }
}

/// The verifier's result for `store`, as the workflow keeps it (`$.result.verify_<store>`
/// holds `{"output": <the verifier's output>}`).
fn verification_of<'a>(verification: &'a Value, store: &str) -> Option<&'a Value> {
    verification
        .get(format!("verify_{store}"))
        .map(|kept| kept.get("output").unwrap_or(kept))
}

/// The run's verdict: failed if anything failed; passed only if every tested store
/// passed; otherwise not checked.
pub fn overall(verdicts: &[Option<bool>]) -> Option<bool> {
    if verdicts.contains(&Some(false)) {
        Some(false)
    } else if !verdicts.is_empty() && verdicts.iter().all(|v| *v == Some(true)) {
        Some(true)
    } else {
        None
    }
}

pub(crate) async fn run(deps: &Deps, step: &StepContext<'_, Action>) -> Result<Done<Value>> {
    let plan = plan::load(deps, step, RESTORE_TEST).await?;
    let deployment = step.names.deployment();
    let outputs = deps.recorder.outputs(deployment).await?;
    let now = Utc::now();
    let failure = step
        .options
        .get("failure")
        .filter(|f| !f.is_null())
        .cloned();
    let verification = step
        .options
        .get("verification")
        .cloned()
        .unwrap_or(Value::Null);
    let mut stores = Map::new();
    let mut verdicts = Vec::new();
    let mut problems = Vec::new();
    let mut metrics = Vec::new();
    for store in StoreName::ALL {
        let name = store.as_str();
        let Some(restored) = outputs.get(&format!("restore-test.{name}")).filter(|v| {
            v.get("execution_id").and_then(Value::as_str) == Some(plan.execution_id.as_str())
        }) else {
            if plan.stores.contains(&store) && failure.is_some() {
                verdicts.push(Some(false));
                stores.insert(
                    name.into(),
                    json!({"passed": false, "note": "failed before its restore started"}),
                );
            }
            continue;
        };
        if let Some(reason) = restored.get("skipped") {
            stores.insert(name.into(), json!({"passed": null, "skipped": reason}));
            continue;
        }
        let started = time(restored.get("restore_started_at"));
        let snapshot_at = time(restored.get("snapshot_created_at"));
        let restored_ok = restored.get("status").and_then(Value::as_str) == Some("available");
        let rto = started
            .filter(|_| restored_ok)
            .map(|at| (now - at).num_seconds().max(0));
        // RPO: the sentinel's age when the restore started (the sentinel is the newest
        // write the restored copy is known to hold), else the snapshot's.
        let sentinel_at = restored
            .get("sentinel_id")
            .and_then(Value::as_str)
            .and_then(|id| {
                outputs
                    .get(&format!("sentinel.{name}"))
                    .filter(|s| s.get("sentinel_id").and_then(Value::as_str) == Some(id))
            })
            .and_then(|s| time(s.get("written_at")));
        let rpo_from = match sentinel_at {
            Some(_) => "the sentinel's time",
            None => "the snapshot's time",
        };
        let rpo = started
            .zip(sentinel_at.or(snapshot_at))
            .map(|(at, point)| (at - point).num_seconds().max(0));
        let (passed, note) = match &failure {
            Some(failure) => (
                Some(false),
                Some(format!(
                    "{}: {}",
                    failure
                        .get("Error")
                        .and_then(Value::as_str)
                        .unwrap_or("error"),
                    failure.get("Cause").and_then(Value::as_str).unwrap_or("")
                )),
            ),
            None => verdict(verification_of(&verification, name)),
        };
        if passed == Some(false) {
            problems.push(format!(
                "{name}: {}",
                note.clone().unwrap_or_else(|| "not verified".into())
            ));
        }
        verdicts.push(passed);
        let checked = verification_of(&verification, name)
            .and_then(|v| v.get("checked"))
            .cloned()
            .unwrap_or(json!([]));
        stores.insert(
            name.into(),
            json!({
                "passed": passed,
                "rto_seconds": rto,
                "rpo_seconds": rpo,
                "rpo_from": rpo_from,
                "snapshot_id": restored.get("snapshot_id"),
                "sentinel_id": restored.get("sentinel_id"),
                "checked": checked,
                "note": note,
            }),
        );
        let dimensions = [("Deployment", deployment), ("Store", name)];
        if let Some(rto) = rto {
            metrics.push(datum(
                "RtoSeconds",
                rto as f64,
                StandardUnit::Seconds,
                &dimensions,
            ));
        }
        if let Some(rpo) = rpo {
            metrics.push(datum(
                "RpoSeconds",
                rpo as f64,
                StandardUnit::Seconds,
                &dimensions,
            ));
        }
    }
    let passed = if failure.is_some() {
        Some(false)
    } else {
        overall(&verdicts)
    };
    if let Some(passed) = passed {
        metrics.push(datum(
            "Passed",
            if passed { 1.0 } else { 0.0 },
            StandardUnit::Count,
            &[("Deployment", deployment)],
        ));
    }
    let result = json!({
        "passed": passed,
        "data_check": match passed {
            Some(true) => "passed",
            Some(false) => "failed",
            None => NOT_POSSIBLE_LOCALLY,
        },
        "stores": stores,
        "failure": failure,
    });
    publish_event(deps, deployment, &plan.execution_id, &result).await?;
    let mut result = result;
    if let Some(note) = put_metrics(deps, metrics).await? {
        result["metrics"] = json!(note);
    }
    // When the newest report was made: the daily backup's ledger measures the age of it
    // for the missed-test alarm (crate::ledger).
    deps.recorder
        .save_output(
            deployment,
            crate::ledger::RESTORE_TEST_REPORTED,
            &json!({"reported_at": Utc::now(), "passed": passed, "execution_id": plan.execution_id}),
        )
        .await?;
    if passed == Some(false) && failure.is_none() {
        return Err(Error::fatal(format!(
            "restore test failed: {}",
            problems.join("; ")
        )));
    }
    let summary = match passed {
        Some(true) => "restore test passed".to_owned(),
        Some(false) => "restore test failed (reported on the failure path)".to_owned(),
        None => format!("restore test: {NOT_POSSIBLE_LOCALLY}"),
    };
    Ok(Done::ready(result).with_detail(summary))
}

/// Puts `metrics` into the `Apiary/RestoreTest` namespace. `Some(note)` when the endpoint
/// is the local emulator, which (moto 5.2.5) answers the SDK's current CloudWatch
/// protocol with a bare 404: the metrics are reported as not emulated there.
pub(crate) async fn put_metrics(deps: &Deps, metrics: Vec<MetricDatum>) -> Result<Option<String>> {
    if metrics.is_empty() {
        return Ok(None);
    }
    match deps
        .cloudwatch
        .put_metric_data()
        .namespace(NAMESPACE)
        .set_metric_data(Some(metrics))
        .send()
        .await
    {
        Ok(_) => Ok(None),
        Err(e) if apiary_core::aws::not_emulated(deps.emulator, &e) => {
            tracing::warn!("CloudWatch PutMetricData is not emulated here");
            Ok(Some(apiary_core::aws::NOT_EMULATED_CLOUDWATCH.to_owned()))
        }
        Err(e) => Err(Error::aws(format!("PutMetricData {NAMESPACE}"), e)),
    }
}

pub(crate) fn datum(
    name: &str,
    value: f64,
    unit: StandardUnit,
    dimensions: &[(&str, &str)],
) -> MetricDatum {
    MetricDatum::builder()
        .metric_name(name)
        .value(value)
        .unit(unit)
        .set_dimensions(Some(
            dimensions
                .iter()
                .map(|(n, v)| Dimension::builder().name(*n).value(*v).build())
                .collect(),
        ))
        .build()
}

async fn publish_event(
    deps: &Deps,
    deployment: &str,
    execution_id: &str,
    result: &Value,
) -> Result<()> {
    let mut detail = result.clone();
    detail["deployment"] = json!(deployment);
    detail["execution_id"] = json!(execution_id);
    let sent = deps
        .events
        .put_events()
        .entries(
            aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                .source(EVENT_SOURCE)
                .detail_type(DETAIL_TYPE)
                .detail(detail.to_string())
                .build(),
        )
        .send()
        .await
        .map_err(|e| Error::aws("PutEvents (restore test result)", e))?;
    if sent.failed_entry_count() > 0 {
        let reason = sent
            .entries()
            .iter()
            .filter_map(|e| e.error_message())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Error::Aws {
            operation: "PutEvents (restore test result)".into(),
            code: None,
            message: format!("EventBridge refused the event: {reason}"),
            retryable: true,
        });
    }
    Ok(())
}
