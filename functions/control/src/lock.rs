//! Taking a deployment's lock: free, expired or renewed, as the store gives it; held by
//! a run that is no longer running, taken over.
//!
//! A takeover hands the lock from the dead holder to this run in one conditional write,
//! which succeeds only while that holder still has it: of two runs that both find the
//! holder dead, one gets the lock and the other finds it held by a live run, and the lock
//! is never free in between. No step ever replaces a lock held by a live run.

use apiary_core::store::{JournalEntry, Lock, Store};
use apiary_core::{Error, Result};
use chrono::{DateTime, Duration, Utc};

use crate::runs::Runs;

/// How often the lock step looks again when the lock changes hands under it.
const ATTEMPTS: usize = 3;

/// The lock this run now holds, and whose it was when it was taken over.
pub struct Taken {
    pub lock: Lock,
    pub took_over_from: Option<String>,
}

/// Takes the deployment's lock for `owner`, taking it over from a holder that is not
/// running. A holder that runs (or may: see [`Runs::is_running`]) keeps it, and this
/// fails with `Apiary.Conflict` naming it.
pub async fn take(
    store: &Store,
    runs: &dyn Runs,
    deployment: &str,
    owner: &str,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Taken> {
    let mut refused = None;
    for _ in 0..ATTEMPTS {
        let conflict = match store.acquire_lock(deployment, owner, lease, now).await {
            Ok(lock) => {
                return Ok(Taken {
                    lock,
                    took_over_from: None,
                });
            }
            Err(err @ Error::Conflict(_)) => err,
            Err(err) => return Err(err),
        };
        let Some(holder) = store.current_lock(deployment).await? else {
            refused = Some(conflict); // Released between the two calls: try again.
            continue;
        };
        if runs.is_running(&holder.owner).await? {
            return Err(conflict);
        }
        match take_over(store, deployment, &holder.owner, owner, lease, now).await? {
            Some(lock) => {
                return Ok(Taken {
                    lock,
                    took_over_from: Some(holder.owner),
                });
            }
            // Another run took it first, or the lock changed: look again.
            None => refused = Some(conflict),
        }
    }
    Err(refused.unwrap_or_else(|| {
        Error::Conflict(format!(
            "the lock of deployment {deployment} kept changing hands"
        ))
    }))
}

/// Hands the lock from `holder` to `owner` in one conditional write; `None` when the
/// holder no longer has it (released, or another run took it first).
async fn take_over(
    store: &Store,
    deployment: &str,
    holder: &str,
    owner: &str,
    lease: Duration,
    now: DateTime<Utc>,
) -> Result<Option<Lock>> {
    match store
        .transfer_lock(deployment, holder, owner, lease, now)
        .await
    {
        Ok(lock) => Ok(Some(lock)),
        Err(Error::Conflict(_)) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Journals a takeover. A journal write that fails is logged: the lock is taken either way.
pub async fn journal_takeover(
    store: &Store,
    deployment: &str,
    execution_id: &str,
    workflow: &str,
    previous: &str,
) {
    let entry = JournalEntry {
        deployment: deployment.to_owned(),
        execution_id: execution_id.to_owned(),
        step: workflow.to_owned(),
        action: "lock".to_owned(),
        outcome: "took-over".to_owned(),
        resource_ids: Vec::new(),
        detail: Some(format!(
            "took over the lock of {previous}, which is not running"
        )),
        at: Utc::now(),
    };
    if let Err(err) = store.append_journal(&entry).await {
        tracing::warn!(error = %err, previous, "could not journal the lock takeover");
    }
}
