//! Item 4: memory at 10,000 Services × 25 endpoints — BPF map memory (the kernel's `memlock`
//! figure per map, from `/proc/self/fdinfo`) and the resident memory of a process holding what
//! the agent holds (model, reconciler, loaded maps), measured in this process.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;
use switchyard_model::NodeModel;

use crate::error::BenchError;
use crate::model_input;
use crate::state::NodeConfig;
use crate::switchyard;
use crate::synthetic::{self, Shape};

/// One BPF map as the kernel accounts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MapMemory {
    pub id: u32,
    pub map_type: u32,
    pub max_entries: u64,
    pub memlock_bytes: u64,
}

/// What item 4 reports.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    pub services: usize,
    pub endpoints_per_service: usize,
    pub frontends: usize,
    pub map_operations: usize,
    pub maps: Vec<MapMemory>,
    pub map_memlock_bytes: u64,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    pub programming_seconds: f64,
}

/// Parses one `/proc/<pid>/fdinfo/<fd>` text; `None` when the descriptor is not a BPF map.
pub fn parse_map_fdinfo(text: &str) -> Option<MapMemory> {
    let fields: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim(), value.trim()))
        .collect();
    Some(MapMemory {
        id: fields.get("map_id")?.parse().ok()?,
        map_type: fields.get("map_type")?.parse().ok()?,
        max_entries: fields.get("max_entries")?.parse().ok()?,
        memlock_bytes: fields.get("memlock")?.parse().ok()?,
    })
}

/// Every BPF map this process holds a descriptor to, once per map.
pub fn own_maps() -> Result<Vec<MapMemory>, BenchError> {
    let read_error =
        |source| BenchError::Write { path: "/proc/self/fdinfo (reading)".into(), source };
    let mut maps = BTreeMap::new();
    for entry in std::fs::read_dir("/proc/self/fdinfo").map_err(read_error)? {
        let Ok(entry) = entry else { continue };
        // Descriptors can close between listing and reading; those are skipped.
        let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
        if let Some(map) = parse_map_fdinfo(&text) {
            maps.insert(map.id, map);
        }
    }
    Ok(maps.into_values().collect())
}

/// `VmRSS` of this process in bytes.
pub fn own_rss() -> Result<u64, BenchError> {
    let text = std::fs::read_to_string("/proc/self/status").map_err(|source| {
        BenchError::Write { path: "/proc/self/status (reading)".into(), source }
    })?;
    parse_vm_rss(&text)
        .ok_or_else(|| BenchError::Switchyard("no VmRSS line in /proc/self/status".into()))
}

/// The `VmRSS:  1234 kB` line of a status file, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 =
        line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Programs `shape` the way the agent does and measures memory once it is programmed.
pub fn measure(shape: Shape) -> Result<MemoryReport, BenchError> {
    let rss_before_bytes = own_rss()?;
    let state = synthetic::cluster(shape);
    let cluster = model_input::cluster_state(&NodeConfig::default(), &state);
    drop(state);
    let started = Instant::now();
    let model = NodeModel::from_state(model_input::proxy_config(), &cluster);
    // The agent keeps its source's objects too (the manifests or the watch cache): kept here.
    let mut programmed = switchyard::load(&model, "sybench-mem")?;
    let applied = programmed
        .reconciler
        .apply_full(programmed.datapath.maps_mut(), model.desired())
        .map_err(|e| BenchError::Switchyard(e.to_string()))?;
    let programming_seconds = started.elapsed().as_secs_f64();
    let maps = own_maps()?;
    let rss_after_bytes = own_rss()?;
    let report = MemoryReport {
        services: shape.services,
        endpoints_per_service: shape.endpoints_per_service,
        frontends: model.desired().len(),
        map_operations: applied.ops,
        map_memlock_bytes: maps.iter().map(|m| m.memlock_bytes).sum(),
        maps,
        rss_before_bytes,
        rss_after_bytes,
        programming_seconds,
    };
    drop(programmed);
    drop(cluster);
    Ok(report)
}

/// Markdown summary of a [`MemoryReport`].
pub fn markdown(report: &MemoryReport) -> String {
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let mut out = format!(
        "{} Services × {} endpoints ({} frontends, {} map operations, programmed in {:.2} s).\n\n\
         | map id | type | max entries | memlock MiB |\n|---|---|---|---|\n",
        report.services,
        report.endpoints_per_service,
        report.frontends,
        report.map_operations,
        report.programming_seconds
    );
    for map in &report.maps {
        out.push_str(&format!(
            "| {} | {} | {} | {:.2} |\n",
            map.id,
            map.map_type,
            map.max_entries,
            mib(map.memlock_bytes)
        ));
    }
    out.push_str(&format!(
        "\nBPF maps: {:.1} MiB in total. Process RSS: {:.1} MiB before, {:.1} MiB with the cluster \
         objects, model, reconciler and maps loaded.\n",
        mib(report.map_memlock_bytes),
        mib(report.rss_before_bytes),
        mib(report.rss_after_bytes)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_fdinfo_is_parsed_and_other_descriptors_are_not_maps() {
        let map = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t2072\nmap_type:\t1\nkey_size:\t8\n\
                   value_size:\t16\nmax_entries:\t4096\nmap_flags:\t0x1\nmap_extra:\t0x0\n\
                   memlock:\t360448\nmap_id:\t42\nfrozen:\t0\n";
        let cases = [
            (
                map,
                Some(MapMemory { id: 42, map_type: 1, max_entries: 4096, memlock_bytes: 360_448 }),
            ),
            ("pos:\t0\nflags:\t02\nmnt_id:\t25\nino:\t1\n", None),
            ("prog_type:\t8\nprog_jited:\t1\nmemlock:\t4096\nprog_id:\t7\n", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_map_fdinfo(text), expected, "{text}");
        }
    }

    #[test]
    fn vm_rss_is_read_in_bytes() {
        let cases = [
            ("Name:\tx\nVmRSS:\t   12345 kB\nVmData:\t1 kB\n", Some(12_345 * 1024)),
            ("Name:\tx\n", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_vm_rss(text), expected, "{text}");
        }
    }
}
