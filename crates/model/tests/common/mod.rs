//! Builders that read like manifests, and summaries that read like `switchyard services`.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use serde_json::Value;
use switchyard_model::{
    Backend, BackendState, DesiredState, Frontend, FrontendKey, NodeModel, ProxyConfig,
};
#[allow(unused_imports, reason = "each test target uses a different part")]
pub use switchyard_testing::objects::{
    NODE, cluster, endpoint as ep, node, service as svc, slice, this_node, with,
};

pub fn desired(config: &ProxyConfig, objects: &[Value]) -> DesiredState {
    NodeModel::from_state(config.clone(), &cluster(objects)).desired().clone()
}

pub fn config() -> ProxyConfig {
    ProxyConfig::new(NODE)
}

pub fn key(text: &str) -> FrontendKey {
    let (address, protocol) = text.rsplit_once('/').unwrap();
    let address: std::net::SocketAddr = address.parse().unwrap();
    let protocol = match protocol {
        "TCP" => switchyard_model::Protocol::Tcp,
        "UDP" => switchyard_model::Protocol::Udp,
        "SCTP" => switchyard_model::Protocol::Sctp,
        other => panic!("unknown protocol {other}"),
    };
    FrontendKey::new(address.ip(), address.port(), protocol)
}

/// "ip:port" for ready backends, "ip:port(T)" for terminating ones, "+L" suffix when local.
pub fn backend_list(backends: &[Backend]) -> Vec<String> {
    backends
        .iter()
        .map(|b| {
            let address = std::net::SocketAddr::new(b.ip, b.port).to_string();
            let state = if b.state == BackendState::Terminating { "(T)" } else { "" };
            let local = if b.is_local { "+L" } else { "" };
            format!("{address}{state}{local}")
        })
        .collect()
}

pub fn backends_of(state: &DesiredState, frontend: &str) -> Option<Vec<String>> {
    state.get(&key(frontend)).map(|f| backend_list(&f.backends))
}

pub fn frontend<'a>(state: &'a DesiredState, frontend: &str) -> &'a Frontend {
    state
        .get(&key(frontend))
        .unwrap_or_else(|| panic!("no frontend {frontend}; have {:?}", keys(state)))
}

pub fn keys(state: &DesiredState) -> Vec<String> {
    state.frontends.keys().map(ToString::to_string).collect()
}
