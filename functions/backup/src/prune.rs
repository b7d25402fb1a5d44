//! `prune`: deletes the snapshots (and DR copies) the backup workflow made that are older
//! than `backup.retention_days`, in each region, always keeping the newest available
//! one of each store (a store whose backups have been failing keeps its last good
//! point however old). Only snapshots carrying this deployment's `apiary:backup` tag are
//! considered: the automated backups RDS keeps by itself and anything a person made are
//! never touched (and the role's IAM conditions allow no other delete).

use apiary_core::Result;
use apiary_core::inputs::backup::StoreName;
use apiary_core::step::{Done, StepContext};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::engine::{self, Clients, Snapshot};
use crate::plan::{self, BACKUP};
use crate::{Action, Deps};

/// The snapshots of one store in one region (newest first, as `Clients::list` returns
/// them) that are past retention: every one older than `now - retention`, except the
/// newest available one, any still being made, and any already being deleted (a prune
/// run again after a crash or a retry: asking again is refused with an invalid-state
/// error, and the deletion is under way anyway).
pub fn expired(listed: &[Snapshot], now: DateTime<Utc>, retention: Duration) -> Vec<&Snapshot> {
    let newest_good = listed.iter().find(|s| s.available()).map(|s| s.id.as_str());
    let cutoff = now - retention;
    listed
        .iter()
        .filter(|s| Some(s.id.as_str()) != newest_good)
        .filter(|s| s.available() || s.failed())
        .filter(|s| s.status != "deleting")
        .filter(|s| s.created_at.is_some_and(|at| at < cutoff))
        .collect()
}

pub(crate) async fn run(deps: &Deps, step: &StepContext<'_, Action>) -> Result<Done<Value>> {
    // Run only inside a backup run: the plan proves the workflow started it.
    plan::load(deps, step, BACKUP).await?;
    let deployment = step.names.deployment();
    let retention = Duration::days(i64::from(step.spec.backup.retention_days));
    let now = Utc::now();
    let regional = step.spec.dr_region().map(|region| (deps.regional)(region));
    let mut regions = vec![Clients::primary(deps, &step.spec.region)];
    if let Some(regional) = &regional {
        regions.push(Clients::dr(regional, &step.layers));
    }
    let mut deleted = Vec::new();
    let mut kept = Vec::new();
    for store in StoreName::ALL {
        let Ok(source) = engine::source(step, store) else {
            continue;
        };
        for clients in &regions {
            if !clients.holds(store) {
                continue;
            }
            let listed = clients.list(store, &source, deployment).await?;
            let expired = expired(&listed, now, retention);
            for snapshot in &listed {
                let entry = json!({
                    "store": store.as_str(),
                    "region": clients.region,
                    "id": snapshot.id,
                    "created_at": snapshot.created_at,
                });
                if expired.iter().any(|e| e.id == snapshot.id) {
                    clients.delete(store, &snapshot.id).await?;
                    tracing::info!(snapshot = %snapshot.id, region = %clients.region, "pruned");
                    step.log
                        .created(&format!("deleted:{}/{}", clients.region, snapshot.id));
                    deleted.push(entry);
                } else {
                    kept.push(entry);
                }
            }
        }
    }
    let detail = format!(
        "retention {} days: {} deleted, {} kept",
        step.spec.backup.retention_days,
        deleted.len(),
        kept.len()
    );
    Ok(Done::ready(json!({
        "retention_days": step.spec.backup.retention_days,
        "deleted": deleted,
        "kept": kept
    }))
    .with_detail(detail))
}
