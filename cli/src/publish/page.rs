//! The launch page: a static `launch.html` the vendor hosts, with one row per region
//! (its "Launch stack" button, the template it installs) and the parameters the
//! customer fills in. No script, no external resource: it renders the same anywhere.

use std::collections::BTreeMap;

use crate::package::plan::{ARTIFACT_PARAMETERS, TemplateParameter};

/// One region's link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionLink {
    pub region: String,
    pub bucket: String,
    pub template_url: String,
    pub quick_create_url: String,
}

/// `&`, `<`, `>`, `"` and `'` escaped: safe in text and in a quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Parameters by name, in the template's (sorted) order.
pub type NamedParameters<'a> = Vec<(&'a str, &'a TemplateParameter)>;

/// The parameters a customer must fill in (no default), then the ones they may change,
/// leaving out the artifact parameters, which only a self-packaged build sets.
pub fn customer_parameters(
    parameters: &BTreeMap<String, TemplateParameter>,
) -> (NamedParameters<'_>, NamedParameters<'_>) {
    let mut required = Vec::new();
    let mut optional = Vec::new();
    for (name, parameter) in parameters {
        if ARTIFACT_PARAMETERS.contains(&name.as_str()) {
            continue;
        }
        if parameter.default.is_none() {
            required.push((name.as_str(), parameter));
        } else {
            optional.push((name.as_str(), parameter));
        }
    }
    (required, optional)
}

/// The page for one release.
pub fn launch_html(
    version: &str,
    stack_name: &str,
    links: &[RegionLink],
    parameters: &BTreeMap<String, TemplateParameter>,
) -> String {
    let (required, optional) = customer_parameters(parameters);
    let required_names: Vec<String> = required
        .iter()
        .map(|(name, _)| format!("<code>{}</code>", escape(name)))
        .collect();
    let required_cell = if required_names.is_empty() {
        "nothing (every parameter has a default)".to_owned()
    } else {
        required_names.join(", ")
    };
    let mut rows = String::new();
    for link in links {
        rows.push_str(&format!(
            "      <tr data-region=\"{region}\">\n        <td>{region}</td>\n        \
             <td><a class=\"launch\" data-region=\"{region}\" href=\"{href}\">Launch stack</a></td>\n        \
             <td>{required_cell}</td>\n        \
             <td><a class=\"template\" href=\"{template}\">template</a></td>\n      </tr>\n",
            region = escape(&link.region),
            href = escape(&link.quick_create_url),
            template = escape(&link.template_url),
        ));
    }
    let describe = |list: &[(&str, &TemplateParameter)]| -> String {
        list.iter()
            .map(|(name, parameter)| {
                let default = parameter
                    .default
                    .as_deref()
                    .map(|d| {
                        if d.is_empty() {
                            " (default: empty)".to_owned()
                        } else {
                            format!(" (default: <code>{}</code>)", escape(d))
                        }
                    })
                    .unwrap_or_default();
                format!(
                    "      <li><code>{}</code>{default}: {}</li>\n",
                    escape(name),
                    escape(parameter.description.as_deref().unwrap_or(""))
                )
            })
            .collect()
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n  <meta charset=\"utf-8\">\n  \
         <title>Install Apiary {version}</title>\n  <style>\n    \
         body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em; }}\n    \
         table {{ border-collapse: collapse; }}\n    \
         td, th {{ border: 1px solid #ccc; padding: 0.4em 0.8em; text-align: left; }}\n    \
         a.launch {{ display: inline-block; background: #ff9900; color: #000; padding: 0.3em 0.8em; \
         border-radius: 4px; text-decoration: none; font-weight: bold; }}\n  \
         </style>\n</head>\n<body>\n  <h1>Install Apiary {version}</h1>\n  \
         <p>Apiary installs the HoneyHive data plane in your own AWS account. Choose your region's \
         <b>Launch stack</b> button: the AWS CloudFormation console opens with the stack \
         <code>{stack}</code> ready to create. Fill in the parameters below, acknowledge that the \
         stack creates IAM roles with custom names, and choose <b>Create stack</b>.</p>\n  \
         <table id=\"regions\">\n    <thead>\n      <tr><th>Region</th><th>Launch</th>\
         <th>You fill in</th><th>Template</th></tr>\n    </thead>\n    <tbody>\n{rows}    \
         </tbody>\n  </table>\n  <h2>Parameters you fill in</h2>\n  <ul id=\"required\">\n{required_list}  </ul>\n  \
         <h2>Parameters you may change</h2>\n  <ul id=\"optional\">\n{optional_list}  </ul>\n  \
         <p>To upgrade an installed stack to this release, update the stack in the console with \
         <b>Replace existing template</b> and the template link of your region.</p>\n\
         </body>\n</html>\n",
        version = escape(version),
        stack = escape(stack_name),
        required_list = describe(&required),
        optional_list = describe(&optional),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameters() -> BTreeMap<String, TemplateParameter> {
        BTreeMap::from([
            (
                "Domain".to_owned(),
                TemplateParameter {
                    description: Some("The <domain> the data plane serves".into()),
                    ..TemplateParameter::default()
                },
            ),
            (
                "Size".to_owned(),
                TemplateParameter {
                    default: Some("small".into()),
                    ..TemplateParameter::default()
                },
            ),
            (
                "ArtifactBucket".to_owned(),
                TemplateParameter {
                    default: Some(String::new()),
                    ..TemplateParameter::default()
                },
            ),
        ])
    }

    #[test]
    fn every_region_gets_a_button_with_its_link_escaped() {
        let links = vec![RegionLink {
            region: "eu-west-1".into(),
            bucket: "b".into(),
            template_url: "https://b.s3.eu-west-1.amazonaws.com/releases/1.0.0/bootstrap.yaml".into(),
            quick_create_url: "https://eu-west-1.console.aws.amazon.com/cloudformation/home?region=eu-west-1#/stacks/quickcreate?templateURL=x&stackName=s".into(),
        }];
        let html = launch_html("1.0.0", "apiary-honeyhive", &links, &parameters());
        assert!(html.contains(
            "<a class=\"launch\" data-region=\"eu-west-1\" href=\"https://eu-west-1.console.aws.amazon.com/cloudformation/home?region=eu-west-1#/stacks/quickcreate?templateURL=x&amp;stackName=s\">Launch stack</a>"
        ), "{html}");
        assert!(html.contains("<td><code>Domain</code></td>"), "{html}");
        assert!(
            html.contains("The &lt;domain&gt; the data plane serves"),
            "{html}"
        );
        assert!(
            html.contains("<code>Size</code> (default: <code>small</code>)"),
            "{html}"
        );
        assert!(!html.contains("ArtifactBucket"), "{html}");
        assert!(!html.contains("<script"), "{html}");
    }

    #[test]
    fn escaping_covers_attributes() {
        assert_eq!(escape(r#"a&b<c>"d'"#), "a&amp;b&lt;c&gt;&quot;d&#39;");
    }
}
