//! Phone home: the signed status report a deployment sends to its vendor, outbound only.
//!
//! The report function builds a [`StatusReport`] from the state table on a schedule,
//! keeps it in the table's outbox under the next sequence number, and POSTs every kept
//! report, oldest first, to the endpoint the stack names (`PhoneHomeUrl`, HTTPS only).
//! Each request carries [`SIGNATURE_HEADER`]: an Ed25519 signature over the exact body,
//! and [`KEY_ID_HEADER`], naming the key. The private key is made once, at install, by
//! the bootstrap stack's `SigningKey` resource and kept in Secrets Manager under the
//! customer's key; its public key is in the stack's outputs and in every report, so the
//! vendor can pin it from the first.
//!
//! Delivery is in order and at least once: a report leaves the outbox only after the
//! endpoint answered 2xx, so a crash between the answer and the delete sends it again;
//! receivers keep the highest `seq` they accepted per deployment and drop any report at
//! or below it. A gap in `seq` is a report that was never made (a run that died between
//! numbering and keeping it) or that expired unsent after [`OUTBOX_DAYS`].
//!
//! Nothing but [`StatusReport`]'s fields leaves the account: no resource id, ARN,
//! address, secret or log line. The README lists the fields; a test keeps the two equal.

use std::collections::BTreeMap;
use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::naming::Layer;
use crate::outputs::{BACKUP_LEDGER_SLOT, RESTORE_TEST_REPORTED_SLOT};
use crate::store::{AlarmRecord, DeploymentRecord, JournalEntry};
use crate::{Error, Result};

pub const WORKFLOW: &str = "phone-home";
/// The body's `schema`: bumped only with a change a receiver must know of.
pub const SCHEMA: &str = "apiary.status/1";
/// The request header with the signature: base64 of Ed25519 over the exact body.
pub const SIGNATURE_HEADER: &str = "apiary-signature";
/// The request header naming the key that signed ([`key_id`]).
pub const KEY_ID_HEADER: &str = "apiary-key-id";
/// How long an undelivered report is kept (the state table's time to live removes it).
pub const OUTBOX_DAYS: i64 = 30;
/// `kind` of the secret's JSON, so that a secret holding anything else is never read as
/// a key.
pub const SECRET_KIND: &str = "apiary-report-signing-key";
/// The state-table slot with the public key the report function last signed with.
pub const KEY_SLOT: &str = "phone-home.key";

/// The report's signing key. Its `Debug` shows the key id only.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretText {
    kind: String,
    algorithm: String,
    /// The PKCS#8 document, base64.
    pkcs8: String,
    /// The public key, base64 (also derivable from `pkcs8`; kept for people reading it).
    public_key: String,
}

impl SigningKey {
    /// A new key from the system's random source.
    pub fn generate() -> Result<SigningKey> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| Error::fatal("generating an Ed25519 key failed"))?;
        SigningKey::from_pkcs8(document.as_ref())
    }

    fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|e| Error::fatal(format!("the signing key is not an Ed25519 key: {e}")))?;
        Ok(SigningKey {
            pair,
            pkcs8: pkcs8.to_vec(),
        })
    }

    /// The key from the secret's text, as [`SigningKey::to_secret`] wrote it; names
    /// `secret` (its id, never its value) in the error.
    pub fn from_secret(secret: &str, text: &str) -> Result<SigningKey> {
        let parsed: SecretText = serde_json::from_str(text).map_err(|_| {
            Error::fatal(format!(
                "secret {secret} does not hold an Apiary signing key (a JSON object with \
                 kind {SECRET_KIND:?})"
            ))
        })?;
        if parsed.kind != SECRET_KIND || parsed.algorithm != "ed25519" {
            return Err(Error::fatal(format!(
                "secret {secret} holds a {} {} key, not an {SECRET_KIND} ed25519 key",
                parsed.kind, parsed.algorithm
            )));
        }
        let pkcs8 = B64
            .decode(parsed.pkcs8.as_bytes())
            .map_err(|_| Error::fatal(format!("secret {secret}: pkcs8 is not base64")))?;
        SigningKey::from_pkcs8(&pkcs8)
    }

    /// The secret's text: JSON with the PKCS#8 document and the public key.
    pub fn to_secret(&self) -> String {
        serde_json::to_string(&SecretText {
            kind: SECRET_KIND.to_owned(),
            algorithm: "ed25519".to_owned(),
            pkcs8: B64.encode(&self.pkcs8),
            public_key: self.public_key(),
        })
        .expect("the secret's fields serialise")
    }

    /// The raw 32-byte public key, base64.
    pub fn public_key(&self) -> String {
        B64.encode(self.pair.public_key().as_ref())
    }

    pub fn key_id(&self) -> String {
        key_id(self.pair.public_key().as_ref())
    }

    /// The signature over `body`, base64: the [`SIGNATURE_HEADER`] value.
    pub fn sign(&self, body: &[u8]) -> String {
        B64.encode(self.pair.sign(body).as_ref())
    }
}

/// `ed25519:` and the first 16 hex digits of the public key's SHA-256: short, and
/// different for every key.
pub fn key_id(public_key: &[u8]) -> String {
    let digest = Sha256::digest(public_key);
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("ed25519:{hex}")
}

/// Whether `signature` (base64) is `public_key`'s (base64) over `body`: what a receiver
/// checks before it reads the body.
pub fn verify(public_key: &str, body: &[u8], signature: &str) -> bool {
    let (Ok(public_key), Ok(signature)) = (
        B64.decode(public_key.as_bytes()),
        B64.decode(signature.as_bytes()),
    ) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(body, &signature)
        .is_ok()
}

/// The report's body: every field that leaves the account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusReport {
    pub schema: String,
    pub deployment: String,
    /// 1, 2, 3, ... per deployment, in the order the reports were made.
    pub seq: u64,
    pub generated_at: DateTime<Utc>,
    /// The signing key: its id and the raw public key (base64), for pinning.
    pub key_id: String,
    pub public_key: String,
    pub versions: Versions,
    /// The deployment record's status (`READY`, `FAILED`, ...).
    pub status: String,
    /// The last journal entry of each layer provision builds, in build order.
    pub layers: Vec<LayerState>,
    pub backup: Option<BackupState>,
    pub restore_test: Option<RestoreTestState>,
    /// Alarms handle-alert last saw in a state other than OK, oldest first.
    pub open_alerts: Vec<OpenAlert>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Versions {
    /// The control plane's release.
    pub apiary: String,
    pub kubernetes: String,
    /// The image's name and tag or digest, without its registry and path (a private
    /// registry's host names the account).
    pub ingestion_image: String,
}

/// `<name>:<tag>` or `<name>@<digest>` of an image reference: what follows the last `/`.
pub fn image_reference(image: &str) -> &str {
    // Only a `/` before the digest counts: `sha256:...` has none, and a registry's port
    // comes before the path.
    let path_end = image.find('@').unwrap_or(image.len());
    let start = image[..path_end].rfind('/').map_or(0, |at| at + 1);
    &image[start..]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayerState {
    pub layer: String,
    pub action: String,
    /// `succeeded`, `failed`, `unchanged`, `not-ready`, ...
    pub outcome: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupState {
    /// When the backup's ledger was last written.
    pub at: Option<DateTime<Utc>>,
    /// Per store (`postgres`, ...), per region: the newest restorable point's time and
    /// age when the ledger was written; `null` for a region that has none.
    pub stores: BTreeMap<String, BTreeMap<String, Option<RestorePoint>>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestorePoint {
    pub restorable_at: Option<DateTime<Utc>>,
    pub age_seconds: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreTestState {
    pub at: Option<DateTime<Utc>>,
    /// `null`: the data could not be checked (locally, where the stores have no server).
    pub passed: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAlert {
    pub alarm: String,
    pub state: String,
    pub since: DateTime<Utc>,
}

/// What the state table holds about a deployment, as the report reads it.
pub struct Sources<'a> {
    pub record: &'a DeploymentRecord,
    pub journal: &'a [JournalEntry],
    pub outputs: &'a BTreeMap<String, Value>,
    pub alarms: &'a [AlarmRecord],
}

fn time(value: &Value) -> Option<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

impl StatusReport {
    /// The report numbered `seq`, built from `sources` and nothing else.
    pub fn build(
        sources: &Sources<'_>,
        seq: u64,
        key: &SigningKey,
        release: &str,
        now: DateTime<Utc>,
    ) -> StatusReport {
        let record = sources.record;
        let layers = Layer::ALL
            .iter()
            .filter_map(|layer| {
                sources
                    .journal
                    .iter()
                    .rev()
                    .find(|e| e.step == layer.as_str())
                    .map(|e| LayerState {
                        layer: e.step.clone(),
                        action: e.action.clone(),
                        outcome: e.outcome.clone(),
                        at: e.at,
                    })
            })
            .collect();
        let backup = sources.outputs.get(BACKUP_LEDGER_SLOT).map(|ledger| {
            let mut stores = BTreeMap::new();
            for (store, regions) in ledger["stores"].as_object().into_iter().flatten() {
                let Some(regions) = regions.as_object() else {
                    continue;
                };
                // A store the ledger skipped (not enabled) has a reason instead of regions.
                if regions.contains_key("skipped") {
                    continue;
                }
                let points = regions
                    .iter()
                    .map(|(region, point)| {
                        let point = point["snapshot_id"].is_string().then(|| RestorePoint {
                            restorable_at: time(&point["restorable_at"]),
                            age_seconds: point["age_seconds"].as_i64(),
                        });
                        (region.clone(), point)
                    })
                    .collect();
                stores.insert(store.clone(), points);
            }
            BackupState {
                at: time(&ledger["updated_at"]),
                stores,
            }
        });
        let restore_test =
            sources
                .outputs
                .get(RESTORE_TEST_REPORTED_SLOT)
                .map(|r| RestoreTestState {
                    at: time(&r["reported_at"]),
                    passed: r["passed"].as_bool(),
                });
        let mut open_alerts: Vec<OpenAlert> = sources
            .alarms
            .iter()
            .filter(|a| a.state != "OK")
            .map(|a| OpenAlert {
                alarm: a.name.clone(),
                state: a.state.clone(),
                since: a.changed_at,
            })
            .collect();
        open_alerts.sort_by_key(|a| a.since);
        StatusReport {
            schema: SCHEMA.to_owned(),
            deployment: record.name.clone(),
            seq,
            generated_at: now,
            key_id: key.key_id(),
            public_key: key.public_key(),
            versions: Versions {
                apiary: release.to_owned(),
                kubernetes: record.spec.cluster.version.clone(),
                ingestion_image: image_reference(&record.spec.workloads.ingestion_image).to_owned(),
            },
            status: record.status.as_str().to_owned(),
            layers,
            backup,
            restore_test,
            open_alerts,
        }
    }

    /// The exact bytes sent and signed.
    pub fn body(&self) -> String {
        serde_json::to_string(self).expect("a report serialises")
    }
}

/// The endpoint reports go to: an `https://` URL with a host, nothing else (no user
/// info, no fragment). `field` names where it came from in the error.
pub fn endpoint(url: &str, field: &str) -> Result<String> {
    // The URL is never echoed: its query may carry a token.
    let url = url.trim();
    let Some(rest) = url.strip_prefix("https://") else {
        return Err(Error::invalid_input(format!(
            "{field} must be an https:// URL: reports are sent over TLS only"
        )));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || url.contains('#') {
        return Err(Error::invalid_input(format!(
            "{field} must name a host, with no user name and no fragment"
        )));
    }
    Ok(url.to_owned())
}

#[cfg(test)]
mod tests;
