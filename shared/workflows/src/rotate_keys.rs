//! The rotate-keys workflow: key state and rotation, then the secrets.
//!
//! ```text
//! validate-input ({"scope": "all"|"keys-check"|"secrets", "on_demand": bool}) -> lock
//!   -> keys (state policy, rotation period, on demand: RotateKeyOnDemand)
//!   -> database master passwords (RotateSecret) -> until each is current (polled)
//!   -> whether every ingestion pod reads the credentials' current versions (when not,
//!      an earlier run stopped between making a user current and the restart below: the
//!      users steps skip, the restart below puts the pods on the current versions)
//!   -> the pods' own database users: the other user's new password staged
//!      -> set in each store by the verifier (in the VPC) -> made current
//!   -> Redis ROTATE -> until applied (polled; the secret then holds the new token)
//!   -> until every pod's mount holds the new versions (polled: the CSI driver re-reads
//!      them every 2 minutes and syncs the pods' Secret)
//!   -> restart the ingestion pods -> their rollout (polled)
//!   -> Redis SET -> until applied (polled)
//!   -> finish -> unlock
//! ```
//!
//! Each step reads the validated input and skips what its scope leaves out, so the
//! monthly keys check, the quarterly secrets rotation and a console run share this one
//! machine. Poll bounds are a few times the real durations in AWS-TIMINGS.md (an
//! ElastiCache modification takes minutes; the ingestion rollout is the provision's).

use serde_json::json;

use crate::flow::{Flow, Poll, Task};
use crate::function::Function;
use crate::locked::{Input, Locked, Outcome};

pub const NAME: &str = apiary_core::inputs::rotate_keys::WORKFLOW;

/// A scheduled run waits for another workflow (a backup) up to about 30 minutes when
/// its input asks to queue.
pub const LOCK_WAIT: &[u64] = &[60, 120, 300, 600, 600];

/// Secrets Manager finishes a managed password's rotation (RDS sets the new password)
/// in about a minute. Bound 15 minutes.
pub const DATABASE_SECRETS_ROTATED: Poll = Poll {
    name: "DatabaseSecretsRotated",
    function: Function::Operate,
    ensure: "database-secrets-status",
    status: "database-secrets-status",
    what: "the database master passwords' rotation (each new version AWSCURRENT)",
    schedule: &[10, 20, 30, 60, 120, 300, 360],
};

/// ElastiCache applies an AUTH token change in minutes. Bound 60 minutes.
pub const REDIS_ROTATED: Poll = Poll {
    name: "RedisRotated",
    function: Function::Operate,
    ensure: "redis-status",
    status: "redis-status",
    what: "the Redis replication group applying the new AUTH token (ROTATE)",
    schedule: &[30, 30, 60, 120, 300, 600, 600, 600, 1200],
};

/// The Secrets Store CSI driver re-reads every mounted secret each
/// `SECRET_ROTATION_POLL` (2 minutes) and syncs the pods' Secret from it. Bound 20
/// minutes: a driver that has not caught up by then is broken, not slow.
pub const CREDENTIALS_SYNCED: Poll = Poll {
    name: "CredentialsSynced",
    function: Function::Workloads,
    ensure: "credentials-synced",
    status: "credentials-synced",
    what: "the Secrets Store CSI driver bringing the rotated secrets into every ingestion pod's mount and Secret",
    schedule: &[30, 30, 60, 60, 120, 120, 240, 540],
};

/// The ingestion rollout after the restart, bounded as provision's. Bound 30 minutes.
pub const ROLLOUT: Poll = Poll {
    name: "IngestionRollout",
    function: Function::Workloads,
    ensure: "status",
    status: "status",
    what: "the ingestion pods' rollout after their restart",
    schedule: &[15, 30, 60, 120, 300, 600, 675],
};

/// SET applies as ROTATE does. Bound 60 minutes.
pub const REDIS_SET: Poll = Poll {
    name: "RedisSet",
    function: Function::Operate,
    ensure: "redis-status",
    status: "redis-status",
    what: "the Redis replication group dropping the old AUTH token (SET)",
    schedule: &[30, 30, 60, 120, 300, 600, 600, 600, 1200],
};

/// 36 hours, as upgrade's: every step's retries and all five poll bounds (the sync
/// wait polls the workloads function, whose attempts may each run to its timeout) fit in
/// it (the budget test computes the longest path); a normal run takes minutes.
pub const TIMEOUT_SECONDS: u64 = 36 * 3600;

pub fn definition() -> serde_json::Value {
    let input = || json!({"input.$": "$.input"});
    // The users steps read the input and whether the pods are on the current
    // credentials.
    let users_options = || json!({"input.$": "$.input", "pods.$": "$.result.pods_credentials"});
    let operate = |name: &str, action: &str, comment: &str| {
        Task::step(name, Function::Operate, action)
            .comment(comment)
            .options(input())
    };
    let body = Flow::new()
        .task(
            Task::step("Keys", Function::Operate, "keys")
                .comment("Every key: the key-state policy (a key pending deletion is kept, a disabled one refused), automatic rotation with keys.rotation_days, and with on_demand a rotation now")
                .options(json!({"input.$": "$.input", "started_at.$": "$$.Execution.StartTime"}))
                .keep(json!({"keys.$": "$.keys", "skipped.$": "$.skipped"}), "$.result.keys"),
        )
        .task(
            operate(
                "DatabaseSecrets",
                "database-secrets",
                "The PostgreSQL and DocumentDB master passwords: RotateSecret now, with their own schedule set explicitly",
            )
            .keep(
                json!({"secrets.$": "$.secrets", "skipped.$": "$.skipped"}),
                "$.result.database_secrets",
            ),
        )
        .poll_with(DATABASE_SECRETS_ROTATED, Some(input()))
        .task(
            Task::step("PodsCredentials", Function::Workloads, "pods-credentials")
                .comment("Whether every ingestion pod reads the credentials' current versions: when an earlier run stopped between making a user current and restarting the pods, this run leaves the users alone (the steps below skip) and only restarts the pods")
                .options(input())
                .keep(
                    json!({"current.$": "$.current", "verified.$": "$.verified", "detail.$": "$.detail"}),
                    "$.result.pods_credentials",
                ),
        )
        .task(
            Task::step("AppUsersStage", Function::Operate, "app-users-stage")
                .comment("The pods' own database users: the other user of each pair gets a new password, staged as AWSPENDING (the current one keeps working)")
                .options(users_options()),
        )
        .parallel_with(
            "AppUsersSet",
            "The verifier sets each staged password on its user in the store, from inside the VPC, and logs in with it; a run whose scope rotates no secret staged nothing and sets nothing; a staged version that does not show yet is waited for (Apiary.NotReady), never taken as nothing to set. Not set locally, where the stores have no server",
            crate::backup::STORES
                .iter()
                .filter(|(store, _)| apiary_core::outputs::app_users::STORES.contains(store))
                .map(|(store, title)| {
                    Flow::branch().task(
                        Task::step(&format!("AppUserSet{title}"), Function::Verifier, "ensure-app-user")
                            .comment(format!("The staged {store} user's password set in the store, then a login with it"))
                            .options(json!({"store": store, "rotation": true, "input.$": "$.input", "pods.$": "$.pods"})),
                    )
                })
                .collect(),
            users_options(),
        )
        .task(
            Task::step("AppUsersPromote", Function::Operate, "app-users-promote")
                .comment("The staged versions become AWSCURRENT: the pods read the new user at their restart below")
                .options(users_options())
            .keep(
                json!({"users.$": "$.users", "skipped.$": "$.skipped"}),
                "$.result.app_users",
            ),
        )
        .task(operate(
            "RedisRotate",
            "redis-rotate",
            "Redis AUTH phase 1: ROTATE to a new token (the group accepts both); never the first token of a group without AUTH",
        ))
        .poll_with(REDIS_ROTATED, None)
        .poll_with(CREDENTIALS_SYNCED, Some(input()))
        .task(
            Task::step("RestartIngestion", Function::Workloads, "restart")
                .comment("Restart the ingestion pods so that they read the new database users and Redis token")
                .options(input())
                .keep(
                    json!({"restarted.$": "$.restarted", "verified.$": "$.verified", "detail.$": "$.detail"}),
                    "$.result.restart",
                ),
        )
        .poll_with(ROLLOUT, None)
        .task(
            operate(
                "RedisSetToken",
                "redis-set",
                "Redis AUTH phase 2: SET the new token, which drops the old one",
            )
            .keep(json!({"phase.$": "$.phase"}), "$.result.redis"),
        )
        .poll_with(REDIS_SET, None);
    Locked {
        name: NAME,
        comment: "Rotate the deployment's keys and secrets. Input {\"scope\": \"all\" | \"keys-check\" | \"secrets\", \"on_demand\": false}: keys-check (monthly) checks key state and rotation settings, secrets (quarterly) rotates the database master passwords, the pods' own database users (alternating users) and the Redis AUTH token in two phases, on_demand also rotates every key now. Generated from shared/workflows/src/rotate_keys.rs by `apiary workflows generate`: change the Rust, not this file".into(),
        timeout_seconds: TIMEOUT_SECONDS,
        lock_wait: LOCK_WAIT,
        body,
        input: Input::Deployment,
        outcome: Outcome::finish(),
    }
    .definition()
}
