//! A fake DocumentDB: a TLS server that speaks the MongoDB wire protocol (OP_MSG, the
//! only opcode the driver sends) and answers the few commands the verifier uses. No
//! MongoDB or DocumentDB server can be installed from the package registries, so the
//! DocumentDB client is tested against this instead. It accepts unauthenticated clients
//! and refuses every SASL login (it cannot check a SCRAM proof), which is what the
//! wrong-password test needs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use mongodb::bson::{Bson, Document, doc};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

const OP_MSG: i32 = 2013;

pub struct FakeDocumentDb {
    pub port: u16,
    /// The PEM of the CA that signed the server's certificate.
    pub ca_pem: String,
    pub documents: Arc<Mutex<BTreeMap<String, Document>>>,
    /// Users made with createUser and changed with updateUser, by name: their last
    /// command document.
    pub users: Arc<Mutex<BTreeMap<String, Document>>>,
    /// Every command name received, in order.
    pub commands: Arc<Mutex<Vec<String>>>,
}

impl FakeDocumentDb {
    pub async fn start() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Fake DocumentDB CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server_params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(server_cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let documents = Arc::new(Mutex::new(BTreeMap::new()));
        let users = Arc::new(Mutex::new(BTreeMap::new()));
        let commands = Arc::new(Mutex::new(Vec::new()));
        let state = State {
            documents: documents.clone(),
            users: users.clone(),
        };
        let seen = commands.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (acceptor, state, seen) = (acceptor.clone(), state.clone(), seen.clone());
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(socket).await {
                        let _ = serve(stream, state, seen).await;
                    }
                });
            }
        });
        FakeDocumentDb {
            port,
            ca_pem: ca_cert.pem(),
            documents,
            users,
            commands,
        }
    }
}

/// What the server holds, shared by its connections.
#[derive(Clone)]
struct State {
    documents: Arc<Mutex<BTreeMap<String, Document>>>,
    users: Arc<Mutex<BTreeMap<String, Document>>>,
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    state: State,
    commands: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let mut next_id: i32 = 1;
    loop {
        let mut header = [0u8; 16];
        stream.read_exact(&mut header).await?;
        let length = i32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
        let request_id = i32::from_le_bytes(header[4..8].try_into().unwrap());
        let opcode = i32::from_le_bytes(header[12..16].try_into().unwrap());
        let mut payload = vec![0u8; length - 16];
        stream.read_exact(&mut payload).await?;
        assert_eq!(opcode, OP_MSG, "the driver sends only OP_MSG");
        let body = parse_op_msg(&payload);
        let name = body.keys().next().cloned().unwrap_or_default();
        commands.lock().unwrap().push(name.clone());
        let reply = answer(&name, &body, &state);
        let mut bytes = Vec::new();
        reply.to_writer(&mut bytes).unwrap();
        let total = (16 + 4 + 1 + bytes.len()) as i32;
        let mut message = Vec::with_capacity(total as usize);
        message.extend(total.to_le_bytes());
        message.extend(next_id.to_le_bytes());
        message.extend(request_id.to_le_bytes());
        message.extend(OP_MSG.to_le_bytes());
        message.extend(0u32.to_le_bytes());
        message.push(0);
        message.extend(bytes);
        next_id += 1;
        stream.write_all(&message).await?;
    }
}

/// The command document: the body section, with document sequences (kind 1) folded in
/// as arrays under their identifiers.
fn parse_op_msg(payload: &[u8]) -> Document {
    let flags = u32::from_le_bytes(payload[0..4].try_into().unwrap());
    let end = payload.len() - if flags & 1 == 1 { 4 } else { 0 };
    let mut pos = 4;
    let mut body = Document::new();
    let mut sequences = Vec::new();
    while pos < end {
        let kind = payload[pos];
        pos += 1;
        let size = i32::from_le_bytes(payload[pos..pos + 4].try_into().unwrap()) as usize;
        match kind {
            0 => body = Document::from_reader(&payload[pos..pos + size]).unwrap(),
            1 => {
                let section = &payload[pos + 4..pos + size];
                let nul = section.iter().position(|b| *b == 0).unwrap();
                let identifier = String::from_utf8(section[..nul].to_vec()).unwrap();
                let mut docs = Vec::new();
                let mut at = nul + 1;
                while at < section.len() {
                    let len = i32::from_le_bytes(section[at..at + 4].try_into().unwrap()) as usize;
                    docs.push(Bson::Document(
                        Document::from_reader(&section[at..at + len]).unwrap(),
                    ));
                    at += len;
                }
                sequences.push((identifier, docs));
            }
            other => panic!("unknown OP_MSG section kind {other}"),
        }
        pos += size;
    }
    for (identifier, docs) in sequences {
        body.insert(identifier, docs);
    }
    body
}

fn answer(name: &str, body: &Document, state: &State) -> Document {
    let documents = &state.documents;
    match name {
        "isMaster" | "ismaster" | "hello" => {
            let mut reply = doc! {
                "ismaster": true, "isWritablePrimary": true, "helloOk": true,
                "maxBsonObjectSize": 16_777_216, "maxMessageSizeBytes": 48_000_000,
                "maxWriteBatchSize": 100_000, "localTime": mongodb::bson::DateTime::now(),
                "logicalSessionTimeoutMinutes": 30, "connectionId": 1,
                "minWireVersion": 0, "maxWireVersion": 13, "readOnly": false, "ok": 1.0,
            };
            if body.contains_key("saslSupportedMechs") {
                reply.insert("saslSupportedMechs", vec!["SCRAM-SHA-1"]);
            }
            reply
        }
        "saslStart" | "saslContinue" | "authenticate" => doc! {
            "ok": 0.0, "errmsg": "Authentication failed.", "code": 18,
            "codeName": "AuthenticationFailed",
        },
        "ping" | "endSessions" => doc! {"ok": 1.0},
        "buildInfo" | "buildinfo" => doc! {"version": "5.0.0", "ok": 1.0},
        "listDatabases" => doc! {
            "databases": [{"name": "apiary", "sizeOnDisk": 8192.0, "empty": false}],
            "totalSize": 8192.0, "ok": 1.0,
        },
        "update" => {
            let update = body.get_array("updates").unwrap()[0]
                .as_document()
                .unwrap()
                .clone();
            let id = update
                .get_document("q")
                .unwrap()
                .get_str("_id")
                .unwrap()
                .to_owned();
            let replacement = update.get_document("u").unwrap().clone();
            let existed = documents
                .lock()
                .unwrap()
                .insert(id.clone(), replacement)
                .is_some();
            if existed {
                doc! {"n": 1, "nModified": 1, "ok": 1.0}
            } else {
                doc! {"n": 1, "nModified": 0, "upserted": [{"index": 0, "_id": id}], "ok": 1.0}
            }
        }
        "find" => {
            let filter = body.get_document("filter").cloned().unwrap_or_default();
            let found: Vec<Document> = match filter.get_str("_id") {
                Ok(id) => documents
                    .lock()
                    .unwrap()
                    .get(id)
                    .cloned()
                    .into_iter()
                    .collect(),
                Err(_) => documents.lock().unwrap().values().cloned().collect(),
            };
            doc! {"cursor": {"firstBatch": found, "id": 0i64, "ns": "apiary.sentinels"}, "ok": 1.0}
        }
        "count" => doc! {"n": documents.lock().unwrap().len() as i32, "ok": 1.0},
        "usersInfo" => {
            let name = body.get_str("usersInfo").unwrap_or_default();
            let found: Vec<Document> = state
                .users
                .lock()
                .unwrap()
                .get(name)
                .map(|_| doc! {"user": name, "db": "admin"})
                .into_iter()
                .collect();
            doc! {"users": found, "ok": 1.0}
        }
        // No authentication here: the session is nobody's.
        "connectionStatus" => doc! {
            "authInfo": {"authenticatedUsers": [], "authenticatedUserRoles": []}, "ok": 1.0,
        },
        "createUser" | "updateUser" => {
            let name = body.get_str(name).unwrap_or_default().to_owned();
            let mut users = state.users.lock().unwrap();
            match (name.as_str(), users.contains_key(&name)) {
                (_, true) if body.contains_key("createUser") => doc! {
                    "ok": 0.0, "errmsg": format!("User {name}@admin already exists"),
                    "code": 51003, "codeName": "Location51003",
                },
                (_, false) if body.contains_key("updateUser") => doc! {
                    "ok": 0.0, "errmsg": format!("User {name}@admin not found"),
                    "code": 11, "codeName": "UserNotFound",
                },
                _ => {
                    users.insert(name, body.clone());
                    doc! {"ok": 1.0}
                }
            }
        }
        other => doc! {
            "ok": 0.0, "errmsg": format!("no such command: '{other}'"), "code": 59,
            "codeName": "CommandNotFound",
        },
    }
}
