//! `scale-nodepool` (scale-pools): the ingestion NodePool server-side applied as rendered
//! from the record, then read back until it shows the recorded limits.
//!
//! The object applied is the whole NodePool provision applies (`manifests::node_pool`
//! over the same context), with the same field manager, so no field is dropped and the
//! next provision applies exactly the same object. The record's `cluster.pools.ingestion`
//! (written by the workflow's record step just before) sets its `limits` and disruption
//! budget. The step is its own poll; applying an unchanged object changes nothing.
//!
//! Without a cluster (the manifests rendered locally) there is no NodePool to change:
//! the output says "not verified locally" and names the limits it would apply.

use apiary_core::inputs::scale_pools::{self, Pool, ScalePoolsInput};
use apiary_core::step::{Done, StepContext};
use apiary_core::{Error, Result};
use kube::core::params::GetParams;
use serde::Serialize;
use serde_json::{Value, json};

use crate::apply::{self, kube_error};
use crate::manifests::{self, Context, Manifest};
use crate::{Target, WorkloadsAction};

#[derive(Debug, Clone, Serialize)]
pub struct ScaleOutput {
    /// The input named the system node group: nothing was done here.
    pub skipped: bool,
    /// The NodePool reached a cluster.
    pub applied: bool,
    /// The NodePool was read back with the recorded limits.
    pub verified: bool,
    /// The limits and disruption budgets applied (or that would be, locally).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub limits: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub budgets: Value,
    /// What the cluster held before this apply.
    #[serde(skip_serializing_if = "Value::is_null")]
    pub before: Value,
    pub detail: String,
}

/// The parts of a NodePool scale-pools changes.
fn scaled_parts(object: &Value) -> (Value, Value) {
    (
        object
            .pointer("/spec/limits")
            .cloned()
            .unwrap_or(Value::Null),
        object
            .pointer("/spec/disruption/budgets")
            .cloned()
            .unwrap_or(Value::Null),
    )
}

pub async fn scale(
    step: &StepContext<'_, WorkloadsAction>,
    target: Target,
) -> Result<Done<ScaleOutput>> {
    let input: ScalePoolsInput =
        apiary_core::inputs::from_options(scale_pools::WORKFLOW, &step.options)?;
    if input.pool != Pool::Ingestion {
        let detail = "skipped: the input scales the system node group".to_owned();
        return Ok(Done::ready(ScaleOutput {
            skipped: true,
            applied: false,
            verified: true,
            limits: Value::Null,
            budgets: Value::Null,
            before: Value::Null,
            detail: detail.clone(),
        }));
    }
    let ctx = Context::new(&step.spec, &step.layers)?;
    let manifest = manifests::node_pool(&ctx)?;
    let problems = crate::render::validate(&manifest, &manifest.body);
    if !problems.is_empty() {
        return Err(Error::Fatal(format!(
            "the NodePool is invalid:\n  - {}",
            problems.join("\n  - ")
        )));
    }
    let (limits, budgets) = scaled_parts(&manifest.body);
    match target {
        Target::Render(folder) => {
            let detail = format!(
                "not verified locally: there is no cluster (the manifests are rendered to {}); \
                 on AWS {} is server-side applied with limits {limits} and budgets {budgets} \
                 and read back; the next provision renders it from the record",
                folder.display(),
                manifest.display()
            );
            Ok(Done::ready(ScaleOutput {
                skipped: false,
                applied: false,
                verified: false,
                limits,
                budgets,
                before: Value::Null,
                detail: detail.clone(),
            })
            .with_detail(detail))
        }
        Target::Apply {
            auto_mode: false, ..
        } => {
            let detail = format!(
                "not applied: the cluster does not serve EKS Auto Mode's resources, so there \
                 is no {} to scale",
                manifest.display()
            );
            Ok(Done::ready(ScaleOutput {
                skipped: false,
                applied: false,
                verified: false,
                limits,
                budgets,
                before: Value::Null,
                detail: detail.clone(),
            })
            .with_detail(detail))
        }
        Target::Apply { client, .. } => {
            let before = read(&client, &manifest).await?;
            let applied = apply::apply(&client, &manifest).await?;
            if applied.changed {
                step.log.created(&format!("{}:limits", manifest.display()));
            }
            let after = read(&client, &manifest).await?;
            let (before_limits, before_budgets) = before
                .as_ref()
                .map(scaled_parts)
                .unwrap_or((Value::Null, Value::Null));
            let found = after.as_ref().map(scaled_parts);
            let verified = found.as_ref() == Some(&(limits.clone(), budgets.clone()));
            let detail = format!(
                "{}: before limits {before_limits} budgets {before_budgets}, after limits \
                 {limits} budgets {budgets}{}",
                manifest.display(),
                if verified { "" } else { "; not read back yet" }
            );
            let output = ScaleOutput {
                skipped: false,
                applied: true,
                verified,
                limits,
                budgets,
                before: json!({"limits": before_limits, "budgets": before_budgets}),
                detail: detail.clone(),
            };
            Ok(if verified {
                Done::ready(output).with_detail(detail)
            } else {
                Done::pending(output, vec![detail])
            })
        }
    }
}

/// The NodePool as the cluster holds it, `None` when missing.
pub(crate) async fn read(client: &kube::Client, manifest: &Manifest) -> Result<Option<Value>> {
    let what = manifest.display();
    let request = kube::core::Request::new(manifest.collection_path())
        .get(&manifest.name, &GetParams::default())
        .map_err(|e| Error::fatal(format!("cannot build the read of {what}: {e}")))?;
    match client.request::<Value>(request).await {
        Ok(object) => Ok(Some(object)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(err) => Err(kube_error(&what, "read", err, manifest.auto_mode_only)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use apiary_core::fixtures::Fixture;

    use super::*;
    use crate::KubeAccess;
    use crate::fake_api::{self, ApplyServer, Reply};
    use crate::test_support::{Against, mock_deps_over};

    #[test]
    fn the_default_budget_is_the_one_scale_pools_reports() {
        assert_eq!(manifests::DISRUPTION_BUDGET, scale_pools::DEFAULT_BUDGET);
    }

    /// Runs scale-nodepool over a record holding `pools`, with `input`.
    async fn run(pools: Value, input: Value, client: Option<kube::Client>) -> Value {
        let fixture = Fixture::test().with_spec(|spec| {
            spec["cluster"] = json!({"pools": pools});
        });
        let (deps, _) = mock_deps_over(&fixture, &[], &[], KubeAccess::Eks, false);
        let mut event = fixture.event("scale-nodepool");
        event["options"] = json!({"input": input});
        apiary_core::step::run(&Against { deps, client }, event)
            .await
            .expect("scale-nodepool")
    }

    fn ingestion() -> Value {
        json!({"pool": "ingestion", "cpu": 96, "allow_beyond_preset": true})
    }

    #[tokio::test]
    async fn the_recorded_limits_are_applied_and_read_back() {
        let server = Arc::new(Mutex::new(ApplyServer::default()));
        let api = server.clone();
        let (client, handle) = fake_api::start(move |r| api.lock().unwrap().respond(r));
        let pools = json!({"ingestion": {"cpu": 96, "memory_gib": 256}});
        let out = run(pools.clone(), ingestion(), Some(client.clone())).await;
        assert_eq!(out["ready"], json!(true), "{out}");
        assert_eq!(out["verified"], json!(true));
        assert_eq!(out["limits"], json!({"cpu": "96", "memory": "256Gi"}));
        assert_eq!(out["budgets"], json!([{"nodes": "10%"}]));
        assert_eq!(out["created"].as_array().map(Vec::len), Some(1), "{out}");
        // Run again (a retry, the next poll): ready at once, nothing changed.
        let again = run(pools, ingestion(), Some(client)).await;
        assert_eq!(again["ready"], json!(true));
        assert_eq!(again["created"], json!([]), "{again}");
        assert_eq!(again["before"]["limits"], out["limits"]);
        let requests = handle.await.unwrap();
        let apply = requests
            .iter()
            .find(|r| r.method == "PATCH")
            .expect("an apply");
        assert_eq!(
            apply.query.get("fieldManager").map(String::as_str),
            Some(apply::FIELD_MANAGER)
        );
        let body = apply.body.as_ref().unwrap();
        assert!(
            body.pointer("/spec/template/spec/requirements").is_some(),
            "the whole NodePool is applied, not only its limits: {body}"
        );
    }

    #[tokio::test]
    async fn a_frozen_pool_applies_zero_limits_and_no_disruption() {
        let server = Arc::new(Mutex::new(ApplyServer::default()));
        let api = server.clone();
        let (client, _handle) = fake_api::start(move |r| api.lock().unwrap().respond(r));
        let out = run(
            json!({"ingestion": {"cpu": 96, "frozen": true}}),
            json!({"pool": "ingestion", "freeze": true}),
            Some(client),
        )
        .await;
        assert_eq!(out["limits"], json!({"cpu": "0", "memory": "0Gi"}));
        assert_eq!(out["budgets"], json!([{"nodes": "0"}]));
    }

    #[tokio::test]
    async fn a_nodepool_that_does_not_read_back_is_pending() {
        // An API server that accepts the apply but still serves the old limits.
        let (client, _handle) = fake_api::start(|r| match r.method.as_str() {
            "GET" => Reply::Json(
                200,
                json!({"metadata": {"resourceVersion": "1"},
                       "spec": {"limits": {"cpu": "64", "memory": "256Gi"},
                                "disruption": {"budgets": [{"nodes": "10%"}]}}}),
            ),
            _ => Reply::Json(200, json!({"metadata": {"resourceVersion": "2"}})),
        });
        let out = run(json!({"ingestion": {"cpu": 96}}), ingestion(), Some(client)).await;
        assert_eq!(out["ready"], json!(false), "{out}");
        assert_eq!(out["verified"], json!(false));
    }

    #[tokio::test]
    async fn locally_it_says_not_verified_and_a_system_run_skips() {
        let out = run(json!({"ingestion": {"cpu": 96}}), ingestion(), None).await;
        assert_eq!(out["ready"], json!(true));
        assert_eq!(out["verified"], json!(false));
        assert!(
            out["detail"]
                .as_str()
                .unwrap()
                .contains("not verified locally")
        );
        let out = run(json!({}), json!({"pool": "system", "max": 5}), None).await;
        assert_eq!(out["skipped"], json!(true));
    }
}
