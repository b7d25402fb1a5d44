//! A Kubernetes API server in memory for the unit tests, behind `tower_test`'s mock
//! service: every request is recorded, and a responder decides the answer.

use std::collections::{BTreeMap, HashMap};

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// A request as the API server saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub body: Option<Value>,
}

/// What a responder answers: a status code and a JSON body, or a transport failure.
pub enum Reply {
    Json(u16, Value),
    TransportError(&'static str),
}

/// A client whose requests go to `responder`; the handle yields every request once the
/// client (and every clone of it) is dropped.
pub fn start<R>(mut responder: R) -> (kube::Client, JoinHandle<Vec<Recorded>>)
where
    R: FnMut(&Recorded) -> Reply + Send + 'static,
{
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some((request, respond)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.expect("request body");
            let recorded = Recorded {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts
                    .uri
                    .query()
                    .map(|q| {
                        q.split('&')
                            .filter(|kv| !kv.is_empty())
                            .map(|kv| {
                                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                                (k.to_owned(), v.to_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                content_type: parts
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                body: (!bytes.is_empty())
                    .then(|| serde_json::from_slice(&bytes).expect("request body is JSON")),
            };
            match responder(&recorded) {
                Reply::Json(code, body) => {
                    let response = Response::builder()
                        .status(code)
                        .header(http::header::CONTENT_TYPE, "application/json")
                        .body(Body::from(serde_json::to_vec(&body).unwrap()))
                        .unwrap();
                    respond.send_response(response);
                }
                Reply::TransportError(message) => respond.send_error(message),
            }
            seen.push(recorded);
        }
        seen
    });
    (kube::Client::new(service, "default"), server)
}

/// A Kubernetes `Status` failure body.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// Server-side apply as the API server does it, as far as change detection goes: an
/// apply that would store the same object leaves it (and its resourceVersion) alone.
#[derive(Default)]
pub struct ApplyServer {
    objects: HashMap<String, Value>,
    applied: HashMap<String, Value>,
    version: u64,
}

impl ApplyServer {
    /// An object as if made earlier (by an earlier provision, or by hand).
    pub fn insert(&mut self, path: &str, object: Value) {
        self.objects.insert(path.to_owned(), object);
    }

    pub fn respond(&mut self, request: &Recorded) -> Reply {
        match request.method.as_str() {
            "GET" => match self.objects.get(&request.path) {
                Some(object) => Reply::Json(200, object.clone()),
                None => Reply::Json(404, status(404, "NotFound", "not found")),
            },
            "PATCH" => {
                let body = request.body.clone().expect("an apply has a body");
                if self.applied.get(&request.path) != Some(&body) {
                    self.version += 1;
                    let mut stored = body.clone();
                    stored["metadata"]["resourceVersion"] = json!(self.version.to_string());
                    self.objects.insert(request.path.clone(), stored);
                    self.applied.insert(request.path.clone(), body);
                }
                Reply::Json(200, self.objects[&request.path].clone())
            }
            "DELETE" => match self.objects.remove(&request.path) {
                Some(object) => {
                    self.applied.remove(&request.path);
                    Reply::Json(200, object)
                }
                None => Reply::Json(404, status(404, "NotFound", "not found")),
            },
            other => Reply::Json(405, status(405, "MethodNotAllowed", other)),
        }
    }
}
