//! JSON Schemas of the custom resources Apiary creates. No cluster is there to check
//! them when the manifests are only rendered, so these carry the constraints the CRDs
//! enforce (enums, patterns, bounds, required fields) for the fields Apiary sets, and
//! reject fields it does not know.

use serde_json::Value;

/// karpenter.sh/v1 NodePool.
pub const NODE_POOL: &str = include_str!("schemas/nodepool.json");
/// eks.amazonaws.com/v1 NodeClass.
pub const NODE_CLASS: &str = include_str!("schemas/nodeclass.json");
/// eks.amazonaws.com/v1 IngressClassParams.
pub const INGRESS_CLASS_PARAMS: &str = include_str!("schemas/ingressclassparams.json");

/// Every problem `document` has against `schema`, each with its JSON pointer.
pub fn check(schema: &str, document: &Value) -> Result<(), Vec<String>> {
    let schema: Value = serde_json::from_str(schema)
        .map_err(|e| vec![format!("the schema itself is not JSON: {e}")])?;
    let validator = jsonschema::validator_for(&schema)
        .map_err(|e| vec![format!("the schema itself is invalid: {e}")])?;
    let problems: Vec<String> = validator
        .iter_errors(document)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schemas_compile() {
        for schema in [NODE_POOL, NODE_CLASS, INGRESS_CLASS_PARAMS] {
            let value: Value = serde_json::from_str(schema).unwrap();
            jsonschema::validator_for(&value).unwrap();
        }
    }

    #[test]
    fn node_pool_schema_rejects_what_the_crd_rejects() {
        let base = json!({
            "apiVersion": "karpenter.sh/v1",
            "kind": "NodePool",
            "metadata": {"name": "pool"},
            "spec": {
                "template": {"spec": {
                    "nodeClassRef": {"group": "eks.amazonaws.com", "kind": "NodeClass", "name": "c"},
                    "requirements": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}],
                    "expireAfter": "336h"
                }},
                "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "5m",
                               "budgets": [{"nodes": "10%"}]},
                "limits": {"cpu": "64", "memory": "256Gi"}
            }
        });
        assert_eq!(check(NODE_POOL, &base), Ok(()));
        let broken = |pointer: &str, value: Value| {
            let mut doc = base.clone();
            *doc.pointer_mut(pointer).unwrap() = value;
            check(NODE_POOL, &doc).expect_err(pointer)
        };
        let problems = broken("/spec/template/spec/requirements/0/operator", json!("Is"));
        assert!(
            problems[0].contains("/spec/template/spec/requirements/0/operator"),
            "{problems:?}"
        );
        broken("/spec/limits/memory", json!("256 GiB"));
        broken("/spec/disruption/consolidationPolicy", json!("Always"));
        broken("/spec/disruption/budgets/0/nodes", json!("110%"));
        broken("/spec/template/spec/expireAfter", json!("14d"));
        broken("/spec/template/spec/nodeClassRef", json!({"name": "c"}));
        broken("/spec/template/spec/requirements/0/values", json!([]));
        broken("/kind", json!("NodeClass"));
    }

    #[test]
    fn node_class_schema_refuses_the_reserved_name_and_bad_ids() {
        let base = json!({
            "apiVersion": "eks.amazonaws.com/v1",
            "kind": "NodeClass",
            "metadata": {"name": "ours"},
            "spec": {"role": "node-role", "subnetSelectorTerms": [{"id": "subnet-0abc"}],
                     "securityGroupSelectorTerms": [{"id": "sg-0abc"}]}
        });
        assert_eq!(check(NODE_CLASS, &base), Ok(()));
        let mut named_default = base.clone();
        named_default["metadata"]["name"] = json!("default");
        assert!(check(NODE_CLASS, &named_default).is_err());
        let mut bad_subnet = base.clone();
        bad_subnet["spec"]["subnetSelectorTerms"][0]["id"] = json!("vpc-0abc");
        assert!(check(NODE_CLASS, &bad_subnet).is_err());
        let mut restricted_tag = base;
        restricted_tag["spec"]["tags"] = json!({"karpenter.sh/nodepool": "x"});
        assert!(check(NODE_CLASS, &restricted_tag).is_err());
    }
}
