//! [`Backend`]: one endpoint as a frontend uses it.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::desired::BackendState;
use crate::parse::{Place, ZoneHints};

/// One endpoint a frontend may send traffic to.
///
/// Where the endpoint is (node, zone) is the interned record the endpoint's facts hold, shared
/// rather than copied: one 8-byte pointer instead of two 16-byte ones (issue 20: 275,000 backends
/// at 10,000 Services × 25 endpoints, 56 bytes each before, 32 now). Compared, ordered, hashed
/// and serialized as the fields it stands for: ip, port, node name, zone, locality, state.
#[derive(Clone, Serialize, Deserialize)]
#[serde(from = "BackendFields", into = "BackendFields")]
pub struct Backend {
    pub ip: IpAddr,
    pub port: u16,
    /// True when the endpoint's node is this proxy's node.
    pub is_local: bool,
    pub state: BackendState,
    place: Arc<Place>,
}

impl Backend {
    /// A backend on `node_name` in `zone` (each if the EndpointSlice gives one).
    pub fn new(
        ip: IpAddr,
        port: u16,
        node_name: Option<&str>,
        zone: Option<&str>,
        is_local: bool,
        state: BackendState,
    ) -> Self {
        let place = Place {
            node_name: node_name.map(Arc::from),
            zone: zone.map(Arc::from),
            zone_hints: ZoneHints::Absent,
        };
        Self { ip, port, is_local, state, place: Arc::new(place) }
    }

    /// A backend sharing its endpoint's interned place.
    pub(crate) fn at(
        ip: IpAddr,
        port: u16,
        place: Arc<Place>,
        is_local: bool,
        state: BackendState,
    ) -> Self {
        Self { ip, port, is_local, state, place }
    }

    /// `nodeName` of the endpoint, if the EndpointSlice gives one.
    pub fn node_name(&self) -> Option<&str> {
        self.place.node_name.as_deref()
    }

    /// `zone` of the endpoint, if the EndpointSlice gives one.
    pub fn zone(&self) -> Option<&str> {
        self.place.zone.as_deref()
    }

    /// What equality, order and hashing see (the order the fields had as a plain struct).
    fn key(&self) -> (IpAddr, u16, Option<&str>, Option<&str>, bool, BackendState) {
        (self.ip, self.port, self.node_name(), self.zone(), self.is_local, self.state)
    }
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend")
            .field("ip", &self.ip)
            .field("port", &self.port)
            .field("node_name", &self.node_name())
            .field("zone", &self.zone())
            .field("is_local", &self.is_local)
            .field("state", &self.state)
            .finish()
    }
}

impl PartialEq for Backend {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Backend {}

impl PartialOrd for Backend {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Backend {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

impl Hash for Backend {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// The serialized form, as the struct's fields were.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BackendFields {
    ip: IpAddr,
    port: u16,
    node_name: Option<Arc<str>>,
    zone: Option<Arc<str>>,
    is_local: bool,
    state: BackendState,
}

impl From<BackendFields> for Backend {
    fn from(f: BackendFields) -> Self {
        let place = Place { node_name: f.node_name, zone: f.zone, zone_hints: ZoneHints::Absent };
        Self {
            ip: f.ip,
            port: f.port,
            is_local: f.is_local,
            state: f.state,
            place: Arc::new(place),
        }
    }
}

impl From<Backend> for BackendFields {
    fn from(b: Backend) -> Self {
        Self {
            ip: b.ip,
            port: b.port,
            node_name: b.place.node_name.clone(),
            zone: b.place.zone.clone(),
            is_local: b.is_local,
            state: b.state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_takes_one_pointer_for_where_it_is() {
        assert_eq!(size_of::<Backend>(), 32);
    }

    #[test]
    fn backends_serialize_and_compare_as_their_fields() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = Backend::new(ip, 80, Some("n1"), Some("z1"), true, BackendState::Ready);
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"ip": "10.0.0.1", "port": 80, "nodeName": "n1", "zone": "z1",
                "isLocal": true, "state": "Ready"})
        );
        let back: Backend = serde_json::from_value(json).unwrap();
        assert_eq!(back, a);
        let elsewhere = Backend::new(ip, 80, Some("n2"), Some("z1"), true, BackendState::Ready);
        assert!(a < elsewhere, "ordered by node name after address and port");
        let hinted = Place {
            node_name: Some("n1".into()),
            zone: Some("z1".into()),
            zone_hints: ZoneHints::One("z2".into()),
        };
        let shared = Backend::at(ip, 80, Arc::new(hinted), true, BackendState::Ready);
        assert_eq!(shared, a, "zone hints are the endpoint's, not the backend's");
    }
}
