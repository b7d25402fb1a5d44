//! What the end-to-end tests share: one emulator per test binary, unique deployment
//! names, and SDK configuration pointed at the emulator.

use std::sync::OnceLock;

use apiary_core::aws::{AwsSettings, ProcessEnv};
use apiary_core::local::Emulator;
use aws_config::SdkConfig;

pub const REGION: &str = "us-west-2";

/// The emulator for this test binary: `AWS_ENDPOINT_URL` when set (CI starts one), else
/// one started now and stopped when the binary exits.
pub fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(|| {
        Emulator::from_env_or_start(&ProcessEnv).unwrap_or_else(|e| panic!("emulator: {e}"))
    })
}

/// SDK configuration for the emulator.
pub async fn sdk_config() -> SdkConfig {
    apiary_core::aws::load(&AwsSettings::local(emulator().endpoint(), REGION)).await
}

/// A deployment name no other test uses (tests share one emulator): `prefix-xxxxxx`.
pub fn unique_name(prefix: &str) -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let prefix: String = prefix.chars().take(15).collect();
    format!("{prefix}-{}", &suffix[..8])
}
