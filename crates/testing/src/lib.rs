//! Test support shared by every crate's tests (a dev-dependency only, like linkerd's `app/test`).
//!
//! - [`fake_api`]: a fake Kubernetes API server speaking the real list/watch protocol.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a failure fails the test"
)]

pub mod fake_api;
