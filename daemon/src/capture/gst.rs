//! GStreamer sources: files, RTSP, V4L2, Jetson CSI, test patterns and raw
//! pipelines, all ending in an appsink that delivers packed RGB at the
//! camera's size.
//!
//! Every kind is turned into gst-launch text by [`describe`] (a pure
//! function, so the Jetson pipeline is tested here as text). The common
//! tail thins the stream out to about the camera's fps with `videorate`
//! *before* colour conversion and scaling, so that frames the sampler would
//! drop are never converted; `videoconvert ! videoscale` then produce RGB at
//! the camera's `width`×`height` with square pixels (letterboxed). Only
//! GStreamer 1.20 APIs are used: JetPack 6 ships 1.20.
//!
//! Each session is one pipeline, pulled from the capture thread; a failed or
//! ended session is dropped (set to NULL) and the supervisor opens a new one.

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use super::{
    CaptureConfig, Picture, PixelFormat, Pulled, RtspTransport, Session, Source, SourceConfig,
    SourceError,
};

/// Builds the gst-launch description of `config`'s pipeline.
pub fn describe(config: &CaptureConfig) -> String {
    let (w, h) = (config.width, config.height);
    // videorate only drops (never duplicates) down to a whole number of
    // frames per second at or above the configured fps; the sampler then
    // picks exact stream times.
    let max_rate = config.fps.ceil().max(1.0) as u32;
    let tail = |live: bool, sync: bool| {
        format!(
            "videorate drop-only=true max-rate={max_rate} ! videoconvert ! videoscale ! \
             video/x-raw,format=RGB,width={w},height={h},pixel-aspect-ratio=1/1 ! \
             appsink name=sink max-buffers=2 drop={live} sync={sync}"
        )
    };
    match &config.source {
        SourceConfig::File { path, realtime, .. } => format!(
            "filesrc location={} ! decodebin ! {}",
            quote(&path.to_string_lossy()),
            tail(false, *realtime)
        ),
        SourceConfig::Rtsp {
            url,
            transport,
            latency_ms,
            ..
        } => {
            let protocols = match transport {
                RtspTransport::Tcp => " protocols=tcp",
                RtspTransport::Udp => " protocols=udp",
                RtspTransport::Auto => "",
            };
            format!(
                "rtspsrc name=src location={} latency={latency_ms}{protocols} ! decodebin ! {}",
                quote(url),
                tail(true, false)
            )
        }
        SourceConfig::V4l2 {
            device,
            format,
            capture_width,
            capture_height,
            frame_rate,
            ..
        } => {
            let caps = match v4l2_caps(*format, *capture_width, *capture_height, *frame_rate) {
                None => String::new(),
                // Either raw or JPEG: a caps list, which gst-launch syntax
                // cannot spell; `open` sets it on the named capsfilter.
                Some(list) if list.contains(';') => " ! capsfilter name=capture".to_owned(),
                Some(caps) => format!(" ! {caps}"),
            };
            format!(
                "v4l2src device={}{caps} ! decodebin ! {}",
                quote(&device.to_string_lossy()),
                tail(true, false)
            )
        }
        SourceConfig::JetsonCsi {
            sensor_id,
            capture_width,
            capture_height,
            frame_rate,
            flip_method,
        } => {
            // The hardware converter (VIC) does the heavy scaling, to the
            // largest size of the sensor's aspect that fits; the CPU only
            // letterboxes and drops the alpha channel.
            let (fw, fh) = fit(*capture_width, *capture_height, w, h);
            format!(
                "nvarguscamerasrc sensor-id={sensor_id} ! \
                 video/x-raw(memory:NVMM),width={capture_width},height={capture_height},framerate={frame_rate}/1,format=NV12 ! \
                 nvvidconv flip-method={flip_method} ! video/x-raw,format=RGBA,width={fw},height={fh} ! {}",
                tail(true, false)
            )
        }
        SourceConfig::Test { pattern, frame_rate } => format!(
            "videotestsrc is-live=true pattern={pattern} ! video/x-raw,framerate={frame_rate}/1 ! {}",
            tail(true, false)
        ),
        SourceConfig::Pipeline { pipeline, .. } => pipeline.clone(),
        // Drawn by glimpse, never through GStreamer (`capture::open_source`
        // routes it elsewhere); an empty description fails to parse.
        SourceConfig::Synthetic { .. } => String::new(),
    }
}

/// The GStreamer elements `config`'s pipeline names (`glimpse doctor`):
/// the first word of each link of [`describe`], caps left out. The
/// decoder `decodebin` picks at run time depends on the stream, so it is
/// not among them.
pub fn elements(config: &CaptureConfig) -> Vec<String> {
    let description = describe(config);
    let mut links = Vec::new();
    let (mut current, mut quoted) = (String::new(), false);
    for c in description.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            '!' if !quoted => links.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    links.push(current);
    let mut names: Vec<String> = links
        .iter()
        .filter_map(|link| link.split_whitespace().next())
        // Caps ("video/x-raw,format=RGB") are not elements.
        .filter(|word| !word.contains('/') && !word.contains(','))
        .map(str::to_owned)
        .collect();
    names.dedup();
    names
}

/// The caps asked of a V4L2 device, if any.
fn v4l2_caps(
    format: PixelFormat,
    width: Option<u32>,
    height: Option<u32>,
    rate: Option<u32>,
) -> Option<String> {
    let mut fields = String::new();
    if let (Some(w), Some(h)) = (width, height) {
        fields.push_str(&format!(",width={w},height={h}"));
    }
    if let Some(r) = rate {
        fields.push_str(&format!(",framerate={r}/1"));
    }
    match format {
        PixelFormat::Yuyv => Some(format!("video/x-raw,format=YUY2{fields}")),
        PixelFormat::Mjpeg => Some(format!("image/jpeg{fields}")),
        PixelFormat::Auto if fields.is_empty() => None,
        PixelFormat::Auto => Some(format!("video/x-raw{fields};image/jpeg{fields}")),
    }
}

/// The largest even size with the aspect of `w`×`h` that fits in `bw`×`bh`.
fn fit(w: u32, h: u32, bw: u32, bh: u32) -> (u32, u32) {
    let scale = f64::min(f64::from(bw) / f64::from(w), f64::from(bh) / f64::from(h));
    let even = |v: f64| ((v.round() as u32) & !1).max(2);
    (
        even(f64::from(w) * scale).min(bw),
        even(f64::from(h) * scale).min(bh),
    )
}

/// Quotes a property value for gst-launch syntax.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A source built from a GStreamer pipeline description.
pub(crate) struct GstSource {
    camera: String,
    config: CaptureConfig,
    description: String,
}

impl GstSource {
    pub fn new(camera: &str, config: &CaptureConfig) -> Result<Self, SourceError> {
        gst::init()
            .map_err(|e| SourceError::permanent(format!("cannot initialise GStreamer: {e}")))?;
        Ok(GstSource {
            camera: camera.to_owned(),
            config: config.clone(),
            description: describe(config),
        })
    }
}

impl Source for GstSource {
    fn open(&mut self) -> Result<Box<dyn Session>, SourceError> {
        if let SourceConfig::File { path, .. } = &self.config.source {
            // A missing file is a config mistake, not an outage.
            if !path.is_file() {
                return Err(SourceError::permanent(format!(
                    "{}: no such file",
                    path.display()
                )));
            }
        }
        tracing::debug!(camera = %self.camera, pipeline = %self.description, "opening GStreamer pipeline");
        let element =
            gst::parse::launch_full(&self.description, None, gst::ParseFlags::FATAL_ERRORS)
                .map_err(|e| SourceError::permanent(format!("bad pipeline: {e}")))?;
        let pipeline = element.downcast::<gst::Pipeline>().map_err(|_| {
            SourceError::permanent("bad pipeline: it must contain more than one element")
        })?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| SourceError::permanent("bad pipeline: no appsink named \"sink\""))?;
        // Errors name what failed to open, as a person configured it.
        let location = match &self.config.source {
            SourceConfig::File { path, .. } => format!("{}: ", path.display()),
            SourceConfig::Rtsp { url, .. } => format!("{url}: "),
            SourceConfig::V4l2 { device, .. } => format!("{}: ", device.display()),
            _ => String::new(),
        };
        let session = GstSession {
            pipeline,
            sink,
            permanent_not_found: matches!(self.config.source, SourceConfig::File { .. }),
            location,
        };
        if let SourceConfig::Pipeline { .. } = self.config.source {
            // A raw pipeline must deliver what the rest of glimpse expects.
            let caps = gst::Caps::builder("video/x-raw")
                .field("format", "RGB")
                .field("width", self.config.width as i32)
                .field("height", self.config.height as i32)
                .build();
            session.sink.set_caps(Some(&caps));
        }
        if let SourceConfig::V4l2 {
            format,
            capture_width,
            capture_height,
            frame_rate,
            ..
        } = &self.config.source
        {
            if let (Some(filter), Some(list)) = (
                session.pipeline.by_name("capture"),
                v4l2_caps(*format, *capture_width, *capture_height, *frame_rate),
            ) {
                let caps = list
                    .parse::<gst::Caps>()
                    .map_err(|_| SourceError::permanent(format!("bad caps {list:?}")))?;
                filter.set_property("caps", &caps);
            }
        }
        if let SourceConfig::Rtsp {
            username, password, ..
        } = &self.config.source
        {
            if let Some(src) = session.pipeline.by_name("src") {
                // Set as properties, so that the password never appears in
                // the pipeline text or the logs.
                if let Some(user) = username {
                    src.set_property("user-id", user);
                }
                if let Some(password) = password {
                    src.set_property("user-pw", &password.0);
                }
            }
        }
        if session.pipeline.set_state(gst::State::Playing).is_err() {
            return Err(session
                .bus_error()
                .unwrap_or_else(|| SourceError::transient("the pipeline refused to start")));
        }
        Ok(Box::new(session))
    }
}

struct GstSession {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
    /// A "not found" resource is a config mistake for files, an unplugged
    /// device or an absent server otherwise.
    permanent_not_found: bool,
    /// Prefix of error messages: the file, URL or device.
    location: String,
}

impl GstSession {
    /// The first error waiting on the bus, classified.
    fn bus_error(&self) -> Option<SourceError> {
        let bus = self.pipeline.bus()?;
        while let Some(message) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(err) = message.view() {
                tracing::debug!(debug = ?err.debug(), "GStreamer error");
                let error = err.error();
                let source = err.src().map(|s| s.name().to_string()).unwrap_or_default();
                let text = format!(
                    "{}{} ({source})",
                    self.location,
                    error.message().trim_end_matches('.')
                );
                return Some(if self.is_permanent(&error) {
                    SourceError::permanent(text)
                } else {
                    SourceError::transient(text)
                });
            }
        }
        None
    }

    fn is_permanent(&self, error: &gst::glib::Error) -> bool {
        if let Some(kind) = error.kind::<gst::StreamError>() {
            return matches!(
                kind,
                gst::StreamError::TypeNotFound
                    | gst::StreamError::WrongType
                    | gst::StreamError::CodecNotFound
                    | gst::StreamError::Format
                    | gst::StreamError::NotImplemented
            );
        }
        if let Some(kind) = error.kind::<gst::CoreError>() {
            return matches!(
                kind,
                gst::CoreError::MissingPlugin | gst::CoreError::Negotiation
            );
        }
        if let Some(kind) = error.kind::<gst::ResourceError>() {
            return kind == gst::ResourceError::NotFound && self.permanent_not_found;
        }
        false
    }
}

impl Session for GstSession {
    fn pull(&mut self, timeout: Duration) -> Result<Pulled, SourceError> {
        if let Some(error) = self.bus_error() {
            return Err(error);
        }
        let Some(sample) = self
            .sink
            .try_pull_sample(gst::ClockTime::from_nseconds(timeout.as_nanos() as u64))
        else {
            // An element that fails posts its error, then the source sends
            // end-of-stream: the error, if any, is the real outcome.
            if let Some(error) = self.bus_error() {
                return Err(error);
            }
            return Ok(if self.sink.is_eos() {
                Pulled::End
            } else {
                Pulled::Idle
            });
        };
        picture(&sample).map(Pulled::Picture)
    }
}

/// Copies a sample's RGB rows (GStreamer pads rows to 4 bytes).
fn picture(sample: &gst::Sample) -> Result<Picture, SourceError> {
    let caps = sample
        .caps()
        .ok_or_else(|| SourceError::transient("a frame without caps"))?;
    let info = gst_video::VideoInfo::from_caps(caps)
        .map_err(|_| SourceError::permanent(format!("cannot read frames of caps {caps}")))?;
    if info.format() != gst_video::VideoFormat::Rgb {
        return Err(SourceError::permanent(format!(
            "the pipeline delivers {:?}, not RGB; end it with `videoconvert ! videoscale ! appsink name=sink`",
            info.format()
        )));
    }
    let buffer = sample
        .buffer()
        .ok_or_else(|| SourceError::transient("a sample without a buffer"))?;
    let map = buffer
        .map_readable()
        .map_err(|_| SourceError::transient("cannot map a frame buffer"))?;
    let (width, height) = (info.width(), info.height());
    let row = width as usize * 3;
    let stride = info.stride()[0] as usize;
    let offset = info.offset()[0];
    let mut rgb = Vec::with_capacity(row * height as usize);
    for y in 0..height as usize {
        let start = offset + y * stride;
        let line = map
            .get(start..start + row)
            .ok_or_else(|| SourceError::transient("a frame buffer shorter than its caps say"))?;
        rgb.extend_from_slice(line);
    }
    Ok(Picture {
        pts: buffer.pts().map(|t| Duration::from_nanos(t.nseconds())),
        width,
        height,
        rgb,
    })
}

impl Drop for GstSession {
    fn drop(&mut self) {
        // NULL releases the device, the socket and the decoder threads.
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn camera(source: &str) -> CaptureConfig {
        CaptureConfig {
            width: 320,
            height: 240,
            ..CaptureConfig::new(super::super::config::inline_source(source))
        }
    }

    #[test]
    fn the_elements_of_a_pipeline_are_its_links_first_words() {
        let csi = elements(&camera(r#"{ kind = "jetson_csi", sensor_id = 1 }"#));
        assert_eq!(
            csi,
            [
                "nvarguscamerasrc",
                "nvvidconv",
                "videorate",
                "videoconvert",
                "videoscale",
                "appsink"
            ]
        );
        let file = elements(&camera(r#"{ kind = "file", path = "a ! b.mp4" }"#));
        assert_eq!(file[..2], ["filesrc", "decodebin"]);
        let own = elements(&camera(
            r#"{ kind = "pipeline", pipeline = "nosuchsrc ! video/x-raw ! appsink name=sink" }"#,
        ));
        assert_eq!(own, ["nosuchsrc", "appsink"]);
    }

    #[test]
    fn jetson_csi_scales_on_the_vic_and_letterboxes_on_the_cpu() {
        let text = describe(&camera(
            r#"{ kind = "jetson_csi", sensor_id = 1, flip_method = 2 }"#,
        ));
        assert_eq!(
            text,
            "nvarguscamerasrc sensor-id=1 ! \
             video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1,format=NV12 ! \
             nvvidconv flip-method=2 ! video/x-raw,format=RGBA,width=320,height=180 ! \
             videorate drop-only=true max-rate=2 ! videoconvert ! videoscale ! \
             video/x-raw,format=RGB,width=320,height=240,pixel-aspect-ratio=1/1 ! \
             appsink name=sink max-buffers=2 drop=true sync=false"
        );
    }

    #[test]
    fn rtsp_keeps_credentials_out_of_the_text() {
        let text = describe(&camera(
            r#"{ kind = "rtsp", url = "rtsp://cam.lan/s1", username = "viewer", transport = "udp", latency_ms = 100 }"#,
        ));
        assert!(text.starts_with("rtspsrc name=src location=\"rtsp://cam.lan/s1\" latency=100 protocols=udp ! decodebin ! "), "{text}");
        assert!(!text.contains("viewer"));
    }

    #[test]
    fn v4l2_caps_follow_the_format() {
        let mjpeg = describe(&camera(
            r#"{ kind = "v4l2", device = "/dev/video2", format = "mjpeg", capture_width = 1280, capture_height = 720, frame_rate = 30 }"#,
        ));
        assert!(mjpeg.starts_with("v4l2src device=\"/dev/video2\" ! image/jpeg,width=1280,height=720,framerate=30/1 ! decodebin"), "{mjpeg}");
        let auto = describe(&camera(r#"{ kind = "v4l2" }"#));
        assert!(
            auto.starts_with("v4l2src device=\"/dev/video0\" ! decodebin"),
            "{auto}"
        );
    }

    #[test]
    fn file_paths_are_quoted() {
        let text = describe(&camera(
            r#"{ kind = "file", path = "/clips/my \"best\" clip.mp4", realtime = false }"#,
        ));
        assert!(
            text.starts_with(r#"filesrc location="/clips/my \"best\" clip.mp4" ! decodebin"#),
            "{text}"
        );
        assert!(text.ends_with("drop=false sync=false"), "{text}");
    }

    #[test]
    fn fit_keeps_the_aspect() {
        assert_eq!(fit(1920, 1080, 512, 512), (512, 288));
        assert_eq!(fit(640, 480, 512, 512), (512, 384));
        assert_eq!(fit(1080, 1920, 512, 512), (288, 512));
    }
}
