//! The workflow crate's tests, in one binary (each test binary links the engine and the
//! state store's SDK crates again).

mod budget;
mod common;
mod day2;
mod generated;
mod runs;
mod stack_delete;
mod upgrade;
