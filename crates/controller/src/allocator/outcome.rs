//! What the allocator decides and hands to its runtime: a Service's addresses and condition, a
//! pool's counts and validity, and Events.

use std::fmt;
use std::net::IpAddr;

use switchyard_model::ObjectKey;

/// Type of the condition on a Service (`status.conditions`).
pub const ALLOCATED_CONDITION: &str = "switchyard.io/IPAllocated";
/// Type of the condition on an IPPool (`status.conditions`).
pub const VALID_CONDITION: &str = "switchyard.io/Valid";

/// Why a Service has (or has not) its addresses; the condition's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Every family has an address.
    Allocated,
    /// Addresses held, but one is in no IPPool any more (the pool shrank or went away): it stays
    /// until the Service releases it.
    NotInPool,
    /// The address in the Service's status is held by an older Service it may not share with;
    /// another one was allocated.
    AddressConflict,
    /// The request (annotation or spec.loadBalancerIP) cannot be read or cannot be met by the
    /// pool it names.
    InvalidRequest,
    /// A requested address is in no IPPool.
    RequestedNotInPool,
    /// A requested address is held by a Service it may not share with.
    AddressInUse,
    /// The pool named by `switchyard.io/ip-pool` does not exist.
    PoolNotFound,
    /// The pool that would serve the Service is disabled or invalid.
    PoolUnusable,
    /// No pool offers this Service an address of a family it needs.
    NoPoolMatches,
    /// Every pool that could serve the Service is full.
    PoolExhausted,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allocated => "Allocated",
            Self::NotInPool => "NotInPool",
            Self::AddressConflict => "AddressConflict",
            Self::InvalidRequest => "InvalidRequest",
            Self::RequestedNotInPool => "RequestedNotInPool",
            Self::AddressInUse => "AddressInUse",
            Self::PoolNotFound => "PoolNotFound",
            Self::PoolUnusable => "PoolUnusable",
            Self::NoPoolMatches => "NoPoolMatches",
            Self::PoolExhausted => "PoolExhausted",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `switchyard.io/IPAllocated` condition of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Condition status: True when every family the Service wants has an address.
    pub allocated: bool,
    pub reason: Reason,
    pub message: String,
}

impl Outcome {
    /// True when the outcome deserves a Warning Event.
    pub fn is_warning(&self) -> bool {
        self.reason != Reason::Allocated
    }
}

/// The status the allocator wants a Service to have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    pub service: ObjectKey,
    /// `status.loadBalancer.ingress` IPs, in the Service's family order.
    pub addresses: Vec<IpAddr>,
    /// `None`: the Service is not ours (any more): our ingress IPs and condition go.
    pub condition: Option<Outcome>,
}

/// What the allocator reports about a pool (`IPPool.status`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolReport {
    pub used_ipv4: u64,
    pub available_ipv4: u64,
    pub used_ipv6: u64,
    /// Saturates at 2^64-1.
    pub available_ipv6: u64,
    /// `None`: valid. Otherwise the reason and message of `switchyard.io/Valid` False.
    pub problem: Option<(String, String)>,
}

/// What an Event is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    Service(ObjectKey),
    IPPool(String),
}

/// A Kubernetes Event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub subject: Subject,
    /// Warning (else Normal).
    pub warning: bool,
    pub reason: String,
    pub message: String,
}

/// Everything one reconcile decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// Desired status of every Service the reconcile looked at (the runtime writes those that
    /// differ from the object).
    pub services: Vec<ServiceStatus>,
    /// Pools whose report changed (or whose object changed).
    pub pools: Vec<(String, PoolReport)>,
    pub events: Vec<Event>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.services.is_empty() && self.pools.is_empty() && self.events.is_empty()
    }
}
