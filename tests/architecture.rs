//! The module graph keeps its layers (docs/architecture.md §1, issue 40).
//!
//! Reads every `crate::…` path in `daemon/src` (`use` lines and paths in
//! code alike; unit tests left out), builds the graph of top-level modules (`capture`, `mqtt`,
//! …) and checks each arrow against the layering written below as data: a
//! module may use only modules of a lower layer. It fails on any import
//! circle and on any arrow against the layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layers, lowest first. A module may use modules of lower layers only;
/// leaves (layer 1) may also use each other.
const LAYERS: &[(&str, u8)] = &[
    // 1: leaf types and helpers that know no stage.
    ("settings", 1),
    ("event", 1),
    ("frame", 1),
    ("tokens", 1),
    ("region", 1),
    ("slow", 1),
    ("queue", 1),
    ("histogram", 1),
    ("imageops", 1),
    ("health", 1),
    ("chart", 1),
    // 2: the model runtime and the worker pool the stages share.
    ("infer", 2),
    ("workers", 2),
    // 3: the stages.
    ("capture", 3),
    ("vision", 3),
    ("dtd", 3),
    ("memory", 3),
    ("trigger", 3),
    ("llm", 3),
    ("snapshot", 3),
    ("mqtt", 3),
    // 4: the camera unit and the wiring.
    ("pipeline", 4),
    // 5: what shows or drives the whole: the HTTP endpoint (the status
    // page reads the pipeline's and MQTT's counters) and the test hooks
    // (cargo feature `fault-injection`).
    ("http", 5),
    ("faults", 5),
    // 6: the config as a whole: it composes every section.
    ("config", 6),
    // 7: the service, the benchmark and the tuner.
    ("service", 7),
    ("eval", 7),
    ("tune", 7),
    ("doctor", 7),
    ("zones", 7),
    // 8: the commands, one module each; `main.rs` dispatches to them.
    ("cli", 8),
];

/// The top-level modules each top-level module uses, from the `crate::`
/// paths in its files.
fn arrows(src: &Path) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![src.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let from = first.trim_end_matches(".rs").to_owned();
            if from == "lib" || from == "main" {
                continue;
            }
            // Unit tests (a `tests` file, or a `mod tests` at the end of a
            // file) may build what they test from the whole config.
            if path.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text
                .find("\n#[cfg(test)]\nmod tests {")
                .map_or(text.as_str(), |end| &text[..end]);
            for to in used_modules(code) {
                if to != from {
                    out.insert((from.clone(), to));
                }
            }
        }
    }
    out
}

/// The first path segment after each `crate::` in `text`, comments left
/// out; `crate::{a, b::c}` gives `a` and `b`.
fn used_modules(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        // `glimpse_crate::` and the like are not ours.
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group, up to its closing brace.
            let (mut depth, mut item_start) = (0usize, true);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident(&group[i..]);
                        if !name.is_empty() && name != "self" {
                            found.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

/// Arrows that the layering does not allow (unknown modules included).
fn violations(arrows: &BTreeSet<(String, String)>) -> BTreeSet<(String, String)> {
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    arrows
        .iter()
        .filter(
            |(from, to)| match (layer.get(from.as_str()), layer.get(to.as_str())) {
                // Leaves may use each other (the circle check still holds).
                (Some(f), Some(t)) => t > f || (t == f && *f > 1),
                _ => true,
            },
        )
        .cloned()
        .collect()
}

/// The modules that lie on a circle of arrows.
fn on_circles(arrows: &BTreeSet<(String, String)>) -> BTreeSet<String> {
    let nodes: BTreeSet<&String> = arrows.iter().flat_map(|(a, b)| [a, b]).collect();
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for (a, b) in arrows {
                if *a == n && seen.insert(b.clone()) {
                    stack.push(b.clone());
                }
            }
        }
        seen
    };
    nodes
        .into_iter()
        .filter(|n| reach(n).contains(*n))
        .cloned()
        .collect()
}

#[test]
fn the_module_graph_keeps_its_layers() {
    let src = crate::harness::repo().join("daemon/src");
    let arrows = arrows(&src);
    assert!(arrows.len() > 20, "the graph was not read: {arrows:?}");
    let known: BTreeSet<String> = LAYERS.iter().map(|(m, _)| m.to_string()).collect();
    let modules: BTreeSet<String> = arrows
        .iter()
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    let unplaced: Vec<&String> = modules.difference(&known).collect();
    assert!(
        unplaced.is_empty(),
        "modules with no layer: {unplaced:?}; add each to LAYERS in tests/architecture.rs and docs/architecture.md §1"
    );
    let broken = violations(&arrows);
    let circles = on_circles(&arrows);
    eprintln!(
        "module graph: {} arrows, {} against the layers, {} modules on circles: {circles:?}",
        arrows.len(),
        broken.len(),
        circles.len()
    );
    assert!(
        circles.is_empty(),
        "an import circle through {circles:?}: a module may use only modules of a lower layer"
    );
    assert!(
        broken.is_empty(),
        "arrows against the layering (docs/architecture.md §1): {broken:?}; a module may use only modules of a lower layer"
    );
}

/// The checker itself: an arrow up (a circle) is caught.
#[test]
fn an_arrow_up_is_caught() {
    let mut arrows: BTreeSet<(String, String)> = [("mqtt", "queue"), ("service", "mqtt")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert!(violations(&arrows).is_empty() && on_circles(&arrows).is_empty());
    arrows.insert(("queue".into(), "service".into()));
    assert_eq!(
        violations(&arrows),
        [("queue".to_string(), "service".to_string())]
            .into_iter()
            .collect()
    );
    assert_eq!(on_circles(&arrows).len(), 3);
    assert_eq!(
        used_modules(
            "use crate::{a::B, b, self};\nlet x = crate::c::d(); // crate::e\nmy_crate::f"
        ),
        ["a", "b", "c"].iter().map(|s| s.to_string()).collect()
    );
}
