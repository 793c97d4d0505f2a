//! Address parsing on the hot path. A full rebuild parses one address per endpoint (hundreds of
//! thousands); the standard parser's generality costs several hundred instructions each, this
//! dotted-quad fast path a few dozen. Anything it does not accept goes to the standard parser, so
//! the result is always exactly `str::parse::<IpAddr>`'s.

use std::net::{IpAddr, Ipv4Addr};

/// Parses an IPv4 or IPv6 address exactly like `text.parse::<IpAddr>().ok()`.
pub(crate) fn parse_ip(text: &str) -> Option<IpAddr> {
    match parse_dotted_quad(text.as_bytes()) {
        Some(v4) => Some(IpAddr::V4(v4)),
        None => text.parse().ok(),
    }
}

/// Four decimal octets 0-255 without leading zeros, separated by dots; `None` for anything else.
fn parse_dotted_quad(bytes: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut index = 0;
    let mut value: u16 = 0;
    let mut digits = 0;
    for &byte in bytes {
        match byte {
            b'0'..=b'9' => {
                if digits > 0 && value == 0 {
                    return None; // leading zero
                }
                value = value * 10 + u16::from(byte - b'0');
                digits += 1;
                if digits > 3 || value > 255 {
                    return None;
                }
            }
            b'.' => {
                if digits == 0 || index == 3 {
                    return None;
                }
                octets[index] = value as u8;
                index += 1;
                value = 0;
                digits = 0;
            }
            _ => return None,
        }
    }
    if digits == 0 || index != 3 {
        return None;
    }
    octets[3] = value as u8;
    Some(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn agrees_with_the_standard_parser_on_edge_cases() {
        let cases = [
            "10.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "256.0.0.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.02.3.4",
            "1.2.3.0",
            "1..3.4",
            ".1.2.3",
            "1.2.3.",
            "",
            "1.2.3.4 ",
            "fd00::1",
            "::",
            "::ffff:10.0.0.1",
            "1.2.3.-4",
            "1000.2.3.4",
            "1.2.3.4/32",
            "999.1.1.1",
        ];
        for text in cases {
            assert_eq!(parse_ip(text), text.parse::<IpAddr>().ok(), "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_standard_parser_on_any_dotted_text(text in "[0-9.:a-f]{0,20}") {
            prop_assert_eq!(parse_ip(&text), text.parse::<IpAddr>().ok());
        }

        #[test]
        fn agrees_with_the_standard_parser_on_any_address(octets in any::<[u8; 4]>(), v6 in any::<u128>()) {
            let v4 = Ipv4Addr::from(octets).to_string();
            prop_assert_eq!(parse_ip(&v4), Some(IpAddr::V4(Ipv4Addr::from(octets))));
            let v6 = std::net::Ipv6Addr::from(v6).to_string();
            prop_assert_eq!(parse_ip(&v6), v6.parse::<IpAddr>().ok());
        }
    }
}
