//! `/api/…`: the JSON (and pictures) the status page and scripts read. Every
//! handler reads copies from the board; a question goes to the service,
//! which answers it as it answers MQTT's (the same queue, priority and
//! JSON).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::board::{AskRequest, CameraView};
use super::App;
use crate::mqtt::{parse_question, Question};
use crate::snapshot::{self, Picture};

/// Retention points a camera's JSON carries: the page's sparkline.
const SPARKLINE_POINTS: usize = 240;

/// JPEG quality of the live frame.
const FRAME_QUALITY: u8 = 80;

/// The last JPEG made of each camera's live picture: a picture is encoded
/// once however many clients look at it.
#[derive(Default)]
pub struct FrameCache(Mutex<BTreeMap<String, Encoded>>);

/// A picture and its JPEG.
type Encoded = (Arc<Picture>, Arc<Vec<u8>>);

impl FrameCache {
    fn get(&self, camera: &str, picture: &Arc<Picture>) -> Option<Arc<Vec<u8>>> {
        let cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(camera)
            .filter(|(p, _)| Arc::ptr_eq(p, picture))
            .map(|(_, jpeg)| jpeg.clone())
    }

    fn put(&self, camera: &str, picture: Arc<Picture>, jpeg: Arc<Vec<u8>>) {
        let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(camera.to_owned(), (picture, jpeg));
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn camera_json(c: &CameraView, rules: &Value) -> Value {
    let s = &c.stats;
    let live = &c.live;
    let recent = live.recent_retention();
    // One copy of the latest frame: its path and its size.
    let picture = live.latest_picture();
    let sparkline: Vec<[f64; 2]> = recent
        .iter()
        .skip(recent.len().saturating_sub(SPARKLINE_POINTS))
        .map(|&(t, r)| {
            [
                (t * 10.0).round() / 10.0,
                (f64::from(r) * 1000.0).round() / 1000.0,
            ]
        })
        .collect();
    let [from, to] = &live.memory_span_ms;
    let round = |v: f64| (v * 100.0).round() / 100.0;
    json!({
        "camera": s.camera,
        "state": s.state.to_string(),
        "up": s.state == crate::frame::CameraState::Up,
        "fps": round(c.fps),
        "analysed_fps": round(c.analysed_fps),
        "sampled": s.sampled,
        "analysed": s.analysed,
        "encoded": s.encoded,
        "dropped": s.dropped,
        "pending": s.pending,
        "reconnects": s.reconnects,
        "changing": s.changing,
        "paused": s.paused,
        "events": s.events,
        "retention": (f64::from(s.retention) * 1000.0).round() / 1000.0,
        "retention_mean": s.retention_mean(),
        "retention_recent": sparkline,
        "memory": {
            "levels": s.memory,
            "span_s": [
                from.load(Ordering::Relaxed) as f64 / 1000.0,
                to.load(Ordering::Relaxed) as f64 / 1000.0,
            ],
        },
        "rules": rules,
        "frame": picture.as_ref().map(|_| format!("/api/cameras/{}/frame.jpg", s.camera)),
        // Its masks and zones over the frame, and the frame's size they
        // are drawn at (fractions of it).
        "regions": &*s.outlines,
        "frame_size": picture.map(|p| [p.width, p.height]),
        // What it asks the model on a change, and what is no news.
        "describe": live.words().map(|w| json!({
            "question": w.describe,
            "from": w.describe_from,
            "context": w.context,
            "no_news": w.no_news,
        })),
    })
}

/// `GET /api/cameras`: every running camera with its figures, rules and
/// recent retention.
pub async fn cameras(State(app): State<Arc<App>>) -> Json<Value> {
    let snapshot = app.board.figures();
    let rules = app.board.rules.borrow().clone();
    let list: Vec<Value> = snapshot
        .cameras
        .iter()
        .map(|c| {
            let r = rules.get(&c.stats.camera).map_or(json!([]), |r| json!(r));
            camera_json(c, &r)
        })
        .collect();
    Json(json!({ "cameras": list }))
}

/// `GET /api/rules`: every camera's watch rules and their states.
pub async fn rules(State(app): State<Arc<App>>) -> Json<Value> {
    let rules = app.board.rules.borrow().clone();
    Json(json!({ "rules": rules }))
}

/// Query of `/api/events`.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    camera: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/events[?camera=NAME][&limit=N]`: the recent events, newest
/// first, as published on MQTT.
pub async fn events(State(app): State<Arc<App>>, Query(q): Query<EventsQuery>) -> Json<Value> {
    let limit = q.limit.unwrap_or(super::RECENT_EVENTS);
    let events = app.board.events(q.camera.as_deref(), limit);
    Json(json!({ "events": events }))
}

fn jpeg(bytes: Arc<Vec<u8>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Bytes::from(bytes.as_ref().clone()),
    )
        .into_response()
}

/// `GET /api/cameras/NAME/frame.jpg`: the last sampled frame, its kept
/// tokens tinted (while the camera's snapshots are on).
pub async fn frame(State(app): State<Arc<App>>, Path(camera): Path<String>) -> Response {
    let picture = app
        .board
        .figures()
        .cameras
        .into_iter()
        .find(|c| c.stats.camera == camera)
        .map(|c| c.live.latest_picture());
    let picture = match picture {
        None => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no camera {camera:?} is running"),
            )
        }
        Some(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("camera {camera:?} has no frame yet (or its snapshots are off)"),
            )
        }
        Some(Some(p)) => p,
    };
    if let Some(bytes) = app.frames.get(&camera, &picture) {
        return jpeg(bytes);
    }
    // Tens of milliseconds for a large picture: off the runtime.
    let encoded = {
        let picture = picture.clone();
        tokio::task::spawn_blocking(move || snapshot::encode(&picture, FRAME_QUALITY, true)).await
    };
    match encoded {
        Ok(Ok(bytes)) => {
            let bytes = Arc::new(bytes);
            app.frames.put(&camera, picture, bytes.clone());
            jpeg(bytes)
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding failed: {e}"),
        ),
    }
}

/// `GET /api/snapshots/NAME`: an event's snapshot (`<event id>.jpg`).
pub async fn snapshot(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    let Some(dir) = app.board.state_dir.clone() else {
        return error(StatusCode::NOT_FOUND, "no state directory");
    };
    match tokio::task::spawn_blocking(move || snapshot::read(&dir, &name)).await {
        Ok(Ok(bytes)) => jpeg(Arc::new(bytes)),
        Ok(Err(snapshot::SnapshotError::BadName(n))) => error(
            StatusCode::BAD_REQUEST,
            format!("{n:?} is not a snapshot name"),
        ),
        Ok(Err(e)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /api/cameras/NAME/ask` with `{"question": "...", "id": "..."}` (id
/// optional) or plain text: the model's answer, as an MQTT asker gets it
/// (200), or the error answer (503; 400 for a question that cannot be
/// taken, 404 for an unknown camera).
pub async fn ask(State(app): State<Arc<App>>, Path(camera): Path<String>, body: Bytes) -> Response {
    if !app.board.has_camera(&camera) {
        return error(
            StatusCode::NOT_FOUND,
            format!("no camera {camera:?} is running"),
        );
    }
    let (id, text) = match parse_question(&body, app.board.max_question_bytes) {
        Ok(parsed) => parsed,
        Err(refusal) => return error(StatusCode::BAD_REQUEST, refusal.error),
    };
    let question = Question {
        id: id.unwrap_or_else(|| ulid::Ulid::new().to_string()),
        camera,
        text,
        response_topic: None,
        correlation: None,
        received: Instant::now(),
    };
    let (reply, answer) = oneshot::channel();
    match app.board.questions.try_send(AskRequest { question, reply }) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many questions are waiting; ask again later",
            )
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "glimpse is stopping")
        }
    }
    match answer.await {
        Ok((answered, payload)) => {
            let status = if answered {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                payload,
            )
                .into_response()
        }
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "glimpse stopped before answering",
        ),
    }
}
