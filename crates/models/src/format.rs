//! The model file container `MRMODEL`, shared by every model of this crate.
//!
//! All integers and floats little-endian:
//!
//! | bytes | content                                                        |
//! |-------|----------------------------------------------------------------|
//! | 8     | magic `b"MRMODEL\0"`                                            |
//! | 4     | format version (`u32`, 1)                                      |
//! | 4     | reserved, 0                                                    |
//! | 8     | model kind, ASCII padded with NUL (e.g. `b"ALS\0\0\0\0\0"`)     |
//! | …     | the model's payload, documented by the model's module          |
//! | 4     | CRC-32 (IEEE) of every byte before it                          |
//!
//! Payloads are sequences of `u64` counts and sizes, `f32` values and `u32` ids, read back in
//! the order written. A loader checks magic, version, kind and checksum before parsing, bounds
//! every read by the bytes present and refuses trailing bytes, so a truncated, damaged or
//! foreign file is a `ModelError::Corrupt`, never a wrong model or a panic. A change to any
//! payload bumps the format version.

use std::io::Write;
use std::path::{Path, PathBuf};

use musicrec_data::atomic::AtomicFile;

use crate::error::ModelError;

const MAGIC: &[u8; 8] = b"MRMODEL\0";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 8 + 4 + 4 + 8;

/// The kind tag of a model file: its name, NUL-padded to 8 bytes.
fn kind_tag(kind: &str) -> [u8; 8] {
    assert!(kind.len() <= 8 && kind.is_ascii(), "model kind tags are at most 8 ASCII bytes");
    let mut tag = [0u8; 8];
    tag[..kind.len()].copy_from_slice(kind.as_bytes());
    tag
}

/// Writes a model file under a temporary name; `commit` appends the checksum and publishes it.
pub(crate) struct ModelWriter {
    file: AtomicFile,
    crc: crc32fast::Hasher,
    path: PathBuf,
    buffer: Vec<u8>,
}

impl ModelWriter {
    pub fn create(path: &Path, kind: &str) -> Result<Self, ModelError> {
        let mut writer = Self {
            file: AtomicFile::create(path)?,
            crc: crc32fast::Hasher::new(),
            path: path.to_path_buf(),
            buffer: Vec::with_capacity(1 << 16),
        };
        writer.bytes(MAGIC)?;
        writer.bytes(&VERSION.to_le_bytes())?;
        writer.bytes(&0u32.to_le_bytes())?;
        writer.bytes(&kind_tag(kind))?;
        Ok(writer)
    }

    fn bytes(&mut self, bytes: &[u8]) -> Result<(), ModelError> {
        self.crc.update(bytes);
        self.file.write_all(bytes).map_err(|e| ModelError::io(&self.path, e))
    }

    pub fn u64(&mut self, value: u64) -> Result<(), ModelError> {
        self.bytes(&value.to_le_bytes())
    }

    pub fn f32(&mut self, value: f32) -> Result<(), ModelError> {
        self.bytes(&value.to_le_bytes())
    }

    pub fn u32s(&mut self, values: &[u32]) -> Result<(), ModelError> {
        self.slice(values, u32::to_le_bytes)
    }

    pub fn f32s(&mut self, values: &[f32]) -> Result<(), ModelError> {
        self.slice(values, f32::to_le_bytes)
    }

    fn slice<T: Copy>(&mut self, values: &[T], to_le: fn(T) -> [u8; 4]) -> Result<(), ModelError> {
        let mut buffer = std::mem::take(&mut self.buffer);
        for chunk in values.chunks(8192) {
            buffer.clear();
            buffer.extend(chunk.iter().flat_map(|&v| to_le(v)));
            self.bytes(&buffer)?;
        }
        self.buffer = buffer;
        Ok(())
    }

    /// Appends the checksum and renames the file into place; returns its size in bytes.
    pub fn commit(mut self) -> Result<u64, ModelError> {
        let crc = self.crc.clone().finalize();
        self.file.write_all(&crc.to_le_bytes()).map_err(|e| ModelError::io(&self.path, e))?;
        Ok(self.file.commit()?)
    }
}

/// Reads the payload of a model file whose container checked out.
pub(crate) struct ModelReader {
    path: PathBuf,
    payload: Vec<u8>,
    at: usize,
}

impl ModelReader {
    /// Reads `path` and checks magic, version, `kind` and checksum.
    pub fn open(path: &Path, kind: &str) -> Result<Self, ModelError> {
        let mut bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        if bytes.len() < HEADER_BYTES + 4 || &bytes[..8] != MAGIC {
            return Err(ModelError::corrupt(path, "not a musicrec model file (no MRMODEL header)"));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(ModelError::corrupt(
                path,
                format!("format version {version}, this program reads version {VERSION}"),
            ));
        }
        let tag = &bytes[16..24];
        if tag != kind_tag(kind) {
            let found = String::from_utf8_lossy(tag).trim_end_matches('\0').to_string();
            return Err(ModelError::corrupt(path, format!("holds a model of kind {found:?}, expected {kind:?}")));
        }
        let body_len = bytes.len() - 4;
        let stored = u32::from_le_bytes(bytes[body_len..].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[..body_len]) != stored {
            return Err(ModelError::corrupt(path, "checksum mismatch (truncated or damaged file)"));
        }
        bytes.truncate(body_len);
        Ok(Self { path: path.to_path_buf(), payload: bytes, at: HEADER_BYTES })
    }

    pub fn corrupt(&self, reason: impl Into<String>) -> ModelError {
        ModelError::corrupt(&self.path, reason)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], ModelError> {
        let remaining = self.payload.len() - self.at;
        if n > remaining {
            return Err(self.corrupt(format!("{what}: needs {n} bytes, {remaining} left")));
        }
        let bytes = &self.payload[self.at..self.at + n];
        self.at += n;
        Ok(bytes)
    }

    pub fn u64(&mut self, what: &str) -> Result<u64, ModelError> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }

    /// A `u64` that counts or sizes something in memory.
    pub fn count(&mut self, what: &str) -> Result<usize, ModelError> {
        let value = self.u64(what)?;
        usize::try_from(value).map_err(|_| self.corrupt(format!("{what} = {value} does not fit in memory")))
    }

    pub fn f32(&mut self, what: &str) -> Result<f32, ModelError> {
        Ok(f32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }

    pub fn u32s(&mut self, count: usize, what: &str) -> Result<Vec<u32>, ModelError> {
        let bytes = self.take(count.saturating_mul(4), what)?;
        Ok(bytes.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect())
    }

    pub fn f32s(&mut self, count: usize, what: &str) -> Result<Vec<f32>, ModelError> {
        let bytes = self.take(count.saturating_mul(4), what)?;
        Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect())
    }

    /// Ends the read: bytes left over mean the file is not what its header claims.
    pub fn finish(self) -> Result<(), ModelError> {
        let left = self.payload.len() - self.at;
        if left == 0 { Ok(()) } else { Err(self.corrupt(format!("{left} unexpected bytes after the model"))) }
    }
}
