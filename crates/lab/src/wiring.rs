//! Builds a planned lab's network with rtnetlink: namespaces, veths, addresses and routes.
//!
//! One netlink socket is opened inside each namespace when it is created (a socket stays bound to
//! the namespace it was created in), then all namespaces are configured concurrently on one
//! runtime in three phases: veths, links up with addresses, routes. Routes come last so every
//! gateway is already reachable on a link with carrier.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use futures::TryStreamExt;
use futures::future::try_join_all;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkXdp};
use rtnetlink::packet_route::route::{RouteAttribute, RouteMetric, RouteScope};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder, RouteNextHopBuilder};

use crate::error::LabError;
use crate::netns;
use crate::plan::{Cidr, LabPlan, POD_GATEWAY_V4, POD_GATEWAY_V6};

/// A netlink handle bound to one namespace, with the namespace's name for errors.
#[derive(Clone)]
struct Ns {
    name: String,
    handle: Handle,
}

impl std::fmt::Debug for Ns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ns").field("name", &self.name).finish_non_exhaustive()
    }
}

fn nl_err(ns: &Ns, what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LabError {
    let netns = ns.name.clone();
    let what = what.into();
    move |cause| LabError::Netlink { netns, what, cause }
}

/// Creates every namespace of `plan` and wires them. On error, the caller tears down by prefix.
pub(crate) fn build(plan: &LabPlan) -> Result<(), LabError> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .map_err(LabError::io("starting the netlink runtime"))?;
                let namespaces = create_namespaces(plan, runtime.handle())?;
                runtime.block_on(configure(plan, &namespaces))
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Creates the namespaces in parallel, each with a netlink connection opened inside it.
fn create_namespaces(
    plan: &LabPlan,
    runtime: &tokio::runtime::Handle,
) -> Result<BTreeMap<String, Ns>, LabError> {
    let names = plan.all_netns();
    let results: Vec<Result<Ns, LabError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = names
            .iter()
            .map(|name| {
                scope.spawn(move || {
                    let handle = netns::create(name, || {
                        let _guard = runtime.enter();
                        let (connection, handle, _) = rtnetlink::new_connection()?;
                        runtime.spawn(connection);
                        Ok(handle)
                    })?;
                    Ok(Ns { name: name.clone(), handle })
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    results.into_iter().map(|ns| ns.map(|ns| (ns.name.clone(), ns))).collect()
}

async fn configure(plan: &LabPlan, namespaces: &BTreeMap<String, Ns>) -> Result<(), LabError> {
    let ns = |name: &str| -> Result<&Ns, LabError> {
        namespaces.get(name).ok_or_else(|| LabError::Io {
            what: format!("netns {name} was not created"),
            cause: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
    };
    let router = ns(&plan.router_netns)?;

    // Phase 1: veths, created in the namespace of one end with the peer placed straight into the
    // other, so no device ever appears in the host namespace.
    let mut veths = Vec::new();
    for node in &plan.nodes {
        veths.push(add_veth(router, &node.router_link, &node.uplink, &node.netns));
    }
    for client in &plan.clients {
        veths.push(add_veth(router, &client.router_link, &client.interface, &client.netns));
    }
    for director in &plan.directors {
        veths.push(add_veth(router, &director.router_link, &director.interface, &director.netns));
    }
    for pod in &plan.pods {
        let node = plan
            .nodes
            .iter()
            .find(|n| n.name == pod.node)
            .map(|n| n.netns.as_str())
            .unwrap_or_default();
        veths.push(add_veth(ns(node)?, &pod.node_link, &pod.interface, &pod.netns));
    }
    try_join_all(veths).await?;

    // Phase 2: links up and addresses.
    let mut links = Vec::new();
    for ns in namespaces.values() {
        links.push(link_up(ns, "lo", Vec::new()));
    }
    for node in &plan.nodes {
        let node_ns = ns(&node.netns)?;
        links.push(link_up(
            router,
            &node.router_link,
            vec![Cidr::new(node.router_ipv4, 24), Cidr::new(node.router_ipv6, 64)],
        ));
        links.push(link_up(
            node_ns,
            &node.uplink,
            vec![Cidr::new(node.ipv4, 24), Cidr::new(node.ipv6, 64)],
        ));
    }
    for client in &plan.clients {
        links.push(link_up(
            router,
            &client.router_link,
            vec![Cidr::new(client.router_ipv4, 24), Cidr::new(client.router_ipv6, 64)],
        ));
        links.push(link_up(
            ns(&client.netns)?,
            &client.interface,
            vec![Cidr::new(client.ipv4, 24), Cidr::new(client.ipv6, 64)],
        ));
    }
    for director in &plan.directors {
        links.push(link_up(
            router,
            &director.router_link,
            vec![Cidr::new(director.router_ipv4, 24), Cidr::new(director.router_ipv6, 64)],
        ));
        links.push(link_up(
            ns(&director.netns)?,
            &director.interface,
            vec![Cidr::new(director.ipv4, 24), Cidr::new(director.ipv6, 64)],
        ));
    }
    for pod in &plan.pods {
        let node_netns = plan
            .nodes
            .iter()
            .find(|n| n.name == pod.node)
            .map(|n| n.netns.as_str())
            .unwrap_or_default();
        links.push(link_up(
            ns(node_netns)?,
            &pod.node_link,
            vec![Cidr::new(POD_GATEWAY_V4, 32), Cidr::new(POD_GATEWAY_V6, 64)],
        ));
        links.push(link_up(
            ns(&pod.netns)?,
            &pod.interface,
            vec![Cidr::new(pod.ipv4, 32), Cidr::new(pod.ipv6, 128)],
        ));
    }
    try_join_all(links).await?;

    // Phase 3: routes. Nodes and clients default to the router; the router sends each pod CIDR to
    // its node; a node reaches its pods over their veths; pods default to the link-local gateway.
    let mut routes = Vec::new();
    for node in &plan.nodes {
        let node_ns = ns(&node.netns)?;
        routes.push(add_route(node_ns, Route::default_via(node.router_ipv4.into())));
        routes.push(add_route(node_ns, Route::default_via(node.router_ipv6.into())));
        routes.push(add_route(router, Route::via(node.pod_cidr_v4, node.ipv4.into())));
        routes.push(add_route(router, Route::via(node.pod_cidr_v6, node.ipv6.into())));
    }
    for client in &plan.clients {
        let client_ns = ns(&client.netns)?;
        routes.push(add_route(client_ns, Route::default_via(client.router_ipv4.into())));
        routes.push(add_route(client_ns, Route::default_via(client.router_ipv6.into())));
    }
    for director in &plan.directors {
        let director_ns = ns(&director.netns)?;
        routes.push(add_route(director_ns, Route::default_via(director.router_ipv4.into())));
        routes.push(add_route(director_ns, Route::default_via(director.router_ipv6.into())));
    }
    for pod in &plan.pods {
        let Some(node) = plan.nodes.iter().find(|n| n.name == pod.node) else { continue };
        let node_ns = ns(&node.netns)?;
        let pod_ns = ns(&pod.netns)?;
        routes.push(add_route(
            node_ns,
            Route::on_link(Cidr::new(pod.ipv4, 32), &pod.node_link, Some(node.ipv4.into())),
        ));
        routes.push(add_route(
            node_ns,
            Route::on_link(Cidr::new(pod.ipv6, 128), &pod.node_link, Some(node.ipv6.into())),
        ));
        routes
            .push(add_route(pod_ns, Route::gateway_on_link(POD_GATEWAY_V4.into(), &pod.interface)));
        routes
            .push(add_route(pod_ns, Route::gateway_on_link(POD_GATEWAY_V6.into(), &pod.interface)));
    }
    try_join_all(routes).await?;

    // Phase 4: a director's XDP program looks up the router's MAC (bpf_fib_lookup) but never
    // sends anything itself that would resolve it: permanent neighbour entries, both ways (the
    // router's first packets to a director then need no address resolution either).
    let mut neighbours = Vec::new();
    for director in &plan.directors {
        let mac = link_mac(router, &director.router_link).await?;
        let director_ns = ns(&director.netns)?;
        for gateway in [IpAddr::V4(director.router_ipv4), IpAddr::V6(director.router_ipv6)] {
            neighbours.push(add_neighbour(director_ns, &director.interface, gateway, mac.clone()));
        }
        let mac = link_mac(director_ns, &director.interface).await?;
        for address in [IpAddr::V4(director.ipv4), IpAddr::V6(director.ipv6)] {
            neighbours.push(add_neighbour(router, &director.router_link, address, mac.clone()));
        }
    }
    try_join_all(neighbours).await?;

    // Phase 5: an XDP_PASS program on the router's side of every director link, so the veth
    // delivers the frames the director sends back with XDP_TX (see crate::xdp_pass).
    if !plan.directors.is_empty() {
        let program = crate::xdp_pass::load()
            .map_err(LabError::io("loading the XDP pass program for director links"))?;
        for director in &plan.directors {
            attach_xdp(router, &director.router_link, program.as_raw_fd()).await?;
        }
    }
    Ok(())
}

/// Attaches the XDP program `program` to `link` in native (driver) mode.
async fn attach_xdp(ns: &Ns, link: &str, program: i32) -> Result<(), LabError> {
    /// `XDP_FLAGS_DRV_MODE`.
    const DRV_MODE: u32 = 1 << 2;
    let index = link_index(ns, link).await?;
    let message = LinkUnspec::new_with_index(index)
        .append_extra_attribute(LinkAttribute::Xdp(vec![
            LinkXdp::Fd(program),
            LinkXdp::Flags(DRV_MODE),
        ]))
        .build();
    ns.handle
        .link()
        .set(message)
        .execute()
        .await
        .map_err(nl_err(ns, format!("attaching an XDP pass program to {link}")))
}

/// The hardware address of `name`.
async fn link_mac(ns: &Ns, name: &str) -> Result<Vec<u8>, LabError> {
    let link = ns
        .handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
        .map_err(nl_err(ns, format!("looking up link {name}")))?;
    link.and_then(|link| {
        link.attributes.into_iter().find_map(|attribute| match attribute {
            LinkAttribute::Address(mac) => Some(mac),
            _ => None,
        })
    })
    .ok_or_else(|| LabError::Io {
        what: format!("link {name} in netns {} has no hardware address", ns.name),
        cause: std::io::Error::from(std::io::ErrorKind::NotFound),
    })
}

/// `fe80::/64` with the modified EUI-64 interface identifier of `mac` (RFC 4291 appendix A).
fn eui64_link_local(mac: &[u8]) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets[..2].copy_from_slice(&[0xfe, 0x80]);
    if let [a, b, c, d, e, f] = *mac {
        octets[8..].copy_from_slice(&[a ^ 0x02, b, c, 0xff, 0xfe, d, e, f]);
    }
    Ipv6Addr::from(octets)
}

/// A permanent neighbour entry `address` -> `mac` on `link`.
async fn add_neighbour(ns: &Ns, link: &str, address: IpAddr, mac: Vec<u8>) -> Result<(), LabError> {
    let index = link_index(ns, link).await?;
    ns.handle
        .neighbours()
        .add(index, address)
        .link_layer_address(&mac)
        .execute()
        .await
        .map_err(nl_err(ns, format!("adding neighbour {address} on {link}")))
}

async fn add_veth(ns: &Ns, name: &str, peer: &str, peer_netns: &str) -> Result<(), LabError> {
    let peer_ns_file: File = netns::open(peer_netns)?;
    let peer_msg = LinkUnspec::new_with_name(peer).setns_by_fd(peer_ns_file.as_raw_fd()).build();
    let msg =
        LinkVeth::new(name, peer).set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg))).build();
    ns.handle
        .link()
        .add(msg)
        .execute()
        .await
        .map_err(nl_err(ns, format!("creating veth {name} (peer {peer} in {peer_netns})")))?;
    drop(peer_ns_file);
    Ok(())
}

async fn link_index(ns: &Ns, name: &str) -> Result<u32, LabError> {
    let link = ns
        .handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await
        .map_err(nl_err(ns, format!("looking up link {name}")))?;
    link.map(|link| link.header.index).ok_or_else(|| LabError::Io {
        what: format!("link {name} missing in netns {}", ns.name),
        cause: std::io::Error::from(std::io::ErrorKind::NotFound),
    })
}

/// Brings `name` up and gives it `addresses` (IPv6 without duplicate address detection).
///
/// Every link but `lo` also gets its link-local address (EUI-64 of its MAC, the one the kernel
/// generates) at once: the kernel adds it only when linkwatch reports the carrier, batched up
/// to a second later, and until then IPv6 neighbour discovery sends no solicitation from the
/// link (`ndisc_send_ns` needs a link-local source), so the first packet forwarded over it
/// waited a second for the next probe — the "lost" first IPv6 SYNs of issue 18 item 8.
async fn link_up(ns: &Ns, name: &str, addresses: Vec<Cidr>) -> Result<(), LabError> {
    let index = link_index(ns, name).await?;
    ns.handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl_err(ns, format!("setting {name} up")))?;
    if name != "lo" {
        let link_local = eui64_link_local(&link_mac(ns, name).await?);
        let mut request = ns.handle.address().add(index, link_local.into(), 64).replace();
        request.message_mut().attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        request.execute().await.map_err(nl_err(ns, format!("adding {link_local} to {name}")))?;
    }
    for cidr in &addresses {
        let mut request = ns.handle.address().add(index, cidr.addr, cidr.prefix_len);
        if cidr.addr.is_ipv6() {
            request.message_mut().attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        request.execute().await.map_err(nl_err(ns, format!("adding {cidr} to {name}")))?;
    }
    Ok(())
}

/// A route to add: destination, and either a gateway or an output device.
#[derive(Debug)]
struct Route<'a> {
    destination: Cidr,
    gateway: Option<IpAddr>,
    device: Option<&'a str>,
    source: Option<IpAddr>,
    onlink: bool,
}

impl<'a> Route<'a> {
    fn default_destination(family: IpAddr) -> Cidr {
        match family {
            IpAddr::V4(_) => Cidr::new(Ipv4Addr::UNSPECIFIED, 0),
            IpAddr::V6(_) => Cidr::new(Ipv6Addr::UNSPECIFIED, 0),
        }
    }

    fn default_via(gateway: IpAddr) -> Self {
        Self::via(Self::default_destination(gateway), gateway)
    }

    fn via(destination: Cidr, gateway: IpAddr) -> Self {
        Self { destination, gateway: Some(gateway), device: None, source: None, onlink: false }
    }

    fn on_link(destination: Cidr, device: &'a str, source: Option<IpAddr>) -> Self {
        Self { destination, gateway: None, device: Some(device), source, onlink: false }
    }

    /// A default route through a gateway that is not in any subnet of the device (pods).
    fn gateway_on_link(gateway: IpAddr, device: &'a str) -> Self {
        Self {
            destination: Self::default_destination(gateway),
            gateway: Some(gateway),
            device: Some(device),
            source: None,
            onlink: true,
        }
    }
}

async fn add_route(ns: &Ns, route: Route<'_>) -> Result<(), LabError> {
    let device = match route.device {
        Some(name) => Some(link_index(ns, name).await?),
        None => None,
    };
    let what = format!("adding route {} {route:?}", route.destination);
    let message = match route.destination.addr {
        IpAddr::V4(dst) => {
            let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(dst, route.destination.prefix_len);
            if let Some(IpAddr::V4(gw)) = route.gateway {
                b = b.gateway(gw);
            }
            if let Some(IpAddr::V4(src)) = route.source {
                b = b.pref_source(src);
            }
            if let Some(index) = device {
                b = b.output_interface(index);
                if route.gateway.is_none() {
                    b = b.scope(RouteScope::Link);
                }
            }
            if route.onlink {
                b = b.onlink();
            }
            b.build()
        }
        IpAddr::V6(dst) => {
            let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(dst, route.destination.prefix_len);
            if let Some(IpAddr::V6(gw)) = route.gateway {
                b = b.gateway(gw);
            }
            if let Some(IpAddr::V6(src)) = route.source {
                b = b.pref_source(src);
            }
            if let Some(index) = device {
                b = b.output_interface(index);
            }
            b.build()
        }
    };
    ns.handle.route().add(message).execute().await.map_err(nl_err(ns, what))
}

/// Opens a netlink connection inside `netns_name` and runs `work` with it on a fresh thread and
/// runtime, so callers need no runtime of their own (and may already be inside one).
fn with_netlink<T, F>(netns_name: &str, work: impl FnOnce(Ns) -> F + Send) -> Result<T, LabError>
where
    T: Send,
    F: Future<Output = Result<T, LabError>>,
{
    let ns_file = netns::open(netns_name)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                netns::enter(&ns_file)
                    .map_err(LabError::io(format!("entering netns {netns_name}")))?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .map_err(LabError::io("starting the netlink runtime"))?;
                let handle = {
                    let _guard = runtime.enter();
                    let (connection, handle, _) = rtnetlink::new_connection()
                        .map_err(LabError::io(format!("netlink socket in {netns_name}")))?;
                    runtime.spawn(connection);
                    handle
                };
                runtime.block_on(work(Ns { name: netns_name.to_string(), handle }))
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Routes `destination` through `gateways` (ECMP when several) in namespace `netns_name`,
/// replacing any route to it; with no gateways the route is removed. `locked_mtu` gives the
/// route an MTU that path-MTU discovery may not raise (`mtu lock N`), which `bpf_fib_lookup`
/// honours.
pub(crate) fn set_route(
    netns_name: &str,
    destination: Cidr,
    gateways: &[IpAddr],
    locked_mtu: Option<u32>,
) -> Result<(), LabError> {
    let gateways = gateways.to_vec();
    with_netlink(netns_name, move |ns| async move {
        let what = format!("routing {destination} via {gateways:?}");
        let mut message = match destination.addr {
            IpAddr::V4(dst) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(dst, destination.prefix_len)
                .build(),
            IpAddr::V6(dst) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(dst, destination.prefix_len)
                .build(),
        };
        if gateways.is_empty() {
            return match ns.handle.route().del(message).execute().await {
                Ok(()) => Ok(()),
                // Removing a route that is not there is fine.
                Err(rtnetlink::Error::NetlinkError(err)) if err.raw_code() == -libc::ESRCH => {
                    Ok(())
                }
                Err(err) => Err(nl_err(&ns, what)(err)),
            };
        }
        if let Some(mtu) = locked_mtu {
            // RTAX_MTU is metric 2: its lock bit is 1 << 2.
            message.attributes.push(RouteAttribute::Metrics(vec![
                RouteMetric::Lock(1 << 2),
                RouteMetric::Mtu(mtu),
            ]));
        }
        let family = message.header.address_family;
        if let [gateway] = gateways.as_slice() {
            message.attributes.push(RouteAttribute::Gateway((*gateway).into()));
        } else {
            let mut hops = Vec::new();
            for gateway in &gateways {
                let hop =
                    RouteNextHopBuilder::new(family).via(*gateway).map_err(|err| LabError::Io {
                        what: what.clone(),
                        cause: std::io::Error::other(err.to_string()),
                    })?;
                hops.push(hop.build());
            }
            message.attributes.push(RouteAttribute::MultiPath(hops));
        }
        ns.handle.route().add(message).replace().execute().await.map_err(nl_err(&ns, what))
    })
}

/// Sets the MTU of `link` in namespace `netns_name`.
pub(crate) fn set_mtu(netns_name: &str, link: &str, mtu: u32) -> Result<(), LabError> {
    with_netlink(netns_name, move |ns| async move {
        let index = link_index(&ns, link).await?;
        ns.handle
            .link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
            .execute()
            .await
            .map_err(nl_err(&ns, format!("setting mtu {mtu} on {link}")))
    })
}

/// Attaches an `XDP_PASS` program (native) to `link` in namespace `netns_name`, so the veth
/// delivers the frames its peer sends with `XDP_TX` or redirects to it (see crate::xdp_pass).
pub(crate) fn set_xdp_pass(netns_name: &str, link: &str) -> Result<(), LabError> {
    let program = crate::xdp_pass::load().map_err(LabError::io("loading the XDP pass program"))?;
    with_netlink(
        netns_name,
        move |ns| async move { attach_xdp(&ns, link, program.as_raw_fd()).await },
    )
}

/// Adds `address` to `link` in namespace `netns_name` (IPv6 without duplicate address detection).
pub(crate) fn add_address(netns_name: &str, link: &str, address: Cidr) -> Result<(), LabError> {
    with_netlink(netns_name, move |ns| async move {
        let index = link_index(&ns, link).await?;
        let mut request = ns.handle.address().add(index, address.addr, address.prefix_len);
        if address.addr.is_ipv6() {
            request.message_mut().attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        request.execute().await.map_err(nl_err(&ns, format!("adding {address} to {link}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pair the kernel generated for a lab router link (`ip -6 neigh` in the fabric).
    #[test]
    fn link_local_is_the_kernels_eui64() {
        let mac = [0x2a, 0xf5, 0x7d, 0x16, 0xc1, 0x9b];
        let expected: Ipv6Addr =
            "fe80::28f5:7dff:fe16:c19b".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        assert_eq!(eui64_link_local(&mac), expected);
    }
}
