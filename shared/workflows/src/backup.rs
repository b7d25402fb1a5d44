//! The backup workflow: native snapshots of every data store, copied to the DR region,
//! pruned by retention, with an RPO ledger.
//!
//! ```text
//! validate-input ({"stores": [...]} optional) -> lock
//!   -> plan (the run's stores and id) -> the DR-region key (keys: ensure-dr)
//!   -> sentinels (verifier: write-sentinel, each store in parallel)
//!   -> snapshots (polled) -> DR copies (polled, when backup.dr_region is set)
//!   -> prune (older than backup.retention_days, never the newest good one)
//!   -> RPO ledger -> finish -> unlock
//! ```
//!
//! Poll bounds from AWS-TIMINGS.md: a manual RDS snapshot of a small database takes 3-5
//! minutes, the first (full) one of a large database far longer, so the snapshots are
//! polled for about 2 hours; cross-region copies "can take hours" and queue behind
//! other copies, so they are polled for about 11 hours. The execution's timeout stays
//! well under the lock lease (36 hours).

use serde_json::json;

use crate::flow::{Flow, Poll, Task};
use crate::function::Function;
use crate::locked::{Input, Locked, Outcome};

pub const NAME: &str = apiary_core::inputs::backup::WORKFLOW;

/// A scheduled run waits for another workflow (a provision, a restore test) up to about
/// 40 minutes when its input asks to queue (the schedule's does).
pub const LOCK_WAIT: &[u64] = &[60, 120, 300, 600, 600, 600];

/// The stores with native snapshots, in the order the sentinels are written.
pub const STORES: [(&str, &str); 3] = [
    ("postgres", "Postgres"),
    ("documentdb", "DocumentDb"),
    ("redis", "Redis"),
];

/// RDS ~3-5 min for a small database (the first snapshot is full); DocumentDB 1-3 min;
/// ElastiCache 1-5 min. Bound about 2 hours (7 polls) for large first snapshots.
pub const SNAPSHOTS: Poll = Poll {
    name: "Snapshots",
    function: Function::Backup,
    ensure: "snapshot",
    status: "snapshot-status",
    what: "the stores' snapshots",
    schedule: &[120, 180, 300, 600, 1200, 1800, 3600],
};

/// Cross-region copies: 10-30 min for ~100 GB, hours for large ones or behind a queue
/// (20 concurrent copies per region pair). Bound 11 hours, in 12 polls (hourly after
/// the first hour: each poll costs history events and, at worst, its retries).
pub const DR_COPIES: Poll = Poll {
    name: "DrCopies",
    function: Function::Backup,
    ensure: "copy-dr",
    status: "copy-status",
    what: "the DR-region copies",
    schedule: &[
        900, 900, 1800, 3600, 3600, 3600, 3600, 3600, 3600, 3600, 3600, 3600,
    ],
};

/// 22 hours: the longest path (the lock wait, every Task using all its retries with each
/// attempt running to its timeout, both poll loops to their bound) is 69,380 s (19.3
/// hours); see the budget test. A normal run takes minutes. Under the 36-hour lock lease.
pub const TIMEOUT_SECONDS: u64 = 22 * 3600;

pub fn definition() -> serde_json::Value {
    let sentinels = STORES
        .iter()
        .map(|(store, title)| {
            Flow::branch().task(
                Task::step(&format!("Sentinel{title}"), Function::Verifier, "write-sentinel")
                    .comment(format!("A fresh sentinel (unique id and time) in the live {store}, read back by the restore test; not written locally, where the store has no server"))
                    .options(json!({"store": store})),
            )
        })
        .collect();
    let body = Flow::new()
        .task(
            Task::step("Plan", Function::Backup, "plan")
                .comment("The run's stores (from the checked input) and the id its snapshots are named by, kept for the steps below")
                .options(json!({"input.$": "$.input", "workflow": NAME})),
        )
        .task(
            Task::step("DrKey", Function::Keys, "ensure-dr")
                .comment("The DR region's key the copies are encrypted with (nothing when backup.dr_region is not set)"),
        )
        .parallel(
            "Sentinels",
            "A sentinel in each store just before its snapshot: the restore test proves the data by reading it back",
            sentinels,
        )
        .poll(SNAPSHOTS)
        .poll(DR_COPIES)
        .task(
            Task::step("Prune", Function::Backup, "prune")
                .comment("Delete this workflow's snapshots older than backup.retention_days, in each region; the newest good one always stays")
                .keep(
                    json!({"retention_days.$": "$.retention_days", "deleted.$": "$.deleted", "kept.$": "$.kept"}),
                    "$.result.prune",
                ),
        )
        .task(
            Task::step("Ledger", Function::Backup, "ledger")
                .comment("The RPO ledger: per store and region the newest restorable point, its age and its sentinel; and the age of the newest restore test report, which the missed-test alarm watches")
                .keep(
                    json!({"updated_at.$": "$.updated_at", "stores.$": "$.stores", "restore_test.$": "$.restore_test"}),
                    "$.result.ledger",
                ),
        );
    Locked {
        name: NAME,
        comment: "Back up the deployment's data stores: a sentinel in each, native snapshots (RDS, DocumentDB, ElastiCache), copies to backup.dr_region (RDS and DocumentDB re-encrypted with a DR-region key; Redis exported to S3 and replicated), pruning by backup.retention_days and the RPO ledger. Input {\"stores\": [\"postgres\", \"documentdb\", \"redis\"]} (optional: every store the spec enables). Generated from shared/workflows/src/backup.rs by `apiary workflows generate`: change the Rust, not this file".into(),
        timeout_seconds: TIMEOUT_SECONDS,
        lock_wait: LOCK_WAIT,
        body,
        input: Input::Deployment,
        outcome: Outcome::finish(),
    }
    .definition()
}
