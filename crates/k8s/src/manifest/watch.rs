//! Watching a manifest directory: file events, debounced, become model [`Change`]s.
//!
//! A plain thread owns the directory state and does the (blocking) file reading; updates reach
//! async code through a tokio channel. So the watcher works with or without a runtime, and
//! reading files never blocks an executor thread.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher as _};
use switchyard_model::Change;
use switchyard_model::validate::ValidationOptions;
use tokio::sync::mpsc;

use super::directory::ManifestDirectory;
use super::error::{IgnoredDocument, ManifestError, ManifestWarning};

/// How the watcher groups file events.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// Quiet time after the last event before the directory is re-read. Editors and `kubectl`
    /// write several events per save; one re-read covers them all.
    pub debounce: Duration,
    /// Longest wait under a continuous stream of events, so updates still come out.
    pub max_delay: Duration,
    /// What an object must pass to apply (the cluster's NodePort range).
    pub validation: ValidationOptions,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
            validation: ValidationOptions::default(),
        }
    }
}

/// What changed in the directory, and every problem it has now.
#[derive(Debug, Clone)]
pub struct ManifestUpdate {
    /// Objects that were added, modified or removed since the previous update. The first update
    /// holds every object (changes from an empty state).
    pub changes: Vec<Change>,
    /// All current problems (not only new ones), so a consumer can simply replace its list.
    pub errors: Vec<ManifestError>,
    /// All current warnings (unknown fields).
    pub warnings: Vec<ManifestWarning>,
    pub ignored: Vec<IgnoredDocument>,
}

/// The watcher could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// inotify could not watch the path.
    #[error("{path}: cannot watch")]
    Watch { path: PathBuf, source: notify::Error },
    /// The thread that turns file events into updates could not start.
    #[error("cannot start the manifest watcher thread")]
    Thread(#[source] std::io::Error),
}

/// A running watch of a manifest directory. Dropping it stops the watch.
#[derive(Debug)]
pub struct ManifestWatcher {
    updates: mpsc::Receiver<ManifestUpdate>,
    // Held for its Drop: stopping the notify watcher ends the event stream and so the thread.
    _watcher: notify::RecommendedWatcher,
}

impl ManifestWatcher {
    /// Starts watching `root`. The first update (available at once) is the full initial reading.
    pub fn start(root: impl Into<PathBuf>, options: WatchOptions) -> Result<Self, WatchError> {
        let root = root.into();
        let (event_sender, events) = std_mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |event| {
            // The thread may be gone when the watcher is being dropped; nothing to do then.
            let _ = event_sender.send(event);
        })
        .map_err(|source| WatchError::Watch { path: root.clone(), source })?;
        // A single file is watched through its directory, so atomic replaces are seen.
        let (watched, mode) = if root.is_file() {
            (
                root.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf),
                RecursiveMode::NonRecursive,
            )
        } else {
            (root.clone(), RecursiveMode::Recursive)
        };
        let watched = if watched.as_os_str().is_empty() { PathBuf::from(".") } else { watched };
        watcher
            .watch(&watched, mode)
            .map_err(|source| WatchError::Watch { path: watched.clone(), source })?;

        // Capacity 1: a slow consumer makes the thread wait, and events pile up into one re-read.
        let (update_sender, updates) = mpsc::channel(1);
        thread::Builder::new()
            .name("manifest-watch".to_owned())
            .spawn(move || run(root, options, &events, &update_sender))
            .map_err(WatchError::Thread)?;
        Ok(Self { updates, _watcher: watcher })
    }

    /// The next update; `None` once the watch has ended.
    pub async fn next(&mut self) -> Option<ManifestUpdate> {
        self.updates.recv().await
    }

    /// The next update, for code outside an async runtime.
    pub fn blocking_next(&mut self) -> Option<ManifestUpdate> {
        self.updates.blocking_recv()
    }

    /// The next update if one arrives within `timeout`, for code outside an async runtime.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<ManifestUpdate> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.updates.try_recv() {
                Ok(update) => return Some(update),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) if Instant::now() >= deadline => return None,
                Err(mpsc::error::TryRecvError::Empty) => thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

type Event = notify::Result<notify::Event>;

fn run(
    root: PathBuf,
    options: WatchOptions,
    events: &std_mpsc::Receiver<Event>,
    updates: &mpsc::Sender<ManifestUpdate>,
) {
    let mut directory = ManifestDirectory::load_with(root, options.validation);
    let initial = ManifestUpdate {
        changes: directory.changes_from_empty(),
        errors: directory.errors().to_vec(),
        warnings: directory.warnings().to_vec(),
        ignored: directory.ignored().to_vec(),
    };
    if updates.blocking_send(initial).is_err() {
        return;
    }
    while let Some(Batch { touched, lost }) = next_batch(events, options) {
        let previous_errors = directory.errors().to_vec();
        let previous_warnings = directory.warnings().to_vec();
        // Per file normally; a full listing when events were lost.
        let changes =
            if lost { directory.rescan(&touched) } else { directory.update_paths(&touched) };
        if changes.is_empty()
            && directory.errors() == previous_errors.as_slice()
            && directory.warnings() == previous_warnings.as_slice()
        {
            continue;
        }
        tracing::debug!(
            changes = changes.len(),
            errors = directory.errors().len(),
            "manifest directory changed"
        );
        let update = ManifestUpdate {
            changes,
            errors: directory.errors().to_vec(),
            warnings: directory.warnings().to_vec(),
            ignored: directory.ignored().to_vec(),
        };
        if updates.blocking_send(update).is_err() {
            return;
        }
    }
}

/// The paths named by one debounced group of events.
#[derive(Debug, Default)]
struct Batch {
    touched: BTreeSet<PathBuf>,
    /// Events may have been lost (queue overflow, watch errors): only a full listing is sure
    /// to find every change.
    lost: bool,
}

/// Waits for an event, then collects events until `debounce` passes quietly (or `max_delay`
/// passes in all). `None` when the watcher is gone.
fn next_batch(events: &std_mpsc::Receiver<Event>, options: WatchOptions) -> Option<Batch> {
    let mut batch = Batch::default();
    collect(events.recv().ok()?, &mut batch);
    let deadline = Instant::now() + options.max_delay;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Some(batch);
        }
        match events.recv_timeout(options.debounce.min(deadline - now)) {
            Ok(event) => collect(event, &mut batch),
            Err(std_mpsc::RecvTimeoutError::Timeout) => return Some(batch),
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return None,
        }
    }
}

fn collect(event: Event, batch: &mut Batch) {
    match event {
        Ok(event) => {
            batch.lost |= event.need_rescan();
            // Opening and reading change nothing, and reading the files ourselves causes them:
            // counting them would re-read every file we just read, forever.
            let only_read = matches!(
                event.kind,
                EventKind::Access(kind) if kind != AccessKind::Close(AccessMode::Write)
            );
            if !only_read {
                batch.touched.extend(event.paths);
            }
        }
        // The listing compares every file's metadata, so it finds the changes without paths.
        Err(err) => {
            tracing::warn!(
                error = %switchyard_error::ErrorChain(&err),
                "manifest watch event error; rescanning"
            );
            batch.lost = true;
        }
    }
}
