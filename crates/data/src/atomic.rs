//! Atomic file output: a reader either sees the previous complete file or the new complete
//! file, never a prefix of one. Data goes to a hidden temporary name in the same directory
//! (so the final rename never crosses a filesystem), is synced, then renamed into place.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::DataError;

/// A file being written under a temporary name; `commit` publishes it, dropping it uncommitted
/// removes it. A process killed mid-write leaves only a `.tmp` name that no reader looks at.
pub struct AtomicFile {
    final_path: PathBuf,
    temp_path: PathBuf,
    writer: Option<BufWriter<File>>,
}

static NONCE: AtomicU64 = AtomicU64::new(0);

/// The temporary sibling of `path`: hidden, unique per process and per call.
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let nonce = NONCE.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}-{nonce}.tmp", std::process::id()))
}

impl AtomicFile {
    pub fn create(path: impl Into<PathBuf>) -> Result<Self, DataError> {
        let final_path = path.into();
        if let Some(parent) = final_path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
        }
        let temp_path = temp_sibling(&final_path);
        let file = File::create(&temp_path).map_err(|e| DataError::io(&temp_path, e))?;
        Ok(Self { final_path, temp_path, writer: Some(BufWriter::with_capacity(1 << 20, file)) })
    }

    pub fn path(&self) -> &Path {
        &self.final_path
    }

    /// Flushes, syncs and renames into place. Returns the final size in bytes.
    pub fn commit(mut self) -> Result<u64, DataError> {
        let writer = self.writer.take().expect("writer present until commit");
        let file = writer.into_inner().map_err(|e| DataError::io(&self.temp_path, e.into_error()))?;
        file.sync_all().map_err(|e| DataError::io(&self.temp_path, e))?;
        let size = file.metadata().map_err(|e| DataError::io(&self.temp_path, e))?.len();
        drop(file);
        fs::rename(&self.temp_path, &self.final_path).map_err(|e| DataError::io(&self.final_path, e))?;
        Ok(size)
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.as_mut().expect("writer present until commit").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.writer.as_mut().expect("writer present until commit").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: impl Into<PathBuf>, bytes: &[u8]) -> Result<u64, DataError> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes).map_err(|e| DataError::io(file.path(), e))?;
    file.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncommitted_file_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        {
            let mut f = AtomicFile::create(&path).unwrap();
            f.write_all(b"half").unwrap();
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn commit_replaces_previous_content_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.bin");
        write_atomic(&path, b"old").unwrap();
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"new content").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"old", "readers keep seeing the old file until commit");
        assert_eq!(f.commit().unwrap(), 11);
        assert_eq!(fs::read(&path).unwrap(), b"new content");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
