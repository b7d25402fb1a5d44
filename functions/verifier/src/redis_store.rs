//! Redis over TLS with AUTH (the `redis` crate on rustls): the sentinel is the key
//! `apiary:sentinel:<id>`; the facts are the server version and the number of keys.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ErrorKind, IntoConnectionInfo,
    RedisConnectionInfo, TlsCertificates,
};

use crate::datastore::{Datastore, Facts, Sentinel, StoreError, Target, chain, scrub};
use crate::tls::Trust;

const KEY_PREFIX: &str = "apiary:sentinel:";
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Redis {
    connection: MultiplexedConnection,
    target: Target,
}

impl Redis {
    /// Connects over TLS (`rediss`), trusting only the bundle, and authenticates with
    /// the secret's token (`AUTH <token>`, or `AUTH <user> <token>` for a named user).
    pub async fn connect(target: &Target, trust: &Trust) -> Result<Self, StoreError> {
        let addr = ConnectionAddr::TcpTls {
            host: target.host.clone(),
            port: target.port,
            insecure: false,
            tls_params: None,
        };
        let mut settings = RedisConnectionInfo::default().set_password(&target.password);
        if let Some(user) = target.username.as_deref().filter(|u| *u != "default") {
            settings = settings.set_username(user);
        }
        let info = addr
            .into_connection_info()
            .map_err(|e| StoreError::Config(chain(&e)))?
            .set_redis_settings(settings);
        let client = Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls: None,
                root_cert: Some(trust.pem().to_vec()),
            },
        )
        .map_err(|e| StoreError::Config(format!("Redis TLS settings: {}", chain(&e))))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT));
        let connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| classify(&e, target))?;
        Ok(Redis {
            connection,
            target: target.clone(),
        })
    }

    fn error(&self, err: redis::RedisError) -> StoreError {
        classify(&err, &self.target)
    }
}

fn classify(err: &redis::RedisError, target: &Target) -> StoreError {
    let text = scrub(chain(err), target);
    let lower = text.to_lowercase();
    match err.kind() {
        ErrorKind::AuthenticationFailed => StoreError::Auth(format!(
            "the auth token was refused ({}): check the secret the step read",
            err.code().unwrap_or("WRONGPASS")
        )),
        _ if err.code() == Some("WRONGPASS") || err.code() == Some("NOAUTH") => {
            StoreError::Auth(format!(
                "the auth token was refused ({}): check the secret the step read",
                err.code().unwrap_or_default()
            ))
        }
        _ if lower.contains("tls")
            || lower.contains("certificate")
            || lower.contains("handshake")
            || lower.contains("invalid content type")
            || lower.contains("corrupt message") =>
        {
            StoreError::Tls(text)
        }
        _ if err.is_io_error() || err.is_timeout() || err.is_connection_refusal() => {
            StoreError::Unreachable(text)
        }
        _ => StoreError::Query(text),
    }
}

#[async_trait]
impl Datastore for Redis {
    /// No expiry on purpose: ElastiCache's default eviction policy (volatile-lru) evicts
    /// only keys that have one, and a sentinel must outlive every snapshot that holds it.
    /// No expiry on purpose: ElastiCache's default eviction policy (volatile-lru) evicts
    /// only keys that have one, and a sentinel must outlive every snapshot that holds it.
    async fn write_sentinel(&self, sentinel: &Sentinel) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        redis::cmd("SET")
            .arg(format!("{KEY_PREFIX}{}", sentinel.id))
            .arg(&sentinel.written_at)
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| self.error(e))
    }

    async fn read_sentinel(&self, id: &str) -> Result<Option<Sentinel>, StoreError> {
        let mut connection = self.connection.clone();
        let value: Option<String> = redis::cmd("GET")
            .arg(format!("{KEY_PREFIX}{id}"))
            .query_async(&mut connection)
            .await
            .map_err(|e| self.error(e))?;
        Ok(value.map(|written_at| Sentinel {
            id: id.to_owned(),
            written_at,
        }))
    }

    async fn facts(&self) -> Result<Facts, StoreError> {
        let mut connection = self.connection.clone();
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut connection)
            .await
            .map_err(|e| self.error(e))?;
        let version = info
            .lines()
            .find_map(|line| line.strip_prefix("redis_version:"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        let keys: i64 = redis::cmd("DBSIZE")
            .query_async(&mut connection)
            .await
            .map_err(|e| self.error(e))?;
        Ok(Facts {
            server_version: version,
            schema_version: None,
            counts: [("keys".to_owned(), keys)].into(),
        })
    }
}
