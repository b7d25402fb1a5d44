//! Who may read a release: the bucket policy `apiary publish` puts on each artifact
//! bucket, and a small evaluator of S3 bucket policies that shows what it allows.
//!
//! The policy lets other accounts do one thing: `s3:GetObject` on keys under
//! `releases/`. No listing (a reader must know the key, which the template names), no
//! write, no other key. With an organization id, only principals of that AWS
//! Organization (`aws:PrincipalOrgID`); without one, any AWS account, which makes the
//! bucket public in S3's sense (Block Public Access has to allow the policy).

use serde_json::{Value, json};

/// Every release lives under this prefix: `releases/<version>/`.
pub const RELEASES: &str = "releases/";

/// Who may read the releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readers {
    /// Any principal of any AWS account (a public bucket policy).
    AnyAccount,
    /// Principals of one AWS Organization (`o-...`): not public for S3.
    Organization(String),
}

impl Readers {
    pub fn is_public(&self) -> bool {
        matches!(self, Readers::AnyAccount)
    }
}

/// `o-` and 10 to 32 lowercase letters or digits: the AWS Organizations id format.
pub fn check_organization_id(id: &str) -> Result<(), String> {
    let valid = id.strip_prefix("o-").is_some_and(|rest| {
        (10..=32).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "--organization-id {id:?} is not an AWS Organizations id (o- and 10 to 32 \
             lowercase letters or digits)"
        ))
    }
}

/// The bucket policy of an artifact bucket. `tls_only` adds the statement that refuses
/// every request not made over TLS (left out only for the plain-HTTP emulator).
pub fn bucket_policy(bucket: &str, readers: &Readers, tls_only: bool) -> Value {
    let mut read = json!({
        "Sid": "ReadReleases",
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": format!("arn:aws:s3:::{bucket}/{RELEASES}*"),
    });
    if let Readers::Organization(id) = readers {
        read["Condition"] = json!({"StringEquals": {"aws:PrincipalOrgID": id}});
    }
    let mut statements = vec![read];
    if tls_only {
        statements.push(json!({
            "Sid": "TlsOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// One request, as the evaluator sees it.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The caller's account.
    pub account: &'a str,
    /// The caller's organization, if it is in one.
    pub organization: Option<&'a str>,
    pub action: &'a str,
    /// `arn:aws:s3:::bucket` or `arn:aws:s3:::bucket/key`.
    pub resource: &'a str,
    pub secure_transport: bool,
}

/// What a bucket policy decides for a request from another account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// A statement denies it.
    ExplicitDeny,
    /// Nothing allows it: for another account, that is a refusal.
    ImplicitDeny,
}

/// Evaluates a bucket policy for a request from an account other than the bucket's
/// (so only the bucket policy can allow it): an explicit deny wins, then any allow.
///
/// It understands what S3 bucket policies of this kind use: `Principal` `*` or
/// `{"AWS": ...}` with account ids or ARNs, `Action` and `Resource` with `*` and `?`
/// wildcards (and `NotAction`/`NotResource`), and the condition operators
/// `StringEquals`, `StringNotEquals`, `StringLike` and `Bool` on `aws:PrincipalOrgID`,
/// `aws:PrincipalAccount` and `aws:SecureTransport`. A condition on any other key makes
/// its statement not apply: an unknown key is never taken for a match.
pub fn evaluate(policy: &Value, request: &Request<'_>) -> Decision {
    let statements = match &policy["Statement"] {
        Value::Array(items) => items.clone(),
        single @ Value::Object(_) => vec![single.clone()],
        _ => Vec::new(),
    };
    let mut allowed = false;
    for statement in &statements {
        if !applies(statement, request) {
            continue;
        }
        match statement["Effect"].as_str() {
            Some("Deny") => return Decision::ExplicitDeny,
            Some("Allow") => allowed = true,
            _ => {}
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

fn applies(statement: &Value, request: &Request<'_>) -> bool {
    principal_matches(&statement["Principal"], request.account)
        && listed(statement, "Action", "NotAction", request.action)
        && listed(statement, "Resource", "NotResource", request.resource)
        && conditions_hold(&statement["Condition"], request)
}

fn strings(value: &Value) -> Vec<&str> {
    match value {
        Value::String(s) => vec![s.as_str()],
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn principal_matches(principal: &Value, account: &str) -> bool {
    let ids = match principal {
        Value::String(s) => vec![s.as_str()],
        Value::Object(map) => map.get("AWS").map(strings).unwrap_or_default(),
        _ => Vec::new(),
    };
    ids.iter()
        .any(|id| *id == "*" || *id == account || id.split(':').nth(4) == Some(account))
}

fn listed(statement: &Value, key: &str, not_key: &str, value: &str) -> bool {
    if let Some(patterns) = statement.get(key) {
        strings(patterns).iter().any(|p| wildcard(p, value))
    } else if let Some(patterns) = statement.get(not_key) {
        !strings(patterns).iter().any(|p| wildcard(p, value))
    } else {
        false
    }
}

/// IAM's `*` (any run of characters) and `?` (one character), case-sensitively, except
/// that action names compare without case.
fn wildcard(pattern: &str, value: &str) -> bool {
    let (pattern, value) = if pattern.starts_with("s3:") || pattern == "*" {
        (pattern.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (pattern.to_owned(), value.to_owned())
    };
    matches(pattern.as_bytes(), value.as_bytes())
}

fn matches(pattern: &[u8], value: &[u8]) -> bool {
    match pattern.split_first() {
        None => value.is_empty(),
        Some((b'*', rest)) => (0..=value.len()).any(|skip| matches(rest, &value[skip..])),
        Some((b'?', rest)) => !value.is_empty() && matches(rest, &value[1..]),
        Some((c, rest)) => value.first() == Some(c) && matches(rest, &value[1..]),
    }
}

fn conditions_hold(conditions: &Value, request: &Request<'_>) -> bool {
    let Some(operators) = conditions.as_object() else {
        return conditions.is_null();
    };
    operators.iter().all(|(operator, tests)| {
        let Some(tests) = tests.as_object() else {
            return false;
        };
        tests.iter().all(|(key, wanted)| {
            let actual: Option<String> = match key.as_str() {
                "aws:PrincipalOrgID" => request.organization.map(str::to_owned),
                "aws:PrincipalAccount" => Some(request.account.to_owned()),
                "aws:SecureTransport" => Some(request.secure_transport.to_string()),
                _ => return false,
            };
            let wanted = strings(wanted);
            match (operator.as_str(), actual) {
                ("StringEquals" | "Bool", Some(actual)) => wanted.contains(&actual.as_str()),
                ("StringLike", Some(actual)) => wanted
                    .iter()
                    .any(|w| matches(w.as_bytes(), actual.as_bytes())),
                ("StringNotEquals", Some(actual)) => !wanted.contains(&actual.as_str()),
                // A missing key fails a positive test (no org: no PrincipalOrgID match).
                _ => false,
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUCKET: &str = "vendor-releases-us-west-2";

    fn ask(policy: &Value, action: &str, resource: &str) -> Decision {
        ask_as(policy, None, action, resource, true)
    }

    fn ask_as(
        policy: &Value,
        organization: Option<&str>,
        action: &str,
        resource: &str,
        secure_transport: bool,
    ) -> Decision {
        evaluate(
            policy,
            &Request {
                account: "210987654321",
                organization,
                action,
                resource,
                secure_transport,
            },
        )
    }

    fn object(key: &str) -> String {
        format!("arn:aws:s3:::{BUCKET}/{key}")
    }

    #[test]
    fn any_account_reads_release_objects_and_nothing_else() {
        let policy = bucket_policy(BUCKET, &Readers::AnyAccount, true);
        let release = object("releases/1.0.0/functions/keys.zip");
        assert_eq!(ask(&policy, "s3:GetObject", &release), Decision::Allow);
        assert_eq!(
            ask(
                &policy,
                "s3:GetObject",
                &object("releases/2.0.0/bootstrap.yaml")
            ),
            Decision::Allow
        );
        // Not other keys, not a key that only starts like the prefix.
        assert_eq!(
            ask(&policy, "s3:GetObject", &object("private/notes.txt")),
            Decision::ImplicitDeny
        );
        assert_eq!(
            ask(&policy, "s3:GetObject", &object("releases-old/x")),
            Decision::ImplicitDeny
        );
        // No list, no write, no delete, no policy or ACL change.
        let bucket = format!("arn:aws:s3:::{BUCKET}");
        for (action, resource) in [
            ("s3:ListBucket", bucket.as_str()),
            ("s3:ListBucketVersions", bucket.as_str()),
            ("s3:PutObject", release.as_str()),
            ("s3:DeleteObject", release.as_str()),
            ("s3:PutObjectAcl", release.as_str()),
            ("s3:GetObjectVersion", release.as_str()),
            ("s3:PutBucketPolicy", bucket.as_str()),
        ] {
            assert_eq!(
                ask(&policy, action, resource),
                Decision::ImplicitDeny,
                "{action}"
            );
        }
        // Over plain HTTP even a read is refused.
        assert_eq!(
            ask_as(&policy, None, "s3:GetObject", &release, false),
            Decision::ExplicitDeny
        );
    }

    #[test]
    fn an_organization_policy_admits_only_that_organization() {
        let readers = Readers::Organization("o-a1b2c3d4e5".into());
        let policy = bucket_policy(BUCKET, &readers, true);
        let release = object("releases/1.0.0/bootstrap.yaml");
        assert_eq!(
            ask_as(
                &policy,
                Some("o-a1b2c3d4e5"),
                "s3:GetObject",
                &release,
                true
            ),
            Decision::Allow
        );
        assert_eq!(
            ask_as(
                &policy,
                Some("o-zzzzzzzzzz"),
                "s3:GetObject",
                &release,
                true
            ),
            Decision::ImplicitDeny
        );
        assert_eq!(
            ask(&policy, "s3:GetObject", &release),
            Decision::ImplicitDeny
        );
        assert!(!readers.is_public());
        assert_eq!(
            policy["Statement"][0]["Condition"],
            json!({"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}})
        );
    }

    #[test]
    fn the_emulator_policy_has_no_tls_statement() {
        let policy = bucket_policy(BUCKET, &Readers::AnyAccount, false);
        assert_eq!(policy["Statement"].as_array().unwrap().len(), 1);
        assert_eq!(
            ask_as(
                &policy,
                None,
                "s3:GetObject",
                &object("releases/1/x"),
                false
            ),
            Decision::Allow
        );
    }

    #[test]
    fn the_evaluator_follows_iam_for_what_it_understands() {
        let policy = json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": ["arn:aws:iam::210987654321:root"]},
             "Action": ["s3:Get*"], "Resource": "arn:aws:s3:::b/a?c"},
            {"Effect": "Allow", "Principal": "*", "NotAction": "s3:Delete*",
             "Resource": "arn:aws:s3:::b/open/*"},
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::b/odd/*", "Condition": {"StringEquals": {"aws:SourceVpc": "v"}}}
        ]});
        assert_eq!(
            ask(&policy, "s3:GETOBJECT", "arn:aws:s3:::b/abc"),
            Decision::Allow
        );
        assert_eq!(
            ask(&policy, "s3:GetObject", "arn:aws:s3:::b/abbc"),
            Decision::ImplicitDeny
        );
        assert_eq!(
            ask(&policy, "s3:PutObject", "arn:aws:s3:::b/open/x"),
            Decision::Allow
        );
        assert_eq!(
            ask(&policy, "s3:DeleteObject", "arn:aws:s3:::b/open/x"),
            Decision::ImplicitDeny
        );
        // A condition key it does not know never matches.
        assert_eq!(
            ask(&policy, "s3:GetObject", "arn:aws:s3:::b/odd/x"),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn organization_ids() {
        assert!(check_organization_id("o-a1b2c3d4e5").is_ok());
        for bad in ["a1b2c3d4e5", "o-short", "o-A1B2C3D4E5", "o-a1b2c3d4e5-"] {
            assert!(check_organization_id(bad).is_err(), "{bad}");
        }
    }
}
