//! A camera's masks and zones on the encoder's grid: which patches never
//! count as change (motion masks), which patches each zone covers, and
//! which zones a change must touch to be described (`trigger.zones`).
//! Privacy masks act earlier, in capture, on pixels.

use super::CameraConfig;
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
}

impl Regions {
    /// `config`'s masks and zones on a `grid` × `grid` grid.
    pub fn new(config: &CameraConfig, grid: u32) -> Regions {
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
        }
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
        assert!(Regions::new(&camera(""), 4).describes(&[]));
        // The masked patches do not count toward the trigger's retention.
        let k = kept(&[0, 1, 5]);
        assert_eq!(k.retention(), 3.0 / 16.0);
        assert_eq!(k.retention_outside(&regions.motion), 1.0 / 14.0);
    }
}
