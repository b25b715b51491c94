//! The model worker pool: dedicated OS threads that take model work from a
//! priority queue and from the cameras.
//!
//! Model calls (vision encoding, prefill, generation) are CPU- or GPU-bound
//! and take from milliseconds to seconds, so they never run on the async
//! runtime: they run here, on named threads, one job at a time per thread.
//! One pool serves all cameras for the daemon's whole life; a reload that
//! changes `[workers]` resizes it in place ([`WorkerPool::resize`]), so no
//! handle to it ever goes stale.
//!
//! Work comes in three classes (docs/architecture.md §2): answers to questions first,
//! then proactive responses, then encoding. Answers and proactive jobs are
//! queued here ([`WorkerPool::submit`]), bounded, and never dropped: a full
//! queue refuses the new job and the caller decides. Encoding work is not
//! queued here at all: each camera is a [`Lane`] that owns its frames
//! (its own drop-oldest queue, its own drop count), and a free worker asks
//! the lanes in turn, round-robin, for their next job. So a fast camera
//! cannot push a slow one's frames out, and each camera's frames wait in
//! one place only. So that questions cannot starve the cameras, a lane goes
//! next after every [`ENCODE_EVERY`] higher-priority jobs when one has work.
//!
//! A lane's producer (a capture thread) calls [`Waker::wake`] after giving
//! the lane a frame; workers otherwise sleep, waking every [`IDLE_BEAT`] to
//! beat their heartbeat. A worker installs its heartbeat on its thread
//! (`health::Beat::install`), so model code beats it per model call.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::health::Heartbeats;
use crate::settings::Problems;

/// After this many answer/proactive jobs in a row, a lane with encoding
/// work goes next.
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
    /// Jobs that may wait per priority class (answers, proactive). Frames
    /// wait in their camera's own queue (`cameras.<name>.queue_capacity`).
    /// Default: 16.
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

/// Priority class of a queued job, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// An answer somebody is waiting for.
    Answer,
    /// A proactive description or a watch-rule check.
    Proactive,
}

/// A unit of model work.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// A source of encoding work: one camera. Workers ask each lane in turn.
pub trait Lane: Send + Sync {
    /// The lane's name (the camera's), for logs.
    fn name(&self) -> &str;
    /// The next job, if the lane has work now and none of its jobs is
    /// running (a camera's frames are analysed one at a time, in order).
    fn take(&self) -> Option<Job>;
    /// Work waiting now (frames), for stats.
    fn pending(&self) -> usize;
}

/// Why a job was not queued.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The class's queue is full.
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
    /// Work waiting: answers, proactive jobs, frames in every lane.
    pub queued: [usize; 3],
    /// Jobs run to completion.
    pub completed: u64,
    /// Jobs that panicked (the worker survives them).
    pub panicked: u64,
}

/// The running pool. Dropping it without [`WorkerPool::shutdown`] detaches
/// the threads, which finish the queued jobs and exit.
pub struct WorkerPool {
    shared: Arc<Shared>,
    heartbeats: Heartbeats,
    threads: Vec<JoinHandle<()>>,
    /// Worker threads wanted; `threads` may hold more, retiring.
    target: usize,
    next_index: usize,
}

struct Shared {
    // A std mutex: held only to push or pop a job, never while one runs.
    queues: Mutex<Queues>,
    work: Condvar,
    completed: AtomicU64,
    panicked: AtomicU64,
}

#[derive(Default)]
struct Queues {
    capacity: usize,
    answer: VecDeque<Job>,
    proactive: VecDeque<Job>,
    lanes: Vec<Arc<dyn Lane>>,
    /// The lane asked first next time (round-robin).
    cursor: usize,
    /// Higher-priority jobs taken since the last lane job.
    streak: u32,
    /// Workers asked to exit (the pool shrank); the next idle ones do.
    retire: usize,
    /// Jobs running now.
    running: usize,
    closed: bool,
}

impl Queues {
    /// True when nothing waits and nothing runs.
    fn idle(&self) -> bool {
        self.running == 0
            && self.answer.is_empty()
            && self.proactive.is_empty()
            && self.lanes.iter().all(|l| l.pending() == 0)
    }

    fn next(&mut self) -> Option<Job> {
        if self.streak >= ENCODE_EVERY {
            if let Some(job) = self.next_lane_job() {
                self.streak = 0;
                return Some(job);
            }
        }
        if let Some(job) = self
            .answer
            .pop_front()
            .or_else(|| self.proactive.pop_front())
        {
            self.streak += 1;
            return Some(job);
        }
        self.streak = 0;
        self.next_lane_job()
    }

    /// The next lane job, asking each lane once, starting after the lane
    /// served last.
    fn next_lane_job(&mut self) -> Option<Job> {
        let n = self.lanes.len();
        for i in 0..n {
            let at = (self.cursor + i) % n;
            if let Some(job) = self.lanes[at].take() {
                self.cursor = (at + 1) % n;
                return Some(job);
            }
        }
        None
    }
}

impl WorkerPool {
    fn start(config: &WorkersConfig, heartbeats: &Heartbeats) -> Result<WorkerPool, WorkerError> {
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues {
                capacity: config.queue_capacity,
                ..Queues::default()
            }),
            work: Condvar::new(),
            completed: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
        });
        let mut pool = WorkerPool {
            shared,
            heartbeats: heartbeats.clone(),
            threads: Vec::new(),
            target: 0,
            next_index: 0,
        };
        if let Err(e) = pool.resize(config) {
            pool.close();
            return Err(e);
        }
        Ok(pool)
    }

    /// Applies a changed `[workers]` table in place: more threads are
    /// started, surplus ones exit once idle, queued jobs and lanes stay.
    pub fn resize(&mut self, config: &WorkersConfig) -> Result<(), WorkerError> {
        self.threads.retain(|t| !t.is_finished());
        let mut q = self.shared.lock();
        q.capacity = config.queue_capacity;
        let mut wanted = config.threads;
        if wanted < self.target {
            q.retire += self.target - wanted;
        } else {
            // Threads still asked to retire simply stay.
            let cancel = q.retire.min(wanted - self.target);
            q.retire -= cancel;
            wanted -= cancel;
        }
        drop(q);
        self.shared.work.notify_all();
        while self.target < wanted {
            self.spawn()?;
        }
        self.target = config.threads;
        Ok(())
    }

    fn spawn(&mut self) -> Result<(), WorkerError> {
        let i = self.next_index;
        let shared = self.shared.clone();
        let beat = self.heartbeats.register(format!("model worker {i}"));
        let thread = std::thread::Builder::new()
            .name(format!("glimpse-worker-{i}"))
            .spawn(move || {
                let _installed = beat.install();
                while let Some(job) = shared.wait_for_job(|| beat.beat()) {
                    beat.beat();
                    if catch_unwind(AssertUnwindSafe(job)).is_err() {
                        shared.panicked.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(worker = i, "a model job panicked; the worker goes on");
                    }
                    shared.completed.fetch_add(1, Ordering::Relaxed);
                    shared.lock().running -= 1;
                    beat.beat();
                }
            })
            .map_err(WorkerError::Spawn)?;
        self.threads.push(thread);
        self.next_index += 1;
        self.target += 1;
        Ok(())
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

    /// Adds a lane; workers ask it for encoding work from now on.
    pub fn add_lane(&self, lane: Arc<dyn Lane>) {
        self.shared.lock().lanes.push(lane);
        self.shared.work.notify_all();
    }

    /// Removes the lane called `name`; a job of it already running goes on.
    pub fn remove_lane(&self, name: &str) {
        self.shared.lock().lanes.retain(|l| l.name() != name);
    }

    /// What a lane's producer calls after giving the lane work.
    pub fn waker(&self) -> Waker {
        Waker {
            shared: Arc::downgrade(&self.shared),
        }
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

/// Wakes a worker when a lane has new work. Weak: a producer that outlives
/// the pool (a capture thread finishing late) keeps nothing alive.
#[derive(Clone)]
pub struct Waker {
    shared: Weak<Shared>,
}

impl Waker {
    /// Wakes one idle worker, if any.
    pub fn wake(&self) {
        if let Some(shared) = self.shared.upgrade() {
            // Taking the lock first closes the gap between a worker finding
            // every lane empty and its wait: the notification cannot fall
            // into it and be lost.
            drop(shared.lock());
            shared.work.notify_one();
        }
    }
}

impl WorkerPool {
    /// Current counters.
    pub fn stats(&self) -> WorkerStats {
        let q = self.shared.lock();
        WorkerStats {
            queued: [
                q.answer.len(),
                q.proactive.len(),
                q.lanes.iter().map(|l| l.pending()).sum(),
            ],
            completed: self.shared.completed.load(Ordering::Relaxed),
            panicked: self.shared.panicked.load(Ordering::Relaxed),
        }
    }

    /// Number of worker threads wanted (the config's).
    pub fn threads(&self) -> usize {
        self.target
    }

    fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
    }

    /// Lets the workers finish the queued jobs, the lanes' remaining work
    /// and the jobs those queue in turn (a frame's proactive response),
    /// then refuses new jobs and waits for the threads, all until
    /// `timeout`. Returns how many threads were still busy then (left to
    /// die with the process). Blocks: call it off the runtime.
    pub fn shutdown(mut self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline && !self.shared.lock().idle() {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.close();
        // Idle workers see the close at once; a moment for them even when
        // the timeout went to a stuck job.
        let deadline = deadline.max(Instant::now() + Duration::from_millis(100));
        while Instant::now() < deadline && self.threads.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let (done, stuck): (Vec<_>, Vec<_>) = self.threads.drain(..).partition(|t| t.is_finished());
        for thread in done {
            // The job panics are caught inside the thread, so join cannot fail.
            let _ = thread.join();
        }
        if !stuck.is_empty() {
            ABANDONED.store(true, Ordering::Release);
        }
        stuck.len()
    }
}

/// Set once a shutdown left a worker in a model call.
static ABANDONED: AtomicBool = AtomicBool::new(false);

/// True when a shutdown left a worker in the middle of a model call. The
/// process should then end without running the C++ runtimes' exit handlers
/// (ONNX Runtime tears its environment down in them): the abandoned call
/// would fail and report backend errors after glimpse said it stopped.
pub fn abandoned() -> bool {
    ABANDONED.load(Ordering::Acquire)
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
        let capacity = q.capacity;
        let queue = match priority {
            Priority::Answer => &mut q.answer,
            Priority::Proactive => &mut q.proactive,
        };
        if queue.len() >= capacity {
            return Err(WorkerError::Full(priority));
        }
        queue.push_back(job);
        drop(q);
        self.work.notify_one();
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Queues> {
        // The queues stay valid whatever panicked while the lock was held.
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until a job is ready (`None` once closed and drained, or when
    /// this worker is to retire), calling `idle` every [`IDLE_BEAT`]
    /// meanwhile.
    fn wait_for_job(&self, idle: impl Fn()) -> Option<Job> {
        let mut q = self.lock();
        loop {
            if q.retire > 0 {
                q.retire -= 1;
                return None;
            }
            if let Some(job) = q.next() {
                q.running += 1;
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
    use std::sync::atomic::AtomicBool;
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
    /// that the queues can be filled in a known state.
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

    type Order = Arc<Mutex<Vec<String>>>;

    fn record(order: &Order, label: String) -> Job {
        let order = order.clone();
        Box::new(move || order.lock().unwrap().push(label))
    }

    /// A lane of labelled jobs, one running at a time, as a camera is.
    struct TestLane {
        name: String,
        items: Mutex<VecDeque<String>>,
        busy: Arc<AtomicBool>,
        order: Order,
    }

    impl TestLane {
        fn new(name: &str, items: usize, order: &Order) -> Arc<TestLane> {
            Arc::new(TestLane {
                name: name.to_owned(),
                items: Mutex::new((0..items).map(|i| format!("{name}{i}")).collect()),
                busy: Arc::new(AtomicBool::new(false)),
                order: order.clone(),
            })
        }
    }

    impl Lane for TestLane {
        fn name(&self) -> &str {
            &self.name
        }
        fn take(&self) -> Option<Job> {
            if self.busy.load(Ordering::SeqCst) {
                return None;
            }
            let label = self.items.lock().unwrap().pop_front()?;
            self.busy.store(true, Ordering::SeqCst);
            let (order, busy) = (self.order.clone(), self.busy.clone());
            Some(Box::new(move || {
                order.lock().unwrap().push(label);
                busy.store(false, Ordering::SeqCst);
            }))
        }
        fn pending(&self) -> usize {
            self.items.lock().unwrap().len()
        }
    }

    #[test]
    fn answers_before_proactive_before_lanes_and_lanes_never_starve() {
        let (pool, _beats) = pool(1, 64);
        let release = block(&pool);
        let order = Order::default();
        for i in 0..6 {
            pool.submit(Priority::Proactive, record(&order, format!("p{i}")))
                .unwrap();
        }
        for i in 0..6 {
            pool.submit(Priority::Answer, record(&order, format!("a{i}")))
                .unwrap();
        }
        pool.add_lane(TestLane::new("e", 3, &order));
        drop(release);
        assert_eq!(pool.shutdown(Duration::from_secs(5)), 0);
        let order = order.lock().unwrap().join(" ");
        // The blocking job counted as the first answer of the streak.
        assert_eq!(order, "a0 a1 a2 e0 a3 a4 a5 p0 e1 p1 p2 p3 p4 e2 p5");
    }

    #[test]
    fn lanes_take_turns_whatever_their_backlog() {
        let (pool, _beats) = pool(1, 4);
        let release = block(&pool);
        let order = Order::default();
        pool.add_lane(TestLane::new("fast", 6, &order));
        pool.add_lane(TestLane::new("slow", 2, &order));
        drop(release);
        assert_eq!(pool.shutdown(Duration::from_secs(5)), 0);
        assert_eq!(
            order.lock().unwrap().join(" "),
            "fast0 slow0 fast1 slow1 fast2 fast3 fast4 fast5"
        );
    }

    #[test]
    fn a_lane_runs_one_job_at_a_time_even_with_many_workers() {
        let (pool, _beats) = pool(4, 4);
        let order = Order::default();
        let lane = TestLane::new("cam", 50, &order);
        let overlap = Arc::new(AtomicBool::new(false));
        // Wrap the lane's jobs to detect two running at once.
        struct Checked(Arc<TestLane>, Arc<AtomicBool>, Arc<AtomicU64>);
        impl Lane for Checked {
            fn name(&self) -> &str {
                "cam"
            }
            fn take(&self) -> Option<Job> {
                let job = self.0.take()?;
                let (overlap, running) = (self.1.clone(), self.2.clone());
                Some(Box::new(move || {
                    if running.fetch_add(1, Ordering::SeqCst) > 0 {
                        overlap.store(true, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                    running.fetch_sub(1, Ordering::SeqCst);
                    job();
                }))
            }
            fn pending(&self) -> usize {
                self.0.pending()
            }
        }
        let checked = Arc::new(Checked(lane, overlap.clone(), Arc::default()));
        pool.add_lane(checked);
        pool.waker().wake();
        assert_eq!(pool.shutdown(Duration::from_secs(10)), 0);
        assert_eq!(order.lock().unwrap().len(), 50, "every job ran");
        assert!(!overlap.load(Ordering::SeqCst));
    }

    #[test]
    fn full_answer_queue_refuses_and_never_drops() {
        let (pool, _beats) = pool(1, 2);
        let release = block(&pool);
        let order = Order::default();
        pool.submit(Priority::Answer, record(&order, "a0".into()))
            .unwrap();
        pool.submit(Priority::Answer, record(&order, "a1".into()))
            .unwrap();
        let refused = pool.submit(Priority::Answer, record(&order, "a2".into()));
        assert!(matches!(refused, Err(WorkerError::Full(Priority::Answer))));
        drop(release);
        pool.shutdown(Duration::from_secs(5));
        assert_eq!(order.lock().unwrap().join(" "), "a0 a1");
    }

    #[test]
    fn shutdown_finishes_the_jobs_that_queued_jobs_queue() {
        let (pool, _beats) = pool(1, 4);
        let order = Order::default();
        let submitter = pool.submitter();
        let inner = order.clone();
        pool.submit(
            Priority::Answer,
            Box::new(move || {
                std::thread::sleep(Duration::from_millis(50));
                submitter
                    .submit(Priority::Proactive, record(&inner, "follow-up".into()))
                    .unwrap();
            }),
        )
        .unwrap();
        assert_eq!(pool.shutdown(Duration::from_secs(5)), 0);
        assert_eq!(order.lock().unwrap().join(" "), "follow-up");
    }

    #[test]
    fn resize_adds_and_retires_threads_and_keeps_the_queues() {
        let (mut pool, beats) = pool(1, 4);
        let order = Order::default();
        pool.resize(&WorkersConfig {
            threads: 3,
            queue_capacity: 8,
        })
        .unwrap();
        assert_eq!(pool.threads(), 3);
        assert_eq!(beats.len(), 3);
        pool.resize(&WorkersConfig {
            threads: 1,
            queue_capacity: 8,
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while beats.len() != 1 {
            assert!(Instant::now() < deadline, "two workers retired");
            std::thread::sleep(Duration::from_millis(10));
        }
        // The submitter taken before the resizes still reaches the pool.
        let submitter = pool.submitter();
        for i in 0..8 {
            submitter
                .submit(Priority::Proactive, record(&order, format!("p{i}")))
                .unwrap();
        }
        assert_eq!(pool.shutdown(Duration::from_secs(5)), 0);
        assert_eq!(order.lock().unwrap().len(), 8);
    }

    #[test]
    fn a_panicking_job_does_not_kill_the_worker() {
        let (pool, _beats) = pool(1, 4);
        pool.submit(Priority::Proactive, Box::new(|| panic!("bad frame")))
            .unwrap();
        let (tx, rx) = mpsc::channel();
        pool.submit(Priority::Proactive, Box::new(move || tx.send(7).unwrap()))
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
    fn a_job_that_reports_progress_is_not_stalled() {
        let (pool, beats) = pool(1, 4);
        let (done_tx, done_rx) = mpsc::channel();
        pool.submit(
            Priority::Proactive,
            Box::new(move || {
                // A long job of many model calls, each one beating.
                for _ in 0..20 {
                    std::thread::sleep(Duration::from_millis(50));
                    crate::health::progress();
                }
                done_tx.send(()).unwrap();
            }),
        )
        .unwrap();
        for _ in 0..8 {
            std::thread::sleep(Duration::from_millis(100));
            assert!(beats.stalled(Duration::from_millis(300)).is_empty());
        }
        done_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        pool.shutdown(Duration::from_secs(5));
    }

    #[test]
    fn closed_pool_refuses_jobs() {
        let (pool, _beats) = pool(1, 4);
        pool.close();
        assert!(matches!(
            pool.submit(Priority::Answer, Box::new(|| ())),
            Err(WorkerError::Closed)
        ));
    }
}
