//! The scene-change rule (docs/architecture.md §4): fire when a frame's drop ratio falls
//! below `drop_ratio_below` (the paper's 0.6, i.e. more than 40% of the
//! tokens changed), with what a daemon needs on top: a minimum run of such
//! frames, hysteresis (re-arm only once the drop ratio is back above
//! `rearm_drop_ratio_above`), a cooldown, and watch rules asked at each
//! firing and at most every `rule_interval_s` while the scene keeps
//! changing. A static scene never fires and never asks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::rules::Debounce;
use crate::event::Activity;
use crate::settings::Problems;

/// `[cameras.NAME.trigger]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerConfig {
    /// Fire when a frame drops fewer than this share of its tokens (keeps
    /// more than 1 - this). Default: 0.6.
    #[serde(default = "default_drop_ratio_below")]
    pub drop_ratio_below: f32,
    /// After firing, re-arm only once a frame drops more than this share
    /// (the scene settled). Default: 0.8.
    #[serde(default = "default_rearm")]
    pub rearm_drop_ratio_above: f32,
    /// Frames in a row that must pass the threshold. Default: 1.
    #[serde(default = "default_min_frames")]
    pub min_frames: u32,
    /// Least stream time between two firings, in seconds. Default: 5.
    #[serde(default = "default_cooldown_s")]
    pub cooldown_s: f64,
    /// While the scene keeps changing, ask the watch rules at most this
    /// often, in seconds. Default: 10.
    #[serde(default = "default_rule_interval_s")]
    pub rule_interval_s: f64,
    /// While the scene is still, ask the watch rules again at least this
    /// often, in seconds, so that a rule that stopped holding is noticed
    /// with no change to trigger on; 0 never asks a still scene. Default: 20.
    #[serde(default = "default_rule_recheck_s")]
    pub rule_recheck_s: f64,
    /// Answers remembered per watch rule for its state. Default: 1 (no
    /// debounce: the demo model's answers do not flap, and in the default
    /// run a still scene is checked too rarely for two answers in a row to
    /// come before it changes again; docs/configuration.md "Watch rules are states").
    #[serde(default = "default_rule_window")]
    pub rule_window: u32,
    /// A rule turns `on` after this many yes answers among its last
    /// `rule_window`. Default: 1.
    #[serde(default = "default_rule_on_after")]
    pub rule_on_after: u32,
    /// A rule turns `off` after this many no answers among its last
    /// `rule_window`. Default: 1.
    #[serde(default = "default_rule_off_after")]
    pub rule_off_after: u32,
    /// Hold back descriptions and watch-rule answers the model is less sure
    /// of than this (an event's `confidence`: the lowest probability of any
    /// token of its answer). A held-back description is not published; a
    /// held-back rule answer does not count toward the rule's state. Both
    /// are counted in the stats (`held_back`) and logged at debug. 0 holds
    /// nothing back. Default: 0, since a threshold belongs to a model's
    /// calibration (`glimpse eval`); the demo config sets 0.6 from the demo
    /// model's (docs/configuration.md "Unsure answers are held back").
    #[serde(default = "default_min_confidence")]
    pub min_confidence: f32,
    /// Describe only changes that touch these zones (names of the camera's
    /// `[cameras.<name>.zones]`); empty: any change. Watch rules are asked
    /// whatever the zone. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// The question asked when the scene changes. Default: the model
    /// folder's (`glimpse.describe` in its `config.json`), else its
    /// family's: "what changed ?" in glimpse's own layout, "In one short
    /// sentence, what changed?" for an instruct model such as SmolVLM2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub describe: Option<String>,
    /// A sentence about this camera, given to the model as context where
    /// its family has a place for it (SmolVLM2: a system message), e.g.
    /// "Front door. People and parcels matter; cars on the street do not."
    /// glimpse's own layout has none (`glimpse check` says so). Default:
    /// none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Answers to `describe` that are no news and not published (case,
    /// spaces and a closing full stop aside). Default: the model folder's
    /// (`glimpse.no_news`), else `["nothing changed"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_news: Option<Vec<String>>,
}

/// A prompt or answer of the config: 1 to 500 characters, not only spaces.
fn check_words(key: &str, text: &str, problems: &mut Problems) {
    if text.trim().is_empty() || text.len() > 500 {
        problems.push(
            key,
            format!("must be 1 to 500 characters, got {}", text.len()),
        );
    }
}

fn default_drop_ratio_below() -> f32 {
    0.6
}
fn default_rearm() -> f32 {
    0.8
}
fn default_min_frames() -> u32 {
    1
}
fn default_cooldown_s() -> f64 {
    5.0
}
fn default_rule_interval_s() -> f64 {
    10.0
}
fn default_rule_recheck_s() -> f64 {
    20.0
}
fn default_rule_window() -> u32 {
    1
}
fn default_rule_on_after() -> u32 {
    1
}
fn default_rule_off_after() -> u32 {
    1
}
fn default_min_confidence() -> f32 {
    0.0
}

impl Default for TriggerConfig {
    fn default() -> Self {
        TriggerConfig {
            drop_ratio_below: default_drop_ratio_below(),
            rearm_drop_ratio_above: default_rearm(),
            min_frames: default_min_frames(),
            cooldown_s: default_cooldown_s(),
            rule_interval_s: default_rule_interval_s(),
            rule_recheck_s: default_rule_recheck_s(),
            rule_window: default_rule_window(),
            rule_on_after: default_rule_on_after(),
            rule_off_after: default_rule_off_after(),
            min_confidence: default_min_confidence(),
            zones: Vec::new(),
            describe: None,
            context: None,
            no_news: None,
        }
    }
}

impl TriggerConfig {
    /// Checks every value of the table at `key`.
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        // A drop ratio is in [0, 1]: below 0 never holds (never fires), and
        // above 1 never holds (never re-arms).
        if !(self.drop_ratio_below > 0.0 && self.drop_ratio_below < 1.0) {
            problems.push(
                format!("{key}.drop_ratio_below"),
                format!(
                    "must be > 0 (0 never fires) and < 1, got {}",
                    self.drop_ratio_below
                ),
            );
        }
        if !(0.0..1.0).contains(&self.rearm_drop_ratio_above) {
            problems.push(
                format!("{key}.rearm_drop_ratio_above"),
                format!(
                    "must be at least 0 and < 1 (a frame never drops more than all its tokens, so the trigger would never re-arm), got {}",
                    self.rearm_drop_ratio_above
                ),
            );
        } else if self.rearm_drop_ratio_above < self.drop_ratio_below {
            problems.push(
                format!("{key}.rearm_drop_ratio_above"),
                format!(
                    "must be at least drop_ratio_below ({}) for the hysteresis to hold, got {}",
                    self.drop_ratio_below, self.rearm_drop_ratio_above
                ),
            );
        }
        if !(1..=1000).contains(&self.min_frames) {
            problems.push(
                format!("{key}.min_frames"),
                format!("must be between 1 and 1000, got {}", self.min_frames),
            );
        }
        for (field, v) in [
            ("cooldown_s", self.cooldown_s),
            ("rule_interval_s", self.rule_interval_s),
            ("rule_recheck_s", self.rule_recheck_s),
        ] {
            if !(0.0..=86_400.0).contains(&v) {
                problems.push(
                    format!("{key}.{field}"),
                    format!("must be between 0 and 86400, got {v}"),
                );
            }
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            problems.push(
                format!("{key}.min_confidence"),
                format!(
                    "must be between 0 (hold nothing back) and 1 (a probability), got {}",
                    self.min_confidence
                ),
            );
        }
        if !(1..=16).contains(&self.rule_window) {
            problems.push(
                format!("{key}.rule_window"),
                format!("must be between 1 and 16, got {}", self.rule_window),
            );
        }
        for (field, v) in [
            ("rule_on_after", self.rule_on_after),
            ("rule_off_after", self.rule_off_after),
        ] {
            if !(1..=self.rule_window.max(1)).contains(&v) {
                problems.push(
                    format!("{key}.{field}"),
                    format!(
                        "must be between 1 and rule_window ({}), got {v}",
                        self.rule_window
                    ),
                );
            }
        }
        // Otherwise one window could hold enough yes and enough no answers
        // at once, and the state would flip on every answer.
        if self.rule_on_after + self.rule_off_after <= self.rule_window {
            problems.push(
                format!("{key}.rule_off_after"),
                format!(
                    "rule_on_after ({}) + rule_off_after ({}) must exceed rule_window ({}), so that a window never holds enough answers for both states",
                    self.rule_on_after, self.rule_off_after, self.rule_window
                ),
            );
        }
        self.validate_words(key, problems);
    }

    /// The prompts: short, and not empty when given.
    fn validate_words(&self, key: &str, problems: &mut Problems) {
        let texts = [("describe", &self.describe), ("context", &self.context)];
        for (field, text) in texts {
            if let Some(text) = text {
                check_words(&format!("{key}.{field}"), text, problems);
            }
        }
        for (i, answer) in self.no_news.iter().flatten().enumerate() {
            check_words(&format!("{key}.no_news[{i}]"), answer, problems);
        }
    }

    /// The watch rules' debounce.
    pub fn debounce(&self) -> Debounce {
        Debounce {
            window: self.rule_window as usize,
            on_after: self.rule_on_after as usize,
            off_after: self.rule_off_after as usize,
        }
    }
}

/// What to do after a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Describe the change (a `description` event).
    pub describe: bool,
    /// Ask the watch rules.
    pub ask_rules: bool,
    /// The scene's activity after this frame.
    pub activity: Activity,
}

/// The trigger of one camera.
#[derive(Debug, Clone)]
pub struct SceneTrigger {
    config: TriggerConfig,
    armed: bool,
    run: u32,
    last_fired: Option<Duration>,
    last_asked: Option<Duration>,
}

impl SceneTrigger {
    /// The table it was built from.
    pub fn config(&self) -> &TriggerConfig {
        &self.config
    }

    /// An armed trigger.
    pub fn new(config: &TriggerConfig) -> SceneTrigger {
        SceneTrigger {
            config: config.clone(),
            armed: true,
            run: 0,
            last_fired: None,
            last_asked: None,
        }
    }

    /// Looks at one frame: its stream time, its retention (kept / total,
    /// 0 for a frame the gate skipped) and whether it starts a new stream
    /// (kept whole by construction, not because anything changed).
    pub fn observe(&mut self, pts: Duration, retention: f32, discont: bool) -> Decision {
        let drop_ratio = 1.0 - retention;
        if discont {
            self.run = 0;
            return self.decision(false, false);
        }
        if drop_ratio < self.config.drop_ratio_below {
            self.run += 1;
        } else {
            self.run = 0;
        }
        if !self.armed && drop_ratio > self.config.rearm_drop_ratio_above {
            self.armed = true;
        }
        let cooled = self
            .last_fired
            .is_none_or(|t| pts.saturating_sub(t).as_secs_f64() >= self.config.cooldown_s);
        let fire = self.armed && self.run >= self.config.min_frames && cooled;
        if fire {
            self.armed = false;
            self.last_fired = Some(pts);
        }
        // Rules: at each firing, every rule_interval_s while changing, and
        // every rule_recheck_s in any case (a rule can stop holding without
        // a change big enough to fire: it must still be noticed).
        let since_asked = self.last_asked.map(|t| pts.saturating_sub(t).as_secs_f64());
        let due = since_asked.is_none_or(|s| s >= self.config.rule_interval_s);
        let recheck = self.config.rule_recheck_s > 0.0
            && since_asked.is_none_or(|s| s >= self.config.rule_recheck_s);
        let ask = fire || (self.run > 0 && !self.armed && due) || recheck;
        if ask {
            self.last_asked = Some(pts);
        }
        self.decision(fire, ask)
    }

    fn decision(&self, describe: bool, ask_rules: bool) -> Decision {
        Decision {
            describe,
            ask_rules,
            activity: if self.armed && self.run == 0 {
                Activity::Idle
            } else {
                Activity::Changing
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults without the re-check of a still scene.
    fn still_unasked() -> TriggerConfig {
        TriggerConfig {
            rule_recheck_s: 0.0,
            ..TriggerConfig::default()
        }
    }

    /// Feeds retentions at 2 fps; returns the frame indexes that fired and
    /// those that asked the rules.
    fn run(config: &TriggerConfig, retentions: &[f32]) -> (Vec<usize>, Vec<usize>) {
        let mut trigger = SceneTrigger::new(config);
        let mut fired = Vec::new();
        let mut asked = Vec::new();
        for (i, &r) in retentions.iter().enumerate() {
            let d = trigger.observe(Duration::from_millis(500 * i as u64), r, i == 0);
            if d.describe {
                fired.push(i);
            }
            if d.ask_rules {
                asked.push(i);
            }
        }
        (fired, asked)
    }

    #[test]
    fn a_static_scene_never_fires_or_asks() {
        let mut retentions = vec![1.0];
        retentions.extend([0.0; 200]);
        assert_eq!(run(&still_unasked(), &retentions), (vec![], vec![]));
    }

    #[test]
    fn one_change_fires_once_and_the_hysteresis_holds_until_it_settles() {
        // r: first frame whole, calm, a change that wavers around the
        // threshold, settles, then a second change after the cooldown.
        let r = [
            1.0, 0.0, 0.0, 0.6, 0.3, 0.5, 0.35, 0.45, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
            0.0, 0.0, 0.0, 0.0, 0.7, 0.0,
        ];
        let (fired, asked) = run(&still_unasked(), &r);
        assert_eq!(
            fired,
            vec![3, 21],
            "once per change, not at every wavering frame"
        );
        assert_eq!(asked, vec![3, 21]);
    }

    #[test]
    fn the_cooldown_holds_back_a_change_that_comes_too_soon() {
        let config = TriggerConfig {
            cooldown_s: 5.0,
            ..still_unasked()
        };
        // Second change 2 s after the first (4 frames at 2 fps): held back;
        // it is still changing at 5 s, so it fires then.
        let r = [
            1.0, 0.9, 0.0, 0.0, 0.0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.0,
        ];
        let (fired, _) = run(&config, &r);
        assert_eq!(fired, vec![1, 11]);
    }

    #[test]
    fn min_frames_needs_a_run_of_changed_frames() {
        let config = TriggerConfig {
            min_frames: 3,
            ..still_unasked()
        };
        let r = [1.0, 0.9, 0.0, 0.9, 0.9, 0.0, 0.9, 0.9, 0.9, 0.0];
        assert_eq!(run(&config, &r).0, vec![8]);
    }

    #[test]
    fn rules_are_asked_again_while_the_scene_keeps_changing() {
        let config = TriggerConfig {
            rule_interval_s: 2.0,
            ..still_unasked()
        };
        let mut r = vec![1.0];
        r.extend([0.9; 12]);
        let (fired, asked) = run(&config, &r);
        assert_eq!(fired, vec![1]);
        assert_eq!(asked, vec![1, 5, 9], "every 2 s of stream time");
    }

    #[test]
    fn a_still_scene_rechecks_the_rules_every_rule_recheck_s() {
        let config = TriggerConfig {
            rule_recheck_s: 20.0,
            ..TriggerConfig::default()
        };
        let mut r = vec![1.0];
        r.extend([0.0; 100]);
        let (fired, asked) = run(&config, &r);
        assert!(fired.is_empty());
        // Once right after the first frame (the states start unknown),
        // then every 20 s (40 frames) with nothing changing.
        assert_eq!(asked, vec![1, 41, 81]);
    }

    #[test]
    fn the_debounce_must_not_allow_both_states_at_once() {
        let mut problems = Problems::default();
        let config = TriggerConfig {
            rule_window: 3,
            ..TriggerConfig::default()
        };
        config.validate("cameras.a.trigger", &mut problems);
        let text = format!("{problems:?}");
        assert!(text.contains("cameras.a.trigger.rule_off_after"), "{text}");
        let mut problems = Problems::default();
        TriggerConfig::default().validate("t", &mut problems);
        assert!(format!("{problems:?}").matches("rule_").count() == 0);
    }

    #[test]
    fn a_new_stream_does_not_fire() {
        let mut trigger = SceneTrigger::new(&still_unasked());
        let d = trigger.observe(Duration::from_secs(100), 1.0, true);
        assert!(!d.describe && !d.ask_rules);
        assert_eq!(d.activity, Activity::Idle);
    }
}
