//! Messages the outbox could not take (the disk is full), held in memory,
//! in order, until it can (docs/architecture.md §7, "A full disk").
//!
//! An event is durable once the outbox has it. When SQLite cannot write
//! (`database or disk is full`), the message waits here instead of being
//! lost, and every later message queues behind it so that the order on the
//! broker stays the order of the events. Room is made before anything is
//! lost: the oldest snapshots first (a callback the service installs, since
//! the snapshot store is not this stage's), then the event history that is
//! already delivered. The queue is bounded (`mqtt.unstored_capacity`);
//! when it is full, the oldest *description* goes first, then the oldest
//! message of any kind: a description is one of many similar ones and the
//! next scene change makes another, while a rule transition is a state a
//! consumer acts on and an answer is a reply someone waits for.
//!
//! Logged as a state, never per message: one WARN when writing starts
//! failing, one INFO with the counts when it works again (a write that
//! succeeds without room being made for it, with nothing waiting).

use std::collections::VecDeque;
use std::sync::Arc;

use super::outbox::{Channel, Outbox, Pending};
use crate::event::{Event, EventKind};

/// Frees some disk space outside the outbox (the oldest snapshot); returns
/// the bytes freed, 0 when it has nothing left to free.
pub type MakeRoom = Arc<dyn Fn() -> u64 + Send + Sync>;

/// History rows deleted at a time to make room.
const HISTORY_BATCH: u64 = 200;

/// A message waiting for the outbox.
struct Waiting {
    message: Pending,
    event: Option<Event>,
}

impl Waiting {
    fn is_description(&self) -> bool {
        self.message.channel == Channel::Event
            && self
                .event
                .as_ref()
                .is_some_and(|e| e.kind == EventKind::Description)
    }
}

/// Counters of one spell of failed writes, for its closing log line.
#[derive(Default)]
struct Spell {
    snapshots_removed: u64,
    bytes_freed: u64,
    history_removed: u64,
    dropped: u64,
    peak: usize,
    told_full: bool,
}

/// The in-memory queue in front of the outbox.
pub struct Unstored {
    queue: VecDeque<Waiting>,
    capacity: usize,
    /// The longest the queue has been since start.
    peak: usize,
    /// Messages dropped from a full queue since start.
    dropped: u64,
    /// Set while writes fail.
    spell: Option<Spell>,
}

/// What [`Unstored::store`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Stored {
    /// Old messages the outbox dropped to stay within its capacity.
    pub outbox_dropped: u64,
    /// Whether messages still wait in memory.
    pub waiting: bool,
}

impl Unstored {
    /// An empty queue of at most `capacity` messages.
    pub fn new(capacity: usize) -> Unstored {
        Unstored {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            peak: 0,
            dropped: 0,
            spell: None,
        }
    }

    /// Changes the bound (on reload).
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
    }

    /// Messages waiting now.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// The longest the queue has been since start.
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// Messages dropped from a full queue since start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Writes `message` to the outbox, behind whatever waits already; when
    /// the outbox cannot take it, it waits here. Blocking (SQLite).
    pub fn store(
        &mut self,
        outbox: &mut Outbox,
        room: Option<&MakeRoom>,
        message: Pending,
        event: Option<Event>,
    ) -> Stored {
        self.enqueue(Waiting { message, event });
        self.flush(outbox, room)
    }

    /// Writes what waits to the outbox, in order, making room when a write
    /// fails; stops at the first message that still cannot be written.
    pub fn flush(&mut self, outbox: &mut Outbox, room: Option<&MakeRoom>) -> Stored {
        let mut stored = Stored::default();
        // Acknowledged rows whose DELETE failed go first: they free pages.
        let _ = outbox.retry_deletes();
        // Under steady pressure (snapshots fill what was freed) every
        // write needs room made first: that is still the same spell.
        let mut made_room = false;
        while let Some(next) = self.queue.front() {
            match outbox.push(&next.message, next.event.as_ref()) {
                Ok(dropped) => {
                    stored.outbox_dropped += dropped;
                    self.queue.pop_front();
                }
                Err(e) => {
                    self.begin_spell(&e.to_string());
                    if !self.make_room(outbox, room) {
                        break;
                    }
                    made_room = true;
                }
            }
        }
        if self.queue.is_empty() && !made_room {
            self.end_spell();
        }
        stored.waiting = !self.queue.is_empty();
        stored
    }

    /// Messages that could not be stored before a stop: logged as lost.
    pub fn abandon(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        let cameras: std::collections::BTreeSet<&str> = self
            .queue
            .iter()
            .map(|w| w.message.camera.as_str())
            .collect();
        tracing::error!(
            lost = self.queue.len(),
            cameras = ?cameras,
            "stopping while the outbox still cannot be written (disk full?): these messages are lost"
        );
        self.queue.clear();
    }

    fn enqueue(&mut self, waiting: Waiting) {
        if self.queue.len() >= self.capacity {
            let victim = self
                .queue
                .iter()
                .position(Waiting::is_description)
                .unwrap_or(0);
            self.queue.remove(victim);
            self.dropped += 1;
            if let Some(spell) = &mut self.spell {
                spell.dropped += 1;
                if !std::mem::replace(&mut spell.told_full, true) {
                    tracing::warn!(
                        capacity = self.capacity,
                        "the in-memory queue in front of the outbox is full (mqtt.unstored_capacity): dropping the oldest descriptions first, then the oldest messages"
                    );
                }
            }
        }
        self.queue.push_back(waiting);
        self.peak = self.peak.max(self.queue.len());
        if let Some(spell) = &mut self.spell {
            spell.peak = spell.peak.max(self.queue.len());
        }
    }

    fn begin_spell(&mut self, reason: &str) {
        if self.spell.is_some() {
            return;
        }
        self.spell = Some(Spell {
            peak: self.queue.len(),
            ..Spell::default()
        });
        tracing::warn!(
            capacity = self.capacity,
            "cannot write to the outbox ({reason}): events and answers wait in memory (at most mqtt.unstored_capacity) and are retried every second; making room: the oldest snapshots first, then delivered event history"
        );
    }

    fn end_spell(&mut self) {
        let Some(spell) = self.spell.take() else {
            return;
        };
        tracing::info!(
            peak = spell.peak,
            dropped = spell.dropped,
            snapshots_removed = spell.snapshots_removed,
            freed_bytes = spell.bytes_freed,
            history_removed = spell.history_removed,
            "the outbox can be written again; every message that waited in memory is stored"
        );
    }

    /// Frees space: one snapshot, else a batch of delivered history.
    /// Returns whether anything was freed (worth trying the write again).
    fn make_room(&mut self, outbox: &mut Outbox, room: Option<&MakeRoom>) -> bool {
        let spell = self.spell.get_or_insert_with(Spell::default);
        if let Some(room) = room {
            let freed = room();
            if freed > 0 {
                spell.snapshots_removed += 1;
                spell.bytes_freed += freed;
                return true;
            }
        }
        match outbox.trim_history(HISTORY_BATCH) {
            Ok(removed) if removed > 0 => {
                spell.history_removed += removed;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn message(n: usize, kind: EventKind) -> (Pending, Option<Event>) {
        let event = Event::new("a", kind, format!("e{n}"), (Duration::ZERO, Duration::ZERO));
        let pending = Pending {
            id: 0,
            camera: "a".into(),
            channel: Channel::Event,
            response_topic: None,
            correlation: None,
            payload: format!("{{\"n\":{n}}}"),
        };
        (pending, Some(event))
    }

    #[test]
    fn a_full_database_keeps_messages_in_order_and_stores_them_later() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path(), 10_000, 10_000).unwrap();
        let mut unstored = Unstored::new(100);
        // SQLite's own limit on the file's pages stands in for a full
        // disk: the database cannot grow past it.
        outbox.set_page_limit_for_tests(Some(8));
        let mut waiting = 0;
        for n in 0..40 {
            let (mut m, e) = message(n, EventKind::Description);
            m.payload = format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(2000));
            if unstored.store(&mut outbox, None, m, e).waiting {
                waiting += 1;
            }
        }
        assert!(waiting > 0, "the page limit never stopped a write");
        assert!(unstored.len() > 0 && unstored.peak() >= unstored.len());
        // Space comes back: every waiting message is stored, in order.
        outbox.set_page_limit_for_tests(None);
        assert!(!unstored.flush(&mut outbox, None).waiting);
        let rows = outbox.after(0, 100).unwrap();
        assert_eq!(rows.len(), 40);
        let numbers: Vec<usize> = rows
            .iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(&r.payload).unwrap()["n"]
                    .as_u64()
                    .unwrap() as usize
            })
            .collect();
        assert_eq!(numbers, (0..40).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_queue_drops_the_oldest_description_first() {
        let mut unstored = Unstored::new(3);
        for (n, kind) in [
            (0, EventKind::RuleOn),
            (1, EventKind::Description),
            (2, EventKind::Answer),
            (3, EventKind::Description),
        ] {
            let (m, e) = message(n, kind);
            unstored.enqueue(Waiting {
                message: m,
                event: e,
            });
        }
        let left: Vec<String> = unstored
            .queue
            .iter()
            .map(|w| w.event.as_ref().unwrap().text.clone())
            .collect();
        assert_eq!(left, ["e0", "e2", "e3"]);
        assert_eq!(unstored.dropped(), 1);
    }

    #[test]
    fn history_already_delivered_makes_room_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut outbox = Outbox::open(dir.path(), 10_000, 10_000).unwrap();
        let mut unstored = Unstored::new(100);
        for n in 0..5 {
            let (m, e) = message(n, EventKind::Description);
            unstored.store(&mut outbox, None, m, e);
        }
        let ids: Vec<i64> = outbox.after(0, 10).unwrap().iter().map(|r| r.id).collect();
        outbox.delete(&ids).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let (m, e) = message(5, EventKind::Description);
        unstored.store(&mut outbox, None, m, e);
        // History of delivered events goes; the pending one's stays.
        assert_eq!(outbox.trim_history(100).unwrap(), 5);
        assert_eq!(outbox.trim_history(100).unwrap(), 0);
    }
}
