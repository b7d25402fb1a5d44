//! What the keys step must know before it schedules any key: every snapshot the teardown
//! keeps, and the keys that encrypt them.
//!
//! The backup workflow's snapshots (tagged `apiary:backup=snapshot` by functions/backup)
//! and their copies in the DR region are found with the backup crate's own listing.
//! Without `"delete_backups": true` they are kept and listed in the receipt, like the
//! final snapshots; with it they are deleted (only those tagged `apiary:backup=snapshot`
//! and `apiary:deployment=<this deployment>`, in both regions) and the keys step waits
//! until they are gone. The RPO ledger the backup workflow keeps in the state table
//! follows them: kept with them, or emptied when they are deleted.

use apiary_core::Result;
use apiary_core::inputs::backup::StoreName;
use apiary_core::naming::{TAG_DEPLOYMENT, TAG_ROLE};
use backup::{Clients, Snapshot};
use serde_json::json;

use crate::Work;

/// Why the backup workflow's snapshots are kept.
pub const KEPT: &str = "made by the backup workflow: kept because the teardown ran without \"delete_backups\": true; a teardown with it deletes them";

/// Why the RPO ledger is kept.
pub const LEDGER_KEPT: &str = "the RPO ledger of the kept backups (state table): kept with them";

/// The value of `apiary:role` on a final snapshot.
pub const FINAL_ROLE: &str = "final-snapshot";

/// A snapshot the teardown keeps, and what encrypts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// How the receipt names it: `<kind> <id>`.
    pub resource: String,
    pub region: String,
    pub store: StoreName,
    pub encrypted: bool,
    /// The key's ARN or id, as the snapshot reports it.
    pub key: Option<String>,
}

impl Held {
    /// Whether this snapshot is encrypted with the key `arn` / `key_id`. A snapshot
    /// encrypted with a key it does not name is taken to use its store's key (`scope`).
    pub fn needs(&self, region: &str, arn: Option<&str>, key_id: &str, scope: &str) -> bool {
        if self.region != region || !self.encrypted {
            return false;
        }
        match self.key.as_deref() {
            Some(key) => {
                Some(key) == arn || key == key_id || key.ends_with(&format!("key/{key_id}"))
            }
            None => key_scope(self.store) == scope,
        }
    }
}

/// The key scope of a store's own key.
pub fn key_scope(store: StoreName) -> &'static str {
    match store {
        StoreName::Postgres => "rds",
        StoreName::Documentdb => "docdb",
        StoreName::Redis => "redis",
    }
}

fn kind(store: StoreName, primary: bool) -> &'static str {
    match (store, primary) {
        (StoreName::Postgres, true) => "rds:snapshot",
        (StoreName::Documentdb, true) => "docdb:cluster-snapshot",
        (StoreName::Redis, true) => "elasticache:snapshot",
        // In the DR region a Redis backup is its export's replica in the DR export bucket.
        (StoreName::Redis, false) => "s3:redis-export",
        // A copy in the DR region has the same name as its source: its own kind, and
        // the region before the name.
        (StoreName::Postgres, false) => "rds:dr-snapshot",
        (StoreName::Documentdb, false) => "docdb:dr-cluster-snapshot",
    }
}

/// A final snapshot of this deployment (step 1 tags it so).
fn is_final(snapshot: &Snapshot, deployment: &str) -> bool {
    snapshot.tags.get(TAG_DEPLOYMENT).map(String::as_str) == Some(deployment)
        && snapshot.tags.get(TAG_ROLE).map(String::as_str) == Some(FINAL_ROLE)
}

/// The backup crate's snapshot clients of the primary region.
pub fn primary<'a>(deps: &'a crate::Deps, region: &str) -> Clients<'a> {
    Clients {
        region: region.to_owned(),
        rds: &deps.rds,
        docdb: &deps.docdb,
        elasticache: Some(&deps.elasticache),
        replicas: None,
    }
}

/// Keeps or deletes the backup workflow's snapshots (both regions) and finds the final
/// snapshots; returns every snapshot kept. What is still being deleted is added to
/// `pending`.
pub async fn run(work: &mut Work<'_>, pending: &mut Vec<String>) -> Result<Vec<Held>> {
    let deps = work.deps;
    let deployment = work.owner.deployment.clone();
    let primary_region = work.step.spec.region.clone();
    let regional = work
        .step
        .spec
        .dr_region()
        .map(|region| (deps.regional)(region));
    let mut regions = vec![primary(deps, &primary_region)];
    if let Some(regional) = &regional {
        regions.push(Clients::dr(regional, &work.step.layers));
    }
    let delete_backups = work.input.delete_backups;
    let mut held = Vec::new();
    for store in StoreName::ALL {
        let Ok(source) = backup::source_of(&work.step.spec, &work.step.layers, store) else {
            continue;
        };
        for clients in &regions {
            if !clients.holds(store) {
                continue;
            }
            let primary = clients.region == primary_region;
            let kind = kind(store, primary);
            for snapshot in clients.list_manual(store, &source).await? {
                let id = if primary {
                    snapshot.id.clone()
                } else {
                    format!("{}/{}", clients.region, snapshot.id)
                };
                let backup = snapshot.ours(&deployment);
                if backup && delete_backups {
                    if snapshot.status != "deleting" {
                        // The teardown role's grant for these deletes requires
                        // `apiary:backup=snapshot` and this deployment's tag on the
                        // snapshot, whatever the code asks.
                        clients.delete(store, &snapshot.id).await?;
                        work.step.log.created(&format!("deleted:{id}"));
                    }
                    work.report.removed(kind, &id);
                    if clients.describe(store, &snapshot.id).await?.is_some() {
                        pending.push(format!("{kind} {id} is being deleted"));
                    }
                    continue;
                }
                let why = if backup {
                    KEPT
                } else if is_final(&snapshot, &deployment) {
                    crate::snapshots::KEPT
                } else {
                    continue;
                };
                work.report.kept(kind, &id, Some(&snapshot.arn), why);
                held.push(Held {
                    resource: format!("{kind} {id}"),
                    region: clients.region.clone(),
                    store,
                    encrypted: snapshot.encrypted,
                    key: snapshot.kms_key_id.clone(),
                });
            }
        }
    }
    ledger(work, delete_backups).await?;
    Ok(held)
}

/// The RPO ledger: kept with the backups, or emptied when they are deleted.
async fn ledger(work: &mut Work<'_>, delete: bool) -> Result<()> {
    let recorder = work.deps.recorder.as_ref();
    let outputs = recorder.outputs(&work.owner.deployment).await?;
    let Some(ledger) = outputs.get(backup::LEDGER_SLOT) else {
        return Ok(());
    };
    if !delete {
        work.report
            .kept("state:ledger", backup::LEDGER_SLOT, None, LEDGER_KEPT);
        return Ok(());
    }
    if ledger.get("deleted_by").is_none() {
        let emptied = json!({
            "updated_at": chrono::Utc::now(),
            "execution_id": work.step.execution_id,
            "deleted_by": "teardown",
            "stores": {},
            "note": "the teardown deleted the backups (\"delete_backups\": true): no restorable point remains",
        });
        recorder
            .save_output(&work.owner.deployment, backup::LEDGER_SLOT, &emptied)
            .await?;
    }
    work.report.removed("state:ledger", backup::LEDGER_SLOT);
    Ok(())
}
