//! Delimited text sources (CSV, TSV, MovieLens' `|` files) read record by record, with the
//! line number of every record for error messages. Fields are bytes: names in a legacy
//! encoding (MovieLens 100K is Latin-1) are decoded by the caller.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use csv::{ByteRecord, Reader, ReaderBuilder};

use crate::error::ImportError;

/// A delimited file being read.
pub struct Delimited {
    pub file: String,
    reader: Reader<BufReader<File>>,
    record: ByteRecord,
    /// Column names from the header line, when the file has one.
    pub header: Vec<String>,
}

/// How a delimited file is written.
#[derive(Clone, Copy)]
pub struct Dialect {
    pub delimiter: u8,
    pub header: bool,
    /// `"` quotes fields (CSV); off for formats whose text holds bare quotes (Last.fm's TSV).
    pub quoting: bool,
}

pub const CSV: Dialect = Dialect { delimiter: b',', header: true, quoting: true };

impl Delimited {
    pub fn open(path: &Path, dialect: Dialect) -> Result<Self, ImportError> {
        let file = File::open(path).map_err(|e| ImportError::io(path, e))?;
        let mut reader = ReaderBuilder::new()
            .delimiter(dialect.delimiter)
            .has_headers(dialect.header)
            .quoting(dialect.quoting)
            .flexible(true)
            .buffer_capacity(1 << 20)
            .from_reader(BufReader::with_capacity(1 << 20, file));
        let name = path.display().to_string();
        let header = if dialect.header {
            let bytes = reader.byte_headers().map_err(|e| csv_error(&name, e))?;
            bytes.iter().map(|h| String::from_utf8_lossy(h).trim().trim_start_matches('\u{feff}').to_string()).collect()
        } else {
            Vec::new()
        };
        Ok(Self { file: name, reader, record: ByteRecord::new(), header })
    }

    /// The index of a header column, or an error listing the columns present.
    pub fn column(&self, name: &str) -> Result<usize, ImportError> {
        self.header.iter().position(|h| h == name).ok_or_else(|| ImportError::MissingColumn {
            file: self.file.clone(),
            column: name.to_string(),
            present: self.header.join(", "),
        })
    }

    /// The next record and its line number, `None` at the end. Blank lines are skipped.
    pub fn next(&mut self) -> Result<Option<Record<'_>>, ImportError> {
        loop {
            if !self.reader.read_byte_record(&mut self.record).map_err(|e| csv_error(&self.file, e))? {
                return Ok(None);
            }
            if !(self.record.len() == 1 && self.record[0].iter().all(u8::is_ascii_whitespace)) {
                break;
            }
        }
        let line = self.record.position().map_or(0, |p| p.line());
        Ok(Some(Record { file: &self.file, line, fields: &self.record }))
    }
}

fn csv_error(file: &str, e: csv::Error) -> ImportError {
    let line = e.position().map_or(0, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(source) => ImportError::Io { path: file.into(), source },
        other => ImportError::Line { file: file.to_string(), line, reason: format!("{other:?}") },
    }
}

/// One record of a delimited file.
pub struct Record<'a> {
    pub file: &'a str,
    pub line: u64,
    fields: &'a ByteRecord,
}

impl<'a> Record<'a> {
    /// Checks the record has at least `n` fields.
    pub fn expect_fields(&self, n: usize, what: &str) -> Result<(), ImportError> {
        if self.fields.len() < n {
            return Err(ImportError::Line {
                file: self.file.to_string(),
                line: self.line,
                reason: format!("{} field(s), expected {n} ({what})", self.fields.len()),
            });
        }
        Ok(())
    }

    /// Field `i` as text (invalid UTF-8 replaced), trimmed; empty when absent.
    pub fn text(&self, i: usize) -> std::borrow::Cow<'a, str> {
        match self.fields.get(i) {
            Some(bytes) => match String::from_utf8_lossy(bytes) {
                std::borrow::Cow::Borrowed(s) => std::borrow::Cow::Borrowed(s.trim()),
                std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(s.trim().to_string()),
            },
            None => std::borrow::Cow::Borrowed(""),
        }
    }

    /// Field `i` decoded as Latin-1, each byte one character.
    pub fn latin1(&self, i: usize) -> String {
        self.fields
            .get(i)
            .map(|b| b.iter().map(|&c| char::from(c)).collect::<String>().trim().to_string())
            .unwrap_or_default()
    }

    /// Field `i` parsed, or an error naming the line, the column and what was expected.
    pub fn parse<T: std::str::FromStr>(&self, i: usize, column: &str, expected: &str) -> Result<T, ImportError> {
        let text = self.text(i);
        text.parse().map_err(|_| self.bad(column, &text, expected))
    }

    pub fn bad(&self, column: &str, value: &str, expected: &str) -> ImportError {
        ImportError::BadField {
            file: self.file.to_string(),
            line: self.line,
            column: column.to_string(),
            value: value.chars().take(80).collect(),
            expected: expected.to_string(),
        }
    }
}
