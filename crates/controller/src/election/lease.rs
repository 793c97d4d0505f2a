//! Carrying out the election against the API server: read the Lease, create, renew or take it
//! over with optimistic concurrency (resourceVersion), and publish whether we lead.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tokio::sync::watch;

use super::{Election, Read, Record, Step};

/// Where the Lease is and how the election runs.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This candidate (the pod name, usually).
    pub identity: String,
    /// How long a Lease holds without renewal (client-go default 15 s).
    pub lease_duration: Duration,
    /// A leader that could not renew for this long stops writing (default 10 s).
    pub renew_deadline: Duration,
    /// How often the Lease is read and renewed (default 2 s); also the time one round (a read
    /// and a write) may take. Two of them must fit in `lease_duration − renew_deadline`.
    pub retry_period: Duration,
}

impl ElectionConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// Another lease duration, with the renew deadline at two thirds of it and the retry
    /// period at a sixth (at most 2 s), which keeps two rounds within the remaining third.
    pub fn with_lease_duration(mut self, lease_duration: Duration) -> Self {
        self.lease_duration = lease_duration;
        self.renew_deadline = lease_duration * 2 / 3;
        self.retry_period = (lease_duration / 6).min(Duration::from_secs(2));
        self
    }
}

/// Why one round of the election failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The Lease could not be read or written.
    #[error("Lease {namespace}/{name}: {action} failed")]
    Api { namespace: String, name: String, action: &'static str, source: kube::Error },
    /// The round took longer than the retry period (or than what is left of our leadership).
    #[error("Lease {namespace}/{name}: no answer in time")]
    Timeout { namespace: String, name: String },
}

fn record_of(lease: &Lease) -> Record {
    let spec = lease.spec.clone().unwrap_or_default();
    Record {
        holder: spec.holder_identity,
        renew_time: spec.renew_time.map(|t| t.0.to_string()),
        duration: spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs),
        transitions: spec.lease_transitions.unwrap_or(0),
    }
}

/// Runs the election until `stop` fires, publishing on `leading` whether we may write. On stop,
/// a held Lease is released so a successor need not wait for it to expire.
pub async fn run(
    api: Api<Lease>,
    config: ElectionConfig,
    leading: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut election =
        Election::new(&config.identity, config.lease_duration, config.renew_deadline);
    let publish = |election: &Election| {
        let is_leader = election.is_leader(Instant::now());
        leading.send_if_modified(|l| std::mem::replace(l, is_leader) != is_leader);
    };
    loop {
        publish(&election);
        // A leader's round may not outlast its leadership: it stops writing at the deadline.
        let now = Instant::now();
        let budget = match election.leading_until().filter(|until| *until > now) {
            Some(until) => (until - now).min(config.retry_period),
            None => config.retry_period,
        };
        let result = tokio::time::timeout(budget, round(&api, &config, &mut election)).await;
        warn_on_failure(&config, result, "leader election");
        publish(&election);
        let now = Instant::now();
        let mut wake = election.next_read(now, config.retry_period);
        if let Some(until) = election.leading_until().filter(|until| *until > now) {
            wake = wake.min(until);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = stop.changed() => break,
        }
    }
    if election.is_leader(Instant::now()) {
        leading.send_replace(false);
        let result = tokio::time::timeout(config.retry_period, release(&api, &config)).await;
        warn_on_failure(&config, result, "releasing the Lease");
    }
}

/// Logs a failed or timed-out round (it is retried).
fn warn_on_failure(
    config: &ElectionConfig,
    result: Result<Result<(), LeaseError>, tokio::time::error::Elapsed>,
    what: &str,
) {
    let err = match result {
        Ok(Ok(())) => return,
        Ok(Err(err)) => err,
        Err(_) => {
            LeaseError::Timeout { namespace: config.namespace.clone(), name: config.name.clone() }
        }
    };
    tracing::warn!(error = %crate::chain(&err), "{what}");
}

/// One read and, if needed, one write.
async fn round(
    api: &Api<Lease>,
    config: &ElectionConfig,
    election: &mut Election,
) -> Result<(), LeaseError> {
    let error = |action| {
        move |source| LeaseError::Api {
            namespace: config.namespace.clone(),
            name: config.name.clone(),
            action,
            source,
        }
    };
    let sent = Instant::now();
    let current = api.get_opt(&config.name).await.map_err(error("read"))?;
    let read = Read { sent, answered: Instant::now() };
    let step = election.decide(read, current.as_ref().map(record_of).as_ref());
    let stamp = MicroTime(Timestamp::now());
    let seconds = i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let written = match (step, current) {
        (Step::Create, _) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(config.identity.clone()),
                    acquire_time: Some(stamp.clone()),
                    renew_time: Some(stamp),
                    lease_duration_seconds: Some(seconds),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            api.create(&PostParams::default(), &lease).await
        }
        (Step::Renew, Some(mut lease)) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.renew_time = Some(stamp);
            spec.lease_duration_seconds = Some(seconds);
            api.replace(&config.name, &PostParams::default(), &lease).await
        }
        (Step::TakeOver, Some(mut lease)) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            tracing::info!(previous = ?spec.holder_identity, identity = %config.identity, "taking over the Lease");
            spec.holder_identity = Some(config.identity.clone());
            spec.acquire_time = Some(stamp.clone());
            spec.renew_time = Some(stamp);
            spec.lease_duration_seconds = Some(seconds);
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            api.replace(&config.name, &PostParams::default(), &lease).await
        }
        _ => return Ok(()),
    };
    match written {
        Ok(_) => {
            election.renewed(read);
            Ok(())
        }
        // Someone else wrote first (409) or created it first: we are not the leader.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            election.lost();
            Ok(())
        }
        Err(source) => Err(error("write")(source)),
    }
}

/// Gives the Lease up: no holder, so the next candidate takes over at once.
async fn release(api: &Api<Lease>, config: &ElectionConfig) -> Result<(), LeaseError> {
    let error = |action| {
        move |source| LeaseError::Api {
            namespace: config.namespace.clone(),
            name: config.name.clone(),
            action,
            source,
        }
    };
    let Some(mut lease) = api.get_opt(&config.name).await.map_err(error("read"))? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    api.replace(&config.name, &PostParams::default(), &lease).await.map_err(error("release"))?;
    Ok(())
}
