//! A `describe` answer of the shapes world read as events, and event-level
//! scoring (docs/architecture.md §9). The model says "the red square
//! appeared at the top left and the blue circle left"; exact match scores a
//! right event with a wrong region word, or two events in the other order,
//! as wrong, so the eval also scores the events: precision, recall and F1
//! of (verb, colour, kind), and the region of each matched event apart.
//!
//! The truth's events are read from the truth's answer: `qa.py` writes it
//! from the clip's events in the question's window (plus "moved", which the
//! per-frame events do not carry), capped at the two clauses the model is
//! taught to say, so a model that says what the task asks can reach F1 1.

use serde::Serialize;

/// The shapes world's vocabulary (`models/shapes/world.py`).
const COLOURS: [&str; 4] = ["red", "green", "blue", "yellow"];
const KINDS: [&str; 3] = ["circle", "square", "triangle"];
const VERBS: [&str; 3] = ["appeared", "left", "moved"];
/// What `qa.py` answers when nothing changed in the window.
pub const NO_EVENT: &str = crate::llm::NOTHING_CHANGED;

/// One event of a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// appeared, left or moved.
    pub verb: String,
    /// The shape's colour.
    pub colour: String,
    /// The shape's kind.
    pub kind: String,
    /// Where it appeared ("top left", "center"), when said.
    pub region: Option<String>,
}

/// A description read as events; clauses that are not an event of the
/// shapes world are counted, and score as false events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Description {
    /// The events, in the order said.
    pub events: Vec<Event>,
    /// Clauses that are not events.
    pub unparsed: usize,
}

/// Reads `text` ("the red square appeared at the top left and the blue
/// circle left", or "nothing changed") as events.
pub fn parse(text: &str) -> Description {
    let text = text.trim().to_lowercase();
    let text = text.trim_end_matches(['.', ' ']);
    let mut out = Description::default();
    if text.is_empty() || text == NO_EVENT {
        return out;
    }
    for clause in text.split(" and ") {
        match clause_event(clause) {
            Some(e) => out.events.push(e),
            None => out.unparsed += 1,
        }
    }
    out
}

/// "the COLOUR KIND VERB [at the REGION]".
fn clause_event(clause: &str) -> Option<Event> {
    let words: Vec<&str> = clause.split_whitespace().collect();
    let [the, colour, kind, verb, rest @ ..] = words.as_slice() else {
        return None;
    };
    if *the != "the" || !COLOURS.contains(colour) || !KINDS.contains(kind) || !VERBS.contains(verb)
    {
        return None;
    }
    let region = match rest {
        [] => None,
        ["at", "the", region @ ..] if is_region(region) => Some(region.join(" ")),
        _ => return None,
    };
    Some(Event {
        verb: verb.to_string(),
        colour: colour.to_string(),
        kind: kind.to_string(),
        region,
    })
}

/// `world.where`: "center", or a row (top/bottom) and/or a column
/// (left/right), row first.
fn is_region(words: &[&str]) -> bool {
    matches!(
        words,
        ["center"] | ["top" | "bottom"] | ["left" | "right"] | ["top" | "bottom", "left" | "right"]
    )
}

/// Is everything `predicted` says true of `truth`? Every event it names
/// (verb, colour, kind) is one of the truth's, nothing is unreadable, and
/// "nothing changed" only when nothing did. Regions are not asked: a right
/// event at a wrong place is still news that happened. This is what a
/// daemon's published description must meet (`glimpse eval --run`).
pub fn is_true(predicted: &str, truth: &str) -> bool {
    let mut s = EventScore::default();
    s.add(predicted, truth);
    s.unparsed == 0 && s.matched == s.predicted && (s.predicted > 0 || s.truth == 0)
}

/// Event counts summed over answers: the F1 is pooled over every event
/// (micro-averaged), so an answer with two events weighs twice one with one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EventScore {
    /// Predicted events that match a true one (verb, colour, kind).
    pub matched: usize,
    /// Predicted events (unparsed clauses included).
    pub predicted: usize,
    /// True events.
    pub truth: usize,
    /// Matched events whose truth has a region.
    pub region_asked: usize,
    /// Of those, the ones whose predicted region is the true one.
    pub region_right: usize,
    /// Predicted clauses that are not events of the shapes world.
    pub unparsed: usize,
}

impl EventScore {
    /// Scores `predicted` against `truth` and adds the counts.
    pub fn add(&mut self, predicted: &str, truth: &str) {
        let (p, t) = (parse(predicted), parse(truth));
        self.predicted += p.events.len() + p.unparsed;
        self.unparsed += p.unparsed;
        self.truth += t.events.len() + t.unparsed;
        // Each true event matches at most one predicted event.
        let mut open: Vec<&Event> = t.events.iter().collect();
        for e in &p.events {
            let same = |o: &&Event| o.verb == e.verb && o.colour == e.colour && o.kind == e.kind;
            if let Some(i) = open.iter().position(same) {
                let o = open.swap_remove(i);
                self.matched += 1;
                if let Some(region) = &o.region {
                    self.region_asked += 1;
                    self.region_right += usize::from(e.region.as_ref() == Some(region));
                }
            }
        }
    }

    /// Matched over predicted; 1 when nothing was predicted and nothing
    /// happened, 0 when nothing was predicted but something happened.
    pub fn precision(&self) -> f64 {
        ratio(self.matched, self.predicted, self.truth == 0)
    }

    /// Matched over true events; 1 when there were none and none was said.
    pub fn recall(&self) -> f64 {
        ratio(self.matched, self.truth, self.predicted == 0)
    }

    /// Harmonic mean of precision and recall.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }

    /// Right regions over matched events that have one (NaN when none).
    pub fn region(&self) -> f64 {
        if self.region_asked == 0 {
            f64::NAN
        } else {
            self.region_right as f64 / self.region_asked as f64
        }
    }
}

fn ratio(n: usize, d: usize, empty_is_right: bool) -> f64 {
    if d > 0 {
        n as f64 / d as f64
    } else if empty_is_right {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(verb: &str, colour: &str, kind: &str, region: Option<&str>) -> Event {
        Event {
            verb: verb.into(),
            colour: colour.into(),
            kind: kind.into(),
            region: region.map(Into::into),
        }
    }

    #[test]
    fn descriptions_read_as_events() {
        assert_eq!(parse("nothing changed"), Description::default());
        assert_eq!(
            parse("the red square appeared at the top left and the blue circle left"),
            Description {
                events: vec![
                    event("appeared", "red", "square", Some("top left")),
                    event("left", "blue", "circle", None),
                ],
                unparsed: 0,
            }
        );
        assert_eq!(
            parse(" The yellow triangle appeared at the center and the green circle moved "),
            Description {
                events: vec![
                    event("appeared", "yellow", "triangle", Some("center")),
                    event("moved", "green", "circle", None),
                ],
                unparsed: 0,
            }
        );
        // Not shapes-world events: a purple shape, a bad region, a stray word.
        let d =
            parse("the purple square appeared and the red circle appeared at the moon and left");
        assert_eq!((d.events.len(), d.unparsed), (0, 3));
    }

    /// Every describe answer of the bundled clips reads as events with
    /// nothing left over, and its appearances and departures are the
    /// clip's own events of the question's window (`qa.describe`: the last
    /// two seconds), with their regions.
    #[test]
    fn bundled_truths_are_the_window_events() {
        let clips = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/shapes/clips");
        let mut files: Vec<_> = ["eval/dev", "eval/test"]
            .iter()
            .flat_map(|set| std::fs::read_dir(clips.join(set)).unwrap())
            .map(|e| e.unwrap().path())
            .collect();
        files.push(clips.join("demo.json"));
        files.retain(|p| p.extension().is_some_and(|e| e == "json"));
        let mut checked = 0;
        for file in files {
            let truth: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let window = (2.0 * truth["fps"].as_f64().unwrap()) as usize;
            let frames = truth["events"].as_array().unwrap();
            for q in truth["questions"].as_array().unwrap() {
                if q["task"] != "describe" {
                    continue;
                }
                let answer = q["answer"].as_str().unwrap();
                let d = parse(answer);
                assert_eq!(d.unparsed, 0, "{}: {answer}", file.display());
                let now = q["frame"].as_u64().unwrap() as usize;
                let first = (now + 1).saturating_sub(window);
                let happened: Vec<Event> = frames[first..=now]
                    .iter()
                    .flat_map(|f| f.as_array().unwrap())
                    .map(|e| {
                        let w = |i: usize| e[i].as_str().unwrap();
                        let region = (w(0) == "appeared").then(|| w(3));
                        event(w(0), w(1), w(2), region)
                    })
                    .collect();
                for e in d.events.iter().filter(|e| e.verb != "moved") {
                    assert!(
                        happened.contains(e),
                        "{} frame {now}: {e:?} not in {happened:?}",
                        file.display()
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 50, "{checked} events checked");
    }

    #[test]
    fn events_score_precision_recall_f1_and_region_apart() {
        let truth = "the red square appeared at the top left and the blue circle left";
        let mut s = EventScore::default();
        // Both events, other order, wrong region: exact match says wrong.
        s.add(
            "the blue circle left and the red square appeared at the bottom",
            truth,
        );
        assert_eq!((s.matched, s.predicted, s.truth), (2, 2, 2));
        assert_eq!((s.precision(), s.recall(), s.f1()), (1.0, 1.0, 1.0));
        assert_eq!((s.region_asked, s.region_right, s.region()), (1, 0, 0.0));

        let mut s = EventScore::default();
        // One right event, one invented: P 1/2, R 1/2.
        s.add(
            "the red square appeared at the top left and the green circle left",
            truth,
        );
        assert_eq!((s.precision(), s.recall(), s.region()), (0.5, 0.5, 1.0));
        assert!((s.f1() - 0.5).abs() < 1e-12);
        // Pooled with a "nothing changed" that was right, and one that
        // missed an event: P 1/2, R 1/3.
        s.add("nothing changed", "nothing changed");
        s.add("nothing changed", "the green triangle moved");
        assert_eq!((s.matched, s.predicted, s.truth), (1, 2, 3));
        assert!((s.f1() - 0.4).abs() < 1e-12, "{}", s.f1());

        // A duplicate prediction matches one true event only.
        let mut s = EventScore::default();
        s.add(
            "the blue circle left and the blue circle left",
            "the blue circle left",
        );
        assert_eq!((s.matched, s.predicted, s.truth), (1, 2, 1));

        // True: everything said happened (regions aside); a miss, an
        // invention or an unreadable clause is not.
        assert!(is_true(
            "the blue circle left and the red square appeared at the bottom",
            truth
        ));
        assert!(is_true("the blue circle left", truth));
        assert!(!is_true("nothing changed", truth));
        assert!(is_true("nothing changed", "nothing changed"));
        assert!(!is_true("the green circle left", truth));
        assert!(!is_true("the blue circle left and it rained", truth));

        // Nothing happened and nothing said: perfect; something said: 0.
        let mut s = EventScore::default();
        s.add("nothing changed", "nothing changed");
        assert_eq!(s.f1(), 1.0);
        s.add("the red circle left", "nothing changed");
        assert_eq!(s.f1(), 0.0);
    }
}
