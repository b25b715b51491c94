//! The ONNX Runtime backend (`ort` feature) with the CPU library of the
//! onnxruntime pip wheel: the same tokens and logits as tract, provider
//! selection and its messages, `backend = "auto"`. GPU providers cannot be
//! tested here; they are the ones that fail.

use std::path::{Path, PathBuf};
use std::process::Output;

use glimpse::infer::{self, BackendKind, ModelConfig, ModelFolder, Provider};
use glimpse::llm::{self, Prompt, Sampling};
use glimpse::vision::Preprocessor;

use crate::harness::daemon::synthetic_config;
use crate::harness::{glimpse, ort_library, repo};

/// The runs of one model on tract and ONNX Runtime (CPU): same visual
/// tokens, same greedy tokens, logits within `1e-4` at every step. Generic
/// over the folder so that each model we ship gets its own test below.
fn ort_matches_tract(path: &Path) {
    let tract = infer::load(&ModelConfig {
        backend: BackendKind::Tract,
        threads: 1,
        ..ModelConfig::new(path)
    })
    .unwrap();
    let ort = infer::load(&ModelConfig {
        backend: BackendKind::Ort,
        threads: 1,
        ort_library: Some(ort_library()),
        providers: vec![Provider::Cpu],
        ..ModelConfig::new(path)
    })
    .unwrap();
    assert_eq!(
        (tract.runtime().as_str(), ort.runtime().as_str()),
        ("tract", "ort (cpu)")
    );

    let folder = ModelFolder::open(path, "").unwrap();
    let pre = Preprocessor::from_folder(&folder).unwrap();
    let (w, h) = (96, 72);
    let rgb: Vec<u8> = (0..w * h)
        .flat_map(|i| {
            let (x, y) = (i % w, i / w);
            let inside = (20..50).contains(&x) && (10..40).contains(&y);
            if inside {
                [250, 40, 40]
            } else {
                [(x * 2) as u8, (y * 3) as u8, 90]
            }
        })
        .collect();
    let pixels = pre.pixel_values(&rgb, w as u32, h as u32).unwrap();

    let mut runs = Vec::new();
    for model in [&tract, &ort] {
        let mut backend = model.backend();
        let info = backend.info().clone();
        let visual = backend.encode_image(&pixels).unwrap();
        let mut ids = vec![1, 10];
        ids.extend(std::iter::repeat_n(
            info.image_token_id,
            info.tokens_per_image(),
        ));
        ids.extend([11, 12]);
        let prompt = Prompt {
            positions: (0..ids.len() as i64).collect(),
            ids,
            visual: visual.clone(),
        };
        let sampling = Sampling {
            max_new_tokens: 16,
            ..Sampling::default()
        };
        let g = llm::generate(backend.as_mut(), &prompt, &sampling, &[], true, &mut |_| {
            true
        })
        .unwrap();
        runs.push((visual, g));
    }
    let [(tract_visual, tract_run), (ort_visual, ort_run)] = &runs[..] else {
        unreachable!("two runs")
    };
    let diff = |a: &[f32], b: &[f32]| {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    };
    let d = diff(tract_visual, ort_visual);
    assert!(d < 1e-4, "visual tokens differ by {d}");
    assert_eq!(tract_run.tokens.len(), 16);
    assert_eq!(tract_run.tokens, ort_run.tokens, "greedy tokens");
    for (step, (a, b)) in tract_run.logits.iter().zip(&ort_run.logits).enumerate() {
        let d = diff(a, b);
        assert!(d < 1e-4, "step {step}: logits differ by {d}");
    }
}

#[test]
fn ort_gives_the_tokens_and_logits_of_tract_on_the_test_model() {
    ort_matches_tract(&repo().join("models/test-tiny"));
}

#[test]
fn ort_gives_the_tokens_and_logits_of_tract_on_the_demo_model() {
    ort_matches_tract(&repo().join("models/shapes/model"));
}

/// The harness's synthetic camera with the test model and `model` in the
/// `[model]` table.
fn write_config(dir: &Path, model: &str) -> PathBuf {
    let path = repo().join("models/test-tiny");
    let model = format!(
        "[model]\npath = {:?}\nthreads = 1\n{model}",
        path.display().to_string()
    );
    synthetic_config(dir, &model).0
}

fn warmup(config: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = glimpse();
    cmd.args(["model", "warmup", "--config"]).arg(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn an_unavailable_gpu_provider_with_require_gpu_fails_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "backend = \"ort\"\nort_library = {:?}\nproviders = [\"tensorrt\", \"cpu\"]\nrequire_gpu = true",
            ort_library().display().to_string()
        ),
    );
    let out = glimpse()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "a model problem: {stderr}");
    assert!(
        stderr.contains(
            "error: cannot start the pipeline: cannot load the model: execution provider tensorrt cannot be used: not built into this ONNX Runtime"
        ) && stderr.contains("(model.require_gpu = true)"),
        "{stderr}"
    );
}

#[test]
fn without_require_gpu_each_unavailable_provider_is_logged_once_and_cpu_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "ort_library = {:?}\nproviders = [\"tensorrt\", \"cuda\", \"cpu\"]",
            ort_library().display().to_string()
        ),
    );
    let out = warmup(&config, &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("runtime        ort (cpu)"), "{stdout}");
    for (provider, next) in [("tensorrt", "cuda"), ("cuda", "cpu")] {
        let line = format!("execution provider {provider} unavailable, falling back to {next}: not built into this ONNX Runtime");
        assert_eq!(
            stderr.matches(&line).count(),
            1,
            "{line:?} once in:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("auto: ONNX Runtime found (from model.ort_library)"),
        "{stderr}"
    );
}

#[test]
fn auto_takes_ort_from_the_environment_and_tract_without_a_library() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "providers = [\"cpu\"]");
    let library = ort_library();
    let out = warmup(&config, &[("ORT_DYLIB_PATH", library.to_str().unwrap())]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("runtime        ort (cpu)"));
    assert!(text(&out.stderr).contains("auto: ONNX Runtime found (from ORT_DYLIB_PATH)"));

    let missing = write_config(
        dir.path(),
        "ort_library = \"/nonexistent/libonnxruntime.so\"",
    );
    let out = warmup(&missing, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("runtime        tract"));
    assert!(
        text(&out.stderr)
            .contains("auto: model.ort_library = /nonexistent/libonnxruntime.so: no such file"),
        "{}",
        text(&out.stderr)
    );

    let required = write_config(
        dir.path(),
        "backend = \"ort\"\nort_library = \"/nonexistent/libonnxruntime.so\"",
    );
    let out = warmup(&required, &[]);
    assert_eq!(out.status.code(), Some(78));
    // A library the config requires is a file the config check verifies.
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: {}: model.ort_library: /nonexistent/libonnxruntime.so: no such file\n",
            required.display()
        )
    );
}
