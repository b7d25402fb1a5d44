//! `apiary publish`: the vendor's side of the customer's one click. It takes one
//! packaged build (the zips `apiary package` wrote, or bootstraps built elsewhere) and
//! publishes it as an immutable release, `releases/<version>/`, to one artifact bucket
//! per supported region (Lambda reads code only from a bucket in its own region). Each
//! bucket lets other accounts read releases and nothing else (`policy`). The template it
//! publishes names every region's bucket in its `Release` mapping, so the customer's
//! quick-create link carries only the template URL and a stack name; `launch.html`
//! lists those links.
//!
//! Order: everything local is checked first, then every region's bucket is read; a
//! version that any region already holds with other bytes (or holds completely) is
//! refused there, before anything is written. Objects are put only where no object has
//! the key (`If-None-Match`), the template last, so a link never points at a release that
//! is not all there and never changes what it installs. A run that stopped half-way is
//! finished by running it again with the same build.

pub mod buckets;
pub mod page;
pub mod policy;
pub mod template;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use apiary_core::aws::Env;

use crate::package::plan::{self, Problems};
use crate::package::upload::{self, Artifact, Held, Outcome, Put, Uploaded};
use crate::package::{Arch, TEMPLATE_KEY, archive, build, options, url};
use page::RegionLink;
use policy::{RELEASES, Readers};

/// Where the build comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// `DIR/<function>.zip`, as `apiary package` writes them (its `--out`).
    Zips(PathBuf),
    /// `DIR/<function>/bootstrap` (cargo-lambda's `target/lambda` layout).
    Prebuilt(PathBuf),
}

/// What `apiary publish` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub root: PathBuf,
    /// The release's version: its keys are under `releases/<version>/`.
    pub version: String,
    pub source: Source,
    pub arch: Arch,
    /// Regions to publish to; empty: the regions of the template's `Release` mapping.
    pub regions: Vec<String>,
    /// Buckets are `<prefix>-<region>`; none: the template's `Release` mapping's.
    pub bucket_prefix: Option<String>,
    pub readers: Readers,
    pub endpoint: Option<String>,
    /// Where `launch.html` goes; default `<target>/apiary-publish/<version>/`.
    pub out: Option<PathBuf>,
    /// For the links; default `apiary-<DeploymentName default>`.
    pub stack_name: Option<String>,
    /// The PEM bundle of database CAs the verifier's package carries (with
    /// `Source::Prebuilt`; zips from `apiary package` already hold it).
    pub database_ca_bundle: Option<PathBuf>,
}

/// One region's part of a release.
#[derive(Debug, Clone)]
pub struct RegionRelease {
    pub link: RegionLink,
    pub created_bucket: bool,
    pub objects: Vec<Uploaded>,
}

/// What was published.
#[derive(Debug, Clone)]
pub struct Published {
    pub version: String,
    pub prefix: String,
    pub readers: Readers,
    pub regions: Vec<RegionRelease>,
    pub page: PathBuf,
    /// Template parameters the customer must fill in on the console page.
    pub parameters_to_fill: Vec<String>,
}

impl Published {
    /// The summary `apiary publish` prints last.
    pub fn render(&self) -> String {
        let readers = match &self.readers {
            Readers::AnyAccount => "any AWS account (the buckets' policies are public; \
                                    Block Public Access allows them, and blocks ACLs)"
                .to_owned(),
            Readers::Organization(id) => format!("the accounts of organization {id}"),
        };
        let mut out = format!(
            "Published Apiary {} under {} in {} regions, readable by {readers}.\n\n",
            self.version,
            self.prefix,
            self.regions.len()
        );
        for region in &self.regions {
            let uploaded = region
                .objects
                .iter()
                .filter(|o| o.outcome == Outcome::Uploaded)
                .count();
            out.push_str(&format!(
                "{} (s3://{}/{}, {uploaded} uploaded{}):\n  {}\n",
                region.link.region,
                region.link.bucket,
                self.prefix,
                if region.created_bucket {
                    ", bucket created"
                } else {
                    ""
                },
                region.link.quick_create_url,
            ));
        }
        out.push_str(&format!(
            "\nThe launch page with these links: {}\n",
            self.page.display()
        ));
        if !self.parameters_to_fill.is_empty() {
            out.push_str(&format!(
                "Customers fill in: {}\n",
                self.parameters_to_fill.join(", ")
            ));
        }
        out
    }
}

/// CloudFormation's limit for a template body read from S3 (1 MB).
pub const MAX_TEMPLATE_BYTES: usize = 1_000_000;

/// `releases/<version>/`.
pub fn release_prefix(version: &str) -> String {
    format!("{RELEASES}{version}/")
}

/// Letters, digits, dots and hyphens, starting with a letter or digit, at most 64: a
/// version that is one key segment the template's ArtifactPrefix pattern accepts.
pub fn check_version(version: &str) -> Result<(), String> {
    let valid = !version.is_empty()
        && version.len() <= 64
        && version.starts_with(|c: char| c.is_ascii_alphanumeric())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "--version {version:?}: use letters, digits, dots and hyphens (at most 64), \
             starting with a letter or digit, e.g. 1.4.0 or 1.4.0-rc.1"
        ))
    }
}

fn check_region(region: &str) -> Result<(), String> {
    let parts: Vec<&str> = region.split('-').collect();
    let valid = parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty())
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(format!("--region {region:?} is not an AWS region name"))
    }
}

/// Region → bucket for this run, every option checked; problems are listed together.
fn plan_buckets(
    options: &Options,
    template_buckets: &BTreeMap<String, String>,
    problems: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let regions: Vec<String> = if options.regions.is_empty() {
        template_buckets.keys().cloned().collect()
    } else {
        options.regions.clone()
    };
    let mut out = BTreeMap::new();
    for region in regions {
        if let Err(problem) = check_region(&region) {
            problems.push(problem);
            continue;
        }
        let bucket = match &options.bucket_prefix {
            Some(prefix) => format!("{prefix}-{region}"),
            None => match template_buckets.get(&region) {
                Some(bucket) => bucket.clone(),
                None => {
                    problems.push(format!(
                        "--region {region}: the template's Release mapping has no bucket for \
                         it; pass --bucket-prefix"
                    ));
                    continue;
                }
            },
        };
        if let Err(problem) = options::check_bucket_name(&bucket) {
            problems.push(problem.replace("--bucket", "bucket"));
            continue;
        }
        if out.insert(region.clone(), bucket).is_some() {
            problems.push(format!("--region {region}: given more than once"));
        }
    }
    if out.is_empty() && problems.is_empty() {
        problems.push("no region to publish to".to_owned());
    }
    out
}

/// Publishes one build.
pub async fn publish(
    options: &Options,
    env: &dyn Env,
    log: &mut dyn Write,
) -> anyhow::Result<Published> {
    // 1. Everything local, before any call.
    let plan = plan::plan(&options.root)?;
    let template_buckets = template::release_buckets(&plan.template)?;
    let mut problems = Vec::new();
    if let Err(problem) = check_version(&options.version) {
        problems.push(problem);
    }
    if let Readers::Organization(id) = &options.readers
        && let Err(problem) = policy::check_organization_id(id)
    {
        problems.push(problem);
    }
    let buckets = plan_buckets(options, &template_buckets, &mut problems);
    let stack_name = options.stack_name.clone().unwrap_or_else(|| {
        let deployment = plan
            .parameters
            .get("DeploymentName")
            .and_then(|p| p.default.clone())
            .unwrap_or_else(|| "honeyhive".to_owned());
        format!("apiary-{deployment}")
    });
    if let Err(problem) = options::check_stack_name(&stack_name) {
        problems.push(problem);
    }
    if !problems.is_empty() {
        return Err(Problems {
            what: "invalid options".to_owned(),
            problems,
        }
        .into());
    }
    let prefix = release_prefix(&options.version);
    let zips = match &options.source {
        Source::Zips(dir) => {
            if options.database_ca_bundle.is_some() {
                bail!(
                    "--database-ca-bundle goes with --prebuilt: the zips of apiary package \
                     already hold the bundle it was given"
                );
            }
            read_zips(dir, &plan.functions, options.arch)?
        }
        Source::Prebuilt(dir) => {
            let extras =
                archive::Extras::load(&plan.functions, options.database_ca_bundle.as_deref())?;
            let mut zips = Vec::new();
            for (function, binary) in
                crate::package::read_bootstraps(dir, &plan.functions, options.arch)?
            {
                let zip = extras
                    .function_zip(&function, &binary)
                    .with_context(|| format!("zipping the {function} bootstrap"))?;
                zips.push((function, zip));
            }
            zips
        }
    };
    let mut artifacts: Vec<Artifact> = zips
        .into_iter()
        .map(|(function, zip)| Artifact::new(format!("functions/{function}.zip"), zip))
        .collect();
    for file in &plan.state_machines {
        artifacts.push(Artifact::new(
            format!("statemachines/{}", file.name),
            file.text.clone().into_bytes(),
        ));
    }
    let release_template = template::release_template(
        &plan.template,
        &template::Release {
            buckets: &buckets,
            prefix: Some(&prefix),
            arch: Some(options.arch.as_str()),
        },
    )?;
    if release_template.len() > MAX_TEMPLATE_BYTES {
        bail!(
            "the template is {} bytes; CloudFormation reads at most {MAX_TEMPLATE_BYTES} from S3",
            release_template.len()
        );
    }
    // Last: the template is what makes a release visible to a link.
    artifacts.push(Artifact::new(TEMPLATE_KEY, release_template.into_bytes()));
    writeln!(
        log,
        "publishing Apiary {} ({}, {} functions) to {} regions: {}",
        options.version,
        options.arch,
        plan.functions.len(),
        buckets.len(),
        buckets.keys().cloned().collect::<Vec<_>>().join(", ")
    )?;

    // 2. Every region's bucket, read only.
    let mut regions = Vec::new();
    let mut conflicts = Vec::new();
    let mut complete = 0;
    // The emulator speaks plain HTTP: a TLS-only statement would refuse every call there.
    let mut tls_only = true;
    for (region, bucket) in &buckets {
        let settings = crate::package::aws_settings(env, Some(region), options.endpoint.as_deref());
        let config = apiary_core::aws::load(&settings).await;
        if config
            .endpoint_url()
            .is_some_and(|e| e.starts_with("http://"))
        {
            tls_only = false;
        }
        let s3 = apiary_core::aws::s3_client(&config);
        let exists = match upload::bucket_region(&s3, bucket, region).await? {
            None => false,
            Some(found) if found == *region => true,
            Some(found) => bail!(
                "bucket {bucket} is in {found}, not {region}: Lambda in {region} could not read \
                 code from it; nothing was written"
            ),
        };
        let mut held = Vec::with_capacity(artifacts.len());
        if exists {
            let names: Vec<String> = artifacts
                .iter()
                .map(|a| format!("{prefix}{}", a.name))
                .collect();
            for key in buckets::keys_under(&s3, bucket, &prefix).await? {
                if !names.contains(&key) {
                    conflicts.push(format!(
                        "s3://{bucket}/{key} is part of the published {} but not of this build",
                        options.version
                    ));
                }
            }
            for artifact in &artifacts {
                let key = format!("{prefix}{}", artifact.name);
                let found = upload::holds(&s3, bucket, &key, artifact).await;
                if found == Held::Other {
                    conflicts.push(format!("s3://{bucket}/{key} holds other bytes"));
                }
                held.push(found);
            }
            if held.iter().all(|h| *h == Held::Same) {
                complete += 1;
            }
        } else {
            held.resize(artifacts.len(), Held::Nothing);
        }
        regions.push((region.clone(), bucket.clone(), s3, exists, held));
    }
    if !conflicts.is_empty() {
        bail!(
            "version {} is already published with other contents; a release never changes, \
             so publish this build as a new version (--version). Nothing was written.\n  {}",
            options.version,
            conflicts.join("\n  ")
        );
    }
    if complete == regions.len() {
        bail!(
            "version {} is already published in every region asked ({}); a release never \
             changes, so publish a new build as a new version (--version). Nothing was written.",
            options.version,
            buckets.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }

    // 3. Write: each bucket's settings, then the objects not there yet, the template last.
    let mut released = Vec::new();
    for (region, bucket, s3, exists, held) in regions {
        if !exists {
            writeln!(log, "creating bucket {bucket} in {region}")?;
            buckets::create(&s3, &bucket, &region).await?;
        }
        buckets::configure(&s3, &bucket, &options.readers, tls_only).await?;
        writeln!(log, "{region}: s3://{bucket}/{prefix}")?;
        let mut objects = Vec::with_capacity(artifacts.len());
        for (artifact, held) in artifacts.iter().zip(held) {
            let key = format!("{prefix}{}", artifact.name);
            let outcome = if held == Held::Same {
                Outcome::Unchanged
            } else {
                upload::put(&s3, &bucket, &key, artifact, Put::IfAbsent).await?;
                Outcome::Uploaded
            };
            objects.push(upload::log_upload(log, &bucket, key, artifact, outcome)?);
        }
        let template_url = url::s3_object_url(&bucket, &region, &format!("{prefix}{TEMPLATE_KEY}"));
        let quick_create_url = url::quick_create_url(&region, &template_url, &stack_name, &[]);
        released.push(RegionRelease {
            link: RegionLink {
                region,
                bucket,
                template_url,
                quick_create_url,
            },
            created_bucket: !exists,
            objects,
        });
    }

    // 4. The page.
    let out_dir = options.out.clone().unwrap_or_else(|| {
        crate::package::target_dir(&options.root, env)
            .join("apiary-publish")
            .join(&options.version)
    });
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let links: Vec<RegionLink> = released.iter().map(|r| r.link.clone()).collect();
    let html = page::launch_html(&options.version, &stack_name, &links, &plan.parameters);
    let page_path = out_dir.join("launch.html");
    std::fs::write(&page_path, html).with_context(|| format!("writing {}", page_path.display()))?;
    let (required, _) = page::customer_parameters(&plan.parameters);
    Ok(Published {
        version: options.version.clone(),
        prefix,
        readers: options.readers.clone(),
        regions: released,
        page: page_path,
        parameters_to_fill: required.iter().map(|(n, _)| (*n).to_owned()).collect(),
    })
}

/// `DIR/<function>.zip` for every function: each must hold one `bootstrap` for `arch`.
fn read_zips(
    dir: &Path,
    functions: &[String],
    arch: Arch,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut missing = Vec::new();
    let mut out = Vec::new();
    for function in functions {
        let path = dir.join(format!("{function}.zip"));
        let zip = match std::fs::read(&path) {
            Ok(zip) => zip,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                missing.push(path.display().to_string());
                continue;
            }
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        let entries =
            archive::entries(&zip).with_context(|| format!("reading {}", path.display()))?;
        let mut expected = vec![archive::ENTRY];
        expected.extend(archive::Extras::expected_files(function));
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        if names != expected {
            bail!(
                "{} must hold exactly {}, as apiary package writes it; it holds {}",
                path.display(),
                expected.join(" and "),
                if names.is_empty() {
                    "nothing".to_owned()
                } else {
                    names.join(", ")
                }
            );
        }
        build::check_bootstrap(&path, &entries[0].contents, arch)?;
        for entry in &entries[1..] {
            if entry.name == verifier::tls::CA_BUNDLE_FILE {
                let name = format!("{} in {}", entry.name, path.display());
                verifier::tls::roots(&entry.contents, &name).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
        out.push((function.clone(), zip));
    }
    if !missing.is_empty() {
        bail!(
            "no zip for {} of {} functions in {} (apiary package writes them there with --out): {}",
            missing.len(),
            functions.len(),
            dir.display(),
            missing.join(", ")
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_one_key_segment() {
        for good in ["1.4.0", "1.4.0-rc.1", "2026.12.06", "v3"] {
            assert!(check_version(good).is_ok(), "{good}");
            options::check_prefix(&release_prefix(good)).unwrap();
        }
        for bad in ["", "1.0.0+build.5", "-1", "1/2", "a b", &"1".repeat(65)] {
            assert!(check_version(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn regions_and_buckets_come_from_the_template_unless_given() {
        let template = BTreeMap::from([
            ("us-east-1".to_owned(), "vendor-us-east-1".to_owned()),
            ("eu-west-1".to_owned(), "vendor-eu-west-1".to_owned()),
        ]);
        let mut options = Options {
            root: PathBuf::from("/repo"),
            version: "1.0.0".into(),
            source: Source::Zips(PathBuf::from("/zips")),
            arch: Arch::Arm64,
            regions: Vec::new(),
            bucket_prefix: None,
            readers: Readers::AnyAccount,
            endpoint: None,
            out: None,
            stack_name: None,
            database_ca_bundle: None,
        };
        let mut problems = Vec::new();
        assert_eq!(plan_buckets(&options, &template, &mut problems), template);
        assert!(problems.is_empty());

        options.regions = vec!["us-west-2".into()];
        plan_buckets(&options, &template, &mut problems);
        assert!(problems[0].contains("no bucket for it"), "{problems:?}");

        problems.clear();
        options.regions = vec!["us-west-2".into(), "Mars".into(), "us-west-2".into()];
        options.bucket_prefix = Some("acme-apiary".into());
        let buckets = plan_buckets(&options, &template, &mut problems);
        assert_eq!(buckets["us-west-2"], "acme-apiary-us-west-2");
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("Mars"));
        assert!(problems[1].contains("more than once"));

        problems.clear();
        options.regions = vec!["eu-west-1".into()];
        options.bucket_prefix = Some("Bad_Prefix".into());
        plan_buckets(&options, &template, &mut problems);
        assert!(
            problems[0].contains("is not an S3 bucket name"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_verifier_zip_without_its_database_ca_bundle_is_refused() {
        let dir = std::env::temp_dir().join(format!("apiary-zips-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let functions = vec!["keys".to_owned(), archive::VERIFIER.to_owned()];
        let script = b"#!/bin/sh\n";
        for function in &functions {
            std::fs::write(
                dir.join(format!("{function}.zip")),
                archive::bootstrap_zip(script).unwrap(),
            )
            .unwrap();
        }
        let err = read_zips(&dir, &functions, Arch::Arm64)
            .unwrap_err()
            .to_string();
        assert!(err.contains("verifier.zip"), "{err}");
        assert!(
            err.contains("bootstrap and database-ca-bundle.pem"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
