//! Parquet sources read batch by batch over the columns an importer needs, each checked for
//! its kind and for nulls with the row where the first one is.

use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_cast::{CastOptions, cast_with_options};
use arrow_schema::DataType;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use crate::error::ImportError;

/// What a column must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Integer,
    Number,
    /// Integers, strings, dates or timestamps: the generic importer's time column.
    Time,
    /// Integers or strings: the generic importer's id columns.
    Key,
    Text,
}

impl Kind {
    fn accepts(self, dt: &DataType) -> bool {
        let text = matches!(dt, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            || matches!(dt, DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::LargeUtf8));
        match self {
            Self::Integer => dt.is_integer(),
            Self::Number => dt.is_integer() || dt.is_floating(),
            Self::Time => {
                dt.is_integer() || text || matches!(dt, DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _))
            }
            Self::Key => dt.is_integer() || text,
            Self::Text => text,
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Self::Integer => "an integer type",
            Self::Number => "a numeric type",
            Self::Time => "an integer, string, date or timestamp type",
            Self::Key => "an integer or string type",
            Self::Text => "a string type",
        }
    }
}

/// A parquet file read over chosen columns, in the order asked for.
pub struct ParquetTable {
    pub file: String,
    reader: ParquetRecordBatchReader,
    order: Vec<usize>,
    columns: Vec<String>,
    rows: u64,
}

impl ParquetTable {
    pub fn open(path: &Path, columns: &[(&str, Kind)]) -> Result<Self, ImportError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| ImportError::io(path, e))?;
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| musicrec_data::DataError::parquet(path, e))?;
        let schema = builder.schema().clone();
        let mut roots = Vec::new();
        for &(column, kind) in columns {
            let Some((index, field)) = schema.column_with_name(column) else {
                let present: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(ImportError::MissingColumn {
                    file: name,
                    column: column.into(),
                    present: present.join(", "),
                });
            };
            if !kind.accepts(field.data_type()) {
                return Err(ImportError::WrongType {
                    file: name,
                    column: column.into(),
                    found: field.data_type().to_string(),
                    expected: kind.expected().into(),
                });
            }
            roots.push(index);
        }
        // Projection keeps file order; `order` maps the columns asked for to it.
        let mut sorted = roots.clone();
        sorted.sort_unstable();
        sorted.dedup();
        let order = roots.iter().map(|r| sorted.binary_search(r).expect("present")).collect();
        let mask = ProjectionMask::roots(builder.parquet_schema(), sorted);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(1 << 16)
            .build()
            .map_err(|e| musicrec_data::DataError::parquet(path, e))?;
        let columns = columns.iter().map(|c| c.0.to_string()).collect();
        Ok(Self { file: name, reader, order, columns, rows: 0 })
    }

    /// The next batch, its columns in the order asked for, and the row number of its first row.
    pub fn next_batch(&mut self) -> Result<Option<(Vec<ArrayRef>, u64)>, ImportError> {
        let Some(batch) = self.reader.next() else { return Ok(None) };
        let batch: RecordBatch = batch
            .map_err(|e| musicrec_data::DataError::Undecodable { file: self.file.clone(), reason: e.to_string() })?;
        let first = self.rows;
        self.rows += batch.num_rows() as u64;
        Ok(Some((self.order.iter().map(|&i| batch.column(i).clone()).collect(), first)))
    }

    /// Refuses nulls in column `c` of a batch starting at row `first`.
    pub fn no_nulls(&self, array: &ArrayRef, c: usize, first: u64, what: &'static str) -> Result<(), ImportError> {
        if array.null_count() == 0 {
            return Ok(());
        }
        let at = (0..array.len()).find(|&i| array.is_null(i)).unwrap_or(0);
        Err(ImportError::Nulls {
            file: self.file.clone(),
            column: self.columns[c].clone(),
            rows: array.null_count(),
            first_row: first + at as u64,
            what,
        })
    }

    /// An integer column as i64 values; a value beyond i64 is an error naming its row.
    pub fn i64s(&self, array: &ArrayRef, c: usize, first: u64) -> Result<Vec<i64>, ImportError> {
        let cast = cast_with_options(array, &DataType::Int64, &CastOptions { safe: true, ..Default::default() })
            .expect("integer types cast to int64");
        if cast.null_count() > array.null_count() {
            let at = (0..array.len()).find(|&i| cast.is_null(i) && array.is_valid(i)).unwrap_or(0);
            return Err(ImportError::BadRow {
                file: self.file.clone(),
                row: first + at as u64,
                column: self.columns[c].clone(),
                reason: "the value does not fit in a 64-bit signed integer".into(),
            });
        }
        Ok(cast.as_primitive::<Int64Type>().values().to_vec())
    }

    /// A numeric column as f64 values.
    pub fn f64s(&self, array: &ArrayRef) -> Vec<f64> {
        let cast = cast_with_options(array, &DataType::Float64, &CastOptions::default()).expect("numbers cast to f64");
        cast.as_primitive::<Float64Type>().values().to_vec()
    }

    pub fn bad_row(&self, c: usize, row: u64, reason: String) -> ImportError {
        ImportError::BadRow { file: self.file.clone(), row, column: self.columns[c].clone(), reason }
    }
}

/// A string column as owned UTF-8 strings (any string type or dictionary).
pub fn strings(array: &ArrayRef) -> arrow_array::StringArray {
    let cast = cast_with_options(array, &DataType::Utf8, &CastOptions::default()).expect("strings cast to utf8");
    cast.as_string::<i32>().clone()
}
