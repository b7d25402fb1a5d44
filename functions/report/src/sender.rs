//! The POST of one report.

use std::time::Duration;

use apiary_core::{Error, Result};
use async_trait::async_trait;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::REQUEST_TIMEOUT;

/// What the endpoint made of one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    /// 2xx: delivered.
    Accepted(u16),
    /// No connection, no answer in time, 408, 429 or 5xx: may pass; kept and sent again.
    Transient(String),
    /// Any other answer: will not change by waiting.
    Refused(u16),
}

#[async_trait]
pub trait Sender: Send + Sync {
    async fn post(&self, url: &str, body: String, headers: Vec<(&'static str, String)>) -> Posted;
}

/// HTTPS only, HTTP/1.1, with a timeout per request ([`REQUEST_TIMEOUT`]).
pub struct HttpsSender {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl HttpsSender {
    /// Trusting the system's roots, or only the certificates of `extra_roots_pem` when
    /// given (local runs against a test server; the Lambda never passes any).
    pub fn new(extra_roots_pem: Option<&[u8]>) -> Result<HttpsSender> {
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match extra_roots_pem {
            None => builder.with_native_roots().map_err(|e| {
                Error::fatal(format!("loading the system's TLS root certificates: {e}"))
            })?,
            Some(pem) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| {
                        Error::invalid_input(format!("a CA certificate does not parse: {e}"))
                    })?;
                    roots.add(cert).map_err(|e| {
                        Error::invalid_input(format!("a CA certificate is refused: {e}"))
                    })?;
                }
                let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                    rustls::crypto::aws_lc_rs::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::fatal(format!("TLS configuration: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
                builder.with_tls_config(config)
            }
        };
        let connector = builder.https_only().enable_http1().build();
        Ok(HttpsSender {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout: REQUEST_TIMEOUT,
        })
    }
}

#[async_trait]
impl Sender for HttpsSender {
    async fn post(&self, url: &str, body: String, headers: Vec<(&'static str, String)>) -> Posted {
        let mut request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("apiary/", env!("CARGO_PKG_VERSION")),
            );
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = match request.body(Full::new(Bytes::from(body))) {
            Ok(request) => request,
            Err(e) => return Posted::Transient(format!("building the request: {e}")),
        };
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Ok(Ok(response)) => {
                let status = response.status();
                if status.is_success() {
                    Posted::Accepted(status.as_u16())
                } else if apiary_core::error::transient_http_status(status.as_u16()) {
                    Posted::Transient(format!("HTTP {status}"))
                } else {
                    Posted::Refused(status.as_u16())
                }
            }
            Ok(Err(e)) => Posted::Transient(apiary_core::error::sentence(&e)),
            Err(_) => Posted::Transient(format!("no answer within {:?}", self.timeout)),
        }
    }
}

/// The sender where phone home is off: the step never reaches it, and says so if it did.
pub struct Unreachable;

#[async_trait]
impl Sender for Unreachable {
    async fn post(
        &self,
        _url: &str,
        _body: String,
        _headers: Vec<(&'static str, String)>,
    ) -> Posted {
        Posted::Transient("phone home is off: no endpoint".to_owned())
    }
}
