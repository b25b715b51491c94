//! Regions of the picture: polygons in normalised coordinates (0–1, x
//! right, y down, over the frame as glimpse samples it), the pixels inside
//! one, and the encoder's patches it covers. Privacy masks, motion masks and
//! zones are all polygons (docs/architecture.md §3, "Masks and zones"). A
//! leaf: plain geometry, no stage.

use serde::{Deserialize, Serialize};

use crate::settings::Problems;

/// A polygon of 3 or more points, `[x, y]` each, in normalised
/// coordinates. Written in the config as `[[x, y], [x, y], ...]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Polygon(pub Vec<[f64; 2]>);

/// How finely a patch is sampled to decide whether a polygon covers it:
/// `SAMPLES`² points, the patch is covered when at least half are inside.
const SAMPLES: usize = 8;

impl Polygon {
    /// Checks the polygon at `key`: at least 3 points, each inside 0–1,
    /// some area, and no edge crossing another.
    pub fn validate(&self, key: &str, problems: &mut Problems) {
        let points = &self.0;
        if points.len() < 3 {
            problems.push(
                key,
                format!(
                    "a polygon needs at least 3 points [x, y], got {}",
                    points.len()
                ),
            );
            return;
        }
        for (i, [x, y]) in points.iter().enumerate() {
            if !(0.0..=1.0).contains(x) || !(0.0..=1.0).contains(y) {
                problems.push(
                    format!("{key}[{i}]"),
                    format!("coordinates are fractions of the frame, 0 to 1 (x right, y down), got [{x}, {y}]"),
                );
                return;
            }
        }
        // First: a bow tie's signed areas cancel out.
        if let Some((a, b)) = self.crossing() {
            problems.push(
                key,
                format!("the polygon crosses itself: edge {a} ({a}→{}) crosses edge {b}; list the points in order around the area", (a + 1) % points.len()),
            );
        } else if self.area() < 1e-6 {
            problems.push(key, "the polygon has no area (its points are on one line)");
        }
    }

    /// The area (shoelace formula), in fractions of the frame.
    pub fn area(&self) -> f64 {
        let p = &self.0;
        let twice: f64 = (0..p.len())
            .map(|i| {
                let ([x0, y0], [x1, y1]) = (p[i], p[(i + 1) % p.len()]);
                x0 * y1 - x1 * y0
            })
            .sum();
        twice.abs() / 2.0
    }

    /// The first pair of edges (by index, edge i joins point i and i+1)
    /// that cross, if any; edges that share a point do not count.
    fn crossing(&self) -> Option<(usize, usize)> {
        let p = &self.0;
        let n = p.len();
        let edge = |i: usize| (p[i], p[(i + 1) % n]);
        for a in 0..n {
            for b in a + 1..n {
                let adjacent = b == a + 1 || (a == 0 && b == n - 1);
                if !adjacent && segments_cross(edge(a), edge(b)) {
                    return Some((a, b));
                }
            }
        }
        None
    }

    /// Whether the point `(x, y)` is inside (even-odd rule).
    pub fn contains(&self, x: f64, y: f64) -> bool {
        let p = &self.0;
        let mut inside = false;
        let mut j = p.len() - 1;
        for i in 0..p.len() {
            let ([xi, yi], [xj, yj]) = (p[i], p[j]);
            if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                inside = !inside;
            }
            j = i;
        }
        inside
    }

    /// The pixels of a `width` × `height` frame whose centre is inside,
    /// row-major.
    pub fn pixels(&self, width: u32, height: u32) -> Vec<bool> {
        let (w, h) = (width as usize, height as usize);
        let mut out = vec![false; w * h];
        for row in 0..h {
            let y = (row as f64 + 0.5) / h as f64;
            for col in 0..w {
                out[row * w + col] = self.contains((col as f64 + 0.5) / w as f64, y);
            }
        }
        out
    }

    /// The patches of a `rows` × `cols` grid over the frame that are at
    /// least half inside, row-major: the tokens this polygon covers.
    pub fn patches(&self, rows: u32, cols: u32) -> Vec<bool> {
        let (rows, cols) = (rows as usize, cols as usize);
        let mut out = vec![false; rows * cols];
        for r in 0..rows {
            for c in 0..cols {
                let mut inside = 0;
                for sy in 0..SAMPLES {
                    for sx in 0..SAMPLES {
                        let x = (c as f64 + (sx as f64 + 0.5) / SAMPLES as f64) / cols as f64;
                        let y = (r as f64 + (sy as f64 + 0.5) / SAMPLES as f64) / rows as f64;
                        inside += usize::from(self.contains(x, y));
                    }
                }
                out[r * cols + c] = 2 * inside >= SAMPLES * SAMPLES;
            }
        }
        out
    }
}

/// The patches any of `polygons` covers (none for an empty list).
pub fn patches(polygons: &[Polygon], rows: u32, cols: u32) -> Vec<bool> {
    let mut out = vec![false; (rows * cols) as usize];
    for polygon in polygons {
        for (o, p) in out.iter_mut().zip(polygon.patches(rows, cols)) {
            *o |= p;
        }
    }
    out
}

/// The pixels inside any of `polygons`, for a `width` × `height` frame.
pub fn pixels(polygons: &[Polygon], width: u32, height: u32) -> Vec<bool> {
    let mut out = vec![false; (width * height) as usize];
    for polygon in polygons {
        for (o, p) in out.iter_mut().zip(polygon.pixels(width, height)) {
            *o |= p;
        }
    }
    out
}

/// Whether segments `a` and `b` cross or touch (collinear overlaps count).
fn segments_cross(a: ([f64; 2], [f64; 2]), b: ([f64; 2], [f64; 2])) -> bool {
    let orient = |p: [f64; 2], q: [f64; 2], r: [f64; 2]| {
        let v = (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]);
        if v.abs() < 1e-12 {
            0
        } else if v > 0.0 {
            1
        } else {
            -1
        }
    };
    let on = |p: [f64; 2], q: [f64; 2], r: [f64; 2]| {
        r[0] >= p[0].min(q[0]) - 1e-12
            && r[0] <= p[0].max(q[0]) + 1e-12
            && r[1] >= p[1].min(q[1]) - 1e-12
            && r[1] <= p[1].max(q[1]) + 1e-12
    };
    let ((p1, q1), (p2, q2)) = (a, b);
    let (o1, o2, o3, o4) = (
        orient(p1, q1, p2),
        orient(p1, q1, q2),
        orient(p2, q2, p1),
        orient(p2, q2, q1),
    );
    if o1 != o2 && o3 != o4 {
        return true;
    }
    (o1 == 0 && on(p1, q1, p2))
        || (o2 == 0 && on(p1, q1, q2))
        || (o3 == 0 && on(p2, q2, p1))
        || (o4 == 0 && on(p2, q2, q1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x0: f64, y0: f64, x1: f64, y1: f64) -> Polygon {
        Polygon(vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    }

    fn problems(p: &Polygon) -> Vec<String> {
        let mut problems = Problems::default();
        p.validate("cameras.front.zones.door.points", &mut problems);
        problems
            .0
            .into_iter()
            .map(|p| format!("{}: {}", p.key, p.reason))
            .collect()
    }

    #[test]
    fn bad_polygons_are_refused_naming_the_key() {
        assert_eq!(problems(&square(0.1, 0.1, 0.5, 0.5)), Vec::<String>::new());
        let two = Polygon(vec![[0.0, 0.0], [1.0, 1.0]]);
        assert_eq!(
            problems(&two),
            ["cameras.front.zones.door.points: a polygon needs at least 3 points [x, y], got 2"]
        );
        let out = Polygon(vec![[0.0, 0.0], [1.2, 0.0], [1.0, 1.0]]);
        assert_eq!(
            problems(&out),
            ["cameras.front.zones.door.points[1]: coordinates are fractions of the frame, 0 to 1 (x right, y down), got [1.2, 0]"]
        );
        let line = Polygon(vec![[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]]);
        assert!(problems(&line)[0].ends_with("no area (its points are on one line)"));
        // A bow tie: points not in order around the area.
        let bow = Polygon(vec![[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]);
        assert_eq!(
            problems(&bow),
            ["cameras.front.zones.door.points: the polygon crosses itself: edge 0 (0→1) crosses edge 2; list the points in order around the area"]
        );
        // Concave is fine.
        let l_shape = Polygon(vec![
            [0.0, 0.0],
            [0.5, 0.0],
            [0.5, 0.5],
            [1.0, 0.5],
            [1.0, 1.0],
            [0.0, 1.0],
        ]);
        assert_eq!(problems(&l_shape), Vec::<String>::new());
        assert!((l_shape.area() - 0.75).abs() < 1e-9);
    }

    #[test]
    fn a_patch_counts_when_half_of_it_is_inside() {
        // The left half of a 4 × 4 grid, and a strip a quarter patch wide.
        let left = square(0.0, 0.0, 0.5, 1.0).patches(4, 4);
        let cols: Vec<bool> = (0..4).map(|c| left[c]).collect();
        assert_eq!(cols, [true, true, false, false]);
        assert_eq!(left.iter().filter(|p| **p).count(), 8);
        let sliver = square(0.0, 0.0, 0.0625, 1.0).patches(4, 4);
        assert!(
            sliver.iter().all(|p| !p),
            "a quarter of a patch is not half"
        );
        let more = square(0.0, 0.0, 0.1875, 1.0).patches(4, 4);
        assert_eq!(more.iter().filter(|p| **p).count(), 4, "three quarters is");
    }

    #[test]
    fn pixels_inside_by_their_centre() {
        let p = square(0.25, 0.25, 0.75, 0.75).pixels(8, 4);
        let rows: Vec<String> = p
            .chunks(8)
            .map(|r| r.iter().map(|&b| if b { '#' } else { '.' }).collect())
            .collect();
        assert_eq!(rows, ["........", "..####..", "..####..", "........"]);
        let both = pixels(
            &[square(0.0, 0.0, 0.25, 1.0), square(0.75, 0.0, 1.0, 1.0)],
            8,
            1,
        );
        assert_eq!(both, [true, true, false, false, false, false, true, true]);
    }
}
