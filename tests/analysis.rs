//! The model stages wired in the pipeline, on the test model and the
//! synthetic source: a static scene costs no encoder and no model call; a
//! moving one is encoded, its tokens dropped, and its changes described.

use std::path::Path;
use std::time::{Duration, Instant};

use glimpse::config::{self, Environment};
use glimpse::event::{EventKind, Produced};
use glimpse::health::Heartbeats;
use glimpse::pipeline::Pipeline;
use tokio::sync::mpsc;

fn config(state: &Path, shapes: u32, extra: &str) -> glimpse::config::Config {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/test-tiny");
    let text = format!(
        r#"
[service]
state_dir = {state:?}
[model]
path = {model:?}
threads = 1
[cameras.cam]
fps = 5
width = 64
height = 64
source = {{ kind = "synthetic", frame_rate = 10, shapes = {shapes} }}
{extra}
"#
    );
    config::parse(Path::new("test.toml"), &text, &Environment::default()).unwrap()
}

/// The pipeline for `config`, its events into `tx`.
async fn start(config: &config::Config, tx: mpsc::Sender<Produced>) -> Pipeline {
    Pipeline::build(
        &config.pipeline(),
        &Heartbeats::new(),
        tx,
        Default::default(),
    )
    .await
    .unwrap()
}

/// The next event, within 30 s.
async fn next_event(events: &mut mpsc::Receiver<Produced>) -> glimpse::event::Event {
    tokio::time::timeout(Duration::from_secs(30), events.recv())
        .await
        .expect("an event within 30 s")
        .unwrap()
        .event
}

async fn wait_for(
    pipeline: &Pipeline,
    what: &str,
    pred: impl Fn(&glimpse::pipeline::CameraStats) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = pipeline.stats();
        if pred(&stats[0]) {
            return;
        }
        assert!(Instant::now() < deadline, "no {what}: {stats:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_static_scene_costs_no_encoder_and_no_model_call() {
    let (tx, mut events) = mpsc::channel(16);
    let state = tempfile::tempdir().unwrap();
    let pipeline = start(&config(state.path(), 0, ""), tx).await;
    wait_for(&pipeline, "15 analysed frames", |s| s.analysed >= 15).await;
    let s = &pipeline.stats()[0];
    assert_eq!(
        s.encoded, 1,
        "only the first frame reaches the encoder: {s:?}"
    );
    assert_eq!(s.kept_tokens, 64, "the first frame whole, nothing after");
    assert_eq!(s.total_tokens, 64 * s.analysed);
    assert!(!s.changing);
    assert_eq!(s.events, 0);
    assert!(events.try_recv().is_err(), "no event for a static scene");
    pipeline.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moving_scene_is_encoded_dropped_and_described() {
    let (tx, mut events) = mpsc::channel(16);
    // Two small squares change a few tokens of 64: a trigger tuned for
    // small changes (the default fires when 40% change).
    let rules = "rules = [\"is there a red square ?\"]\n[cameras.cam.trigger]\ndrop_ratio_below = 0.95\nrearm_drop_ratio_above = 0.99\ncooldown_s = 0";
    let state = tempfile::tempdir().unwrap();
    let pipeline = start(&config(state.path(), 2, rules), tx).await;
    let event = next_event(&mut events).await;
    assert_eq!(event.camera, "cam");
    assert!(matches!(
        event.kind,
        EventKind::Description | EventKind::RuleOn | EventKind::RuleOff
    ));
    // The model saw the memory (the first frame whole, then only what
    // changed) and the canvas last.
    let kept = &event.evidence.kept_tokens;
    assert!(kept.len() >= 2, "memory and canvas: {kept:?}");
    assert_eq!(kept[0], 64, "the first frame, whole");
    assert!(
        kept[1..kept.len() - 1].iter().all(|&k| k < 64),
        "then only changed tokens: {kept:?}"
    );
    assert!(event
        .evidence
        .frame_times_s
        .windows(2)
        .all(|w| w[0] <= w[1]));
    wait_for(&pipeline, "10 encoded frames", |s| s.encoded >= 10).await;
    let s = &pipeline.stats()[0];
    assert!(
        s.kept_tokens < s.total_tokens / 2,
        "most tokens dropped: {s:?}"
    );
    pipeline.shutdown().await;
}

/// Issue 18: a description or rule answer the model is less sure of than
/// `min_confidence` is held back (counted, not sent); what is sent carries
/// its confidence, at or above the threshold. At 1 (the most a probability
/// can be) the random-weight test model is never sure enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsure_answers_are_held_back_and_counted() {
    let (tx, mut events) = mpsc::channel(64);
    let trigger = "rules = [\"is there a red square ?\"]\n[cameras.cam.trigger]\ndrop_ratio_below = 0.95\nrearm_drop_ratio_above = 0.99\ncooldown_s = 0\nmin_confidence";
    let state = tempfile::tempdir().unwrap();
    let run = |threshold: &str, state: &Path| config(state, 2, &format!("{trigger} = {threshold}"));
    // Threshold 0: every answer goes out, each with its confidence.
    let pipeline = start(&run("0.0", state.path()), tx).await;
    let event = next_event(&mut events).await;
    let c = event
        .confidence
        .expect("a spoken event carries its confidence");
    assert!(c > 0.0 && c <= 1.0, "{event:?}");
    assert_eq!(pipeline.stats()[0].held_back, 0);
    pipeline.shutdown().await;

    let (tx, mut events) = mpsc::channel(64);
    let state = tempfile::tempdir().unwrap();
    let pipeline = start(&run("1.0", state.path()), tx).await;
    wait_for(&pipeline, "3 answers held back", |s| s.held_back >= 3).await;
    pipeline.shutdown().await;
    while let Ok(Produced { event, .. }) = events.try_recv() {
        assert!(
            event.confidence.is_some_and(|c| c >= 1.0),
            "sent though unsure: {event:?}"
        );
    }
}

/// Issue 15: a reload that changes the model reaches the running camera:
/// its next frame is encoded by the new model, kept whole (a fresh
/// reference), and that is no scene change to speak up about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_model_takes_over_the_running_camera_without_a_false_event() {
    let (tx, mut events) = mpsc::channel(16);
    let state = tempfile::tempdir().unwrap();
    let mut pipeline = start(&config(state.path(), 0, ""), tx).await;
    wait_for(&pipeline, "5 analysed frames", |s| s.analysed >= 5).await;
    assert_eq!(pipeline.stats()[0].encoded, 1);

    let copy = state.path().join("model-copy");
    crate::harness::copy_model(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/test-tiny"),
        &copy,
    );
    let mut new = config(state.path(), 0, "");
    new.model.as_mut().unwrap().path = copy.clone();
    let changes = pipeline.reload(&new.pipeline()).await.unwrap();
    assert!(
        changes.model_reloaded && changes.restarted.is_empty(),
        "{changes:?}"
    );
    let analysed = pipeline.stats()[0].analysed;
    wait_for(&pipeline, "5 more analysed frames", |s| {
        s.analysed >= analysed + 5
    })
    .await;
    let s = &pipeline.stats()[0];
    assert_eq!(
        s.encoded, 2,
        "the new model's first frame is encoded: {s:?}"
    );
    assert_eq!(s.kept_tokens, 2 * 64, "and kept whole, then nothing");
    assert!(
        events.try_recv().is_err(),
        "no event: nothing changed in the scene"
    );
    assert_eq!(
        pipeline.model().unwrap().model.folder().path,
        copy,
        "the pipeline serves the new model"
    );
    pipeline.shutdown().await;
}
