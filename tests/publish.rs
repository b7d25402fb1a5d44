//! `apiary publish` against the emulator's S3 in two regions, with stand-in bootstraps:
//! every object of the release is in each region's bucket with the right bytes, the
//! template published there names both buckets, each bucket's policy (evaluated)
//! lets another account read the release objects and nothing else, a second publish of
//! the same version is refused before anything is written, a run that stopped half-way
//! is finished by running it again, and `launch.html` renders in headless Chromium
//! with one well-formed quick-create link per region.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apiary::package::url::{self, parse_quick_create};
use apiary::package::{Arch, Outcome, archive};
use apiary::publish::policy::{self, Decision, Readers, Request};
use apiary::publish::{Options, Published, Source, page, publish, template};
use apiary_core::aws::{AwsSettings, ProcessEnv};
use apiary_e2e::{emulator, function_crates, repo_root, unique_name};
use serde_json::Value;

const REGIONS: [&str; 2] = ["eu-west-1", "us-west-2"];
const OTHER_ACCOUNT: &str = "210987654321";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique_name(name));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A stand-in bootstrap per function crate (a script runs on either architecture).
fn prebuilt(marker: &str) -> (PathBuf, BTreeMap<String, Vec<u8>>) {
    let dir = scratch("release-bin");
    let mut bootstraps = BTreeMap::new();
    for function in function_crates() {
        let body = format!("#!/bin/sh\necho {function} {marker}\n").into_bytes();
        std::fs::create_dir_all(dir.join(&function)).expect("function dir");
        std::fs::write(dir.join(&function).join("bootstrap"), &body).expect("bootstrap");
        bootstraps.insert(function, body);
    }
    (dir, bootstraps)
}

/// The zips `apiary package --out DIR` writes, for the same bootstraps.
fn packaged_zips(bootstraps: &BTreeMap<String, Vec<u8>>) -> PathBuf {
    let dir = scratch("release-zips");
    let bundle = apiary_e2e::test_ca_bundle(&scratch("release-ca"));
    let extras = archive::Extras::load(
        &bootstraps.keys().cloned().collect::<Vec<_>>(),
        Some(&bundle),
    )
    .expect("the bundle loads");
    for (function, body) in bootstraps {
        let zip = extras.function_zip(function, body).expect("zip");
        std::fs::write(dir.join(format!("{function}.zip")), zip).expect("zip file");
    }
    dir
}

fn options(bucket_prefix: &str, version: &str, source: Source, readers: Readers) -> Options {
    // Built bootstraps are zipped by publish, with the bundle; packaged zips hold it.
    let prebuilt = matches!(source, Source::Prebuilt(_));
    Options {
        root: repo_root(),
        version: version.to_owned(),
        source,
        arch: Arch::X86_64,
        regions: REGIONS.iter().map(|r| (*r).to_owned()).collect(),
        bucket_prefix: Some(bucket_prefix.to_owned()),
        readers,
        endpoint: Some(emulator().endpoint().to_owned()),
        out: Some(scratch("release-page")),
        stack_name: None,
        database_ca_bundle: prebuilt.then(|| apiary_e2e::test_ca_bundle(&scratch("release-ca"))),
    }
}

async fn run(options: &Options) -> anyhow::Result<(Published, String)> {
    let mut log = Vec::new();
    let published = publish(options, &ProcessEnv, &mut log).await?;
    Ok((published, String::from_utf8(log).expect("UTF-8 log")))
}

async fn s3(region: &str) -> aws_sdk_s3::Client {
    let config = apiary_core::aws::load(&AwsSettings::local(emulator().endpoint(), region)).await;
    apiary_core::aws::s3_client(&config)
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

/// Every object's ETag in every region: what "nothing was written" compares.
async fn etags(bucket_prefix: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for region in REGIONS {
        let s3 = s3(region).await;
        let bucket = format!("{bucket_prefix}-{region}");
        for key in keys(&s3, &bucket).await {
            let head = s3
                .head_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .expect("HeadObject");
            out.insert(
                format!("{bucket}/{key}"),
                head.e_tag().expect("an ETag").to_owned(),
            );
        }
    }
    out
}

async fn bucket_policy(s3: &aws_sdk_s3::Client, bucket: &str) -> Value {
    let policy = s3
        .get_bucket_policy()
        .bucket(bucket)
        .send()
        .await
        .expect("GetBucketPolicy");
    serde_json::from_str(policy.policy().expect("a policy")).expect("policy JSON")
}

fn ask(policy: &Value, organization: Option<&str>, action: &str, resource: &str) -> Decision {
    policy::evaluate(
        policy,
        &Request {
            account: OTHER_ACCOUNT,
            organization,
            action,
            resource,
            secure_transport: true,
        },
    )
}

#[tokio::test]
async fn publishes_a_release_to_two_regions_that_other_accounts_can_only_read() {
    let bucket_prefix = unique_name("apiary-rel");
    let version = "1.4.0";
    let prefix = format!("releases/{version}/");
    let (bin, bootstraps) = prebuilt("v1");
    let options = options(
        &bucket_prefix,
        version,
        Source::Prebuilt(bin.clone()),
        Readers::AnyAccount,
    );
    let (published, log) = run(&options)
        .await
        .unwrap_or_else(|e| panic!("apiary publish: {e:#}"));
    assert_eq!(published.prefix, prefix);
    assert_eq!(published.regions.len(), 2);

    let repository =
        std::fs::read_to_string(repo_root().join("infra-bootstrap/bootstrap.yaml")).unwrap();
    let machines: Vec<String> = std::fs::read_dir(repo_root().join("statemachines"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| repository.contains(&format!("${{ArtifactPrefix}}statemachines/{name}")))
        .collect();
    let buckets: BTreeMap<String, String> = REGIONS
        .iter()
        .map(|r| ((*r).to_owned(), format!("{bucket_prefix}-{r}")))
        .collect();

    for region in REGIONS {
        let s3 = s3(region).await;
        let bucket = &buckets[region];
        let released = published
            .regions
            .iter()
            .find(|r| r.link.region == region)
            .expect("a release per region");
        assert!(released.created_bucket, "{region}: the bucket was made");
        assert!(
            log.contains(&format!("creating bucket {bucket} in {region}")),
            "{log}"
        );
        // In its own region: Lambda reads code only from there.
        let location = s3
            .get_bucket_location()
            .bucket(bucket)
            .send()
            .await
            .expect("GetBucketLocation");
        assert_eq!(
            location.location_constraint().map(|c| c.as_str()),
            Some(region)
        );

        // Exactly the release's objects, the template last.
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
        assert_eq!(keys(&s3, bucket).await, expected, "{region}");
        assert_eq!(
            released.objects.last().map(|o| o.key.as_str()),
            Some(format!("{prefix}bootstrap.yaml").as_str())
        );
        for (function, bootstrap) in &bootstraps {
            let zip = body(&s3, bucket, &format!("{prefix}functions/{function}.zip")).await;
            let entries = archive::entries(&zip).expect("a zip");
            let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
            if function == "verifier" {
                assert_eq!(names, ["bootstrap", "database-ca-bundle.pem"], "{region}");
            } else {
                assert_eq!(names, ["bootstrap"], "{region} {function}");
            }
            assert_eq!(&entries[0].contents, bootstrap, "{region} {function}");
        }
        for machine in &machines {
            let file = std::fs::read(repo_root().join("statemachines").join(machine)).unwrap();
            let key = format!("{prefix}statemachines/{machine}");
            assert_eq!(body(&s3, bucket, &key).await, file, "{region} {machine}");
        }

        // The template names both regions' buckets and defaults to this release.
        let text =
            String::from_utf8(body(&s3, bucket, &format!("{prefix}bootstrap.yaml")).await).unwrap();
        assert_eq!(template::release_buckets(&text).unwrap(), buckets);
        let parsed: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            parsed["Parameters"]["ArtifactPrefix"]["Default"],
            prefix.as_str()
        );
        assert_eq!(
            parsed["Parameters"]["FunctionArchitecture"]["Default"],
            "x86_64"
        );
        assert_eq!(parsed["Parameters"]["ArtifactBucket"]["Default"], "");
        assert_eq!(
            parsed["Rules"]["SupportedRegion"]["Assertions"][0]["Assert"]["Fn::Contains"][0],
            serde_json::json!(REGIONS)
        );

        // The policy, read back and evaluated for another account.
        let policy = bucket_policy(&s3, bucket).await;
        assert_eq!(
            policy,
            policy::bucket_policy(bucket, &Readers::AnyAccount, false),
            "{region}"
        );
        let object = |key: &str| format!("arn:aws:s3:::{bucket}/{key}");
        for key in &expected {
            assert_eq!(
                ask(&policy, None, "s3:GetObject", &object(key)),
                Decision::Allow,
                "{key}"
            );
        }
        let release_key = object(&format!("{prefix}bootstrap.yaml"));
        let denied = [
            ("s3:ListBucket", format!("arn:aws:s3:::{bucket}")),
            ("s3:ListBucketVersions", format!("arn:aws:s3:::{bucket}")),
            ("s3:PutObject", release_key.clone()),
            ("s3:PutObject", object("releases/9.9.9/bootstrap.yaml")),
            ("s3:DeleteObject", release_key.clone()),
            ("s3:PutObjectAcl", release_key.clone()),
            ("s3:PutBucketPolicy", format!("arn:aws:s3:::{bucket}")),
            ("s3:GetObject", object("vendor-notes/keys.txt")),
            ("s3:GetObject", object("releases.txt")),
        ];
        for (action, resource) in &denied {
            assert_eq!(
                ask(&policy, None, action, resource),
                Decision::ImplicitDeny,
                "{action} {resource}"
            );
        }

        // ACLs stay blocked; the (public) policy is allowed; the bucket owns every object.
        let block = s3
            .get_public_access_block()
            .bucket(bucket)
            .send()
            .await
            .expect("GetPublicAccessBlock");
        let block = block.public_access_block_configuration().expect("a block");
        assert_eq!(block.block_public_acls(), Some(true));
        assert_eq!(block.ignore_public_acls(), Some(true));
        assert_eq!(block.block_public_policy(), Some(false));
        assert_eq!(block.restrict_public_buckets(), Some(false));
        let status = s3
            .get_bucket_policy_status()
            .bucket(bucket)
            .send()
            .await
            .expect("GetBucketPolicyStatus");
        assert_eq!(
            status.policy_status().and_then(|s| s.is_public()),
            Some(true),
            "S3 calls the any-account policy public"
        );
        let ownership = s3
            .get_bucket_ownership_controls()
            .bucket(bucket)
            .send()
            .await
            .expect("GetBucketOwnershipControls");
        let rules = ownership.ownership_controls().expect("controls").rules();
        assert_eq!(rules[0].object_ownership().as_str(), "BucketOwnerEnforced");

        // The link: this region's console, this region's template, no parameters.
        let link =
            parse_quick_create(&released.link.quick_create_url).expect("a quick-create link");
        assert_eq!(link.region, region);
        assert_eq!(
            link.template_url,
            url::s3_object_url(bucket, region, &format!("{prefix}bootstrap.yaml"))
        );
        assert_eq!(link.stack_name, "apiary-honeyhive");
        assert!(link.parameters.is_empty(), "{:?}", link.parameters);
    }
    let printed = published.render();
    for region in &published.regions {
        assert!(printed.contains(&region.link.quick_create_url), "{printed}");
    }
    assert_eq!(published.parameters_to_fill, ["Domain"]);

    // The same version again, same build: refused, nothing written.
    let before = etags(&bucket_prefix).await;
    let err = run(&options)
        .await
        .expect_err("a second publish")
        .to_string();
    assert!(err.contains("already published in every region"), "{err}");
    // The same version with other code (from apiary package's zips): refused, naming it.
    let (_, changed) = prebuilt("v2");
    let zips = packaged_zips(&changed);
    let mut rebuilt = options.clone();
    rebuilt.source = Source::Zips(zips.clone());
    rebuilt.database_ca_bundle = None;
    let err = format!("{:#}", run(&rebuilt).await.expect_err("other bytes"));
    assert!(err.contains("holds other bytes"), "{err}");
    assert!(err.contains("Nothing was written"), "{err}");
    assert_eq!(etags(&bucket_prefix).await, before, "nothing was written");
    // A new version of that build is fine, beside the old one.
    rebuilt.version = "1.4.1".into();
    let (second, _) = run(&rebuilt).await.expect("a new version");
    assert!(second.regions.iter().all(|r| !r.created_bucket));
    assert!(
        second
            .regions
            .iter()
            .flat_map(|r| &r.objects)
            .all(|o| o.outcome == Outcome::Uploaded)
    );

    for dir in [
        bin,
        zips,
        options.out.clone().unwrap(),
        rebuilt.out.clone().unwrap(),
    ] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test]
async fn an_interrupted_publish_is_finished_and_an_organization_release_stays_private() {
    let bucket_prefix = unique_name("apiary-org");
    let organization = "o-a1b2c3d4e5";
    let (bin, _) = prebuilt("org");
    let options = options(
        &bucket_prefix,
        "2.0.0",
        Source::Prebuilt(bin.clone()),
        Readers::Organization(organization.to_owned()),
    );
    run(&options).await.expect("first publish");

    // As if the run had stopped before the last put in one region: no template there.
    let region = REGIONS[1];
    let s3 = s3(region).await;
    let bucket = format!("{bucket_prefix}-{region}");
    s3.delete_object()
        .bucket(&bucket)
        .key("releases/2.0.0/bootstrap.yaml")
        .send()
        .await
        .expect("DeleteObject");
    let (finished, log) = run(&options).await.expect("the publish is finished");
    let uploaded: Vec<&str> = finished
        .regions
        .iter()
        .flat_map(|r| &r.objects)
        .filter(|o| o.outcome == Outcome::Uploaded)
        .map(|o| o.key.as_str())
        .collect();
    assert_eq!(uploaded, ["releases/2.0.0/bootstrap.yaml"], "{log}");

    // Only that organization's accounts may read; nothing is public.
    let policy = bucket_policy(&s3, &bucket).await;
    let object = format!("arn:aws:s3:::{bucket}/releases/2.0.0/bootstrap.yaml");
    assert_eq!(
        ask(&policy, Some(organization), "s3:GetObject", &object),
        Decision::Allow
    );
    assert_eq!(
        ask(&policy, Some("o-zzzzzzzzzz"), "s3:GetObject", &object),
        Decision::ImplicitDeny
    );
    assert_eq!(
        ask(&policy, None, "s3:GetObject", &object),
        Decision::ImplicitDeny
    );
    assert_eq!(
        ask(
            &policy,
            Some(organization),
            "s3:ListBucket",
            &format!("arn:aws:s3:::{bucket}")
        ),
        Decision::ImplicitDeny
    );
    let block = s3
        .get_public_access_block()
        .bucket(&bucket)
        .send()
        .await
        .expect("GetPublicAccessBlock");
    let block = block.public_access_block_configuration().expect("a block");
    assert_eq!(block.block_public_policy(), Some(true));
    assert_eq!(block.restrict_public_buckets(), Some(true));
    let _ = std::fs::remove_dir_all(bin);
    let _ = std::fs::remove_dir_all(options.out.unwrap());
}

#[tokio::test]
async fn bad_options_and_a_bucket_in_another_region_stop_before_anything_is_written() {
    let (bin, _) = prebuilt("bad");
    let mut bad = options(
        "Bad_Prefix",
        "1.0.0+meta",
        Source::Prebuilt(bin.clone()),
        Readers::Organization("org".into()),
    );
    bad.regions.push("Mars".into());
    let err = format!("{:#}", run(&bad).await.expect_err("bad options"));
    for named in [
        "--version",
        "--organization-id",
        "Mars",
        "not an S3 bucket name",
    ] {
        assert!(err.contains(named), "{named}: {err}");
    }

    // A bucket of the right name in the wrong region: refused before any region is written.
    let bucket_prefix = unique_name("apiary-wrong");
    let misplaced = format!("{bucket_prefix}-{}", REGIONS[1]);
    s3(REGIONS[0])
        .await
        .create_bucket()
        .bucket(&misplaced)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                    REGIONS[0],
                ))
                .build(),
        )
        .send()
        .await
        .expect("CreateBucket");
    let options = options(
        &bucket_prefix,
        "1.0.0",
        Source::Prebuilt(bin.clone()),
        Readers::AnyAccount,
    );
    let err = format!("{:#}", run(&options).await.expect_err("wrong region"));
    assert!(
        err.contains(&format!("is in {}, not {}", REGIONS[0], REGIONS[1])),
        "{err}"
    );
    let first = format!("{bucket_prefix}-{}", REGIONS[0]);
    let head = s3(REGIONS[0])
        .await
        .head_bucket()
        .bucket(&first)
        .send()
        .await;
    assert!(head.is_err(), "the first region's bucket was not made");
    assert!(keys(&s3(REGIONS[0]).await, &misplaced).await.is_empty());
    let _ = std::fs::remove_dir_all(bin);
}

/// Chromium from Debian's package (scripts/install-browser), or APIARY_CHROMIUM.
fn chromium() -> PathBuf {
    if let Ok(path) = std::env::var("APIARY_CHROMIUM")
        && Path::new(&path).is_file()
    {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "no Chromium to render launch.html in: run scripts/install-browser (Debian's chromium \
         package), or set APIARY_CHROMIUM to a Chromium binary"
    );
}

/// The DOM Chromium renders for `page`, headless, with a fresh profile and no network.
fn render(page: &Path) -> String {
    let browser = chromium();
    let profile = scratch("chromium-profile");
    let mut child = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", browser.display()));
    let started = Instant::now();
    while child.try_wait().expect("waiting for chromium").is_none() {
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            panic!(
                "{} did not render {} in 90 s",
                browser.display(),
                page.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().expect("chromium output");
    let _ = std::fs::remove_dir_all(profile);
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 DOM")
}

/// `name="value"` of one tag, with the entity escapes undone.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = start + tag[start..].find('"')?;
    Some(
        tag[start..end]
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

#[tokio::test]
async fn the_launch_page_renders_in_a_headless_browser_with_a_link_per_region() {
    let bucket_prefix = unique_name("apiary-page");
    let (bin, _) = prebuilt("page");
    let options = options(
        &bucket_prefix,
        "3.0.0",
        Source::Prebuilt(bin.clone()),
        Readers::AnyAccount,
    );
    let (published, _) = run(&options).await.expect("publish");
    let html = std::fs::read_to_string(&published.page).expect("launch.html");
    assert!(html.starts_with("<!DOCTYPE html>"));

    let dom = tokio::task::spawn_blocking({
        let page = published.page.clone();
        move || render(&page)
    })
    .await
    .expect("render");
    // What the browser built: the table, one "Launch stack" link per region.
    assert!(dom.contains("<table id=\"regions\">"), "{dom}");
    let mut seen = BTreeMap::new();
    for (at, _) in dom.match_indices("<a class=\"launch\"") {
        let tag = &dom[at..at + dom[at..].find('>').expect("a closed tag")];
        let region = attribute(tag, "data-region").expect("data-region");
        let href = attribute(tag, "href").expect("href");
        assert!(
            dom[at..].contains(">Launch stack</a>"),
            "the button's text is rendered"
        );
        seen.insert(region, href);
    }
    let regions: Vec<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(regions, REGIONS, "{dom}");
    for (region, href) in &seen {
        let link = parse_quick_create(href).unwrap_or_else(|e| panic!("{region}: {e}"));
        assert_eq!(&link.region, region);
        let bucket = format!("{bucket_prefix}-{region}");
        assert_eq!(
            link.template_url,
            url::s3_object_url(&bucket, region, "releases/3.0.0/bootstrap.yaml")
        );
        let released = published
            .regions
            .iter()
            .find(|r| &r.link.region == region)
            .expect("published there");
        assert_eq!(href, &released.link.quick_create_url);
    }
    // The parameters the customer fills in are on the page.
    assert!(dom.contains("<ul id=\"required\">"), "{dom}");
    assert!(dom.contains("<code>Domain</code>"), "{dom}");
    let plan = apiary::package::plan::plan(&repo_root()).expect("the plan");
    let (required, _) = page::customer_parameters(&plan.parameters);
    for (name, _) in required {
        assert!(dom.contains(&format!("<code>{name}</code>")), "{name}");
    }
    let _ = std::fs::remove_dir_all(bin);
    let _ = std::fs::remove_dir_all(options.out.unwrap());
}
