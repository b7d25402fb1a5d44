//! The Redis store against a real redis-server with TLS and AUTH (scripts/databases):
//! sentinel write and read, an absent sentinel, TLS required on both sides, and a
//! refused token reported without any secret.

mod support;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use verifier::redis_store::Redis;
use verifier::{Datastore, Sentinel, StoreError, Target};

#[tokio::test]
async fn a_sentinel_reads_back_and_an_unknown_one_is_absent() {
    let db = Redis::connect(&support::redis(), &support::trust())
        .await
        .unwrap();
    let sentinel = Sentinel::fresh();
    db.write_sentinel(&sentinel).await.unwrap();
    assert_eq!(
        db.read_sentinel(&sentinel.id).await.unwrap(),
        Some(sentinel.clone())
    );
    assert_eq!(db.read_sentinel("no-such-sentinel").await.unwrap(), None);
    let facts = db.facts().await.unwrap();
    assert!(facts.server_version.starts_with('7'), "{facts:?}");
    assert!(facts.counts["keys"] >= 1, "{facts:?}");
}

/// The server has no plaintext port at all (`port 0`); a plaintext client on its TLS
/// port gets no answer it can use.
#[tokio::test]
async fn the_server_refuses_plaintext() {
    let target = support::redis();
    let url = format!(
        "redis://:{}@{}:{}",
        target.password, target.host, target.port
    );
    let client = redis::Client::open(url).unwrap();
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let result = client
        .get_multiplexed_async_connection_with_config(&config)
        .await;
    assert!(result.is_err(), "a plaintext connection was accepted");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let (foreign, _dir) = support::foreign_trust();
    let err = Redis::connect(&support::redis(), &foreign)
        .await
        .err()
        .expect("an untrusted server must be refused");
    assert!(matches!(err, StoreError::Tls(_)), "{err:?}");
}

/// A plaintext Redis (it answers in RESP, not TLS) is refused during the handshake: the
/// token is never sent.
#[tokio::test]
async fn a_server_without_tls_is_refused_before_the_token() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut received = vec![0u8; 4096];
        let n = socket.read(&mut received).await.unwrap_or(0);
        received.truncate(n);
        let _ = socket.write_all(b"-ERR unknown command\r\n").await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut rest)).await;
        received.extend(rest);
        received
    });
    let target = Target {
        host: "127.0.0.1".into(),
        port,
        username: None,
        password: "token-never-sent".into(),
        database: None,
    };
    let err = Redis::connect(&target, &support::trust())
        .await
        .err()
        .expect("no TLS, no connection");
    assert!(matches!(err, StoreError::Tls(_)), "{err:?}");
    let received = server.await.unwrap();
    // A TLS ClientHello (a handshake record), never the AUTH command.
    assert_eq!(received.first(), Some(&0x16), "{received:?}");
    assert!(
        !String::from_utf8_lossy(&received).contains("token-never-sent"),
        "the token went out in clear"
    );
}

#[tokio::test]
async fn a_wrong_token_is_a_clear_error_without_the_secret() {
    let mut target = support::redis();
    let real = target.password.clone();
    target.password = "wrong-token-123".into();
    let err = Redis::connect(&target, &support::trust())
        .await
        .err()
        .expect("a wrong token must be refused");
    let StoreError::Auth(message) = &err else {
        panic!("expected an authentication error, got {err:?}");
    };
    assert!(message.contains("refused"), "{message}");
    let step_error = err
        .clone()
        .into_step_error(verifier::StoreKind::Redis, "redis.host");
    for text in [message.clone(), step_error.to_string()] {
        assert!(
            !text.contains("wrong-token-123") && !text.contains(&real),
            "{text}"
        );
    }
}
