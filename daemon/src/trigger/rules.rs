//! Watch rules as states (docs/architecture.md §4): each rule of a camera
//! is `on`, `off` or `unknown`, decided from the model's yes/no answers
//! with a debounce over the last few checks ([`RuleBook`]). Only a change
//! of state is news: [`RuleBook::record`] returns the transition, and the
//! caller turns it into a `rule_on` / `rule_off` event. [`RuleStatus`]
//! (in the event model, `crate::event`) is the plain data the MQTT stage
//! publishes (retained state per rule, the list of a camera's rules). Pure
//! state, no I/O; used on model worker
//! threads under the camera's lock.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::event::{rule_id, RuleSource, RuleState, RuleStatus};

/// The debounce: a rule turns on after `on_after` yes answers among its
/// last `window` checks, off after `off_after` no answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounce {
    /// Checks remembered per rule.
    pub window: usize,
    /// Yes answers in the window that turn a rule on.
    pub on_after: usize,
    /// No answers in the window that turn a rule off.
    pub off_after: usize,
}

impl Debounce {
    /// No debounce: every answer decides.
    pub const NONE: Debounce = Debounce {
        window: 1,
        on_after: 1,
        off_after: 1,
    };
}

/// A rule and its recent answers.
#[derive(Debug, Clone)]
struct Tracked {
    status: RuleStatus,
    answers: VecDeque<bool>,
    /// Stream time of the newest answer taken: an older one (a job that
    /// finished late on another worker) is ignored.
    last_pts: Option<Duration>,
}

/// The rules of one camera and their states.
#[derive(Debug, Clone)]
pub struct RuleBook {
    debounce: Debounce,
    rules: Vec<Tracked>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RuleBook {
    /// An empty book deciding with `debounce`.
    pub fn new(debounce: Debounce) -> RuleBook {
        RuleBook {
            debounce,
            rules: Vec::new(),
        }
    }

    /// Sets the rules: the config's, then those set over MQTT (a rule in
    /// both counts as the config's). Rules kept keep their state and
    /// answers; new ones start unknown. Returns whether the list changed.
    pub fn set_rules(&mut self, config: &[String], mqtt: &[String]) -> bool {
        let mut wanted: Vec<(&String, RuleSource)> = Vec::new();
        for (rules, source) in [(config, RuleSource::Config), (mqtt, RuleSource::Mqtt)] {
            for rule in rules {
                if !wanted.iter().any(|(r, _)| *r == rule) {
                    wanted.push((rule, source));
                }
            }
        }
        let before: Vec<(String, RuleSource)> = self
            .rules
            .iter()
            .map(|t| (t.status.rule.clone(), t.status.source))
            .collect();
        let mut old = std::mem::take(&mut self.rules);
        for (rule, source) in wanted {
            let tracked = match old.iter().position(|t| t.status.rule == *rule) {
                Some(at) => {
                    let mut t = old.remove(at);
                    t.status.source = source;
                    t
                }
                None => Tracked {
                    status: RuleStatus {
                        id: self.unused_id(rule),
                        rule: rule.clone(),
                        source,
                        state: RuleState::Unknown,
                        since_ms: now_ms(),
                        since_s: None,
                        last_answer: None,
                    },
                    answers: VecDeque::new(),
                    last_pts: None,
                },
            };
            self.rules.push(tracked);
        }
        let after: Vec<(String, RuleSource)> = self
            .rules
            .iter()
            .map(|t| (t.status.rule.clone(), t.status.source))
            .collect();
        before != after
    }

    /// [`rule_id`], made unique among the rules already in the book.
    fn unused_id(&self, rule: &str) -> String {
        let base = rule_id(rule);
        let mut id = base.clone();
        let mut n = 2;
        while self.rules.iter().any(|t| t.status.id == id) {
            id = format!("{base}_{n}");
            n += 1;
        }
        id
    }

    /// Takes the model's answer to `rule` (asked about the scene at stream
    /// time `pts`): `yes`, and the answer's text. Returns the state the
    /// rule left and its new status when its state changed. An answer about an older scene than
    /// one already taken, or to a rule no longer set, changes nothing.
    pub fn record(
        &mut self,
        rule: &str,
        pts: Duration,
        yes: bool,
        answer: &str,
    ) -> Option<(RuleState, RuleStatus)> {
        let d = self.debounce;
        let t = self.rules.iter_mut().find(|t| t.status.rule == rule)?;
        if t.last_pts.is_some_and(|last| pts < last) {
            return None;
        }
        t.last_pts = Some(pts);
        t.status.last_answer = Some(answer.to_owned());
        t.answers.push_back(yes);
        while t.answers.len() > d.window {
            t.answers.pop_front();
        }
        let yeses = t.answers.iter().filter(|a| **a).count();
        let noes = t.answers.len() - yeses;
        let new = if t.status.state != RuleState::On && yeses >= d.on_after {
            RuleState::On
        } else if t.status.state != RuleState::Off && noes >= d.off_after {
            RuleState::Off
        } else {
            return None;
        };
        let from = std::mem::replace(&mut t.status.state, new);
        t.status.since_ms = now_ms();
        t.status.since_s = Some(pts.as_secs_f64());
        Some((from, t.status.clone()))
    }

    /// Forgets every rule's answers: nobody looks (the camera's analysis
    /// is paused), so nothing is known. Rules that were on or off become
    /// unknown; returns whether any did.
    pub fn forget(&mut self) -> bool {
        let mut changed = false;
        for t in &mut self.rules {
            t.answers.clear();
            if t.status.state != RuleState::Unknown {
                t.status.state = RuleState::Unknown;
                t.status.since_ms = now_ms();
                changed = true;
            }
        }
        changed
    }

    /// Every rule's text, config rules first: what to ask the model.
    pub fn texts(&self) -> Vec<String> {
        self.rules.iter().map(|t| t.status.rule.clone()).collect()
    }

    /// Every rule's status, config rules first.
    pub fn statuses(&self) -> Vec<RuleStatus> {
        self.rules.iter().map(|t| t.status.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_OF_THREE: Debounce = Debounce {
        window: 3,
        on_after: 2,
        off_after: 2,
    };

    fn book(debounce: Debounce) -> RuleBook {
        let mut b = RuleBook::new(debounce);
        b.set_rules(&["is there a red shape?".into()], &[]);
        b
    }

    /// Feeds answers one second apart; returns the states each changed to.
    fn feed(b: &mut RuleBook, answers: &[bool]) -> Vec<(usize, RuleState)> {
        answers
            .iter()
            .enumerate()
            .filter_map(|(i, &yes)| {
                b.record(
                    "is there a red shape?",
                    Duration::from_secs(i as u64),
                    yes,
                    "",
                )
                .map(|(_, s)| (i, s.state))
            })
            .collect()
    }

    #[test]
    fn ids_are_stable_slugs() {
        assert_eq!(rule_id("is there a red shape?"), "is_there_a_red_shape");
        assert_eq!(
            rule_id("  A person -- at the DOOR  "),
            "a_person_at_the_door"
        );
        let long = "is there a person at the door who carries a parcel or a big bag?";
        let id = rule_id(long);
        assert!(id.starts_with("is_there_a_person_at_the_door_who_carries_a"));
        assert_eq!(id, rule_id(long), "the same text, the same id");
        assert_ne!(id, rule_id(&long.replace("bag", "box")));
        assert!(rule_id("???").starts_with("rule_"));
        assert_ne!(rule_id("???"), rule_id("!!!"));
    }

    #[test]
    fn a_paused_camera_knows_nothing_until_it_looks_again() {
        let mut b = book(TWO_OF_THREE);
        assert_eq!(feed(&mut b, &[true, true]), vec![(1, RuleState::On)]);
        assert!(b.forget(), "on became unknown");
        assert_eq!(b.statuses()[0].state, RuleState::Unknown);
        assert!(!b.forget(), "already unknown: nothing to publish");
        // The answers before the pause count no more: one yes is not
        // enough for on again, and no rule_off was made by the pause.
        let after = b.record("is there a red shape?", Duration::from_secs(9), true, "");
        assert!(after.is_none());
        let on = b.record("is there a red shape?", Duration::from_secs(10), true, "");
        assert_eq!(
            on.map(|(from, s)| (from, s.state)),
            Some((RuleState::Unknown, RuleState::On))
        );
    }

    #[test]
    fn the_debounce_ignores_a_lone_wrong_answer() {
        let mut b = book(TWO_OF_THREE);
        let changes = feed(
            &mut b,
            &[true, false, true, true, false, true, true, false, false],
        );
        assert_eq!(changes, vec![(2, RuleState::On), (8, RuleState::Off)]);
        // Without it, every answer that differs is a flip.
        let mut b = book(Debounce::NONE);
        assert_eq!(feed(&mut b, &[true, false, true, true, false]).len(), 4);
    }

    #[test]
    fn the_default_debounce_turns_on_at_once_and_off_at_the_second_no() {
        // trigger.rule_window = 2, rule_on_after = 1, rule_off_after = 2.
        let mut b = book(Debounce {
            window: 2,
            on_after: 1,
            off_after: 2,
        });
        let changes = feed(&mut b, &[false, false, true, false, true, false, false]);
        assert_eq!(
            changes,
            vec![(1, RuleState::Off), (2, RuleState::On), (6, RuleState::Off)]
        );
    }

    #[test]
    fn a_late_answer_about_an_older_scene_is_ignored() {
        let mut b = book(Debounce::NONE);
        let r = "is there a red shape?";
        assert!(b.record(r, Duration::from_secs(5), true, "yes").is_some());
        assert!(b.record(r, Duration::from_secs(4), false, "no").is_none());
        assert_eq!(b.statuses()[0].state, RuleState::On);
        assert_eq!(b.statuses()[0].since_s, Some(5.0));
    }

    #[test]
    fn rules_keep_their_state_when_the_list_changes() {
        let mut b = book(Debounce::NONE);
        b.record("is there a red shape?", Duration::ZERO, true, "yes");
        assert!(b.set_rules(
            &["is there a red shape?".into()],
            &[
                "is there a blue shape?".into(),
                "is there a red shape?".into()
            ]
        ));
        let s = b.statuses();
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].source, s[0].state),
            (RuleSource::Config, RuleState::On)
        );
        assert_eq!(
            (s[1].id.as_str(), s[1].source, s[1].state),
            (
                "is_there_a_blue_shape",
                RuleSource::Mqtt,
                RuleState::Unknown
            )
        );
        assert!(!b.set_rules(
            &["is there a red shape?".into()],
            &["is there a blue shape?".into()]
        ));
        assert!(b.set_rules(&[], &["is there a blue shape?".into()]));
        assert_eq!(b.statuses().len(), 1);
        let json = serde_json::to_value(&b.statuses()[0]).unwrap();
        assert_eq!(json["state"], "unknown");
        assert_eq!(json["source"], "mqtt");
        assert!(json.get("since_s").is_none());
    }
}
