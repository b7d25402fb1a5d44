//! Reaching the cluster: as AWS does from the Lambda (DescribeCluster for the endpoint
//! and CA, an EKS bearer token for authentication), or through a kubeconfig file.

use std::path::Path;
use std::time::{Duration, SystemTime};

use apiary_core::{Error, Result};
use aws_sdk_eks::config::ProvideCredentials;
use aws_sdk_eks::types::ClusterStatus;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};

use crate::Deps;
use crate::apply::kube_error;

/// Per-request read timeout: no call this step makes streams or watches.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A client for the EKS cluster `cluster`, authenticated with a fresh bearer token.
pub async fn eks_client(deps: &Deps, cluster: &str, region: &str) -> Result<kube::Client> {
    let described = deps
        .eks
        .describe_cluster()
        .name(cluster)
        .send()
        .await
        .map_err(|e| Error::aws(format!("DescribeCluster {cluster}"), e))?
        .cluster
        .ok_or_else(|| Error::fatal(format!("DescribeCluster {cluster} returned no cluster")))?;
    if described.status != Some(ClusterStatus::Active) {
        return Err(Error::NotReady {
            resource: format!("EKS cluster {cluster}"),
            detail: format!("status is {:?}", described.status),
        });
    }
    let endpoint = described
        .endpoint
        .filter(|e| !e.is_empty())
        .ok_or_else(|| Error::NotReady {
            resource: format!("EKS cluster {cluster}"),
            detail: "no API endpoint yet".into(),
        })?;
    let ca = described
        .certificate_authority
        .and_then(|c| c.data)
        .filter(|d| !d.is_empty())
        .ok_or_else(|| Error::NotReady {
            resource: format!("EKS cluster {cluster}"),
            detail: "no certificate authority yet".into(),
        })?;
    let provider = deps
        .credentials
        .as_ref()
        .ok_or_else(|| Error::fatal("no AWS credentials are configured to sign the EKS token"))?;
    let credentials = provider
        .provide_credentials()
        .await
        .map_err(|e| Error::Aws {
            operation: "load AWS credentials for the EKS token".into(),
            code: None,
            message: e.to_string(),
            retryable: true,
        })?;
    let token = crate::token::token(cluster, region, &credentials, SystemTime::now())?;
    client_from(
        eks_kubeconfig(&endpoint, &ca, &token),
        &format!("EKS cluster {cluster}"),
    )
    .await
}

/// The in-memory kubeconfig for an EKS cluster.
pub fn eks_kubeconfig(endpoint: &str, certificate_authority: &str, token: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "eks", "cluster": {
            "server": endpoint,
            "certificate-authority-data": certificate_authority
        }}],
        "users": [{"name": "apiary", "user": {"token": token}}],
        "contexts": [{"name": "eks", "context": {"cluster": "eks", "user": "apiary"}}],
        "current-context": "eks"
    })
}

async fn client_from(kubeconfig: Value, what: &str) -> Result<kube::Client> {
    let kubeconfig: Kubeconfig = serde_json::from_value(kubeconfig)
        .map_err(|e| Error::fatal(format!("kubeconfig for {what}: {e}")))?;
    from_kubeconfig(kubeconfig, what).await
}

async fn from_kubeconfig(kubeconfig: Kubeconfig, what: &str) -> Result<kube::Client> {
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| Error::fatal(format!("kubeconfig for {what}: {e}")))?;
    config.read_timeout = Some(READ_TIMEOUT);
    kube::Client::try_from(config)
        .map_err(|e| Error::fatal(format!("cannot make a Kubernetes client for {what}: {e}")))
}

/// A client for the current context of a kubeconfig file.
pub async fn kubeconfig_client(path: &Path) -> Result<kube::Client> {
    let what = format!("kubeconfig {}", path.display());
    let kubeconfig =
        Kubeconfig::read_from(path).map_err(|e| Error::invalid_input(format!("{what}: {e}")))?;
    from_kubeconfig(kubeconfig, &what).await
}

/// Resource types that only an EKS Auto Mode cluster serves, by API group version.
const AUTO_MODE_RESOURCES: &[(&str, &[&str])] = &[
    ("karpenter.sh/v1", &["nodepools"]),
    (
        "eks.amazonaws.com/v1",
        &["nodeclasses", "ingressclassparams"],
    ),
];

/// Whether the cluster serves Karpenter's NodePool and EKS Auto Mode's NodeClass and
/// IngressClassParams (an EKS Auto Mode cluster does; kind or k3d do not).
pub async fn serves_auto_mode(client: &kube::Client) -> Result<bool> {
    for (group_version, wanted) in AUTO_MODE_RESOURCES {
        let path = format!("/apis/{group_version}");
        let request = http::Request::get(&path)
            .body(Vec::new())
            .map_err(|e| Error::fatal(format!("cannot build GET {path}: {e}")))?;
        let list: Value = match client.request(request).await {
            Ok(list) => list,
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(false),
            Err(err) => {
                return Err(kube_error(
                    &format!("API group {group_version}"),
                    "discovery",
                    err,
                    false,
                ));
            }
        };
        let served: Vec<&str> = list
            .get("resources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("name").and_then(Value::as_str))
            .collect();
        if !wanted.iter().all(|w| served.contains(w)) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
