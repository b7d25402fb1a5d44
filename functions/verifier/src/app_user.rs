//! `ensure-app-user`: the ingestion pods' own database user, made in the store from
//! inside the VPC (only the verifier reaches the stores).
//!
//! The databases layer keeps the user's name and a generated password in the store's app
//! secret (`layers.databases.<store>.app_secret_arn`, see
//! [`apiary_core::outputs::app_users`]). This step logs in with the master secret,
//! creates that user or sets its password to the secret's (so it is idempotent: a retry,
//! or a provision run again, sets the same password), then logs in as the user and
//! checks its privileges. The pods read only the app secret; the master user stays the
//! operator's and the verifier's.
//!
//! With `options.rotation: true` (rotate-keys) it applies the secret's version that this
//! execution staged (its id is the execution's request token, as the operate function
//! made it) instead of the current one, before that version becomes current: the pods'
//! next restart reads a password that already works. The step reads the workflow's input
//! (`options.input`): a run whose scope rotates no secret staged nothing, and this step
//! does nothing. One whose scope rotates secrets must find its staged version: one not
//! found yet is `Apiary.NotReady` (retried; Secrets Manager is eventually consistent and
//! the version was put by another function moments ago), never a success, because the
//! next step makes that version current and a version whose password no store has would
//! lock the pods out at their restart.
//!
//! The secret must name one of the two app users: a secret edited to name the master
//! user, or any other, is refused before any connection, so this step can never change
//! the master's password.

use apiary_core::inputs::rotate_keys::{self, RotateKeysInput};
use apiary_core::naming::client_token;
use apiary_core::outputs::app_users;
use apiary_core::step::StepContext;
use apiary_core::{Error, Result};
use serde::Serialize;
use serde_json::Value;

use crate::datastore::StoreKind;
use crate::{Deps, Mode, VerifierAction, live_endpoint, secrets};

/// What a locally run `ensure-app-user` reports.
pub const LOCAL_APP_USER_NOTE: &str = "the pods' database user is made from inside the VPC: \
     not made locally, where the emulated database has no server behind it";

/// What `ensure-app-user` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppUserReport {
    pub store: StoreKind,
    /// The login user the secret names (`null` when nothing was done).
    pub username: Option<String>,
    /// `true`: the user has the secret's password, logged in and holds the app's
    /// privileges; `null`: nothing was checked (locally, or nothing to apply).
    pub verified: Option<bool>,
    /// What was checked, in order.
    pub checked: Vec<String>,
    /// The rotation's staged version that was applied (`null`: the current one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl AppUserReport {
    fn nothing(store: StoreKind, note: String) -> Self {
        AppUserReport {
            store,
            username: None,
            verified: None,
            checked: Vec::new(),
            version_id: None,
            note: Some(note),
        }
    }

    pub fn detail(&self) -> String {
        match (&self.username, &self.note) {
            (Some(user), _) => format!(
                "{}: the pods' user {user} logs in with its secret's {} password",
                self.store,
                if self.version_id.is_some() {
                    "new"
                } else {
                    "current"
                }
            ),
            (None, Some(note)) => format!("{}: {note}", self.store),
            (None, None) => format!("{}: nothing done", self.store),
        }
    }
}

/// What `ensure-app-user` checks in `store`, in order. PostgreSQL's check reads the
/// user's privileges from its own session; DocumentDB's only which user the session is
/// authenticated as (the `readWrite` role is granted by the same `createUser` or
/// `updateUser`).
fn checked_for(store: StoreKind) -> [&'static str; 5] {
    match store {
        StoreKind::Postgres => ["tls", "login-master", "user", "login-app", "privileges"],
        _ => [
            "tls",
            "login-master",
            "user-with-role",
            "login-app",
            "authenticated-as",
        ],
    }
}

/// `options.rotation`: absent is `false`; anything but a boolean is refused, named.
fn rotation_option(options: &serde_json::Map<String, Value>) -> Result<bool> {
    match options.get("rotation") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(Error::invalid_input(format!(
            "step input field `options.rotation`: expected true or false, got {other}"
        ))),
    }
}

impl Deps {
    pub(crate) async fn ensure_app_user(
        &self,
        step: &StepContext<'_, VerifierAction>,
        store: StoreKind,
    ) -> Result<AppUserReport> {
        if store == StoreKind::Redis {
            return Err(Error::invalid_input(
                "step input field `options.store`: ensure-app-user is for postgres or \
                 documentdb; Redis authenticates with its AUTH token",
            ));
        }
        let rotation = rotation_option(&step.options)?;
        if rotation {
            // Without an input, the default scope: it rotates secrets, so a missing
            // version is waited for, never taken as nothing to do.
            let input: RotateKeysInput =
                apiary_core::inputs::from_options(rotate_keys::WORKFLOW, &step.options)?;
            if !input.secrets() {
                return Ok(AppUserReport::nothing(
                    store,
                    "skipped: the input's scope rotates no secret".into(),
                ));
            }
            // The stage step skipped too, for the same reason: nothing was staged.
            if let Some(reason) = rotate_keys::users_held_back(&step.options)? {
                return Ok(AppUserReport::nothing(store, reason));
            }
        }
        let (secrets, connector) = match &self.mode {
            Mode::Local => return Ok(AppUserReport::nothing(store, LOCAL_APP_USER_NOTE.into())),
            Mode::Live { secrets, connector } => (secrets, connector),
        };
        let Some(endpoint) = live_endpoint(step, store)? else {
            return Ok(AppUserReport::nothing(
                store,
                format!("{store} has no endpoint: the spec turns it off or it was not built"),
            ));
        };
        let app_secret = endpoint
            .app_secret_arn
            .clone()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "layers.databases.{store}.app_secret_arn is missing: the databases step \
                     makes the pods' credentials secret; run provision to make it"
                ))
            })?;
        let version = rotation.then(|| client_token(&[&step.execution_id, &app_secret]));
        let Some(text) = secrets::read_version(secrets, &app_secret, version.as_deref()).await?
        else {
            return Err(Error::NotReady {
                resource: app_secret.clone(),
                detail: format!(
                    "the version {} this execution's app-users-stage step put does not show \
                     yet; its password is set in the store only once it does",
                    version.as_deref().unwrap_or_default()
                ),
            });
        };
        let app =
            secrets::target_from_secret(store, &app_secret, &text, &endpoint.host, endpoint.port)?;
        let username = app
            .username
            .clone()
            .filter(|u| app_users::USERS.contains(&u.as_str()))
            .ok_or_else(|| {
                Error::fatal(format!(
                    "secret {app_secret} names the user {}, not one of the pods' users ({}): \
                     put one of them back in its `username`; this step never changes another \
                     user's password",
                    app.username.as_deref().unwrap_or("(none)"),
                    app_users::USERS.join(", ")
                ))
            })?;
        let master = secrets::read_target(
            secrets,
            store,
            &endpoint.secret_arn,
            &endpoint.host,
            endpoint.port,
        )
        .await?;
        let host = endpoint.host.as_str();
        let admin = connector
            .connect(store, &master)
            .await
            .map_err(|e| e.into_step_error(store, host))?;
        admin
            .ensure_app_user(&username, &app.password)
            .await
            .map_err(|e| e.into_step_error(store, host))?;
        drop(admin);
        let db = connector
            .connect(store, &app)
            .await
            .map_err(|e| e.into_step_error(store, host))?;
        db.check_app_user(&username)
            .await
            .map_err(|e| e.into_step_error(store, host))?;
        tracing::info!(%store, user = %username, rotation, "the pods' user is set");
        Ok(AppUserReport {
            store,
            username: Some(username),
            verified: Some(true),
            checked: checked_for(store).map(str::to_owned).to_vec(),
            version_id: version,
            note: None,
        })
    }
}
