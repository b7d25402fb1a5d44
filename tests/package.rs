//! `apiary package` against the emulator's S3, with stand-in bootstraps (`--prebuilt`):
//! every object the template reads is uploaded under the prefix with the right bytes,
//! packaging again uploads nothing, the printed link names the bucket and prefix, and a
//! bucket that does not exist or is in another region stops it before anything is
//! written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use apiary::package::{
    Arch, Options, Outcome, Packaged, Toolchain, archive, package, package_with,
};
use apiary_core::aws::ProcessEnv;
use apiary_e2e::{REGION, emulator, sdk_config, unique_name};
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use serde_json::Value;

use apiary_e2e::{function_crates, repo_root as root};

/// A fresh folder under the system's temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique_name(name));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The state machine files the template reads (`DefinitionS3Location.Key`).
fn template_state_machines() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("infra-bootstrap/bootstrap.yaml"))
        .expect("the template is readable");
    let template: Value = serde_yaml::from_str(&text).expect("plain YAML");
    template["Resources"]
        .as_object()
        .expect("Resources")
        .values()
        .filter_map(|r| r["Properties"]["DefinitionS3Location"]["Key"]["Fn::Sub"].as_str())
        .map(|key| {
            key.strip_prefix("${ArtifactPrefix}statemachines/")
                .unwrap_or_else(|| panic!("unexpected state machine key {key}"))
                .to_owned()
        })
        .collect()
}

/// A stand-in bootstrap per function crate: a script that names its function.
fn prebuilt() -> (PathBuf, BTreeMap<String, Vec<u8>>) {
    let dir = scratch("prebuilt");
    let mut bootstraps = BTreeMap::new();
    for function in function_crates() {
        let body = format!("#!/bin/sh\necho {function}\n").into_bytes();
        std::fs::create_dir_all(dir.join(&function)).expect("function dir");
        std::fs::write(dir.join(&function).join("bootstrap"), &body).expect("bootstrap");
        bootstraps.insert(function, body);
    }
    (dir, bootstraps)
}

fn options(bucket: &str, prebuilt: &Path, out: &Path) -> Options {
    Options {
        root: root(),
        bucket: bucket.to_owned(),
        prefix: None,
        arch: Arch::Arm64,
        prebuilt: Some(prebuilt.to_path_buf()),
        out: Some(out.to_path_buf()),
        region: Some(REGION.to_owned()),
        endpoint: Some(emulator().endpoint().to_owned()),
        stack_name: None,
        parameters: vec!["Domain=hh.example.com".to_owned()],
        database_ca_bundle: Some(apiary_e2e::test_ca_bundle(&scratch("ca"))),
    }
}

async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str, region: &str) {
    s3.create_bucket()
        .bucket(bucket)
        .create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build(),
        )
        .send()
        .await
        .expect("CreateBucket");
}

async fn keys(s3: &aws_sdk_s3::Client, bucket: &str) -> BTreeSet<String> {
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("ListObjectsV2");
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

async fn body(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetObject {key}: {e}"))
        .body
        .collect()
        .await
        .expect("object body")
        .to_vec()
}

async fn etags(s3: &aws_sdk_s3::Client, bucket: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for key in keys(s3, bucket).await {
        let head = s3
            .head_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .expect("HeadObject");
        out.insert(key, head.e_tag().expect("an ETag").to_owned());
    }
    out
}

/// Decodes `%XX` escapes (the link's values are encoded once).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
            out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("UTF-8")
}

/// The quick-create link's parameters (after `#/stacks/quickcreate?`), decoded.
fn link_parameters(url: &str) -> BTreeMap<String, String> {
    let (_, fragment) = url.split_once('#').expect("a fragment");
    let (page, query) = fragment.split_once('?').expect("a query in the fragment");
    assert_eq!(page, "/stacks/quickcreate");
    query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("key=value");
            (k.to_owned(), percent_decode(v))
        })
        .collect()
}

async fn run(options: &Options) -> (Packaged, String) {
    let mut log = Vec::new();
    let packaged = package(options, &ProcessEnv, &mut log)
        .await
        .unwrap_or_else(|e| panic!("apiary package: {e:#}"));
    (packaged, String::from_utf8(log).expect("UTF-8 log"))
}

#[tokio::test]
async fn packages_every_artifact_the_template_reads_and_repackages_nothing() {
    let config = sdk_config().await;
    let s3 = apiary_core::aws::s3_client(&config);
    let bucket = unique_name("apiary-pkg");
    create_bucket(&s3, &bucket, REGION).await;
    let (prebuilt, bootstraps) = prebuilt();
    let out = scratch("zips");
    let options = options(&bucket, &prebuilt, &out);

    let (first, log) = run(&options).await;
    let prefix = first.prefix.clone();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        prefix.starts_with(&format!("apiary/{version}-")) && prefix.ends_with('/'),
        "{prefix}"
    );

    // Exactly the objects the template reads, plus the template itself.
    let machines = template_state_machines();
    let mut expected: BTreeSet<String> = bootstraps
        .keys()
        .map(|f| format!("{prefix}functions/{f}.zip"))
        .collect();
    expected.extend(
        machines
            .iter()
            .map(|m| format!("{prefix}statemachines/{m}")),
    );
    expected.insert(format!("{prefix}bootstrap.yaml"));
    assert_eq!(keys(&s3, &bucket).await, expected);
    assert!(
        first.objects.iter().all(|o| o.outcome == Outcome::Uploaded),
        "a fresh bucket gets every object"
    );
    assert_eq!(
        first.objects.last().map(|o| o.key.as_str()),
        Some(format!("{prefix}bootstrap.yaml").as_str()),
        "the template goes last"
    );
    for key in &expected {
        assert!(
            log.contains(&format!("uploaded  s3://{bucket}/{key}")),
            "progress for {key}:\n{log}"
        );
    }

    // Each zip holds an executable `bootstrap` with the prebuilt bytes (the verifier's
    // also the database CA bundle it was given, and nothing else), and is the zip written
    // to --out.
    for (function, bootstrap) in &bootstraps {
        let zip = body(&s3, &bucket, &format!("{prefix}functions/{function}.zip")).await;
        let entries = archive::entries(&zip).expect("a readable zip");
        if function == "verifier" {
            assert_eq!(entries.len(), 2, "{function}: {entries:?}");
            assert_eq!(entries[1].name, "database-ca-bundle.pem");
            let given = std::fs::read(options.database_ca_bundle.as_ref().unwrap()).unwrap();
            assert_eq!(entries[1].contents, given);
        } else {
            assert_eq!(entries.len(), 1, "{function}: {entries:?}");
        }
        assert_eq!(entries[0].name, "bootstrap");
        assert_eq!(entries[0].unix_mode.map(|m| m & 0o777), Some(0o755));
        assert_eq!(&entries[0].contents, bootstrap, "{function}");
        let written = std::fs::read(out.join(format!("{function}.zip"))).expect("zip in --out");
        assert_eq!(written, zip, "{function}: --out holds the uploaded zip");
    }
    // The template (its Release mapping naming this bucket for this region, nothing
    // else changed) and the state machines byte for byte.
    let repository =
        std::fs::read_to_string(root().join("infra-bootstrap/bootstrap.yaml")).unwrap();
    let buckets = BTreeMap::from([(REGION.to_owned(), bucket.clone())]);
    let template = apiary::publish::template::release_template(
        &repository,
        &apiary::publish::template::Release {
            buckets: &buckets,
            prefix: None,
            arch: None,
        },
    )
    .expect("the release template")
    .into_bytes();
    assert_eq!(
        body(&s3, &bucket, &format!("{prefix}bootstrap.yaml")).await,
        template
    );
    assert_eq!(
        apiary::publish::template::release_buckets(std::str::from_utf8(&template).unwrap())
            .unwrap(),
        buckets
    );
    for machine in &machines {
        let file = std::fs::read(root().join("statemachines").join(machine)).unwrap();
        let key = format!("{prefix}statemachines/{machine}");
        assert_eq!(body(&s3, &bucket, &key).await, file, "{machine}");
    }

    // The link: this bucket, this prefix, the architecture, the given parameter.
    let template_url = format!("https://{bucket}.s3.{REGION}.amazonaws.com/{prefix}bootstrap.yaml");
    assert_eq!(first.template_url, template_url);
    assert!(first.quick_create_url.starts_with(&format!(
        "https://{REGION}.console.aws.amazon.com/cloudformation/home?region={REGION}#"
    )));
    let parameters = link_parameters(&first.quick_create_url);
    assert_eq!(parameters["templateURL"], template_url);
    assert_eq!(parameters["stackName"], "apiary-honeyhive");
    assert_eq!(parameters["param_ArtifactBucket"], bucket);
    assert_eq!(parameters["param_ArtifactPrefix"], prefix);
    assert_eq!(parameters["param_FunctionArchitecture"], "arm64");
    assert_eq!(parameters["param_Domain"], "hh.example.com");
    let printed = first.render();
    assert!(printed.contains(&first.quick_create_url), "{printed}");
    let on_emulator = format!(
        "{}/{bucket}/{prefix}bootstrap.yaml",
        emulator().endpoint().trim_end_matches('/')
    );
    assert!(printed.contains(&on_emulator), "{printed}");

    // Again: the same keys, nothing put, the same ETags.
    let before = etags(&s3, &bucket).await;
    let (second, log) = run(&options).await;
    assert_eq!(second.prefix, prefix);
    assert_eq!(second.quick_create_url, first.quick_create_url);
    assert!(
        second
            .objects
            .iter()
            .all(|o| o.outcome == Outcome::Unchanged),
        "the second run found every object in place:\n{log}"
    );
    assert!(log.contains("unchanged s3://"), "{log}");
    assert_eq!(etags(&s3, &bucket).await, before);

    // CloudFormation reads the template from the link's URL. moto's ValidateTemplate
    // fetches it from its own S3 and lints it, but answers only the Description (its
    // Parameters list is always empty), so that is what is compared; a URL naming an
    // object that is not there shows that the URL is really followed.
    let cloudformation = aws_sdk_cloudformation::Client::new(&config);
    let template_doc: Value = serde_yaml::from_slice(&template).expect("plain YAML");
    match cloudformation
        .validate_template()
        .template_url(&first.template_url)
        .send()
        .await
    {
        Ok(valid) => {
            assert_eq!(
                valid.description(),
                template_doc["Description"].as_str(),
                "ValidateTemplate read the uploaded template"
            );
            let missing = first.template_url.replace("bootstrap.yaml", "missing.yaml");
            let refused = cloudformation
                .validate_template()
                .template_url(&missing)
                .send()
                .await;
            assert!(
                refused.is_err(),
                "a URL with no object behind it is refused"
            );
        }
        Err(err) => eprintln!(
            "note: the emulator's ValidateTemplate could not read the uploaded template \
             ({}); that part is not checked here",
            aws_sdk_cloudformation::error::DisplayErrorContext(&err)
        ),
    }

    let _ = std::fs::remove_dir_all(&prebuilt);
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test]
async fn a_reused_prefix_with_new_code_is_refused_before_anything_is_put() {
    let config = sdk_config().await;
    let s3 = apiary_core::aws::s3_client(&config);
    let bucket = unique_name("apiary-reuse");
    create_bucket(&s3, &bucket, REGION).await;
    let (prebuilt, _) = prebuilt();
    let mut options = options(&bucket, &prebuilt, &scratch("zips"));
    options.prefix = Some("release/".to_owned());
    run(&options).await;
    let before = etags(&s3, &bucket).await;

    // New code for one function, packaged under the same prefix.
    std::fs::write(
        prebuilt.join("keys").join("bootstrap"),
        b"#!/bin/sh\necho v2\n",
    )
    .expect("new bootstrap");
    let err = package(&options, &ProcessEnv, &mut Vec::new())
        .await
        .expect_err("the changed zip is refused");
    let message = format!("{err:#}");
    assert!(
        message.contains(&format!("s3://{bucket}/release/functions/keys.zip"))
            && message.contains("new --prefix"),
        "{message}"
    );
    assert!(
        !message.contains("functions/dns.zip"),
        "only what changed is named: {message}"
    );
    assert_eq!(etags(&s3, &bucket).await, before, "nothing was put");
    let _ = std::fs::remove_dir_all(&prebuilt);
}

#[tokio::test]
async fn a_bucket_that_does_not_exist_stops_it_before_anything_is_written() {
    let config = sdk_config().await;
    let s3 = apiary_core::aws::s3_client(&config);
    let bucket = unique_name("apiary-none");
    let (prebuilt, _) = prebuilt();
    let out = std::env::temp_dir().join(unique_name("zips"));

    let err = package(
        &options(&bucket, &prebuilt, &out),
        &ProcessEnv,
        &mut Vec::new(),
    )
    .await
    .expect_err("no such bucket");
    let message = format!("{err:#}");
    assert!(
        message.contains(&format!("bucket {bucket} does not exist")),
        "{message}"
    );
    assert!(!out.exists(), "no zip was written");
    let head = s3.head_bucket().bucket(&bucket).send().await;
    assert!(head.is_err(), "the bucket was not created");
    let _ = std::fs::remove_dir_all(&prebuilt);
}

#[tokio::test]
async fn a_bucket_in_another_region_is_refused() {
    let config = sdk_config().await;
    let other_region = "eu-west-1";
    let elsewhere = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .region(aws_sdk_s3::config::Region::new(other_region))
            .force_path_style(true)
            .build(),
    );
    let bucket = unique_name("apiary-eu");
    create_bucket(&elsewhere, &bucket, other_region).await;
    let (prebuilt, _) = prebuilt();
    let out = std::env::temp_dir().join(unique_name("zips"));

    let err = package(
        &options(&bucket, &prebuilt, &out),
        &ProcessEnv,
        &mut Vec::new(),
    )
    .await
    .expect_err("a bucket in another region");
    let message = format!("{err:#}");
    assert!(
        message.contains(&format!(
            "bucket {bucket} is in {other_region}, not {REGION}"
        )),
        "{message}"
    );
    assert!(
        keys(&elsewhere, &bucket).await.is_empty(),
        "nothing uploaded"
    );
    assert!(!out.exists(), "no zip was written");
    let _ = std::fs::remove_dir_all(&prebuilt);
}

/// Stands in for cargo-lambda: records how it was called, then "builds" every
/// `--package` as a script in the `--lambda-dir` layout.
const FAKE_CARGO_LAMBDA: &str = r#"#!/bin/sh
here="$(cd "$(dirname "$0")/.." && pwd)"
printf '%s\n' "$@" > "$here/args"
printf '%s\n' "$PATH" > "$here/path"
pwd > "$here/cwd"
prev=""
for arg in "$@"; do
  [ "$prev" = "--lambda-dir" ] && lambda_dir="$arg"
  if [ "$prev" = "--package" ]; then
    mkdir -p "$lambda_dir/$arg"
    printf '#!/bin/sh\necho built %s\n' "$arg" > "$lambda_dir/$arg/bootstrap"
  fi
  prev="$arg"
done
"#;

/// The build tests write an executable and run it at once. Run one at a time, after the
/// emulator is up, so that no other thread of this binary forks while a freshly written
/// script is still open (the child would inherit it, and exec fails with ETXTBSY).
static BUILDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Installed(&'static str);

impl Toolchain for Installed {
    fn installed_targets(&self) -> anyhow::Result<Vec<String>> {
        Ok(vec![self.0.to_owned()])
    }
}

/// A venv holding the stand-in cargo-lambda (or one that fails like a compile error),
/// and an env that points at it.
fn fake_toolchain(fail: bool) -> (PathBuf, std::collections::HashMap<String, String>) {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("fake-venv");
    let program = dir.join("venv/bin/cargo-lambda");
    std::fs::create_dir_all(program.parent().unwrap()).unwrap();
    let script = if fail {
        "#!/bin/sh\necho 'stand-in cargo-lambda: failing as a compile error would' >&2\nexit 101\n"
    } else {
        FAKE_CARGO_LAMBDA
    };
    std::fs::write(&program, script).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let env = std::collections::HashMap::from([
        (
            "APIARY_VENV".to_owned(),
            dir.join("venv").display().to_string(),
        ),
        (
            "CARGO_TARGET_DIR".to_owned(),
            dir.join("target").display().to_string(),
        ),
        ("PATH".to_owned(), std::env::var("PATH").unwrap_or_default()),
    ]);
    (dir, env)
}

#[tokio::test]
async fn without_prebuilt_it_runs_one_cargo_lambda_build_and_packages_its_output() {
    let config = sdk_config().await;
    let _one_build = BUILDS.lock().await;
    let s3 = apiary_core::aws::s3_client(&config);
    let bucket = unique_name("apiary-build");
    create_bucket(&s3, &bucket, REGION).await;
    let (dir, env) = fake_toolchain(false);
    let mut options = options(&bucket, Path::new("unused"), &dir.join("zips"));
    options.prebuilt = None;

    let mut log = Vec::new();
    let packaged = package_with(
        &options,
        &env,
        &Installed("aarch64-unknown-linux-gnu"),
        &mut log,
    )
    .await
    .unwrap_or_else(|e| panic!("apiary package: {e:#}"));
    let log = String::from_utf8(log).unwrap();

    let lambda_dir = dir.join("target/lambda/arm64");
    let mut expected = vec![
        "lambda".to_owned(),
        "build".to_owned(),
        "--release".to_owned(),
        "--arm64".to_owned(),
        "--lambda-dir".to_owned(),
        lambda_dir.display().to_string(),
    ];
    for function in function_crates() {
        expected.push("--package".to_owned());
        expected.push(function);
    }
    let args = std::fs::read_to_string(dir.join("venv/args")).expect("cargo-lambda ran");
    assert_eq!(args.lines().collect::<Vec<_>>(), expected);
    let path = std::fs::read_to_string(dir.join("venv/path")).unwrap();
    assert!(
        path.starts_with(&format!("{}:", dir.join("venv/bin").display())),
        "the venv's bin comes first on PATH (its zig): {path}"
    );
    let cwd = std::fs::read_to_string(dir.join("venv/cwd")).unwrap();
    assert_eq!(
        Path::new(cwd.trim()).canonicalize().unwrap(),
        root().canonicalize().unwrap()
    );
    assert!(log.contains("building: "), "{log}");

    // What cargo-lambda left in the lambda dir is what was zipped and uploaded.
    for function in function_crates() {
        let key = format!("{}functions/{function}.zip", packaged.prefix);
        let entries = archive::entries(&body(&s3, &bucket, &key).await).unwrap();
        let extras = if function == "verifier" { 2 } else { 1 };
        assert_eq!(entries.len(), extras, "{function}: {entries:?}");
        assert_eq!(
            entries[0].contents,
            format!("#!/bin/sh\necho built {function}\n").into_bytes()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_failed_build_uploads_nothing() {
    let config = sdk_config().await;
    let _one_build = BUILDS.lock().await;
    let s3 = apiary_core::aws::s3_client(&config);
    let bucket = unique_name("apiary-fail");
    create_bucket(&s3, &bucket, REGION).await;
    let (dir, env) = fake_toolchain(true);
    let mut options = options(&bucket, Path::new("unused"), &dir.join("zips"));
    options.prebuilt = None;

    let err = package_with(
        &options,
        &env,
        &Installed("aarch64-unknown-linux-gnu"),
        &mut Vec::new(),
    )
    .await
    .expect_err("the build fails");
    let message = format!("{err:#}");
    assert!(
        message.contains("lambda build --release --arm64"),
        "{message}"
    );
    assert!(message.contains("its output is above"), "{message}");
    assert!(keys(&s3, &bucket).await.is_empty(), "nothing uploaded");
    assert!(!dir.join("zips").exists(), "no zip was written");
    let _ = std::fs::remove_dir_all(&dir);
}
