//! A proxy between the AWS SDK and the local emulator that brings two things of real
//! AWS the emulator lacks:
//!
//! - **faults**, at a rate per operation class (reads, writes), chosen from a seed:
//!   throttling, 500/503, a connection reset (before or after the emulator performed
//!   the call), an answer held past the client's attempt timeout after the emulator
//!   **did** perform the call, and eventual consistency (the read that shows a new
//!   resource answers NotFound for its next one to three calls, within the next 40
//!   calls of any kind: counted in calls, since the local engine's clock skips time);
//! - **timing**: the resources of [`table::FOLLOWED`] stay in their creating state
//!   (the status their read answers is rewritten) for their typical real duration
//!   divided by a time scale, measured on a clock the caller gives (the local engine's,
//!   so that a virtual clock's jumps count).
//!
//! It also answers a repeated request with the same idempotency token as AWS does,
//! with the first answer, which the emulator does not; without that, correct token use
//! would look like a duplicate.
//!
//! Faults are decided per call from the seed, the operation and how many calls of that
//! operation came before, so a run is reproducible as far as the order of concurrent
//! calls of one operation is.

pub mod answer;
pub mod call;
pub mod table;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::answer::Answer;
use crate::call::Call;
use crate::table::Followed;

/// The time the proxy measures creating states on.
pub type Now = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// What a proxy injects.
#[derive(Clone)]
pub struct Config {
    /// The emulator (`http://127.0.0.1:PORT`).
    pub upstream: String,
    pub seed: u64,
    /// The share of reads and of writes that meet a fault (0 to 1).
    pub read_rate: f64,
    pub write_rate: f64,
    /// The share of followed creates whose read does not show them for the next one to
    /// three calls (eventual consistency).
    pub lag_rate: f64,
    /// How long a late answer is held: longer than the client's attempt timeout.
    pub late_by: Duration,
    /// Resources stay creating for their real duration divided by this; `None`: ready
    /// at once, as the emulator makes them.
    pub time_scale: Option<f64>,
    pub now: Now,
    /// Operations whose idempotency token is removed before the emulator sees it: the
    /// canary that proves a run can report a duplicate.
    pub strip_tokens: Vec<String>,
    /// Faults a test wants at a given call: (operation, its n-th call from 1, fault).
    pub forced: Vec<(String, u64, Fault)>,
    /// Stop answering after this many writes were performed (the last one performed, its
    /// answer never sent), as if the caller had died right after it.
    pub crash_after_writes: Option<u64>,
}

impl Config {
    /// No fault, no timing: a plain pass-through to `upstream`.
    pub fn passthrough(upstream: &str) -> Config {
        Config {
            upstream: upstream.trim_end_matches('/').to_owned(),
            seed: 0,
            read_rate: 0.0,
            write_rate: 0.0,
            lag_rate: 0.0,
            late_by: Duration::from_secs(3),
            time_scale: None,
            now: Arc::new(Utc::now),
            strip_tokens: Vec::new(),
            forced: Vec::new(),
            crash_after_writes: None,
        }
    }
}

/// A fault the proxy injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// The service's throttling error.
    Throttle,
    /// 500 or 503.
    ServerError,
    /// The connection closed before the emulator saw the request.
    Reset,
    /// The emulator performed the call, then the connection closed.
    ResetAfter,
    /// The emulator performed the call; the answer comes after the client gave up.
    Late,
    /// A read that does not show a resource created a moment ago.
    NotYetVisible,
}

impl Fault {
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Throttle => "throttle",
            Fault::ServerError => "5xx",
            Fault::Reset => "reset",
            Fault::ResetAfter => "reset-after",
            Fault::Late => "late",
            Fault::NotYetVisible => "not-yet-visible",
        }
    }
}

/// A creating state the proxy applied: what AWS would have taken, and what it took here.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub kind: &'static str,
    pub id: String,
    /// The typical real duration, seconds.
    pub aws_seconds: u32,
    /// That divided by the time scale, seconds.
    pub scaled_seconds: f64,
    pub created_at: DateTime<Utc>,
    pub ready_at: DateTime<Utc>,
    pub source: &'static str,
}

/// What the proxy saw and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub calls: u64,
    pub writes: u64,
    /// The last write performed (`service:Operation`).
    pub last_write: Option<String>,
    /// The write after which the proxy stopped answering (`crash_after_writes`).
    pub crashed_after: Option<String>,
    /// Calls whose caller gave up (closed the connection) before its answer was sent,
    /// faults or not: a slow emulator shows here, and a create given up on may have
    /// been made.
    pub abandoned: u64,
    pub faults: BTreeMap<Fault, u64>,
    /// Repeats of a token answered with the first answer.
    pub replayed: u64,
    /// Answers rewritten to show a resource still creating.
    pub held_creating: u64,
    pub applied: Vec<Applied>,
    /// Calls per operation (`service:Operation`).
    pub operations: BTreeMap<String, u64>,
}

impl Report {
    pub fn faults_total(&self) -> u64 {
        self.faults.values().sum()
    }
}

type TokenKey = (String, String, String);

/// A token's first call: still with the emulator (resolved when it ends), or answered.
enum Token {
    InFlight(watch::Receiver<bool>),
    Done(Answer),
}

struct Lag {
    service: &'static str,
    read: &'static str,
    id: String,
    remaining: u32,
    /// The lag ends with this call of the proxy even when no read used it up: AWS
    /// catches up within seconds, not at the next read however late it comes.
    until_call: u64,
}

/// How many calls (of any operation) a lag lasts at most: a few seconds of a busy
/// workflow.
const LAG_CALLS: u64 = 40;

#[derive(Default)]
struct State {
    report: Report,
    /// Calls so far per operation, for the per-call fault decision.
    seen: HashMap<String, u64>,
    /// (service, operation, token) -> the first answer, or the call still making it.
    tokens: HashMap<TokenKey, Token>,
    lags: Vec<Lag>,
    /// Resources in their creating state (index into `report.applied`, the row).
    creating: Vec<(usize, &'static Followed)>,
    crashed: bool,
    /// Calls with the emulator right now (they finish even when their caller left).
    in_flight: u64,
}

/// A running proxy; it stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    crashed: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        let connections = self
            .connections
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        for connection in connections {
            connection.abort();
        }
    }
}

struct Shared {
    config: Config,
    state: Arc<Mutex<State>>,
    client: Client<HttpConnector, Full<Bytes>>,
    crash: watch::Sender<bool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the proxy could not listen on a loopback port: {0}")]
pub struct StartError(#[from] std::io::Error);

impl Proxy {
    /// Listens on a free loopback port and serves until dropped.
    pub async fn start(config: Config) -> Result<Proxy, StartError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let (crash, crashed) = watch::channel(false);
        let shared = Arc::new(Shared {
            config,
            state: state.clone(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            crash,
        });
        let connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let tracked = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                let connection = tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let shared = shared.clone();
                        async move { shared.handle(request).await }
                    });
                    // An error here is a connection the proxy reset on purpose, or one
                    // the client closed while its answer was held.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                if let Ok(mut all) = tracked.lock() {
                    all.retain(|c| !c.is_finished());
                    all.push(connection.abort_handle());
                }
            }
        });
        Ok(Proxy {
            addr,
            state,
            crashed,
            task,
            connections,
        })
    }

    /// Stops serving and waits (up to `limit`) for the calls still with the emulator to
    /// finish, so that none lands after whatever comes next (an emptied emulator).
    pub async fn stop(self, limit: Duration) {
        let state = self.state.clone();
        drop(self);
        let until = tokio::time::Instant::now() + limit;
        while lock(&state).in_flight > 0 && tokio::time::Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The endpoint to give the SDK.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn report(&self) -> Report {
        lock(&self.state).report.clone()
    }

    /// Resolves once the proxy has performed its `crash_after_writes`-th write.
    pub async fn crashed(&self) {
        let mut crashed = self.crashed.clone();
        let _ = crashed.wait_for(|c| *c).await;
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts a call whose handler is dropped before it answered: its caller left.
struct Abandoned {
    state: Option<Arc<Mutex<State>>>,
}

impl Abandoned {
    fn disarm(&mut self) {
        self.state = None;
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(state) = &self.state {
            lock(state).report.abandoned += 1;
        }
    }
}

/// The reason a connection is closed on purpose.
#[derive(Debug, thiserror::Error)]
#[error("connection reset by the proxy")]
struct ResetByProxy;

type Answered = Result<Response<Full<Bytes>>, ResetByProxy>;

/// A stable 64-bit hash (FNV-1a): the same decision for the same seed on any build.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(&[0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

impl Shared {
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Answered {
        // Counts the call as abandoned if its caller goes away before it is answered
        // (hyper then drops this future, and the guard with it).
        let mut guard = Abandoned {
            state: Some(self.state.clone()),
        };
        let answered = self.answer(request).await;
        guard.disarm();
        answered
    }

    async fn answer(self: Arc<Self>, request: Request<Incoming>) -> Answered {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return Err(ResetByProxy),
        };
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into());
        let call = Call::classify(&parts.method, &path, &parts.headers, &body);
        let read = call.is_read();
        let key = format!("{}:{}", call.service, call.operation);

        if lock(&self.state).crashed {
            std::future::pending::<()>().await;
        }

        let (fault, hidden, n) = {
            let mut state = lock(&self.state);
            state.report.calls += 1;
            let calls = state.report.calls;
            *state.report.operations.entry(key.clone()).or_default() += 1;
            let n = {
                let seen = state.seen.entry(key.clone()).or_default();
                *seen += 1;
                *seen
            };
            let fault = self.fault(&call, n, read);
            // A read the proxy fails anyway does not use up a lag.
            let hidden = if read && fault.is_none() {
                state
                    .lags
                    .iter_mut()
                    .find(|lag| {
                        lag.remaining > 0
                            && calls <= lag.until_call
                            && lag.service == call.service
                            && lag.read == call.operation
                            && call.mentions(&lag.id)
                    })
                    .map(|lag| {
                        lag.remaining -= 1;
                        lag.id.clone()
                    })
            } else {
                None
            };
            (fault, hidden, n)
        };

        match fault {
            Some(Fault::Throttle) => {
                self.count(Fault::Throttle);
                let (code, status) = answer::throttling(call.protocol, &call.service);
                return Ok(respond(answer::error(
                    call.protocol,
                    &call.service,
                    code,
                    "Rate exceeded",
                    status,
                )));
            }
            Some(Fault::ServerError) => {
                self.count(Fault::ServerError);
                let (code, status) = if n.is_multiple_of(2) {
                    ("InternalFailure", 500)
                } else {
                    ("ServiceUnavailable", 503)
                };
                return Ok(respond(answer::error(
                    call.protocol,
                    &call.service,
                    code,
                    "The service is unavailable; try again.",
                    status,
                )));
            }
            Some(Fault::Reset) => {
                self.count(Fault::Reset);
                return Err(ResetByProxy);
            }
            _ => {}
        }
        if let Some(id) = hidden {
            self.count(Fault::NotYetVisible);
            let followed = table::shown_by(&call.service, &call.operation)
                .next()
                .expect("a lag is only kept for a followed read");
            let (code, status) = followed.not_found;
            return Ok(respond(answer::error(
                call.protocol,
                &call.service,
                code,
                &format!("The resource '{id}' does not exist"),
                status,
            )));
        }

        let stripped = self.config.strip_tokens.contains(&call.operation);
        let body = if stripped {
            call.body_without_token().map(Bytes::from).unwrap_or(body)
        } else {
            body
        };
        // A repeat of a token answers what its first call answered, waiting for that
        // call if it is still with the emulator, as AWS does.
        let token_key = call
            .token
            .as_ref()
            .filter(|_| !stripped)
            .map(|(_, token)| (call.service.clone(), call.operation.clone(), token.clone()));
        let mut owner = None;
        if let Some(key) = &token_key {
            loop {
                let mut first = {
                    let mut state = lock(&self.state);
                    match state.tokens.get(key) {
                        Some(Token::Done(answer)) => {
                            let mut answer = answer.clone();
                            state.report.replayed += 1;
                            self.hold(&mut state, &call, &mut answer);
                            return Ok(respond(answer));
                        }
                        Some(Token::InFlight(first)) if first.has_changed().is_ok() => {
                            first.clone()
                        }
                        // None yet, or a first call that ended without an answer.
                        _ => {
                            let (sender, receiver) = watch::channel(false);
                            state.tokens.insert(key.clone(), Token::InFlight(receiver));
                            owner = Some(sender);
                            break;
                        }
                    }
                };
                let _ = first.wait_for(|done| *done).await;
            }
        }

        // The emulator's part, and what follows from it, run to their end even when the
        // caller gives up meanwhile (as AWS finishes a call whose caller timed out).
        lock(&self.state).in_flight += 1;
        let performing = {
            let shared = self.clone();
            let call = call.clone();
            tokio::spawn(async move {
                let performed = shared.forward(&parts, &path, body).await;
                shared.performed(&call, read, token_key, owner, performed)
            })
        };
        let Ok(Some(performed)) = performing.await else {
            return Err(ResetByProxy);
        };
        // Past the crash point nothing is answered, whenever the call started.
        if lock(&self.state).crashed {
            std::future::pending::<()>().await;
        }
        match fault {
            Some(Fault::ResetAfter) => {
                self.count(Fault::ResetAfter);
                Err(ResetByProxy)
            }
            Some(Fault::Late) => {
                self.count(Fault::Late);
                tokio::time::sleep(self.config.late_by).await;
                Ok(respond(performed))
            }
            _ => Ok(respond(performed)),
        }
    }

    /// After the emulator answered (or did not): the token's answer kept, a created
    /// resource followed, the answer held in a creating state, the write counted and
    /// the crash point checked (and signalled).
    fn performed(
        &self,
        call: &Call,
        read: bool,
        token_key: Option<TokenKey>,
        owner: Option<watch::Sender<bool>>,
        performed: Option<Answer>,
    ) -> Option<Answer> {
        let mut state = lock(&self.state);
        state.in_flight = state.in_flight.saturating_sub(1);
        let ok = performed
            .as_ref()
            .is_some_and(|p| (200..300).contains(&p.status));
        if let Some(key) = token_key
            && owner.is_some()
        {
            match (&performed, ok) {
                (Some(answer), true) => {
                    state.tokens.insert(key, Token::Done(answer.clone()));
                }
                _ => {
                    state.tokens.remove(&key);
                }
            }
        }
        if let Some(owner) = owner {
            let _ = owner.send(true);
        }
        let mut performed = performed?;
        if !read {
            state.report.writes += 1;
            state.report.last_write = Some(format!("{}:{}", call.service, call.operation));
        }
        if ok {
            if !read {
                self.follow(&mut state, call, &performed);
            }
            self.hold(&mut state, call, &mut performed);
        }
        let crash_now = !read
            && !state.crashed
            && self
                .config
                .crash_after_writes
                .is_some_and(|k| state.report.writes >= k);
        if crash_now {
            state.crashed = true;
            state.report.crashed_after = state.report.last_write.clone();
            // Here, not in the handler: the caller may already have left.
            let _ = self.crash.send(true);
        }
        Some(performed)
    }

    fn count(&self, fault: Fault) {
        *lock(&self.state).report.faults.entry(fault).or_default() += 1;
    }

    /// The fault for the `n`-th call of this operation, if any.
    fn fault(&self, call: &Call, n: u64, read: bool) -> Option<Fault> {
        if let Some((_, _, fault)) = self
            .config
            .forced
            .iter()
            .find(|(op, at, _)| *op == call.operation && *at == n)
        {
            return Some(*fault);
        }
        let rate = if read {
            self.config.read_rate
        } else {
            self.config.write_rate
        };
        if rate <= 0.0 {
            return None;
        }
        let mut rng = StdRng::seed_from_u64(fnv(&[
            &self.config.seed.to_le_bytes(),
            call.service.as_bytes(),
            call.operation.as_bytes(),
            &n.to_le_bytes(),
        ]));
        if !rng.random_bool(rate.min(1.0)) {
            return None;
        }
        let pick: f64 = rng.random();
        Some(if read {
            match pick {
                p if p < 0.45 => Fault::Throttle,
                p if p < 0.80 => Fault::ServerError,
                _ => Fault::Reset,
            }
        } else {
            match pick {
                p if p < 0.30 => Fault::Throttle,
                p if p < 0.50 => Fault::ServerError,
                p if p < 0.60 => Fault::Reset,
                p if p < 0.75 => Fault::ResetAfter,
                _ => Fault::Late,
            }
        })
    }

    /// After a create of a followed kind: its lag (with the read rate's chance) and
    /// its creating state (with a time scale).
    fn follow(&self, state: &mut State, call: &Call, performed: &Answer) {
        let Some(followed) = table::created_by(&call.service, &call.operation) else {
            return;
        };
        let Some(id) = answer::identifier(followed.id, |n| call.param(n), &performed.body) else {
            return;
        };
        // A resource seen again (a create answered for an existing one) keeps its first
        // timing. Each Route 53 change is new, though the emulator answers every one
        // with the same change id.
        let known = followed.kind != "route53:change"
            && (state
                .report
                .applied
                .iter()
                .any(|a| a.kind == followed.kind && a.id == id)
                || state
                    .lags
                    .iter()
                    .any(|l| l.read == followed.read && l.id == id));
        if known {
            return;
        }
        if self.config.lag_rate > 0.0 {
            let mut rng = StdRng::seed_from_u64(fnv(&[
                &self.config.seed.to_le_bytes(),
                b"lag",
                id.as_bytes(),
            ]));
            if rng.random_bool(self.config.lag_rate.min(1.0)) {
                state.lags.push(Lag {
                    service: followed.service,
                    read: followed.read,
                    id: id.clone(),
                    remaining: rng.random_range(1..=3),
                    until_call: state.report.calls + LAG_CALLS,
                });
            }
        }
        if let (Some(scale), Some(creating)) = (self.config.time_scale, followed.creating) {
            let now = (self.config.now)();
            let scaled = f64::from(creating.seconds) / scale;
            let ready_at = now + chrono::Duration::milliseconds((scaled * 1000.0) as i64);
            state.report.applied.push(Applied {
                kind: followed.kind,
                id,
                aws_seconds: creating.seconds,
                scaled_seconds: scaled,
                created_at: now,
                ready_at,
                source: creating.source,
            });
            let index = state.report.applied.len() - 1;
            state.creating.push((index, followed));
        }
    }

    /// Rewrites a read's (or a create's) answer for every resource it shows that AWS
    /// would still be creating.
    fn hold(&self, state: &mut State, call: &Call, performed: &mut Answer) {
        if state.creating.is_empty() {
            return;
        }
        let now = (self.config.now)();
        let mut held = 0;
        for (index, followed) in &state.creating {
            let applied = &state.report.applied[*index];
            let shows = followed.read == call.operation || followed.create == call.operation;
            if followed.service != call.service || !shows || now >= applied.ready_at {
                continue;
            }
            let Some(creating) = followed.creating else {
                continue;
            };
            if let Some(body) = answer::hold_creating(
                &performed.body,
                creating.shape,
                &applied.id,
                creating.ready,
                creating.status,
            ) {
                performed.body = body;
                held += 1;
            }
        }
        state.report.held_creating += held;
    }

    async fn forward(
        &self,
        parts: &http::request::Parts,
        path: &str,
        body: Bytes,
    ) -> Option<Answer> {
        let uri: http::Uri = format!("{}{}", self.config.upstream, path).parse().ok()?;
        let mut builder = Request::builder().method(parts.method.clone()).uri(&uri);
        for (name, value) in &parts.headers {
            if name == http::header::HOST || name == http::header::CONTENT_LENGTH {
                continue;
            }
            builder = builder.header(name, value);
        }
        if let Some(authority) = uri.authority() {
            builder = builder.header(http::header::HOST, authority.as_str());
        }
        let request = builder
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(Full::new(body))
            .ok()?;
        let response = self.client.request(request).await.ok()?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .filter(|(name, _)| {
                *name != http::header::CONTENT_LENGTH && *name != http::header::TRANSFER_ENCODING
            })
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect();
        let body = response
            .into_body()
            .collect()
            .await
            .ok()?
            .to_bytes()
            .to_vec();
        Some(Answer {
            status,
            headers,
            body,
        })
    }
}

fn respond(answer: Answer) -> Response<Full<Bytes>> {
    let mut response = Response::builder().status(answer.status);
    for (name, value) in &answer.headers {
        response = response.header(name, value);
    }
    response
        .header(http::header::CONTENT_LENGTH, answer.body.len())
        .body(Full::new(Bytes::from(answer.body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Empties the emulator (moto's `POST /moto-api/reset`): every service's state goes.
pub async fn reset_emulator(endpoint: &str) -> Result<(), String> {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let request = Request::post(format!("{}/moto-api/reset", endpoint.trim_end_matches('/')))
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the emulator answered {}", response.status()))
    }
}
