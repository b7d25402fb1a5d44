//! The library behind `apiary`: running workflows locally in the embedded engine.

pub mod local;
