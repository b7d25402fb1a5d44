//! SigV4 query presigning: the one way Apiary builds a presigned AWS URL (the EKS bearer
//! token's STS `GetCallerIdentity`, a cross-region DocumentDB copy's `PreSignedUrl`). The
//! SDK presigns only the operations it models as presignable; these two are not.

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use crate::{Error, Result};

/// The signing query parameters (`X-Amz-Algorithm`, ..., `X-Amz-Signature`) of a `GET`
/// of `url` (its query already holding the operation's parameters) for `service` in
/// `region`, valid `expires_in` from `time`; `headers` are signed too. `what` names the
/// URL in errors.
#[allow(clippy::too_many_arguments)]
pub fn presign_get(
    what: &str,
    url: &str,
    service: &str,
    region: &str,
    headers: &[(&str, &str)],
    expires_in: Duration,
    identity: &Identity,
    time: SystemTime,
) -> Result<Vec<(String, String)>> {
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires_in);
    let params = v4::SigningParams::builder()
        .identity(identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| Error::fatal(format!("{what}: signing parameters: {e}")))?
        .into();
    let request = SignableRequest::new(
        "GET",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| Error::fatal(format!("{what}: request: {e}")))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| Error::fatal(format!("{what}: signing: {e}")))?
        .into_parts();
    Ok(instructions
        .params()
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.to_string()))
        .collect())
}

/// SigV4's URI encoding: everything but the unreserved characters is percent-encoded.
pub fn uri_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_encoding_leaves_only_unreserved_characters() {
        assert_eq!(uri_encode("a-Z_0.~"), "a-Z_0.~");
        assert_eq!(
            uri_encode("arn:aws:rds/x y+z"),
            "arn%3Aaws%3Ards%2Fx%20y%2Bz"
        );
    }
}
