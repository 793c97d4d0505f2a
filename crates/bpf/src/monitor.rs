//! The monitor's side of `sy_monitor` and `sy_events`: switch the event stream on (with its
//! sampling rates), read events, switch it off again. Off is the default and the state a
//! [`Monitor`] leaves behind when dropped, so the programs pay one array lookup per decision
//! unless someone is watching.

use std::path::Path;

use aya::maps::{Array, Map, MapData, RingBuf};
use switchyard_error::ErrorChain;

use crate::Error;
use crate::abi::{Event, MonitorConfig};
use crate::maps::names;

/// A live event stream on the maps pinned in one bpffs directory.
pub struct Monitor {
    config: Array<MapData, MonitorConfig>,
    events: RingBuf<MapData>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

fn open(bpf_dir: &Path, name: &'static str) -> Result<Map, Error> {
    let data =
        MapData::from_pin(bpf_dir.join(name)).map_err(|source| Error::Map { name, source })?;
    Map::from_map_data(data).map_err(|source| Error::Map { name, source })
}

impl Monitor {
    /// Opens `sy_monitor` and `sy_events` in `bpf_dir` (the stream stays off).
    pub fn open_pinned(bpf_dir: &Path) -> Result<Self, Error> {
        let config = Array::try_from(open(bpf_dir, names::MONITOR)?)
            .map_err(|source| Error::Map { name: names::MONITOR, source })?;
        let events = RingBuf::try_from(open(bpf_dir, names::EVENTS)?)
            .map_err(|source| Error::Map { name: names::EVENTS, source })?;
        Ok(Monitor { config, events })
    }

    /// Switches the stream on: decisions 1 in `sample_every`, drops 1 in `drop_sample_every`
    /// (0 and 1: every one). Events already in the ring (from an earlier monitor) are dropped.
    pub fn enable(&mut self, sample_every: u32, drop_sample_every: u32) -> Result<(), Error> {
        while self.events.next().is_some() {}
        self.write(MonitorConfig { enabled: 1, sample_every, drop_sample_every, pad: 0 })
    }

    /// Switches the stream off.
    pub fn disable(&mut self) -> Result<(), Error> {
        self.write(MonitorConfig::default())
    }

    /// The settings as stored.
    pub fn settings(&self) -> Result<MonitorConfig, Error> {
        self.config.get(&0, 0).map_err(|source| Error::Map { name: names::MONITOR, source })
    }

    fn write(&mut self, value: MonitorConfig) -> Result<(), Error> {
        self.config.set(0, value, 0).map_err(|source| Error::Map { name: names::MONITOR, source })
    }

    /// The next event in the ring, if any (does not wait).
    pub fn next_event(&mut self) -> Option<Event> {
        let item = self.events.next()?;
        Event::from_bytes(&item)
    }
}

/// The monitor settings pinned in `bpf_dir`, read without taking the stream over (a
/// [`Monitor`] switches it off when dropped).
pub fn read_settings(bpf_dir: &Path) -> Result<MonitorConfig, Error> {
    let config: Array<MapData, MonitorConfig> = Array::try_from(open(bpf_dir, names::MONITOR)?)
        .map_err(|source| Error::Map { name: names::MONITOR, source })?;
    config.get(&0, 0).map_err(|source| Error::Map { name: names::MONITOR, source })
}

impl Drop for Monitor {
    fn drop(&mut self) {
        if let Err(err) = self.disable() {
            tracing::warn!(err = %ErrorChain(&err), map = names::MONITOR, "could not switch the monitor off");
        }
    }
}
