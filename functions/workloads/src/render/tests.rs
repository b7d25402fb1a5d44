use apiary_core::ErrorName;
use serde_json::json;

use super::*;
use crate::manifests;
use crate::test_support::context;

fn temp_folder() -> PathBuf {
    std::env::temp_dir().join(format!("apiary-render-{}", uuid::Uuid::new_v4().simple()))
}

fn manifests_for(image: &str) -> Vec<Manifest> {
    let mut ctx = context();
    ctx.image = image.to_owned();
    manifests::build(&ctx).unwrap()
}

#[test]
fn writes_one_valid_yaml_file_per_object() {
    let folder = temp_folder();
    let manifests = manifests_for("public.ecr.aws/honeyhive/ingestion:1.0.0");
    let files = render(&folder, &manifests).unwrap();
    assert_eq!(files.len(), manifests.len());
    let mut on_disk: Vec<String> = fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    assert_eq!(on_disk.len(), manifests.len());
    assert_eq!(on_disk[0], "01-nodeclass-apiary-ingestion.yaml");
    assert_eq!(on_disk[8], "09-deployment-honeyhive-ingestion.yaml");
    assert_eq!(on_disk[27], "28-ingress-honeyhive-ingestion.yaml");
    for (file, manifest) in files.iter().zip(&manifests) {
        assert!(file.changed);
        let text = fs::read_to_string(&file.path).unwrap();
        assert!(
            text.starts_with("# Rendered by Apiary, not applied."),
            "{text}"
        );
        let document: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(document, manifest.body, "{}", file.path.display());
        assert_eq!(file.schema_checked, manifest.schema.is_some());
    }
    let checked: Vec<&str> = files
        .iter()
        .filter(|f| f.schema_checked)
        .map(|f| f.kind.as_str())
        .collect();
    assert_eq!(
        checked,
        [
            "NodeClass",
            "NodePool",
            "SecretProviderClass",
            "IngressClassParams"
        ]
    );
    let deployment = fs::read_to_string(&files[8].path).unwrap();
    assert!(
        deployment.contains("readOnlyRootFilesystem: true"),
        "{deployment}"
    );
    fs::remove_dir_all(&folder).unwrap();
}

#[test]
fn rendering_again_changes_only_what_the_spec_changed() {
    let folder = temp_folder();
    render(
        &folder,
        &manifests_for("public.ecr.aws/honeyhive/ingestion:1.0.0"),
    )
    .unwrap();
    let again = render(
        &folder,
        &manifests_for("public.ecr.aws/honeyhive/ingestion:1.0.0"),
    )
    .unwrap();
    assert!(again.iter().all(|f| !f.changed), "{again:?}");
    let new_image = render(
        &folder,
        &manifests_for("public.ecr.aws/honeyhive/ingestion:2.0.0"),
    )
    .unwrap();
    let changed: Vec<&str> = new_image
        .iter()
        .filter(|f| f.changed)
        .map(|f| f.kind.as_str())
        .collect();
    assert_eq!(changed, ["Deployment"]);

    // Objects no longer rendered leave the folder; unrelated files stay.
    fs::write(folder.join("notes.txt"), "mine").unwrap();
    let mut plain = context();
    plain.auto_mode = false;
    let fewer = render(&folder, &manifests::build(&plain).unwrap()).unwrap();
    let count = fs::read_dir(&folder).unwrap().count();
    assert_eq!(count, fewer.len() + 1);
    assert!(folder.join("notes.txt").exists());
    fs::remove_dir_all(&folder).unwrap();
}

#[test]
fn an_invalid_custom_resource_is_refused_before_anything_is_written() {
    let folder = temp_folder();
    let mut manifests = manifests_for("public.ecr.aws/honeyhive/ingestion:1.0.0");
    let pool = manifests.iter_mut().find(|m| m.kind == "NodePool").unwrap();
    pool.body["spec"]["template"]["spec"]["requirements"][0]["operator"] = json!("Contains");
    let err = render(&folder, &manifests).unwrap_err();
    assert_eq!(err.name(), ErrorName::Fatal);
    let text = err.to_string();
    assert!(text.contains("NodePool apiary-ingestion"), "{text}");
    assert!(
        text.contains("/spec/template/spec/requirements/0/operator"),
        "{text}"
    );
    assert!(!folder.exists(), "nothing is written for an invalid set");
}

#[test]
fn a_built_in_object_that_is_not_its_type_is_refused() {
    let folder = temp_folder();
    let mut manifests = manifests_for("public.ecr.aws/honeyhive/ingestion:1.0.0");
    let service = manifests.iter_mut().find(|m| m.kind == "Service").unwrap();
    service.body["spec"]["ports"][0]["port"] = json!("eighty");
    let err = render(&folder, &manifests).unwrap_err();
    assert!(
        err.to_string().contains("Service honeyhive/ingestion"),
        "{err}"
    );
    assert!(!folder.exists());
}
