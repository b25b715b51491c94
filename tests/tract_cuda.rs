//! tract's CUDA backend (the `cuda` feature) on a machine without an NVIDIA
//! driver, as CI is: `backend = "tract-cuda"` warns and runs on tract's CPU
//! kernels; with `require_gpu` the start fails with status 78, naming the
//! driver libraries it tried. On a machine with a driver the same tests
//! check that the model runs on the GPU instead (`scripts/gpu-check.sh`
//! measures it there).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::harness::daemon::synthetic_config;
use crate::harness::{glimpse, repo};

/// True when an NVIDIA driver library can be opened here.
fn driver_here() -> bool {
    // SAFETY: dlopen with a constant name; the handle is closed at once.
    unsafe {
        let handle = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_LAZY);
        if handle.is_null() {
            return false;
        }
        libc::dlclose(handle);
        true
    }
}

/// The harness's synthetic camera with the test model on tract-cuda and
/// `model` in the `[model]` table.
fn write_config(dir: &Path, model: &str) -> PathBuf {
    let path = repo().join("models/test-tiny");
    let model = format!(
        "[model]\npath = {:?}\nthreads = 1\nbackend = \"tract-cuda\"\n{model}",
        path.display().to_string()
    );
    synthetic_config(dir, &model).0
}

fn run(args: &[&str], config: &Path) -> (Output, String, String) {
    let out = glimpse()
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[test]
fn tract_cuda_without_a_driver_warns_and_runs_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let (out, stdout, stderr) = run(&["model", "warmup"], &config);
    assert!(out.status.success(), "{stderr}");
    if driver_here() {
        assert!(stdout.contains("runtime        tract-cuda ("), "{stdout}");
        return;
    }
    assert!(stdout.contains("runtime        tract\n"), "{stdout}");
    assert!(stdout.contains("tokens decoded"), "{stdout}");
    for said in [
        "WARN",
        "tract-cuda cannot be used, falling back to tract on the CPU",
        "CUDA driver library not found",
        "libcuda.so.1",
        "glimpse built for the CUDA",
        "reason=tract-cuda unavailable, CPU fallback",
    ] {
        assert!(stderr.contains(said), "{said:?} in:\n{stderr}");
    }
}

#[test]
fn tract_cuda_with_require_gpu_and_no_driver_refuses_to_start_with_78() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "require_gpu = true");
    if driver_here() {
        let (out, stdout, stderr) = run(&["model", "warmup"], &config);
        assert!(out.status.success(), "{stderr}");
        assert!(stdout.contains("runtime        tract-cuda ("), "{stdout}");
        return;
    }
    // The daemon (systemd must not restart into it: 78) and the warm-up
    // say the same.
    for args in [&["run"][..], &["model", "warmup"]] {
        let (out, _, stderr) = run(args, &config);
        assert_eq!(out.status.code(), Some(78), "{args:?}: {stderr}");
        for said in [
            "tract-cuda cannot be used: ",
            "CUDA driver library not found. Tried: [\"libcuda.so.1\", \"libcuda.so\"]",
            "(model.require_gpu = true)",
        ] {
            assert!(stderr.contains(said), "{args:?}: {said:?} in:\n{stderr}");
        }
        // No panic of ours or tract-cuda's (cudarc panics where a library
        // is missing unless probed first).
        for panic in [
            "tract-cuda panicked",
            "thread 'main' panicked",
            "Unable to dynamically load",
        ] {
            assert!(!stderr.contains(panic), "{args:?}: {stderr}");
        }
    }
}
