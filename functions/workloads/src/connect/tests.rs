use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use apiary_core::ErrorName;
use aws_sdk_eks::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_eks::operation::describe_cluster::DescribeClusterOutput;
use aws_sdk_eks::types::{Certificate, Cluster};
use aws_smithy_mocks::{Rule, mock};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::*;
use crate::KubeAccess;
use crate::test_support::mock_deps;

/// A self-signed test CA (no key kept): DescribeCluster returns the cluster CA like this.
const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBiDCCAS+gAwIBAgIUBf3ZBFTqXV5KWAOM4RZ1+MXP7BwwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOYXBpYXJ5LXRlc3QtY2EwIBcNMjYxMTIzMTIyMzI0WhgPMjEy
NjEwMzAxMjIzMjRaMBkxFzAVBgNVBAMMDmFwaWFyeS10ZXN0LWNhMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEveWt+4psFuGShJQttN0QMk05xu98470RpefAJa7I
3oP+hmXzQz0nhZFKZc2Kctlhciao2ajCviwOGpbpiFdLn6NTMFEwHQYDVR0OBBYE
FHLJxgp368izqXD+z2GsKnrRrurcMB8GA1UdIwQYMBaAFHLJxgp368izqXD+z2Gs
KnrRrurcMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDRwAwRAIgDGdk8zsQ
GMXiXQSDfGhFmKENesl26ZgdLqx+yqiaIXMCIE6wyyGASZLuqYL60wxjczzq/IAn
ZGOz1+y1ghSMu0C7
-----END CERTIFICATE-----
";

/// A one-request-per-connection HTTP server on a free loopback port that answers 404
/// and hands back the request heads it saw.
fn api_server() -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (seen, heads) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if seen
                .send(String::from_utf8_lossy(&head).into_owned())
                .is_err()
            {
                return;
            }
        }
    });
    (url, heads)
}

fn describe(status: ClusterStatus, endpoint: String) -> Rule {
    mock!(aws_sdk_eks::Client::describe_cluster)
        .match_requests(|r| r.name() == Some("apiary-acme-prod"))
        .then_output(move || {
            DescribeClusterOutput::builder()
                .cluster(
                    Cluster::builder()
                        .name("apiary-acme-prod")
                        .status(status.clone())
                        .endpoint(endpoint.clone())
                        .certificate_authority(
                            Certificate::builder()
                                .data(STANDARD.encode(TEST_CA))
                                .build(),
                        )
                        .build(),
                )
                .build()
        })
}

fn with_credentials(mut deps: Deps) -> Deps {
    deps.credentials = Some(SharedCredentialsProvider::new(Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        None,
        None,
        "test",
    )));
    deps
}

#[tokio::test]
async fn the_lambda_reaches_eks_with_a_bearer_token_for_the_cluster() {
    let (url, heads) = api_server();
    let rule = describe(ClusterStatus::Active, url);
    let (deps, _) = mock_deps(&[&rule], &[], KubeAccess::Eks, false);
    let deps = with_credentials(deps);
    let client = eks_client(&deps, "apiary-acme-prod", "us-west-2")
        .await
        .unwrap();
    // Any request shows the credentials; discovery is the first one the step makes.
    assert!(!serves_auto_mode(&client).await.unwrap());
    let head = heads.recv().unwrap();
    assert!(
        head.starts_with("GET /apis/karpenter.sh/v1 HTTP/1.1\r\n"),
        "{head}"
    );
    let authorization = head
        .lines()
        .find_map(|l| l.strip_prefix("authorization: "))
        .unwrap_or_else(|| panic!("no bearer token in {head}"));
    let token = authorization
        .strip_prefix("Bearer k8s-aws-v1.")
        .expect("an EKS token");
    let url = String::from_utf8(URL_SAFE_NO_PAD.decode(token).unwrap()).unwrap();
    assert!(
        url.starts_with(
            "https://sts.us-west-2.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
        ),
        "{url}"
    );
    assert!(url.contains("X-Amz-Credential=AKIDEXAMPLE%2F"), "{url}");
    assert!(
        url.contains("X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"),
        "{url}"
    );
    assert!(url.contains("X-Amz-Expires=60"), "{url}");
}

#[tokio::test]
async fn a_cluster_that_is_not_active_is_not_ready() {
    let rule = describe(ClusterStatus::Creating, "https://example.invalid".into());
    let (deps, _) = mock_deps(&[&rule], &[], KubeAccess::Eks, false);
    let Err(err) = eks_client(&with_credentials(deps), "apiary-acme-prod", "us-west-2").await
    else {
        panic!("a creating cluster is not ready");
    };
    assert_eq!(err.name(), ErrorName::NotReady);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_kubeconfig_names_the_cluster_and_an_unreachable_one_is_retryable() {
    let (url, heads) = api_server();
    let dir = std::env::temp_dir().join(format!(
        "apiary-kubeconfig-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kind\n  cluster:\n    server: {url}\n\
             users:\n- name: me\n  user:\n    token: local-token\n\
             contexts:\n- name: kind\n  context:\n    cluster: kind\n    user: me\n\
             current-context: kind\n"
        ),
    )
    .unwrap();
    let client = kubeconfig_client(&path).await.unwrap();
    assert!(!serves_auto_mode(&client).await.unwrap());
    let head = heads.recv().unwrap();
    assert!(head.contains("authorization: Bearer local-token"), "{head}");

    let Err(missing) = kubeconfig_client(&dir.join("nope")).await else {
        panic!("there is no kubeconfig there");
    };
    assert_eq!(missing.name(), ErrorName::InvalidInput);

    // Nothing listens on the port of a closed listener: a transport failure, retryable.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{closed}\n\
             users:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n\
             current-context: c\n"
        ),
    )
    .unwrap();
    let client = kubeconfig_client(&path).await.unwrap();
    let err = serves_auto_mode(&client).await.unwrap_err();
    assert_eq!(err.name(), ErrorName::Retryable, "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
