//! Events into the outbox, and questions to the model with their answers
//! back out, over MQTT or to the HTTP asker.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::event::Produced;
use crate::http::{Board, Outcome};
use crate::mqtt::{MqttHandle, Question};
use crate::pipeline::Pipeline;

/// Puts an event into the durable outbox; the MQTT driver publishes it.
pub(super) async fn store_event(mqtt: &MqttHandle, board: &Board, produced: Produced) {
    let Produced { event, jpeg } = produced;
    board.record_event(&event);
    // The picture first: a reader of the event finds it in place.
    if let Some(jpeg) = jpeg {
        mqtt.publish_snapshot(&event.camera, jpeg);
    }
    tracing::info!(
        camera = %event.camera,
        kind = ?event.kind,
        latency_ms = event.latency_ms,
        at_s = format_args!("{:.1}", event.end_s),
        "event: {}", event.text
    );
    if let Err(e) = mqtt.publish_event(event).await {
        tracing::error!("an event could not be stored for MQTT: {e}");
    }
}

/// The next question, or never when questions are not taken.
pub(super) async fn next_question(
    questions: &mut Option<mpsc::Receiver<Question>>,
) -> Option<Question> {
    match questions {
        Some(q) => q.recv().await,
        None => std::future::pending().await,
    }
}

/// How long an asker waits for the model before an error answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// Hands a question to the model; a task (tracked, awaited at stop)
/// publishes the answer (or an error answer) when it comes, so the service
/// loop never waits. A question from the HTTP API takes the same path and
/// gets the same JSON on `reply` (true: an answer).
pub(super) fn ask(
    pipeline: &Pipeline,
    mqtt: &MqttHandle,
    question: Question,
    tasks: &TaskTracker,
    board: &Arc<Board>,
    reply: Option<tokio::sync::oneshot::Sender<(bool, String)>>,
) {
    let pending = pipeline.ask(&question.camera, question.text.clone());
    let mqtt = mqtt.clone();
    let board = board.clone();
    tasks.spawn(async move {
        let outcome = match pending {
            Err(why) => Err(why),
            Ok(rx) => match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err("the model worker stopped before answering".to_owned()),
                Err(_) => Err(format!("no answer within {} s", ANSWER_TIMEOUT.as_secs())),
            },
        };
        let published = match outcome {
            Ok(Produced { mut event, jpeg }) => {
                event.latency_ms = question.received.elapsed().as_millis() as u64;
                if let Some(jpeg) = jpeg {
                    mqtt.publish_snapshot(&event.camera, jpeg);
                }
                tracing::info!(camera = %question.camera, id = %question.id, latency_ms = event.latency_ms, "answer: {}", event.text);
                // What MQTT sends (MqttHandle::answer sets these too).
                event.kind = crate::event::EventKind::Answer;
                event.reference = Some(question.id.clone());
                board.record_event(&event);
                board.record_question(&question.camera, Outcome::Answered);
                if let Some(reply) = reply {
                    let _ = reply.send((true, serde_json::to_string(&event).unwrap_or_default()));
                }
                mqtt.answer(&question, event).await
            }
            Err(why) => {
                board.record_question(&question.camera, Outcome::Failed);
                if let Some(reply) = reply {
                    let payload = crate::mqtt::error_answer(&question.camera, &question.id, &why);
                    let _ = reply.send((false, payload));
                }
                mqtt.answer_error(&question, &why).await
            }
        };
        if let Err(e) = published {
            tracing::error!("cannot answer question {}: {e}", question.id);
        }
    });
}
