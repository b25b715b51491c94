//! A model folder shaped as the hub ships SmolVLM2 (models/test-hub, made by
//! models/testing/make_hub_model.py from the test model): the chat template
//! only in `chat_template.json`, a `processor_config.json`, and `_fp16`
//! (float16 inputs, outputs and KV cache) and `_quantized` (dynamic int8)
//! graphs beside the fp32 ones. Issue 19: the folder loads as it is.

use std::path::{Path, PathBuf};

use glimpse::infer::ModelFolder;
use glimpse::llm::{self, TextCodec};

use crate::util::{copy_model, glimpse, repo};

fn hub_model() -> PathBuf {
    repo().join("models/test-hub")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn inspect_names_the_template_file_and_the_variant_of_the_hub_folder() {
    for (variant, shown, precision) in [
        (
            "",
            "fp32 (no suffix)",
            "float32 pixels, float32 embeddings, float32 KV cache; float weights",
        ),
        (
            "_fp16",
            "_fp16",
            "float16 pixels, float16 embeddings, float16 KV cache; float weights",
        ),
        (
            "_quantized",
            "_quantized",
            "float32 pixels, float32 embeddings, float32 KV cache; quantized (DynamicQuantizeLinear, MatMulInteger)",
        ),
    ] {
        let out = glimpse()
            .args(["model", "inspect"])
            .arg(hub_model())
            .args(["--variant", variant])
            .output()
            .unwrap();
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{variant}: {}", text(&out.stderr));
        for line in [
            format!("variant        {shown}\n"),
            format!("precision      {precision}\n"),
            "chat template  chat_template.json (chat_template)\n".to_owned(),
            "processor      processor_config.json: image_seq_len 64\n".to_owned(),
        ] {
            assert!(stdout.contains(&line), "{line:?} in:\n{stdout}");
        }
    }
}

#[test]
fn a_folder_without_a_chat_template_is_refused_naming_the_files_looked_at() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    copy_model(&hub_model(), &model);
    std::fs::remove_file(model.join("chat_template.json")).unwrap();
    let out = glimpse()
        .args(["model", "inspect"])
        .arg(&model)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: {}: no chat template: looked in processor_config.json (chat_template), \
             chat_template.json (chat_template), chat_template.jinja, tokenizer_config.json \
             (chat_template) (glimpse needs the model's template to build its prompts)\n",
            model.display()
        )
    );
}

/// transformers' order: processor_config.json's key, chat_template.json,
/// chat_template.jinja, tokenizer_config.json's key (folder.rs says where
/// in transformers).
#[test]
fn the_chat_template_comes_from_the_file_transformers_reads_first() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    copy_model(&hub_model(), &model);
    let source = |model: &Path| {
        let folder = ModelFolder::open(model, "").unwrap();
        let file = folder.chat_template.file.strip_prefix(model).unwrap();
        (file.display().to_string(), folder.chat_template.source)
    };
    let hub_template = source(&model).1;
    assert_eq!(source(&model).0, "chat_template.json");

    // A tokenizer_config.json template loses to chat_template.json.
    let tokenizer_config = model.join("tokenizer_config.json");
    let mut settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tokenizer_config).unwrap()).unwrap();
    settings["chat_template"] = serde_json::json!([
        {"name": "tool_use", "template": "tools"},
        {"name": "default", "template": "from the tokenizer"},
    ]);
    std::fs::write(&tokenizer_config, settings.to_string()).unwrap();
    assert_eq!(source(&model), ("chat_template.json".into(), hub_template));

    // The legacy chat_template.json wins over chat_template.jinja.
    std::fs::write(model.join("chat_template.jinja"), "from the jinja file").unwrap();
    assert_eq!(source(&model).0, "chat_template.json");
    std::fs::remove_file(model.join("chat_template.json")).unwrap();
    assert_eq!(
        source(&model),
        ("chat_template.jinja".into(), "from the jinja file".into())
    );
    std::fs::remove_file(model.join("chat_template.jinja")).unwrap();
    // A list of named templates: the one named "default".
    assert_eq!(
        source(&model),
        ("tokenizer_config.json".into(), "from the tokenizer".into())
    );

    // A chat_template key in processor_config.json comes first.
    let processor = model.join("processor_config.json");
    std::fs::write(
        &processor,
        r#"{"image_seq_len": 64, "chat_template": "from the processor"}"#,
    )
    .unwrap();
    assert_eq!(
        source(&model),
        ("processor_config.json".into(), "from the processor".into())
    );

    // A template file that is not a template is refused naming it.
    std::fs::write(&processor, r#"{"chat_template": 5}"#).unwrap();
    assert_eq!(
        ModelFolder::open(&model, "").unwrap_err().to_string(),
        format!("{}: chat_template is not a string", processor.display())
    );
}

#[test]
fn the_hub_template_renders_as_the_test_model_s_own() {
    let hub = ModelFolder::open(&hub_model(), "").unwrap();
    let tiny = ModelFolder::open(&repo().join("models/test-tiny"), "").unwrap();
    let messages = [llm::Message::text("user", "what changed ?")];
    let render = |folder: &ModelFolder| {
        TextCodec::from_folder(folder)
            .unwrap()
            .render(&messages, true)
            .unwrap()
    };
    assert_eq!(render(&hub), render(&tiny));
    assert_eq!(
        render(&hub),
        "<|im_start|>User: what changed ?<end_of_utterance>\nAssistant:"
    );
}

#[test]
fn image_seq_len_must_match_the_vision_grid() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    copy_model(&hub_model(), &model);
    let processor = model.join("processor_config.json");
    std::fs::write(&processor, r#"{"image_seq_len": 81}"#).unwrap();
    assert_eq!(
        ModelFolder::open(&model, "").unwrap_err().to_string(),
        format!(
            "{}: image_seq_len is 81, but config.json's vision_config gives 64 tokens per image \
             (8x8 grid: image_size 64 / patch_size 8 / scale_factor 1)",
            processor.display()
        )
    );
}
