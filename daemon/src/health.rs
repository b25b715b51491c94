//! Heartbeats: how the service knows the pipeline is making progress.
//!
//! Every long-lived stage (a camera task, a model worker thread) registers a
//! [`Beat`] and touches it whenever it makes progress or is idle-waiting. A
//! stage stuck inside a call (a hung inference, a deadlock) stops beating.
//! The service pings systemd's watchdog only while no beat is older than the
//! stall timeout, so a stalled pipeline gets restarted by systemd instead of
//! sitting there looking alive. Beats are atomics: beating costs nothing.
//!
//! A model worker installs its beat for its thread ([`Beat::install`]), so
//! that code deep inside a long job (one generated token, one watch rule)
//! can say "still making progress" with [`progress`] without knowing which
//! stage it runs in: a job of many model calls beats per call, not only
//! when it ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The registry of every live stage's heartbeat. Cheap to clone.
#[derive(Clone)]
pub struct Heartbeats {
    inner: Arc<Inner>,
}

struct Inner {
    origin: Instant,
    // A std mutex: registration and the periodic scan are short and rare.
    entries: Mutex<Vec<Entry>>,
    next_id: AtomicU64,
}

struct Entry {
    id: u64,
    name: String,
    last_ms: Arc<AtomicU64>,
}

/// One stage's heartbeat. Dropping it unregisters the stage, so a stage
/// that stopped on purpose never counts as stalled.
pub struct Beat {
    id: u64,
    last_ms: Arc<AtomicU64>,
    registry: Arc<Inner>,
}

/// A stage that has not beaten for too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// The stage's name, e.g. `camera front` or `worker 0`.
    pub stage: String,
    /// How long since its last beat.
    pub silent_for: Duration,
}

impl Default for Heartbeats {
    fn default() -> Self {
        Self::new()
    }
}

impl Heartbeats {
    /// An empty registry.
    pub fn new() -> Self {
        Heartbeats {
            inner: Arc::new(Inner {
                origin: Instant::now(),
                entries: Mutex::new(Vec::new()),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    /// Registers a stage; it counts as having just beaten.
    pub fn register(&self, name: impl Into<String>) -> Beat {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let last_ms = Arc::new(AtomicU64::new(self.inner.now_ms()));
        self.inner.lock().push(Entry {
            id,
            name: name.into(),
            last_ms: last_ms.clone(),
        });
        Beat {
            id,
            last_ms,
            registry: self.inner.clone(),
        }
    }

    /// Every stage silent for longer than `timeout`, most silent first.
    pub fn stalled(&self, timeout: Duration) -> Vec<Stall> {
        let now = self.inner.now_ms();
        let mut stalls: Vec<Stall> = self
            .inner
            .lock()
            .iter()
            .filter_map(|e| {
                let silent_for =
                    Duration::from_millis(now.saturating_sub(e.last_ms.load(Ordering::Relaxed)));
                (silent_for > timeout).then(|| Stall {
                    stage: e.name.clone(),
                    silent_for,
                })
            })
            .collect();
        stalls.sort_by_key(|s| std::cmp::Reverse(s.silent_for));
        stalls
    }

    /// How many stages are registered.
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    /// True when no stage is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        // The vector stays valid whatever panicked while it was held.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Beat {
    /// Records progress now.
    pub fn beat(&self) {
        self.last_ms
            .store(self.registry.now_ms(), Ordering::Relaxed);
    }
}

impl Beat {
    /// Makes [`progress`] on this thread beat this heartbeat, until the
    /// returned guard is dropped.
    pub fn install(&self) -> Installed {
        let clock = (self.last_ms.clone(), self.registry.clone());
        CURRENT.with(|c| *c.borrow_mut() = Some(clock));
        Installed(())
    }
}

/// Keeps a [`Beat`] installed on its thread; see [`Beat::install`].
pub struct Installed(());

impl Drop for Installed {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

thread_local! {
    // The beat of the stage that owns this thread, if it installed one.
    static CURRENT: std::cell::RefCell<Option<(Arc<AtomicU64>, Arc<Inner>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Records progress for the stage that owns the calling thread (a model
/// worker); does nothing on a thread without an installed beat. Cheap
/// enough to call per generated token.
pub fn progress() {
    CURRENT.with(|c| {
        if let Some((last_ms, registry)) = &*c.borrow() {
            last_ms.store(registry.now_ms(), Ordering::Relaxed);
        }
    });
}

impl Drop for Beat {
    fn drop(&mut self) {
        self.registry.lock().retain(|e| e.id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_stage_is_reported_and_a_dropped_one_forgotten() {
        let beats = Heartbeats::new();
        let busy = beats.register("worker 0");
        let quiet = beats.register("camera front");
        std::thread::sleep(Duration::from_millis(60));
        busy.beat();
        let stalls = beats.stalled(Duration::from_millis(30));
        assert_eq!(stalls.len(), 1);
        assert_eq!(stalls[0].stage, "camera front");
        assert!(stalls[0].silent_for >= Duration::from_millis(60));
        drop(quiet);
        assert!(beats.stalled(Duration::from_millis(30)).is_empty());
        assert_eq!(beats.len(), 1);
    }

    #[test]
    fn progress_beats_the_beat_installed_on_this_thread_only() {
        let beats = Heartbeats::new();
        let worker = beats.register("worker 0");
        std::thread::sleep(Duration::from_millis(60));
        progress(); // nothing installed yet: no effect
        assert_eq!(beats.stalled(Duration::from_millis(30)).len(), 1);
        let installed = worker.install();
        progress();
        assert!(beats.stalled(Duration::from_millis(30)).is_empty());
        std::thread::spawn(progress).join().unwrap();
        drop(installed);
        std::thread::sleep(Duration::from_millis(60));
        progress(); // uninstalled: no effect
        assert_eq!(beats.stalled(Duration::from_millis(30)).len(), 1);
    }
}
