//! A model folder in the Hugging Face "onnx-community" layout, opened and
//! checked before anything is compiled.
//!
//! The folder is taken as users have it (docs/architecture.md §6): the JSON configs, the
//! tokenizer, the chat template wherever the hub puts it ([`ChatTemplate`]),
//! and `onnx/{vision_encoder,embed_tokens,decoder_model_merged}` with an
//! optional precision suffix and `.onnx_data` files. Every tensor is found
//! by name; a missing file, a missing or mismatched tensor, an external-data
//! path leaving the folder, a missing chat template, or a variant no CPU
//! backend can run is refused with the file and the reason.
//!
//! Graphs may be float32 or float16 at their boundary (the hub's `_fp16` and
//! `_q4f16` files), and quantized inside (`_int8`, `_uint8`, `_quantized`,
//! `_q4`): [`Floats`] says which float type each boundary tensor has, and
//! [`GraphInfo::quantized`] which quantized operators a graph uses.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::graph::{check_signatures, read_graph, GraphInfo, TensorInfo};
use super::InferError;

/// The three graphs of the layout.
pub const GRAPHS: [&str; 3] = ["vision_encoder", "embed_tokens", "decoder_model_merged"];

/// Precision variants that cannot run here, and why.
const REFUSED: [(&str, &str); 1] = [(
    "_bnb4",
    "bitsandbytes 4-bit weights use the CUDA-only MatMulBnb4 operator; pick the fp32, _fp16, _int8, _uint8, _quantized, _q4 or _q4f16 files",
)];

/// Where a chat template can be, in transformers' order of precedence
/// (read in huggingface/transformers, `ProcessorMixin.get_processor_dict`
/// and `PreTrainedTokenizerBase._from_pretrained`): a `chat_template` key in
/// `processor_config.json` is kept over any file (transformers warns that it
/// belongs in a file); then the processor's legacy `chat_template.json`,
/// which wins over `chat_template.jinja` when both exist; then
/// `chat_template.jinja`, which the tokenizer also prefers over its own
/// config; last, `tokenizer_config.json`'s `chat_template`. The processor's
/// template is the one transformers applies for a vision model (its
/// `apply_chat_template`), so the processor's files come first.
pub const TEMPLATE_SOURCES: [(&str, Option<&str>); 4] = [
    ("processor_config.json", Some("chat_template")),
    ("chat_template.json", Some("chat_template")),
    ("chat_template.jinja", None),
    ("tokenizer_config.json", Some("chat_template")),
];

/// A chat template and the file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTemplate {
    /// The file it was read from.
    pub file: PathBuf,
    /// The JSON key that holds it (`chat_template`), or `None` for a
    /// `.jinja` file that is the template itself.
    pub key: Option<&'static str>,
    /// The Jinja source.
    pub source: String,
}

/// The float type of a tensor at a graph's boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Float {
    /// IEEE 754 single precision (`float`).
    F32,
    /// IEEE 754 half precision (`float16`): the hub's `_fp16` and `_q4f16`.
    F16,
}

impl Float {
    fn of(dtype: &str) -> Float {
        if dtype == "float16" {
            Float::F16
        } else {
            Float::F32
        }
    }
}

/// The float types the graphs take, as their signatures declare them.
/// Backends convert at the boundary (glimpse works in f32) and keep the KV
/// cache in the decoder's own type, since it goes back in as it came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Floats {
    /// The vision encoder's `pixel_values`.
    pub pixel_values: Float,
    /// The decoder's `inputs_embeds`.
    pub inputs_embeds: Float,
    /// The decoder's `past_key_values.*` (and so the KV cache).
    pub cache: Float,
}

impl Floats {
    /// Whether any boundary tensor is float16 (`_fp16`, `_q4f16`).
    pub fn has_f16(&self) -> bool {
        [self.pixel_values, self.inputs_embeds, self.cache].contains(&Float::F16)
    }
}

/// How the memory readout is laid out in the prompt: the layout the model
/// family was trained on (docs/architecture.md §5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromptLayout {
    /// Chosen from the folder: `smolvlm-video` for SmolVLM models
    /// (`config.json` model_type `smolvlm` or `processor_config.json`
    /// processor_class `SmolVLMProcessor`) unless their `config.json` says
    /// they were trained without SmolVLM's image markers (glimpse's own
    /// models: `"glimpse": {"wrap_images": false}`); `glimpse` otherwise.
    #[default]
    Auto,
    /// glimpse's own: "at 12.5 s : <image>at 12.5 s . ... now : <image>question".
    Glimpse,
    /// SmolVLM2's video prompt, as transformers' `SmolVLMProcessor` builds
    /// it: "You are provided the following series of N frames from a
    /// H:MM:SS [H:MM:SS] video.", then per frame "Frame from MM:SS:" and its
    /// image, then the question.
    SmolvlmVideo,
}

impl PromptLayout {
    /// The config's name for it.
    pub fn name(self) -> &'static str {
        match self {
            PromptLayout::Auto => "auto",
            PromptLayout::Glimpse => "glimpse",
            PromptLayout::SmolvlmVideo => "smolvlm-video",
        }
    }
}

impl fmt::Display for PromptLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a model folder holds, as read from its files.
#[derive(Debug, Clone)]
pub struct ModelFolder {
    /// The folder.
    pub path: PathBuf,
    /// The precision suffix of the graphs in use ("" for fp32).
    pub variant: String,
    /// `onnx/<graph><variant>.onnx` for each of [`GRAPHS`].
    pub graphs: [GraphInfo; 3],
    /// Numbers the runtime needs.
    pub info: ModelInfo,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// `tokenizer_config.json`, parsed.
    pub tokenizer_config: Value,
    /// `generation_config.json`, parsed.
    pub generation_config: Value,
    /// `preprocessor_config.json`, parsed.
    pub preprocessor_config: Value,
    /// `processor_config.json`, parsed, when the folder has one (SmolVLM's
    /// processor settings: `image_seq_len`, its class).
    pub processor_config: Option<Value>,
    /// The chat template, from the first of [`TEMPLATE_SOURCES`] that has one.
    pub chat_template: ChatTemplate,
    /// The float types at the graphs' boundaries.
    pub floats: Floats,
    /// The prompt layout the model family was trained on (never `Auto`),
    /// as found in the folder or set by `[model] prompt_layout`.
    pub prompt_layout: PromptLayout,
    /// Why that layout: the files and keys that chose it, or the config.
    pub prompt_layout_reason: String,
    /// The question the model was trained to answer about a change
    /// (`glimpse.describe` in `config.json`), if the folder says.
    pub describe: Option<String>,
    /// Its answers that mean no change (`glimpse.no_news`), if the folder
    /// says.
    pub no_news: Option<Vec<String>>,
    /// The window its question about a change covers, when the model was
    /// trained to answer it from the scene before the window and now
    /// (`glimpse.describe_window_s`); else it reads the whole memory.
    pub describe_window: Option<Duration>,
}

/// Longest `glimpse.describe_window_s` a folder may ask for: the memory
/// keeps what each frame of the window overwrote on the canvas.
pub const MAX_DESCRIBE_WINDOW_S: f64 = 30.0;

/// `glimpse.describe_window_s`, if set: a number of seconds in
/// (0, [`MAX_DESCRIBE_WINDOW_S`]].
fn describe_window(ours: &Value) -> Result<Option<Duration>, String> {
    let value = &ours["describe_window_s"];
    if value.is_null() {
        return Ok(None);
    }
    match value.as_f64() {
        Some(s) if s > 0.0 && s <= MAX_DESCRIBE_WINDOW_S => Ok(Some(Duration::from_secs_f64(s))),
        _ => Err(format!(
            "glimpse.describe_window_s must be a number of seconds above 0 and at most {MAX_DESCRIBE_WINDOW_S}, not {value}"
        )),
    }
}

/// Sizes and ids of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Side of the square image the vision encoder takes, in pixels.
    pub image_size: u32,
    /// Side of a vision patch, in pixels.
    pub patch_size: u32,
    /// Pixel-shuffle factor between patches and visual tokens.
    pub scale_factor: u32,
    /// Side of the visual token grid: an image gives `grid * grid` tokens.
    pub grid: u32,
    /// Width of the language model (and of the visual tokens it consumes).
    pub hidden: usize,
    /// Decoder layers (each with one key and one value cache).
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Vocabulary size (logits per position).
    pub vocab: usize,
    /// The `<image>` placeholder token.
    pub image_token_id: i64,
    /// Tokens the model's processor puts before each image's tokens
    /// (SmolVLM: `<fake_token_around_image><global-img>`); empty for
    /// models trained without them, such as ours.
    pub image_before: Vec<i64>,
    /// Tokens it puts after them (SmolVLM: `<fake_token_around_image>`).
    pub image_after: Vec<i64>,
}

impl ModelInfo {
    /// Visual tokens per image.
    pub fn tokens_per_image(&self) -> usize {
        (self.grid * self.grid) as usize
    }
}

impl ModelFolder {
    /// Opens and checks the folder at `path`, using the graphs with suffix
    /// `variant` ("" for fp32, `_fp16`, `_int8`, `_quantized`, ...).
    pub fn open(path: &Path, variant: &str) -> Result<ModelFolder, InferError> {
        let broken = |file: &Path, reason: String| InferError::Folder {
            file: file.to_owned(),
            reason,
        };
        if !path.is_dir() {
            return Err(broken(
                path,
                "not a directory (expected an onnx-community model folder)".into(),
            ));
        }
        if let Some((_, why)) = REFUSED.iter().find(|(suffix, _)| *suffix == variant) {
            return Err(broken(
                &path.join("onnx"),
                format!("variant {variant:?} cannot run here: {why}"),
            ));
        }
        let json = |name: &str| -> Result<Value, InferError> {
            let file = path.join(name);
            let text = std::fs::read_to_string(&file)
                .map_err(|e| broken(&file, format!("cannot read: {e}")))?;
            serde_json::from_str(&text).map_err(|e| broken(&file, format!("not valid JSON: {e}")))
        };
        let config = json("config.json")?;
        let generation_config = json("generation_config.json")?;
        let preprocessor_config = json("preprocessor_config.json")?;
        let tokenizer_config = json("tokenizer_config.json")?;
        let processor_config = if path.join("processor_config.json").is_file() {
            Some(json("processor_config.json")?)
        } else {
            None
        };
        let chat_template = find_template(path)?;
        let tokenizer = path.join("tokenizer.json");
        if !tokenizer.is_file() {
            return Err(broken(&tokenizer, "missing".into()));
        }
        let mut info =
            read_info(&config).map_err(|reason| broken(&path.join("config.json"), reason))?;
        (info.image_before, info.image_after) =
            image_markers(&config, &tokenizer).map_err(|reason| broken(&tokenizer, reason))?;
        if let Some(processor) = &processor_config {
            check_processor(processor, &info)
                .map_err(|reason| broken(&path.join("processor_config.json"), reason))?;
        }

        let graphs = GRAPHS.map(|g| path.join("onnx").join(format!("{g}{variant}.onnx")));
        let mut infos: Vec<GraphInfo> = Vec::new();
        for file in &graphs {
            if !file.is_file() {
                let found = list_variants(path);
                return Err(broken(
                    file,
                    format!("missing (variants in this folder: {found})"),
                ));
            }
            infos.push(read_graph(file, path).map_err(|reason| broken(file, reason))?);
        }
        let graphs: [GraphInfo; 3] = infos
            .try_into()
            .map_err(|_| broken(path, "internal: graph count".into()))?;
        check_signatures(&graphs, &info)?;
        let input = |graph: &GraphInfo, name: &str| {
            // check_signatures found each of these with a float type.
            Float::of(
                graph
                    .inputs
                    .iter()
                    .find(|t| t.name == name)
                    .map_or("float", |t| t.dtype),
            )
        };
        let floats = Floats {
            pixel_values: input(&graphs[0], "pixel_values"),
            inputs_embeds: input(&graphs[2], "inputs_embeds"),
            cache: input(&graphs[2], "past_key_values.0.key"),
        };
        let (prompt_layout, prompt_layout_reason) =
            detect_layout(&config, processor_config.as_ref());
        let ours = &config["glimpse"];
        let describe = ours["describe"].as_str().map(str::to_owned);
        let describe_window =
            describe_window(ours).map_err(|reason| broken(&path.join("config.json"), reason))?;
        let no_news = ours["no_news"].as_array().map(|answers| {
            answers
                .iter()
                .filter_map(|a| a.as_str().map(str::to_owned))
                .collect()
        });
        Ok(ModelFolder {
            path: path.to_owned(),
            variant: variant.to_owned(),
            graphs,
            info,
            tokenizer,
            tokenizer_config,
            generation_config,
            preprocessor_config,
            processor_config,
            chat_template,
            floats,
            prompt_layout,
            prompt_layout_reason,
            describe,
            no_news,
            describe_window,
        })
    }

    /// Uses `layout` instead of the one found in the folder, unless it is
    /// `Auto` (`[model] prompt_layout`).
    pub fn set_prompt_layout(&mut self, layout: PromptLayout) {
        if layout != PromptLayout::Auto {
            self.prompt_layout = layout;
            self.prompt_layout_reason = "model.prompt_layout in the config".to_owned();
        }
    }

    /// The quantized operators of the three graphs, each once: empty when
    /// every graph is float.
    pub fn quantized_ops(&self) -> Vec<&str> {
        let mut ops: Vec<&str> = self
            .graphs
            .iter()
            .flat_map(|g| g.quantized.iter().map(String::as_str))
            .collect();
        ops.sort_unstable();
        ops.dedup();
        ops
    }

    /// Token ids that end generation (`generation_config.json` eos_token_id).
    pub fn stop_token_ids(&self) -> Vec<i64> {
        match &self.generation_config["eos_token_id"] {
            Value::Number(n) => n.as_i64().into_iter().collect(),
            Value::Array(a) => a.iter().filter_map(Value::as_i64).collect(),
            _ => Vec::new(),
        }
    }
}

/// The layout a folder's model was trained on, and why: SmolVLM models
/// read their processor's video prompt; a model that says it was trained
/// without SmolVLM's image markers (ours) reads glimpse's own layout, as
/// does any other family.
fn detect_layout(config: &Value, processor: Option<&Value>) -> (PromptLayout, String) {
    let model_type = config["model_type"].as_str().unwrap_or_default();
    let class = processor
        .and_then(|p| p["processor_class"].as_str())
        .unwrap_or_default();
    let mut why = Vec::new();
    if model_type == "smolvlm" {
        why.push("config.json model_type smolvlm".to_owned());
    }
    if class == "SmolVLMProcessor" {
        why.push("processor_config.json processor_class SmolVLMProcessor".to_owned());
    }
    if why.is_empty() {
        let model_type = if model_type.is_empty() {
            "none"
        } else {
            model_type
        };
        return (
            PromptLayout::Glimpse,
            format!("config.json model_type {model_type}: no SmolVLM processor"),
        );
    }
    if config["glimpse"]["wrap_images"] == Value::Bool(false) {
        return (
            PromptLayout::Glimpse,
            "config.json glimpse.wrap_images false: trained on glimpse's layout".to_owned(),
        );
    }
    (PromptLayout::SmolvlmVideo, why.join(", "))
}

/// The chat template of the folder at `path`: the first of
/// [`TEMPLATE_SOURCES`] that holds one, or an error naming them all.
fn find_template(path: &Path) -> Result<ChatTemplate, InferError> {
    for (name, key) in TEMPLATE_SOURCES {
        let file = path.join(name);
        if !file.is_file() {
            continue;
        }
        let broken = |reason: String| InferError::Folder {
            file: file.clone(),
            reason,
        };
        let text =
            std::fs::read_to_string(&file).map_err(|e| broken(format!("cannot read: {e}")))?;
        let Some(key) = key else {
            return Ok(ChatTemplate {
                file,
                key: None,
                source: text,
            });
        };
        let json: Value =
            serde_json::from_str(&text).map_err(|e| broken(format!("not valid JSON: {e}")))?;
        let source = match &json[key] {
            Value::Null => continue,
            Value::String(source) => source.clone(),
            // transformers' named templates: a list of {name, template};
            // it applies the one named "default".
            Value::Array(named) => named
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .ok_or_else(|| {
                    broken(format!(
                        "{key} is a list of named templates without one named \"default\""
                    ))
                })?
                .to_owned(),
            _ => return Err(broken(format!("{key} is not a string"))),
        };
        return Ok(ChatTemplate {
            file,
            key: Some(key),
            source,
        });
    }
    let looked: Vec<String> = TEMPLATE_SOURCES
        .iter()
        .map(|(name, key)| match key {
            Some(key) => format!("{name} ({key})"),
            None => (*name).to_owned(),
        })
        .collect();
    Err(InferError::Folder {
        file: path.to_owned(),
        reason: format!(
            "no chat template: looked in {} (glimpse needs the model's template to build its prompts)",
            looked.join(", ")
        ),
    })
}

/// Checks `processor_config.json` against config.json: SmolVLM's processor
/// writes `image_seq_len` image tokens per image, and glimpse gives each
/// frame the vision encoder's whole grid; the two must agree, or every
/// prompt would have the wrong number of image slots.
fn check_processor(processor: &Value, info: &ModelInfo) -> Result<(), String> {
    match &processor["image_seq_len"] {
        Value::Null => Ok(()),
        value => {
            let n = value
                .as_u64()
                .ok_or_else(|| format!("image_seq_len is not a positive integer: {value}"))?;
            if n as usize == info.tokens_per_image() {
                Ok(())
            } else {
                Err(format!(
                    "image_seq_len is {n}, but config.json's vision_config gives {} tokens per image \
                     ({}x{} grid: image_size {} / patch_size {} / scale_factor {})",
                    info.tokens_per_image(),
                    info.grid,
                    info.grid,
                    info.image_size,
                    info.patch_size,
                    info.scale_factor
                ))
            }
        }
    }
}

fn read_info(config: &Value) -> Result<ModelInfo, String> {
    let text = &config["text_config"];
    let vision = &config["vision_config"];
    let num = |v: &Value, key: &str, section: &str| -> Result<u64, String> {
        v[key]
            .as_u64()
            .ok_or_else(|| format!("{section}{key} is missing or not a positive integer"))
    };
    let hidden = num(text, "hidden_size", "text_config.")? as usize;
    let heads = num(text, "num_attention_heads", "text_config.")? as usize;
    let head_dim = text["head_dim"]
        .as_u64()
        .map_or(hidden / heads.max(1), |d| d as usize);
    let image_size = num(vision, "image_size", "vision_config.")? as u32;
    let patch_size = num(vision, "patch_size", "vision_config.")? as u32;
    let scale_factor = config["scale_factor"].as_u64().unwrap_or(1).max(1) as u32;
    if patch_size == 0 || !image_size.is_multiple_of(patch_size * scale_factor) {
        return Err(format!(
            "vision_config.image_size {image_size} is not a multiple of patch_size {patch_size} x scale_factor {scale_factor}"
        ));
    }
    Ok(ModelInfo {
        image_size,
        patch_size,
        scale_factor,
        grid: image_size / patch_size / scale_factor,
        hidden,
        layers: num(text, "num_hidden_layers", "text_config.")? as usize,
        heads,
        kv_heads: text["num_key_value_heads"]
            .as_u64()
            .map_or(heads, |k| k as usize),
        head_dim,
        vocab: num(text, "vocab_size", "text_config.")? as usize,
        image_token_id: config["image_token_id"]
            .as_i64()
            .ok_or("image_token_id is missing")?,
        image_before: Vec::new(),
        image_after: Vec::new(),
    })
}

/// The tokens around each image, as SmolVLM's processor writes them
/// (transformers' `SmolVLMProcessor` expands every `<image>` of the chat to
/// `<fake_token_around_image><global-img>` + the image tokens +
/// `<fake_token_around_image>` when images are not split). Models of type
/// smolvlm or idefics3 get them unless their config.json says
/// `"glimpse": {"wrap_images": false}` (our models, trained without).
fn image_markers(config: &Value, tokenizer: &Path) -> Result<(Vec<i64>, Vec<i64>), String> {
    let wraps = matches!(config["model_type"].as_str(), Some("smolvlm" | "idefics3"));
    if !wraps || config["glimpse"]["wrap_images"] == Value::Bool(false) {
        return Ok((Vec::new(), Vec::new()));
    }
    let text = std::fs::read_to_string(tokenizer).map_err(|e| format!("cannot read: {e}"))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| format!("not valid JSON: {e}"))?;
    let id = |token: &str| -> Result<i64, String> {
        json["added_tokens"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["content"] == token)
            .and_then(|t| t["id"].as_i64())
            .or_else(|| json["model"]["vocab"][token].as_i64())
            .ok_or_else(|| {
                format!(
                    "config.json's model_type {:?} puts {token} around every image, but the \
                     tokenizer has no such token; if the model was trained without these \
                     markers, add \"glimpse\": {{\"wrap_images\": false}} to config.json",
                    config["model_type"].as_str().unwrap_or_default()
                )
            })
    };
    let around = id("<fake_token_around_image>")?;
    Ok((vec![around, id("<global-img>")?], vec![around]))
}

/// The graph suffixes present, for a helpful message.
fn list_variants(path: &Path) -> String {
    let mut found: Vec<String> = std::fs::read_dir(path.join("onnx"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| {
            Some(
                n.strip_prefix("decoder_model_merged")?
                    .strip_suffix(".onnx")?
                    .to_owned(),
            )
        })
        .map(|s| {
            if s.is_empty() {
                "fp32 (no suffix)".to_owned()
            } else {
                s
            }
        })
        .collect();
    found.sort();
    if found.is_empty() {
        "none".to_owned()
    } else {
        found.join(", ")
    }
}

/// A printable summary, for `glimpse model inspect`.
impl fmt::Display for ModelFolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.info;
        writeln!(f, "model folder   {}", self.path.display())?;
        writeln!(
            f,
            "variant        {}",
            if self.variant.is_empty() {
                "fp32 (no suffix)"
            } else {
                &self.variant
            }
        )?;
        let boundary = |float: Float| match float {
            Float::F32 => "float32",
            Float::F16 => "float16",
        };
        let quantized = self.quantized_ops();
        writeln!(
            f,
            "precision      {} pixels, {} embeddings, {} KV cache; {}",
            boundary(self.floats.pixel_values),
            boundary(self.floats.inputs_embeds),
            boundary(self.floats.cache),
            if quantized.is_empty() {
                "float weights".to_owned()
            } else {
                format!("quantized ({})", quantized.join(", "))
            }
        )?;
        let template = &self.chat_template;
        let file = template
            .file
            .strip_prefix(&self.path)
            .unwrap_or(&template.file)
            .display();
        match template.key {
            Some(key) => writeln!(f, "chat template  {file} ({key})")?,
            None => writeln!(f, "chat template  {file}")?,
        }
        writeln!(
            f,
            "prompt layout  {} ({})",
            self.prompt_layout, self.prompt_layout_reason
        )?;
        if let Some(n) = self
            .processor_config
            .as_ref()
            .and_then(|p| p["image_seq_len"].as_u64())
        {
            writeln!(f, "processor      processor_config.json: image_seq_len {n}")?;
        }
        writeln!(
            f,
            "vision         {}x{} px, {} px patches, scale factor {} -> {}x{} token grid ({} tokens per frame)",
            i.image_size, i.image_size, i.patch_size, i.scale_factor, i.grid, i.grid, i.tokens_per_image()
        )?;
        writeln!(
            f,
            "language       hidden {}, {} layers, {} heads, {} KV heads of {}, vocabulary {}",
            i.hidden, i.layers, i.heads, i.kv_heads, i.head_dim, i.vocab
        )?;
        writeln!(f, "image token    {}", i.image_token_id)?;
        if !i.image_before.is_empty() || !i.image_after.is_empty() {
            writeln!(
                f,
                "image markers  {:?} before and {:?} after each image's tokens",
                i.image_before, i.image_after
            )?;
        }
        let special: BTreeMap<String, String> =
            ["bos_token", "eos_token", "unk_token", "pad_token"]
                .iter()
                .filter_map(|k| {
                    Some((
                        k.to_string(),
                        self.tokenizer_config[*k].as_str()?.to_owned(),
                    ))
                })
                .collect();
        writeln!(
            f,
            "special tokens {}",
            special
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        )?;
        writeln!(f, "stop token ids {:?}", self.stop_token_ids())?;
        for graph in &self.graphs {
            let name = graph
                .file
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            writeln!(f, "graph          {name}")?;
            let shown = |list: &[TensorInfo]| {
                let mut lines: Vec<String> = list
                    .iter()
                    .filter(|t| !is_cache(&t.name) || is_first_cache(&t.name))
                    .map(|t| t.to_string())
                    .collect();
                let caches = list.iter().filter(|t| is_cache(&t.name)).count();
                if caches > 2 {
                    lines.push(format!("... {} cache tensors in all", caches));
                }
                lines
            };
            for line in shown(&graph.inputs) {
                writeln!(f, "  in  {line}")?;
            }
            for line in shown(&graph.outputs) {
                writeln!(f, "  out {line}")?;
            }
        }
        Ok(())
    }
}

fn is_cache(name: &str) -> bool {
    name.starts_with("past_key_values.") || name.starts_with("present.")
}

fn is_first_cache(name: &str) -> bool {
    name.starts_with("past_key_values.0.") || name.starts_with("present.0.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_describe_window_is_read_and_a_bad_one_named() {
        let read = |v: Value| describe_window(&serde_json::json!({ "describe_window_s": v }));
        assert_eq!(read(Value::Null), Ok(None));
        assert_eq!(read(2.into()), Ok(Some(Duration::from_secs(2))));
        assert_eq!(read(0.5.into()), Ok(Some(Duration::from_millis(500))));
        for bad in [0.into(), (-1).into(), 31.into(), "2".into()] {
            let e = read(bad).unwrap_err();
            assert!(e.contains("glimpse.describe_window_s"), "{e}");
        }
    }
}
