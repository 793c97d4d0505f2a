//! BGP communities as `spec.communities` of a BGPAdvertisement writes them.

/// A BGP community as written in `spec.communities`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Community {
    /// RFC 1997: two 16-bit halves, `65000:100`.
    Standard(u32),
    /// RFC 8092: three 32-bit parts, `65000:1:2`.
    Large(u32, u32, u32),
}

/// Parses `65000:100`, `4200000000:1:2`, or a well-known name (`no-export`, `no-advertise`,
/// `no-export-subconfed`, `no-peer`); the error is the reason.
pub fn parse_community(text: &str) -> Result<Community, String> {
    match text.trim() {
        "no-export" => return Ok(Community::Standard(0xFFFF_FF01)),
        "no-advertise" => return Ok(Community::Standard(0xFFFF_FF02)),
        "no-export-subconfed" => return Ok(Community::Standard(0xFFFF_FF03)),
        "no-peer" => return Ok(Community::Standard(0xFFFF_FF04)),
        _ => {}
    }
    let parts: Vec<&str> = text.trim().split(':').collect();
    let bad = || {
        format!("{text:?} is not a community: expected 65000:100, 65000:1:2 or a well-known name")
    };
    match parts.as_slice() {
        [high, low] => {
            let high: u16 = high.parse().map_err(|_| bad())?;
            let low: u16 = low.parse().map_err(|_| bad())?;
            Ok(Community::Standard(u32::from(high) << 16 | u32::from(low)))
        }
        [a, b, c] => Ok(Community::Large(
            a.parse().map_err(|_| bad())?,
            b.parse().map_err(|_| bad())?,
            c.parse().map_err(|_| bad())?,
        )),
        _ => Err(bad()),
    }
}
