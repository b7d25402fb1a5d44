//! JSON Schemas of the custom resources Apiary creates. No cluster is there to check
//! them when the manifests are only rendered, so these carry the constraints the CRDs
//! enforce (enums, patterns, bounds, required fields) for the fields Apiary sets, and
//! reject fields it does not know.

use std::sync::LazyLock;

use serde_json::Value;

/// The upstream CustomResourceDefinitions vendored at a pinned release, each with the
/// SHA-256 of the file as released (`vendor/README.md` says where each comes from).
pub const VENDORED: &[Vendored] = &[Vendored {
    file: "secrets-store-csi-driver-v1.6.0/secretproviderclasses.yaml",
    text: include_str!("../../vendor/secrets-store-csi-driver-v1.6.0/secretproviderclasses.yaml"),
    sha256: "ef1623b34403bb11311fc92763b5b364ba456a166f1637eeec8d29052dd115f3",
}];

pub struct Vendored {
    pub file: &'static str,
    pub text: &'static str,
    pub sha256: &'static str,
}

/// secrets-store.csi.x-k8s.io/v1 SecretProviderClass, from the driver's own CRD.
pub fn secret_provider_class() -> &'static str {
    static SCHEMA: LazyLock<String> = LazyLock::new(|| {
        crd_schema(VENDORED[0].text, "v1").expect("the vendored SecretProviderClass CRD")
    });
    SCHEMA.as_str()
}

/// The JSON Schema of one version of a CustomResourceDefinition: its
/// `openAPIV3Schema`, with every object that lists its properties closed to others, as
/// the API server's strict field validation treats them (it prunes or refuses an unknown
/// field; a rendered manifest should have none).
pub fn crd_schema(crd_yaml: &str, version: &str) -> Result<String, String> {
    let crd: Value =
        serde_yaml::from_str(crd_yaml).map_err(|e| format!("the CRD is not YAML: {e}"))?;
    let mut schema = crd["spec"]["versions"]
        .as_array()
        .and_then(|versions| versions.iter().find(|v| v["name"] == version))
        .map(|v| v["schema"]["openAPIV3Schema"].clone())
        .filter(|s| s.is_object())
        .ok_or_else(|| format!("the CRD has no openAPIV3Schema for version {version}"))?;
    close_objects(&mut schema);
    serde_json::to_string(&schema).map_err(|e| e.to_string())
}

fn close_objects(schema: &mut Value) {
    let Some(map) = schema.as_object_mut() else {
        return;
    };
    if map.contains_key("properties") && !map.contains_key("additionalProperties") {
        map.insert("additionalProperties".to_owned(), Value::Bool(false));
    }
    for key in ["properties"] {
        if let Some(Value::Object(properties)) = map.get_mut(key) {
            properties.values_mut().for_each(close_objects);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = map.get_mut(key) {
            close_objects(inner);
        }
    }
}

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
    fn vendored_files_are_as_released() {
        use sha2::{Digest, Sha256};
        for vendored in VENDORED {
            let digest: String = Sha256::digest(vendored.text.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                digest, vendored.sha256,
                "vendor/{} differs from the release it was taken from",
                vendored.file
            );
        }
    }

    #[test]
    fn the_secret_provider_class_schema_is_the_crds_and_closed() {
        let base = json!({
            "apiVersion": "secrets-store.csi.x-k8s.io/v1",
            "kind": "SecretProviderClass",
            "metadata": {"name": "c", "namespace": "n"},
            "spec": {"provider": "aws", "parameters": {"objects": "[]"},
                     "secretObjects": [{"secretName": "s", "type": "Opaque",
                                        "data": [{"objectName": "f", "key": "K"}]}]}
        });
        assert_eq!(check(secret_provider_class(), &base), Ok(()));
        let mut unknown = base.clone();
        unknown["spec"]["secretObjects"][0]["data"][0]["objectAlias"] = json!("f");
        let problems = check(secret_provider_class(), &unknown).unwrap_err();
        assert!(
            problems[0].contains("/spec/secretObjects/0/data/0"),
            "{problems:?}"
        );
        let mut not_string = base;
        not_string["spec"]["parameters"]["usePodIdentity"] = json!(true);
        assert!(check(secret_provider_class(), &not_string).is_err());
    }

    #[test]
    fn schemas_compile() {
        for schema in [
            NODE_POOL,
            NODE_CLASS,
            INGRESS_CLASS_PARAMS,
            secret_provider_class(),
        ] {
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
