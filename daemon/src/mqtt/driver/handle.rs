//! [`MqttHandle`]: what the pipeline and the service call. Every method
//! returns at once or after one SQLite write; the driver task does the
//! rest.

use super::*;

impl MqttHandle {
    /// Writes `event` to the outbox (durable once this returns) and has it
    /// published on `<prefix>/<camera>/event` (`answer` for answers).
    pub async fn publish_event(&self, event: Event) -> Result<(), MqttError> {
        let channel = if event.kind == EventKind::Answer {
            Channel::Answer
        } else {
            Channel::Event
        };
        self.push(
            event.camera.clone(),
            channel,
            None,
            None,
            encode(&event)?,
            Some(event),
        )
        .await
    }

    /// Answers `question` with `event` (kind `answer`, its `reference` set
    /// to the question's id), honouring an MQTT 5 response topic.
    pub async fn answer(&self, question: &Question, mut event: Event) -> Result<(), MqttError> {
        event.kind = EventKind::Answer;
        event.reference = Some(question.id.clone());
        let payload = encode(&event)?;
        self.push(
            question.camera.clone(),
            Channel::Answer,
            question.response_topic.clone(),
            question.correlation.clone(),
            payload,
            Some(event),
        )
        .await
    }

    /// Answers `question` with an error.
    pub async fn answer_error(&self, question: &Question, error: &str) -> Result<(), MqttError> {
        let refusal = Refusal {
            id: Some(question.id.clone()),
            error: error.to_owned(),
        };
        let payload = error_payload(&question.camera, &refusal);
        self.push(
            question.camera.clone(),
            Channel::Answer,
            question.response_topic.clone(),
            question.correlation.clone(),
            payload,
            None,
        )
        .await
    }

    async fn push(
        &self,
        camera: String,
        channel: Channel,
        response_topic: Option<String>,
        correlation: Option<Vec<u8>>,
        payload: String,
        event: Option<Event>,
    ) -> Result<(), MqttError> {
        let message = Pending {
            id: 0,
            camera,
            channel,
            response_topic,
            correlation,
            payload,
        };
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.store(message, event))
            .await
            .map_err(|e| MqttError::Closed(format!("outbox task panicked: {e}")))?;
        Ok(())
    }

    /// Takes one question of `camera`'s budget (`mqtt.questions_per_minute`,
    /// shared with the MQTT askers): `Err` with the error to answer when it
    /// is spent. For the HTTP API, whose asker waits for the reply.
    pub fn admit_question(&self, camera: &str) -> Result<(), String> {
        let mut gate = self.shared.gate();
        match gate.admit(camera, Instant::now()) {
            Admission::Admitted => Ok(()),
            Admission::Refuse | Admission::Silence => Err(gate.refusal(camera)),
        }
    }

    /// Installs what frees disk space when the outbox cannot be written:
    /// called (on a blocking thread) before anything waiting is lost;
    /// returns the bytes it freed, 0 when it has nothing left.
    pub fn on_disk_full(&self, room: MakeRoom) {
        *self.shared.room.lock().unwrap_or_else(|p| p.into_inner()) = Some(room);
    }

    /// Sets a camera's activity (published retained; repeats are free).
    pub fn set_activity(&self, camera: &str, activity: Activity) {
        self.send(Command::Activity(camera.to_owned(), activity));
    }

    /// Publishes a camera's latest snapshot (JPEG), retained, QoS 0: a
    /// picture of the moment, not a record (the history keeps its name and
    /// the state directory its bytes); skipped when the driver is busy.
    pub fn publish_snapshot(&self, camera: &str, jpeg: Arc<Vec<u8>>) {
        self.send(Command::Snapshot(camera.to_owned(), jpeg));
    }

    /// Publishes a camera's statistics (JSON object) on its stats topic,
    /// with `outbox_dead_letters` added (the MQTT stage's own count).
    /// Not durable: dropped while the broker is away.
    pub fn publish_stats(&self, camera: &str, mut stats: serde_json::Value) {
        if let Some(object) = stats.as_object_mut() {
            object.insert(
                "outbox_dead_letters".to_owned(),
                self.shared.dead_letters.load(Ordering::Relaxed).into(),
            );
        }
        self.send(Command::Stats(camera.to_owned(), stats.to_string()));
    }

    /// Applies a reloaded config: reconnects with the new settings. Never
    /// lost: the driver always sees the latest config handed over here.
    pub fn reconfigure(&self, config: &MqttConfig, cameras: Vec<String>) {
        self.shared
            .desired
            .send_replace(Some(Arc::new((config.clone(), cameras))));
    }

    fn send(&self, command: Command) {
        if let Err(e) = self.commands.try_send(command) {
            tracing::debug!("MQTT driver busy or stopped; command dropped: {e}");
        }
    }

    /// Publishes the watch rules' states (retained: each rule's state
    /// topic and each camera's `rules` list); only what changed is sent,
    /// and the state topic of a rule that is gone is cleared.
    pub fn set_rule_states(&self, states: RuleStates) {
        self.shared.rule_states.send_replace(states);
    }

    /// Publishes the zones' states (retained, each zone's state topic);
    /// only what changed is sent, and the topic of a zone that is gone is
    /// cleared.
    pub fn set_zone_states(&self, states: ZoneStates) {
        self.shared.zone_states.send_replace(states);
    }

    /// The current watch rules of every camera; changes as they are set
    /// over MQTT.
    pub fn rules(&self) -> watch::Receiver<BTreeMap<String, Vec<String>>> {
        self.shared.rules.subscribe()
    }

    /// The cameras whose analysis is paused; changes as they are paused
    /// and resumed over MQTT.
    pub fn paused(&self) -> watch::Receiver<BTreeSet<String>> {
        self.shared.paused.subscribe()
    }

    /// Waits until the broker connection is up, at most `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut connected = self.shared.connected.subscribe();
        tokio::time::timeout(timeout, connected.wait_for(|c| *c))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The stage's counters.
    pub fn stats(&self) -> MqttStats {
        let (unstored, unstored_peak, unstored_dropped) = {
            let u = self.shared.unstored();
            (u.len() as u64, u.peak() as u64, u.dropped())
        };
        MqttStats {
            questions_silenced: self.shared.gate().silenced(),
            unstored,
            unstored_peak,
            unstored_dropped,
            connected: *self.shared.connected.borrow(),
            pending: self.shared.outbox().pending(),
            acknowledged: self.shared.acknowledged.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            dead_letters: self.shared.dead_letters.load(Ordering::Relaxed),
        }
    }
}
