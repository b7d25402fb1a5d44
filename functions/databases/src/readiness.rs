//! Where a store, or one of its parts, is in its life, from its own status word, and what
//! that means for a step: ready, worth waiting for, or an error waiting cannot fix.
//! RDS instances, DocumentDB clusters and instances, and ElastiCache replication groups
//! use different words for the same few states.

use apiary_core::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readiness {
    Ready,
    Pending,
    /// Stopped by someone: it will not become available by waiting.
    Stopped,
    Deleting,
    Failed,
}

/// An RDS or DocumentDB instance or cluster, from its `DBInstanceStatus` or `Status`.
pub(crate) fn instance_readiness(status: &str) -> Readiness {
    match status {
        "available" => Readiness::Ready,
        "stopped" | "stopping" => Readiness::Stopped,
        "deleting" | "deleted" => Readiness::Deleting,
        "failed"
        | "restore-error"
        | "storage-full"
        | "inaccessible-encryption-credentials"
        | "inaccessible-encryption-credentials-recoverable" => Readiness::Failed,
        s if s.starts_with("incompatible-") => Readiness::Failed,
        // creating, backing-up, modifying, configuring-*, upgrading, rebooting, ...
        _ => Readiness::Pending,
    }
}

/// An ElastiCache replication group, from its `Status`.
pub(crate) fn group_readiness(status: &str) -> Readiness {
    match status {
        "available" => Readiness::Ready,
        "deleting" => Readiness::Deleting,
        "create-failed" => Readiness::Failed,
        // creating, modifying, snapshotting
        _ => Readiness::Pending,
    }
}

/// The readiness of `what id` (e.g. `RDS instance apiary-acme-postgres`) in `status`,
/// noting it in `pending` when it is not ready. States that waiting cannot fix are
/// errors: `Apiary.Conflict` while a teardown deletes it, `Apiary.Fatal` naming the
/// resource when it failed.
pub(crate) fn check(
    what: &str,
    id: &str,
    status: &str,
    readiness: Readiness,
    pending: &mut Vec<String>,
) -> Result<Readiness> {
    match readiness {
        Readiness::Deleting => Err(Error::Conflict(format!(
            "{what} {id} is {status}: a teardown is removing it; run provision again once it is gone"
        ))),
        Readiness::Failed => Err(Error::fatal(format!(
            "{what} {id} is in state {status}; it cannot become available without intervention \
             (see its events in the console)"
        ))),
        Readiness::Ready => Ok(readiness),
        Readiness::Pending | Readiness::Stopped => {
            pending.push(format!("{what} {id} is {status}"));
            Ok(readiness)
        }
    }
}
