//! Every check's verdict from plain facts: no root, no kernel.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use switchyard_doctor::decide;
use switchyard_doctor::facts::{
    AgentFacts, BpfFacts, BpffsState, BtfFacts, DeviceFacts, Facts, KubeProxyFacts, Mount,
    SocketState, XdpFeatures,
};
use switchyard_doctor::{Finding, Options, Report, Verdict};
use switchyard_model::PortRange;

fn range(first: u16, last: u16) -> PortRange {
    PortRange { first, last }
}

fn options() -> Options {
    Options {
        bpf_dir: "/sys/fs/bpf/switchyard".into(),
        cgroup: Some("/sys/fs/cgroup".into()),
        devices: vec!["eth0".into()],
        kubeconfig: Some("/etc/kubernetes/kubelet.conf".into()),
        node_port_range: range(30000, 32767),
        snat_port_range: None,
        decap_port: None,
        api_socket: "/run/switchyard/agent.sock".into(),
    }
}

/// A node where everything is as it should be.
fn healthy() -> Facts {
    Facts {
        kernel_release: Ok("6.18.44-generic".into()),
        bpf: BpfFacts { syscall: Ok(()), missing: vec![] },
        btf: Ok(BtfFacts { sock_destroy: true }),
        mounts: Ok(vec![
            Mount { mount_point: "/sys/fs/cgroup".into(), fs_type: "cgroup2".into() },
            Mount { mount_point: "/sys/fs/bpf".into(), fs_type: "bpf".into() },
        ]),
        cgroup_dir: Some(Ok(true)),
        bpffs: BpffsState::Below {
            dir: "/sys/fs/bpf/switchyard".into(),
            bpffs: "/sys/fs/bpf".into(),
        },
        clsact: Ok(()),
        devices: vec![DeviceFacts {
            name: "eth0".into(),
            present: true,
            xdp: Ok(Some(XdpFeatures(XdpFeatures::BASIC | XdpFeatures::REDIRECT))),
        }],
        sctp: Ok(()),
        kube_proxy: KubeProxyFacts::default(),
        programs: Ok(vec!["sy_connect4".into()]),
        local_port_range: Ok(range(32768, 60999)),
        reserved_ports: Ok(vec![]),
        clock_synchronized: Ok(true),
        api_server: Some(Ok("v1.34.0 at https://10.0.0.1:6443/".into())),
        agent: AgentFacts { pinned_maps: 0, pinned_links: 0, api_socket: SocketState::Absent },
    }
}

fn verdicts(findings: &[Finding]) -> Vec<(&str, Verdict)> {
    findings.iter().map(|f| (f.check.as_str(), f.verdict)).collect()
}

#[test]
fn a_healthy_node_has_only_ok_lines_and_every_check_is_there() {
    let findings = decide::all(&healthy(), &options());
    let report = Report { findings: findings.clone() };
    assert_eq!(report.worst(), Verdict::Ok, "{findings:#?}");
    let checks: Vec<&str> = findings.iter().map(|f| f.check.as_str()).collect();
    assert_eq!(
        checks,
        [
            "kernel",
            "bpf",
            "btf",
            "sock-destroy",
            "cgroup-v2",
            "bpffs",
            "tc",
            "device eth0",
            "sctp",
            "kube-proxy",
            "cilium",
            "ports",
            "clock",
            "api-server",
            "agent"
        ]
    );
}

#[test]
fn one_missing_prerequisite_fails_exactly_its_own_line() {
    let mut facts = healthy();
    facts.mounts = Ok(vec![Mount { mount_point: "/sys/fs/bpf".into(), fs_type: "bpf".into() }]);
    let findings = decide::all(&facts, &options());
    let failed: Vec<_> = findings.iter().filter(|f| f.verdict != Verdict::Ok).collect();
    assert_eq!(failed.len(), 1, "{findings:#?}");
    assert_eq!(failed[0].check, "cgroup-v2");
    assert_eq!(failed[0].verdict, Verdict::Fail);
    assert!(failed[0].detail.contains("cgroup v2 is not mounted"), "{}", failed[0].detail);
    assert!(failed[0].remedy.as_deref().is_some_and(|r| r.contains("mount -t cgroup2")));
}

#[test]
fn kernel_versions() {
    let cases: &[(Result<&str, &str>, Verdict)] = &[
        (Ok("6.18.44-fc-v1272"), Verdict::Ok),
        (Ok("5.18.0"), Verdict::Ok),
        (Ok("5.15.0-91-generic"), Verdict::Fail),
        (Ok("4.19.0"), Verdict::Fail),
        (Ok("garbage"), Verdict::Fail),
        (Err("uname: EFAULT"), Verdict::Fail),
    ];
    for (release, want) in cases {
        let release = release.map(str::to_owned).map_err(str::to_owned);
        let finding = decide::kernel(&release);
        assert_eq!(finding.verdict, *want, "{release:?}: {finding:?}");
        if *want == Verdict::Fail {
            assert!(finding.remedy.as_deref().is_some_and(|r| r.contains("5.18")));
        }
    }
}

#[test]
fn bpf_syscall_and_missing_types() {
    let refused = BpfFacts { syscall: Err("EPERM".into()), missing: vec![] };
    let finding = decide::bpf(&refused);
    assert_eq!(finding.verdict, Verdict::Fail);
    assert!(finding.detail.contains("EPERM"));
    assert!(finding.remedy.as_deref().is_some_and(|r| r.contains("CAP_BPF")));

    let missing = BpfFacts { syscall: Ok(()), missing: vec!["ring buffers", "LPM tries"] };
    let finding = decide::bpf(&missing);
    assert_eq!(finding.verdict, Verdict::Fail);
    assert!(finding.detail.contains("ring buffers, LPM tries"), "{}", finding.detail);

    assert_eq!(decide::bpf(&BpfFacts { syscall: Ok(()), missing: vec![] }).verdict, Verdict::Ok);
}

#[test]
fn btf_and_the_sock_destroy_kfunc_only_warn() {
    let without = Ok(BtfFacts { sock_destroy: false });
    assert_eq!(decide::btf(&without).verdict, Verdict::Ok);
    assert_eq!(decide::sock_destroy(&without).verdict, Verdict::Warn);
    let no_btf = Err("No such file or directory".to_owned());
    assert_eq!(decide::btf(&no_btf).verdict, Verdict::Warn);
    assert_eq!(decide::sock_destroy(&no_btf).verdict, Verdict::Warn);
    assert_eq!(decide::sock_destroy(&Ok(BtfFacts { sock_destroy: true })).verdict, Verdict::Ok);
}

#[test]
fn cgroup_v2_mount_and_the_cgroup_flag() {
    let v2 =
        Ok(vec![Mount { mount_point: "/sys/fs/cgroup/unified".into(), fs_type: "cgroup2".into() }]);
    let v1_only =
        Ok(vec![Mount { mount_point: "/sys/fs/cgroup/cpu".into(), fs_type: "cgroup".into() }]);
    let dir = Path::new("/sys/fs/cgroup/unified");

    let finding = decide::cgroup(&v2, None, None);
    assert_eq!(finding.verdict, Verdict::Ok);
    assert!(finding.detail.contains("/sys/fs/cgroup/unified"), "says where: {}", finding.detail);

    assert_eq!(decide::cgroup(&v2, Some(dir), Some(&Ok(true))).verdict, Verdict::Ok);
    let wrong = decide::cgroup(&v2, Some(Path::new("/tmp")), Some(&Ok(false)));
    assert_eq!(wrong.verdict, Verdict::Fail);
    assert!(wrong.detail.contains("--cgroup /tmp is not a cgroup v2 directory"));
    let missing =
        decide::cgroup(&v2, Some(Path::new("/nope")), Some(&Err("statfs: ENOENT".into())));
    assert_eq!(missing.verdict, Verdict::Fail);

    assert_eq!(decide::cgroup(&v1_only, None, None).verdict, Verdict::Fail);
    assert_eq!(decide::cgroup(&Err("EACCES".into()), None, None).verdict, Verdict::Fail);
}

#[test]
fn bpffs_states() {
    let dir = PathBuf::from("/sys/fs/bpf/switchyard");
    let cases = [
        (BpffsState::Mounted { dir: dir.clone() }, Verdict::Ok),
        (BpffsState::Below { dir: dir.clone(), bpffs: "/sys/fs/bpf".into() }, Verdict::Ok),
        (BpffsState::Mountable { dir: dir.clone() }, Verdict::Warn),
        (BpffsState::NotMountable { dir, error: "mount -t bpf: EPERM".into() }, Verdict::Fail),
    ];
    for (state, want) in cases {
        let finding = decide::bpffs(&state);
        assert_eq!(finding.verdict, want, "{state:?}");
        assert!(finding.detail.contains("/sys/fs/bpf/switchyard"), "{}", finding.detail);
    }
}

#[test]
fn clsact_matters_with_devices() {
    let failed = Err("on lo: EOPNOTSUPP".to_owned());
    assert_eq!(decide::clsact(&failed, true).verdict, Verdict::Fail);
    assert_eq!(decide::clsact(&failed, false).verdict, Verdict::Warn);
    assert_eq!(decide::clsact(&Ok(()), true).verdict, Verdict::Ok);
}

#[test]
fn devices_exist_and_xdp_native_is_reported() {
    let device = |present, xdp| DeviceFacts { name: "eth1".into(), present, xdp };
    let cases = [
        (device(false, Ok(None)), Verdict::Fail),
        (device(true, Ok(Some(XdpFeatures(XdpFeatures::BASIC)))), Verdict::Ok),
        (device(true, Ok(Some(XdpFeatures(0)))), Verdict::Warn),
        (device(true, Ok(None)), Verdict::Warn),
        (device(true, Err("netdev netlink: EPERM".into())), Verdict::Warn),
    ];
    for (facts, want) in cases {
        let findings = decide::devices(std::slice::from_ref(&facts));
        assert_eq!(verdicts(&findings), [("device eth1", want)], "{facts:?}");
    }
    let none = decide::devices(&[]);
    assert_eq!(verdicts(&none), [("devices", Verdict::Ok)]);
    assert!(none[0].detail.contains("not checked"));
}

#[test]
fn kube_proxy_leftovers_warn_and_name_what_was_found() {
    let facts = KubeProxyFacts {
        iptables_chains: vec!["KUBE-NODEPORTS".into(), "KUBE-SERVICES".into()],
        nft_tables: vec!["ip kube-proxy".into()],
        ipvs_device: true,
        unreadable: vec![],
    };
    let finding = decide::kube_proxy(&facts);
    assert_eq!(finding.verdict, Verdict::Warn);
    for name in ["KUBE-SERVICES", "ip kube-proxy", "kube-ipvs0"] {
        assert!(finding.detail.contains(name), "{name} in {}", finding.detail);
    }
    assert!(finding.remedy.as_deref().is_some_and(|r| r.contains("kube-proxy --cleanup")));

    assert_eq!(decide::kube_proxy(&KubeProxyFacts::default()).verdict, Verdict::Ok);
    let blind =
        KubeProxyFacts { unreadable: vec!["nft is not installed".into()], ..Default::default() };
    let finding = decide::kube_proxy(&blind);
    assert_eq!(finding.verdict, Verdict::Warn);
    assert!(finding.detail.contains("nft is not installed"));
}

#[test]
fn cilium_socket_load_balancer_fails_other_programs_warn() {
    let names = |names: &[&str]| Ok(names.iter().map(|n| n.to_string()).collect());
    let socket_lb = decide::cilium(&names(&["cil_sock4_conne", "cil_from_netdev"]));
    assert_eq!(socket_lb.verdict, Verdict::Fail);
    assert!(socket_lb.detail.contains("cil_sock4_conne"));
    assert_eq!(decide::cilium(&names(&["cil_from_netdev"])).verdict, Verdict::Warn);
    assert_eq!(decide::cilium(&names(&["sy_connect4", "sd_devices"])).verdict, Verdict::Ok);
    assert_eq!(decide::cilium(&Err("EPERM".into())).verdict, Verdict::Warn);
}

/// (NodePort range, --snat-port-range, ip_local_port_range, reserved ports, verdict, text).
type PortCase = (PortRange, Option<PortRange>, PortRange, Vec<PortRange>, Verdict, &'static str);

#[test]
fn port_ranges() {
    let node = range(30000, 32767);
    let snat = Some(range(61000, 65535));
    let reserved_none = Ok(vec![]);
    let cases: &[PortCase] = &[
        (node, snat, range(32768, 60999), vec![], Verdict::Ok, "do not collide"),
        (node, Some(range(32000, 33000)), range(40000, 50000), vec![], Verdict::Fail, "overlaps"),
        (node, snat, range(1024, 65535), vec![], Verdict::Warn, "NodePorts 30000-32767"),
        (node, snat, range(20000, 40000), vec![node], Verdict::Ok, "do not collide"),
        (node, snat, range(20000, 40000), vec![range(30000, 31000)], Verdict::Warn, "NodePorts"),
        (node, snat, range(32768, 62000), vec![], Verdict::Warn, "SNAT source ports 61000-62000"),
        // Without the flag: the agent's choice, and why.
        (
            node,
            None,
            range(32768, 60999),
            vec![],
            Verdict::Ok,
            "SNAT ports 1024-29999 (28976 ports: the widest gap of 1024-65535 outside the \
             NodePort range and net.ipv4.ip_local_port_range 32768-60999)",
        ),
        (node, None, range(10000, 60999), vec![node], Verdict::Ok, "SNAT ports 1024-9999"),
        (
            node,
            None,
            range(1024, 65535),
            vec![node],
            Verdict::Warn,
            "SNAT source ports 32768-65535 are also handed to local connections",
        ),
        (range(1024, 65535), None, range(32768, 60999), vec![], Verdict::Fail, "no port"),
    ];
    for (node, snat, local, reserved, want, says) in cases {
        let finding = decide::ports(*node, *snat, None, &Ok(*local), &Ok(reserved.clone()));
        assert_eq!(finding.verdict, *want, "{local} {reserved:?}: {finding:?}");
        assert!(finding.detail.contains(says), "{says:?} in {}", finding.detail);
    }
    let unreadable = decide::ports(node, snat, None, &Err("ENOENT".into()), &reserved_none);
    assert_eq!(unreadable.verdict, Verdict::Warn);
    let unreadable = decide::ports(node, None, None, &Err("ENOENT".into()), &reserved_none);
    assert_eq!(unreadable.verdict, Verdict::Warn);
    assert!(unreadable.detail.contains("1024-29999") && unreadable.detail.contains("(assumed)"));
}

/// A node that decapsulates (the agent's --director-addresses or DSR): the range the doctor
/// reports keeps the GUE port out, as the agent's does, and a flag holding it fails.
#[test]
fn port_ranges_of_a_node_that_decapsulates() {
    let node = range(30000, 32767);
    let local = Ok(range(32768, 60999));
    let reserved = Ok(vec![]);
    let chosen = decide::ports(node, None, Some(6080), &local, &reserved);
    assert_eq!(chosen.verdict, Verdict::Ok, "{chosen:?}");
    assert!(chosen.detail.contains("SNAT ports 6081-29999"), "{}", chosen.detail);
    assert!(chosen.detail.contains("the decapsulation port 6080"), "{}", chosen.detail);
    let held = decide::ports(node, Some(range(6000, 7000)), Some(6080), &local, &reserved);
    assert_eq!(held.verdict, Verdict::Fail, "{held:?}");
    assert!(held.detail.contains("holds the decapsulation port 6080"), "{}", held.detail);
}

#[test]
fn clock_api_server_and_agent() {
    assert_eq!(decide::clock(&Ok(true)).verdict, Verdict::Ok);
    assert_eq!(decide::clock(&Ok(false)).verdict, Verdict::Warn);

    let config = Some(Path::new("/root/.kube/config"));
    assert_eq!(decide::api(&Ok("v1.34.0".into()), config).verdict, Verdict::Ok);
    let down = decide::api(&Err("connection refused".into()), config);
    assert_eq!(down.verdict, Verdict::Fail);
    assert!(down.detail.contains("/root/.kube/config") && down.detail.contains("refused"));

    let (dir, socket) = (Path::new("/sys/fs/bpf/switchyard"), Path::new("/run/sy.sock"));
    let agent =
        |maps, links, api_socket| AgentFacts { pinned_maps: maps, pinned_links: links, api_socket };
    let cases = [
        (agent(0, 0, SocketState::Absent), Verdict::Ok, "not installed"),
        (agent(12, 10, SocketState::Accepting), Verdict::Ok, "running"),
        (agent(12, 10, SocketState::Absent), Verdict::Warn, "--cleanup"),
        (agent(12, 10, SocketState::Refused("ECONNREFUSED".into())), Verdict::Warn, "--cleanup"),
        (
            agent(0, 0, SocketState::Refused("ECONNREFUSED".into())),
            Verdict::Warn,
            "rm /run/sy.sock",
        ),
        (agent(0, 0, SocketState::Accepting), Verdict::Warn, "--bpf-dir"),
    ];
    for (facts, want, says) in cases {
        let finding = decide::agent(&facts, dir, socket);
        assert_eq!(finding.verdict, want, "{facts:?}");
        let text = format!("{} {}", finding.detail, finding.remedy.unwrap_or_default());
        assert!(text.contains(says), "{says:?} in {text}");
    }
}

proptest! {
    /// `covered` agrees with checking every port, and `overlap` with a port-by-port intersection.
    #[test]
    fn covered_and_overlap_agree_with_port_by_port(
        a in (1u16..200, 0u16..50), b in (1u16..200, 0u16..50),
        reserved in proptest::collection::vec((1u16..220, 0u16..20), 0..5),
    ) {
        let to_range = |(first, len): (u16, u16)| range(first, first + len);
        let (a, b) = (to_range(a), to_range(b));
        let reserved: Vec<PortRange> = reserved.into_iter().map(to_range).collect();
        let shared: Vec<u16> = (a.first..=a.last).filter(|p| b.contains(*p)).collect();
        let overlap = decide::overlap(a, b);
        prop_assert_eq!(overlap.map(|r| (r.first, r.last)), shared.first().map(|f| (*f, *shared.last().unwrap_or(f))));
        let all_reserved = (a.first..=a.last).all(|p| reserved.iter().any(|r| r.contains(p)));
        prop_assert_eq!(decide::covered(a, &reserved), all_reserved);
    }
}
