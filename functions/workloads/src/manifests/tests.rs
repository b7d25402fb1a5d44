use serde_json::{Value, json};

use super::*;
use crate::test_support::context;

pub(super) fn find<'a>(objects: &'a [Manifest], kind: &str, name: &str) -> &'a Manifest {
    objects
        .iter()
        .find(|m| m.kind == kind && m.name == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

pub(super) fn body<'a>(objects: &'a [Manifest], kind: &str, name: &str) -> &'a Value {
    &find(objects, kind, name).body
}

pub(super) fn built() -> Vec<Manifest> {
    build(&context()).expect("the manifests build")
}

#[test]
fn every_object_is_built_once_in_apply_order() {
    let objects = built();
    let order: Vec<String> = objects.iter().map(Manifest::display).collect();
    let ingestion = [
        "NodeClass apiary-ingestion",
        "NodePool apiary-ingestion",
        "ConfigMap kube-system/amazon-vpc-cni",
        "Namespace honeyhive",
        "ServiceAccount honeyhive/ingestion",
        "SecretProviderClass honeyhive/ingestion-credentials",
        "ConfigMap honeyhive/ingestion-endpoints",
        "Service honeyhive/ingestion",
        "Deployment honeyhive/ingestion",
        "HorizontalPodAutoscaler honeyhive/ingestion",
        "PodDisruptionBudget honeyhive/ingestion",
        "NetworkPolicy honeyhive/ingestion",
    ];
    let ingress = [
        "IngressClassParams apiary-alb",
        "IngressClass apiary-alb",
        "Ingress honeyhive/ingestion",
    ];
    let expected: Vec<&str> = ingestion
        .into_iter()
        .chain(super::monitoring_tests::STACK)
        .chain(ingress)
        .collect();
    assert_eq!(order, expected);
    for m in &objects {
        assert_eq!(
            m.body["apiVersion"],
            json!(m.api_version),
            "{}",
            m.display()
        );
        assert_eq!(m.body["kind"], json!(m.kind), "{}", m.display());
        assert_eq!(m.body["metadata"]["name"], json!(m.name), "{}", m.display());
        (m.validate)(&m.body).unwrap_or_else(|e| panic!("{}: {e}", m.display()));
    }
    // Building twice gives the same documents: an unchanged spec applies unchanged.
    let again = built();
    for (a, b) in objects.iter().zip(&again) {
        assert_eq!(a.body, b.body, "{}", a.display());
    }
}

#[test]
fn paths_follow_the_api_conventions() {
    let objects = built();
    assert_eq!(
        find(&objects, "Deployment", APP).object_path(),
        "/apis/apps/v1/namespaces/honeyhive/deployments/ingestion"
    );
    assert_eq!(
        find(&objects, "Namespace", NAMESPACE).object_path(),
        "/api/v1/namespaces/honeyhive"
    );
    assert_eq!(
        find(&objects, "ServiceAccount", SERVICE_ACCOUNT).object_path(),
        "/api/v1/namespaces/honeyhive/serviceaccounts/ingestion"
    );
    assert_eq!(
        find(&objects, "NodePool", NODE_POOL).object_path(),
        "/apis/karpenter.sh/v1/nodepools/apiary-ingestion"
    );
    assert_eq!(
        find(&objects, "IngressClassParams", INGRESS_CLASS).object_path(),
        "/apis/eks.amazonaws.com/v1/ingressclassparams/apiary-alb"
    );
    assert_eq!(
        find(&objects, "HorizontalPodAutoscaler", APP).object_path(),
        "/apis/autoscaling/v2/namespaces/honeyhive/horizontalpodautoscalers/ingestion"
    );
}

#[test]
fn pods_run_non_root_with_a_read_only_root_and_no_privilege() {
    let objects = built();
    let pod = &body(&objects, "Deployment", APP)["spec"]["template"]["spec"];
    assert_eq!(
        pod["securityContext"],
        json!({
            "fsGroup": 65532, "runAsGroup": 65532, "runAsNonRoot": true, "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"}
        })
    );
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    assert_eq!(
        container["securityContext"],
        json!({
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "privileged": false,
            "readOnlyRootFilesystem": true,
            "runAsGroup": 65532,
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "seccompProfile": {"type": "RuntimeDefault"}
        })
    );
    // With a read-only root, /tmp is the one writable place, and it is bounded.
    assert_eq!(
        container["volumeMounts"],
        json!([
            {"mountPath": "/tmp", "name": "tmp"},
            {"mountPath": "/mnt/credentials", "name": "credentials", "readOnly": true}
        ])
    );
    assert_eq!(
        pod["volumes"],
        json!([
            {"emptyDir": {"sizeLimit": "256Mi"}, "name": "tmp"},
            {"csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": true,
                     "volumeAttributes": {"secretProviderClass": "ingestion-credentials"}},
             "name": "credentials"}
        ])
    );
    // The namespace enforces the restricted Pod Security Standard.
    let ns = body(&objects, "Namespace", NAMESPACE);
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
}

#[test]
fn container_has_image_resources_and_probes() {
    let objects = built();
    let container = &body(&objects, "Deployment", APP)["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        "public.ecr.aws/honeyhive/ingestion:1.0.0"
    );
    assert_eq!(
        container["resources"],
        json!({"limits": {"cpu": "2", "memory": "2Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}})
    );
    assert_eq!(
        container["ports"],
        json!([{"containerPort": 8080, "name": "http", "protocol": "TCP"}])
    );
    assert_eq!(
        container["readinessProbe"],
        json!({
            "failureThreshold": 3, "httpGet": {"path": "/readyz", "port": "http", "scheme": "HTTP"},
            "initialDelaySeconds": 5, "periodSeconds": 10, "successThreshold": 1, "timeoutSeconds": 2
        })
    );
    assert_eq!(
        container["livenessProbe"],
        json!({
            "failureThreshold": 3, "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
            "initialDelaySeconds": 15, "periodSeconds": 20, "successThreshold": 1, "timeoutSeconds": 2
        })
    );
    assert_eq!(
        container["envFrom"],
        json!([{"configMapRef": {"name": "ingestion-endpoints", "optional": false}}])
    );
}

#[test]
fn pods_spread_over_zones_on_the_ingestion_pool() {
    let objects = built();
    let deployment = body(&objects, "Deployment", APP);
    let pod = &deployment["spec"]["template"]["spec"];
    let selector = json!({"matchLabels": {"app.kubernetes.io/name": "ingestion"}});
    assert_eq!(
        pod["topologySpreadConstraints"],
        json!([
            {"labelSelector": selector, "matchLabelKeys": ["pod-template-hash"], "maxSkew": 1,
             "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"},
            {"labelSelector": selector, "matchLabelKeys": ["pod-template-hash"], "maxSkew": 1,
             "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}
        ])
    );
    assert_eq!(
        pod["nodeSelector"],
        json!({"karpenter.sh/nodepool": "apiary-ingestion"})
    );
    assert_eq!(deployment["spec"]["selector"], selector);
    // The autoscaler owns the replica count.
    assert!(deployment["spec"].get("replicas").is_none());
    assert_eq!(
        deployment["spec"]["strategy"],
        json!({"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}, "type": "RollingUpdate"})
    );
}

#[test]
fn pods_use_the_pod_identity_service_account_without_an_api_token() {
    let objects = built();
    let pod = &body(&objects, "Deployment", APP)["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], SERVICE_ACCOUNT);
    assert_eq!(pod["automountServiceAccountToken"], false);
    let sa = body(&objects, "ServiceAccount", SERVICE_ACCOUNT);
    assert_eq!(sa["metadata"]["namespace"], NAMESPACE);
    assert_eq!(sa["automountServiceAccountToken"], false);
    // Pod Identity needs no IRSA annotation; the association names namespace + account.
    assert!(sa["metadata"].get("annotations").is_none());
    // The role's trust policy is scoped to exactly this namespace and service account.
    let trust = crate::pod_identity::trust_policy(apiary_core::fixtures::CLUSTER_ARN);
    let condition = &trust["Statement"][0]["Condition"]["StringEquals"];
    assert_eq!(condition["aws:RequestTag/kubernetes-namespace"], NAMESPACE);
    assert_eq!(
        condition["aws:RequestTag/kubernetes-service-account"],
        SERVICE_ACCOUNT
    );
    assert_eq!(
        condition["aws:RequestTag/eks-cluster-arn"],
        apiary_core::fixtures::CLUSTER_ARN
    );
}

#[test]
fn config_map_names_endpoints_never_credentials() {
    let objects = built();
    let data = &body(&objects, "ConfigMap", CONFIG_MAP)["data"];
    assert_eq!(data["AWS_REGION"], "us-west-2");
    assert_eq!(data["POSTGRES_HOST"], "pg.internal");
    assert_eq!(data["POSTGRES_PORT"], "5432");
    assert_eq!(data["DOCUMENTDB_ENABLED"], "false");
    assert!(data.get("DOCUMENTDB_HOST").is_none());
    assert_eq!(data["REDIS_HOST"], "redis.internal");
    assert_eq!(
        data["S3_BUCKET_METRICS"],
        "apiary-acme-prod-metrics-123456789012-us-west-2"
    );
    assert_eq!(data["SDK_ENDPOINT"], "https://honeyhive.acme.example.com");
    for (key, _) in data.as_object().unwrap() {
        assert!(
            !key.contains("PASSWORD") && !key.contains("TOKEN") && !key.contains("SECRET"),
            "{key}"
        );
    }
}

#[test]
fn credentials_come_from_the_synced_secret_read_with_the_pods_identity() {
    let objects = built();
    let class = body(&objects, "SecretProviderClass", credentials::CLASS);
    let spec = &class["spec"];
    assert_eq!(spec["provider"], "aws");
    assert_eq!(spec["parameters"]["usePodIdentity"], "true");
    let listed: Vec<credentials::AwsObject> =
        serde_yaml::from_str(spec["parameters"]["objects"].as_str().unwrap()).unwrap();
    let names: Vec<&str> = listed.iter().map(|o| o.object_name.as_str()).collect();
    assert_eq!(
        names,
        [
            "arn:aws:secretsmanager:us-west-2:123456789012:secret:apiary-acme-prod-postgres-app-GhIjKl",
            "arn:aws:secretsmanager:us-west-2:123456789012:secret:redis-AbCdEf"
        ],
        "one object per store the deployment has (DocumentDB is off here): the pods' own \
         user's secret, never the master's"
    );
    let keys: Vec<&str> = spec["secretObjects"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "POSTGRES_USERNAME",
            "POSTGRES_PASSWORD",
            "REDIS_USERNAME",
            "REDIS_AUTH_TOKEN"
        ]
    );
    let pod = &body(&objects, "Deployment", APP)["spec"]["template"]["spec"];
    let env: Vec<(&str, &str, &str)> = pod["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let by = &e["valueFrom"]["secretKeyRef"];
            (
                e["name"].as_str().unwrap(),
                by["name"].as_str().unwrap(),
                by["key"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(env.len(), keys.len());
    for ((name, secret, key), wanted) in env.iter().zip(&keys) {
        assert_eq!(
            (*name, *secret, *key),
            (*wanted, credentials::SECRET, *wanted)
        );
    }
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == credentials::VOLUME)
        .expect("the CSI volume");
    assert_eq!(volume["csi"]["driver"], credentials::CSI_DRIVER);
    assert_eq!(volume["csi"]["readOnly"], true);
    assert_eq!(
        volume["csi"]["volumeAttributes"]["secretProviderClass"],
        credentials::CLASS
    );
    let mount = pod["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == credentials::VOLUME)
        .expect("the CSI mount");
    assert_eq!(mount["readOnly"], true);
}

#[test]
fn a_class_whose_secret_takes_an_unmounted_file_or_no_pod_identity_is_refused() {
    let objects = built();
    let class = find(&objects, "SecretProviderClass", credentials::CLASS);
    let mut stray = class.body.clone();
    stray["spec"]["secretObjects"][0]["data"][0]["objectName"] = json!("postgres-pasword");
    let err = (class.validate)(&stray).unwrap_err();
    assert!(err.contains("which no object mounts"), "{err}");
    let mut no_identity = class.body.clone();
    no_identity["spec"]["parameters"]["usePodIdentity"] = json!("false");
    assert!(
        (class.validate)(&no_identity)
            .unwrap_err()
            .contains("usePodIdentity")
    );
    let mut by_name = class.body.clone();
    by_name["spec"]["parameters"]["objects"] = json!(
        "- objectName: apiary-acme-postgres\n  objectType: secretsmanager\n  objectAlias: postgres\n  jmesPath: []\n"
    );
    assert!(
        (class.validate)(&by_name)
            .unwrap_err()
            .contains("not a secret ARN")
    );
}

#[test]
fn a_changed_endpoint_rolls_the_pods() {
    let hash = |ctx: &Context| {
        let objects = build(ctx).unwrap();
        body(&objects, "Deployment", APP)["spec"]["template"]["metadata"]["annotations"]
            [CONFIG_HASH_ANNOTATION]
            .clone()
    };
    let ctx = context();
    let mut moved = context();
    moved.databases.postgres.as_mut().unwrap().host = "pg2.internal".into();
    assert_ne!(hash(&ctx), hash(&moved));
    assert_eq!(hash(&ctx), hash(&context()));
}

#[test]
fn autoscaler_and_budget_keep_the_service_up() {
    let objects = built();
    let hpa = &body(&objects, "HorizontalPodAutoscaler", APP)["spec"];
    assert_eq!(hpa["minReplicas"], 2);
    assert_eq!(hpa["maxReplicas"], 10);
    assert_eq!(
        hpa["scaleTargetRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "ingestion"})
    );
    assert_eq!(
        hpa["metrics"],
        json!([{"resource": {"name": "cpu", "target": {"averageUtilization": 70, "type": "Utilization"}},
                "type": "Resource"}])
    );
    let pdb = &body(&objects, "PodDisruptionBudget", APP)["spec"];
    assert_eq!(pdb["maxUnavailable"], 1);
    assert_eq!(
        pdb["selector"],
        json!({"matchLabels": {"app.kubernetes.io/name": "ingestion"}})
    );
}

#[test]
fn a_plain_cluster_gets_no_auto_mode_objects_and_no_pool_pinning() {
    let mut ctx = context();
    ctx.auto_mode = false;
    let objects = build(&ctx).unwrap();
    assert!(objects.iter().all(|m| !m.auto_mode_only), "{objects:?}");
    assert_eq!(objects.len(), 10);
    let pod = &body(&objects, "Deployment", APP)["spec"]["template"]["spec"];
    assert!(pod.get("nodeSelector").is_none());
    assert!(
        pod["containers"][0].get("env").is_none(),
        "no driver, no synced Secret"
    );
    assert_eq!(pod["volumes"].as_array().unwrap().len(), 1);
    assert!(
        body(&objects, "IngressClass", INGRESS_CLASS)["spec"]
            .get("parameters")
            .is_none()
    );
}

/// A PostgreSQL output without the pods' own user's secret (kept before it existed)
/// builds no credentials: refused, named, never the master's secret in its place.
#[test]
fn a_store_without_the_pods_user_secret_is_refused_not_given_the_master() {
    let spec = apiary_core::fixtures::Fixture::test().spec();
    let mut layers = apiary_core::fixtures::Fixture::test().layers;
    let postgres = layers
        .databases
        .as_mut()
        .unwrap()
        .postgres
        .as_mut()
        .unwrap();
    postgres.app_secret_arn = None;
    let master = postgres.secret_arn.clone();
    let err = build(&Context::new(&spec, &layers).unwrap()).unwrap_err();
    assert_eq!(err.name(), apiary_core::ErrorName::InvalidInput);
    let text = err.to_string();
    assert!(
        text.contains("layers.databases.postgres.app_secret_arn is missing"),
        "{text}"
    );
    assert!(!text.contains(&master), "{text}");
}

#[test]
fn context_refuses_layers_it_cannot_use() {
    let spec = apiary_core::fixtures::Fixture::test().spec();
    let mut layers = apiary_core::fixtures::Fixture::test().layers;
    layers.cluster.as_mut().unwrap().node_role_arn = "not-an-arn".into();
    let err = Context::new(&spec, &layers).unwrap_err();
    assert_eq!(err.name(), apiary_core::ErrorName::InvalidInput);
    assert!(err.to_string().contains("node_role_arn"), "{err}");

    let mut layers = apiary_core::fixtures::Fixture::test().layers;
    layers.cluster = None;
    let err = Context::new(&spec, &layers).unwrap_err();
    assert!(
        err.to_string().contains("layers.cluster is missing"),
        "{err}"
    );
}

#[test]
fn typed_validation_catches_a_misspelt_or_mistyped_field() {
    let objects = built();
    let deployment = find(&objects, "Deployment", APP);
    let mut typo = deployment.body.clone();
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = json!("Always");
    assert!((deployment.validate)(&typo).is_err());
    let mut wrong_type = deployment.body.clone();
    wrong_type["spec"]["minReadySeconds"] = json!("five");
    assert!((deployment.validate)(&wrong_type).is_err());
    let pool = find(&objects, "NodePool", NODE_POOL);
    let mut extra = pool.body.clone();
    extra["spec"]["limit"] = json!({"cpu": "1"});
    assert!((pool.validate)(&extra).is_err());
}

const CONNECTOR_SECRET: &str =
    "arn:aws:secretsmanager:us-west-2:123456789012:secret:twingate-AbCdEf";

#[test]
fn no_connector_secret_builds_no_connector() {
    let objects = built();
    assert!(
        objects
            .iter()
            .all(|m| m.namespace.as_deref() != Some(connector::NAMESPACE)
                && m.name != connector::NAMESPACE),
        "{objects:?}"
    );
}

#[test]
fn the_connector_dials_out_with_its_own_secret_and_admits_nothing() {
    let mut ctx = context();
    ctx.twingate_secret_arn = Some(CONNECTOR_SECRET.to_owned());
    let objects = build(&ctx).unwrap();
    let connector: Vec<String> = objects
        .iter()
        .filter(|m| {
            m.namespace.as_deref() == Some(connector::NAMESPACE) || m.name == connector::NAMESPACE
        })
        .map(Manifest::display)
        .collect();
    assert_eq!(
        connector,
        [
            "Namespace twingate",
            "ServiceAccount twingate/twingate-connector",
            "SecretProviderClass twingate/twingate-connector",
            "Deployment twingate/twingate-connector",
            "NetworkPolicy twingate/twingate-connector",
        ]
    );
    for m in objects.iter().filter(|m| connector.contains(&m.display())) {
        assert!(m.auto_mode_only, "{}: needs the EKS add-ons", m.display());
        (m.validate)(&m.body).unwrap_or_else(|e| panic!("{}: {e}", m.display()));
        if let Some(schema) = m.schema {
            schema::check(schema, &m.body).unwrap_or_else(|e| panic!("{}: {e:?}", m.display()));
        }
    }
    let class = &find(&objects, "SecretProviderClass", connector::CLASS).body;
    let listed: Vec<credentials::AwsObject> =
        serde_yaml::from_str(class["spec"]["parameters"]["objects"].as_str().unwrap()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].object_name, CONNECTOR_SECRET);
    let deployment = &body(&objects, "Deployment", connector::APP)["spec"];
    assert_eq!(deployment["replicas"], 1, "one token pair, one connector");
    assert_eq!(
        deployment["strategy"]["type"], "Recreate",
        "never two pods with one pair"
    );
    let pod = &deployment["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], connector::SERVICE_ACCOUNT);
    assert_eq!(
        pod["nodeSelector"]["karpenter.sh/nodepool"], NODE_POOL,
        "on Auto Mode nodes: the Pod Identity agent and network policies are there"
    );
    let container = &pod["containers"][0];
    assert!(
        container["image"].as_str().unwrap().contains("@sha256:"),
        "pinned by digest"
    );
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        env,
        [
            "TWINGATE_NETWORK",
            "TWINGATE_ACCESS_TOKEN",
            "TWINGATE_REFRESH_TOKEN",
            "TWINGATE_LABEL_DEPLOYED_BY"
        ],
        "the network from the secret and no TWINGATE_URL (the connector refuses both)"
    );
    for e in container["env"].as_array().unwrap().iter().take(3) {
        assert_eq!(e["valueFrom"]["secretKeyRef"]["name"], connector::CLASS);
    }
    assert_eq!(container["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    let policy = &body(&objects, "NetworkPolicy", connector::APP)["spec"];
    assert_eq!(policy["policyTypes"], json!(["Ingress"]));
    assert!(
        policy.get("ingress").is_none(),
        "no rule admits anything: {policy}"
    );
}
