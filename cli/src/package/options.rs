//! The options of `apiary package`, checked against the template before anything is
//! built, written or uploaded: the bucket name, the prefix and the `--parameter` values
//! must be ones the template's parameters accept, so the link never opens a page that
//! refuses them.

use super::Options;
use super::plan::{ARTIFACT_PARAMETERS, FUNCTION_ARCHITECTURE, Plan, Problems};

/// The options that feed the quick-create link, checked.
pub struct CheckedOptions {
    pub stack_name: String,
    pub parameters: Vec<(String, String)>,
}

/// Every option checked against the template; all problems are listed together.
pub fn check_options(plan: &Plan, options: &Options) -> Result<CheckedOptions, Problems> {
    let mut problems = Vec::new();
    if let Err(problem) = check_bucket_name(&options.bucket) {
        problems.push(problem);
    }
    if let Some(prefix) = &options.prefix
        && let Err(problem) = check_prefix(prefix)
    {
        problems.push(problem);
    }
    let architectures = plan
        .parameters
        .get(FUNCTION_ARCHITECTURE)
        .and_then(|p| p.allowed_values.clone());
    if let Some(allowed) = architectures
        && !allowed.iter().any(|a| a == options.arch.as_str())
    {
        problems.push(format!(
            "--arch {}: the template's {FUNCTION_ARCHITECTURE} allows only {}",
            options.arch,
            allowed.join(", ")
        ));
    }
    let parameters = check_parameters(plan, &options.parameters).unwrap_or_else(|found| {
        problems.extend(found);
        Vec::new()
    });
    let stack_name = options.stack_name.clone().unwrap_or_else(|| {
        let deployment = parameters
            .iter()
            .find(|(k, _)| k == "DeploymentName")
            .map(|(_, v)| v.clone())
            .or_else(|| plan.parameters.get("DeploymentName")?.default.clone())
            .unwrap_or_else(|| "honeyhive".to_owned());
        format!("apiary-{deployment}")
    });
    if let Err(problem) = check_stack_name(&stack_name) {
        problems.push(problem);
    }
    if problems.is_empty() {
        Ok(CheckedOptions {
            stack_name,
            parameters,
        })
    } else {
        Err(Problems {
            what: "invalid options".to_owned(),
            problems,
        })
    }
}

/// `^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`, the template's ArtifactBucket pattern, and no
/// `..`, which S3 refuses.
pub fn check_bucket_name(bucket: &str) -> Result<(), String> {
    let bytes = bucket.as_bytes();
    let edge_ok = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let valid = (3..=63).contains(&bytes.len())
        && bytes.first().is_some_and(edge_ok)
        && bytes.last().is_some_and(edge_ok)
        && bytes.iter().all(|b| edge_ok(b) || *b == b'.' || *b == b'-')
        && !bucket.contains("..");
    if valid {
        Ok(())
    } else {
        Err(format!(
            "--bucket {bucket:?} is not an S3 bucket name (3-63 lowercase letters, digits, \
             dots and hyphens, starting and ending with a letter or digit)"
        ))
    }
}

/// The template's ArtifactPrefix pattern (`^$|^[A-Za-z0-9!_.*'()/-]*/$`), without a
/// leading slash or an empty segment, which S3 would keep literally.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Ok(());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "!_.*'()/-".contains(c);
    let problem = if !prefix.ends_with('/') {
        Some("must end with /")
    } else if let Some(c) = prefix.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "--prefix {prefix:?}: {c:?} is not allowed; use letters, digits and !_.*'()/-"
        ));
    } else if prefix.starts_with('/') || prefix.contains("//") {
        Some("has an empty path segment")
    } else if prefix.len() > 512 {
        Some("is longer than 512 characters")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(format!("--prefix {prefix:?} {problem}")),
        None => Ok(()),
    }
}

/// CloudFormation's stack name rule.
pub fn check_stack_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "--stack-name {name:?}: a stack name starts with a letter and has only letters, \
             digits and hyphens (at most 128)"
        ))
    }
}

/// `--parameter Key=Value` pairs: each names a template parameter other than the ones
/// `apiary package` sets, at most once, with one of its allowed values if it has a list.
pub fn check_parameters(
    plan: &Plan,
    pairs: &[String],
) -> Result<Vec<(String, String)>, Vec<String>> {
    let mut problems = Vec::new();
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            problems.push(format!("--parameter {pair:?}: expected Key=Value"));
            continue;
        };
        if ARTIFACT_PARAMETERS.contains(&key) {
            problems.push(format!(
                "--parameter {key}: set by apiary package (use --bucket, --prefix or --arch)"
            ));
            continue;
        }
        let Some(parameter) = plan.parameters.get(key) else {
            let known: Vec<&str> = plan
                .parameters
                .keys()
                .map(String::as_str)
                .filter(|k| !ARTIFACT_PARAMETERS.contains(k))
                .collect();
            problems.push(format!(
                "--parameter {key}: the template has no such parameter; it has {}",
                known.join(", ")
            ));
            continue;
        };
        if let Some(allowed) = &parameter.allowed_values
            && !allowed.iter().any(|a| a == value)
        {
            problems.push(format!(
                "--parameter {key}={value}: allowed values are {}",
                allowed.join(", ")
            ));
            continue;
        }
        if out.iter().any(|(k, _)| k == key) {
            problems.push(format!("--parameter {key}: given more than once"));
            continue;
        }
        out.push((key.to_owned(), value.to_owned()));
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::super::plan::tests::consistent;
    use super::super::plan::{self};
    use super::super::tests::options;
    use super::*;
    use crate::package::Arch;

    #[test]
    fn bucket_names() {
        for good in ["abc", "acme-artifacts", "acme.artifacts.eu", "0-9"] {
            assert!(check_bucket_name(good).is_ok(), "{good}");
        }
        let too_long = "a".repeat(64);
        for bad in [
            "ab",
            "Acme",
            "-acme",
            "acme-",
            "acme..x",
            "acme_x",
            too_long.as_str(),
        ] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_follow_the_template_pattern() {
        for good in ["", "apiary/", "apiary/0.1.0-0123456789ab/", "a!_.*'()-/b/"] {
            assert!(check_prefix(good).is_ok(), "{good}");
        }
        let missing_slash = check_prefix("apiary").unwrap_err();
        assert!(missing_slash.contains("must end with /"), "{missing_slash}");
        let bad_char = check_prefix("api ary/").unwrap_err();
        assert!(bad_char.contains("' ' is not allowed"), "{bad_char}");
        assert!(check_prefix("/apiary/").is_err());
        assert!(check_prefix("apiary//v1/").is_err());
        assert!(check_prefix("apiary/+1/").is_err());
    }

    #[test]
    fn stack_names() {
        assert!(check_stack_name("apiary-honeyhive").is_ok());
        assert!(check_stack_name("1apiary").is_err());
        assert!(check_stack_name("apiary_honeyhive").is_err());
        assert!(check_stack_name(&"a".repeat(129)).is_err());
    }

    #[test]
    fn parameters_name_template_parameters_with_allowed_values() {
        let fixture = consistent();
        let plan = plan::plan(&fixture.root).unwrap();
        let ok =
            check_parameters(&plan, &["Domain=hh.example.com".into(), "AzCount=2".into()]).unwrap();
        assert_eq!(
            ok,
            [
                ("Domain".to_owned(), "hh.example.com".to_owned()),
                ("AzCount".to_owned(), "2".to_owned())
            ]
        );
        let problems = check_parameters(
            &plan,
            &[
                "Domian=x".into(),
                "AzCount=5".into(),
                "ArtifactBucket=b".into(),
                "novalue".into(),
                "Domain=a.example.com".into(),
                "Domain=b.example.com".into(),
            ],
        )
        .unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems[0].contains("no such parameter; it has AzCount, Domain"));
        assert!(problems[1].contains("allowed values are 2, 3"));
        assert!(problems[2].contains("set by apiary package"));
        assert!(problems[3].contains("expected Key=Value"));
        assert!(problems[4].contains("more than once"));
    }

    #[test]
    fn the_stack_name_follows_the_deployment_name() {
        let fixture = consistent();
        let plan = plan::plan(&fixture.root).unwrap();
        let mut options = options(&fixture.root);
        assert_eq!(
            check_options(&plan, &options).ok().unwrap().stack_name,
            "apiary-honeyhive"
        );
        options.parameters = vec!["Domain=hh.example.com".into()];
        let checked = check_options(&plan, &options).ok().unwrap();
        assert_eq!(checked.stack_name, "apiary-honeyhive");
        assert_eq!(
            checked.parameters,
            [("Domain".into(), "hh.example.com".into())]
        );
        options.stack_name = Some("mine".into());
        assert_eq!(
            check_options(&plan, &options).ok().unwrap().stack_name,
            "mine"
        );
    }

    #[test]
    fn an_arch_the_template_does_not_allow_is_refused() {
        let fixture = consistent();
        let mut plan = plan::plan(&fixture.root).unwrap();
        plan.parameters
            .get_mut(FUNCTION_ARCHITECTURE)
            .unwrap()
            .allowed_values = Some(vec!["arm64".into()]);
        let mut options = options(&fixture.root);
        options.arch = Arch::X86_64;
        let problems = check_options(&plan, &options).err().unwrap().problems;
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("allows only arm64"));
    }
}
