//! What an SDK request is: the service (from its SigV4 credential scope), the operation
//! (from the protocol: `X-Amz-Target`, the query `Action`, or the REST route), its
//! parameters and its idempotency token.

use http::{HeaderMap, Method};
use serde_json::Value;

/// How the service speaks, which decides how an error is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// EC2's query protocol (`<Response><Errors>`).
    Ec2,
    /// The other query services (RDS, ElastiCache, IAM, STS, SNS: `<ErrorResponse>`).
    Query,
    /// awsJson 1.0/1.1 (`X-Amz-Target`: KMS, DynamoDB, Secrets Manager, ACM, ...).
    Json,
    /// REST with JSON (EKS, Lambda, Scheduler, ...).
    RestJson,
    /// REST with XML (S3, Route 53).
    RestXml,
    /// Smithy RPC v2 CBOR (CloudWatch): `POST .../operation/<Op>`, CBOR bodies.
    Cbor,
}

/// The names idempotency tokens go by, in every protocol.
const TOKEN_NAMES: &[&str] = &[
    "ClientToken",
    "clientToken",
    "ClientRequestToken",
    "clientRequestToken",
    "IdempotencyToken",
    "CallerReference",
];

#[derive(Debug, Clone)]
pub enum Params {
    Form(Vec<(String, String)>),
    Json(Value),
    /// Anything else (XML bodies, object uploads): only searched as text.
    Other,
}

/// One request, as the proxy sees it.
#[derive(Debug, Clone)]
pub struct Call {
    pub service: String,
    pub operation: String,
    pub protocol: Protocol,
    pub params: Params,
    /// The idempotency token: the parameter it was sent in and its value.
    pub token: Option<(String, String)>,
    /// The path, the query and the body, decoded: where a read names what it reads.
    pub text: String,
}

impl Call {
    pub fn classify(
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Call {
        let service = signing_service(headers).unwrap_or_else(|| "unknown".into());
        let body_text = String::from_utf8_lossy(body).into_owned();
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .map(|t| t.rsplit('.').next().unwrap_or(t).to_owned());
        let form = content_type.starts_with("application/x-www-form-urlencoded");
        let cbor = headers
            .get("smithy-protocol")
            .is_some_and(|v| v.as_bytes() == b"rpc-v2-cbor");
        let (operation, protocol, params) = if cbor {
            let operation = path.rsplit('/').next().unwrap_or_default().to_owned();
            (operation, Protocol::Cbor, Params::Other)
        } else if let Some(operation) = target {
            let params = serde_json::from_slice(body).map_or(Params::Other, Params::Json);
            (operation, Protocol::Json, params)
        } else if form || query.contains("Action=") {
            let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            if form {
                pairs.extend(form_urlencoded::parse(body).into_owned());
            }
            let operation = pairs
                .iter()
                .find(|(k, _)| k == "Action")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let protocol = if service == "ec2" {
                Protocol::Ec2
            } else {
                Protocol::Query
            };
            (operation, protocol, Params::Form(pairs))
        } else {
            let protocol = if matches!(service.as_str(), "s3" | "route53") {
                Protocol::RestXml
            } else {
                Protocol::RestJson
            };
            let params = if content_type.contains("json") {
                serde_json::from_slice(body).map_or(Params::Other, Params::Json)
            } else {
                Params::Other
            };
            (rest_operation(&service, method, path), protocol, params)
        };
        let token = match &params {
            Params::Form(pairs) => pairs
                .iter()
                .find(|(k, v)| TOKEN_NAMES.contains(&k.as_str()) && !v.is_empty())
                .cloned(),
            Params::Json(Value::Object(map)) => TOKEN_NAMES.iter().find_map(|name| {
                map.get(*name)
                    .and_then(Value::as_str)
                    .filter(|v| !v.is_empty())
                    .map(|v| ((*name).to_owned(), v.to_owned()))
            }),
            _ => xml_element(&body_text, "CallerReference")
                .map(|v| ("CallerReference".to_owned(), v.to_owned())),
        };
        let text = format!(
            "{} {} {}",
            decode(path),
            decode(query),
            match &params {
                Params::Form(pairs) => pairs
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&"),
                _ => body_text,
            }
        );
        Call {
            service,
            operation,
            protocol,
            params,
            token,
            text,
        }
    }

    /// Reads change nothing: `Describe*`, `Get*`, `List*`, DynamoDB's `Query`, `Scan`
    /// and batch or transactional gets, and REST `GET`/`HEAD`.
    pub fn is_read(&self) -> bool {
        [
            "Describe",
            "Get",
            "List",
            "Head",
            "Query",
            "Scan",
            "BatchGet",
            "TransactGet",
            "GET ",
            "HEAD ",
        ]
        .iter()
        .any(|p| self.operation.starts_with(p))
    }

    /// Whether the request names `id` as a whole (a path segment, a parameter's value),
    /// not as part of a longer name (`…-system` is not `…-system-nodes`).
    pub fn mentions(&self, id: &str) -> bool {
        let part_of_name = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        self.text.match_indices(id).any(|(at, _)| {
            let before = self.text[..at].chars().next_back();
            let after = self.text[at + id.len()..].chars().next();
            !before.is_some_and(part_of_name) && !after.is_some_and(part_of_name)
        })
    }

    /// A top-level parameter's string value.
    pub fn param(&self, name: &str) -> Option<String> {
        match &self.params {
            Params::Form(pairs) => pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone()),
            Params::Json(value) => value.get(name).and_then(Value::as_str).map(str::to_owned),
            Params::Other => None,
        }
    }

    /// The body without the idempotency token (the canary that shows what a missing
    /// token costs); `None` when the call carries none.
    pub fn body_without_token(&self) -> Option<Vec<u8>> {
        let (name, _) = self.token.as_ref()?;
        match &self.params {
            Params::Form(pairs) => {
                let mut out = form_urlencoded::Serializer::new(String::new());
                for (k, v) in pairs.iter().filter(|(k, _)| k != name) {
                    out.append_pair(k, v);
                }
                Some(out.finish().into_bytes())
            }
            Params::Json(Value::Object(map)) => {
                let mut map = map.clone();
                map.remove(name);
                serde_json::to_vec(&Value::Object(map)).ok()
            }
            _ => None,
        }
    }
}

/// The service of the SigV4 credential scope: `Credential=AKID/DATE/REGION/SERVICE/aws4_request`.
fn signing_service(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?;
    let scope = credential.split([',', ' ']).next()?;
    scope.split('/').nth(3).map(str::to_owned)
}

/// The operation of a REST route the proxy follows; any other route is named by its
/// method and path shape (`POST /clusters/*/update-config`).
fn rest_operation(service: &str, method: &Method, path: &str) -> String {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let named = match (service, method.as_str(), segments.as_slice()) {
        ("eks", "POST", ["clusters"]) => Some("CreateCluster"),
        ("eks", "GET", ["clusters"]) => Some("ListClusters"),
        ("eks", "GET", ["clusters", _]) => Some("DescribeCluster"),
        ("eks", "DELETE", ["clusters", _]) => Some("DeleteCluster"),
        ("eks", "POST", ["clusters", _, "node-groups"]) => Some("CreateNodegroup"),
        ("eks", "GET", ["clusters", _, "node-groups"]) => Some("ListNodegroups"),
        ("eks", "GET", ["clusters", _, "node-groups", _]) => Some("DescribeNodegroup"),
        ("eks", "DELETE", ["clusters", _, "node-groups", _]) => Some("DeleteNodegroup"),
        ("eks", "POST", ["clusters", _, "addons"]) => Some("CreateAddon"),
        ("eks", "GET", ["clusters", _, "addons"]) => Some("ListAddons"),
        ("eks", "GET", ["clusters", _, "addons", _]) => Some("DescribeAddon"),
        ("eks", "DELETE", ["clusters", _, "addons", _]) => Some("DeleteAddon"),
        ("route53", "POST", [_, "hostedzone"]) => Some("CreateHostedZone"),
        ("route53", "GET", [_, "hostedzone"]) => Some("ListHostedZones"),
        ("route53", "GET", [_, "hostedzone", _]) => Some("GetHostedZone"),
        ("route53", "DELETE", [_, "hostedzone", _]) => Some("DeleteHostedZone"),
        ("route53", "POST", [_, "hostedzone", _, "rrset"]) => Some("ChangeResourceRecordSets"),
        ("route53", "GET", [_, "hostedzone", _, "rrset"]) => Some("ListResourceRecordSets"),
        ("route53", "GET", [_, "change", _]) => Some("GetChange"),
        _ => None,
    };
    match named {
        Some(name) => name.to_owned(),
        None => {
            let shape: Vec<&str> = segments
                .iter()
                .enumerate()
                .map(|(i, s)| if i % 2 == 0 { *s } else { "*" })
                .collect();
            format!("{method} {service}/{}", shape.join("/"))
        }
    }
}

fn decode(text: &str) -> String {
    form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| {
            if v.is_empty() {
                k.into_owned()
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The text of the first `<name>` element (no nesting: for leaf elements).
pub(crate) fn xml_element<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{name}>"))? + start;
    Some(&text[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(service: &str, extra: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!(
                "AWS4-HMAC-SHA256 Credential=testing/20261207/us-west-2/{service}/aws4_request, SignedHeaders=host, Signature=0"
            )
            .parse()
            .unwrap(),
        );
        for (k, v) in extra {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn query_calls_are_named_by_their_action_and_carry_their_client_token() {
        let h = headers(
            "ec2",
            &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )],
        );
        let call = Call::classify(
            &Method::POST,
            "/",
            &h,
            b"Action=CreateNatGateway&Version=2016-11-15&SubnetId=subnet-1&ClientToken=abc",
        );
        assert_eq!(call.service, "ec2");
        assert_eq!(call.operation, "CreateNatGateway");
        assert_eq!(call.protocol, Protocol::Ec2);
        assert_eq!(call.token, Some(("ClientToken".into(), "abc".into())));
        assert!(!call.is_read());
        let stripped = String::from_utf8(call.body_without_token().unwrap()).unwrap();
        assert!(!stripped.contains("ClientToken"), "{stripped}");
        assert!(stripped.contains("SubnetId=subnet-1"), "{stripped}");
    }

    #[test]
    fn cbor_calls_are_named_by_their_path_and_reads_are_known_by_name() {
        let h = headers(
            "monitoring",
            &[
                ("smithy-protocol", "rpc-v2-cbor"),
                ("content-type", "application/cbor"),
            ],
        );
        let call = Call::classify(
            &Method::POST,
            "/service/GraniteServiceVersion20100801/operation/DescribeAlarms",
            &h,
            b"\xa0",
        );
        assert_eq!(
            (call.operation.as_str(), call.protocol),
            ("DescribeAlarms", Protocol::Cbor)
        );
        assert!(call.is_read());
        let h = headers("dynamodb", &[("x-amz-target", "DynamoDB_20120810.Query")]);
        assert!(Call::classify(&Method::POST, "/", &h, b"{}").is_read());
    }

    #[test]
    fn a_request_mentions_an_id_only_as_a_whole_name() {
        let h = headers("eks", &[]);
        let call = Call::classify(
            &Method::GET,
            "/clusters/c1/node-groups/demo-system-nodes",
            &h,
            b"",
        );
        assert!(call.mentions("c1"));
        assert!(call.mentions("demo-system-nodes"));
        assert!(!call.mentions("demo-system"));
        assert!(!call.mentions("system-nodes"));
    }

    #[test]
    fn json_and_rest_calls_are_named_by_target_and_route() {
        let h = headers("kms", &[("x-amz-target", "TrentService.DescribeKey")]);
        let call = Call::classify(&Method::POST, "/", &h, br#"{"KeyId":"k-1"}"#);
        assert_eq!(
            (call.operation.as_str(), call.protocol),
            ("DescribeKey", Protocol::Json)
        );
        assert!(call.is_read());
        assert!(call.text.contains("k-1"));

        let h = headers("eks", &[("content-type", "application/json")]);
        let call = Call::classify(
            &Method::POST,
            "/clusters/c1/node-groups",
            &h,
            br#"{"nodegroupName":"system","clientRequestToken":"t-1"}"#,
        );
        assert_eq!(call.operation, "CreateNodegroup");
        assert_eq!(call.param("nodegroupName").as_deref(), Some("system"));
        assert_eq!(
            call.token,
            Some(("clientRequestToken".into(), "t-1".into()))
        );
        let call = Call::classify(&Method::GET, "/clusters/c1", &h, b"");
        assert_eq!(call.operation, "DescribeCluster");
        assert!(call.is_read());
        let call = Call::classify(&Method::POST, "/clusters/c1/update-config", &h, b"{}");
        assert_eq!(call.operation, "POST eks/clusters/*/update-config");
        assert!(!call.is_read());

        let h = headers("route53", &[]);
        let call = Call::classify(
            &Method::POST,
            "/2013-04-01/hostedzone",
            &h,
            b"<CreateHostedZoneRequest><Name>a.example</Name><CallerReference>r-1</CallerReference></CreateHostedZoneRequest>",
        );
        assert_eq!(call.operation, "CreateHostedZone");
        assert_eq!(call.token, Some(("CallerReference".into(), "r-1".into())));
    }
}
