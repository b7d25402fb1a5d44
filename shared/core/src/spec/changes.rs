//! What a provision may change on a deployment that exists. The record in the state table
//! is the source of truth; a new spec converges the data plane to it field by field,
//! except the fields below, which cannot change in place. Each is refused by name, with
//! what to do instead, before the lock is taken or anything is changed. The README's spec
//! table says, for every field, which of the three it is: converges, refused, or another
//! workflow's.

use super::{DeploymentSpec, Problem, SpecErrors};

/// Every field of `new` that may not differ from `stored` (the deployment's record), or
/// `Ok` when the change can be made in place.
pub fn check_change(stored: &DeploymentSpec, new: &DeploymentSpec) -> Result<(), SpecErrors> {
    let mut problems = Vec::new();
    let mut refuse = |path: &str, from: &str, to: &str, why: &str| {
        problems.push(Problem {
            path: path.to_owned(),
            message: format!("cannot change from {from} to {to} on an existing deployment: {why}"),
        });
    };
    const REBUILD: &str =
        "every resource is built around it; tear the deployment down and provision a new one";
    if stored.region != new.region {
        refuse("region", &stored.region, &new.region, REBUILD);
    }
    let cidr = |spec: &DeploymentSpec| {
        spec.vpc_cidr()
            .map(|c| c.to_string())
            .unwrap_or_else(|_| spec.network.vpc_cidr.clone().unwrap_or_default())
    };
    if cidr(stored) != cidr(new) {
        refuse("network.vpc_cidr", &cidr(stored), &cidr(new), REBUILD);
    }
    if stored.network.az_count != new.network.az_count {
        refuse(
            "network.az_count",
            &stored.network.az_count.to_string(),
            &new.network.az_count.to_string(),
            "the subnets, the cluster and the data stores are spread over the zones they \
             were built in; tear the deployment down and provision a new one",
        );
    }
    if stored.dns.domain != new.dns.domain {
        refuse(
            "dns.domain",
            &stored.dns.domain,
            &new.dns.domain,
            "the certificate, the private zone and the clients' configuration name it; \
             provision a new deployment for the new domain",
        );
    }
    if stored.cluster.version != new.cluster.version {
        refuse(
            "cluster.version",
            &stored.cluster.version,
            &new.cluster.version,
            "Kubernetes is upgraded one minor version at a time, gated on a recent backup, \
             by the upgrade workflow, which records the new version; provision never moves it",
        );
    }
    if stored.workloads.ingestion_image != new.workloads.ingestion_image {
        refuse(
            "workloads.ingestion_image",
            &stored.workloads.ingestion_image,
            &new.workloads.ingestion_image,
            "the upgrade workflow rolls the pods to a new image, waits for the rollout and \
             healthy targets, and puts the previous image back when the rollout fails; it \
             records the new image, so run upgrade with {\"image\": \"...\"}, or set the \
             recorded image in the spec",
        );
    }
    for (path, was, now) in [
        (
            "databases.documentdb",
            stored.databases.documentdb,
            new.databases.documentdb,
        ),
        (
            "databases.redis",
            stored.databases.redis,
            new.databases.redis,
        ),
    ] {
        if was && !now {
            refuse(
                path,
                "true",
                "false",
                "turning a data store off would delete it and its data, which only the \
                 teardown workflow does; it stays on",
            );
        }
    }
    problems.extend(super::pools::check_change(
        &stored.cluster.pools,
        &new.cluster.pools,
    ));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SpecErrors { problems })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(overrides: serde_json::Value) -> DeploymentSpec {
        let mut document = json!({"name": "acme", "dns": {"domain": "hh.example.com"}});
        merge(&mut document, overrides);
        DeploymentSpec::parse(&document).expect("valid spec")
    }

    fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
        match (into, from) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    #[test]
    fn fields_that_converge_in_place_pass() {
        let stored = spec(json!({}));
        for change in [
            json!({"size": "medium"}),
            json!({"network": {"ingress_cidrs": ["203.0.113.0/24"], "nat_mode": "per-az"}}),
            json!({"cluster": {"public_endpoint": true, "public_access_cidrs": ["198.51.100.0/24"]}}),
            json!({"databases": {"multi_az": true}}),
            json!({"storage": {"retention_days": 90}}),
            json!({"backup": {"retention_days": 14, "dr_region": "us-east-1"}}),
        ] {
            assert!(
                check_change(&stored, &spec(change.clone())).is_ok(),
                "{change}"
            );
        }
        let off = spec(json!({"databases": {"redis": false}}));
        assert!(
            check_change(&off, &stored).is_ok(),
            "turning a store on converges"
        );
    }

    #[test]
    fn fields_that_cannot_change_in_place_are_each_refused_by_name() {
        let stored = spec(json!({}));
        let new = spec(json!({
            "region": "eu-west-1",
            "network": {"vpc_cidr": "10.99.0.0/16", "az_count": 2},
            "dns": {"domain": "other.example.com"},
            "cluster": {"version": "1.34"},
            "databases": {"documentdb": false, "redis": false},
            "workloads": {"ingestion_image": "public.ecr.aws/honeyhive/ingestion:1.0.1"}
        }));
        let errors = check_change(&stored, &new).unwrap_err();
        assert_eq!(
            errors.paths(),
            [
                "region",
                "network.vpc_cidr",
                "network.az_count",
                "dns.domain",
                "cluster.version",
                "workloads.ingestion_image",
                "databases.documentdb",
                "databases.redis"
            ]
        );
        let text = errors.to_string();
        assert!(text.contains("from us-west-2 to eu-west-1"), "{text}");
        assert!(text.contains("upgrade workflow"), "{text}");
        assert!(text.contains("only the teardown workflow"), "{text}");
    }
}
