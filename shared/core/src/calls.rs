//! Which AWS operations each function performs, measured rather than claimed.
//!
//! Every SDK client in the project is built with [`client!`](crate::client) (or carries
//! [`CallLog`] some other way, like [`crate::aws::s3_client`]), so this interceptor sees
//! each operation before it is sent. Recording is off unless a test calls [`start`]; in a
//! Lambda the interceptor costs one atomic load per call.
//!
//! Calls are attributed to whoever is running: [`attributed`] runs a future with a
//! caller name (the local runner wraps each function's handler in it), and the SDK runs
//! its interceptors inside the calling task, so the name reaches every call the handler
//! makes, including those through the shared state store. The bootstrap template's IAM
//! policies are checked against these records (`tests/iam.rs`).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
    FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

/// The caller name of calls made outside [`attributed`].
pub const UNATTRIBUTED: &str = "unattributed";

static RECORDING: AtomicBool = AtomicBool::new(false);
static CALLS: Mutex<BTreeSet<Call>> = Mutex::new(BTreeSet::new());
static EXCHANGES: Mutex<Vec<Exchange>> = Mutex::new(Vec::new());

/// The most of a request or response body an [`Exchange`] keeps.
const BODY_LIMIT: usize = 64 * 1024;

/// Who is calling: the function, and the deployment it serves when the caller knows it.
#[derive(Debug, Clone)]
struct Attribution {
    caller: &'static str,
    deployment: Option<Arc<str>>,
}

tokio::task_local! {
    static CALLER: Attribution;
}

fn current() -> (&'static str, Option<String>) {
    CALLER
        .try_with(|a| (a.caller, a.deployment.as_deref().map(str::to_owned)))
        .unwrap_or((UNATTRIBUTED, None))
}

/// One AWS operation as the SDK names it, e.g. `("network", "EC2", "CreateVpc")`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Call {
    pub caller: String,
    /// The SDK's service id: `EC2`, `S3`, `DocDB`, `Secrets Manager`, ...
    pub service: String,
    pub operation: String,
}

/// One call as sent and answered, for checking which resource it named and under which
/// conditions (`tests/iam.rs` evaluates each against the caller's policy). Bodies are
/// kept up to 64 KiB; a streaming body (an S3 object) is not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub call: Call,
    /// The deployment the caller serves, when it said ([`attributed_for`]).
    pub deployment: Option<String>,
    /// The region the request was signed for (its SigV4 credential scope).
    pub region: Option<String>,
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// `x-amz-target` for the JSON protocols.
    pub target: Option<String>,
    /// Headers S3 and others carry parameters in (`x-amz-*`), and `content-type`;
    /// lower-case.
    pub amz_headers: Vec<(String, String)>,
    pub body: String,
    pub status: Option<u16>,
    pub response: String,
}

/// Every exchange recorded so far, in order.
pub fn exchanges() -> Vec<Exchange> {
    EXCHANGES.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn body_text(bytes: Option<&[u8]>) -> String {
    bytes
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(BODY_LIMIT)]).into_owned())
        .unwrap_or_default()
}

/// Starts recording, for the rest of the process.
pub fn start() {
    RECORDING.store(true, Ordering::SeqCst);
}

/// Every distinct call recorded so far.
pub fn recorded() -> BTreeSet<Call> {
    CALLS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Runs `future` with its AWS calls attributed to `caller`.
pub async fn attributed<F: Future>(caller: &'static str, future: F) -> F::Output {
    CALLER
        .scope(
            Attribution {
                caller,
                deployment: None,
            },
            future,
        )
        .await
}

/// [`attributed`], also naming the deployment the calls are for (the local runner's
/// functions serve one deployment each), so that tests running side by side in one
/// process can tell their calls apart.
pub async fn attributed_for<F: Future>(
    caller: &'static str,
    deployment: &str,
    future: F,
) -> F::Output {
    CALLER
        .scope(
            Attribution {
                caller,
                deployment: Some(Arc::from(deployment)),
            },
            future,
        )
        .await
}

/// The interceptor every client carries.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallLog;

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "ApiaryCallLog"
    }

    // Not read_before_execution: a client interceptor runs that before the operation
    // configuration (and its Metadata) is in the bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if !RECORDING.load(Ordering::Relaxed) {
            return Ok(());
        }
        if let Some(metadata) = cfg.load::<Metadata>() {
            let (caller, _) = current();
            CALLS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(Call {
                    caller: caller.to_owned(),
                    service: metadata.service().to_owned(),
                    operation: metadata.name().to_owned(),
                });
        }
        Ok(())
    }

    // The request as sent (each attempt replaces the last), kept for the answer.
    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if !RECORDING.load(Ordering::Relaxed) {
            return Ok(());
        }
        let Some(metadata) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        let request = context.request();
        let headers = request.headers();
        let (caller, deployment) = current();
        let sent = Sent(Exchange {
            call: Call {
                caller: caller.to_owned(),
                service: metadata.service().to_owned(),
                operation: metadata.name().to_owned(),
            },
            deployment,
            region: headers
                .get("authorization")
                .and_then(|a| a.split("Credential=").nth(1))
                .and_then(|c| c.split('/').nth(2))
                .map(str::to_owned),
            method: request.method().to_owned(),
            uri: request.uri().to_owned(),
            target: headers.get("x-amz-target").map(str::to_owned),
            amz_headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
                .filter(|(k, _)| {
                    (k.starts_with("x-amz-") || k == "content-type")
                        && !UNRECORDED_HEADERS.contains(&k.as_str())
                })
                .collect(),
            body: body_text(request.body().bytes()),
            status: None,
            response: String::new(),
        });
        cfg.interceptor_state().store_put(sent);
        Ok(())
    }

    // After the call: the request kept above with the last attempt's answer.
    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(Sent(sent)) = cfg.load::<Sent>() else {
            return Ok(());
        };
        let mut exchange = sent.clone();
        if let Some(response) = context.response() {
            exchange.status = Some(response.status().as_u16());
            exchange.response = body_text(response.body().bytes());
        }
        EXCHANGES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(exchange);
        Ok(())
    }
}

/// Headers that say nothing of the call's resource (and the session token).
const UNRECORDED_HEADERS: &[&str] = &[
    "x-amz-date",
    "x-amz-security-token",
    "x-amz-content-sha256",
    "x-amz-user-agent",
];

#[derive(Debug, Clone)]
struct Sent(Exchange);

impl Storable for Sent {
    type Storer = StoreReplace<Self>;
}

/// Builds an SDK client from an `&SdkConfig` with the [`CallLog`] interceptor:
/// `apiary_core::client!(aws_sdk_ec2, &config)`. The crate must depend on the SDK crate.
#[macro_export]
macro_rules! client {
    ($sdk:ident, $config:expr) => {
        $sdk::Client::from_conf(
            $sdk::config::Builder::from($config)
                .interceptor($crate::calls::CallLog)
                .build(),
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::list_tables::ListTablesOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    #[tokio::test]
    async fn calls_are_recorded_with_their_caller() {
        start();
        let rule = mock!(aws_sdk_dynamodb::Client::list_tables)
            .then_output(|| ListTablesOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&rule], |c| c
            .interceptor(CallLog));
        attributed("keys", async {
            client.list_tables().send().await.expect("mocked");
        })
        .await;
        client.list_tables().send().await.expect("mocked");

        let calls = recorded();
        for caller in ["keys", UNATTRIBUTED] {
            let want = Call {
                caller: caller.to_owned(),
                service: "DynamoDB".to_owned(),
                operation: "ListTables".to_owned(),
            };
            assert!(calls.contains(&want), "{want:?} not in {calls:?}");
        }
    }
}
