//! The EKS bearer token, made the way `aws eks get-token` and aws-iam-authenticator make
//! it: a presigned STS `GetCallerIdentity` URL whose signature covers the
//! `x-k8s-aws-id: <cluster>` header, base64url-encoded without padding behind the
//! `k8s-aws-v1.` prefix. The API server's authenticator calls that URL; STS answers with
//! the caller's identity, which an EKS access entry maps to Kubernetes permissions.

use std::time::{Duration, SystemTime};

use apiary_core::sigv4::uri_encode;
use apiary_core::{Error, Result};
use aws_sdk_eks::config::Credentials;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The header that binds a token to one cluster.
pub const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";
/// How long the presigned URL is valid, as the aws CLI sets it.
pub const EXPIRES_IN: Duration = Duration::from_secs(60);
const QUERY: &str = "Action=GetCallerIdentity&Version=2011-06-15";

/// The regional STS endpoint the token is presigned for.
pub fn sts_endpoint(region: &str) -> String {
    let suffix = apiary_core::aws::dns_suffix(region);
    format!("https://sts.{region}.{suffix}/")
}

/// The presigned `GetCallerIdentity` URL for `cluster`, signed at `time`.
///
/// Parameters are laid out in the order botocore uses (operation parameters, then the
/// signing parameters with the signature last), so the token is byte-for-byte what the
/// aws CLI would produce for the same credentials and clock.
pub fn presigned_url(
    cluster: &str,
    region: &str,
    credentials: &Credentials,
    time: SystemTime,
) -> Result<String> {
    let base = sts_endpoint(region);
    let url = format!("{base}?{QUERY}");
    let identity: Identity = credentials.clone().into();
    let signed = apiary_core::sigv4::presign_get(
        &format!("EKS token for {cluster}"),
        &url,
        "sts",
        region,
        &[(CLUSTER_ID_HEADER, cluster)],
        EXPIRES_IN,
        &identity,
        time,
    )?;
    let signed: Vec<(&str, &str)> = signed
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let order = [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
    ];
    let mut query = QUERY.to_owned();
    for name in order {
        if let Some((_, value)) = signed.iter().find(|(n, _)| *n == name) {
            query.push('&');
            query.push_str(name);
            query.push('=');
            query.push_str(&uri_encode(value));
        }
    }
    if signed.iter().any(|(n, _)| !order.contains(n)) {
        return Err(Error::fatal(format!(
            "EKS token: the signer returned unexpected parameters {signed:?}"
        )));
    }
    Ok(format!("{base}?{query}"))
}

/// The bearer token for `cluster`.
pub fn token(
    cluster: &str,
    region: &str,
    credentials: &Credentials,
    time: SystemTime,
) -> Result<String> {
    let url = presigned_url(cluster, region, credentials, time)?;
    Ok(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(url)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-02T03:04:05Z.
    fn fixed_clock() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_045)
    }

    fn example_credentials(session_token: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token.map(str::to_owned),
            None,
            "test",
        )
    }

    // The expected values below were computed independently with botocore 1.44.5 (the
    // library behind `aws eks get-token`), with the same credentials and clock:
    //
    //   session.set_credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    //   sts = session.create_client("sts", region_name="us-west-2",
    //                               endpoint_url="https://sts.us-west-2.amazonaws.com")
    //   sts.meta.events.register("before-sign.sts.GetCallerIdentity",
    //       lambda request, **kw: request.headers.__setitem__("x-k8s-aws-id", "apiary-acme-prod"))
    //   with mock.patch("botocore.auth.get_current_datetime",
    //                   return_value=datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)):
    //       url = sts.generate_presigned_url("get_caller_identity", Params={},
    //                                        ExpiresIn=60, HttpMethod="GET")
    //   token = "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
    const EXPECTED_URL: &str = "https://sts.us-west-2.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20260102%2Fus-west-2%2Fsts%2Faws4_request&X-Amz-Date=20260102T030405Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Signature=0f2b276418c896340246449216159e2118cc8d4bc345379e7af6ea7e0ba4cbdb";
    const EXPECTED_TOKEN: &str = "k8s-aws-v1.aHR0cHM6Ly9zdHMudXMtd2VzdC0yLmFtYXpvbmF3cy5jb20vP0FjdGlvbj1HZXRDYWxsZXJJZGVudGl0eSZWZXJzaW9uPTIwMTEtMDYtMTUmWC1BbXotQWxnb3JpdGhtPUFXUzQtSE1BQy1TSEEyNTYmWC1BbXotQ3JlZGVudGlhbD1BS0lERVhBTVBMRSUyRjIwMjYwMTAyJTJGdXMtd2VzdC0yJTJGc3RzJTJGYXdzNF9yZXF1ZXN0JlgtQW16LURhdGU9MjAyNjAxMDJUMDMwNDA1WiZYLUFtei1FeHBpcmVzPTYwJlgtQW16LVNpZ25lZEhlYWRlcnM9aG9zdCUzQngtazhzLWF3cy1pZCZYLUFtei1TaWduYXR1cmU9MGYyYjI3NjQxOGM4OTYzNDAyNDY0NDkyMTYxNTllMjExOGNjOGQ0YmMzNDUzNzllN2FmNmVhN2UwYmE0Y2JkYg";
    // Same computation with the session token "FwoGZXIvYXdzEXAMPLE/session+token=".
    const EXPECTED_URL_WITH_SESSION: &str = "https://sts.us-west-2.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20260102%2Fus-west-2%2Fsts%2Faws4_request&X-Amz-Date=20260102T030405Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE%2Fsession%2Btoken%3D&X-Amz-Signature=e677d45630fc676b4168562ec9abb411818c44d84a09e7c1eb70445ef59dbcad";

    #[test]
    fn token_matches_the_botocore_vector() {
        let creds = example_credentials(None);
        let url = presigned_url("apiary-acme-prod", "us-west-2", &creds, fixed_clock()).unwrap();
        assert_eq!(url, EXPECTED_URL);
        let token = token("apiary-acme-prod", "us-west-2", &creds, fixed_clock()).unwrap();
        assert_eq!(token, EXPECTED_TOKEN);
    }

    #[test]
    fn session_credentials_are_carried_and_signed() {
        let creds = example_credentials(Some("FwoGZXIvYXdzEXAMPLE/session+token="));
        let url = presigned_url("apiary-acme-prod", "us-west-2", &creds, fixed_clock()).unwrap();
        assert_eq!(url, EXPECTED_URL_WITH_SESSION);
    }

    #[test]
    fn url_is_a_sixty_second_presigned_get_caller_identity_bound_to_the_cluster() {
        let creds = example_credentials(None);
        let url = presigned_url("apiary-acme-prod", "us-west-2", &creds, fixed_clock()).unwrap();
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, "https://sts.us-west-2.amazonaws.com/");
        let params: Vec<(&str, &str)> = query
            .split('&')
            .map(|kv| kv.split_once('=').unwrap())
            .collect();
        let get = |k: &str| params.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        assert_eq!(get("Action"), Some("GetCallerIdentity"));
        assert_eq!(get("Version"), Some("2011-06-15"));
        assert_eq!(get("X-Amz-Expires"), Some("60"));
        assert_eq!(get("X-Amz-Algorithm"), Some("AWS4-HMAC-SHA256"));
        assert_eq!(get("X-Amz-SignedHeaders"), Some("host%3Bx-k8s-aws-id"));
        assert_eq!(
            get("X-Amz-Credential"),
            Some("AKIDEXAMPLE%2F20260102%2Fus-west-2%2Fsts%2Faws4_request")
        );
        assert_eq!(get("X-Amz-Signature").map(str::len), Some(64));
        // The signature covers the cluster name: another cluster, another signature.
        let other = presigned_url("apiary-other", "us-west-2", &creds, fixed_clock()).unwrap();
        assert_ne!(other, url);
        assert_eq!(other[..other.len() - 64], url[..url.len() - 64]);
    }

    #[test]
    fn token_is_unpadded_base64url_of_the_url() {
        let creds = example_credentials(Some("a/b+c=="));
        for cluster in ["a", "ab", "abc", "apiary-acme-prod"] {
            let token = token(cluster, "eu-central-1", &creds, fixed_clock()).unwrap();
            let encoded = token.strip_prefix(TOKEN_PREFIX).expect("prefix");
            assert!(
                !encoded.contains(['=', '+', '/']),
                "{encoded} is not unpadded base64url"
            );
            let url = String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap();
            assert_eq!(
                url,
                presigned_url(cluster, "eu-central-1", &creds, fixed_clock()).unwrap()
            );
            assert!(url.starts_with("https://sts.eu-central-1.amazonaws.com/?Action="));
        }
    }

    #[test]
    fn china_regions_use_their_partition() {
        assert_eq!(
            sts_endpoint("cn-north-1"),
            "https://sts.cn-north-1.amazonaws.com.cn/"
        );
    }
}
