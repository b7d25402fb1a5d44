//! The DocumentDB store against a fake server that speaks the MongoDB wire protocol over
//! TLS (support/wire.rs): no MongoDB or DocumentDB server can be installed here.

mod support;
#[path = "support/wire.rs"]
mod wire;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use verifier::documentdb::DocumentDb;
use verifier::tls::Trust;
use verifier::{Datastore, Sentinel, StoreError, Target};

fn target(port: u16, username: Option<&str>, password: &str) -> Target {
    Target {
        host: "127.0.0.1".into(),
        port,
        username: username.map(str::to_owned),
        password: password.into(),
        database: None,
    }
}

fn trust_of(fake: &wire::FakeDocumentDb) -> (Trust, support::tempdir::Dir) {
    let dir = support::tempdir::Dir::new("docdb-ca");
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, &fake.ca_pem).unwrap();
    (Trust::from_file(&path).unwrap(), dir)
}

#[tokio::test]
async fn a_sentinel_reads_back_and_an_unknown_one_is_absent() {
    let fake = wire::FakeDocumentDb::start().await;
    let (trust, _dir) = trust_of(&fake);
    let db = DocumentDb::connect(&target(fake.port, None, ""), &trust)
        .await
        .unwrap();
    let sentinel = Sentinel::fresh();
    db.write_sentinel(&sentinel).await.unwrap();
    db.write_sentinel(&sentinel).await.unwrap();
    assert_eq!(
        db.read_sentinel(&sentinel.id).await.unwrap(),
        Some(sentinel.clone())
    );
    assert_eq!(db.read_sentinel("no-such-sentinel").await.unwrap(), None);
    let facts = db.facts().await.unwrap();
    assert_eq!(facts.server_version, "5.0.0");
    assert_eq!(facts.counts["sentinels"], 1);
    // Stored as a document keyed by the sentinel id.
    let stored = fake.documents.lock().unwrap()[&sentinel.id].clone();
    assert_eq!(stored.get_str("written_at").unwrap(), sentinel.written_at);
    // Upserts without retryable writes (DocumentDB has none): no txnNumber, plain update.
    assert!(fake.commands.lock().unwrap().contains(&"update".to_owned()));
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let fake = wire::FakeDocumentDb::start().await;
    let (foreign, _dir) = support::foreign_trust();
    let err = DocumentDb::connect(&target(fake.port, None, ""), &foreign)
        .await
        .err()
        .expect("an untrusted server must be refused");
    assert!(matches!(err, StoreError::Tls(_)), "{err:?}");
    assert!(fake.commands.lock().unwrap().is_empty());
}

/// A server that answers in plaintext is refused during the handshake.
#[tokio::test]
async fn a_server_without_tls_is_refused() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let first_bytes = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Ok(Ok((mut socket, _))) =
            tokio::time::timeout(Duration::from_secs(15), listener.accept()).await
        {
            let mut buffer = vec![0u8; 1024];
            let n = socket.read(&mut buffer).await.unwrap_or(0);
            if n > 0 {
                seen.push(buffer[0]);
            }
            // A plaintext wire-protocol header where a TLS record should be.
            let _ = socket.write_all(&[0x30, 0, 0, 0, 1, 0, 0, 0]).await;
        }
        seen
    });
    let fake = wire::FakeDocumentDb::start().await;
    let (trust, _dir) = trust_of(&fake);
    let err = DocumentDb::connect(&target(port, Some("apiary"), "pw-never-sent"), &trust)
        .await
        .err()
        .expect("no TLS, no connection");
    assert!(matches!(err, StoreError::Tls(_)), "{err:?}");
    let seen = first_bytes.await.unwrap();
    assert!(
        !seen.is_empty() && seen.iter().all(|b| *b == 0x16),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_wrong_password_is_a_clear_error_without_the_secret() {
    let fake = wire::FakeDocumentDb::start().await;
    let (trust, _dir) = trust_of(&fake);
    let err = DocumentDb::connect(&target(fake.port, Some("apiary"), "wrong-pw-123"), &trust)
        .await
        .err()
        .expect("a refused login must fail");
    let StoreError::Auth(message) = &err else {
        panic!("expected an authentication error, got {err:?}");
    };
    assert!(
        message.contains("apiary") && message.contains("refused"),
        "{message}"
    );
    let step_error = err
        .clone()
        .into_step_error(verifier::StoreKind::DocumentDb, "docdb.host");
    assert!(
        !step_error.to_string().contains("wrong-pw-123"),
        "{step_error}"
    );
    assert!(
        fake.commands
            .lock()
            .unwrap()
            .iter()
            .any(|c| c == "saslStart")
    );
}

/// The pods' user: created with readWrite on the service's database, and on a second
/// run its password set again (updateUser), never a second createUser; the password is
/// sent only in those two commands.
#[tokio::test]
async fn the_pods_user_is_created_then_updated() {
    use apiary_core::outputs::app_users;

    let fake = wire::FakeDocumentDb::start().await;
    let (trust, _dir) = trust_of(&fake);
    let db = DocumentDb::connect(&target(fake.port, None, ""), &trust)
        .await
        .unwrap();
    db.ensure_app_user(app_users::USERS[0], "first-password")
        .await
        .unwrap();
    db.ensure_app_user(app_users::USERS[0], "second-password")
        .await
        .unwrap();
    let user = fake.users.lock().unwrap()[app_users::USERS[0]].clone();
    assert_eq!(user.get_str("updateUser").unwrap(), app_users::USERS[0]);
    assert_eq!(user.get_str("pwd").unwrap(), "second-password");
    let role = user.get_array("roles").unwrap()[0]
        .as_document()
        .unwrap()
        .clone();
    assert_eq!(role.get_str("role").unwrap(), "readWrite");
    assert_eq!(role.get_str("db").unwrap(), app_users::DATABASE);
    let commands = fake.commands.lock().unwrap().clone();
    let made: Vec<&String> = commands.iter().filter(|c| c.ends_with("User")).collect();
    assert_eq!(made, ["createUser", "updateUser"], "{commands:?}");
    // The login check names who the session is, and refuses anyone else.
    let err = db.check_app_user(app_users::USERS[0]).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("authenticated as [], not {}", app_users::USERS[0])),
        "{err}"
    );
}
