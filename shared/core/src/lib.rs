//! Apiary's shared core: the deployment spec, naming and tagging, the AWS client
//! factory, the DynamoDB state store and the error model every function returns.

pub mod alerts;
pub mod aws;
pub mod calls;
pub mod error;
pub mod fixtures;
pub mod inputs;
pub mod lambda;
#[cfg(feature = "local")]
pub mod local;
pub mod naming;
pub mod outputs;
pub mod phone_home;
pub mod sigv4;
pub mod spec;
pub mod step;
pub mod store;

pub use error::{ERROR_NAMES, Error, ErrorName, Result};
pub use naming::{Layer, Names};
pub use spec::DeploymentSpec;
