//! Field syntax shared by every kind: port ranges, addresses, DNS labels, port names.

use std::net::IpAddr;

use super::{Problem, Report};
use crate::config::PortRange;
use crate::special::SpecialAddress;

pub(super) fn in_range(range: PortRange, port: i32) -> bool {
    u16::try_from(port).is_ok_and(|p| range.contains(p))
}

/// Checks a Service or endpoint address: as [`check_ip`], and not special (loopback,
/// link-local, …), which the API server refuses there too.
pub(super) fn check_service_ip(
    report: &mut Report<'_>,
    field: impl Into<String>,
    text: &str,
    family: Option<bool>,
) {
    let field = field.into();
    check_ip(report, field.clone(), text, family);
    if let Some(what) = text.parse::<IpAddr>().ok().and_then(SpecialAddress::of) {
        report.error(field, Problem::SpecialAddress { value: text.to_owned(), what });
    }
}

/// Checks an address; `family` is `Some(true)` for IPv4 only, `Some(false)` for IPv6 only.
pub(super) fn check_ip(
    report: &mut Report<'_>,
    field: impl Into<String>,
    text: &str,
    family: Option<bool>,
) {
    match text.parse::<IpAddr>() {
        Err(_) => report.error(field, Problem::BadAddress { value: text.to_owned() }),
        Ok(ip) => {
            match family {
                Some(true) if !ip.is_ipv4() => report
                    .error(field, Problem::WrongFamily { value: text.to_owned(), family: "IPv4" }),
                Some(false) if !ip.is_ipv6() => report
                    .error(field, Problem::WrongFamily { value: text.to_owned(), family: "IPv6" }),
                _ => {}
            }
        }
    }
}

pub(super) fn is_dns_label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// RFC 1123 label: lowercase alphanumerics and '-', starts and ends alphanumeric, at most 63.
pub(super) fn dns1123_label_rule(value: &str) -> Option<&'static str> {
    if value.is_empty() || value.len() > 63 {
        return Some("must be 1-63 characters");
    }
    if !value.chars().all(is_dns_label_char) {
        return Some("must consist of lowercase letters, digits and '-'");
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Some("must start and end with a letter or digit");
    }
    None
}

pub(super) fn check_dns1123_label(
    report: &mut Report<'_>,
    field: impl Into<String>,
    value: &str,
    what: &'static str,
) {
    if let Some(rule) = dns1123_label_rule(value) {
        report.error(field, Problem::BadName { value: value.to_owned(), what, rule });
    }
}

/// RFC 1035 label (Service names): an RFC 1123 label that starts with a letter.
pub(super) fn check_dns1035_label(
    report: &mut Report<'_>,
    field: impl Into<String>,
    value: &str,
    what: &'static str,
) {
    let rule = dns1123_label_rule(value).or_else(|| {
        (!value.starts_with(|c: char| c.is_ascii_lowercase())).then_some("must start with a letter")
    });
    if let Some(rule) = rule {
        report.error(field, Problem::BadName { value: value.to_owned(), what, rule });
    }
}

pub(super) fn check_dns1123_subdomain(
    report: &mut Report<'_>,
    field: impl Into<String>,
    value: &str,
    what: &'static str,
) {
    let rule = if value.is_empty() || value.len() > 253 {
        Some("must be 1-253 characters")
    } else {
        value.split('.').find_map(dns1123_label_rule)
    };
    if let Some(rule) = rule {
        report.error(field, Problem::BadName { value: value.to_owned(), what, rule });
    }
}

/// IANA service name (named targetPorts): 1-15 characters of lowercase letters, digits and '-',
/// at least one letter, no leading, trailing or doubled '-'.
pub(super) fn check_port_name_syntax(report: &mut Report<'_>, field: String, value: &str) {
    let rule = if value.is_empty() || value.len() > 15 {
        Some("must be 1-15 characters")
    } else if !value.chars().all(is_dns_label_char) {
        Some("must consist of lowercase letters, digits and '-'")
    } else if !value.chars().any(|c| c.is_ascii_lowercase()) {
        Some("must contain at least one letter")
    } else if value.starts_with('-') || value.ends_with('-') || value.contains("--") {
        Some("must not start or end with '-' or contain '--'")
    } else {
        None
    };
    if let Some(rule) = rule {
        report.error(field, Problem::BadName { value: value.to_owned(), what: "port name", rule });
    }
}
