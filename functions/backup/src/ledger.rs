//! `ledger`: the RPO ledger. Per store and region, the newest restorable point (the
//! newest available snapshot or DR copy the backup workflow made), its age and the
//! sentinel written just before it, kept in the state table (slot `backup.ledger`, what
//! `apiary status` and the restore test read) and returned as the run's result.

use apiary_core::Result;
use apiary_core::inputs::backup::StoreName;
use apiary_core::step::{Done, StepContext};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::engine::{self, Clients};
use crate::plan::{self, BACKUP};
use crate::snapshot;
use crate::{Action, Deps};

pub const SLOT: &str = apiary_core::outputs::BACKUP_LEDGER_SLOT;

/// When the newest restore-test report was made (written by the report step).
pub const RESTORE_TEST_REPORTED: &str = apiary_core::outputs::RESTORE_TEST_REPORTED_SLOT;
/// When the ledger first looked and found no report: where the count starts for a new
/// deployment.
pub const RESTORE_TEST_WATCHED: &str = "restore-test.watched";
/// The metric the missed-restore-test alarm watches (namespace `Apiary/RestoreTest`).
pub const AGE_METRIC: &str = "SecondsSinceRestoreTest";

/// Since when the age counts: the newest report's time, else when the ledger first looked
/// (`None`: neither is kept yet).
pub fn restore_test_since(
    outputs: &std::collections::BTreeMap<String, Value>,
) -> Option<(DateTime<Utc>, &'static str)> {
    let at = |slot: &str, field: &str| {
        outputs
            .get(slot)
            .and_then(|v| v.get(field))
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    at(RESTORE_TEST_REPORTED, "reported_at")
        .map(|t| (t, "last report"))
        .or_else(|| at(RESTORE_TEST_WATCHED, "since").map(|t| (t, "no report yet; watched since")))
}

/// The age of the newest restore-test report, put as a metric every day the backup runs:
/// the missed-test alarm needs a window longer than the restore test's schedule, which
/// a "no report in N days" alarm cannot have (CloudWatch evaluates 7 days at most, and a
/// weekly report falls just outside that window before each run).
async fn restore_test_age(deps: &Deps, deployment: &str, now: DateTime<Utc>) -> Result<Value> {
    let outputs = deps.recorder.outputs(deployment).await?;
    let (since, what) = match restore_test_since(&outputs) {
        Some(found) => found,
        None => {
            deps.recorder
                .save_output(deployment, RESTORE_TEST_WATCHED, &json!({"since": now}))
                .await?;
            (now, "no report yet; watched since")
        }
    };
    let age = (now - since).num_seconds().max(0);
    let metric = crate::report::put_metrics(
        deps,
        vec![crate::report::datum(
            AGE_METRIC,
            age as f64,
            aws_sdk_cloudwatch::types::StandardUnit::Seconds,
            &[("Deployment", deployment)],
        )],
    )
    .await?;
    let mut out = json!({"since": since, "what": what, "age_seconds": age});
    if let Some(note) = metric {
        out["metric"] = json!(note);
    }
    Ok(out)
}

pub(crate) async fn run(deps: &Deps, step: &StepContext<'_, Action>) -> Result<Done<Value>> {
    let plan = plan::load(deps, step, BACKUP).await?;
    let deployment = step.names.deployment();
    let now = Utc::now();
    let regional = step.spec.dr_region().map(|region| (deps.regional)(region));
    let mut regions = vec![Clients::primary(deps, &step.spec.region)];
    if let Some(regional) = &regional {
        regions.push(Clients::dr(regional, &step.layers));
    }
    let mut stores = Map::new();
    for store in StoreName::ALL {
        let source = match engine::source(step, store) {
            Ok(source) => source,
            Err(reason) => {
                stores.insert(store.as_str().to_owned(), json!({"skipped": reason}));
                continue;
            }
        };
        let this_run = snapshot::sentinel(deps, deployment, store, &plan).await?;
        let mut points = Map::new();
        for clients in &regions {
            if !clients.holds(store) {
                points.insert(
                    clients.region.clone(),
                    json!({"snapshot_id": null, "note": crate::copy::REDIS_NOT_COPIED}),
                );
                continue;
            }
            let listed = clients.list(store, &source, deployment).await?;
            let point = match listed.iter().find(|s| s.available()) {
                Some(newest) => {
                    let age = newest.created_at.map(|at| (now - at).num_seconds().max(0));
                    let mut point = json!({
                        "snapshot_id": newest.id,
                        "restorable_at": newest.created_at,
                        "age_seconds": age,
                        "sentinel_id": newest.sentinel(),
                    });
                    if newest.sentinel().is_none() {
                        point["sentinel"] = json!(
                            this_run
                                .note
                                .clone()
                                .unwrap_or_else(|| "no sentinel recorded".to_owned())
                        );
                        point["rpo_from"] = json!("the snapshot's time");
                    }
                    point
                }
                None if store == StoreName::Redis
                    && clients.elasticache.is_none()
                    && deps.emulator =>
                {
                    json!({"snapshot_id": null, "note": "no replica: the local emulator implements neither ElastiCache's export to S3 nor S3 replication"})
                }
                None => json!({"snapshot_id": null, "note": "no restorable snapshot"}),
            };
            points.insert(clients.region.clone(), point);
        }
        stores.insert(store.as_str().to_owned(), Value::Object(points));
    }
    let restore_test = restore_test_age(deps, deployment, now).await?;
    let ledger = json!({
        "updated_at": now,
        "execution_id": plan.execution_id,
        "stores": stores,
        "restore_test": restore_test,
    });
    // Kept like any step output; a failed write fails the step (and is retried when
    // transient), since the ledger is this step's whole purpose.
    deps.recorder.save_output(deployment, SLOT, &ledger).await?;
    Ok(Done::ready(ledger))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn the_age_counts_from_the_newest_report_else_from_when_the_ledger_first_looked() {
        let mut outputs = BTreeMap::new();
        assert_eq!(restore_test_since(&outputs), None);
        outputs.insert(
            RESTORE_TEST_WATCHED.to_owned(),
            json!({"since": "2026-12-01T03:00:00Z"}),
        );
        let (since, what) = restore_test_since(&outputs).unwrap();
        assert_eq!(since.to_rfc3339(), "2026-12-01T03:00:00+00:00");
        assert!(what.starts_with("no report yet"), "{what}");
        // A report, however old, is what counts from then on.
        outputs.insert(
            RESTORE_TEST_REPORTED.to_owned(),
            json!({"reported_at": "2026-11-29T05:40:00Z", "passed": true}),
        );
        let (since, what) = restore_test_since(&outputs).unwrap();
        assert_eq!(since.to_rfc3339(), "2026-11-29T05:40:00+00:00");
        assert_eq!(what, "last report");
    }
}
