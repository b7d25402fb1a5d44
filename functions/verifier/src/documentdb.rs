//! DocumentDB through the MongoDB wire protocol over TLS (the `mongodb` driver on
//! rustls): the sentinel is a document of `apiary.sentinels`; the facts are the server
//! version, the number of databases and of sentinels.
//!
//! The pods' users ([`app_users`]) are users of the `admin` database with `readWrite` on
//! the service's database (DocumentDB keeps every user in `admin`).
//!
//! DocumentDB differs from MongoDB where it matters here: no retryable writes (the
//! driver's default would fail every write), and the cluster endpoint is the one host to
//! talk to (direct connection; the replica-set members' own names are not needed).

use std::time::Duration;

use apiary_core::outputs::app_users;
use async_trait::async_trait;
use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, Credential, ServerAddress, Tls, TlsOptions};
use mongodb::{Client, Collection};

use crate::datastore::{Datastore, Facts, Sentinel, StoreError, Target, chain, scrub};
use crate::tls::Trust;

const DATABASE: &str = "apiary";
const COLLECTION: &str = "sentinels";
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct DocumentDb {
    client: Client,
    target: Target,
}

impl DocumentDb {
    /// Builds the client and checks the connection (TLS handshake, login) with a `ping`,
    /// so connection failures surface here rather than in the first sentinel call.
    pub async fn connect(target: &Target, trust: &Trust) -> Result<Self, StoreError> {
        let mut options = ClientOptions::default();
        options.hosts = vec![ServerAddress::Tcp {
            host: target.host.clone(),
            port: Some(target.port),
        }];
        options.tls = Some(Tls::Enabled(
            TlsOptions::builder()
                .ca_file_path(Some(trust.path().to_path_buf()))
                .build(),
        ));
        options.direct_connection = Some(true);
        options.retry_writes = Some(false);
        options.connect_timeout = Some(TIMEOUT);
        options.server_selection_timeout = Some(TIMEOUT);
        options.app_name = Some("apiary-verifier".to_owned());
        if let Some(username) = &target.username {
            options.credential = Some(
                Credential::builder()
                    .username(username.clone())
                    .password(target.password.clone())
                    .source("admin".to_owned())
                    .build(),
            );
        }
        let client = Client::with_options(options).map_err(|e| {
            StoreError::Config(format!("DocumentDB client settings: {}", chain(&e)))
        })?;
        client
            .database("admin")
            .run_command(doc! {"ping": 1})
            .await
            .map_err(|e| classify(&e, target))?;
        Ok(DocumentDb {
            client,
            target: target.clone(),
        })
    }

    fn sentinels(&self) -> Collection<Document> {
        self.client.database(DATABASE).collection(COLLECTION)
    }

    fn error(&self, err: mongodb::error::Error) -> StoreError {
        classify(&err, &self.target)
    }
}

fn classify(err: &mongodb::error::Error, target: &Target) -> StoreError {
    use mongodb::error::ErrorKind;
    let text = scrub(chain(err), target);
    let lower = text.to_lowercase();
    match err.kind.as_ref() {
        ErrorKind::Authentication { .. } => StoreError::Auth(format!(
            "user {} was refused: check the secret the step read",
            target.username.as_deref().unwrap_or_default()
        )),
        ErrorKind::Command(command) if command.code == 18 => StoreError::Auth(format!(
            "user {} was refused ({}): check the secret the step read",
            target.username.as_deref().unwrap_or_default(),
            command.code_name
        )),
        _ if lower.contains("authentication failed") => StoreError::Auth(format!(
            "user {} was refused: check the secret the step read",
            target.username.as_deref().unwrap_or_default()
        )),
        _ if lower.contains("certificate")
            || lower.contains("tls")
            || lower.contains("handshake")
            || lower.contains("invalid content type")
            || lower.contains("corrupt message") =>
        {
            StoreError::Tls(text)
        }
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. } => StoreError::Unreachable(text),
        _ => StoreError::Query(text),
    }
}

#[async_trait]
impl Datastore for DocumentDb {
    async fn write_sentinel(&self, sentinel: &Sentinel) -> Result<(), StoreError> {
        self.sentinels()
            .replace_one(
                doc! {"_id": &sentinel.id},
                doc! {"_id": &sentinel.id, "written_at": &sentinel.written_at},
            )
            .upsert(true)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    async fn read_sentinel(&self, id: &str) -> Result<Option<Sentinel>, StoreError> {
        let found = self
            .sentinels()
            .find_one(doc! {"_id": id})
            .await
            .map_err(|e| self.error(e))?;
        Ok(found.map(|document| Sentinel {
            id: id.to_owned(),
            written_at: document
                .get_str("written_at")
                .unwrap_or_default()
                .to_owned(),
        }))
    }

    async fn ensure_app_user(&self, username: &str, password: &str) -> Result<(), StoreError> {
        let admin = self.client.database("admin");
        let roles = vec![doc! {"role": "readWrite", "db": app_users::DATABASE}];
        let found = admin
            .run_command(doc! {"usersInfo": username})
            .await
            .map_err(|e| self.error(e))?;
        let exists = found
            .get_array("users")
            .is_ok_and(|users| !users.is_empty());
        let command = if exists {
            doc! {"updateUser": username, "pwd": password, "roles": roles}
        } else {
            doc! {"createUser": username, "pwd": password, "roles": roles}
        };
        admin.run_command(command).await.map_err(|e| {
            let mut err = self.error(e);
            if let StoreError::Query(text) = &mut err {
                *text = text.replace(password, "<redacted>");
            }
            err
        })?;
        Ok(())
    }

    async fn check_app_user(&self, username: &str) -> Result<(), StoreError> {
        let status = self
            .client
            .database("admin")
            .run_command(doc! {"connectionStatus": 1, "showPrivileges": false})
            .await
            .map_err(|e| self.error(e))?;
        let users: Vec<String> = status
            .get_document("authInfo")
            .and_then(|info| info.get_array("authenticatedUsers"))
            .map(|users| {
                users
                    .iter()
                    .filter_map(|u| u.as_document()?.get_str("user").ok().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if !users.iter().any(|u| u == username) {
            return Err(StoreError::Query(format!(
                "the connection is authenticated as [{}], not {username}",
                users.join(", ")
            )));
        }
        Ok(())
    }

    async fn facts(&self) -> Result<Facts, StoreError> {
        let info = self
            .client
            .database("admin")
            .run_command(doc! {"buildInfo": 1})
            .await
            .map_err(|e| self.error(e))?;
        let databases = self
            .client
            .list_database_names()
            .await
            .map_err(|e| self.error(e))?;
        let sentinels = self
            .sentinels()
            .estimated_document_count()
            .await
            .map_err(|e| self.error(e))?;
        Ok(Facts {
            server_version: info.get_str("version").unwrap_or_default().to_owned(),
            schema_version: None,
            counts: [
                ("databases".to_owned(), databases.len() as i64),
                (
                    "sentinels".to_owned(),
                    i64::try_from(sentinels).unwrap_or(i64::MAX),
                ),
            ]
            .into(),
        })
    }
}
