//! `teardown-kubernetes` and `teardown-kubernetes-status`: the Kubernetes side of a
//! teardown, made before the cluster is deleted so that the controllers remove what they
//! made in AWS themselves (the teardown's sweep catches what they leave).
//!
//! Each call moves one phase on, and only when the phase before it is finished:
//!
//! 1. freeze: every NodePool gets `limits: {cpu: "0"}`, so Karpenter launches nothing new;
//!    then the Ingresses and LoadBalancer Services are deleted (the load balancer
//!    controller deletes their load balancers, target groups and security groups);
//! 2. once they are gone: the PersistentVolumeClaims (the CSI driver deletes their volumes);
//! 3. once those and their volumes are gone: the NodePools and node classes (Karpenter
//!    terminates their instances).
//!
//! `teardown-kubernetes-status` only reports what remains. Without a cluster (the
//! manifests only rendered) there is nothing to delete: the output says it was not
//! verified locally.

use std::path::PathBuf;

use apiary_core::step::{Done, StepContext};
use apiary_core::{Error, Result};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use serde::Serialize;
use serde_json::json;

use crate::apply::kube_error;
use crate::{Target, WorkloadsAction};

#[derive(Debug, Clone, Serialize)]
pub struct TeardownOutput {
    /// Whether a cluster was there to act on (false when only rendered).
    pub verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub folder: Option<PathBuf>,
    /// What is still in the cluster: `Kind namespace/name`.
    pub remaining: Vec<String>,
    /// What this call asked Kubernetes to delete.
    pub deleted: Vec<String>,
    pub detail: String,
}

/// Karpenter's and EKS Auto Mode's custom resources.
fn custom(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: format!("{group}/{version}"),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    }
}

fn node_pools() -> ApiResource {
    custom("karpenter.sh", "v1", "NodePool", "nodepools")
}

fn node_claims() -> ApiResource {
    custom("karpenter.sh", "v1", "NodeClaim", "nodeclaims")
}

fn node_classes() -> [ApiResource; 2] {
    [
        custom("karpenter.k8s.aws", "v1", "EC2NodeClass", "ec2nodeclasses"),
        custom("eks.amazonaws.com", "v1", "NodeClass", "nodeclasses"),
    ]
}

/// A teardown re-run after the cluster is gone (or one of a deployment that never got
/// one) has nothing to delete in Kubernetes: ready, saying so. `None` for every other
/// action, and while the cluster exists.
pub async fn without_cluster(
    deps: &crate::Deps,
    step: &StepContext<'_, WorkloadsAction>,
) -> Result<Option<Done<TeardownOutput>>> {
    let teardown = matches!(
        step.action,
        WorkloadsAction::TeardownKubernetes | WorkloadsAction::TeardownKubernetesStatus
    );
    if !teardown || deps.kube != crate::KubeAccess::Eks {
        return Ok(None);
    }
    let cluster = step
        .layers
        .cluster
        .as_ref()
        .map(|c| c.cluster_name.clone())
        .unwrap_or_else(|| step.names.resource("eks"));
    let found = apiary_core::aws::answer_or_none(
        format!("DescribeCluster {cluster}"),
        deps.eks.describe_cluster().name(&cluster).send(),
        |e| e.is_resource_not_found_exception(),
    )
    .await?;
    if found.and_then(|f| f.cluster).is_some() {
        return Ok(None);
    }
    let detail = format!("the EKS cluster {cluster} is gone: nothing left to delete in Kubernetes");
    Ok(Some(
        Done::ready(TeardownOutput {
            verified: true,
            folder: None,
            remaining: Vec::new(),
            deleted: Vec::new(),
            detail: detail.clone(),
        })
        .with_detail(detail),
    ))
}

pub async fn teardown(
    step: &StepContext<'_, WorkloadsAction>,
    target: Target,
) -> Result<Done<TeardownOutput>> {
    let delete = step.action == WorkloadsAction::TeardownKubernetes;
    let client = match target {
        Target::Render(folder) => {
            let detail = format!(
                "not verified locally: the manifests were rendered to {}, there is no cluster \
                 whose Ingresses, Services, volumes and node pools could be deleted; on AWS they \
                 are deleted here, and the teardown's sweep removes whatever their controllers leave",
                folder.display()
            );
            return Ok(Done::ready(TeardownOutput {
                verified: false,
                folder: Some(folder),
                remaining: Vec::new(),
                deleted: Vec::new(),
                detail: detail.clone(),
            })
            .with_detail(detail));
        }
        Target::Apply { client, .. } => client,
    };
    let mut deleted = Vec::new();
    if delete {
        freeze(&client).await?;
    }
    let balancers = load_balancer_objects(&client).await?;
    if delete {
        for (kind, namespace, name) in &balancers {
            delete_namespaced(&client, kind, namespace, name).await?;
            deleted.push(format!("{kind} {namespace}/{name}"));
        }
    }
    let mut remaining: Vec<String> = balancers
        .iter()
        .map(|(kind, ns, name)| format!("{kind} {ns}/{name}"))
        .collect();
    let claims = list_all::<PersistentVolumeClaim>(&client, "PersistentVolumeClaim").await?;
    let volumes = list_all::<PersistentVolume>(&client, "PersistentVolume").await?;
    if delete && balancers.is_empty() {
        for claim in &claims {
            let (ns, name) = names(&claim.metadata);
            delete_namespaced(&client, "PersistentVolumeClaim", &ns, &name).await?;
            deleted.push(format!("PersistentVolumeClaim {ns}/{name}"));
        }
    }
    remaining.extend(claims.iter().map(|c| {
        let (ns, name) = names(&c.metadata);
        format!("PersistentVolumeClaim {ns}/{name}")
    }));
    remaining.extend(volumes.iter().map(|v| {
        format!(
            "PersistentVolume {}",
            v.metadata.name.clone().unwrap_or_default()
        )
    }));
    let pools = list_custom(&client, &node_pools()).await?;
    let mut classes = Vec::new();
    for resource in node_classes() {
        for name in list_custom(&client, &resource).await? {
            classes.push((resource.clone(), name));
        }
    }
    let node_claims = list_custom(&client, &node_claims()).await?;
    if delete && balancers.is_empty() && claims.is_empty() && volumes.is_empty() {
        for pool in &pools {
            delete_custom(&client, &node_pools(), pool).await?;
            deleted.push(format!("NodePool {pool}"));
        }
        for (resource, name) in &classes {
            delete_custom(&client, resource, name).await?;
            deleted.push(format!("{} {name}", resource.kind));
        }
    }
    remaining.extend(pools.iter().map(|p| format!("NodePool {p}")));
    remaining.extend(classes.iter().map(|(r, n)| format!("{} {n}", r.kind)));
    remaining.extend(node_claims.iter().map(|c| format!("NodeClaim {c}")));
    let detail = if remaining.is_empty() {
        "no Ingress, LoadBalancer Service, volume or node pool is left".to_owned()
    } else {
        format!(
            "{} objects remain: {}",
            remaining.len(),
            remaining.join(", ")
        )
    };
    let pending = remaining
        .iter()
        .map(|r| format!("{r} is still in the cluster"))
        .collect();
    Ok(Done::pending(
        TeardownOutput {
            verified: true,
            folder: None,
            remaining,
            deleted,
            detail: detail.clone(),
        },
        pending,
    )
    .with_detail(detail))
}

fn names(meta: &kube::core::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// `limits: {cpu: "0"}` on every NodePool: Karpenter launches no node while the rest goes.
/// A JSON merge patch, not an apply: applying only the limits with the field manager that
/// applied the NodePool would drop every other field it owns (spec.template) and the API
/// server would refuse the object.
async fn freeze(client: &kube::Client) -> Result<()> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &node_pools());
    for pool in list_custom(client, &node_pools()).await? {
        let patch = json!({"spec": {"limits": {"cpu": "0"}}});
        match api
            .patch(&pool, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(err) => return Err(kube_error(&format!("NodePool {pool}"), "freeze", err, true)),
        }
    }
    Ok(())
}

/// Ingresses and Services of type LoadBalancer, in every namespace: (kind, ns, name).
async fn load_balancer_objects(client: &kube::Client) -> Result<Vec<(String, String, String)>> {
    let mut found = Vec::new();
    for ingress in list_all::<Ingress>(client, "Ingress").await? {
        let (ns, name) = names(&ingress.metadata);
        found.push(("Ingress".to_owned(), ns, name));
    }
    for service in list_all::<Service>(client, "Service").await? {
        let balancer =
            service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
        if balancer {
            let (ns, name) = names(&service.metadata);
            found.push(("Service".to_owned(), ns, name));
        }
    }
    Ok(found)
}

async fn list_all<K>(client: &kube::Client, kind: &str) -> Result<Vec<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    api.list(&ListParams::default())
        .await
        .map(|list| list.items)
        .map_err(|err| kube_error(&format!("{kind}s"), "list", err, false))
}

/// Names of a custom resource's objects; none when the cluster does not serve the type.
async fn list_custom(client: &kube::Client, resource: &ApiResource) -> Result<Vec<String>> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list
            .items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
        Err(err) => Err(kube_error(
            &format!("{}s", resource.kind),
            "list",
            err,
            true,
        )),
    }
}

async fn delete_custom(client: &kube::Client, resource: &ApiResource, name: &str) -> Result<()> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(kube_error(
            &format!("{} {name}", resource.kind),
            "delete",
            err,
            true,
        )),
    }
}

async fn delete_namespaced(
    client: &kube::Client,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<()> {
    let params = DeleteParams::background();
    let result = match kind {
        "Ingress" => Api::<Ingress>::namespaced(client.clone(), namespace)
            .delete(name, &params)
            .await
            .map(|_| ()),
        "Service" => Api::<Service>::namespaced(client.clone(), namespace)
            .delete(name, &params)
            .await
            .map(|_| ()),
        "PersistentVolumeClaim" => {
            Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
                .delete(name, &params)
                .await
                .map(|_| ())
        }
        other => return Err(Error::fatal(format!("no delete for kind {other}"))),
    };
    match result {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(err) => Err(kube_error(
            &format!("{kind} {namespace}/{name}"),
            "delete",
            err,
            false,
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use apiary_core::fixtures::Fixture;
    use apiary_core::naming::Layer;
    use apiary_core::step::{self, Recorder, Step};
    use async_trait::async_trait;
    use serde_json::{Value, json};

    use super::*;
    use crate::fake_api::{self, Reply};
    use crate::output::Output;
    use crate::test_support::mock_deps;
    use crate::{Deps, KubeAccess};

    struct Against {
        deps: Deps,
        client: kube::Client,
    }

    #[async_trait]
    impl Step for Against {
        const LAYER: Layer = Layer::Workloads;
        type Action = WorkloadsAction;
        type Output = Output;

        async fn run(&self, step: &StepContext<'_, WorkloadsAction>) -> Result<Done<Output>> {
            let target = Target::Apply {
                client: self.client.clone(),
                via: "eks",
                auto_mode: true,
            };
            crate::run_on(&self.deps, step, target).await
        }

        fn state(&self) -> &dyn Recorder {
            self.deps.state()
        }
    }

    /// A cluster holding an Ingress, a LoadBalancer Service, a ClusterIP Service, a PVC,
    /// a NodePool and an Auto Mode NodeClass; deletes remove them at once.
    fn cluster() -> Arc<Mutex<BTreeMap<&'static str, Vec<Value>>>> {
        let object = |ns: Option<&str>, name: &str| match ns {
            Some(ns) => json!({"metadata": {"namespace": ns, "name": name}}),
            None => json!({"metadata": {"name": name}}),
        };
        let mut lb = object(Some("honeyhive"), "ingestion-nlb");
        lb["spec"] = json!({"type": "LoadBalancer"});
        let mut internal = object(Some("honeyhive"), "ingestion");
        internal["spec"] = json!({"type": "ClusterIP"});
        Arc::new(Mutex::new(BTreeMap::from([
            (
                "/apis/networking.k8s.io/v1/ingresses",
                vec![object(Some("honeyhive"), "ingestion")],
            ),
            ("/api/v1/services", vec![lb, internal]),
            (
                "/api/v1/persistentvolumeclaims",
                vec![object(Some("honeyhive"), "data-0")],
            ),
            ("/api/v1/persistentvolumes", vec![]),
            (
                "/apis/karpenter.sh/v1/nodepools",
                vec![object(None, "default")],
            ),
            ("/apis/karpenter.sh/v1/nodeclaims", vec![]),
            (
                "/apis/eks.amazonaws.com/v1/nodeclasses",
                vec![object(None, "default")],
            ),
        ])))
    }

    fn respond(state: &Mutex<BTreeMap<&'static str, Vec<Value>>>, r: &fake_api::Recorded) -> Reply {
        let mut state = state.lock().unwrap();
        match r.method.as_str() {
            "GET" => match state.get(r.path.as_str()) {
                Some(items) => Reply::Json(200, json!({"metadata": {}, "items": items})),
                None => Reply::Json(404, fake_api::status(404, "NotFound", "no such type")),
            },
            "PATCH" => Reply::Json(
                200,
                json!({"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "default"}}),
            ),
            "DELETE" => {
                // `/…/namespaces/<ns>/<plural>/<name>` or `/…/<plural>/<name>` -> its list.
                let (list, name) = r.path.rsplit_once('/').unwrap();
                let list = match list.split_once("/namespaces/") {
                    Some((prefix, rest)) => format!("{prefix}/{}", rest.split_once('/').unwrap().1),
                    None => list.to_owned(),
                };
                if let Some(items) = state.get_mut(list.as_str()) {
                    items.retain(|o| o["metadata"]["name"] != json!(name));
                }
                Reply::Json(200, fake_api::status(200, "", "deleted"))
            }
            _ => Reply::Json(405, fake_api::status(405, "MethodNotAllowed", "no")),
        }
    }

    #[tokio::test]
    async fn deletes_load_balancers_first_then_volumes_then_node_pools() {
        let state = cluster();
        let shared = state.clone();
        let (client, requests) = fake_api::start(move |r| respond(&shared, r));
        let (deps, _) = mock_deps(&[], &[], KubeAccess::Eks, false);
        let step = Against { deps, client };
        let event = Fixture::test().event("teardown-kubernetes");

        let first = step::run(&step, event.clone()).await.unwrap();
        assert_eq!(first["ready"], false);
        assert_eq!(
            first["deleted"],
            json!([
                "Ingress honeyhive/ingestion",
                "Service honeyhive/ingestion-nlb"
            ]),
            "only the load balancers go first: {first}"
        );
        let second = step::run(&step, event.clone()).await.unwrap();
        assert_eq!(
            second["deleted"],
            json!(["PersistentVolumeClaim honeyhive/data-0"])
        );
        let third = step::run(&step, event.clone()).await.unwrap();
        assert_eq!(
            third["deleted"],
            json!(["NodePool default", "NodeClass default"])
        );
        let last = step::run(&step, event).await.unwrap();
        assert_eq!(last["ready"], true, "{last}");
        assert_eq!(last["remaining"], json!([]));
        drop(step);
        let seen = requests.await.unwrap();
        let freeze = seen
            .iter()
            .find(|r| r.method == "PATCH")
            .expect("the NodePool was frozen");
        assert_eq!(freeze.path, "/apis/karpenter.sh/v1/nodepools/default");
        assert_eq!(freeze.body.as_ref().unwrap()["spec"]["limits"]["cpu"], "0");
        // A merge patch touching only the limits: an apply by the NodePool's own field
        // manager would remove spec.template.
        assert_eq!(
            freeze.content_type.as_deref(),
            Some("application/merge-patch+json")
        );
        assert!(
            !freeze.query.contains_key("fieldManager"),
            "{:?}",
            freeze.query
        );
        assert_eq!(
            freeze.body.as_ref().unwrap(),
            &json!({"spec": {"limits": {"cpu": "0"}}})
        );
    }

    #[tokio::test]
    async fn without_a_cluster_it_says_it_was_not_verified() {
        let folder = std::env::temp_dir().join("apiary-workloads-teardown-render");
        let (deps, _) = mock_deps(&[], &[], KubeAccess::Render(folder), false);
        let out = crate::handle(&deps, Fixture::test().event("teardown-kubernetes"))
            .await
            .unwrap();
        assert_eq!(out["ready"], true);
        assert_eq!(out["verified"], false);
        assert!(
            out["detail"]
                .as_str()
                .unwrap()
                .contains("not verified locally")
        );
    }
}
