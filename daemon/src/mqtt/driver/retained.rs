//! The driver's retained state: what it publishes on every (re)connect
//! (availability, the instance's name, activity, snapshots, the analysis
//! switch), the watch rules' states, and Home Assistant discovery.

use super::*;

impl Driver {
    /// Retained state, sent on every (re)connect. The subscriptions are
    /// the inbound connection's (`inbound.rs`).
    pub(super) fn on_connect(&mut self, s: &Session) {
        let prefix = self.config.prefix.clone();
        // Who publishes under this prefix: another instance that reads it
        // says so (inbound.rs).
        let instance = json!({
            "client_id": self.client_id,
            "host": hostname(),
            "pid": std::process::id(),
        });
        self.publish(
            s,
            &inbound::instance_topic(&prefix),
            true,
            instance.to_string(),
        );
        self.publish(s, &format!("{prefix}/status"), true, "online".into());
        for camera in self.cameras.clone() {
            let activity = self
                .activity
                .get(&camera)
                .copied()
                .unwrap_or(Activity::Idle);
            self.publish(
                s,
                &self.topic(&camera, "activity"),
                true,
                activity.as_str().into(),
            );
            if let Some(jpeg) = self.snapshots.get(&camera) {
                self.publish_bytes(s, &self.topic(&camera, "snapshot"), jpeg.to_vec());
            }
            self.publish_analysis(s, &camera);
        }
        self.sync_rules(s, true);
        self.sync_zones(s, true);
        self.publish_discovery(s);
    }

    /// Publishes the rules' states that changed since the last call (all
    /// of them when `full`, after a connect): per camera the `rules` list
    /// and `rules/<id>/state` of each rule, both retained; the state topic
    /// of a rule that is gone gets an empty retained payload, which clears
    /// it.
    pub(super) fn sync_rules(&mut self, s: &Session, full: bool) {
        let current = self.rule_states.borrow_and_update().clone();
        // A rule added or removed changes the cameras' discovery (one
        // binary_sensor per rule); sent after the states it reads.
        let ids = |states: &RuleStates| -> BTreeMap<String, Vec<String>> {
            states
                .iter()
                .map(|(c, rules)| (c.clone(), rules.iter().map(|r| r.id.clone()).collect()))
                .collect()
        };
        let rediscover = !full && ids(&current) != ids(&self.retained_rules);
        let mut gone: Vec<String> = self
            .retained_rules
            .keys()
            .filter(|c| !self.cameras.contains(c))
            .cloned()
            .collect();
        for camera in self.cameras.clone() {
            let now = current.get(&camera).cloned().unwrap_or_default();
            let before = self.retained_rules.remove(&camera).unwrap_or_default();
            if full || before != now {
                self.publish(
                    s,
                    &self.topic(&camera, "rules"),
                    true,
                    json!({ "rules": now }).to_string(),
                );
            }
            for status in &now {
                let was = before.iter().find(|b| b.id == status.id);
                if full || was != Some(status) {
                    let payload = serde_json::to_string(status).unwrap_or_default();
                    let topic = self.topic(&camera, &format!("rules/{}/state", status.id));
                    self.publish(s, &topic, true, payload);
                }
            }
            for old in before.iter().filter(|b| !now.iter().any(|n| n.id == b.id)) {
                let topic = self.topic(&camera, &format!("rules/{}/state", old.id));
                self.publish(s, &topic, true, String::new());
            }
            self.retained_rules.insert(camera, now);
        }
        // A camera that was removed: its retained rules go with it.
        for camera in gone.drain(..) {
            for old in self.retained_rules.remove(&camera).unwrap_or_default() {
                let topic = self.topic(&camera, &format!("rules/{}/state", old.id));
                self.publish(s, &topic, true, String::new());
            }
            self.publish(s, &self.topic(&camera, "rules"), true, String::new());
        }
        if rediscover {
            self.publish_discovery(s);
        }
    }

    /// Publishes the zones' states that changed since the last call (all
    /// of them when `full`): `zones/<zone>/state` of each zone, retained;
    /// the topic of a zone that is gone (a reload, a removed camera) gets
    /// an empty retained payload, which clears it. A zone added or removed
    /// changes the cameras' discovery (one binary_sensor per zone).
    pub(super) fn sync_zones(&mut self, s: &Session, full: bool) {
        let current = self.zone_states.borrow_and_update().clone();
        let names = |states: &ZoneStates| -> BTreeMap<String, Vec<String>> {
            states
                .iter()
                .map(|(c, zones)| (c.clone(), zones.iter().map(|z| z.zone.clone()).collect()))
                .collect()
        };
        let rediscover = !full && names(&current) != names(&self.retained_zones);
        let before_all = std::mem::take(&mut self.retained_zones);
        for (camera, before) in &before_all {
            let now = current.get(camera).map_or(&[][..], Vec::as_slice);
            for old in before
                .iter()
                .filter(|b| !now.iter().any(|n| n.zone == b.zone))
            {
                let topic = self.topic(camera, &format!("zones/{}/state", old.zone));
                self.publish(s, &topic, true, String::new());
            }
        }
        for (camera, now) in &current {
            let before = before_all.get(camera).map_or(&[][..], Vec::as_slice);
            for status in now {
                let was = before.iter().find(|b| b.zone == status.zone);
                if full || was != Some(status) {
                    let payload = serde_json::to_string(status).unwrap_or_default();
                    let topic = self.topic(camera, &format!("zones/{}/state", status.zone));
                    self.publish(s, &topic, true, payload);
                }
            }
        }
        self.retained_zones = current;
        if rediscover {
            self.publish_discovery(s);
        }
    }

    /// The camera's analysis switch, retained on `<camera>/analysis`:
    /// `on`, or `off` while paused.
    pub(super) fn publish_analysis(&self, s: &Session, camera: &str) {
        let state = if self.paused.contains(camera) {
            "off"
        } else {
            "on"
        };
        self.publish(s, &self.topic(camera, "analysis"), true, state.into());
    }

    pub(super) fn publish_discovery(&mut self, s: &Session) {
        let client_id = self.config.client_id();
        let retract: Vec<String> = if self.config.discovery {
            self.announced
                .iter()
                .filter(|c| !self.cameras.contains(c))
                .cloned()
                .collect()
        } else {
            self.announced.iter().cloned().collect()
        };
        for camera in retract {
            let topic = discovery::topic(&self.config.discovery_prefix, &client_id, &camera);
            self.publish(s, &topic, true, String::new());
            self.announced.remove(&camera);
            self.components.remove(&camera);
        }
        if !self.config.discovery {
            return;
        }
        for camera in self.cameras.clone() {
            let topic = discovery::topic(&self.config.discovery_prefix, &client_id, &camera);
            let rules = self
                .retained_rules
                .get(&camera)
                .map_or(&[][..], Vec::as_slice);
            let zones = self
                .retained_zones
                .get(&camera)
                .map_or(&[][..], Vec::as_slice);
            let mut payload =
                discovery::payload(&self.config.prefix, &client_id, &camera, rules, zones);
            // A rule removed since the last update: its entities go too.
            let before = self.components.remove(&camera).unwrap_or_default();
            let now = discovery::retract_missing(&mut payload, &before);
            self.components.insert(camera.clone(), now);
            self.publish(s, &topic, true, payload.to_string());
            self.announced.insert(camera);
        }
        // Components Home Assistant adds on this update subscribe to the
        // availability topic it already subscribes to; a broker that does
        // not send retained messages again on a repeated subscription
        // (rumqttd 0.20, the embedded broker) would leave them
        // unavailable. So availability is published once more, after
        // Home Assistant has had time to add them.
        self.online_again = Some(tokio::time::Instant::now() + ONLINE_AGAIN_AFTER);
    }
}
