//! Answers the proxy writes or rewrites: AWS's errors in each protocol's shape, a
//! resource's status while AWS still creates it, and identifiers read from answers.

use serde_json::Value;

use crate::call::{Protocol, xml_element};
use crate::table::{IdFrom, Shape};

/// An answer: status, headers and body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// AWS's error `code` with `status`, written as the protocol writes errors.
pub fn error(protocol: Protocol, service: &str, code: &str, message: &str, status: u16) -> Answer {
    let request_id = "00000000-0000-0000-0000-apiaryproxy0";
    let xml = |body: String| Answer {
        status,
        headers: vec![("content-type".into(), "text/xml".into())],
        body: body.into_bytes(),
    };
    match protocol {
        Protocol::Ec2 => xml(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
        )),
        Protocol::RestXml if service == "s3" => xml(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
        )),
        Protocol::Query | Protocol::RestXml => xml(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )),
        Protocol::Cbor => Answer {
            status,
            headers: vec![
                ("content-type".into(), "application/cbor".into()),
                ("smithy-protocol".into(), "rpc-v2-cbor".into()),
                ("x-amzn-query-error".into(), format!("{code};Sender")),
                ("x-amzn-requestid".into(), request_id.into()),
            ],
            body: cbor_error(code, message),
        },
        Protocol::Json | Protocol::RestJson => Answer {
            status,
            headers: vec![
                ("content-type".into(), "application/x-amz-json-1.1".into()),
                ("x-amzn-errortype".into(), code.into()),
                ("x-amzn-requestid".into(), request_id.into()),
            ],
            body: serde_json::json!({"__type": code, "message": message})
                .to_string()
                .into_bytes(),
        },
    }
}

/// `{"__type": code, "message": message}` in CBOR (a map of two text strings), the
/// shape Smithy's RPC v2 CBOR protocol gives errors.
fn cbor_error(code: &str, message: &str) -> Vec<u8> {
    fn text(out: &mut Vec<u8>, value: &str) {
        let len = value.len();
        // Major type 3 (text string) with the length in the head.
        match len {
            0..=23 => out.push(0x60 | len as u8),
            24..=0xff => out.extend([0x78, len as u8]),
            _ => {
                out.push(0x79);
                out.extend((len.min(0xffff) as u16).to_be_bytes());
            }
        }
        out.extend(&value.as_bytes()[..len.min(0xffff)]);
    }
    let mut out = vec![0xa2];
    text(&mut out, "__type");
    text(&mut out, code);
    text(&mut out, "message");
    text(&mut out, message);
    out
}

/// The throttling error each service answers with, and its HTTP status.
pub fn throttling(protocol: Protocol, service: &str) -> (&'static str, u16) {
    match (protocol, service) {
        (Protocol::Ec2, _) => ("RequestLimitExceeded", 503),
        (_, "s3") => ("SlowDown", 503),
        (Protocol::Query | Protocol::RestXml | Protocol::Cbor, _) => ("Throttling", 400),
        (Protocol::Json, _) => ("ThrottlingException", 400),
        (Protocol::RestJson, _) => ("ThrottlingException", 429),
    }
}

/// The new resource's identifier, from the create's request parameter or its answer.
pub fn identifier(
    from: IdFrom,
    param: impl Fn(&str) -> Option<String>,
    answer: &[u8],
) -> Option<String> {
    let id = match from {
        IdFrom::Param(name) => param(name),
        IdFrom::Answer(pointer) if pointer.starts_with('/') => {
            serde_json::from_slice::<Value>(answer)
                .ok()?
                .pointer(pointer)?
                .as_str()
                .map(str::to_owned)
        }
        IdFrom::Answer(element) => {
            xml_element(&String::from_utf8_lossy(answer), element).map(str::to_owned)
        }
    }?;
    // Route 53 answers `/change/C1` and is asked `/2013-04-01/change/C1`: keep the last
    // segment, which every later mention carries.
    let id = id.rsplit('/').next().unwrap_or(&id).to_owned();
    (!id.is_empty()).then_some(id)
}

/// Whether `text` (an element's or member's value) names the resource `id`.
fn names(text: &str, id: &str) -> bool {
    text == id || text.ends_with(&format!("/{id}"))
}

/// Rewrites, in a read's answer, the status of resource `id` from `ready` to
/// `creating`; `None` when the answer shows no such resource with that status.
pub fn hold_creating(
    body: &[u8],
    shape: Shape,
    id: &str,
    ready: &str,
    creating: &str,
) -> Option<Vec<u8>> {
    match shape {
        Shape::Json {
            pointer,
            id: id_member,
            status,
        } => {
            let mut value: Value = serde_json::from_slice(body).ok()?;
            let object = value.pointer_mut(pointer)?.as_object_mut()?;
            if !object
                .get(id_member)
                .and_then(Value::as_str)
                .is_some_and(|v| names(v, id))
            {
                return None;
            }
            let current = object.get_mut(status)?;
            if current.as_str() != Some(ready) {
                return None;
            }
            *current = Value::String(creating.to_owned());
            serde_json::to_vec(&value).ok()
        }
        Shape::Xml {
            blocks,
            id: id_element,
            status,
        } => {
            let text = std::str::from_utf8(body).ok()?;
            let doc = roxmltree::Document::parse(text).ok()?;
            let mut ranges = Vec::new();
            let named = |n: &roxmltree::Node| blocks.iter().any(|b| n.has_tag_name(*b));
            for node in doc.descendants().filter(named) {
                let child = |name: &str| node.children().find(|c| c.has_tag_name(name));
                let ours = child(id_element)
                    .and_then(|c| c.text())
                    .is_some_and(|v| names(v.trim(), id));
                if !ours {
                    continue;
                }
                if let Some(text_node) = child(status).and_then(|c| c.first_child())
                    && text_node.text().map(str::trim) == Some(ready)
                {
                    ranges.push(text_node.range());
                }
            }
            if ranges.is_empty() {
                return None;
            }
            let mut out = text.to_owned();
            for range in ranges.into_iter().rev() {
                out.replace_range(range, creating);
            }
            Some(out.into_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_xml_answer_holds_only_the_named_resource_in_its_creating_state() {
        let body = br#"<DescribeNatGatewaysResponse><natGatewaySet>
            <item><natGatewayId>nat-1</natGatewayId><natGatewayAddressSet><item><state>available</state></item></natGatewayAddressSet><state>available</state></item>
            <item><natGatewayId>nat-2</natGatewayId><state>available</state></item>
        </natGatewaySet></DescribeNatGatewaysResponse>"#;
        let shape = Shape::Xml {
            blocks: &["item"],
            id: "natGatewayId",
            status: "state",
        };
        let out = hold_creating(body, shape, "nat-1", "available", "pending").unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("<natGatewayId>nat-1</natGatewayId><natGatewayAddressSet><item><state>available</state></item></natGatewayAddressSet><state>pending</state>"),
            "{out}"
        );
        assert!(
            out.contains("<natGatewayId>nat-2</natGatewayId><state>available</state>"),
            "{out}"
        );
        assert!(hold_creating(body, shape, "nat-3", "available", "pending").is_none());
        // A failed resource is not made to look as if it were still creating.
        let failed =
            br#"<r><item><natGatewayId>nat-1</natGatewayId><state>failed</state></item></r>"#;
        assert!(hold_creating(failed, shape, "nat-1", "available", "pending").is_none());
    }

    #[test]
    fn a_json_answer_holds_the_named_resource_and_no_other() {
        let shape = Shape::Json {
            pointer: "/cluster",
            id: "name",
            status: "status",
        };
        let body = br#"{"cluster":{"name":"c1","status":"ACTIVE","endpoint":"https://x"}}"#;
        let out: Value = serde_json::from_slice(
            &hold_creating(body, shape, "c1", "ACTIVE", "CREATING").unwrap(),
        )
        .unwrap();
        assert_eq!(out["cluster"]["status"], "CREATING");
        assert_eq!(out["cluster"]["endpoint"], "https://x");
        assert!(hold_creating(body, shape, "c2", "ACTIVE", "CREATING").is_none());
    }

    #[test]
    fn identifiers_come_from_the_request_or_the_answer() {
        let none = |_: &str| None;
        assert_eq!(
            identifier(
                IdFrom::Answer("vpcId"),
                none,
                b"<r><vpc><vpcId>vpc-1</vpcId></vpc></r>"
            )
            .as_deref(),
            Some("vpc-1")
        );
        assert_eq!(
            identifier(
                IdFrom::Answer("/KeyMetadata/KeyId"),
                none,
                br#"{"KeyMetadata":{"KeyId":"k-1"}}"#
            )
            .as_deref(),
            Some("k-1")
        );
        assert_eq!(
            identifier(
                IdFrom::Answer("Id"),
                none,
                b"<r><ChangeInfo><Id>/change/C9</Id></ChangeInfo></r>"
            )
            .as_deref(),
            Some("C9")
        );
        assert_eq!(
            identifier(
                IdFrom::Param("name"),
                |n: &str| (n == "name").then(|| "c1".into()),
                b""
            )
            .as_deref(),
            Some("c1")
        );
    }

    #[test]
    fn errors_are_written_as_each_protocol_writes_them() {
        let ec2 = error(
            Protocol::Ec2,
            "ec2",
            "RequestLimitExceeded",
            "slow down",
            503,
        );
        assert!(
            String::from_utf8(ec2.body)
                .unwrap()
                .contains("<Errors><Error><Code>RequestLimitExceeded</Code>")
        );
        let json = error(
            Protocol::RestJson,
            "eks",
            "ThrottlingException",
            "slow down",
            429,
        );
        assert!(
            json.headers
                .contains(&("x-amzn-errortype".into(), "ThrottlingException".into()))
        );
        assert_eq!(throttling(Protocol::Query, "rds"), ("Throttling", 400));
        let cbor = error(
            Protocol::Cbor,
            "monitoring",
            "Throttling",
            "Rate exceeded",
            400,
        );
        assert_eq!(
            cbor.body,
            [
                &[0xa2, 0x66][..],
                b"__type",
                &[0x6a],
                b"Throttling",
                &[0x67],
                b"message",
                &[0x6d],
                b"Rate exceeded"
            ]
            .concat()
        );
    }
}
