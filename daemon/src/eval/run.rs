//! A daemon run's events scored against its clip's ground truth
//! (`glimpse eval --events`, docs/architecture.md §9): is what glimpse said
//! on its own true? Each description is read as events and is true when
//! everything it says happened in the two seconds before it
//! ([`super::events::is_true`], regions aside); each rule transition is true
//! when the rule's new state is the truth of the frame it was decided on.
//!
//! Event times are memory times, which run on across loops of a file
//! source (`pipeline::analysis::MemoryClock`: a looped clip's second pass
//! runs one clip length later), so a time maps to the clip's frame
//! `round(t · fps) mod frames`. A run restored from an earlier memory
//! starts at that memory's end, so score runs from a fresh state directory.

use std::collections::BTreeMap;

use serde::Serialize;

use super::events::{is_true, NO_EVENT};
use super::Truth;
use crate::event::{Event, EventKind};

/// "what changed" covers the last two seconds (`qa.py`'s `WINDOW_S`).
const WINDOW_S: f64 = 2.0;
/// A shape that moved less than this many pixels in the window did not
/// move (`qa.py`).
const MOVED_PX: f64 = 8.0;

/// The per-frame truth `glimpse eval --events` reads (a clip's [`Truth`]).
impl Truth {
    /// The clip's frame at memory time `t_s`.
    pub fn frame(&self, t_s: f64) -> usize {
        let frames = self.events.len().max(1);
        ((t_s * self.fps).round().max(0.0) as usize) % frames
    }

    /// Everything that changed in the two seconds up to `frame`, as a
    /// description ("nothing changed" when nothing did). Unlike the eval's
    /// questions it is not cut at two clauses: a description is true when
    /// all it says happened, whichever events it picked.
    pub fn description(&self, frame: usize) -> String {
        let window = (WINDOW_S * self.fps) as usize;
        let first = (frame + 1).saturating_sub(window);
        let mut clauses = Vec::new();
        let mut appeared = Vec::new();
        for [verb, colour, kind, region] in self.events[first..=frame].iter().flatten() {
            if verb == "appeared" {
                clauses.push(format!("the {colour} {kind} appeared at the {region}"));
                appeared.push((colour, kind));
            }
        }
        for [verb, colour, kind, _] in self.events[first..=frame].iter().flatten() {
            if verb == "left" {
                clauses.push(format!("the {colour} {kind} left"));
            }
        }
        let start = &self.scenes[first.saturating_sub(1)];
        for s in &self.scenes[frame] {
            let before = start
                .iter()
                .find(|o| o.colour == s.colour && o.kind == s.kind);
            if let Some(o) = before {
                let moved = (s.x - o.x).hypot(s.y - o.y) > MOVED_PX;
                if moved && !appeared.contains(&(&s.colour, &s.kind)) {
                    clauses.push(format!("the {} {} moved", s.colour, s.kind));
                }
            }
        }
        if clauses.is_empty() {
            NO_EVENT.to_owned()
        } else {
            clauses.join(" and ")
        }
    }

    /// Whether watch rule `rule` ("is there a red shape?", "is there a
    /// square?", "is there a red square?") holds at `frame`; None for a
    /// rule that is not one of those.
    pub fn rule_holds(&self, rule: &str, frame: usize) -> Option<bool> {
        let rule = rule.to_lowercase().replace('?', " ");
        let words: Vec<&str> = rule.split_whitespace().collect();
        let colours = ["red", "green", "blue", "yellow"];
        let kinds = ["circle", "square", "triangle"];
        let scene = &self.scenes[frame];
        match words.as_slice() {
            ["is", "there", "a", colour, "shape"] if colours.contains(colour) => {
                Some(scene.iter().any(|s| s.colour == *colour))
            }
            ["is", "there", "a", kind] if kinds.contains(kind) => {
                Some(scene.iter().any(|s| s.kind == *kind))
            }
            ["is", "there", "a", colour, kind]
                if colours.contains(colour) && kinds.contains(kind) =>
            {
                Some(scene.iter().any(|s| s.colour == *colour && s.kind == *kind))
            }
            _ => None,
        }
    }
}

/// One event judged.
#[derive(Debug, Clone, Serialize)]
pub struct Judged {
    /// The event's id.
    pub id: String,
    /// description, rule_on or rule_off.
    pub kind: EventKind,
    /// Memory time of the frame it was decided on, in seconds.
    pub at_s: f64,
    /// That frame of the clip.
    pub frame: usize,
    /// What glimpse said.
    pub text: String,
    /// What was true (a description, or the rule's state).
    pub truth: String,
    /// Whether what it said was true; None for a rule the truth cannot
    /// decide.
    pub right: Option<bool>,
    /// The event's confidence, when it carries one.
    pub confidence: Option<f32>,
    /// A true rule transition: seconds since the truth changed, within
    /// the clip (how late the state followed it).
    pub late_s: Option<f64>,
}

/// A run's events, judged.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunScore {
    /// Every description and rule transition, in time order.
    pub judged: Vec<Judged>,
}

impl RunScore {
    /// (true, judged) for events of `kinds`.
    pub fn count(&self, kinds: &[EventKind]) -> (usize, usize) {
        self.judged
            .iter()
            .filter(|j| kinds.contains(&j.kind))
            .filter_map(|j| j.right)
            .fold((0, 0), |(t, n), r| (t + usize::from(r), n + 1))
    }

    /// Every event and the totals, as `glimpse eval --events` prints them.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:>8} {:>5} {:<11} {:>5} {:<6} {:>6} {}\n",
            "at_s", "frame", "kind", "conf", "true", "late", "said  |  truth"
        );
        for j in &self.judged {
            let kind = serde_json::to_value(j.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            out += &format!(
                "{:>8.1} {:>5} {:<11} {:>5} {:<6} {:>6} {}  |  {}\n",
                j.at_s,
                j.frame,
                kind,
                j.confidence.map_or("-".into(), |c| format!("{c:.2}")),
                match j.right {
                    Some(true) => "yes",
                    Some(false) => "NO",
                    None => "?",
                },
                j.late_s.map_or("-".into(), |l| format!("{l:.1}s")),
                j.text,
                j.truth
            );
        }
        let line = |what: &str, (t, n): (usize, usize)| {
            if n == 0 {
                format!("{what}: none published\n")
            } else {
                format!(
                    "{what}: {t}/{n} true ({:.1}%)\n",
                    100.0 * t as f64 / n as f64
                )
            }
        };
        out += "\n";
        out += &line("descriptions", self.count(&[EventKind::Description]));
        out += &line(
            "rule transitions",
            self.count(&[EventKind::RuleOn, EventKind::RuleOff]),
        );
        out += &line(
            "all",
            self.count(&[
                EventKind::Description,
                EventKind::RuleOn,
                EventKind::RuleOff,
            ]),
        );
        let late: Vec<f64> = self.judged.iter().filter_map(|j| j.late_s).collect();
        if !late.is_empty() {
            out += &format!(
                "true rule transitions came {} s after the truth changed\n",
                late.iter()
                    .map(|l| format!("{l:.1}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let undecided = self.judged.iter().filter(|j| j.right.is_none()).count();
        if undecided > 0 {
            out += &format!("{undecided} rule transitions not scored: their rule is not one of the shapes world's questions\n");
        }
        out
    }
}

/// Judges the descriptions and rule transitions among `events` (in any
/// order; answers are left out: someone asked for those).
pub fn score(truth: &Truth, events: &[Event]) -> RunScore {
    let mut judged: Vec<Judged> = events
        .iter()
        .filter_map(|e| {
            let frame = truth.frame(e.end_s);
            let mut late_s = None;
            let (truth_text, right) = match e.kind {
                EventKind::Description => {
                    let t = truth.description(frame);
                    let right = is_true(&e.text, &t);
                    (t, Some(right))
                }
                EventKind::RuleOn | EventKind::RuleOff => {
                    // The text is the rule, then the model's answer.
                    let rule = e
                        .text
                        .rsplit_once('?')
                        .map_or(e.text.as_str(), |(rule, _)| rule);
                    match truth.rule_holds(rule, frame) {
                        Some(holds) => {
                            let right = holds == (e.kind == EventKind::RuleOn);
                            if right {
                                // Back to the first frame of this stretch.
                                let since = (0..frame)
                                    .rev()
                                    .take_while(|&f| truth.rule_holds(rule, f) == Some(holds))
                                    .last()
                                    .unwrap_or(frame);
                                late_s = Some((frame - since) as f64 / truth.fps);
                            }
                            (
                                if holds { "holds" } else { "does not hold" }.to_owned(),
                                Some(right),
                            )
                        }
                        None => ("?".to_owned(), None),
                    }
                }
                EventKind::Answer => return None,
            };
            Some(Judged {
                id: e.id.clone(),
                kind: e.kind,
                at_s: e.end_s,
                frame,
                text: e.text.clone(),
                truth: truth_text,
                right,
                confidence: e.confidence,
                late_s,
            })
        })
        .collect();
    // Events of one frame in a fixed order (ids made in the same
    // millisecond do not sort by creation).
    let rank = |k: EventKind| k != EventKind::Description;
    judged.sort_by(|a, b| {
        a.at_s
            .total_cmp(&b.at_s)
            .then(rank(a.kind).cmp(&rank(b.kind)))
            .then(a.id.cmp(&b.id))
    });
    RunScore { judged }
}

/// Reads events from `glimpse events --json` output (one JSON object a
/// line); lines that are not events (dead letters) are skipped, counted in
/// the second value.
pub fn read_events(text: &str) -> (Vec<Event>, usize) {
    let mut skipped = 0;
    let events = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str::<Event>(l) {
            Ok(e) => Some(e),
            Err(_) => {
                skipped += 1;
                None
            }
        })
        .collect();
    (events, skipped)
}

/// Judged events per kind, for the JSON report.
pub fn summary(score: &RunScore) -> BTreeMap<&'static str, (usize, usize)> {
    BTreeMap::from([
        ("description", score.count(&[EventKind::Description])),
        (
            "rule_transition",
            score.count(&[EventKind::RuleOn, EventKind::RuleOff]),
        ),
        (
            "all",
            score.count(&[
                EventKind::Description,
                EventKind::RuleOn,
                EventKind::RuleOff,
            ]),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn demo() -> Truth {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/shapes/clips/demo.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn event(kind: EventKind, text: &str, at_s: f64) -> Event {
        let t = Duration::from_secs_f64(at_s);
        Event::new("demo", kind, text.to_owned(), (t, t))
    }

    /// The demo's script (make_clips.py): the red square appears at frame
    /// 6 (3 s) and leaves at 56 (28 s); the clip is 120 frames at 2 fps.
    #[test]
    fn the_demo_truth_judges_a_run_across_loops() {
        let truth = demo();
        assert_eq!(truth.frame(3.0), 6);
        assert_eq!(truth.frame(63.0), 6, "the second loop maps back");
        assert_eq!(
            truth.description(7),
            "the red square appeared at the top left"
        );
        assert_eq!(truth.description(12), NO_EVENT);
        assert_eq!(truth.rule_holds("is there a red shape?", 6), Some(true));
        assert_eq!(truth.rule_holds("Is there a red shape ?", 60), Some(false));
        assert_eq!(truth.rule_holds("is there a square?", 60), Some(false));
        assert_eq!(truth.rule_holds("is there a blue circle?", 60), Some(true));
        assert_eq!(truth.rule_holds("is it raining?", 60), None);
        let events = [
            event(
                EventKind::Description,
                "the red square appeared at the bottom",
                3.5,
            ),
            event(EventKind::RuleOn, "is there a red shape? yes", 3.5),
            // The red square left at 28 s, the rule went off: but it is
            // said at 13 s, when the square is still there.
            event(EventKind::RuleOff, "is there a red shape? no", 13.0),
            event(EventKind::Description, "the blue circle appeared", 13.0),
            event(EventKind::Description, "the red square left", 88.5),
            event(EventKind::RuleOff, "is there a red shape? no", 88.5),
            event(EventKind::Answer, "one", 90.0),
        ];
        let s = score(&truth, &events);
        let right: Vec<Option<bool>> = s.judged.iter().map(|j| j.right).collect();
        assert_eq!(
            right,
            [
                Some(true),
                Some(true),
                Some(false),
                Some(false),
                Some(true),
                Some(true)
            ]
        );
        assert_eq!(s.count(&[EventKind::Description]), (2, 3));
        // The rule turned on at frame 7 (3.5 s), half a second after the
        // square appeared at frame 6; off at 88.5 s (frame 57), one frame
        // after it left at 56.
        let late: Vec<Option<f64>> = s.judged.iter().map(|j| j.late_s).collect();
        assert_eq!(late, [None, Some(0.5), None, None, None, Some(0.5)]);
        assert_eq!(s.count(&[EventKind::RuleOn, EventKind::RuleOff]), (2, 3));
        let table = s.table();
        assert!(table.contains("descriptions: 2/3 true (66.7%)"), "{table}");
    }

    #[test]
    fn events_are_read_from_glimpse_events_json_lines() {
        let e = event(EventKind::Description, "nothing changed", 1.0);
        let text = format!(
            "{}\n{{\"kind\":\"dead_letter\"}}\n\n{}\n",
            serde_json::to_string(&e).unwrap(),
            serde_json::to_string(&e).unwrap()
        );
        let (events, skipped) = read_events(&text);
        assert_eq!((events.len(), skipped), (2, 1));
    }
}
