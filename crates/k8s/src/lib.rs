//! Sources of Kubernetes objects: a manifest directory and the API server.
//!
//! Every source produces the model's input ([`switchyard_model::ClusterState`] and
//! [`switchyard_model::Change`]s), so the model never learns where objects came from.

pub mod api;
pub mod health;
pub mod manifest;
