//! `switchyard agent --config FILE`: the part of kube-proxy's `KubeProxyConfiguration`
//! (`kubeproxy.config.k8s.io/v1alpha1`) that means something to Switchyard, so a cluster
//! replacing kube-proxy keeps its configuration file (kubeadm's `kube-proxy` ConfigMap holds
//! one). A field that applies sets the matching flag unless that flag is given; kube-proxy's
//! fields without a meaning here are listed in [`KubeProxyConfig::ignored`] (the agent warns,
//! naming each); anything else is refused, as kube-proxy's strict decoding refuses it, so a
//! misspelt field is never silently dropped.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The only `apiVersion` accepted.
pub const API_VERSION: &str = "kubeproxy.config.k8s.io/v1alpha1";
/// The only `kind` accepted.
pub const KIND: &str = "KubeProxyConfiguration";

/// What a configuration file says that applies to the agent (`None`: not set in the file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeProxyConfig {
    /// `hostnameOverride` → `--node-name`.
    pub node_name: Option<String>,
    /// `healthzBindAddress` → `--healthz-bind-address` (empty: the default, 0.0.0.0:10256).
    pub healthz_bind_address: Option<String>,
    /// `metricsBindAddress` → `--metrics-bind-address` (empty: off, Switchyard's default).
    pub metrics_bind_address: Option<String>,
    /// `clientConnection.kubeconfig` → `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `conntrack.maxPerCore` × CPUs, at least `conntrack.min` (kube-proxy's rule for
    /// `nf_conntrack_max`) → `--max-conntrack`.
    pub max_conntrack: Option<u32>,
    /// `nodePortAddresses` (CIDRs, or `[primary]`) → `--nodeport-addresses`; empty or null:
    /// not set (every address, kube-proxy's default).
    pub node_port_addresses: Option<switchyard_model::NodePortAddresses>,
    /// kube-proxy fields set in the file that have no meaning for Switchyard, dotted
    /// (`iptables.masqueradeAll`, `mode`), for the agent to warn about.
    pub ignored: Vec<String>,
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not YAML")]
    Yaml {
        path: PathBuf,
        #[source]
        source: serde_norway::Error,
    },
    #[error("{path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
}

/// Top-level kube-proxy fields Switchyard has no use for: the other proxy modes, kube-proxy's
/// own process and logging settings, and syncing periods (Switchyard programs each change as
/// it arrives).
const IGNORED_TOP: &[&str] = &[
    "bindAddress",
    "bindAddressHardFail",
    "clusterCIDR",
    "configSyncPeriod",
    "detectLocal",
    "detectLocalMode",
    "enableProfiling",
    "featureGates",
    "iptables",
    "ipvs",
    "linux",
    "logging",
    "minSyncPeriod",
    "mode",
    "nftables",
    "oomScoreAdj",
    "portRange",
    "showHiddenMetricsForVersion",
    "syncPeriod",
    "windows",
    "windowsRunAsService",
    "winkernel",
];
/// `clientConnection` fields without a meaning here (the client's own defaults apply).
const IGNORED_CLIENT: &[&str] = &["acceptContentTypes", "burst", "contentType", "qps"];
/// `conntrack` fields for the kernel's nf_conntrack, which Switchyard's tables do not use.
const IGNORED_CONNTRACK: &[&str] = &[
    "tcpBeLiberal",
    "tcpCloseWaitTimeout",
    "tcpEstablishedTimeout",
    "udpStreamTimeout",
    "udpTimeout",
];

/// Reads and checks `path`; `cpus` scales `conntrack.maxPerCore`.
pub fn read(path: &Path, cpus: usize) -> Result<KubeProxyConfig, ConfigFileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigFileError::Read { path: path.to_owned(), source })?;
    parse(&text, cpus).map_err(|err| match err {
        Parse::Yaml(source) => ConfigFileError::Yaml { path: path.to_owned(), source },
        Parse::Invalid(detail) => ConfigFileError::Invalid { path: path.to_owned(), detail },
    })
}

/// `nodePortAddresses`: null or `[]` is unset; `[primary]` or CIDRs, as the flag takes them.
fn node_port_addresses(
    value: &Value,
) -> Result<Option<switchyard_model::NodePortAddresses>, Parse> {
    let invalid =
        || Parse::Invalid("nodePortAddresses: expected a list of CIDRs or [primary]".into());
    let list = match value {
        Value::Null => return Ok(None),
        Value::Array(list) if list.is_empty() => return Ok(None),
        Value::Array(list) => list,
        _ => return Err(invalid()),
    };
    let texts =
        list.iter().map(|v| v.as_str().ok_or_else(invalid)).collect::<Result<Vec<_>, _>>()?;
    if texts.len() > 1 && texts.contains(&"primary") {
        return Err(Parse::Invalid(
            "nodePortAddresses: primary cannot be combined with CIDRs".into(),
        ));
    }
    switchyard_model::config::parse_node_port_addresses(&texts.join(","))
        .map(Some)
        .map_err(|err| Parse::Invalid(format!("nodePortAddresses: {err}")))
}

/// A parse failure before the file's name is attached.
#[derive(Debug)]
pub enum Parse {
    Yaml(serde_norway::Error),
    Invalid(String),
}

/// Parses the text of a configuration file (see [`read`]).
pub fn parse(text: &str, cpus: usize) -> Result<KubeProxyConfig, Parse> {
    let value: Value = serde_norway::from_str(text).map_err(Parse::Yaml)?;
    let Value::Object(top) = value else {
        return Err(Parse::Invalid("expected a KubeProxyConfiguration object".into()));
    };
    let api_version = top.get("apiVersion").and_then(Value::as_str);
    let kind = top.get("kind").and_then(Value::as_str);
    if api_version != Some(API_VERSION) || kind != Some(KIND) {
        return Err(Parse::Invalid(format!(
            "expected apiVersion {API_VERSION} and kind {KIND}, found {} {}",
            api_version.unwrap_or("(none)"),
            kind.unwrap_or("(none)")
        )));
    }
    let mut config = KubeProxyConfig::default();
    let mut conntrack = (None, None);
    for (key, value) in &top {
        match key.as_str() {
            "apiVersion" | "kind" => {}
            "hostnameOverride" => config.node_name = non_empty(string(key, value)?),
            // Empty means kube-proxy's default (kubeadm writes "" for both).
            "healthzBindAddress" => config.healthz_bind_address = non_empty(string(key, value)?),
            "metricsBindAddress" => config.metrics_bind_address = non_empty(string(key, value)?),
            "nodePortAddresses" => config.node_port_addresses = node_port_addresses(value)?,
            "clientConnection" => {
                for (field, value) in object(key, value)? {
                    match field.as_str() {
                        "kubeconfig" => {
                            config.kubeconfig = non_empty(string(field, value)?).map(PathBuf::from);
                        }
                        f if IGNORED_CLIENT.contains(&f) => {
                            config.ignored.push(format!("clientConnection.{f}"));
                        }
                        f => return Err(unknown(&format!("clientConnection.{f}"))),
                    }
                }
            }
            "conntrack" => {
                for (field, value) in object(key, value)? {
                    match field.as_str() {
                        "maxPerCore" => conntrack.0 = count(field, value)?,
                        "min" => conntrack.1 = count(field, value)?,
                        f if IGNORED_CONNTRACK.contains(&f) => {
                            config.ignored.push(format!("conntrack.{f}"));
                        }
                        f => return Err(unknown(&format!("conntrack.{f}"))),
                    }
                }
            }
            k if IGNORED_TOP.contains(&k) => config.ignored.push(k.to_owned()),
            k => return Err(unknown(k)),
        }
    }
    config.max_conntrack = match conntrack {
        // kube-proxy: maxPerCore 0 (or unset) leaves the limit alone.
        (None | Some(0), _) => None,
        (Some(per_core), min) => {
            let scaled = u64::from(per_core).saturating_mul(cpus as u64);
            let total = scaled.max(u64::from(min.unwrap_or(0)));
            Some(u32::try_from(total).unwrap_or(u32::MAX))
        }
    };
    Ok(config)
}

fn unknown(field: &str) -> Parse {
    Parse::Invalid(format!("unknown field {field} (not a KubeProxyConfiguration field)"))
}

fn string(field: &str, value: &Value) -> Result<String, Parse> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        other => Err(Parse::Invalid(format!("{field}: expected a string, found {other}"))),
    }
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn object<'a>(field: &str, value: &'a Value) -> Result<&'a Map<String, Value>, Parse> {
    static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
    match value {
        Value::Object(map) => Ok(map),
        Value::Null => Ok(&EMPTY),
        other => Err(Parse::Invalid(format!("{field}: expected an object, found {other}"))),
    }
}

fn count(field: &str, value: &Value) -> Result<Option<u32>, Parse> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => {
            n.as_u64().and_then(|n| u32::try_from(n).ok()).map(Some).ok_or_else(|| {
                Parse::Invalid(format!("conntrack.{field}: expected a count, found {n}"))
            })
        }
        other => Err(Parse::Invalid(format!("conntrack.{field}: expected a count, found {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> KubeProxyConfig {
        parse(text, 4).unwrap_or_else(|err| panic!("{err:?}"))
    }

    fn refused(text: &str) -> String {
        match parse(text, 4) {
            Err(Parse::Invalid(detail)) => detail,
            other => panic!("not refused: {other:?}"),
        }
    }

    const HEAD: &str =
        "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n";

    #[test]
    fn kubeadms_default_file_maps_what_applies_and_names_what_is_ignored() {
        // The shape `kubeadm init` writes into the kube-proxy ConfigMap (config.conf).
        let text = format!(
            "{HEAD}bindAddress: 0.0.0.0\nbindAddressHardFail: false\nclientConnection:\n  \
             acceptContentTypes: \"\"\n  burst: 0\n  contentType: \"\"\n  kubeconfig: \
             /var/lib/kube-proxy/kubeconfig.conf\n  qps: 0\nclusterCIDR: 10.244.0.0/16\n\
             configSyncPeriod: 0s\nconntrack:\n  maxPerCore: null\n  min: null\n  \
             tcpCloseWaitTimeout: null\n  tcpEstablishedTimeout: null\n  udpStreamTimeout: 0s\n  \
             udpTimeout: 0s\ndetectLocalMode: \"\"\nenableProfiling: false\nhealthzBindAddress: \"\"\n\
             hostnameOverride: \"\"\niptables:\n  masqueradeAll: false\n  minSyncPeriod: 0s\n\
             ipvs:\n  scheduler: \"\"\nmetricsBindAddress: \"\"\nmode: \"\"\nnodePortAddresses: null\n\
             oomScoreAdj: null\nportRange: \"\"\nshowHiddenMetricsForVersion: \"\"\n"
        );
        let config = ok(&text);
        assert_eq!(config.kubeconfig, Some(PathBuf::from("/var/lib/kube-proxy/kubeconfig.conf")));
        assert_eq!(config.node_name, None);
        assert_eq!(config.healthz_bind_address, None);
        assert_eq!(config.metrics_bind_address, None);
        assert_eq!(config.max_conntrack, None);
        for field in ["iptables", "mode", "clientConnection.qps", "conntrack.udpTimeout"] {
            assert!(config.ignored.iter().any(|f| f == field), "{field}: {:?}", config.ignored);
        }
    }

    #[test]
    fn fields_that_apply_are_read() {
        let config = ok(&format!(
            "{HEAD}hostnameOverride: node-7\nhealthzBindAddress: 0.0.0.0:10256\n\
             metricsBindAddress: 127.0.0.1:10249\nconntrack:\n  maxPerCore: 32768\n  min: 131072\n"
        ));
        assert_eq!(config.node_name.as_deref(), Some("node-7"));
        assert_eq!(config.healthz_bind_address.as_deref(), Some("0.0.0.0:10256"));
        assert_eq!(config.metrics_bind_address.as_deref(), Some("127.0.0.1:10249"));
        // 4 CPUs × 32768 is below min: min wins, as in kube-proxy.
        assert_eq!(config.max_conntrack, Some(131_072));
        let scaled = ok(&format!("{HEAD}conntrack:\n  maxPerCore: 65536\n  min: 1000\n"));
        assert_eq!(scaled.max_conntrack, Some(262_144));
        assert!(config.ignored.is_empty(), "{:?}", config.ignored);
    }

    #[test]
    fn node_port_addresses_take_cidrs_or_primary_and_empty_means_unset() {
        use switchyard_model::NodePortAddresses;
        let cidrs = ok(&format!("{HEAD}nodePortAddresses: [10.0.0.0/8, \"fd00::/8\"]\n"));
        assert!(
            matches!(&cidrs.node_port_addresses, Some(NodePortAddresses::Cidrs(c)) if c.len() == 2),
            "{cidrs:?}"
        );
        let primary = ok(&format!("{HEAD}nodePortAddresses: [primary]\n"));
        assert_eq!(primary.node_port_addresses, Some(NodePortAddresses::Primary));
        assert_eq!(ok(&format!("{HEAD}nodePortAddresses: []\n")).node_port_addresses, None);
    }

    #[test]
    fn other_files_misspelt_fields_and_unsupported_fields_are_refused() {
        let cases = [
            ("apiVersion: v1\nkind: ConfigMap\n", "expected apiVersion"),
            (&format!("{HEAD}hostnameOveride: x\n") as &str, "unknown field hostnameOveride"),
            (&format!("{HEAD}conntrack:\n  maxPerCpu: 1\n"), "unknown field conntrack.maxPerCpu"),
            (&format!("{HEAD}conntrack:\n  min: -1\n"), "conntrack.min: expected a count"),
            (&format!("{HEAD}nodePortAddresses: [10.0.0.0/33]\n"), "nodePortAddresses: "),
            (&format!("{HEAD}nodePortAddresses: [primary, 10.0.0.0/8]\n"), "primary cannot"),
            (&format!("{HEAD}nodePortAddresses: all\n"), "expected a list"),
            (&format!("{HEAD}hostnameOverride: [a]\n"), "expected a string"),
        ];
        for (text, expected) in cases {
            let detail = refused(text);
            assert!(detail.contains(expected), "{text:?}: {detail}");
        }
        assert!(matches!(parse("{", 1), Err(Parse::Yaml(_))));
    }
}
