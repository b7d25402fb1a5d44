//! Local-only helpers: the AWS emulator. Never compiled into a Lambda.

mod emulator;

pub use emulator::{Emulator, EmulatorError, project_root};
