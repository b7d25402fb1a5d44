//! The links `apiary package` prints: where the template is, and the CloudFormation
//! console's quick-create page for it.

/// Percent-encodes everything but the RFC 3986 unreserved characters, so the result is
/// safe as a query value, a fragment parameter or one path segment.
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// An S3 key as a URL path: each segment encoded, the slashes kept.
pub fn encode_key(key: &str) -> String {
    key.split('/')
        .map(encode_component)
        .collect::<Vec<_>>()
        .join("/")
}

use apiary_core::aws::dns_suffix as s3_suffix;

/// The HTTPS URL of an object on S3: virtual-hosted style, or path style for a bucket
/// name with dots (which the `*.s3.<region>` certificate does not cover).
pub fn s3_object_url(bucket: &str, region: &str, key: &str) -> String {
    let suffix = s3_suffix(region);
    let key = encode_key(key);
    if bucket.contains('.') {
        format!("https://s3.{region}.{suffix}/{bucket}/{key}")
    } else {
        format!("https://{bucket}.s3.{region}.{suffix}/{key}")
    }
}

/// The same object on an S3-compatible endpoint (the emulator): path style.
pub fn endpoint_object_url(endpoint: &str, bucket: &str, key: &str) -> String {
    format!(
        "{}/{bucket}/{}",
        endpoint.trim_end_matches('/'),
        encode_key(key)
    )
}

/// The console page that creates a stack from `template_url` with the given name and
/// parameter values filled in; the user reviews them and chooses **Create stack**.
pub fn quick_create_url(
    region: &str,
    template_url: &str,
    stack_name: &str,
    parameters: &[(String, String)],
) -> String {
    let mut url = format!(
        "{}/cloudformation/home?region={}#/stacks/quickcreate?templateURL={}&stackName={}",
        apiary_core::aws::console_origin(region),
        encode_component(region),
        encode_component(template_url),
        encode_component(stack_name),
    );
    for (name, value) in parameters {
        url.push_str(&format!(
            "&param_{}={}",
            encode_component(name),
            encode_component(value)
        ));
    }
    url
}

/// Undoes [`encode_component`] (and any other percent-encoding); `None` for a broken
/// escape or bytes that are not UTF-8.
pub fn decode_component(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = std::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A quick-create link taken apart: what [`quick_create_url`] put in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuickCreate {
    pub region: String,
    pub template_url: String,
    pub stack_name: String,
    pub parameters: Vec<(String, String)>,
}

/// Reads a quick-create link back, checking its shape: the region's console origin,
/// `region=` the same region, the `#/stacks/quickcreate` page, a `templateURL`, a
/// `stackName`, and only `param_<Name>` otherwise, each encoded once.
pub fn parse_quick_create(url: &str) -> Result<QuickCreate, String> {
    let (base, fragment) = url
        .split_once('#')
        .ok_or_else(|| format!("{url}: no #/stacks/quickcreate fragment"))?;
    let (origin, query) = base
        .split_once("/cloudformation/home?")
        .ok_or_else(|| format!("{url}: not a CloudFormation console link"))?;
    let region = query
        .strip_prefix("region=")
        .filter(|r| {
            !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        .ok_or_else(|| format!("{url}: the console query is not region=<region>"))?;
    if origin != apiary_core::aws::console_origin(region) {
        return Err(format!("{url}: {origin} is not the console of {region}"));
    }
    let fields = fragment
        .strip_prefix("/stacks/quickcreate?")
        .ok_or_else(|| format!("{url}: the fragment is not /stacks/quickcreate?..."))?;
    let mut template_url = None;
    let mut stack_name = None;
    let mut parameters = Vec::new();
    for field in fields.split('&') {
        let (name, value) = field
            .split_once('=')
            .ok_or_else(|| format!("{url}: {field:?} is not name=value"))?;
        if value.contains(['?', '#', '/', ' ', ':']) {
            return Err(format!("{url}: the value of {name} is not encoded"));
        }
        let value =
            decode_component(value).ok_or_else(|| format!("{url}: {name} has a broken escape"))?;
        let slot = match name {
            "templateURL" => &mut template_url,
            "stackName" => &mut stack_name,
            _ => {
                let parameter = name
                    .strip_prefix("param_")
                    .ok_or_else(|| format!("{url}: unknown field {name}"))?;
                parameters.push((parameter.to_owned(), value));
                continue;
            }
        };
        if slot.replace(value).is_some() {
            return Err(format!("{url}: {name} is given twice"));
        }
    }
    Ok(QuickCreate {
        region: region.to_owned(),
        template_url: template_url.ok_or_else(|| format!("{url}: no templateURL"))?,
        stack_name: stack_name.ok_or_else(|| format!("{url}: no stackName"))?,
        parameters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_keep_only_unreserved_characters() {
        assert_eq!(encode_component("AZaz09-._~"), "AZaz09-._~");
        assert_eq!(
            encode_component("a/b c&d=e?f#g+h%"),
            "a%2Fb%20c%26d%3De%3Ff%23g%2Bh%25"
        );
        assert_eq!(encode_component("é"), "%C3%A9");
        assert_eq!(encode_key("apiary/0.1.0-ab/(x)"), "apiary/0.1.0-ab/%28x%29");
    }

    #[test]
    fn object_urls_are_virtual_hosted_unless_the_bucket_has_dots() {
        assert_eq!(
            s3_object_url("acme-artifacts", "eu-west-1", "apiary/v1/bootstrap.yaml"),
            "https://acme-artifacts.s3.eu-west-1.amazonaws.com/apiary/v1/bootstrap.yaml"
        );
        assert_eq!(
            s3_object_url("acme.artifacts", "eu-west-1", "apiary/v1/bootstrap.yaml"),
            "https://s3.eu-west-1.amazonaws.com/acme.artifacts/apiary/v1/bootstrap.yaml"
        );
        assert_eq!(
            s3_object_url("b", "cn-north-1", "k"),
            "https://b.s3.cn-north-1.amazonaws.com.cn/k"
        );
        assert_eq!(
            endpoint_object_url("http://127.0.0.1:5000/", "b", "p/bootstrap.yaml"),
            "http://127.0.0.1:5000/b/p/bootstrap.yaml"
        );
    }

    #[test]
    fn quick_create_url_encodes_the_template_url_and_every_parameter() {
        let template = s3_object_url(
            "acme.artifacts",
            "us-west-2",
            "apiary/0.1.0-abc/bootstrap.yaml",
        );
        let url = quick_create_url(
            "us-west-2",
            &template,
            "apiary-honeyhive",
            &[
                ("ArtifactBucket".into(), "acme.artifacts".into()),
                ("ArtifactPrefix".into(), "apiary/0.1.0-abc/".into()),
                ("FunctionArchitecture".into(), "arm64".into()),
                ("Domain".into(), "hh.example.com".into()),
            ],
        );
        assert_eq!(
            url,
            "https://us-west-2.console.aws.amazon.com/cloudformation/home?region=us-west-2\
             #/stacks/quickcreate\
             ?templateURL=https%3A%2F%2Fs3.us-west-2.amazonaws.com%2Facme.artifacts%2Fapiary%2F0.1.0-abc%2Fbootstrap.yaml\
             &stackName=apiary-honeyhive\
             &param_ArtifactBucket=acme.artifacts\
             &param_ArtifactPrefix=apiary%2F0.1.0-abc%2F\
             &param_FunctionArchitecture=arm64\
             &param_Domain=hh.example.com"
        );
        // Only one '?' after the fragment and no raw '&' or '#' inside a value.
        let fragment = url.split_once('#').unwrap().1;
        assert_eq!(fragment.matches('?').count(), 1);
        assert_eq!(fragment.matches('&').count(), 5);
    }

    #[test]
    fn quick_create_links_read_back_as_they_were_made() {
        let template = s3_object_url(
            "acme-artifacts",
            "eu-west-1",
            "releases/1.0.0/bootstrap.yaml",
        );
        let parameters = vec![("Domain".to_owned(), "hh.example.com".to_owned())];
        let url = quick_create_url("eu-west-1", &template, "apiary-honeyhive", &parameters);
        assert_eq!(
            parse_quick_create(&url).unwrap(),
            QuickCreate {
                region: "eu-west-1".into(),
                template_url: template.clone(),
                stack_name: "apiary-honeyhive".into(),
                parameters,
            }
        );
        assert_eq!(
            decode_component(&encode_component("a/b c&é")).unwrap(),
            "a/b c&é"
        );
        // A link for another region's console, an unencoded value, a missing field.
        let wrong_console = url.replacen("eu-west-1.console", "us-east-1.console", 1);
        assert!(
            parse_quick_create(&wrong_console)
                .unwrap_err()
                .contains("not the console")
        );
        let raw = url.replace(&encode_component(&template), &template);
        assert!(
            parse_quick_create(&raw)
                .unwrap_err()
                .contains("not encoded")
        );
        let nameless = url.replace("&stackName=apiary-honeyhive", "");
        assert!(
            parse_quick_create(&nameless)
                .unwrap_err()
                .contains("no stackName")
        );
        assert!(parse_quick_create("https://example.com/").is_err());
    }

    #[test]
    fn other_partitions_use_their_console() {
        let url = quick_create_url("us-gov-west-1", "https://t", "s", &[]);
        assert!(url.starts_with(
            "https://console.amazonaws-us-gov.com/cloudformation/home?region=us-gov-west-1#"
        ));
        let url = quick_create_url("cn-north-1", "https://t", "s", &[]);
        assert!(
            url.starts_with("https://console.amazonaws.cn/cloudformation/home?region=cn-north-1#")
        );
    }
}
