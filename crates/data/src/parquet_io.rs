//! Parquet output shared by the generator and every stage: one place decides compression,
//! row-group size and atomic publication.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::atomic::AtomicFile;
use crate::error::DataError;

/// Rows per row group: large enough for good compression, small enough that a streaming
/// writer holds only a few hundred MB at real-data scale.
pub const ROW_GROUP_ROWS: usize = 1 << 22;

/// A parquet file written batch by batch and published atomically by `finish`.
pub struct ParquetSink {
    path: PathBuf,
    writer: ArrowWriter<AtomicFile>,
    rows: u64,
}

/// What a finished parquet file holds, for manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    pub path: PathBuf,
    pub rows: u64,
    pub bytes: u64,
}

impl ParquetSink {
    pub fn create(path: impl Into<PathBuf>, schema: SchemaRef) -> Result<Self, DataError> {
        let path = path.into();
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let file = AtomicFile::create(&path)?;
        let writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| DataError::parquet(&path, e))?;
        Ok(Self { path, writer, rows: 0 })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), DataError> {
        self.rows += batch.num_rows() as u64;
        self.writer.write(batch).map_err(|e| DataError::parquet(&self.path, e))
    }

    pub fn finish(self) -> Result<WrittenFile, DataError> {
        let Self { path, writer, rows } = self;
        let file = writer.into_inner().map_err(|e| DataError::parquet(&path, e))?;
        let bytes = file.commit()?;
        Ok(WrittenFile { path, rows, bytes })
    }
}

/// Writes one batch as a whole parquet file.
pub fn write_batch(path: impl Into<PathBuf>, batch: &RecordBatch) -> Result<WrittenFile, DataError> {
    let mut sink = ParquetSink::create(path, batch.schema())?;
    sink.write(batch)?;
    sink.finish()
}

/// Reads every batch of a local parquet file (for artifacts this program wrote itself).
pub fn read_batches(path: &Path) -> Result<Vec<RecordBatch>, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| DataError::parquet(path, e))?
        .with_batch_size(1 << 16)
        .build()
        .map_err(|e| DataError::parquet(path, e))?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| DataError::parquet(path, e.into()))
}

/// Rows of a parquet file, from its footer.
pub fn row_count(path: &Path) -> Result<u64, DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader = parquet::file::reader::SerializedFileReader::new(file).map_err(|e| DataError::parquet(path, e))?;
    use parquet::file::reader::FileReader;
    Ok(reader.metadata().file_metadata().num_rows() as u64)
}

/// Streams the named columns of a parquet file this program wrote, batch by batch.
pub fn for_each_batch(
    path: &Path,
    columns: &[&str],
    mut each: impl FnMut(&RecordBatch) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| DataError::parquet(path, e))?;
    let roots = columns
        .iter()
        .map(|c| builder.schema().index_of(c).map_err(|_| DataError::corrupt(path, format!("no column `{c}`"))))
        .collect::<Result<Vec<_>, _>>()?;
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader =
        builder.with_projection(mask).with_batch_size(1 << 16).build().map_err(|e| DataError::parquet(path, e))?;
    for batch in reader {
        let batch = batch.map_err(|e| DataError::parquet(path, e.into()))?;
        // Projection keeps file order; hand columns over in the order asked for.
        let batch = batch
            .project(&columns.iter().map(|c| batch.schema().index_of(c).expect("projected")).collect::<Vec<_>>())
            .map_err(|e| DataError::parquet(path, e.into()))?;
        each(&batch)?;
    }
    Ok(())
}

/// Reads one int64 column whole (encoder id lists, small tables).
pub fn read_i64_column(path: &Path, column: &str) -> Result<Vec<i64>, DataError> {
    let mut out = Vec::new();
    for_each_batch(path, &[column], |batch| {
        out.extend_from_slice(batch.column(0).as_primitive::<Int64Type>().values());
        Ok(())
    })?;
    Ok(out)
}
