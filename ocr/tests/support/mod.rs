//! Shared helpers for the tests and the benchmark example.

pub mod render;
