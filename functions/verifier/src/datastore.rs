//! The one seam between the verifier's logic and the databases: a [`Datastore`] writes
//! and reads sentinels and reports a few facts about what it holds; a [`Connector`]
//! opens one over TLS. Each engine has its impl (PostgreSQL, Redis, DocumentDB); unit
//! tests of the step logic use an in-memory one.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The data stores the verifier speaks to, as the step options and slots name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StoreKind {
    #[serde(rename = "postgres")]
    Postgres,
    #[serde(rename = "redis")]
    Redis,
    #[serde(rename = "documentdb")]
    DocumentDb,
}

impl StoreKind {
    pub const ALL: [StoreKind; 3] = [StoreKind::Postgres, StoreKind::Redis, StoreKind::DocumentDb];

    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Postgres => "postgres",
            StoreKind::Redis => "redis",
            StoreKind::DocumentDb => "documentdb",
        }
    }

    /// The user a store's secret implies when it names none.
    pub fn default_username(self) -> Option<&'static str> {
        match self {
            // RDS's managed master secret always names its user; "apiary" is the master
            // user the databases layer creates.
            StoreKind::Postgres | StoreKind::DocumentDb => Some("apiary"),
            // An ElastiCache auth token authenticates the default user: AUTH <token>.
            StoreKind::Redis => None,
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row, key or document with a unique id and the time it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sentinel {
    pub id: String,
    /// RFC 3339, UTC, milliseconds: stored as text so it reads back byte for byte.
    pub written_at: String,
}

impl Sentinel {
    /// A fresh sentinel: a random id and the current time.
    pub fn fresh() -> Self {
        Sentinel {
            id: uuid::Uuid::new_v4().to_string(),
            written_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        }
    }
}

/// What a store holds, beyond the sentinel: its server version, a fingerprint of its
/// schema where the engine has one (so a restore with a different schema is noticed),
/// and counts of a few key tables or keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    pub server_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<String>,
    #[serde(default)]
    pub counts: BTreeMap<String, i64>,
}

/// Where a store is and how to log in. The password never reaches a log or an output.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: String,
    /// The database to connect to (PostgreSQL).
    pub database: Option<String>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("database", &self.database)
            .finish()
    }
}

/// Why talking to a store failed, in words that name the store and never a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer (refused, unreachable, timed out): a scratch restore
    /// whose endpoint is still coming up, or a network path not open yet. Transient.
    #[error("{0}")]
    Unreachable(String),
    /// TLS failed: the server offers none, or its certificate is not trusted.
    #[error("{0}")]
    Tls(String),
    /// The store refused the credentials.
    #[error("{0}")]
    Auth(String),
    /// The verifier's own settings (the CA bundle) are wrong.
    #[error("{0}")]
    Config(String),
    /// A query or command failed.
    #[error("{0}")]
    Query(String),
}

impl StoreError {
    /// The shared error a step returns: a store that does not answer yet is `NotReady`
    /// (the workflow retries it); everything else cannot succeed by trying again.
    pub fn into_step_error(self, store: StoreKind, host: &str) -> apiary_core::Error {
        match self {
            StoreError::Unreachable(detail) => apiary_core::Error::NotReady {
                resource: format!("{store} at {host}"),
                detail,
            },
            StoreError::Tls(detail) => {
                apiary_core::Error::fatal(format!("{store} at {host}: TLS failed: {detail}"))
            }
            StoreError::Auth(detail) => apiary_core::Error::fatal(format!(
                "{store} at {host}: the credentials were refused: {detail}"
            )),
            StoreError::Config(detail) => apiary_core::Error::fatal(detail),
            StoreError::Query(detail) => {
                apiary_core::Error::fatal(format!("{store} at {host}: {detail}"))
            }
        }
    }
}

/// One open connection to one store.
#[async_trait]
pub trait Datastore: Send + Sync {
    /// Writes `sentinel`; writing the same id again overwrites it.
    async fn write_sentinel(&self, sentinel: &Sentinel) -> Result<(), StoreError>;
    /// The sentinel with `id`, `None` when the store holds none (or no sentinel at all).
    async fn read_sentinel(&self, id: &str) -> Result<Option<Sentinel>, StoreError>;
    async fn facts(&self) -> Result<Facts, StoreError>;
    /// On a connection as the master user: the pods' login user `username` exists with
    /// `password` and the app's privileges (created, or its password set). Idempotent.
    async fn ensure_app_user(&self, username: &str, password: &str) -> Result<(), StoreError> {
        let _ = (username, password);
        Err(StoreError::Config(
            "this store has no per-app users: Redis authenticates with its AUTH token".into(),
        ))
    }
    /// On a connection opened as an app user: it is logged in as `username` and holds
    /// the app's privileges.
    async fn check_app_user(&self, username: &str) -> Result<(), StoreError> {
        let _ = username;
        Err(StoreError::Config(
            "this store has no per-app users: Redis authenticates with its AUTH token".into(),
        ))
    }
}

/// Opens a [`Datastore`] for a store kind at a target.
#[async_trait]
pub trait Connector: Send + Sync {
    async fn connect(
        &self,
        kind: StoreKind,
        target: &Target,
    ) -> Result<Box<dyn Datastore>, StoreError>;
}

/// Turns a client error's text into a [`StoreError`] by what it says, scrubbing the
/// password should a driver ever echo it.
pub(crate) fn scrub(message: String, target: &Target) -> String {
    if target.password.is_empty() {
        message
    } else {
        message.replace(&target.password, "<redacted>")
    }
}

/// An error and its causes as one line, each cause once.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    apiary_core::error::sentence(err)
}
