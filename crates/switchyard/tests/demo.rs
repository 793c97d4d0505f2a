//! `switchyard demo` as the README's main command runs it, and the example Services it ships.

#![allow(clippy::unwrap_used, reason = "test harness")]

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo")
}

#[test]
fn demo_examples_validate_strictly() {
    let output =
        Command::new(BIN).arg("validate").arg("--strict").arg(examples()).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("0 errors, 0 warnings; 10 files, 8 Services"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("error:") || l.starts_with("warning:")), "{text}");
}

/// The cells after the target column of the row whose first four cells are `key`: the pod
/// columns, then SEEN AS, then the errors.
fn after_target<'a>(table: &'a str, key: [&str; 4]) -> Vec<&'a str> {
    let line = table
        .lines()
        .find(|l| l.split_whitespace().take(4).eq(key.iter().copied()))
        .unwrap_or_else(|| panic!("no row {key:?} in\n{table}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    // SERVICE WHAT... : locate the target column (contains ':'), pods follow it.
    let target = cells.iter().position(|c| c.contains(':')).unwrap();
    cells[target + 1..].to_vec()
}

/// The table's row for `service`/`what`/`from`/`kind`: the count per pod column (None for '.').
fn row(table: &str, header: &[&str], key: [&str; 4]) -> Vec<(String, Option<usize>)> {
    header
        .iter()
        .zip(after_target(table, key))
        .map(|(pod, cell)| (pod.to_string(), cell.parse().ok()))
        .collect()
}

/// The SEEN AS cell of a row: the first cell after the six pod columns.
fn seen_as(table: &str, key: [&str; 4]) -> String {
    after_target(table, key)[6].to_string()
}

#[test]
fn demo_spreads_traffic_shows_the_table_and_removes_its_lab() {
    if !switchyard_lab::require_root("demo_spreads_traffic_shows_the_table_and_removes_its_lab") {
        return;
    }
    let output = Command::new(BIN).args(["demo", "--requests", "40"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let header_line = stdout.lines().find(|l| l.starts_with("SERVICE")).unwrap();
    let header: Vec<&str> =
        header_line.split_whitespace().skip_while(|c| *c != "TARGET").skip(1).take(6).collect();
    assert_eq!(header, ["pod1a", "pod1b", "pod2a", "pod2b", "pod3a", "pod3b"]);

    let web = row(&stdout, &header, ["web", "random", "pod1a", "tcp"]);
    assert!(web.iter().all(|(_, n)| n.is_some()), "web must reach every pod: {web:?}");
    let local = row(&stdout, &header, ["cache", "ITP", "Local", "pod2b"]);
    let used: Vec<&str> =
        local.iter().filter(|(_, n)| n.is_some()).map(|(p, _)| p.as_str()).collect();
    assert_eq!(used, ["pod2a", "pod2b"], "{local:?}");
    let sticky = row(&stdout, &header, ["sticky", "ClientIP", "pod1a", "tcp"]);
    assert_eq!(sticky.iter().filter(|(_, n)| n.is_some()).count(), 1, "{sticky:?}");
    // From outside the cluster (per packet at the uplink): NodePort on node1 reaches every pod;
    // pods on node1 see the client, the others node1 (SNAT).
    let node_port = row(&stdout, &header, ["shop", "NodePort", "client1", "tcp"]);
    assert!(
        node_port.iter().all(|(_, n)| n.is_some()),
        "NodePort must reach every pod: {node_port:?}"
    );
    assert_eq!(seen_as(&stdout, ["shop", "NodePort", "client1", "tcp"]), "client1,node1");
    let lb = row(&stdout, &header, ["shop", "LB", "IP", "client1"]);
    assert!(lb.iter().all(|(_, n)| n.is_some()), "LB IP must reach every pod: {lb:?}");
    // The address the controller gave `pooled` from its IPPool reaches every pod as well.
    let pooled = row(&stdout, &header, ["pooled", "IPPool", "client1", "tcp"]);
    assert!(pooled.iter().all(|(_, n)| n.is_some()), "pooled must reach every pod: {pooled:?}");
    // externalTrafficPolicy Local on node1: only node1's pods, and they see the client.
    let key = ["local", "ETP", "Local", "client1"];
    let etp = row(&stdout, &header, key);
    let used: Vec<&str> =
        etp.iter().filter(|(_, n)| n.is_some()).map(|(p, _)| p.as_str()).collect();
    assert_eq!(used, ["pod1a", "pod1b"], "{etp:?}");
    assert_eq!(seen_as(&stdout, key), "client1");
    let health = stdout.lines().find(|l| l.starts_with("health check node port 32081")).unwrap();
    assert!(health.contains("node1 200 (2 local); node2 200 (1 local); node3 503"), "{health}");
    let empty = stdout.lines().find(|l| l.starts_with("empty")).unwrap();
    assert!(empty.contains("40 connection refused"), "{empty}");
    assert!(stdout.contains("tried to leave the lab (router without a route): 0 "));
    // The router learned the LoadBalancer IPs over BGP, ETP Local only from nodes with endpoints.
    for (address, nodes) in
        [("10.96.100.1", "node1, node2, node3"), ("10.96.100.2", "node1, node2")]
    {
        assert!(stdout.contains(&format!("  {address:<14} announced by {nodes}\n")), "{stdout}");
    }

    // Through the directors: every request answered; each carried by exactly one director and
    // one node (counted); both directors and every node used; the client got the replies and
    // the directors received (almost) nothing but client packets.
    let edge_header = stdout.lines().find(|l| l.starts_with("VIP (edge)")).unwrap();
    let columns: Vec<&str> = edge_header.split_whitespace().collect();
    assert_eq!(
        columns,
        [
            "VIP",
            "(edge)",
            "PROTO",
            "dir1",
            "dir2",
            "node1",
            "node2",
            "node3",
            "REPLIES",
            "OTHER@DIR",
            "ERRORS"
        ]
    );
    for (vip, proto) in [
        ("10.96.100.3:80", "tcp"),
        ("10.96.100.3:80", "udp"),
        ("[fd00:96::100:3]:80", "tcp"),
        ("[fd00:96::100:3]:80", "udp"),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().take(2).eq([vip, proto]))
            .unwrap_or_else(|| panic!("no edge row {vip} {proto}:\n{stdout}"));
        let n: Vec<u64> = line.split_whitespace().skip(2).map(|c| c.parse().unwrap()).collect();
        let [dir1, dir2, node1, node2, node3, replies, other, errors] = n[..] else {
            panic!("{line}")
        };
        assert_eq!(errors, 0, "{line}");
        assert_eq!(dir1 + dir2, 40, "every request through exactly one director: {line}");
        assert!(dir1 > 0 && dir2 > 0, "ECMP over both directors: {line}");
        assert_eq!(node1 + node2 + node3, 40, "every request to exactly one node: {line}");
        assert!(node1 > 0 && node2 > 0 && node3 > 0, "Maglev over every node: {line}");
        assert!(replies >= 40, "{line}");
        assert!(other <= 4, "the directors received more than client packets: {line}");
    }

    // "lab sy-xxxxxx up: ..." names the prefix; nothing of that lab may remain.
    let prefix = stdout.split_whitespace().nth(1).unwrap();
    assert!(prefix.starts_with("sy-"), "{stdout}");
    let left: Vec<String> = std::fs::read_dir("/run/netns")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(&format!("{prefix}-")))
        .collect();
    assert!(left.is_empty(), "the demo left namespaces behind: {left:?}");
    assert!(!std::path::Path::new("/run/switchyard-lab").join(prefix).exists());
}
