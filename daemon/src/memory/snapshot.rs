//! Memory snapshots: a camera's [`MemoryBank`] written to the state
//! directory at shutdown (and on a timer) and read back at start, so a
//! restart does not forget the past.
//!
//! The format is a small versioned binary file (little endian): a magic,
//! the format version, the fingerprint of the model the tokens belong to,
//! the shape, then the canvas and every level. A snapshot of another
//! model, another grid or another format version is refused with the
//! reason; the caller moves it aside and starts fresh.

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

use super::{descriptor, Entry, MemoryBank, LEVELS};

const MAGIC: &[u8; 11] = b"GLIMPSEMEM\0";
const VERSION: u32 = 1;

/// Why a snapshot could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The snapshot file.
        path: std::path::PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file is not a snapshot this glimpse can use.
    #[error("{}: {reason}", path.display())]
    Unusable {
        /// The snapshot file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}

/// Writes `bank` to `path` atomically (a temporary file, then a rename).
pub fn save_snapshot(
    path: &Path,
    bank: &MemoryBank,
    fingerprint: &str,
) -> Result<(), SnapshotError> {
    let io_err = |source| SnapshotError::Io {
        path: path.to_owned(),
        source,
    };
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, VERSION);
    put_u32(&mut out, fingerprint.len() as u32);
    out.extend_from_slice(fingerprint.as_bytes());
    put_u32(&mut out, bank.grid);
    put_u32(&mut out, bank.dim as u32);
    for c in bank.capacities {
        put_u32(&mut out, c as u32);
    }
    put_u64(&mut out, bank.encoded);
    put_u64(&mut out, bank.canvas_pts.as_nanos() as u64);
    out.extend(bank.canvas_present.iter().map(|&p| u8::from(p)));
    bank.canvas
        .iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    for level in &bank.levels {
        put_u32(&mut out, level.len() as u32);
        for e in level {
            put_u64(&mut out, e.pts.as_nanos() as u64);
            put_u32(&mut out, e.side);
            put_u32(&mut out, e.cells.len() as u32);
            e.cells.iter().for_each(|c| put_u32(&mut out, *c));
            e.tokens
                .iter()
                .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
        }
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    let tmp = path.with_extension("tmp");
    let written = std::fs::File::create(&tmp)
        .and_then(|mut file| file.write_all(&out).and_then(|_| file.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        // A full disk leaves a partial file: never keep it.
        let _ = std::fs::remove_file(&tmp);
        return Err(io_err(e));
    }
    Ok(())
}

/// Removes the temporary files that writes cut short (a kill, a full disk)
/// left in `dir`, the folder of the memory snapshots. Called at start.
pub fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::debug!(path = %path.display(), "removed a cut-short memory snapshot")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), "cannot remove a cut-short memory snapshot: {e}")
                }
            }
        }
    }
}

/// Reads the snapshot at `path` if there is one. `expected` is a fresh,
/// empty bank with the shape and capacities now configured.
pub fn load_snapshot(
    path: &Path,
    fingerprint: &str,
    expected: &MemoryBank,
) -> Result<Option<MemoryBank>, SnapshotError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SnapshotError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let unusable = |reason: String| SnapshotError::Unusable {
        path: path.to_owned(),
        reason,
    };
    let mut r = Reader(&bytes[..]);
    let magic = r
        .take(MAGIC.len())
        .map_err(|_| unusable("not a glimpse memory snapshot".into()))?;
    if magic != MAGIC {
        return Err(unusable("not a glimpse memory snapshot".into()));
    }
    let parse = || -> Result<MemoryBank, String> {
        let mut r = Reader(&bytes[MAGIC.len()..]);
        let version = r.u32()?;
        if version != VERSION {
            return Err(format!(
                "format version {version}, this glimpse reads {VERSION}"
            ));
        }
        let len = r.u32()? as usize;
        let found = String::from_utf8_lossy(r.take(len)?).into_owned();
        if found != fingerprint {
            return Err(format!(
                "made with another model ({found}), now {fingerprint}"
            ));
        }
        let (grid, dim) = (r.u32()?, r.u32()? as usize);
        if (grid, dim) != (expected.grid, expected.dim) {
            return Err(format!(
                "grid {grid}x{grid} of {dim}, now {}x{} of {}",
                expected.grid, expected.grid, expected.dim
            ));
        }
        let mut capacities = [0usize; LEVELS];
        for c in &mut capacities {
            *c = r.u32()? as usize;
        }
        if capacities != expected.capacities {
            return Err(format!(
                "capacities {capacities:?}, now {:?}",
                expected.capacities
            ));
        }
        let mut bank = expected.clone();
        bank.encoded = r.u64()?;
        bank.canvas_pts = Duration::from_nanos(r.u64()?);
        let n = (grid * grid) as usize;
        bank.canvas_present = r.take(n)?.iter().map(|&b| b != 0).collect();
        bank.canvas = r.floats(n * dim)?;
        for (level, capacity) in capacities.iter().enumerate() {
            let count = r.u32()? as usize;
            if count > *capacity {
                return Err(format!(
                    "level {level} holds {count} entries, more than its capacity"
                ));
            }
            for _ in 0..count {
                let pts = Duration::from_nanos(r.u64()?);
                let side = r.u32()?;
                let cells_len = r.u32()? as usize;
                if cells_len > (side * side) as usize || side > grid {
                    return Err("an entry larger than its grid".into());
                }
                let cells = (0..cells_len)
                    .map(|_| r.u32())
                    .collect::<Result<Vec<_>, _>>()?;
                let tokens = r.floats(cells_len * dim)?;
                let descriptor = descriptor(&tokens, dim);
                bank.levels[level].push_back(Entry {
                    pts,
                    side,
                    cells,
                    tokens,
                    descriptor,
                });
            }
        }
        if !r.0.is_empty() {
            return Err(format!("{} bytes left over", r.0.len()));
        }
        Ok(bank)
    };
    parse().map(Some).map_err(unusable)
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("the file is truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0u8; 4];
        self.take(4)?
            .read_exact(&mut b)
            .map_err(|e| e.to_string())?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        self.take(8)?
            .read_exact(&mut b)
            .map_err(|e| e.to_string())?;
        Ok(u64::from_le_bytes(b))
    }

    fn floats(&mut self, n: usize) -> Result<Vec<f32>, String> {
        let bytes = self.take(n.checked_mul(4).ok_or("a size that overflows")?)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}
