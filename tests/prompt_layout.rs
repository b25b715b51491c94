//! Prompt layouts per model family (issue 19): SmolVLM2 reads the memory
//! as the video prompt transformers' `SmolVLMProcessor` builds, token for
//! token (models/testing/smolvlm_video_prompt.py runs transformers' own
//! code on the same tokenizer); our models keep glimpse's layout; the
//! layout can be set in `[model]`, and a bad value is refused naming the
//! key.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use glimpse::infer::{ModelFolder, PromptLayout};
use glimpse::llm::{Responder, Seen, Visual, DESCRIBE, DESCRIBE_INSTRUCT};

use crate::harness::{check, copy_model, repo};

/// models/test-hub as a real SmolVLM2 folder has it: no `glimpse` section
/// in config.json, so SmolVLM's image markers are on and `auto` picks the
/// video layout; with a byte-level BPE tokenizer as SmolLM2's
/// (tests/fixtures/smolvlm-bpe, made by models/testing/make_bpe_tokenizer.py)
/// so that every character of the prompt's text shows in its ids, and
/// SmolVLM2's special tokens at test-hub's ids.
fn smolvlm_folder(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    copy_model(&repo().join("models/test-hub"), &model);
    std::fs::copy(
        repo().join("tests/fixtures/smolvlm-bpe/tokenizer.json"),
        model.join("tokenizer.json"),
    )
    .unwrap();
    let file = model.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    config.as_object_mut().unwrap().remove("glimpse");
    std::fs::write(&file, config.to_string()).unwrap();
    model
}

/// transformers' video prompt for frames at `times_ms` and `question`:
/// (token ids, indices of the image tokens).
fn transformers_prompt(model: &Path, times_ms: &[u64], question: &str) -> (Vec<i64>, Vec<i64>) {
    transformers_prompt_about(model, times_ms, question, None)
}

/// [`transformers_prompt`] with a system message `about` first.
fn transformers_prompt_about(
    model: &Path,
    times_ms: &[u64],
    question: &str,
    about: Option<&str>,
) -> (Vec<i64>, Vec<i64>) {
    let times: Vec<String> = times_ms.iter().map(u64::to_string).collect();
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("models/testing/smolvlm_video_prompt.py"))
        .arg(model)
        .args(["--times-ms", &times.join(","), "--question", question]);
    if let Some(about) = about {
        cmd.args(["--system", about]);
    }
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .expect("python3 with transformers (scripts/install-deps)");
    assert!(out.status.success(), "smolvlm_video_prompt.py failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ints = |key: &str| -> Vec<i64> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_i64().unwrap())
            .collect()
    };
    (ints("ids"), ints("image_positions"))
}

/// Two remembered frames and the canvas, at memory times far from 0 (the
/// video is timed from its oldest frame: 0, 1.5 and 62 s) and over a
/// minute apart.
fn context<'a>(grid: usize, cells: [&'a [u32]; 3], tokens: [&'a [f32]; 3]) -> Vec<Seen<'a>> {
    let times = [250.0, 251.5, 312.0];
    (0..3)
        .map(|i| Seen {
            at: Duration::from_secs_f64(times[i]),
            now: i == 2,
            visual: Visual {
                grid,
                positions: cells[i],
                tokens: tokens[i],
            },
        })
        .collect()
}

#[test]
fn issue_19_smolvlm2_video_prompt_of_a_3_frame_memory_matches_transformers_token_for_token() {
    let dir = tempfile::tempdir().unwrap();
    matches_transformers(&smolvlm_folder(dir.path()));
    // And on a real-size SmolVLM2 folder with SmolLM2's own vocabulary when
    // one is given (models/testing/make_smolvlm2_random.py builds one).
    if let Some(folder) = std::env::var_os("GLIMPSE_SMOLVLM_FOLDER") {
        matches_transformers(Path::new(&folder));
    }
}

fn matches_transformers(model: &Path) {
    let folder = ModelFolder::open(model, "").unwrap();
    assert_eq!(folder.prompt_layout, PromptLayout::SmolvlmVideo);
    let responder = Responder::from_folder(&folder, 8).unwrap();
    let (grid, hidden) = (folder.info.tokens_per_image(), folder.info.hidden);
    let image = folder.info.image_token_id;

    let all: Vec<u32> = (0..grid as u32).collect();
    let tokens = vec![0.25f32; grid * hidden];
    let (ids, image_positions) = transformers_prompt(model, &[0, 1500, 62000], DESCRIBE);
    assert_eq!(image_positions.len(), 3 * grid, "three frames of {grid}");

    // Every token kept: the same ids, image tokens at the same places, and
    // position ids 0, 1, 2, ... as transformers gives them.
    let full = responder
        .prompt(
            &context(grid, [&all, &all, &all], [&tokens, &tokens, &tokens]),
            DESCRIBE,
        )
        .unwrap();
    assert_eq!(full.ids, ids);
    assert_eq!(full.positions, (0..ids.len() as i64).collect::<Vec<_>>());
    let ours: Vec<i64> = full
        .ids
        .iter()
        .zip(&full.positions)
        .filter(|(&id, _)| id == image)
        .map(|(_, &p)| p)
        .collect();
    assert_eq!(ours, image_positions);

    // Change blindness dropped most of the second frame: its kept tokens
    // keep the positions they have in the full layout, and nothing else
    // moves.
    let kept: [u32; 3] = [0, 9, grid as u32 - 1];
    let dropped = responder
        .prompt(
            &context(
                grid,
                [&all, &kept, &all],
                [&tokens, &tokens[..kept.len() * hidden], &tokens],
            ),
            DESCRIBE,
        )
        .unwrap();
    let second_frame = &image_positions[grid..2 * grid];
    let expected: Vec<(i64, i64)> = ids
        .iter()
        .enumerate()
        .map(|(p, &id)| (id, p as i64))
        .filter(|(_, p)| match second_frame.iter().position(|q| q == p) {
            Some(cell) => kept.contains(&(cell as u32)),
            None => true,
        })
        .collect();
    let ours: Vec<(i64, i64)> = dropped
        .ids
        .iter()
        .copied()
        .zip(dropped.positions.iter().copied())
        .collect();
    assert_eq!(ours, expected);
}

/// Issue 42: a camera's own question and context reach SmolVLM2 as
/// transformers lays them out (the context as a system message), and the
/// defaults follow the folder: SmolVLM2's instruct question, the demo
/// model's own from its config.json.
#[test]
fn issue42_a_cameras_question_and_context_reach_smolvlm2_token_for_token() {
    let dir = tempfile::tempdir().unwrap();
    let model = smolvlm_folder(dir.path());
    let folder = ModelFolder::open(&model, "").unwrap();
    let responder = Responder::from_folder(&folder, 8).unwrap();
    let (grid, hidden) = (folder.info.tokens_per_image(), folder.info.hidden);
    let all: Vec<u32> = (0..grid as u32).collect();
    let tokens = vec![0.25f32; grid * hidden];
    let seen = context(grid, [&all, &all, &all], [&tokens, &tokens, &tokens]);

    let words = responder.words(None, Some("Front door. People and parcels matter."), None);
    assert_eq!(
        (words.describe.as_str(), words.describe_from),
        (DESCRIBE_INSTRUCT, "default")
    );
    assert!(!words.context_ignored);
    let ours = responder
        .prompt_about(&seen, &words.describe, words.context.as_deref())
        .unwrap();
    let (ids, _) = transformers_prompt_about(
        &model,
        &[0, 1500, 62000],
        DESCRIBE_INSTRUCT,
        words.context.as_deref(),
    );
    assert_eq!(ours.ids, ids);
    let (without, _) = transformers_prompt(&model, &[0, 1500, 62000], DESCRIBE_INSTRUCT);
    assert!(
        ids.len() > without.len(),
        "the system message is in the prompt"
    );

    // The camera's own question wins; "no news" is recognised whatever
    // its case and closing full stop.
    let words = responder.words(
        Some("Anything new at the door?"),
        None,
        Some(&["nothing new".to_owned()]),
    );
    assert_eq!(words.describe_from, "config");
    assert!(words.is_no_news("Nothing new."));
    assert!(!words.is_no_news("nothing changed"));

    // The demo model: its folder's question, and no place for a context.
    let shapes = ModelFolder::open(&repo().join("models/shapes/model"), "").unwrap();
    let shapes = Responder::from_folder(&shapes, 8).unwrap();
    let words = shapes.words(None, Some("a context"), None);
    assert_eq!(
        (words.describe.as_str(), words.describe_from),
        (DESCRIBE, "model folder")
    );
    assert_eq!(words.no_news, ["nothing changed"]);
    assert!(words.context_ignored);
}

#[test]
fn the_layout_is_chosen_from_the_folder_and_inspect_says_which_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let smolvlm = ModelFolder::open(&smolvlm_folder(dir.path()), "").unwrap();
    assert_eq!(smolvlm.prompt_layout, PromptLayout::SmolvlmVideo);
    assert!(
        smolvlm.to_string().contains(
            "prompt layout  smolvlm-video (config.json model_type smolvlm, \
             processor_config.json processor_class SmolVLMProcessor)\n"
        ),
        "{smolvlm}"
    );
    // Our models were trained on glimpse's layout, and say so.
    for ours in ["models/shapes/model", "models/test-hub"] {
        let folder = ModelFolder::open(&repo().join(ours), "").unwrap();
        assert_eq!(folder.prompt_layout, PromptLayout::Glimpse, "{ours}");
        assert!(
            folder.to_string().contains(
                "prompt layout  glimpse (config.json glimpse.wrap_images false: trained on \
                 glimpse's layout)\n"
            ),
            "{folder}"
        );
    }
    // `[model] prompt_layout` overrides the folder.
    let mut folder = smolvlm;
    folder.set_prompt_layout(PromptLayout::Auto);
    assert_eq!(folder.prompt_layout, PromptLayout::SmolvlmVideo);
    folder.set_prompt_layout(PromptLayout::Glimpse);
    assert_eq!(folder.prompt_layout, PromptLayout::Glimpse);
    let responder = Responder::from_folder(&folder, 8).unwrap();
    assert_eq!(responder.layout(), PromptLayout::Glimpse);
}

#[test]
fn a_bad_prompt_layout_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("glimpse.toml");
    let write = |layout: &str| {
        std::fs::write(
            &config,
            format!(
                "[model]\npath = {:?}\nprompt_layout = {layout:?}\n\
                 [cameras.door]\nsource = {{ kind = \"synthetic\" }}\n",
                repo().join("models/shapes/model")
            ),
        )
        .unwrap()
    };
    write("smolvlm-video");
    let out = check(&config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    write("video");
    let out = check(&config);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(
            "model.prompt_layout: unknown variant `video`, expected one of `auto`, `glimpse`, \
             `smolvlm-video`"
        ),
        "{stderr}"
    );
}
