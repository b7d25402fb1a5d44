//! The library behind `apiary`: running workflows locally in the embedded engine, and
//! packaging the control plane for a real AWS account.

pub mod chaos;
pub mod local;
pub mod package;
pub mod publish;
