//! PostgreSQL over TLS (tokio-postgres on rustls): the sentinel is a row of
//! `apiary.sentinels`; the facts are the server version, a fingerprint of the user
//! schema and the number of user tables.
//!
//! The pods' users ([`app_users`]): two login roles in one group role that owns what the
//! service creates. Each login sets `role` to the group, so either user reaches every
//! object. The password goes to the server as a SCRAM-SHA-256 verifier computed here,
//! never as text: a statement log shows no password.

use std::time::Duration;

use apiary_core::outputs::app_users;
use async_trait::async_trait;
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::datastore::{Datastore, Facts, Sentinel, StoreError, Target, chain, scrub};
use crate::tls::Trust;

/// The database the databases layer creates on the instance.
pub const DEFAULT_DATABASE: &str = "honeyhive";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const CREATE: &str = "CREATE SCHEMA IF NOT EXISTS apiary; \
     CREATE TABLE IF NOT EXISTS apiary.sentinels (id text PRIMARY KEY, written_at text NOT NULL)";
const UPSERT: &str = "INSERT INTO apiary.sentinels (id, written_at) VALUES ($1, $2) \
     ON CONFLICT (id) DO UPDATE SET written_at = EXCLUDED.written_at";
const SELECT: &str = "SELECT id, written_at FROM apiary.sentinels WHERE id = $1";
/// Every user column, in a stable order, hashed: equal on two copies of one schema.
const FINGERPRINT: &str = "SELECT md5(coalesce(string_agg(table_schema || '.' || table_name || '.' \
     || column_name || ':' || data_type, ',' ORDER BY table_schema, table_name, column_name), '')) \
     FROM information_schema.columns \
     WHERE table_schema NOT IN ('pg_catalog', 'information_schema', 'apiary') \
     AND table_schema NOT LIKE 'pg_toast%'";
const TABLES: &str = "SELECT count(*) FROM information_schema.tables \
     WHERE table_schema NOT IN ('pg_catalog', 'information_schema', 'apiary') \
     AND table_type = 'BASE TABLE'";

pub struct Postgres {
    client: tokio_postgres::Client,
    target: Target,
}

impl Postgres {
    /// Connects with TLS required: a server that offers no TLS, or whose certificate the
    /// bundle does not vouch for (name included), is refused before any credential is sent.
    pub async fn connect(target: &Target, trust: &Trust) -> Result<Self, StoreError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&target.host)
            .port(target.port)
            .user(target.username.as_deref().unwrap_or("apiary"))
            .password(&target.password)
            .dbname(target.database.as_deref().unwrap_or(DEFAULT_DATABASE))
            .application_name("apiary-verifier")
            .ssl_mode(SslMode::Require)
            .connect_timeout(CONNECT_TIMEOUT);
        let tls = MakeRustlsConnect::new(trust.client_config()?);
        let (client, connection) = config
            .connect(tls)
            .await
            .map_err(|e| classify(&e, target))?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(error = %chain(&err), "PostgreSQL connection ended");
            }
        });
        Ok(Postgres {
            client,
            target: target.clone(),
        })
    }

    fn error(&self, err: tokio_postgres::Error) -> StoreError {
        StoreError::Query(scrub(chain(&err), &self.target))
    }
}

/// Sorts a connect failure: the server's own refusal of the login, a TLS failure, or a
/// store that does not answer.
fn classify(err: &tokio_postgres::Error, target: &Target) -> StoreError {
    let text = scrub(chain(err), target);
    if let Some(db) = err.as_db_error() {
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            return StoreError::Auth(format!(
                "user {} was refused ({}): check the secret the step read",
                target.username.as_deref().unwrap_or("apiary"),
                db.message()
            ));
        }
        return StoreError::Query(text);
    }
    let lower = text.to_lowercase();
    if lower.contains("tls") || lower.contains("certificate") || lower.contains("ssl") {
        StoreError::Tls(text)
    } else {
        StoreError::Unreachable(text)
    }
}

/// `name` as a quoted SQL identifier. The names used are constants and the database's
/// own name, quoted all the same.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The statements that make `user` one of the pods' login users with the password whose
/// SCRAM verifier is `verifier`, in the group role that holds the app's privileges on
/// `database` and its `public` schema. Each is idempotent: run again, they set the same
/// password and grant what is already granted.
///
/// The master (the session's user) is made a member of the group too. On PostgreSQL 16 a
/// CREATEROLE user that is not a superuser (RDS's master) gets only ADMIN on a role it
/// creates, not its privileges: without the membership it could not see the group's
/// tables (the backup fingerprint and the restore test read them as the master) nor
/// hand its own tables over. Then every relation, type and routine in `public` the
/// master still owns (what the pods made when they logged in as the master, before their
/// own users) becomes the group's, so the pods keep owning their schema (their
/// migrations alter it). Sequences that belong to a column follow their table; a
/// multirange type follows its range; what an extension owns stays the extension's.
fn app_user_statements(user: &str, verifier: &str, database: &str) -> String {
    let group = app_users::GROUP;
    let (g, u, v) = (ident(group), ident(user), literal(verifier));
    format!(
        "DO $$ BEGIN \
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {group_name}) THEN \
             CREATE ROLE {g} NOLOGIN; \
           END IF; \
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {user_name}) THEN \
             CREATE ROLE {u} LOGIN PASSWORD {v}; \
           ELSE \
             ALTER ROLE {u} WITH LOGIN PASSWORD {v}; \
           END IF; \
         END $$; \
         GRANT {g} TO {u}; \
         ALTER ROLE {u} SET role = {group_name}; \
         GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {d} TO {g}; \
         GRANT USAGE, CREATE ON SCHEMA public TO {g}; \
         GRANT {g} TO CURRENT_USER; \
         DO $$ DECLARE r record; BEGIN \
           FOR r IN SELECT c.oid::regclass AS rel, c.relkind FROM pg_class c \
               JOIN pg_namespace n ON n.oid = c.relnamespace \
               WHERE n.nspname = 'public' AND c.relowner = \
                 (SELECT oid FROM pg_roles WHERE rolname = current_user) \
               AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') \
               AND NOT EXISTS (SELECT FROM pg_depend d \
                 WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid \
                 AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i')))) \
           LOOP \
             EXECUTE format('ALTER %s %s OWNER TO %I', CASE r.relkind \
               WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' \
               WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' \
               ELSE 'TABLE' END, r.rel, {group_name}); \
           END LOOP; \
           FOR r IN SELECT t.oid::regtype AS typ FROM pg_type t \
               JOIN pg_namespace n ON n.oid = t.typnamespace \
               WHERE n.nspname = 'public' AND t.typowner = \
                 (SELECT oid FROM pg_roles WHERE rolname = current_user) \
               AND (t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND \
                 (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')) \
               AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_type'::regclass \
                 AND d.objid = t.oid AND d.deptype = 'e') \
           LOOP \
             EXECUTE format('ALTER TYPE %s OWNER TO %I', r.typ, {group_name}); \
           END LOOP; \
           FOR r IN SELECT p.oid::regprocedure AS fn FROM pg_proc p \
               JOIN pg_namespace n ON n.oid = p.pronamespace \
               WHERE n.nspname = 'public' AND p.proowner = \
                 (SELECT oid FROM pg_roles WHERE rolname = current_user) \
               AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass \
                 AND d.objid = p.oid AND d.deptype = 'e') \
           LOOP \
             EXECUTE format('ALTER ROUTINE %s OWNER TO %I', r.fn, {group_name}); \
           END LOOP; \
         END $$;",
        group_name = literal(group),
        user_name = literal(user),
        d = ident(database),
    )
}

/// What an app user's own connection must show: logged in as itself, acting as the
/// group role, allowed to create in its database and the `public` schema.
const APP_USER_CHECK: &str = "SELECT session_user::text, current_user::text, \
     has_database_privilege(current_database(), 'CREATE'), \
     has_schema_privilege('public', 'CREATE')";

#[async_trait]
impl Datastore for Postgres {
    async fn ensure_app_user(&self, username: &str, password: &str) -> Result<(), StoreError> {
        let database: String = self
            .client
            .query_one("SELECT current_database()::text", &[])
            .await
            .map_err(|e| self.error(e))?
            .get(0);
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        self.client
            .batch_execute(&app_user_statements(username, &verifier, &database))
            .await
            .map_err(|e| {
                // The statements carry the verifier, not the password; the error text
                // is the server's, scrubbed of both all the same.
                StoreError::Query(scrub(chain(&e), &self.target).replace(&verifier, "<redacted>"))
            })
    }

    async fn check_app_user(&self, username: &str) -> Result<(), StoreError> {
        let row = self
            .client
            .query_one(APP_USER_CHECK, &[])
            .await
            .map_err(|e| self.error(e))?;
        let (session, current, database, schema): (String, String, bool, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        if session != username || current != app_users::GROUP || !database || !schema {
            return Err(StoreError::Query(format!(
                "logged in as {session} acting as {current} (CREATE on the database: \
                 {database}, on schema public: {schema}); expected {username} acting as {} \
                 with both",
                app_users::GROUP
            )));
        }
        Ok(())
    }

    async fn write_sentinel(&self, sentinel: &Sentinel) -> Result<(), StoreError> {
        self.client
            .batch_execute(CREATE)
            .await
            .map_err(|e| self.error(e))?;
        self.client
            .execute(UPSERT, &[&sentinel.id, &sentinel.written_at])
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn read_sentinel(&self, id: &str) -> Result<Option<Sentinel>, StoreError> {
        match self.client.query_opt(SELECT, &[&id]).await {
            Ok(row) => Ok(row.map(|row| Sentinel {
                id: row.get(0),
                written_at: row.get(1),
            })),
            // No sentinel table at all: nothing was ever written to this copy.
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn facts(&self) -> Result<Facts, StoreError> {
        let version: String = self
            .client
            .query_one("SHOW server_version", &[])
            .await
            .map_err(|e| self.error(e))?
            .get(0);
        let fingerprint: String = self
            .client
            .query_one(FINGERPRINT, &[])
            .await
            .map_err(|e| self.error(e))?
            .get(0);
        let tables: i64 = self
            .client
            .query_one(TABLES, &[])
            .await
            .map_err(|e| self.error(e))?
            .get(0);
        let sentinels: i64 = match self
            .client
            .query_one("SELECT count(*) FROM apiary.sentinels", &[])
            .await
        {
            Ok(row) => row.get(0),
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => 0,
            Err(e) => return Err(self.error(e)),
        };
        Ok(Facts {
            server_version: version,
            schema_version: Some(fingerprint),
            counts: [
                ("tables".to_owned(), tables),
                ("sentinels".to_owned(), sentinels),
            ]
            .into(),
        })
    }
}
