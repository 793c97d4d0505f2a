//! kube-proxy's chain-name hashes: upper-case base32 of SHA-256, truncated.

use data_encoding::BASE32;
use sha2::{Digest, Sha256};

/// `base32(sha256(input))`, as Go's `base32.StdEncoding.EncodeToString(sha256.Sum256(...))`.
fn base32_sha256(input: &str) -> String {
    BASE32.encode(&Sha256::digest(input.as_bytes()))
}

/// The 16-character hash iptables mode puts in `KUBE-SVC-`/`KUBE-EXT-`/`KUBE-SEP-` chain names
/// (`portProtoHash` and `servicePortEndpointChainName` in the iptables proxier).
pub fn iptables_chain_hash(input: &str) -> String {
    let mut encoded = base32_sha256(input);
    encoded.truncate(16);
    encoded
}

/// nftables mode's `hashAndTruncate`: an 8-character hash prefix, a dash, then the name itself,
/// cut to fit nftables' chain-name limit.
pub fn nftables_chain_base(name: &str) -> String {
    /// kube-proxy's `chainNameBaseLengthMax`: 256 minus the longest chain prefix ("external-").
    const BASE_LENGTH_MAX: usize = 256 - "external-".len() - 1;
    let encoded = base32_sha256(name);
    let mut base = format!("{}-{name}", &encoded[..8]);
    if base.len() > BASE_LENGTH_MAX {
        // Names are ASCII (DNS labels, protocols, IPs), so byte truncation keeps them valid.
        base.truncate(BASE_LENGTH_MAX - 3);
        base.push_str("...");
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chain names that appear in published kube-proxy output (the seed's `default/web` Service
    /// and the `kubernetes` Service every cluster has) and in kube-proxy's own unit tests.
    #[test]
    fn iptables_hashes_match_names_seen_on_real_clusters() {
        let cases = [
            ("default/webtcp", "LOLE4ISW44XBNF3G"),
            ("default/webtcp10.244.1.3:80", "MHDQ23KUGG7EGFMW"),
            ("default/kubernetes:httpstcp", "NPX46M4PTMTKRN6Y"),
            ("ns1/svc1:p80tcp", "XPGD46QRK7WJZT7O"),
            ("ns1/svc1:p80tcp10.180.0.1:80", "SXIVWICOYRO3J4NJ"),
        ];
        for (input, expected) in cases {
            assert_eq!(iptables_chain_hash(input), expected, "{input}");
        }
    }

    #[test]
    fn nftables_bases_match_kube_proxy_unit_tests() {
        let cases = [
            ("ns1/svc1/tcp/p80", "ULMVA6XW-ns1/svc1/tcp/p80"),
            ("ns1/svc1/tcp/p80__10.180.0.1/80", "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"),
            ("ns2/svc2/tcp/p80", "42NFTM6N-ns2/svc2/tcp/p80"),
        ];
        for (input, expected) in cases {
            assert_eq!(nftables_chain_base(input), expected, "{input}");
        }
    }

    #[test]
    fn nftables_bases_are_truncated_to_the_chain_name_limit() {
        let long = "n".repeat(400);
        let base = nftables_chain_base(&long);
        assert_eq!(base.len(), 256 - "external-".len() - 1);
        assert!(base.ends_with("..."));
    }
}
