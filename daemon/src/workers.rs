//! The model worker pool: dedicated OS threads with a priority queue.
//!
//! Model calls (vision encoding, prefill, generation) are CPU- or GPU-bound
//! and take from milliseconds to seconds, so they never run on the async
//! runtime: they run here, on named threads, one job at a time per thread.
//! One pool serves all cameras. Jobs come in three priority classes
//! (DESIGN §2): answers to questions first, then proactive responses, then
//! encoding. So that a stream of questions cannot starve the cameras, at
//! least one encoding job runs after every [`ENCODE_EVERY`] higher-priority
//! jobs when encoding work is waiting.
//!
//! Every class is bounded. Encoding jobs are frames: when their queue is
//! full the oldest is dropped and counted, like the capture queue. Answers
//! and proactive jobs are never dropped: a full queue refuses the new job
//! and the caller decides (wait, or tell the asker the daemon is busy).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::config::Problems;
use crate::health::Heartbeats;

/// After this many answer/proactive jobs in a row, a waiting encoding job
/// goes next.
pub const ENCODE_EVERY: u32 = 4;

/// How often an idle worker wakes up to beat its heartbeat.
const IDLE_BEAT: Duration = Duration::from_millis(500);

/// `[workers]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkersConfig {
    /// Model worker threads; each runs one model call at a time. On a
    /// 2-core CPU or a Jetson, 1 (the model uses its own intra-op threads).
    /// Default: 1.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Jobs that may wait per priority class (answers, proactive,
    /// encoding). Default: 16.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
}

fn default_threads() -> usize {
    1
}
fn default_queue_capacity() -> usize {
    16
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            threads: default_threads(),
            queue_capacity: default_queue_capacity(),
        }
    }
}

impl WorkersConfig {
    /// Checks every value of the table at `key`.
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        if !(1..=64).contains(&self.threads) {
            problems.push(
                format!("{key}.threads"),
                format!("must be between 1 and 64, got {}", self.threads),
            );
        }
        if !(1..=4096).contains(&self.queue_capacity) {
            problems.push(
                format!("{key}.queue_capacity"),
                format!("must be between 1 and 4096, got {}", self.queue_capacity),
            );
        }
    }

    /// Starts the pool's threads.
    pub fn build(&self, heartbeats: &Heartbeats) -> Result<WorkerPool, WorkerError> {
        WorkerPool::start(self, heartbeats)
    }
}

/// Priority class of a job, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// An answer somebody is waiting for.
    Answer,
    /// A proactive description or a watch-rule check.
    Proactive,
    /// Encoding a sampled frame.
    Encode,
}

/// A unit of model work.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why a job was not queued.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The class's queue is full (answers and proactive jobs only).
    #[error("the model workers are busy: {0:?} queue is full")]
    Full(Priority),
    /// The pool is shutting down.
    #[error("the model workers are shutting down")]
    Closed,
    /// A worker thread could not be started.
    #[error("cannot start model worker thread: {0}")]
    Spawn(std::io::Error),
}

/// Counters, for stats.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WorkerStats {
    /// Jobs waiting per class: answers, proactive, encoding.
    pub queued: [usize; 3],
    /// Jobs run to completion.
    pub completed: u64,
    /// Encoding jobs dropped because their queue was full.
    pub dropped: u64,
    /// Jobs that panicked (the worker survives them).
    pub panicked: u64,
}

/// The running pool. Dropping it without [`WorkerPool::shutdown`] detaches
/// the threads, which finish the queued jobs and exit.
pub struct WorkerPool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    // A std mutex: held only to push or pop a job, never while one runs.
    queues: Mutex<Queues>,
    work: Condvar,
    capacity: usize,
    completed: AtomicU64,
    panicked: AtomicU64,
}

#[derive(Default)]
struct Queues {
    answer: VecDeque<Job>,
    proactive: VecDeque<Job>,
    encode: VecDeque<Job>,
    /// Higher-priority jobs taken since the last encoding job.
    streak: u32,
    dropped: u64,
    closed: bool,
}

impl Queues {
    fn next(&mut self) -> Option<Job> {
        let encode_due = self.streak >= ENCODE_EVERY && !self.encode.is_empty();
        if !encode_due {
            if let Some(job) = self
                .answer
                .pop_front()
                .or_else(|| self.proactive.pop_front())
            {
                self.streak += 1;
                return Some(job);
            }
        }
        self.streak = 0;
        self.encode.pop_front()
    }
}

impl WorkerPool {
    fn start(config: &WorkersConfig, heartbeats: &Heartbeats) -> Result<WorkerPool, WorkerError> {
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues::default()),
            work: Condvar::new(),
            capacity: config.queue_capacity,
            completed: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
        });
        let mut pool = WorkerPool {
            shared,
            threads: Vec::new(),
        };
        for i in 0..config.threads {
            let shared = pool.shared.clone();
            let beat = heartbeats.register(format!("model worker {i}"));
            let thread = std::thread::Builder::new()
                .name(format!("glimpse-worker-{i}"))
                .spawn(move || {
                    while let Some(job) = shared.wait_for_job(|| beat.beat()) {
                        beat.beat();
                        if catch_unwind(AssertUnwindSafe(job)).is_err() {
                            shared.panicked.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(worker = i, "a model job panicked; the worker goes on");
                        }
                        shared.completed.fetch_add(1, Ordering::Relaxed);
                        beat.beat();
                    }
                })
                .map_err(WorkerError::Spawn);
            match thread {
                Ok(t) => pool.threads.push(t),
                Err(e) => {
                    pool.close();
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// A handle that queues jobs from anywhere (other jobs included).
    pub fn submitter(&self) -> Submitter {
        Submitter {
            shared: self.shared.clone(),
        }
    }

    /// Queues `job` in class `priority`.
    pub fn submit(&self, priority: Priority, job: Job) -> Result<(), WorkerError> {
        self.shared.submit(priority, job)
    }
}

/// A cloneable handle for queueing jobs on a [`WorkerPool`]; it does not
/// keep the workers alive.
#[derive(Clone)]
pub struct Submitter {
    shared: Arc<Shared>,
}

impl Submitter {
    /// Queues `job` in class `priority`, as [`WorkerPool::submit`].
    pub fn submit(&self, priority: Priority, job: Job) -> Result<(), WorkerError> {
        self.shared.submit(priority, job)
    }
}

impl WorkerPool {
    /// Current counters.
    pub fn stats(&self) -> WorkerStats {
        let q = self.shared.lock();
        WorkerStats {
            queued: [q.answer.len(), q.proactive.len(), q.encode.len()],
            completed: self.shared.completed.load(Ordering::Relaxed),
            dropped: q.dropped,
            panicked: self.shared.panicked.load(Ordering::Relaxed),
        }
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
    }

    /// Refuses new jobs, lets the workers finish the queued ones, and waits
    /// for them until `timeout`. Returns how many threads were still busy
    /// then (left to die with the process). Blocks: call it off the runtime.
    pub fn shutdown(mut self, timeout: Duration) -> usize {
        self.close();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && self.threads.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let (done, stuck): (Vec<_>, Vec<_>) = self.threads.drain(..).partition(|t| t.is_finished());
        for thread in done {
            // The job panics are caught inside the thread, so join cannot fail.
            let _ = thread.join();
        }
        stuck.len()
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn submit(&self, priority: Priority, job: Job) -> Result<(), WorkerError> {
        let mut q = self.lock();
        if q.closed {
            return Err(WorkerError::Closed);
        }
        let capacity = self.capacity;
        match priority {
            Priority::Answer if q.answer.len() >= capacity => {
                return Err(WorkerError::Full(priority))
            }
            Priority::Proactive if q.proactive.len() >= capacity => {
                return Err(WorkerError::Full(priority))
            }
            Priority::Answer => q.answer.push_back(job),
            Priority::Proactive => q.proactive.push_back(job),
            Priority::Encode => {
                if q.encode.len() >= capacity {
                    q.encode.pop_front();
                    q.dropped += 1;
                }
                q.encode.push_back(job);
            }
        }
        drop(q);
        self.work.notify_one();
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Queues> {
        // The queues stay valid whatever panicked while the lock was held.
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until a job is ready (`None` once closed and drained), calling
    /// `idle` every [`IDLE_BEAT`] meanwhile.
    fn wait_for_job(&self, idle: impl Fn()) -> Option<Job> {
        let mut q = self.lock();
        loop {
            if let Some(job) = q.next() {
                return Some(job);
            }
            if q.closed {
                return None;
            }
            q = self
                .work
                .wait_timeout(q, IDLE_BEAT)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
            idle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn pool(threads: usize, capacity: usize) -> (WorkerPool, Heartbeats) {
        let beats = Heartbeats::new();
        let config = WorkersConfig {
            threads,
            queue_capacity: capacity,
        };
        (config.build(&beats).unwrap(), beats)
    }

    /// Blocks the single worker until the returned sender is dropped, so
    /// that the queue can be filled in a known state.
    fn block(pool: &WorkerPool) -> mpsc::Sender<()> {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel();
        pool.submit(
            Priority::Answer,
            Box::new(move || {
                started_tx.send(()).unwrap();
                let _ = release_rx.recv();
            }),
        )
        .unwrap();
        started_rx.recv().unwrap();
        release_tx
    }

    fn record(order: &Arc<Mutex<Vec<String>>>, label: String) -> Job {
        let order = order.clone();
        Box::new(move || order.lock().unwrap().push(label))
    }

    #[test]
    fn answers_before_proactive_before_encoding_and_encoding_never_starves() {
        let (pool, _beats) = pool(1, 64);
        let release = block(&pool);
        let order = Arc::new(Mutex::new(Vec::new()));
        for i in 0..3 {
            pool.submit(Priority::Encode, record(&order, format!("e{i}")))
                .unwrap();
        }
        for i in 0..6 {
            pool.submit(Priority::Proactive, record(&order, format!("p{i}")))
                .unwrap();
        }
        for i in 0..6 {
            pool.submit(Priority::Answer, record(&order, format!("a{i}")))
                .unwrap();
        }
        drop(release);
        assert_eq!(pool.shutdown(Duration::from_secs(5)), 0);
        let order = order.lock().unwrap().join(" ");
        // The blocking job counted as the first answer of the streak.
        assert_eq!(order, "a0 a1 a2 e0 a3 a4 a5 p0 e1 p1 p2 p3 p4 e2 p5");
    }

    #[test]
    fn full_encode_queue_drops_oldest_and_full_answer_queue_refuses() {
        let (pool, _beats) = pool(1, 2);
        let release = block(&pool);
        let order = Arc::new(Mutex::new(Vec::new()));
        for i in 0..5 {
            pool.submit(Priority::Encode, record(&order, format!("e{i}")))
                .unwrap();
        }
        pool.submit(Priority::Answer, record(&order, "a0".into()))
            .unwrap();
        pool.submit(Priority::Answer, record(&order, "a1".into()))
            .unwrap();
        let refused = pool.submit(Priority::Answer, record(&order, "a2".into()));
        assert!(matches!(refused, Err(WorkerError::Full(Priority::Answer))));
        assert_eq!(pool.stats().dropped, 3);
        drop(release);
        pool.shutdown(Duration::from_secs(5));
        assert_eq!(order.lock().unwrap().join(" "), "a0 a1 e3 e4");
    }

    #[test]
    fn a_panicking_job_does_not_kill_the_worker() {
        let (pool, _beats) = pool(1, 4);
        pool.submit(Priority::Encode, Box::new(|| panic!("bad frame")))
            .unwrap();
        let (tx, rx) = mpsc::channel();
        pool.submit(Priority::Encode, Box::new(move || tx.send(7).unwrap()))
            .unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(7));
        assert_eq!(pool.stats().panicked, 1);
        pool.shutdown(Duration::from_secs(5));
    }

    #[test]
    fn shutdown_gives_up_on_a_stuck_worker_and_its_beat_goes_stale() {
        let (pool, beats) = pool(2, 4);
        let _release = block(&pool);
        std::thread::sleep(Duration::from_millis(IDLE_BEAT.as_millis() as u64 + 300));
        let stalls = beats.stalled(Duration::from_millis(IDLE_BEAT.as_millis() as u64 + 100));
        assert_eq!(
            stalls.len(),
            1,
            "only the blocked worker is stalled: {stalls:?}"
        );
        let started = Instant::now();
        assert_eq!(pool.shutdown(Duration::from_millis(200)), 1);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn closed_pool_refuses_jobs() {
        let (pool, _beats) = pool(1, 4);
        pool.close();
        assert!(matches!(
            pool.submit(Priority::Encode, Box::new(|| ())),
            Err(WorkerError::Closed)
        ));
    }
}
