//! The answer to CloudFormation: a JSON document PUT to the request's presigned S3 URL,
//! retried with backoff, over HTTPS only (plain HTTP only to a loopback host, for tests).

use std::net::IpAddr;
use std::time::Duration;

use apiary_core::{Error, Result};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde_json::{Map, Value};

/// CloudFormation rejects a response body larger than this.
pub const MAX_BODY_BYTES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Success,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "SUCCESS",
            Status::Failed => "FAILED",
        }
    }
}

/// The response document, in CloudFormation's field names.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Response {
    pub status: Status,
    pub reason: String,
    pub physical_resource_id: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    pub no_echo: bool,
    pub data: Map<String, Value>,
}

impl Response {
    /// The JSON body, within [`MAX_BODY_BYTES`]: `message` is shortened (never `suffix`,
    /// which says where the full story is) until the document fits.
    pub fn body(&self, message: &str, suffix: &str) -> Vec<u8> {
        let mut response = self.clone();
        let mut keep = message.len();
        loop {
            let cut = &message[..floor_char_boundary(message, keep)];
            let ellipsis = if cut.len() < message.len() { "..." } else { "" };
            response.reason = format!("{cut}{ellipsis}{suffix}");
            let body = serde_json::to_vec(&response).expect("a response serializes");
            if body.len() <= MAX_BODY_BYTES || cut.is_empty() {
                return body;
            }
            // JSON escaping can make the text longer than its bytes; cut at least the excess.
            keep = cut
                .len()
                .saturating_sub((body.len() - MAX_BODY_BYTES).max(1) + 3);
        }
    }
}

fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// How the response PUT is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, including the first.
    pub attempts: u32,
    /// Time allowed for one attempt (connect, TLS, send, status).
    pub attempt_timeout: Duration,
    /// Wait before the second attempt; doubled before each further one.
    pub first_backoff: Duration,
}

impl RetryPolicy {
    /// The longest all attempts and waits can take.
    pub fn worst_case(&self) -> Duration {
        let waits: Duration = (0..self.attempts.saturating_sub(1))
            .map(|i| self.first_backoff * 2u32.saturating_pow(i))
            .sum();
        self.attempt_timeout * self.attempts + waits
    }
}

/// Sends responses. Built once per process: it holds the TLS roots and a connection pool.
pub struct Responder {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    retry: RetryPolicy,
}

impl Responder {
    pub fn new(retry: RetryPolicy) -> Result<Responder> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| Error::fatal(format!("loading the system's TLS root certificates: {e}")))?
            // Plain HTTP is refused before any request is made unless the host is loopback.
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Responder {
            client: Client::builder(TokioExecutor::new()).build(connector),
            retry,
        })
    }

    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }

    /// PUTs `body` to `url`, retrying transient failures. Logs the URL's host only: the
    /// rest of a presigned URL is a credential.
    pub async fn send(&self, url: &str, body: Vec<u8>) -> Result<()> {
        let uri = checked_uri(url)?;
        let host = uri.host().unwrap_or_default().to_owned();
        let body = Bytes::from(body);
        let mut wait = self.retry.first_backoff;
        let mut last = String::new();
        for attempt in 1..=self.retry.attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            let request = http::Request::put(uri.clone())
                // The presigned URL was signed for an empty content type.
                .header(http::header::CONTENT_TYPE, "")
                .header(http::header::CONTENT_LENGTH, body.len())
                .body(Full::new(body.clone()))
                .map_err(|e| Error::fatal(format!("building the response request: {e}")))?;
            let outcome =
                tokio::time::timeout(self.retry.attempt_timeout, self.client.request(request))
                    .await;
            let (retryable, problem) = match outcome {
                Ok(Ok(response)) if response.status().is_success() => {
                    tracing::info!(
                        host,
                        attempt,
                        status = response.status().as_u16(),
                        "response delivered"
                    );
                    return Ok(());
                }
                Ok(Ok(response)) => {
                    let status = response.status();
                    // A refused signature or an expired URL will not change on retry.
                    let retryable = apiary_core::error::transient_http_status(status.as_u16());
                    (retryable, format!("HTTP {status}"))
                }
                Ok(Err(e)) => (true, apiary_core::error::sentence(&e)),
                Err(_) => (
                    true,
                    format!("no answer within {:?}", self.retry.attempt_timeout),
                ),
            };
            tracing::warn!(host, attempt, retryable, problem, "response not delivered");
            last = problem;
            if !retryable {
                break;
            }
        }
        Err(Error::Aws {
            operation: format!("PUT custom resource response to {host}"),
            code: None,
            message: last,
            retryable: true,
        })
    }
}

/// The URL as a URI, if it is HTTPS, or plain HTTP to a loopback host.
fn checked_uri(url: &str) -> Result<http::Uri> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| Error::invalid_input("the ResponseURL is not a valid URL"))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(uri),
        Some("http") if is_loopback(host) => Ok(uri),
        _ => Err(Error::invalid_input(format!(
            "the ResponseURL (host {host:?}) is not HTTPS; plain HTTP is accepted only to a \
             loopback host"
        ))),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response() -> Response {
        Response {
            status: Status::Failed,
            reason: String::new(),
            physical_resource_id: "apiary-acme-launch".into(),
            stack_id: "arn:aws:cloudformation:us-west-2:123456789012:stack/acme/1".into(),
            request_id: "r-1".into(),
            logical_resource_id: "Launch".into(),
            no_echo: false,
            data: Map::new(),
        }
    }

    #[test]
    fn a_long_reason_is_cut_to_fit_and_keeps_the_log_pointer() {
        let message = "é\"".repeat(3000);
        let suffix = " (details: CloudWatch Logs group g, stream s)";
        let body = response().body(&message, suffix);
        assert!(body.len() <= MAX_BODY_BYTES, "{} bytes", body.len());
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        let reason = parsed["Reason"].as_str().unwrap();
        assert!(reason.ends_with(&format!("...{suffix}")), "{reason}");
        assert_eq!(parsed["Status"], "FAILED");
        assert_eq!(parsed["NoEcho"], false);
    }

    #[test]
    fn a_short_reason_is_whole() {
        let body = response().body("it broke", "");
        let parsed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed["Reason"], "it broke");
        assert_eq!(parsed["PhysicalResourceId"], "apiary-acme-launch");
        assert_eq!(parsed["Data"], serde_json::json!({}));
    }

    #[test]
    fn only_https_or_loopback_http() {
        assert!(checked_uri("https://bucket.s3.amazonaws.com/k?X-Amz-Signature=1").is_ok());
        assert!(checked_uri("http://127.0.0.1:9/x").is_ok());
        assert!(checked_uri("http://[::1]:9/x").is_ok());
        assert!(checked_uri("http://localhost:9/x").is_ok());
        let err = checked_uri("http://bucket.s3.amazonaws.com/k?X-Amz-Signature=secret")
            .unwrap_err()
            .to_string();
        assert!(err.contains("bucket.s3.amazonaws.com"), "{err}");
        assert!(!err.contains("secret"), "the URL's query leaked: {err}");
        assert!(checked_uri("ftp://example.com/x").is_err());
        assert!(checked_uri("not a url").is_err());
    }

    #[test]
    fn the_worst_case_counts_every_attempt_and_wait() {
        let retry = RetryPolicy {
            attempts: 4,
            attempt_timeout: Duration::from_secs(5),
            first_backoff: Duration::from_millis(500),
        };
        assert_eq!(
            retry.worst_case(),
            Duration::from_millis(20_000 + 500 + 1000 + 2000)
        );
    }
}
