//! The PostgreSQL store against a real server with TLS (scripts/databases): sentinel
//! write and read, a restore without the sentinel, TLS required on both sides, and a
//! refused password reported without any secret.

mod support;

use std::sync::Arc;
use std::time::Duration;

use apiary_core::ErrorName;
use apiary_core::fixtures::{Fixture, NAME};
use apiary_core::outputs::DatastoreEndpoint;
use aws_sdk_secretsmanager::Client as SecretsManager;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use verifier::postgres::Postgres;
use verifier::{Datastore, Deps, Sentinel, StoreError, Target, TlsConnector};

#[tokio::test]
async fn a_sentinel_reads_back_and_an_unknown_one_is_absent() {
    let db = Postgres::connect(&support::postgres(), &support::trust())
        .await
        .unwrap();
    let sentinel = Sentinel::fresh();
    db.write_sentinel(&sentinel).await.unwrap();
    assert_eq!(
        db.read_sentinel(&sentinel.id).await.unwrap(),
        Some(sentinel.clone())
    );
    // Writing again is harmless (a retried step).
    db.write_sentinel(&sentinel).await.unwrap();
    assert_eq!(db.read_sentinel("no-such-sentinel").await.unwrap(), None);
    let facts = db.facts().await.unwrap();
    assert!(
        facts.server_version.starts_with(char::is_numeric),
        "{facts:?}"
    );
    assert!(facts.counts["sentinels"] >= 1, "{facts:?}");
    assert!(facts.schema_version.is_some_and(|f| f.len() == 32));
}

#[tokio::test]
async fn the_server_refuses_plaintext() {
    let target = support::postgres();
    let mut config = tokio_postgres::Config::new();
    config
        .host(&target.host)
        .port(target.port)
        .user(target.username.as_deref().unwrap())
        .password(&target.password)
        .dbname(target.database.as_deref().unwrap())
        .ssl_mode(tokio_postgres::config::SslMode::Disable);
    let Err(err) = config.connect(tokio_postgres::NoTls).await else {
        panic!("a plaintext connection was accepted");
    };
    let db = err.as_db_error().expect("the server's own refusal");
    assert_eq!(
        db.code(),
        &tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    );
    assert!(db.message().contains("no encryption"), "{}", db.message());
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let (foreign, _dir) = support::foreign_trust();
    let err = Postgres::connect(&support::postgres(), &foreign)
        .await
        .err()
        .expect("an untrusted server must be refused");
    assert!(matches!(err, StoreError::Tls(_)), "{err:?}");
}

/// A server that answers the TLS request with "no" (`N`) is left at once: the client
/// sends nothing more, least of all the user and password.
#[tokio::test]
async fn a_server_without_tls_is_refused_before_any_credential() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 8];
        socket.read_exact(&mut request).await.unwrap();
        socket.write_all(b"N").await.unwrap();
        let mut after = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut after)).await;
        (request, after)
    });
    let target = Target {
        host: "127.0.0.1".into(),
        port,
        username: Some("apiary".into()),
        password: "never-sent".into(),
        database: Some("honeyhive".into()),
    };
    let err = Postgres::connect(&target, &support::trust())
        .await
        .err()
        .expect("no TLS, no connection");
    assert!(matches!(err, StoreError::Tls(_)), "{err:?}");
    let (request, after) = server.await.unwrap();
    // The SSLRequest code 80877103, then nothing.
    assert_eq!(&request[4..], &80877103u32.to_be_bytes());
    assert!(
        after.is_empty(),
        "the client sent {after:?} after the refusal"
    );
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error_without_the_secret() {
    let mut target = support::postgres();
    let real = target.password.clone();
    target.password = "wrong-password-123".into();
    let err = Postgres::connect(&target, &support::trust())
        .await
        .err()
        .expect("a wrong password must be refused");
    let StoreError::Auth(message) = &err else {
        panic!("expected an authentication error, got {err:?}");
    };
    assert!(
        message.contains("apiary") && message.contains("refused"),
        "{message}"
    );
    let step_error = err
        .clone()
        .into_step_error(verifier::StoreKind::Postgres, "db.host");
    assert_eq!(step_error.name(), ErrorName::Fatal);
    for text in [message.clone(), step_error.to_string()] {
        assert!(
            !text.contains("wrong-password-123") && !text.contains(&real),
            "{text}"
        );
    }
}

/// An administrative connection to the test server, for making databases.
async fn admin() -> tokio_postgres::Client {
    let db_target = support::postgres();
    let trust = support::trust();
    let mut config = tokio_postgres::Config::new();
    config
        .host(&db_target.host)
        .port(db_target.port)
        .user(db_target.username.as_deref().unwrap())
        .password(&db_target.password)
        .dbname(db_target.database.as_deref().unwrap())
        .ssl_mode(tokio_postgres::config::SslMode::Require);
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(trust.client_config().unwrap());
    let (client, connection) = config.connect(tls).await.unwrap();
    tokio::spawn(connection);
    client
}

/// `CREATE DATABASE name TEMPLATE source`, a copy of the source as it is now: the test's
/// stand-in for a snapshot restored into a scratch instance. PostgreSQL refuses while
/// a session still uses the source (the step's connection closes in the background).
async fn copy_database(admin: &tokio_postgres::Client, source: &str, name: &str) {
    for _ in 0..50 {
        match admin
            .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {source}"))
            .await
        {
            Ok(()) => return,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("CREATE DATABASE {name}: {e}"),
        }
    }
    panic!("{source} stayed in use");
}

/// Secrets Manager answering each secret with the test server's login and a database.
fn secrets(databases: Vec<(&'static str, String)>) -> SecretsManager {
    let target = support::postgres();
    let rule = mock!(SecretsManager::get_secret_value).then_compute_output(move |request| {
        let id = request.secret_id().unwrap_or_default();
        let database = databases
            .iter()
            .find(|(arn, _)| id == *arn)
            .map(|(_, db)| db.clone())
            .expect("a known secret");
        GetSecretValueOutput::builder()
            .arn(id)
            .secret_string(
                json!({"username": target.username, "password": target.password,
                       "dbname": database})
                .to_string(),
            )
            .build()
    });
    mock_client!(aws_sdk_secretsmanager, RuleMode::MatchAny, [&rule])
}

/// The databases layer's output for the test server, with the master secret and, when
/// given, the pods' user's secret.
fn live_endpoint(server: &Target, app_secret: Option<&str>) -> DatastoreEndpoint {
    DatastoreEndpoint {
        identifier: "apiary-acme-prod-postgres".into(),
        host: server.host.clone(),
        port: server.port,
        secret_arn: LIVE_SECRET.into(),
        app_secret_arn: app_secret.map(str::to_owned),
    }
}

const LIVE_SECRET: &str = "arn:aws:secretsmanager:us-west-2:123456789012:secret:live";
const SCRATCH_SECRET: &str = "arn:aws:secretsmanager:us-west-2:123456789012:secret:scratch";

fn event(action: &str) -> Value {
    json!({"action": action, "deployment": NAME, "execution_id": "exec-1",
           "options": {"store": "postgres"}})
}

/// The whole round: write-sentinel into the live database, a copy made after it (a
/// restore) verifies, a copy made before it (a restore of an older snapshot) does not.
#[tokio::test]
async fn write_then_verify_restores_through_the_step() {
    let server = support::postgres();
    let admin = admin().await;
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (live, before, after) = (
        format!("live_{suffix}"),
        format!("before_{suffix}"),
        format!("after_{suffix}"),
    );
    admin
        .batch_execute(&format!("CREATE DATABASE {live}"))
        .await
        .unwrap();
    copy_database(&admin, &live, &before).await;

    let state = Fixture::test()
        .with_layers(|layers| {
            layers.databases.as_mut().unwrap().postgres = Some(live_endpoint(&server, None))
        })
        .state();
    let deps = Deps::with_connector(
        secrets(vec![
            (LIVE_SECRET, live.clone()),
            (SCRATCH_SECRET, after.clone()),
        ]),
        Arc::new(state.clone()),
        Arc::new(TlsConnector {
            ca_bundle: Some(support::required("APIARY_TEST_CA").into()),
        }),
    );
    let written = verifier::handle(&deps, event("write-sentinel"))
        .await
        .unwrap();
    assert_eq!(written["written"], true, "{written}");
    let id = written["sentinel_id"].as_str().unwrap().to_owned();
    copy_database(&admin, &live, &after).await;

    let restore = |database: &str| {
        let mut outputs = state.saved.lock().unwrap();
        let slots = outputs.get_mut(NAME).unwrap();
        slots.insert(
            "restore-test.postgres".into(),
            json!({"execution_id": "exec-1", "endpoint": server.host, "port": server.port,
                   "secret_arn": SCRATCH_SECRET, "sentinel_id": id,
                   "snapshot_id": format!("snap-{database}"),
                   "restore_started_at": "2026-12-06T01:00:00Z"}),
        );
    };
    restore(&after);
    let verified = verifier::handle(&deps, event("verify-restore"))
        .await
        .unwrap();
    assert_eq!(verified["verified"], true, "{verified}");
    assert_eq!(
        verified["checked"],
        json!(["tls", "login", "sentinel", "schema", "counts"])
    );
    assert_eq!(verified["facts"]["counts"]["sentinels"], 1);

    // The older copy: its secret now names the database copied before the sentinel.
    let deps = Deps::with_connector(
        secrets(vec![
            (LIVE_SECRET, live.clone()),
            (SCRATCH_SECRET, before.clone()),
        ]),
        Arc::new(state.clone()),
        Arc::new(TlsConnector {
            ca_bundle: Some(support::required("APIARY_TEST_CA").into()),
        }),
    );
    let stale = verifier::handle(&deps, event("verify-restore"))
        .await
        .unwrap();
    assert_eq!(stale["verified"], false, "{stale}");
    assert_eq!(
        stale["mismatch"],
        format!("sentinel {id} is not in the restored copy").as_str()
    );

    drop(deps);
    for database in [&after, &before, &live] {
        for _ in 0..50 {
            if admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {database}"))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

const APP_SECRET: &str =
    "arn:aws:secretsmanager:us-west-2:123456789012:secret:apiary-acme-prod-postgres-app-GhIjKl";

/// Secrets Manager for the app-user step: the master secret is the test server's login;
/// the app secret's current version names `current`, the version `staged` (a rotation's
/// request token) names `next`; any other version does not exist.
fn app_secrets(
    current: (&'static str, String),
    staged: Option<(String, &'static str, String)>,
) -> SecretsManager {
    let target = support::postgres();
    let missing = staged.as_ref().map(|(token, _, _)| token.clone());
    let not_found = mock!(SecretsManager::get_secret_value)
        .match_requests(move |r| {
            r.version_id().is_some() && r.version_id() != missing.as_deref()
        })
        .then_error(|| {
            aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError::ResourceNotFoundException(
                aws_sdk_secretsmanager::types::error::ResourceNotFoundException::builder()
                    .message("Secrets Manager can't find the specified secret value for VersionId")
                    .build(),
            )
        });
    let value = mock!(SecretsManager::get_secret_value).then_compute_output(move |request| {
        let id = request.secret_id().unwrap_or_default();
        let text = if id == LIVE_SECRET {
            json!({"username": target.username, "password": target.password})
        } else {
            assert_eq!(id, APP_SECRET, "only the two secrets are read");
            let (user, password) = match (&staged, request.version_id()) {
                (Some((_, user, password)), Some(_)) => (*user, password.clone()),
                _ => (current.0, current.1.clone()),
            };
            json!({"engine": "postgres", "username": user, "password": password,
                   "dbname": "honeyhive"})
        };
        GetSecretValueOutput::builder()
            .arn(id)
            .secret_string(text.to_string())
            .build()
    });
    mock_client!(
        aws_sdk_secretsmanager,
        RuleMode::MatchAny,
        [&not_found, &value]
    )
}

fn app_deps(state: &apiary_core::step::MemoryRecorder, secrets: SecretsManager) -> Deps {
    Deps::with_connector(
        secrets,
        Arc::new(state.clone()),
        Arc::new(TlsConnector {
            ca_bundle: Some(support::required("APIARY_TEST_CA").into()),
        }),
    )
}

/// Logs in as `user` with `password` over TLS.
async fn login(
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let server = support::postgres();
    let mut config = tokio_postgres::Config::new();
    config
        .host(&server.host)
        .port(server.port)
        .user(user)
        .password(password)
        .dbname("honeyhive")
        .ssl_mode(tokio_postgres::config::SslMode::Require);
    let tls =
        tokio_postgres_rustls::MakeRustlsConnect::new(support::trust().client_config().unwrap());
    let (client, connection) = config.connect(tls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The pods' own user, made through the step against the real server: it logs in with
/// its secret's password and acts as the group role; a second run changes nothing; a
/// rotation moves to the other user, which reaches what the first one made, while the
/// first keeps working for the pods not yet restarted; a keys-only rotation does
/// nothing, and one whose staged version does not show yet waits for it rather than
/// report success; a secret naming the master user is refused and the master's password
/// stays. A table the master made before the pods had their own users (they logged in as
/// the master) becomes the group's, and the master sees the group's tables (the backup
/// fingerprint reads them as the master).
#[tokio::test]
async fn the_pods_user_is_made_rotated_and_never_the_master() {
    use apiary_core::outputs::app_users;

    let server = support::postgres();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let (first, second) = (format!("pw-a-{suffix}"), format!("pw-b-{suffix}"));
    let state = Fixture::test()
        .with_layers(|layers| {
            layers.databases.as_mut().unwrap().postgres =
                Some(live_endpoint(&server, Some(APP_SECRET)))
        })
        .state();
    let event = |rotation: bool, execution: &str| {
        json!({"action": "ensure-app-user", "deployment": NAME, "execution_id": execution,
               "options": {"store": "postgres", "rotation": rotation,
                           "input": {"scope": "secrets"},
                           "pods": {"current": true, "verified": true, "detail": "current"}}})
    };
    let master = admin().await;
    let legacy = format!("legacy_{suffix}");
    master
        .batch_execute(&format!(
            "CREATE TYPE public.{legacy}_kind AS ENUM ('a', 'b'); \
             CREATE TABLE public.{legacy} (id serial PRIMARY KEY, body text, \
               kind public.{legacy}_kind); \
             CREATE FUNCTION public.{legacy}_one() RETURNS int LANGUAGE sql AS 'SELECT 1'; \
             INSERT INTO public.{legacy} (body) VALUES ('before')"
        ))
        .await
        .unwrap();

    let deps = app_deps(
        &state,
        app_secrets((app_users::USERS[0], first.clone()), None),
    );
    let made = verifier::handle(&deps, event(false, "exec-provision"))
        .await
        .unwrap();
    assert_eq!(made["verified"], true, "{made}");
    assert_eq!(made["username"], app_users::USERS[0]);
    let again = verifier::handle(&deps, event(false, "exec-provision"))
        .await
        .unwrap();
    assert_eq!(again["verified"], true, "a second run: {again}");

    let pods = login(app_users::USERS[0], &first).await.unwrap();
    let table = format!("app_probe_{suffix}");
    pods.batch_execute(&format!(
        "CREATE TABLE {table} (id int); INSERT INTO {table} VALUES (1)"
    ))
    .await
    .unwrap();
    let owner: String = pods
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = $1",
            &[&table],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, app_users::GROUP, "the group owns what the pods make");
    let legacy_owner: String = master
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = $1",
            &[&legacy],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        legacy_owner,
        app_users::GROUP,
        "the master's table is handed to the group"
    );
    pods.batch_execute(&format!(
        "ALTER TABLE {legacy} ADD COLUMN note text; \
         ALTER TYPE {legacy}_kind ADD VALUE 'c'; \
         CREATE OR REPLACE FUNCTION {legacy}_one() RETURNS int LANGUAGE sql AS 'SELECT 2'; \
         INSERT INTO {legacy} (body) VALUES ('after')"
    ))
    .await
    .unwrap();
    let seen: i64 = master
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = $1",
            &[&table],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 1, "the master sees the pods' table");
    assert!(
        login(app_users::USERS[0], "not-the-password")
            .await
            .is_err(),
        "a wrong password logs in"
    );

    // rotate-keys: the other user, from the version this execution staged.
    let token = apiary_core::naming::client_token(&["exec-rotate", APP_SECRET]);
    let deps = app_deps(
        &state,
        app_secrets(
            (app_users::USERS[0], first.clone()),
            Some((token.clone(), app_users::USERS[1], second.clone())),
        ),
    );
    let rotated = verifier::handle(&deps, event(true, "exec-rotate"))
        .await
        .unwrap();
    assert_eq!(rotated["username"], app_users::USERS[1], "{rotated}");
    assert_eq!(rotated["version_id"], token.as_str());
    let next = login(app_users::USERS[1], &second).await.unwrap();
    let rows: i64 = next
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "the new user reaches what the old one made");
    next.batch_execute(&format!("INSERT INTO {table} VALUES (2)"))
        .await
        .unwrap();
    assert!(
        login(app_users::USERS[0], &first).await.is_ok(),
        "the pods not yet restarted keep their user"
    );

    // A keys-only rotation staged nothing and applies nothing.
    let keys_only = json!({"action": "ensure-app-user", "deployment": NAME,
        "execution_id": "exec-keys-only",
        "options": {"store": "postgres", "rotation": true, "input": {"scope": "keys-check"}}});
    let unstaged = verifier::handle(&deps, keys_only).await.unwrap();
    assert_eq!(unstaged["verified"], Value::Null, "{unstaged}");
    assert_eq!(unstaged["username"], Value::Null, "{unstaged}");
    // The pods not all on the current versions: the stage step held the users back,
    // and so does this one.
    let mut held = event(true, "exec-held-back");
    held["options"]["pods"] = json!({"current": false, "verified": true,
        "detail": "pods read p1, current p2"});
    let held = verifier::handle(&deps, held).await.unwrap();
    assert_eq!(held["username"], Value::Null, "{held}");
    assert!(
        held["note"].as_str().unwrap().contains("pods read p1"),
        "{held}"
    );
    // A secrets rotation whose staged version does not show (yet): waited for, so the
    // version is never made current with a password no store has.
    let err = verifier::handle(&deps, event(true, "exec-not-staged-yet"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::NotReady, "{err}");
    assert!(err.to_string().contains(APP_SECRET), "{err}");

    // A secret edited to name the master user: refused before any connection.
    let deps = app_deps(&state, app_secrets(("apiary", "taken-over".into()), None));
    let err = verifier::handle(&deps, event(false, "exec-provision"))
        .await
        .unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    assert!(err.to_string().contains("names the user apiary"), "{err}");
    assert!(!err.to_string().contains("taken-over"), "{err}");
    assert!(admin().await.simple_query("SELECT 1").await.is_ok());

    pods.batch_execute(&format!(
        "DROP TABLE {table}; DROP TABLE {legacy}; DROP TYPE {legacy}_kind; \
         DROP FUNCTION {legacy}_one()"
    ))
    .await
    .unwrap();
}
