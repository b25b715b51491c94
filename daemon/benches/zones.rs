//! Zone-scoped watch rules on the shapes world (issue 42): a rule asked
//! about one zone, the two ways glimpse can show the model a zone, against
//! the same rule asked about the whole frame. The truth is known: "is
//! there a COLOUR shape ?" about the left or the right half holds when a
//! shape of that colour has its centre in that half.
//!
//! Per frame of the clips (the demo clip and the dev clips, every frame at
//! 2 fps), per half, per colour on screen (a shape straddling the middle
//! line is left out: which half it is in is moot), the model of the
//! config (the demo model by default) answers with:
//! - `whole`: the frame's 64 tokens (the rule about the whole frame: right
//!   only where the zone happens to agree with the frame);
//! - `tokens`: the zone's tokens only, at their places (`Context::within`,
//!   what `look = "tokens"` does; no extra encoder call);
//! - `crop`: the zone's bounding box cut out, padded to a square and
//!   encoded as an image of its own (`ZoneRule::crop`, `look = "crop"`).
//!
//! Prints accuracy, ms per check (the crop's encoder call included) and
//! visual tokens per check. Run: `cargo bench --bench zones [-- MODEL_DIR]`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use glimpse::infer::ModelConfig;
use glimpse::pipeline::{build_model_stages, Context, Look, ZoneRule};
use glimpse::region::Polygon;

/// One way of showing the zone, and its tally.
#[derive(Default)]
struct Tally {
    right: usize,
    asked: usize,
    time: Duration,
    visual: usize,
}

fn clips(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.join("models/shapes/clips/demo.json")];
    let dev = root.join("models/shapes/clips/eval/dev");
    let mut more: Vec<PathBuf> = std::fs::read_dir(&dev)
        .expect("the dev clips")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    more.sort();
    out.extend(more);
    out
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let model = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map_or_else(|| root.join("models/shapes/model"), PathBuf::from);
    let stages = build_model_stages(&ModelConfig::new(&model), None).expect("the model loads");
    let info = stages.model.folder().info.clone();
    let grid = info.tokens_per_image();
    let halves = [
        ("left", [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]),
        ("right", [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]),
    ];
    let mut tallies: [(&str, Tally); 3] = [
        ("whole", Tally::default()),
        ("tokens", Tally::default()),
        ("crop", Tally::default()),
    ];
    let mut backend = stages.model.backend();
    let mut frames_seen = 0;
    for json in clips(&root) {
        let truth: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let video = json
            .parent()
            .unwrap()
            .join(truth["video"].as_str().unwrap());
        let size = truth["size"].as_f64().unwrap();
        let scenes = truth["scenes"].as_array().unwrap().clone();
        let mut frames = Vec::new();
        glimpse::capture::read_clip(&video, 2.0, info.image_size, &[], |f| {
            frames.push(f);
            Ok(())
        })
        .expect("the clip decodes");
        for (frame, scene) in frames.iter().zip(&scenes) {
            frames_seen += 1;
            let shapes = scene.as_array().unwrap();
            let tokens = glimpse::vision::encode(backend.as_mut(), &stages.preprocessor, frame)
                .expect("encodes")
                .features;
            let whole = Context::frame(frame.pts, grid, tokens);
            let mut colours: Vec<&str> = shapes
                .iter()
                .map(|s| s["colour"].as_str().unwrap())
                .collect();
            colours.sort();
            colours.dedup();
            for (zone, points) in &halves {
                let polygon = Polygon(points.to_vec());
                let (x0, x1) = if *zone == "left" {
                    (0.0, size / 2.0)
                } else {
                    (size / 2.0, size)
                };
                for colour in &colours {
                    let of_colour = shapes.iter().filter(|s| s["colour"] == *colour);
                    let straddles = of_colour.clone().any(|s| {
                        let (x, r) = (s["x"].as_f64().unwrap(), s["r"].as_f64().unwrap());
                        x - r < size / 2.0 && x + r > size / 2.0
                    });
                    if straddles {
                        continue;
                    }
                    let holds = of_colour
                        .clone()
                        .any(|s| (x0..x1).contains(&s["x"].as_f64().unwrap()));
                    let rule = format!("is there a {colour} shape ?");
                    for (way, tally) in &mut tallies {
                        let started = Instant::now();
                        let (context, crop);
                        let seen = match *way {
                            "whole" => whole.seen(),
                            "tokens" => {
                                context = whole.within(&polygon);
                                context.seen()
                            }
                            _ => {
                                let zone_rule = ZoneRule {
                                    text: rule.clone(),
                                    points: polygon.clone(),
                                    look: Look::Crop,
                                };
                                let features = glimpse::vision::encode(
                                    backend.as_mut(),
                                    &stages.preprocessor,
                                    &zone_rule.crop(frame),
                                )
                                .expect("encodes")
                                .features;
                                crop = Context::frame(frame.pts, grid, features);
                                crop.seen()
                            }
                        };
                        let (yes, _) = stages
                            .responder
                            .check_rule(backend.as_mut(), &seen, &rule)
                            .expect("answers");
                        tally.time += started.elapsed();
                        tally.visual +=
                            seen.iter().map(|s| s.visual.positions.len()).sum::<usize>();
                        tally.asked += 1;
                        tally.right += usize::from(yes == holds);
                    }
                }
            }
        }
    }
    println!(
        "model: {} ({}), {frames_seen} frames, {} questions about a half of the frame",
        model.display(),
        stages.model.runtime(),
        tallies[0].1.asked
    );
    println!(
        "{:<8} {:>9} {:>12} {:>15}",
        "way", "accuracy", "ms / check", "visual tokens"
    );
    for (way, t) in &tallies {
        let n = t.asked.max(1) as f64;
        println!(
            "{way:<8} {:>8.1}% {:>12.1} {:>15.1}",
            100.0 * t.right as f64 / n,
            t.time.as_secs_f64() * 1000.0 / n,
            t.visual as f64 / n
        );
    }
}
