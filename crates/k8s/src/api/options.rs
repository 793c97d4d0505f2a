//! What the API source watches and how: selectors (as kube-proxy sets them), list strategy,
//! backoff.

use std::time::Duration;

use switchyard_model::{HEADLESS_LABEL, SERVICE_PROXY_NAME_LABEL};

/// How a watch (re)starts with a complete list of objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InitialList {
    /// A watch with `sendInitialEvents=true` (Kubernetes streaming lists); falls back to
    /// [`InitialList::ListWatch`] when the API server refuses it.
    #[default]
    Streaming,
    /// A paginated LIST, then a WATCH from its resourceVersion.
    ListWatch,
}

/// Which objects the API source watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WatchScope {
    /// The node agent's: Services and EndpointSlices for this proxy (kube-proxy's label
    /// selector), every Node (L2 mode chooses among them), and our own kinds.
    #[default]
    Node,
    /// The controller's: every Service, whatever proxy it is for, and IPPools.
    Controller,
    /// The director's: Services and EndpointSlices for this proxy (as the node's), every Node
    /// (a VIP's nodes are cluster-wide), IPPools, and for announcing its VIPs BGPPeers,
    /// BGPAdvertisements and the Secrets BGPPeers name.
    Director,
}

/// Settings of the API source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiOptions {
    pub scope: WatchScope,
    /// The Node this proxy runs on.
    pub node_name: String,
    /// `None`: Services without the `service.kubernetes.io/service-proxy-name` label.
    /// `Some(name)`: only Services whose label names this proxy.
    pub proxy_name: Option<String>,
    pub initial_list: InitialList,
    /// Objects per LIST page (ListWatch only); `None` lets the API server decide.
    pub page_size: Option<u32>,
    /// First delay after a failed request; doubled on each further failure up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl ApiOptions {
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            scope: WatchScope::Node,
            node_name: node_name.into(),
            proxy_name: None,
            initial_list: InitialList::default(),
            page_size: Some(500),
            // client-go's reflector backoff: 800 ms doubling to 30 s.
            min_backoff: Duration::from_millis(800),
            max_backoff: Duration::from_secs(30),
        }
    }

    /// The controller's watch: every Service and IPPool (it runs on no particular node).
    pub fn controller() -> Self {
        Self { scope: WatchScope::Controller, ..Self::new("") }
    }

    /// The director's watch: Services and EndpointSlices for this proxy, every Node, IPPools,
    /// BGPPeers, BGPAdvertisements and the Secrets BGPPeers name.
    pub fn director() -> Self {
        Self { scope: WatchScope::Director, ..Self::new("") }
    }

    /// Label selector for Services and EndpointSlices, the one kube-proxy uses: Services meant
    /// for another proxy and headless Services are filtered out by the API server. The
    /// EndpointSlice controller copies these labels onto the slices, so the same selector works
    /// for both.
    pub fn label_selector(&self) -> String {
        let proxy = match &self.proxy_name {
            None => format!("!{SERVICE_PROXY_NAME_LABEL}"),
            Some(name) => format!("{SERVICE_PROXY_NAME_LABEL}={name}"),
        };
        format!("{proxy},!{HEADLESS_LABEL}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selector_excludes_other_proxies_and_headless_services() {
        let cases: &[(Option<&str>, &str)] = &[
            (None, "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless"),
            (
                Some("switchyard"),
                "service.kubernetes.io/service-proxy-name=switchyard,!service.kubernetes.io/headless",
            ),
        ];
        for (proxy_name, expected) in cases {
            let options = ApiOptions {
                proxy_name: proxy_name.map(str::to_owned),
                ..ApiOptions::new("node-a")
            };
            assert_eq!(options.label_selector(), *expected, "proxy name {proxy_name:?}");
        }
    }
}
