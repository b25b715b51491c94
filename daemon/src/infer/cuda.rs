//! tract's CUDA runtime (`model.backend = "tract-cuda"`, the `cuda` or
//! `cuda-12` cargo feature): the same tract graphs, translated op by op to
//! CUDA kernels, cuBLAS and cuDNN by `tract-cuda`.
//!
//! Nothing is linked at build time: cudarc opens the driver (`libcuda.so.1`)
//! and the CUDA libraries (cudart, NVRTC, cuBLAS, cuDNN) with dlopen, and
//! NVRTC compiles tract's kernels on first use (cached under
//! `~/.cache/tract/`; it needs the toolkit's `cuda_fp16.h` and CCCL
//! headers, found through `CUDA_HOME` or /usr/local/cuda). [`probe`] checks
//! all of that before any graph is touched, so a machine without them gets
//! one sentence naming what is missing, never a panic.
//!
//! An op tract-cuda has no kernel for stays on the CPU inside the same plan,
//! with copies around it; [`Placement`] counts where each node of a
//! compiled graph runs (docs/architecture.md §6 has the table per graph).
//! Runs on the thread that loads the model; each worker thread that runs a
//! plan gets its own CUDA stream from tract.

use std::collections::BTreeMap;

/// Where the nodes of one compiled graph run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Nodes running as CUDA kernels (tract's `Cuda*` and `Gpu*` ops).
    pub gpu: usize,
    /// Host <-> device copies tract inserted around CPU nodes and at the
    /// graph's inputs and outputs.
    pub copies: usize,
    /// Nodes left on the CPU, by op name.
    pub cpu: BTreeMap<String, usize>,
}

impl Placement {
    /// Counts the nodes of a plan by their op names (inputs and constants
    /// are neither).
    pub fn of<S: AsRef<str>>(op_names: impl IntoIterator<Item = S>) -> Placement {
        let mut placement = Placement::default();
        for name in op_names {
            let name = name.as_ref();
            if name.starts_with("Cuda") || name.starts_with("Gpu") {
                placement.gpu += 1;
            } else if name.starts_with("DeviceSync") {
                placement.copies += 1;
            } else if !matches!(name, "Source" | "Const") {
                *placement.cpu.entry(name.to_owned()).or_default() += 1;
            }
        }
        placement
    }

    /// Nodes left on the CPU.
    pub fn cpu_nodes(&self) -> usize {
        self.cpu.values().sum()
    }
}

impl std::fmt::Display for Placement {
    /// `gpu 212 nodes, cpu 3 (Range x2, Topk), 4 copies`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gpu {} nodes, cpu {}", self.gpu, self.cpu_nodes())?;
        if !self.cpu.is_empty() {
            let ops: Vec<String> = self
                .cpu
                .iter()
                .map(|(op, n)| {
                    if *n > 1 {
                        format!("{op} x{n}")
                    } else {
                        op.clone()
                    }
                })
                .collect();
            write!(f, " ({})", ops.join(", "))?;
        }
        write!(f, ", {} copies", self.copies)
    }
}

#[cfg(feature = "tract-cuda")]
pub use self::runtime::{prepare, probe, Cuda};

#[cfg(not(feature = "tract-cuda"))]
/// Never available: glimpse was built without tract's CUDA runtime.
pub fn probe() -> Result<std::convert::Infallible, String> {
    Err("glimpse was built without the `cuda` cargo feature".to_owned())
}

#[cfg(feature = "tract-cuda")]
mod runtime {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use tract_onnx::prelude::*;

    /// tract's CUDA runtime, checked usable on this machine.
    #[derive(Clone, Copy)]
    pub struct Cuda(&'static dyn Runtime);

    /// The CUDA API level compiled in, as tract-cuda's cargo feature names
    /// it (the driver must be at least this; the libraries of this major).
    pub const API: &str = if cfg!(feature = "cuda-12") {
        "12.6"
    } else {
        "13.0"
    };

    /// tract's CUDA runtime when the driver, the CUDA libraries and a GPU
    /// are there; else why not, naming the library or device missing.
    pub fn probe() -> Result<Cuda, String> {
        // Refer to the crate so that the linker keeps it: its runtime
        // registers itself in tract's inventory from there.
        let _ = std::any::type_name::<tract_cuda::CudaTransform>();
        let found = catch_unwind(|| runtime_for_name("cuda"))
            .map_err(|panic| format!("tract-cuda panicked: {}", panic_text(&panic)))?;
        match found {
            Ok(Some(runtime)) => Ok(Cuda(runtime)),
            Ok(None) => Err("tract's CUDA runtime is not registered in this build".to_owned()),
            // tract-cuda's own chain: the library names it tried, the
            // driver's answer, or the sub-library (cudart, nvrtc, cublas,
            // cudnn) that does not load.
            Err(e) => Err(format!(
                "{} (glimpse built for the CUDA {API} API)",
                format!("{e:#}").replace('\n', " ")
            )),
        }
    }

    /// Translates `model` (typed, decluttered) to CUDA and plans it. tract
    /// expects a CUDA context to exist once the probe passed; a panic
    /// inside (a device that vanished) becomes an error here.
    pub fn prepare(cuda: Cuda, model: TypedModel) -> Result<Box<dyn Runnable>, String> {
        match catch_unwind(AssertUnwindSafe(|| cuda.0.prepare(model))) {
            Ok(Ok(plan)) => Ok(plan),
            Ok(Err(e)) => Err(format!("{e:#}").replace('\n', " ")),
            Err(panic) => Err(format!("tract-cuda panicked: {}", panic_text(&panic))),
        }
    }

    fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "no message".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_counts_gpu_cpu_and_copies() {
        let names = [
            "Source",
            "Const",
            "CudaGgmlGemm",
            "GpuConcat",
            "CudaAdd",
            "DeviceSyncToHost",
            "Range",
            "Range",
            "DeviceSyncToGpu",
            "Topk",
        ];
        let p = Placement::of(names);
        assert_eq!((p.gpu, p.copies, p.cpu_nodes()), (3, 2, 3));
        assert_eq!(
            p.to_string(),
            "gpu 3 nodes, cpu 3 (Range x2, Topk), 2 copies"
        );
        assert_eq!(
            Placement::of(["CudaAdd"]).to_string(),
            "gpu 1 nodes, cpu 0, 0 copies"
        );
    }
}
