//! A graph's signature, read from its `.onnx` file without loading the
//! weights, and the checks that the three graphs of a model folder fit
//! together and the model's config (docs/architecture.md §6).

use std::fmt;
use std::path::{Path, PathBuf};

use tract_onnx::pb;
use tract_onnx::prelude::Framework;

use super::folder::ModelInfo;
use super::InferError;

/// Operators of quantized graphs (ONNX and ONNX Runtime's contrib set):
/// dynamic int8/uint8 (`_int8`, `_uint8`, `_quantized`), static QDQ, and
/// the 4-bit block formats (`_q4`, `_q4f16`, `_bnb4`).
const QUANTIZED_OPS: [&str; 10] = [
    "DynamicQuantizeLinear",
    "MatMulInteger",
    "ConvInteger",
    "QLinearMatMul",
    "QLinearConv",
    "QuantizeLinear",
    "DequantizeLinear",
    "MatMulNBits",
    "GatherBlockQuantized",
    "MatMulBnb4",
];

/// One graph's file and its named inputs and outputs.
#[derive(Debug, Clone, Default)]
pub struct GraphInfo {
    /// The `.onnx` file.
    pub file: PathBuf,
    /// Inputs: name, element type, dims (a name for symbolic dims).
    pub inputs: Vec<TensorInfo>,
    /// Outputs, likewise.
    pub outputs: Vec<TensorInfo>,
    /// Bytes of weights in external data files.
    pub external_bytes: u64,
    /// The quantized operators the graph uses (sorted, each once); empty for
    /// a float graph.
    pub quantized: Vec<String>,
}

/// A named tensor of a graph's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Its name.
    pub name: String,
    /// ONNX element type name (`float`, `int64`, `bool`, ...).
    pub dtype: &'static str,
    /// Dims: a number, or the symbol's name.
    pub dims: Vec<String>,
}

impl fmt::Display for TensorInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}[{}]", self.name, self.dtype, self.dims.join(", "))
    }
}

pub(super) fn read_graph(file: &Path, folder: &Path) -> Result<GraphInfo, String> {
    let proto = tract_onnx::onnx()
        .proto_model_for_path(file)
        .map_err(|e| format!("not a readable ONNX model: {e}"))?;
    let graph = proto.graph.as_ref().ok_or("the model has no graph")?;
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let mut external_bytes = 0;
    let dir = file.parent().unwrap_or(folder);
    for tensor in &graph.initializer {
        let Some(location) = tensor.external_data.iter().find(|e| e.key == "location") else {
            continue;
        };
        // The weights must stay inside the model folder: a model from the
        // internet must not read /etc/shadow into a tensor.
        let relative = Path::new(&location.value);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!(
                "external data {:?} of tensor {} leaves the model folder",
                location.value, tensor.name
            ));
        }
        let data = dir.join(relative);
        let canonical = data
            .canonicalize()
            .map_err(|e| format!("external data {}: {e}", data.display()))?;
        let root = folder
            .canonicalize()
            .map_err(|e| format!("{}: {e}", folder.display()))?;
        if !canonical.starts_with(&root) {
            return Err(format!(
                "external data {} leaves the model folder",
                data.display()
            ));
        }
        let length = tensor
            .external_data
            .iter()
            .find(|e| e.key == "length")
            .and_then(|e| e.value.parse::<u64>().ok());
        external_bytes += length.unwrap_or(0);
    }
    let describe = |v: &pb::ValueInfoProto| TensorInfo {
        name: v.name.clone(),
        dtype: match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(pb::type_proto::Value::TensorType(t)) => dtype_name(t.elem_type),
            None => "?",
        },
        dims: match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(pb::type_proto::Value::TensorType(t)) => t
                .shape
                .as_ref()
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| match &d.value {
                            Some(pb::tensor_shape_proto::dimension::Value::DimValue(n)) => {
                                n.to_string()
                            }
                            Some(pb::tensor_shape_proto::dimension::Value::DimParam(p)) => {
                                p.clone()
                            }
                            None => "?".to_owned(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            None => Vec::new(),
        },
    };
    let mut quantized: Vec<String> = graph
        .node
        .iter()
        .filter(|n| QUANTIZED_OPS.contains(&n.op_type.as_str()))
        .map(|n| n.op_type.clone())
        .collect();
    quantized.sort();
    quantized.dedup();
    Ok(GraphInfo {
        file: file.to_owned(),
        quantized,
        // Old exporters list initializers among the inputs; they are weights.
        inputs: graph
            .input
            .iter()
            .filter(|i| !initializers.contains(i.name.as_str()))
            .map(describe)
            .collect(),
        outputs: graph.output.iter().map(describe).collect(),
        external_bytes,
    })
}

fn dtype_name(elem_type: i32) -> &'static str {
    match elem_type {
        1 => "float",
        2 => "uint8",
        3 => "int8",
        6 => "int32",
        7 => "int64",
        9 => "bool",
        10 => "float16",
        _ => "other",
    }
}

/// Checks the named tensors of docs/architecture.md §6 against each other and config.json.
pub(super) fn check_signatures(
    graphs: &[GraphInfo; 3],
    info: &ModelInfo,
) -> Result<(), InferError> {
    let [vision, embed, decoder] = graphs;
    let mut expect_in: Vec<(&GraphInfo, String, &[&str])> = vec![
        (vision, "pixel_values".into(), &["float", "float16"]),
        (vision, "pixel_attention_mask".into(), &["bool"]),
        (embed, "input_ids".into(), &["int64"]),
        (decoder, "inputs_embeds".into(), &["float", "float16"]),
        (decoder, "attention_mask".into(), &["int64"]),
        (decoder, "position_ids".into(), &["int64"]),
    ];
    let mut expect_out: Vec<(&GraphInfo, String)> = vec![
        (vision, "image_features".into()),
        (embed, "inputs_embeds".into()),
        (decoder, "logits".into()),
    ];
    for layer in 0..info.layers {
        for kind in ["key", "value"] {
            expect_in.push((
                decoder,
                format!("past_key_values.{layer}.{kind}"),
                &["float", "float16"],
            ));
            expect_out.push((decoder, format!("present.{layer}.{kind}")));
        }
    }
    let mismatch = |graph: &GraphInfo, reason: String| InferError::Folder {
        file: graph.file.clone(),
        reason,
    };
    for (graph, name, dtypes) in expect_in {
        let tensor = graph
            .inputs
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| mismatch(graph, format!("no input tensor named {name:?}")))?;
        if !dtypes.contains(&tensor.dtype) {
            return Err(mismatch(
                graph,
                format!(
                    "input {name:?} is {}, expected {}",
                    tensor.dtype,
                    dtypes.join(" or ")
                ),
            ));
        }
        if name.starts_with("past_key_values.") {
            let want = [info.kv_heads.to_string(), info.head_dim.to_string()];
            let dims = &tensor.dims;
            if dims.len() != 4 || dims[1] != want[0] || dims[3] != want[1] {
                return Err(mismatch(
                    graph,
                    format!(
                        "input {name:?} has dims [{}], expected [batch, {}, past, {}] from config.json",
                        dims.join(", "),
                        want[0],
                        want[1]
                    ),
                ));
            }
        }
    }
    for (graph, name) in expect_out {
        if !graph.outputs.iter().any(|t| t.name == name) {
            return Err(mismatch(graph, format!("no output tensor named {name:?}")));
        }
    }
    let extra_layers = decoder
        .inputs
        .iter()
        .filter(|t| t.name.starts_with("past_key_values.") && t.name.ends_with(".key"))
        .count();
    if extra_layers != info.layers {
        return Err(mismatch(
            decoder,
            format!(
                "{extra_layers} key caches, but config.json says num_hidden_layers = {}",
                info.layers
            ),
        ));
    }
    Ok(())
}
