//! `glimpse doctor`: everything a deployment of one config needs, checked
//! at once, one line per check with what to do about it: the model folder
//! and its variant, ONNX Runtime and its execution providers, the GPU
//! device nodes, each camera's GStreamer elements and V4L2 devices, the
//! state directory and engine cache, the broker and the HTTP port. Nothing
//! is started: each check opens what it checks and lets it go.

use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use crate::capture::SourceConfig;
use crate::config::Config;
use crate::infer::{BackendKind, ModelFolder};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// As it should be.
    Ok,
    /// Works, but not as well as it could, or not on every path.
    Warn,
    /// The deployment will not work as configured.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    /// How it came out.
    pub status: Status,
    /// What was checked, in a word or two ("model", "gstreamer").
    pub what: &'static str,
    /// What was found.
    pub found: String,
    /// What to do, when not ok.
    pub fix: Option<String>,
}

impl Check {
    fn ok(what: &'static str, found: impl Into<String>) -> Check {
        Check {
            status: Status::Ok,
            what,
            found: found.into(),
            fix: None,
        }
    }

    fn warn(what: &'static str, found: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Warn,
            what,
            found: found.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(what: &'static str, found: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Fail,
            what,
            found: found.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every check for `config`, in the order a deployment meets them.
pub fn run(config: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.extend(model(config));
    checks.extend(onnx_runtime(config));
    checks.push(gpu_nodes(config));
    checks.extend(cameras(config));
    checks.extend(state_dir(config));
    checks.push(broker(config));
    checks.extend(http_port(config));
    checks
}

/// The model folder, its variant, and the float16 cliff on tract.
fn model(config: &Config) -> Vec<Check> {
    let Some(model) = &config.model else {
        return vec![Check::warn(
            "model",
            "no [model]: frames are captured and sampled, nothing is described",
            "add a [model] table (config/glimpse.toml shows one)",
        )];
    };
    let folder = match ModelFolder::open(&model.path, &model.variant) {
        Ok(folder) => folder,
        Err(e) => {
            return vec![Check::fail(
                "model",
                e.to_string(),
                "point model.path at an onnx-community model folder (glimpse model inspect FOLDER)",
            )]
        }
    };
    let mut out = vec![Check::ok(
        "model",
        format!(
            "{} (variant {:?}): {}×{} tokens per image, prompt layout {}",
            model.path.display(),
            model.variant,
            folder.info.grid,
            folder.info.grid,
            folder.prompt_layout
        ),
    )];
    // tract emulates float16 on CPUs without it: 20-65x slower than the
    // float32 twin (issue 41), so `tract_float16 = "auto"` converts.
    let half = folder.floats.has_f16();
    if half
        && matches!(
            model.backend,
            BackendKind::Tract | BackendKind::TractCuda | BackendKind::Auto
        )
    {
        let cpu = if tract_linalg::has_fp16() {
            "this CPU has float16 arithmetic"
        } else {
            "this CPU has no float16 arithmetic"
        };
        out.push(if model.tract_float16.widens() {
            Check::ok(
                "model",
                format!(
                    "variant {:?} on tract: {} converted to float32 at load ({cpu}; their weights take twice the memory)",
                    model.variant,
                    if model.tract_float16.widens_graph("decoder_model_merged") {
                        "its graphs"
                    } else {
                        "its vision encoder"
                    }
                ),
            )
        } else if tract_linalg::has_fp16() {
            Check::ok("model", format!("variant {:?} on tract: run as float16 ({cpu})", model.variant))
        } else {
            Check::warn(
                "model",
                format!(
                    "variant {:?} on tract as float16: {cpu}, so tract emulates it, 20-65x slower than float32",
                    model.variant
                ),
                "remove model.tract_float16 = \"native\" (auto converts to float32), or use ONNX Runtime (model.backend = \"ort\")",
            )
        });
    }
    out
}

/// ONNX Runtime: the library, its build, and each execution provider.
#[cfg(feature = "ort")]
fn onnx_runtime(config: &Config) -> Vec<Check> {
    let Some(model) = &config.model else {
        return Vec::new();
    };
    let needed = model.backend == BackendKind::Ort;
    let probe = match crate::infer::probe_ort(model.ort_library.as_deref()) {
        Ok(probe) => probe,
        Err(why) if needed => {
            return vec![Check::fail(
                "onnxruntime",
                why,
                "install ONNX Runtime (the onnxruntime pip wheel, or JetPack's onnxruntime-gpu) and set model.ort_library or ORT_DYLIB_PATH",
            )]
        }
        Err(why) => {
            return vec![Check::warn(
                "onnxruntime",
                format!("{why}; tract runs the model"),
                "for GPUs and quantized graphs, install ONNX Runtime and set model.ort_library or ORT_DYLIB_PATH",
            )];
        }
    };
    let mut out = vec![Check::ok(
        "onnxruntime",
        format!(
            "{} (from {}), {}",
            probe.library.display(),
            probe.from,
            probe.build
        ),
    )];
    for (provider, registered) in probe.providers {
        let wanted = model.providers.contains(&provider);
        out.push(match registered {
            Ok(()) => Check::ok("onnxruntime", format!("execution provider {provider}: can be created")),
            Err(why) if wanted && (model.require_gpu || !provider.is_gpu()) => Check::fail(
                "onnxruntime",
                format!("execution provider {provider}: {why}"),
                "install the provider's libraries (CUDA, cuDNN, TensorRT) where ONNX Runtime finds them, or drop it from model.providers",
            ),
            Err(why) if wanted => Check::warn(
                "onnxruntime",
                format!("execution provider {provider}: {why}"),
                "install the provider's libraries (CUDA, cuDNN, TensorRT), or drop it from model.providers; the next one is used",
            ),
            Err(why) => Check::ok(
                "onnxruntime",
                format!("execution provider {provider}: not available ({why}); not in model.providers"),
            ),
        });
    }
    out
}

#[cfg(not(feature = "ort"))]
fn onnx_runtime(_: &Config) -> Vec<Check> {
    vec![Check::warn(
        "onnxruntime",
        "glimpse was built without the `ort` cargo feature",
        "build with the default features for ONNX Runtime",
    )]
}

/// The GPU's device nodes, and whether this user can open them.
fn gpu_nodes(config: &Config) -> Check {
    let nodes: Vec<std::path::PathBuf> = std::fs::read_dir("/dev")
        .map(|dir| {
            let mut nodes: Vec<_> = dir
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().unwrap_or_default().to_string_lossy();
                    name.starts_with("nvidia") || name.starts_with("nvhost-") || name == "nvmap"
                })
                .collect();
            nodes.sort();
            nodes
        })
        .unwrap_or_default();
    let model = config.model.as_ref();
    let requires = model.is_some_and(|m| m.require_gpu);
    let asks = model.is_some_and(|m| {
        m.backend == BackendKind::TractCuda
            || (m.backend == BackendKind::Ort && m.providers.iter().any(|p| p.is_gpu()))
    });
    if nodes.is_empty() {
        let found = "no /dev/nvidia* or /dev/nvhost-* device";
        let fix = "install the NVIDIA driver (JetPack on a Jetson), or use the CPU: model.backend = \"tract\"";
        return if requires {
            Check::fail("gpu", format!("{found}, and model.require_gpu is set"), fix)
        } else if asks {
            Check::warn(
                "gpu",
                format!("{found}: the GPU providers fall back to the CPU"),
                fix,
            )
        } else {
            Check::ok("gpu", format!("{found}; the model runs on the CPU"))
        };
    }
    let closed: Vec<String> = nodes
        .iter()
        .filter(|p| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .is_err()
        })
        .map(|p| p.display().to_string())
        .collect();
    if closed.is_empty() {
        Check::ok(
            "gpu",
            format!("{} device node(s), all can be opened", nodes.len()),
        )
    } else {
        Check::fail(
            "gpu",
            format!("cannot open {}", closed.join(", ")),
            "run as the service's user, in the video and render groups (systemd/jetson.conf adds them)",
        )
    }
}

/// Each camera: the GStreamer elements its pipeline needs, its V4L2 device.
fn cameras(config: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    for (name, camera) in config.cameras.iter().filter(|(_, c)| c.enabled) {
        let capture = camera.capture();
        if let SourceConfig::V4l2 { device, .. } = &capture.source {
            out.push(match std::fs::File::open(device) {
                Ok(_) => Check::ok("v4l2", format!("camera {name}: {} opens", device.display())),
                Err(e) => Check::fail(
                    "v4l2",
                    format!("camera {name}: {}: {e}", device.display()),
                    "plug the camera in, or add the service's user to the video group",
                ),
            });
        }
        out.extend(gstreamer(name, &capture));
    }
    out
}

#[cfg(feature = "gstreamer")]
fn gstreamer(name: &str, capture: &crate::capture::CaptureConfig) -> Vec<Check> {
    let needed = match &capture.source {
        SourceConfig::Synthetic { .. } => return Vec::new(),
        #[cfg(feature = "v4l2")]
        SourceConfig::V4l2 {
            backend: crate::capture::V4l2Backend::Direct,
            ..
        } => return Vec::new(),
        _ => crate::capture::gst::elements(capture),
    };
    if let Err(e) = gstreamer::init() {
        return vec![Check::fail(
            "gstreamer",
            format!("GStreamer does not start: {e}"),
            "install GStreamer 1.20 or newer (gstreamer1.0-plugins-base, -good)",
        )];
    }
    let missing: Vec<&String> = needed
        .iter()
        .filter(|e| gstreamer::ElementFactory::find(e).is_none())
        .collect();
    if missing.is_empty() {
        return vec![Check::ok(
            "gstreamer",
            format!(
                "camera {name}: every element of its pipeline is there ({})",
                needed.join(", ")
            ),
        )];
    }
    let fix = match missing.iter().map(|m| m.as_str()).next() {
        Some("nvarguscamerasrc" | "nvvidconv" | "nvv4l2decoder") => {
            "install JetPack's GStreamer plugins (nvidia-l4t-gstreamer)"
        }
        Some("rtspsrc" | "v4l2src") => "install gstreamer1.0-plugins-good",
        Some("avdec_h264" | "avdec_h265") => "install gstreamer1.0-libav",
        _ => "install the GStreamer plugin that has it (gst-inspect-1.0 NAME says which)",
    };
    vec![Check::fail(
        "gstreamer",
        format!(
            "camera {name}: missing element(s) {}",
            missing
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        fix,
    )]
}

#[cfg(not(feature = "gstreamer"))]
fn gstreamer(name: &str, capture: &crate::capture::CaptureConfig) -> Vec<Check> {
    match &capture.source {
        SourceConfig::Synthetic { .. } | SourceConfig::V4l2 { .. } => Vec::new(),
        _ => vec![Check::fail(
            "gstreamer",
            format!("camera {name}: its source needs GStreamer, and glimpse was built without it"),
            "build with the default features (gstreamer)",
        )],
    }
}

/// The state directory, and the engine cache in it, can be written.
fn state_dir(config: &Config) -> Vec<Check> {
    let Some(dir) = config.service.state_dir() else {
        return vec![Check::fail(
            "state",
            "no state directory: neither service.state_dir, STATE_DIRECTORY nor XDG_STATE_HOME/HOME",
            "set service.state_dir",
        )];
    };
    let mut out = vec![writable("state", dir)];
    let tensorrt = config.model.as_ref().is_some_and(|m| {
        m.backend != BackendKind::Tract && m.providers.contains(&crate::infer::Provider::Tensorrt)
    });
    if tensorrt && out[0].status == Status::Ok {
        out.push(writable("engines", &dir.join("engines")));
    }
    out
}

/// Whether a file can be made in `dir` (made if missing).
fn writable(what: &'static str, dir: &Path) -> Check {
    let probe = dir.join(".glimpse-doctor");
    let result = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b"x"))
        .and_then(|()| std::fs::remove_file(&probe));
    match result {
        Ok(()) => Check::ok(what, format!("{} can be written", dir.display())),
        Err(e) => Check::fail(
            what,
            format!("{}: {e}", dir.display()),
            "make it writable by the service's user (the unit's StateDirectory= does), or set service.state_dir",
        ),
    }
}

/// The broker: the embedded one's port free, or the external one reached.
fn broker(config: &Config) -> Check {
    let mqtt = &config.mqtt;
    if mqtt.is_embedded() {
        return match TcpListener::bind(&mqtt.listen) {
            Ok(_) => Check::ok("mqtt", format!("embedded broker: {} is free", mqtt.listen)),
            Err(e) => Check::fail(
                "mqtt",
                format!("embedded broker: {}: {e}", mqtt.listen),
                "stop what holds the port (another broker, another glimpse), or set mqtt.listen",
            ),
        };
    }
    let Some(address) = mqtt.broker_address() else {
        return Check::fail(
            "mqtt",
            format!("broker {:?} is not an address", mqtt.broker),
            "set mqtt.broker to mqtt://HOST:PORT",
        );
    };
    let target = format!("{}:{}", address.host, address.port);
    let reached = target
        .to_socket_addrs()
        .map_err(|e| e.to_string())
        .and_then(|mut addrs| addrs.next().ok_or_else(|| "no address".to_owned()))
        .and_then(|a: SocketAddr| {
            TcpStream::connect_timeout(&a, Duration::from_secs(3)).map_err(|e| e.to_string())
        });
    match reached {
        Ok(_) => Check::ok("mqtt", format!("broker {} answers on {target}", mqtt.broker)),
        Err(e) => Check::warn(
            "mqtt",
            format!("broker {}: {e}", mqtt.broker),
            "start the broker or fix mqtt.broker; glimpse keeps events in its outbox until it answers",
        ),
    }
}

/// The HTTP endpoint's port is free.
fn http_port(config: &Config) -> Option<Check> {
    let http = &config.http;
    if !http.enabled {
        return None;
    }
    Some(match TcpListener::bind(&http.listen) {
        Ok(_) => Check::ok("http", format!("{} is free", http.listen)),
        Err(e) => Check::fail(
            "http",
            format!("{}: {e}", http.listen),
            "stop what holds the port, or set http.listen (or http.enabled = false)",
        ),
    })
}
