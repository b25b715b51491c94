//! The model runtime on the test model (models/test-tiny, random weights in
//! the onnx-community layout): loading, preprocessing, splicing, the KV
//! cache, position ids, an independent ONNX Runtime reference, the chat
//! template against jinja2, broken folders.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use glimpse::infer::{self, BackendKind, ModelConfig, ModelFolder};
use glimpse::llm::{self, Content, Message, Prompt, Sampling, Stop, TextCodec};
use glimpse::vision::Preprocessor;

fn test_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/test-tiny")
}

fn load() -> infer::Model {
    infer::load(&ModelConfig {
        backend: BackendKind::Tract,
        threads: 1,
        ..ModelConfig::new(test_model())
    })
    .unwrap()
}

/// Runs a script of models/testing with `request` as JSON on stdin.
pub(crate) fn python(script: &str, request: serde_json::Value) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/testing")
        .join(script);
    let mut child = Command::new("python3")
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (pip install -r models/testing/requirements.txt)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{script} failed");
    String::from_utf8(out.stdout).unwrap()
}

fn reference_logits(ids: &[i64], positions: &[i64], pixels: Option<&[f32]>) -> Vec<f32> {
    let out = python(
        "reference.py",
        serde_json::json!({
            "model": test_model(),
            "input_ids": ids,
            "position_ids": positions,
            "pixel_values": pixels,
        }),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

pub(crate) fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// A frame-like test picture: a gradient with a bright square.
pub(crate) fn picture(size: usize) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(size * size * 3);
    for y in 0..size {
        for x in 0..size {
            let inside = (20..40).contains(&x) && (10..30).contains(&y);
            rgb.extend_from_slice(&if inside {
                [250, 40, 40]
            } else {
                [(x * 4) as u8, (y * 4) as u8, 90]
            });
        }
    }
    rgb
}

#[test]
fn the_folder_reports_its_shape() {
    let folder = ModelFolder::open(&test_model(), "").unwrap();
    let i = &folder.info;
    assert_eq!(
        (i.image_size, i.patch_size, i.grid, i.tokens_per_image()),
        (64, 8, 8, 64)
    );
    assert_eq!(
        (i.hidden, i.layers, i.heads, i.kv_heads, i.head_dim),
        (64, 2, 4, 2, 16)
    );
    assert_eq!(folder.stop_token_ids(), vec![2]);
    let text = TextCodec::from_folder(&folder).unwrap();
    assert_eq!(text.token_id("<image>"), Some(i.image_token_id));
    assert_eq!(text.vocab_size(), i.vocab);
}

#[test]
fn preprocessing_follows_the_preprocessor_config() {
    let folder = ModelFolder::open(&test_model(), "").unwrap();
    let pre = Preprocessor::from_folder(&folder).unwrap();
    assert_eq!(pre.size, 64);
    // mean 0.5, std 0.5 after 1/255: 0 -> -1, 255 -> 1.
    let v = pre
        .pixel_values(&[0, 255, 51].repeat(64 * 64), 64, 64)
        .unwrap();
    let plane = 64 * 64;
    for (got, want) in [(v[0], -1.0), (v[plane], 1.0), (v[2 * plane], -0.6)] {
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }
    // A 128x96 frame is resized to the encoder's 64x64.
    assert_eq!(
        pre.pixel_values(&vec![0; 128 * 96 * 3], 128, 96)
            .unwrap()
            .len(),
        3 * plane
    );
}

#[test]
fn visual_tokens_replace_the_image_token_embeddings_in_order() {
    let model = load();
    let mut backend = model.backend();
    let image = backend.info().image_token_id;
    let hidden = backend.info().hidden;
    let ids = vec![1, 10, image, 11, image, image, 12];
    let visual: Vec<f32> = (0..3 * hidden).map(|v| v as f32).collect();
    let prompt = Prompt {
        ids: ids.clone(),
        positions: (0..7).collect(),
        visual: visual.clone(),
    };
    let spliced = llm::prompt_embeddings(backend.as_mut(), &prompt).unwrap();
    let plain = backend.embed(&ids).unwrap();
    let row = |m: &[f32], i: usize| m[i * hidden..(i + 1) * hidden].to_vec();
    assert_eq!(row(&spliced, 2), visual[..hidden]);
    assert_eq!(row(&spliced, 4), visual[hidden..2 * hidden]);
    assert_eq!(row(&spliced, 5), visual[2 * hidden..]);
    for i in [0, 1, 3, 6] {
        assert_eq!(row(&spliced, i), row(&plain, i), "text token {i} untouched");
    }
    let short = Prompt {
        visual: visual[..hidden].to_vec(),
        ..prompt
    };
    assert!(
        llm::prompt_embeddings(backend.as_mut(), &short).is_err(),
        "3 slots, 1 visual token"
    );
}

#[test]
fn the_kv_cache_gives_the_same_tokens_and_logits_as_recomputing() {
    let model = load();
    let mut backend = model.backend();
    let prompt = Prompt {
        ids: vec![1, 10, 20, 30, 40, 11],
        positions: (0..6).collect(),
        visual: vec![],
    };
    let sampling = Sampling {
        max_new_tokens: 10,
        ..Sampling::default()
    };
    let cached = llm::generate(backend.as_mut(), &prompt, &sampling, &[], true, &mut |_| {
        true
    })
    .unwrap();
    assert_eq!(cached.tokens.len(), 10);
    assert_eq!(cached.stop, Stop::Length);
    // Recompute: the whole prefix from scratch at every step, no cache.
    let mut ids = prompt.ids.clone();
    for (step, token) in cached.tokens.iter().enumerate() {
        let embeds = backend.embed(&ids).unwrap();
        let positions: Vec<i64> = (0..ids.len() as i64).collect();
        let mut fresh = backend.new_cache();
        let logits = backend.decode(&mut fresh, &embeds, &positions).unwrap();
        let d = max_diff(&logits, &cached.logits[step]);
        assert!(d < 1e-4, "step {step}: logits differ by {d}");
        let argmax = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0 as i64;
        assert_eq!(argmax, *token, "step {step}");
        ids.push(*token);
    }
}

#[test]
fn position_ids_with_gaps_reach_the_decoder_as_given() {
    let model = load();
    let mut backend = model.backend();
    let ids = vec![1, 10, 20, 30, 40, 11];
    let gapped = vec![0, 1, 5, 9, 10, 30];
    let run = |backend: &mut dyn infer::Backend, positions: &[i64]| {
        let embeds = backend.embed(&ids).unwrap();
        let mut cache = backend.new_cache();
        backend.decode(&mut cache, &embeds, positions).unwrap()
    };
    let contiguous = run(backend.as_mut(), &[0, 1, 2, 3, 4, 5]);
    let ours = run(backend.as_mut(), &gapped);
    assert!(
        max_diff(&contiguous, &ours) > 1e-3,
        "positions change the result"
    );
    let reference = reference_logits(&ids, &gapped, None);
    let d = max_diff(&ours, &reference);
    assert!(
        d < 1e-4,
        "the gapped positions reached the decoder as given: {d}"
    );
}

#[test]
fn a_prompt_with_an_image_matches_onnx_runtime() {
    let model = load();
    let mut backend = model.backend();
    let folder = model.folder();
    let pre = Preprocessor::from_folder(folder).unwrap();
    let pixels = pre.pixel_values(&picture(64), 64, 64).unwrap();
    let features = backend.encode_image(&pixels).unwrap();
    let image = backend.info().image_token_id;
    let mut ids = vec![1, 10];
    ids.extend(std::iter::repeat_n(image, 64));
    ids.extend([11, 12]);
    let positions: Vec<i64> = (0..ids.len() as i64).collect();
    let prompt = Prompt {
        ids: ids.clone(),
        positions: positions.clone(),
        visual: features,
    };
    let ours = llm::generate(
        backend.as_mut(),
        &prompt,
        &Sampling {
            max_new_tokens: 1,
            ..Sampling::default()
        },
        &[],
        true,
        &mut |_| true,
    )
    .unwrap();
    let reference = reference_logits(&ids, &positions, Some(&pixels));
    let d = max_diff(&ours.logits[0], &reference);
    assert!(d < 1e-4, "tract vs ONNX Runtime: {d}");
}

#[test]
fn the_chat_template_renders_as_transformers_does() {
    let folder = ModelFolder::open(&test_model(), "").unwrap();
    let text = TextCodec::from_folder(&folder).unwrap();
    let messages = vec![
        Message {
            role: "user".into(),
            content: vec![
                Content::Image,
                Content::Text {
                    text: "what changed ?".into(),
                },
            ],
        },
        Message::text("assistant", "a red square appeared"),
        Message::text("user", "when ?"),
    ];
    for add_generation_prompt in [true, false] {
        let ours = text.render(&messages, add_generation_prompt).unwrap();
        let reference = python(
            "render_template.py",
            serde_json::json!({
                "template": folder.chat_template.source,
                "messages": messages,
                "add_generation_prompt": add_generation_prompt,
                "bos_token": "<|im_start|>",
                "eos_token": "<end_of_utterance>",
            }),
        );
        assert_eq!(ours, reference);
    }
    let rendered = text.render(&messages, true).unwrap();
    assert_eq!(
        rendered,
        "<|im_start|>User:<image>what changed ?<end_of_utterance>\nAssistant: a red square appeared<end_of_utterance>\nUser: when ?<end_of_utterance>\nAssistant:"
    );
    let ids = text.encode(&rendered).unwrap();
    assert_eq!(
        ids.iter()
            .filter(|&&i| Some(i) == text.token_id("<image>"))
            .count(),
        1
    );
    assert_eq!(
        text.decode(&text.encode("a red square appeared").unwrap())
            .unwrap(),
        "a red square appeared"
    );
}

/// A copy of the test model to break.
fn copy_model(dir: &Path) -> PathBuf {
    let to = dir.join("model");
    std::fs::create_dir_all(to.join("onnx")).unwrap();
    for entry in std::fs::read_dir(test_model())
        .unwrap()
        .chain(std::fs::read_dir(test_model().join("onnx")).unwrap())
    {
        let path = entry.unwrap().path();
        if path.is_file() {
            let rel = path.strip_prefix(test_model()).unwrap();
            std::fs::copy(&path, to.join(rel)).unwrap();
        }
    }
    to
}

fn refusal(path: &Path, variant: &str) -> String {
    ModelFolder::open(path, variant).unwrap_err().to_string()
}

#[test]
fn broken_folders_say_which_file_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_model(dir.path());
    let p = |rel: &str| model.join(rel).display().to_string();

    assert_eq!(
        refusal(&dir.path().join("nowhere"), ""),
        format!(
            "{}: not a directory (expected an onnx-community model folder)",
            dir.path().join("nowhere").display()
        )
    );
    assert_eq!(
        refusal(&model, "_bnb4"),
        format!("{}: variant \"_bnb4\" cannot run here: bitsandbytes 4-bit weights use the CUDA-only MatMulBnb4 operator; pick the fp32, _fp16, _int8, _uint8, _quantized, _q4 or _q4f16 files", p("onnx"))
    );
    assert_eq!(
        refusal(&model, "_fp16"),
        format!(
            "{}: missing (variants in this folder: fp32 (no suffix))",
            p("onnx/vision_encoder_fp16.onnx")
        )
    );

    // The decoder replaced by another graph: its tensors are not there.
    std::fs::copy(
        model.join("onnx/embed_tokens.onnx"),
        model.join("onnx/decoder_model_merged.onnx"),
    )
    .unwrap();
    assert_eq!(
        refusal(&model, ""),
        format!(
            "{}: no input tensor named \"inputs_embeds\"",
            p("onnx/decoder_model_merged.onnx")
        )
    );

    // config.json that disagrees with the graphs.
    let model = copy_model(&dir.path().join("b"));
    let config = std::fs::read_to_string(model.join("config.json")).unwrap();
    std::fs::write(
        model.join("config.json"),
        config.replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3"),
    )
    .unwrap();
    assert_eq!(
        refusal(&model, ""),
        format!(
            "{}: input \"past_key_values.0.key\" has dims [1, 2, past_sequence_length, 16], expected [batch, 3, past, 16] from config.json",
            model.join("onnx/decoder_model_merged.onnx").display()
        )
    );
    std::fs::write(model.join("config.json"), "{ not json").unwrap();
    assert!(refusal(&model, "").starts_with(&format!(
        "{}: not valid JSON",
        model.join("config.json").display()
    )));
    std::fs::remove_file(model.join("tokenizer.json")).unwrap();
    std::fs::write(model.join("config.json"), config).unwrap();
    assert_eq!(
        refusal(&model, ""),
        format!("{}: missing", model.join("tokenizer.json").display())
    );
}

#[test]
fn external_data_must_stay_inside_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_model(dir.path());
    std::fs::write(dir.path().join("outside.bin"), [0u8; 64]).unwrap();
    // Point one weight of the vision graph at a file outside the folder.
    let status = Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, onnx\n\
             m = onnx.load(sys.argv[1])\n\
             t = m.graph.initializer[0]\n\
             t.ClearField('raw_data'); t.data_location = onnx.TensorProto.EXTERNAL\n\
             e = t.external_data.add(); e.key = 'location'; e.value = '../../outside.bin'\n\
             onnx.save(m, sys.argv[1])",
        )
        .arg(model.join("onnx/vision_encoder.onnx"))
        .status()
        .unwrap();
    assert!(status.success(), "python3 with onnx");
    let message = refusal(&model, "");
    assert!(
        message.starts_with(&format!(
            "{}: external data \"../../outside.bin\" of tensor ",
            model.join("onnx/vision_encoder.onnx").display()
        )),
        "{message}"
    );
    assert!(message.ends_with("leaves the model folder"), "{message}");
}

#[test]
fn kept_tokens_keep_their_full_layout_positions_in_the_prompt() {
    let folder = ModelFolder::open(&test_model(), "").unwrap();
    let text = TextCodec::from_folder(&folder).unwrap();
    let image = folder.info.image_token_id;
    let hidden = folder.info.hidden;
    let kept = [0u32, 5, 63];
    let tokens = vec![0.5f32; kept.len() * hidden];
    let messages = [Message {
        role: "user".into(),
        content: vec![
            Content::Image,
            Content::Image,
            Content::Text {
                text: "what changed ?".into(),
            },
        ],
    }];
    let visuals = [
        llm::Visual {
            grid: 64,
            positions: &kept,
            tokens: &tokens,
        },
        llm::Visual {
            grid: 64,
            positions: &[],
            tokens: &[],
        },
    ];
    let prompt = llm::build_prompt(&text, &folder.info, &messages, &visuals).unwrap();
    // "<|im_start|>" "User" ":" then the first image at 3..67, the second
    // (nothing kept) at 67..131, then the text.
    let first_image: Vec<i64> = prompt
        .ids
        .iter()
        .zip(&prompt.positions)
        .filter(|(i, _)| **i == image)
        .map(|(_, p)| *p)
        .collect();
    assert_eq!(first_image, vec![3, 8, 66]);
    let after = prompt.ids.iter().position(|&i| i == image).unwrap() + 3;
    assert_eq!(
        prompt.positions[after],
        3 + 64 + 64,
        "text continues after both full grids"
    );
    assert_eq!(prompt.visual.len(), 3 * hidden);
    assert!(
        prompt.positions.windows(2).all(|w| w[1] > w[0]),
        "positions only grow"
    );
    let mismatch = llm::build_prompt(&text, &folder.info, &messages, &visuals[..1]);
    assert!(mismatch.is_err(), "two images in the chat, one given");
}

#[test]
fn smolvlm_models_get_their_image_markers_around_each_image() {
    let dir = tempfile::tempdir().unwrap();
    let model = copy_model(dir.path());
    let config_file = model.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_file).unwrap()).unwrap();
    // A real SmolVLM folder: no glimpse section.
    config.as_object_mut().unwrap().remove("glimpse");
    std::fs::write(&config_file, config.to_string()).unwrap();
    let folder = ModelFolder::open(&model, "").unwrap();
    let text = TextCodec::from_folder(&folder).unwrap();
    let around = text.token_id("<fake_token_around_image>").unwrap();
    let global = text.token_id("<global-img>").unwrap();
    assert_eq!(folder.info.image_before, vec![around, global]);
    assert_eq!(folder.info.image_after, vec![around]);
    assert!(folder.to_string().contains("image markers"), "{folder}");

    let hidden = folder.info.hidden;
    let kept = [1u32, 62];
    let tokens = vec![0.5f32; kept.len() * hidden];
    let visual = llm::Visual {
        grid: 64,
        positions: &kept,
        tokens: &tokens,
    };
    let messages = [Message {
        role: "user".into(),
        content: vec![Content::Image, Content::Image],
    }];
    let prompt = llm::build_prompt(&text, &folder.info, &messages, &[visual, visual]).unwrap();
    let image = folder.info.image_token_id;
    // Each image: <fake><global> at p, p+1, its grid at p+2.., <fake> after.
    let first = prompt.ids.iter().position(|&i| i == around).unwrap();
    let p = prompt.positions[first];
    let expected_ids = [
        around, global, image, image, around, around, global, image, image, around,
    ];
    let expected_positions = [
        p,
        p + 1,
        p + 3,
        p + 64,
        p + 66,
        p + 67,
        p + 68,
        p + 70,
        p + 131,
        p + 133,
    ];
    assert_eq!(&prompt.ids[first..first + 10], &expected_ids);
    assert_eq!(&prompt.positions[first..first + 10], &expected_positions);

    // A smolvlm config whose tokenizer lacks the markers is refused, saying how to opt out.
    let tokenizer = model.join("tokenizer.json");
    let renamed = std::fs::read_to_string(&tokenizer)
        .unwrap()
        .replace("<global-img>", "<global-image>");
    std::fs::write(&tokenizer, renamed).unwrap();
    let message = refusal(&model, "");
    assert!(message.contains("<global-img>"), "{message}");
    assert!(message.contains("wrap_images"), "{message}");
}
