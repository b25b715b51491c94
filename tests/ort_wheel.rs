//! The CPU `libonnxruntime.so` of the `onnxruntime` pip wheel (installed by
//! scripts/install-deps from models/testing/requirements.txt). Shared by the
//! end-to-end tests and `benches/infer.rs`, which includes this file.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The wheel's library, or why there is none.
pub fn wheel_library() -> Result<PathBuf, String> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !out.status.success() {
        return Err(
            "python3 -c 'import onnxruntime' failed (pip install -r models/testing/requirements.txt)"
                .into(),
        );
    }
    let capi = Path::new(String::from_utf8_lossy(&out.stdout).trim()).join("capi");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&capi)
        .map_err(|e| format!("{}: {e}", capi.display()))?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so"))
        })
        .collect();
    found.sort();
    found
        .pop()
        .ok_or_else(|| format!("no libonnxruntime.so* in {}", capi.display()))
}
