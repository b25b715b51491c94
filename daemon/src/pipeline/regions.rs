//! A camera's masks and zones on the encoder's grid: which patches never
//! count as change (motion masks), which patches each zone covers, and
//! which zones a change must touch to be described (`trigger.zones`).
//! Privacy masks act earlier, in capture, on pixels. And each zone's
//! state, active or idle ([`ZoneWatch`]), from pixels alone.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{CameraConfig, Look};
use crate::dtd::patch_change;
use crate::event::{ZoneState, ZoneStatus};
use crate::frame::Frame;
use crate::region::{self, Polygon};

/// The regions of one camera, on a `grid` × `grid` token grid.
#[derive(Debug, Clone, Default)]
pub struct Regions {
    /// The motion masks' patches, row-major; empty for none.
    pub motion: Vec<bool>,
    /// Each zone's name and patches.
    zones: Vec<(String, Vec<bool>)>,
    /// The zones a change must touch to be described; empty: any change.
    describe_in: Vec<String>,
    /// The zones' watch rules, by the name the rules' states know them by.
    zone_rules: BTreeMap<String, ZoneRule>,
}

/// A watch rule about one zone: what the model is asked, and how it looks
/// at the zone.
#[derive(Debug, Clone)]
pub struct ZoneRule {
    /// The rule's text, asked as it is.
    pub text: String,
    /// The zone.
    pub points: Polygon,
    /// Its tokens, or its crop.
    pub look: Look,
}

impl ZoneRule {
    /// The zone's bounding box cut out of `frame`, padded with black to a
    /// square around it (centred) so that the encoder's resize does not
    /// stretch it.
    pub fn crop(&self, frame: &Frame) -> Frame {
        let (w, h) = (frame.width as usize, frame.height as usize);
        let xs = self.points.0.iter().map(|p| p[0]);
        let ys = self.points.0.iter().map(|p| p[1]);
        let lo = |v: f64, n: usize| ((v * n as f64).floor().max(0.0) as usize).min(n - 1);
        let hi = |v: f64, n: usize| ((v * n as f64).ceil() as usize).clamp(1, n);
        let (x0, x1) = (
            lo(xs.clone().fold(1.0, f64::min), w),
            hi(xs.fold(0.0, f64::max), w),
        );
        let (y0, y1) = (
            lo(ys.clone().fold(1.0, f64::min), h),
            hi(ys.fold(0.0, f64::max), h),
        );
        let (cw, ch) = (x1.saturating_sub(x0).max(1), y1.saturating_sub(y0).max(1));
        let side = cw.max(ch);
        let (ox, oy) = ((side - cw) / 2, (side - ch) / 2);
        let mut rgb = vec![0u8; side * side * 3];
        for y in 0..ch.min(h - y0) {
            let from = ((y0 + y) * w + x0) * 3;
            let to = ((oy + y) * side + ox) * 3;
            let n = cw.min(w - x0) * 3;
            rgb[to..to + n].copy_from_slice(&frame.rgb[from..from + n]);
        }
        Frame {
            camera: frame.camera.clone(),
            seq: frame.seq,
            pts: frame.pts,
            wall_time: frame.wall_time,
            discont: false,
            width: side as u32,
            height: side as u32,
            rgb,
        }
    }
}

impl Regions {
    /// `config`'s masks and zones on a `grid` × `grid` grid.
    pub fn new(config: &CameraConfig, grid: u32, look: Look) -> Regions {
        let on_grid = |polygons: &[Polygon]| region::patches(polygons, grid, grid);
        Regions {
            motion: if config.masks.motion.is_empty() {
                Vec::new()
            } else {
                on_grid(&config.masks.motion)
            },
            zones: config
                .zones
                .iter()
                .map(|(name, zone)| (name.clone(), zone.points.patches(grid, grid)))
                .collect(),
            describe_in: config.trigger.zones.clone(),
            zone_rules: config
                .zones
                .iter()
                .flat_map(|(name, zone)| {
                    zone.rules.iter().map(move |rule| {
                        (
                            super::ZoneConfig::rule_name(name, rule),
                            ZoneRule {
                                text: rule.clone(),
                                points: zone.points.clone(),
                                look: zone.look.unwrap_or(look),
                            },
                        )
                    })
                })
                .collect(),
        }
    }

    /// The zone rule the rules' states know as `name`, if it is one.
    pub fn zone_rule(&self, name: &str) -> Option<&ZoneRule> {
        self.zone_rules.get(name)
    }

    /// The zones with a `changed` patch (row-major: the pixel gate's
    /// patches that changed past its threshold), leaving out the motion
    /// masks' patches (a change there does not count).
    pub fn touched(&self, changed: &[bool]) -> Vec<String> {
        let counted = |i: usize| changed[i] && !self.motion.get(i).copied().unwrap_or(false);
        self.zones
            .iter()
            .filter(|(_, patches)| {
                (0..patches.len().min(changed.len())).any(|i| patches[i] && counted(i))
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Whether a change that touched `zones` is one to describe.
    pub fn describes(&self, zones: &[String]) -> bool {
        self.describe_in.is_empty() || zones.iter().any(|z| self.describe_in.contains(z))
    }
}

/// The grid zone states are watched on: finer than the encoders' (8 × 8
/// for the demo model and SmolVLM2), so a small thing in a zone covers
/// whole patches, and independent of the model (zones work without one).
pub const ZONE_GRID: u32 = 16;

/// Each zone's state, active or idle, from pixels: every sampled frame is
/// compared, patch by patch, with a background, the camera's empty scene.
/// A zone is active while one of its patches (outside the motion masks)
/// differs from the background by the pixel gate's threshold, and idle
/// once none has for `idle_after_s`. The background learns: a patch that
/// clearly matches it (under half the threshold) is copied into it (slow
/// light changes), and one that differs but has stayed still for
/// `absorb_after_s` becomes part of it (a parked car). It starts as the camera's first frame, so something in
/// a zone then counts as empty scene until it moves.
///
/// Memory: two frames of the camera's size (the background and the
/// previous frame), for cameras with zones only.
#[derive(Debug)]
pub struct ZoneWatch {
    tau: f32,
    /// Patches whose change never counts (motion masks), on [`ZONE_GRID`].
    motion: Vec<bool>,
    zones: Vec<Watched>,
    /// Width, height and pixels of the empty scene.
    background: Option<(u32, u32, Vec<u8>)>,
    previous: Vec<u8>,
    /// Per patch: since when it has differed from the background without
    /// moving (stream time).
    still_since: Vec<Option<Duration>>,
}

#[derive(Debug)]
struct Watched {
    name: String,
    patches: Vec<bool>,
    idle_after: Duration,
    absorb_after: Duration,
    state: ZoneState,
    since_ms: u64,
    since: Duration,
    /// The last frame that found something in it (stream time).
    last_seen: Duration,
}

impl ZoneWatch {
    /// The zones of `config`, with the pixel gate's threshold `tau_pix`;
    /// `None` for a camera without zones.
    pub fn new(config: &CameraConfig, tau_pix: f32) -> Option<ZoneWatch> {
        if config.zones.is_empty() {
            return None;
        }
        let now = epoch_ms();
        let seconds = |s: f64| Duration::from_secs_f64(s.max(0.0));
        Some(ZoneWatch {
            tau: tau_pix,
            motion: region::patches(&config.masks.motion, ZONE_GRID, ZONE_GRID),
            zones: config
                .zones
                .iter()
                .map(|(name, zone)| Watched {
                    name: name.clone(),
                    patches: zone.points.patches(ZONE_GRID, ZONE_GRID),
                    idle_after: seconds(zone.idle_after_s),
                    absorb_after: seconds(zone.absorb_after_s),
                    state: ZoneState::Idle,
                    since_ms: now,
                    since: Duration::ZERO,
                    last_seen: Duration::ZERO,
                })
                .collect(),
            background: None,
            previous: Vec::new(),
            still_since: vec![None; (ZONE_GRID * ZONE_GRID) as usize],
        })
    }

    /// Every zone's status now.
    pub fn statuses(&self) -> Vec<ZoneStatus> {
        self.zones
            .iter()
            .map(|z| ZoneStatus {
                zone: z.name.clone(),
                state: z.state,
                since_ms: z.since_ms,
                since_s: z.since.as_secs_f64(),
            })
            .collect()
    }

    /// Takes one sampled frame; returns every zone's status when one
    /// changed state (or on the first frame), to publish.
    pub fn observe(&mut self, frame: &Frame) -> Option<Vec<ZoneStatus>> {
        let pts = frame.pts;
        let same_size = self
            .background
            .as_ref()
            .is_some_and(|(w, h, _)| (*w, *h) == (frame.width, frame.height));
        if !same_size {
            // The first frame, or the camera's size changed: start over.
            self.background = Some((frame.width, frame.height, frame.rgb.clone()));
            self.previous = frame.rgb.clone();
            self.still_since.iter_mut().for_each(|s| *s = None);
            return Some(self.statuses());
        }
        if frame.discont {
            // Stream time starts again (a loop, a reconnection).
            self.still_since.iter_mut().for_each(|s| *s = None);
            for zone in &mut self.zones {
                zone.last_seen = pts;
            }
        }
        let (w, h) = (frame.width, frame.height);
        let Some((_, _, background)) = &mut self.background else {
            return None;
        };
        let from_background = patch_change(background, &frame.rgb, w, h, ZONE_GRID, ZONE_GRID);
        let from_previous = patch_change(&self.previous, &frame.rgb, w, h, ZONE_GRID, ZONE_GRID);
        let differs: Vec<bool> = from_background.iter().map(|&c| c >= self.tau).collect();
        // What the background learns from this frame: the patches that
        // match it, and those that have stayed still long enough.
        let absorb_after = self
            .zones
            .iter()
            .map(|z| z.absorb_after)
            .min()
            .unwrap_or_default();
        let mut learn = vec![false; differs.len()];
        for (i, &c) in from_background.iter().enumerate() {
            // Only what clearly matches: a patch a shape's edge touches
            // (just under the threshold) would otherwise creep into the
            // background, and its leaving then shows as a change.
            if c < self.tau / 2.0 {
                learn[i] = true;
                self.still_since[i] = None;
            } else if from_previous[i] < self.tau {
                let since = *self.still_since[i].get_or_insert(pts);
                if pts.saturating_sub(since) >= absorb_after {
                    learn[i] = true;
                    self.still_since[i] = None;
                }
            } else {
                self.still_since[i] = None;
            }
        }
        copy_patches(background, &frame.rgb, w, h, &learn);
        self.previous.copy_from_slice(&frame.rgb);

        let mut changed = false;
        let now = epoch_ms();
        for zone in &mut self.zones {
            let occupied = (0..differs.len()).any(|i| {
                zone.patches[i] && differs[i] && !self.motion.get(i).copied().unwrap_or(false)
            });
            let next = if occupied {
                zone.last_seen = pts;
                ZoneState::Active
            } else if pts.saturating_sub(zone.last_seen) >= zone.idle_after {
                ZoneState::Idle
            } else {
                zone.state
            };
            if next != zone.state {
                zone.state = next;
                zone.since_ms = now;
                zone.since = pts;
                changed = true;
            }
        }
        changed.then(|| self.statuses())
    }
}

/// Copies the pixels of the `which` patches (row-major on [`ZONE_GRID`])
/// from `src` into `dst`, frames of `w` × `h` RGB.
fn copy_patches(dst: &mut [u8], src: &[u8], w: u32, h: u32, which: &[bool]) {
    let (w, h, n) = (w as usize, h as usize, ZONE_GRID as usize);
    let col_of: Vec<usize> = (0..w).map(|x| (x * n / w).min(n - 1)).collect();
    for y in 0..h {
        let row = (y * n / h).min(n - 1) * n;
        for (x, &col) in col_of.iter().enumerate() {
            if which[row + col] {
                let at = (y * w + x) * 3;
                dst[at..at + 3].copy_from_slice(&src[at..at + 3]);
            }
        }
    }
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameMeta;
    use crate::tokens::Kept;

    fn camera(text: &str) -> CameraConfig {
        toml::from_str(&format!("source = {{ kind = \"synthetic\" }}\n{text}")).unwrap()
    }

    fn kept(positions: &[u32]) -> Kept {
        let mut mask = vec![false; 16];
        for &p in positions {
            mask[p as usize] = true;
        }
        Kept {
            meta: FrameMeta {
                camera: "cam".into(),
                seq: 0,
                pts: std::time::Duration::ZERO,
                wall_time: std::time::SystemTime::UNIX_EPOCH,
                discont: false,
            },
            rows: 4,
            cols: 4,
            dim: 1,
            mask,
            positions: positions.to_vec(),
            tokens: vec![0.0; positions.len()],
        }
    }

    #[test]
    fn zones_touched_leave_out_the_motion_masks() {
        // On a 4 × 4 grid: the left half is the zone "left", its top row
        // also under a motion mask; "right" is the right half.
        let regions = Regions::new(
            &camera(
                "[masks]\nmotion = [[[0.0, 0.0], [0.5, 0.0], [0.5, 0.25], [0.0, 0.25]]]\n\
                 [zones.left]\npoints = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]\n\
                 [zones.right]\npoints = [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]\n\
                 [trigger]\nzones = [\"right\"]",
            ),
            4,
            Look::Tokens,
        );
        assert_eq!(regions.motion.iter().filter(|m| **m).count(), 2);
        // Patch 0 (top left) is masked: no zone; patch 4 (row 1, col 0) is
        // in "left"; patch 3 (top right) in "right".
        let changed = |patches: &[usize]| {
            let mut c = vec![false; 16];
            patches.iter().for_each(|&p| c[p] = true);
            c
        };
        assert_eq!(regions.touched(&changed(&[0])), Vec::<String>::new());
        assert_eq!(regions.touched(&changed(&[0, 4])), ["left"]);
        assert_eq!(regions.touched(&changed(&[3, 4])), ["left", "right"]);
        assert_eq!(regions.touched(&[]), Vec::<String>::new());
        assert!(!regions.describes(&regions.touched(&changed(&[4]))));
        assert!(regions.describes(&regions.touched(&changed(&[7]))));
        // Without trigger.zones any change is described.
        assert!(Regions::new(&camera(""), 4, Look::Tokens).describes(&[]));
        // The masked patches do not count toward the trigger's retention.
        let k = kept(&[0, 1, 5]);
        assert_eq!(k.retention(), 3.0 / 16.0);
        assert_eq!(k.retention_outside(&regions.motion), 1.0 / 14.0);
    }

    /// A 32 × 32 grey frame at `t` seconds with a white 8 × 8 square at
    /// (`x`, 12) when given.
    fn frame(t: f64, square: Option<usize>) -> Frame {
        let mut rgb = vec![100u8; 32 * 32 * 3];
        if let Some(x) = square {
            for y in 12..20 {
                for xx in x..x + 8 {
                    let at = (y * 32 + xx) * 3;
                    rgb[at..at + 3].copy_from_slice(&[250, 250, 250]);
                }
            }
        }
        Frame {
            camera: "cam".into(),
            seq: 0,
            pts: std::time::Duration::from_secs_f64(t),
            wall_time: std::time::SystemTime::UNIX_EPOCH,
            discont: t == 0.0,
            width: 32,
            height: 32,
            rgb,
        }
    }

    fn states(watch: &ZoneWatch) -> Vec<(String, ZoneState)> {
        watch
            .statuses()
            .into_iter()
            .map(|s| (s.zone, s.state))
            .collect()
    }

    const HALVES: &str = "[zones.left]\npoints = [[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]\n\
                          idle_after_s = 1.0\nabsorb_after_s = 5.0\n\
                          [zones.right]\npoints = [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]]\n";

    #[test]
    fn issue42_a_zone_is_active_while_something_is_in_it() {
        use ZoneState::{Active, Idle};
        let mut watch = ZoneWatch::new(&camera(HALVES), 0.02).unwrap();
        // The empty scene: published once, both idle.
        assert!(watch.observe(&frame(0.0, None)).is_some());
        assert!(watch.observe(&frame(0.5, None)).is_none());
        // A square on the left: left active at once, right stays idle.
        let s = watch.observe(&frame(1.0, Some(4))).unwrap();
        assert_eq!(s[0].state, Active);
        assert_eq!(s[0].since_s, 1.0);
        assert_eq!(states(&watch)[1], ("right".into(), Idle));
        // It moves to the right half: both active (left waits out
        // idle_after_s), then left idle a second after it was last seen.
        watch.observe(&frame(1.5, Some(20)));
        assert_eq!(
            states(&watch),
            [("left".into(), Active), ("right".into(), Active)]
        );
        let s = watch.observe(&frame(2.0, Some(20))).unwrap();
        assert_eq!((s[0].state, s[0].since_s), (Idle, 2.0));
        assert!(watch.observe(&frame(2.5, Some(20))).is_none());
        // It stays still on the right past absorb_after_s (5 s, the
        // smallest of the zones'): it becomes empty scene, right idles.
        let mut t = 3.0;
        while watch.statuses()[1].state == Active {
            watch.observe(&frame(t, Some(20)));
            t += 0.5;
            assert!(t < 10.0, "never absorbed");
        }
        // Still from 2 s, learned at 7 s, idle a second later.
        assert_eq!(watch.statuses()[1].since_s, 8.0, "absorbed at {t}");
        // When it leaves, the revealed floor differs from the learned
        // scene: active again, then learned back once still.
        watch.observe(&frame(t, None));
        assert_eq!(watch.statuses()[1].state, Active);
    }

    #[test]
    fn issue42_a_motion_mask_keeps_its_zone_idle() {
        let config = format!(
            "[masks]\nmotion = [[[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]]\n{HALVES}"
        );
        let mut watch = ZoneWatch::new(&camera(&config), 0.02).unwrap();
        watch.observe(&frame(0.0, None));
        assert!(watch.observe(&frame(0.5, Some(4))).is_none());
        assert!(watch.statuses().iter().all(|s| s.state == ZoneState::Idle));
        // Without zones there is nothing to watch.
        assert!(ZoneWatch::new(&camera(""), 0.02).is_none());
    }
}
