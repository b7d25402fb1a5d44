//! `ledger`: the RPO ledger. Per store and region, the newest restorable point (the
//! newest available snapshot or DR copy the backup workflow made), its age and the
//! sentinel written just before it, kept in the state table (slot `backup.ledger`, what
//! `apiary status` and the restore test read) and returned as the run's result.

use apiary_core::Result;
use apiary_core::inputs::backup::StoreName;
use apiary_core::step::{Done, StepContext};
use chrono::Utc;
use serde_json::{Map, Value, json};

use crate::engine::{self, Clients};
use crate::plan::{self, BACKUP};
use crate::snapshot;
use crate::{Action, Deps};

pub const SLOT: &str = "backup.ledger";

pub(crate) async fn run(deps: &Deps, step: &StepContext<'_, Action>) -> Result<Done<Value>> {
    let plan = plan::load(deps, step, BACKUP).await?;
    let deployment = step.names.deployment();
    let now = Utc::now();
    let regional = step
        .spec
        .backup
        .dr_region
        .as_deref()
        .map(|region| (deps.regional)(region));
    let mut regions = vec![Clients::primary(deps, &step.spec.region)];
    if let Some(regional) = &regional {
        regions.push(Clients::dr(regional));
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
            if store == StoreName::Redis && clients.elasticache.is_none() {
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
                None => json!({"snapshot_id": null, "note": "no restorable snapshot"}),
            };
            points.insert(clients.region.clone(), point);
        }
        stores.insert(store.as_str().to_owned(), Value::Object(points));
    }
    let ledger = json!({
        "updated_at": now,
        "execution_id": plan.execution_id,
        "stores": stores
    });
    // Kept like any step output; a failed write fails the step (and is retried when
    // transient), since the ledger is this step's whole purpose.
    deps.recorder.save_output(deployment, SLOT, &ledger).await?;
    Ok(Done::ready(ledger))
}
