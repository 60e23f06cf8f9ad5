//! Helpers shared by the integration tests.

// Each test binary compiles this module and uses part of it.
#![allow(dead_code)]

pub mod faults;
pub mod nats;
pub mod openapi_check;
