//! What arrives on the inbound connection (`mqtt::inbound`), handled by the
//! driver: questions (budgeted per camera: `ask::QuestionGate`), watch-rule
//! changes, pause and resume, and Home Assistant's birth message. Refusals
//! are answered through the outbox.

use super::*;

impl Driver {
    pub(super) async fn on_message(
        &mut self,
        s: &mut Session,
        topic: &str,
        payload: &[u8],
        response_topic: Option<String>,
        correlation: Option<Vec<u8>>,
    ) {
        if self.config.discovery && topic == format!("{}/status", self.config.discovery_prefix) {
            if payload == b"online" {
                tracing::info!("Home Assistant is online; sending discovery again");
                self.publish_discovery(s);
            }
            return;
        }
        let Some(rest) = topic
            .strip_prefix(&self.config.prefix)
            .and_then(|r| r.strip_prefix('/'))
        else {
            return;
        };
        let (camera, leaf) = match rest.split_once('/') {
            Some(parts) => parts,
            None => return,
        };
        let camera = camera.to_owned();
        match leaf {
            "ask" => {
                self.on_question(&camera, payload, response_topic, correlation)
                    .await
            }
            "rules/set" => {
                let mut rules = self.rules.get(&camera).cloned().unwrap_or_default();
                let bad_topic = response_topic.as_deref().and_then(|topic| {
                    ask::check_response_topic(topic, &self.config)
                        .err()
                        .map(|reason| format!("response topic {topic:?} refused: {reason}"))
                });
                let outcome = if let Some(error) = bad_topic {
                    Err(error)
                } else if self.cameras.contains(&camera) {
                    let config_rules: Vec<String> = self
                        .retained_rules
                        .get(&camera)
                        .into_iter()
                        .flatten()
                        .filter(|r| r.source == RuleSource::Config)
                        .map(|r| r.rule.clone())
                        .collect();
                    ask::apply_rules(payload, &mut rules, &config_rules)
                } else {
                    Err(format!(
                        "unknown camera {camera:?}; known: {}",
                        self.cameras.join(", ")
                    ))
                };
                match outcome {
                    Ok(()) => {
                        let (c, r) = (camera.clone(), rules.clone());
                        if let Err(e) = blocking(&self.shared, move |o| o.set_rules(&c, &r)).await {
                            tracing::error!("{e}");
                        }
                        tracing::info!(camera, rules = ?rules, "watch rules changed");
                        self.rules.insert(camera.clone(), rules);
                        // The `rules` list and the state topics follow
                        // from the pipeline's rule states (sync_rules).
                        self.shared.rules.send_replace(self.rules.clone());
                    }
                    Err(error) => {
                        tracing::warn!(camera, "rules change refused: {error}");
                        let refusal = Refusal { id: None, error };
                        self.refuse(
                            &camera,
                            Channel::RulesError,
                            &refusal,
                            response_topic,
                            correlation,
                        )
                        .await;
                    }
                }
            }
            "analysis/set" => {
                self.on_analysis(s, &camera, payload, response_topic, correlation)
                    .await
            }
            _ => {}
        }
    }

    /// `<camera>/analysis/set`: `on` resumes the camera's analysis, `off`
    /// pauses it (any case; Home Assistant's switch sends `ON`/`OFF`).
    /// Persisted in the outbox database, so a restart keeps it.
    pub(super) async fn on_analysis(
        &mut self,
        s: &Session,
        camera: &str,
        payload: &[u8],
        response_topic: Option<String>,
        correlation: Option<Vec<u8>>,
    ) {
        let text = String::from_utf8_lossy(payload).trim().to_ascii_lowercase();
        let pause = match text.as_str() {
            _ if !self.cameras.iter().any(|c| c == camera) => Err(format!(
                "unknown camera {camera:?}; known: {}",
                self.cameras.join(", ")
            )),
            "on" | "resume" => Ok(false),
            "off" | "pause" => Ok(true),
            _ => Err(format!(
                "analysis/set takes on or off (resume or pause), got {:?}",
                text.chars().take(40).collect::<String>()
            )),
        };
        let pause = match pause {
            Ok(pause) => pause,
            Err(error) => {
                tracing::warn!(camera, "analysis change refused: {error}");
                let refusal = Refusal { id: None, error };
                self.refuse(
                    camera,
                    Channel::AnalysisError,
                    &refusal,
                    response_topic,
                    correlation,
                )
                .await;
                return;
            }
        };
        if pause != self.paused.contains(camera) {
            let c = camera.to_owned();
            if let Err(e) = blocking(&self.shared, move |o| o.set_paused(&c, pause)).await {
                tracing::error!("{e}");
            }
            if pause {
                self.paused.insert(camera.to_owned());
            } else {
                self.paused.remove(camera);
            }
            self.shared.paused.send_replace(self.paused.clone());
        }
        self.publish_analysis(s, camera);
    }

    pub(super) async fn on_question(
        &mut self,
        camera: &str,
        payload: &[u8],
        response_topic: Option<String>,
        correlation: Option<Vec<u8>>,
    ) {
        // Every question takes from the budget, good or bad, so that a
        // flood of any kind costs one error answer (ask::QuestionGate).
        // Unknown cameras share one budget: the gate's state stays bounded.
        let known = self.cameras.iter().any(|c| c == camera);
        let key = if known { camera } else { "?" };
        let admission = self.shared.gate().admit(key, Instant::now());
        match admission {
            Admission::Admitted => {}
            Admission::Silence => return,
            Admission::Refuse => {
                let id = ask::parse_question(payload, self.config.max_question_bytes)
                    .ok()
                    .and_then(|(id, _)| id);
                let refusal = Refusal {
                    id,
                    error: format!(
                        "{}; more are not answered until the budget refills",
                        self.shared.gate().refusal(camera)
                    ),
                };
                tracing::info!(
                    camera,
                    "question refused: {}; the rest of this spell are counted once a minute",
                    refusal.error
                );
                self.refuse(
                    camera,
                    Channel::Answer,
                    &refusal,
                    response_topic,
                    correlation,
                )
                .await;
                return;
            }
        }
        let outcome =
            ask::parse_question(payload, self.config.max_question_bytes).and_then(|(id, text)| {
                let refuse = |error: String| Refusal {
                    id: id.clone(),
                    error,
                };
                // Checked before anything else: an answer must never go to a
                // topic that cannot or should not take it (the error answer
                // then goes to <prefix>/<camera>/answer).
                if let Some(topic) = &response_topic {
                    if let Err(reason) = ask::check_response_topic(topic, &self.config) {
                        return Err(refuse(format!(
                            "response topic {topic:?} refused: {reason}"
                        )));
                    }
                }
                if !known {
                    return Err(refuse(format!(
                        "unknown camera {camera:?}; known: {}",
                        self.cameras.join(", ")
                    )));
                }
                let question = Question {
                    id: id.clone().unwrap_or_else(|| ulid::Ulid::new().to_string()),
                    camera: camera.to_owned(),
                    text,
                    response_topic: response_topic.clone(),
                    correlation: correlation.clone(),
                    received: Instant::now(),
                };
                self.questions.try_send(question).map_err(|_| {
                    refuse("too many questions waiting for the model; ask again later".into())
                })
            });
        let Err(refusal) = outcome else { return };
        tracing::info!(camera, id = ?refusal.id, "question refused: {}", refusal.error);
        self.refuse(
            camera,
            Channel::Answer,
            &refusal,
            response_topic,
            correlation,
        )
        .await;
    }

    /// Answers a refused question or rules change with an error, through
    /// the outbox, on the camera's `channel` topic or the (valid) response
    /// topic.
    pub(super) async fn refuse(
        &self,
        camera: &str,
        channel: Channel,
        refusal: &Refusal,
        response_topic: Option<String>,
        correlation: Option<Vec<u8>>,
    ) {
        let response_topic =
            response_topic.filter(|t| ask::check_response_topic(t, &self.config).is_ok());
        let message = Pending {
            id: 0,
            camera: camera.to_owned(),
            channel,
            response_topic,
            correlation,
            payload: error_payload(camera, refusal),
        };
        let shared = self.shared.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || shared.store(message, None)).await {
            tracing::error!("outbox task panicked: {e}");
        }
    }
}

/// Once a minute, one log line per camera whose questions went over
/// `mqtt.questions_per_minute`, with the count: a flood is one line a
/// minute, not one per question.
pub(super) async fn report_refusals(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let refused = shared.gate().take_refused();
        for (camera, count) in refused {
            tracing::info!(
                camera,
                refused = count,
                "questions refused in the last minute: over mqtt.questions_per_minute (one error answer per spell, the rest unanswered)"
            );
        }
    }
}
