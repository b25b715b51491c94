//! Lists the ops of a model folder's three graphs as tract's CUDA runtime
//! receives them (typed, decluttered), with how many nodes each and the
//! datum types they see, and marks those tract-cuda 0.23.9 has no
//! translator for (read from its source: `register_cuda_op!`, the
//! copy-based ops of tract-gpu, matmul, convolution, attention). Needs no
//! GPU; the placement a GPU really gives is logged by glimpse when it loads
//! a model on `tract-cuda` ("graph placed by tract-cuda").
//!
//!     cargo run --release --example graph_ops -- models/shapes/model

use std::collections::BTreeMap;

use tract_onnx::prelude::*;

/// Op names (as tract prints them) that tract-cuda 0.23.9 translates.
const ON_GPU: &[&str] = &[
    // element-wise mini ops and the named element-wise ones
    "Neg",
    "Abs",
    "Square",
    "Sqrt",
    "Rsqrt",
    "Recip",
    "Ceil",
    "Floor",
    "Round",
    "RoundHalfToEven",
    "Exp",
    "Sigmoid",
    "Sin",
    "Sinh",
    "Asin",
    "Asinh",
    "Cos",
    "Cosh",
    "Acos",
    "Acosh",
    "Tan",
    "Tanh",
    "Atan",
    "Atanh",
    "Erf",
    "Ln",
    "Silu",
    "Sign",
    "HardSwish",
    "BitNot",
    "Not",
    "GeluApproximate",
    "LeakyRelu",
    // binary
    "Mul",
    "Add",
    "Div",
    "Sub",
    "Pow",
    "Min",
    "Max",
    "Greater",
    "GreaterEqual",
    "Eq",
    "NotEq",
    "Less",
    "LessEqual",
    "And",
    "Or",
    "BitOr",
    "BitAnd",
    "BitXor",
    // nn, array, attention
    "Softmax",
    "RmsNorm",
    "ScaledRmsNorm",
    "ApplyRope",
    "RotateHalf",
    "DiagGather",
    "Gather",
    "Cast",
    "Iff",
    "EinSum",
    "PrefixMatMul",
    "Sdpa",
    "Conv",
    "ScaledMaskedSoftmax",
    // copy-based (tract-gpu)
    "MultiBroadcastTo",
    "Slice",
    "Concat",
    "DynKeyValueCache",
    "Pad",
];

/// Binary ops print their mini op's name; tract-cuda matches it lowercased.
const BINARY: &[&str] = &[
    "mul", "add", "div", "sub", "pow", "min", "max", "gt", "gte", "eq", "ne", "lt", "lte", "and",
    "or", "bitor", "bitand", "bitxor",
];

/// Would tract-cuda translate a node `name` whose inputs are `dts`? Only
/// plain numeric and bool tensors go to the device (not TDim shapes), and
/// its Gather takes f32, f16 and i64 data only.
fn on_gpu(name: &str, dts: &[DatumType]) -> bool {
    let device_dt =
        |dt: &DatumType| dt.is_number() && !matches!(dt, DatumType::TDim) || *dt == DatumType::Bool;
    if !dts.iter().all(device_dt) {
        return false;
    }
    if name == "Gather" {
        return matches!(dts[0], DatumType::F32 | DatumType::F16 | DatumType::I64);
    }
    ON_GPU.contains(&name)
        || BINARY.contains(&name.to_lowercase().as_str())
        || name.starts_with("Reduce")
        // AxisOp prints as the axis change it makes
        || ["AddAxis", "RmAxis", "Move", "Reshape"].iter().any(|a| name.starts_with(a))
}

fn main() -> TractResult<()> {
    let folder = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "models/shapes/model".into());
    for graph in ["vision_encoder", "embed_tokens", "decoder_model_merged"] {
        let file = format!("{folder}/onnx/{graph}.onnx");
        let model = tract_onnx::onnx()
            .with_ignore_value_info(true)
            .model_for_path(&file)?
            .into_typed()?
            .into_decluttered()?;
        let mut ops: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
        for node in &model.nodes {
            let name = node.op.name().to_string();
            if matches!(name.as_str(), "Source" | "Const") {
                continue;
            }
            let facts: Vec<DatumType> = model
                .node_input_facts(node.id)?
                .iter()
                .map(|f| f.datum_type)
                .collect();
            let mark = if on_gpu(&name, &facts) { "gpu" } else { "CPU" };
            let dts: Vec<String> = facts.iter().map(|dt| format!("{dt:?}")).collect();
            let entry = ops.entry(format!("{mark} {name}")).or_default();
            entry.0 += 1;
            for dt in dts {
                if !entry.1.contains(&dt) {
                    entry.1.push(dt);
                }
            }
        }
        let total: usize = ops.values().map(|(n, _)| n).sum();
        let cpu: Vec<String> = ops
            .iter()
            .filter_map(|(name, (n, dts))| {
                let name = name.strip_prefix("CPU ")?;
                Some(format!("{name} x{n} [{}]", dts.join(",")))
            })
            .collect();
        println!("{graph}: {total} nodes");
        for (name, (n, dts)) in &ops {
            println!("  {name:<32} x{n:<4} {}", dts.join(","));
        }
        println!(
            "  left on the CPU: {}",
            if cpu.is_empty() {
                "none".to_owned()
            } else {
                cpu.join("; ")
            }
        );
    }
    Ok(())
}
