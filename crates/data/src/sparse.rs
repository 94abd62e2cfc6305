//! Compressed sparse row matrices and their on-disk format.
//!
//! File format `MRCSR` version 1, all integers little-endian:
//!
//! | bytes            | content                                   |
//! |------------------|-------------------------------------------|
//! | 8                | magic `b"MRCSR\0\0\0"`                     |
//! | 4                | format version (`u32`, 1)                 |
//! | 4                | reserved, 0                               |
//! | 8 × 3            | rows, cols, nnz (`u64`)                   |
//! | 8 × (rows + 1)   | row pointers (`u64`), first 0, last nnz   |
//! | 4 × nnz          | column indices (`u32`), ascending per row |
//! | 4 × nnz          | values (`f32`)                            |
//! | 4                | CRC-32 (IEEE) of every byte before it     |
//!
//! A loader checks magic, version, sizes, the checksum and every structural invariant, so a
//! truncated or foreign file is an error, never a wrong matrix.

use std::io::Write;
use std::path::Path;

use rayon::prelude::*;

use crate::atomic::AtomicFile;
use crate::error::DataError;

const MAGIC: &[u8; 8] = b"MRCSR\0\0\0";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 8 + 4 + 4 + 24;

#[derive(Debug, Clone, PartialEq)]
pub struct CsrMatrix {
    pub rows: usize,
    pub cols: usize,
    pub indptr: Vec<u64>,
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl CsrMatrix {
    /// Builds a matrix from coordinate entries, summing duplicates (e.g. repeated listens of
    /// the same track become one entry with the listen count). Columns are sorted per row.
    ///
    /// # Panics
    /// If the coordinate slices differ in length or an index is out of bounds: callers build
    /// them from encoders whose sizes define `rows` and `cols`.
    pub fn from_coo(rows: usize, cols: usize, row_idx: &[u32], col_idx: &[u32], values: &[f32]) -> Self {
        assert!(row_idx.len() == col_idx.len() && col_idx.len() == values.len(), "coordinate slices differ in length");
        // Counting sort by row: linear time, no global sort of hundreds of millions of entries.
        let mut start = vec![0u64; rows + 1];
        for &r in row_idx {
            start[r as usize + 1] += 1;
        }
        for r in 0..rows {
            start[r + 1] += start[r];
        }
        let mut fill = start.clone();
        let mut placed: Vec<(u32, f32)> = vec![(0, 0.0); row_idx.len()];
        for ((&r, &c), &v) in row_idx.iter().zip(col_idx).zip(values) {
            assert!((c as usize) < cols, "column {c} out of bounds {cols}");
            let slot = &mut fill[r as usize];
            placed[*slot as usize] = (c, v);
            *slot += 1;
        }
        // Sort and merge duplicates within each row, in parallel; record each row's new length.
        let mut row_slices: Vec<&mut [(u32, f32)]> = Vec::with_capacity(rows);
        let mut rest = placed.as_mut_slice();
        for r in 0..rows {
            let (head, tail) = rest.split_at_mut((start[r + 1] - start[r]) as usize);
            row_slices.push(head);
            rest = tail;
        }
        let lengths: Vec<usize> = row_slices
            .into_par_iter()
            .map(|row| {
                row.sort_unstable_by_key(|e| e.0);
                let mut kept = 0;
                for i in 0..row.len() {
                    if kept > 0 && row[kept - 1].0 == row[i].0 {
                        row[kept - 1].1 += row[i].1;
                    } else {
                        row[kept] = row[i];
                        kept += 1;
                    }
                }
                kept
            })
            .collect();
        let nnz: usize = lengths.iter().sum();
        let mut indptr = Vec::with_capacity(rows + 1);
        let mut indices = Vec::with_capacity(nnz);
        let mut vals = Vec::with_capacity(nnz);
        indptr.push(0);
        for r in 0..rows {
            let begin = start[r] as usize;
            for &(c, v) in &placed[begin..begin + lengths[r]] {
                indices.push(c);
                vals.push(v);
            }
            indptr.push(indices.len() as u64);
        }
        Self { rows, cols, indptr, indices, values: vals }
    }

    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Column indices and values of row `r`.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r] as usize, self.indptr[r + 1] as usize);
        (&self.indices[a..b], &self.values[a..b])
    }

    pub fn transpose(&self) -> Self {
        let mut row_idx = Vec::with_capacity(self.nnz());
        for r in 0..self.rows {
            let n = (self.indptr[r + 1] - self.indptr[r]) as usize;
            row_idx.extend(std::iter::repeat_n(r as u32, n));
        }
        Self::from_coo(self.cols, self.rows, &self.indices, &row_idx, &self.values)
    }

    /// Writes the matrix atomically in the `MRCSR` format.
    pub fn save(&self, path: &Path) -> Result<u64, DataError> {
        let mut out = ChecksummedWriter { inner: AtomicFile::create(path)?, crc: crc32fast::Hasher::new() };
        let io = |e| DataError::io(path, e);
        out.write_all(MAGIC).map_err(io)?;
        out.write_all(&VERSION.to_le_bytes()).map_err(io)?;
        out.write_all(&0u32.to_le_bytes()).map_err(io)?;
        for n in [self.rows, self.cols, self.nnz()] {
            out.write_all(&(n as u64).to_le_bytes()).map_err(io)?;
        }
        write_le(&mut out, &self.indptr, u64::to_le_bytes).map_err(io)?;
        write_le(&mut out, &self.indices, u32::to_le_bytes).map_err(io)?;
        write_le(&mut out, &self.values, f32::to_le_bytes).map_err(io)?;
        let crc = out.crc.clone().finalize();
        out.inner.write_all(&crc.to_le_bytes()).map_err(io)?;
        out.inner.commit()
    }

    /// Reads and fully validates a matrix written by `save`.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        let corrupt = |reason: &str| DataError::corrupt(path, reason);
        if bytes.len() < HEADER_BYTES + 4 || &bytes[..8] != MAGIC {
            return Err(corrupt("not an MRCSR sparse matrix file"));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(corrupt(&format!("format version {version}, this program reads version {VERSION}")));
        }
        let (body, tail) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(tail.try_into().expect("4 bytes")) {
            return Err(corrupt("checksum mismatch (truncated or damaged file)"));
        }
        let header_u64 = |i: usize| u64::from_le_bytes(bytes[16 + 8 * i..24 + 8 * i].try_into().expect("8 bytes"));
        let (rows, cols, nnz) = (header_u64(0) as usize, header_u64(1) as usize, header_u64(2) as usize);
        let expected = HEADER_BYTES + 8 * (rows + 1) + 8 * nnz;
        if body.len() != expected {
            return Err(corrupt(&format!("{} bytes of data, the header implies {expected}", body.len())));
        }
        let mut at = HEADER_BYTES;
        let mut take = |n: usize| {
            let s = &body[at..at + n];
            at += n;
            s
        };
        let indptr: Vec<u64> =
            take(8 * (rows + 1)).chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8"))).collect();
        let indices: Vec<u32> =
            take(4 * nnz).chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4"))).collect();
        let values: Vec<f32> =
            take(4 * nnz).chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4"))).collect();
        if indptr[0] != 0 || indptr[rows] as usize != nnz || indptr.windows(2).any(|w| w[0] > w[1]) {
            return Err(corrupt("row pointers are not a non-decreasing sequence from 0 to nnz"));
        }
        let matrix = Self { rows, cols, indptr, indices, values };
        for r in 0..rows {
            let (cs, _) = matrix.row(r);
            if cs.iter().any(|&c| c as usize >= cols) || cs.windows(2).any(|w| w[0] >= w[1]) {
                return Err(corrupt(&format!("row {r}: column indices out of range or not strictly ascending")));
            }
        }
        Ok(matrix)
    }
}

struct ChecksummedWriter {
    inner: AtomicFile,
    crc: crc32fast::Hasher,
}

impl Write for ChecksummedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_le<T: Copy, const N: usize>(
    out: &mut impl Write,
    values: &[T],
    to_le: fn(T) -> [u8; N],
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(N * 8192);
    for chunk in values.chunks(8192) {
        buf.clear();
        for &v in chunk {
            buf.extend_from_slice(&to_le(v));
        }
        out.write_all(&buf)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn duplicates_are_summed_and_columns_sorted() {
        let m = CsrMatrix::from_coo(3, 4, &[0, 2, 0, 0, 2], &[3, 1, 1, 3, 0], &[1.0, 1.0, 1.0, 1.0, 5.0]);
        assert_eq!(m.indptr, vec![0, 2, 2, 4]);
        assert_eq!(m.row(0), (&[1u32, 3][..], &[1.0f32, 2.0][..]));
        assert_eq!(m.row(1), (&[][..], &[][..]));
        assert_eq!(m.row(2), (&[0u32, 1][..], &[5.0f32, 1.0][..]));
    }

    #[test]
    fn damaged_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csr");
        let m = CsrMatrix::from_coo(2, 2, &[0, 1], &[1, 0], &[2.0, 3.0]);
        m.save(&path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_BYTES + 3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(CsrMatrix::load(&path).unwrap_err().to_string().contains("checksum"));
        std::fs::write(&path, &bytes[..bytes.len() - 9]).unwrap();
        assert!(CsrMatrix::load(&path).is_err());
        std::fs::write(&path, b"hello world, not a matrix at all, really not").unwrap();
        assert!(CsrMatrix::load(&path).unwrap_err().to_string().contains("not an MRCSR"));
    }

    proptest! {
        #[test]
        fn save_load_and_transpose_round_trip(entries in proptest::collection::vec((0u32..7, 0u32..5, 1u8..4), 0..60)) {
            let rows: Vec<u32> = entries.iter().map(|e| e.0).collect();
            let cols: Vec<u32> = entries.iter().map(|e| e.1).collect();
            let vals: Vec<f32> = entries.iter().map(|e| e.2 as f32).collect();
            let m = CsrMatrix::from_coo(7, 5, &rows, &cols, &vals);
            let total: f32 = vals.iter().sum();
            prop_assert_eq!(m.values.iter().sum::<f32>(), total);
            prop_assert_eq!(m.transpose().transpose(), m.clone());
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("m.csr");
            m.save(&path).unwrap();
            prop_assert_eq!(CsrMatrix::load(&path).unwrap(), m);
        }
    }
}
