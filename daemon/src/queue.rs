//! A bounded channel that drops the *oldest* item when full.
//!
//! Between capture and the pipeline a live stream must never back up: when
//! the consumer is slow, the newest frame is worth more than the oldest one.
//! So `send` never blocks; when the queue is full it evicts the oldest item
//! and counts it. The producer is a plain OS thread (GStreamer, V4L2, the
//! synthetic source); the consumer is a model worker taking the next frame
//! ([`Receiver::try_recv`]), woken by the [`Receiver::on_arrival`] callback,
//! or an async task ([`Receiver::recv`]). The drop counter is shared so
//! that the stats can read it from anywhere.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Creates a queue holding at most `capacity` items (at least 1).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(capacity.max(1)),
            senders: 1,
            receiver_alive: true,
        }),
        capacity: capacity.max(1),
        arrived: Notify::new(),
        on_arrival: Mutex::new(None),
        dropped: Arc::new(AtomicU64::new(0)),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    // A std mutex: it is held for a push or a pop, never across an await.
    state: Mutex<State<T>>,
    capacity: usize,
    arrived: Notify,
    // Called after each item is queued; a std mutex, held only to clone it.
    on_arrival: Mutex<Option<Arrival>>,
    dropped: Arc<AtomicU64>,
}

/// A callback run on the producer's thread after each item is queued.
pub type Arrival = Arc<dyn Fn() + Send + Sync>;

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    receiver_alive: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock leaves the deque consistent
        // (push/pop are atomic from our view), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The producing end; cloneable, never blocks.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// What happened to a sent item.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// Queued with room to spare.
    Queued,
    /// Queued, and the oldest item was dropped to make room.
    DroppedOldest,
    /// The receiver is gone; the item was discarded.
    Closed,
}

impl<T> Sender<T> {
    /// Queues `item`, evicting the oldest item if the queue is full.
    pub fn send(&self, item: T) -> Sent {
        let mut state = self.shared.lock();
        if !state.receiver_alive {
            return Sent::Closed;
        }
        let mut outcome = Sent::Queued;
        if state.items.len() >= self.shared.capacity {
            state.items.pop_front();
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            outcome = Sent::DroppedOldest;
        }
        state.items.push_back(item);
        drop(state);
        self.shared.arrived.notify_one();
        let on_arrival = self
            .shared
            .on_arrival
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(callback) = on_arrival {
            callback();
        }
        outcome
    }

    /// True once the receiver has been dropped: the producer can stop.
    pub fn is_closed(&self) -> bool {
        !self.shared.lock().receiver_alive
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.shared.lock().senders -= 1;
        // Wake the receiver so that it sees the end of the stream.
        self.shared.arrived.notify_one();
    }
}

/// The consuming end; one per queue.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next item, oldest first; `None` once every sender is gone and
    /// the queue is empty.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            {
                let mut state = self.shared.lock();
                if let Some(item) = state.items.pop_front() {
                    return Some(item);
                }
                if state.senders == 0 {
                    return None;
                }
            }
            // `notify_one` stores a permit when nobody waits, so an item
            // pushed between the unlock above and this await is not missed.
            self.shared.arrived.notified().await;
        }
    }

    /// The next item if one is queued now.
    pub fn try_recv(&mut self) -> Option<T> {
        self.shared.lock().items.pop_front()
    }

    /// Runs `callback` on the producer's thread after each item is queued
    /// from now on (it replaces the previous one).
    pub fn on_arrival(&self, callback: Arrival) {
        *self
            .shared
            .on_arrival
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(callback);
    }

    /// Items dropped so far because the queue was full.
    pub fn dropped(&self) -> Arc<AtomicU64> {
        self.shared.dropped.clone()
    }

    /// Items waiting now.
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    /// True when no item is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_alive = false;
        state.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slow_consumer_sees_the_newest_and_drops_are_counted() {
        let (tx, mut rx) = channel(3);
        for i in 0..10 {
            tx.send(i);
        }
        drop(tx);
        let mut seen = Vec::new();
        while let Some(i) = rx.recv().await {
            seen.push(i);
        }
        assert_eq!(seen, vec![7, 8, 9]);
        assert_eq!(rx.dropped().load(Ordering::Relaxed), 7);
        assert_eq!(seen.len() as u64 + rx.dropped().load(Ordering::Relaxed), 10);
    }

    #[tokio::test]
    async fn receiver_wakes_for_items_from_another_thread() {
        let (tx, mut rx) = channel(2);
        let producer = std::thread::spawn(move || {
            for i in 0..100 {
                tx.send(i);
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        });
        let mut last = None;
        let mut received = 0u64;
        while let Some(i) = rx.recv().await {
            assert!(last.is_none_or(|l| i > l), "order kept");
            last = Some(i);
            received += 1;
        }
        producer.join().unwrap();
        assert_eq!(last, Some(99), "the newest item always arrives");
        assert_eq!(received + rx.dropped().load(Ordering::Relaxed), 100);
    }

    #[test]
    fn sender_learns_the_receiver_is_gone() {
        let (tx, rx) = channel::<u8>(1);
        assert_eq!(tx.send(1), Sent::Queued);
        assert_eq!(tx.send(2), Sent::DroppedOldest);
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send(3), Sent::Closed);
    }
}
