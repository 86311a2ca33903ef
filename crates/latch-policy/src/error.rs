//! Errors found while loading a policy bundle, each pinned to a file and line.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One problem in one file of a bundle. `line` and `column` are 1-based.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
pub struct BundleError {
    /// Path of the file inside the bundle (`roles/prod-db.toml`); empty for bundle-wide problems.
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl BundleError {
    pub(crate) fn new(file: &str, line: Option<usize>, column: Option<usize>, message: impl Into<String>) -> Self {
        BundleError { file: file.to_string(), line, column, message: message.into() }
    }

    /// An error located at a byte offset of `src` (the content of `file`).
    pub(crate) fn at(file: &str, src: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, col) = line_col(src, offset);
        Self::new(file, Some(line), Some(col), message)
    }
}

impl fmt::Display for BundleError {
    /// `file:line:col: message`, leaving out the parts that are unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.file.is_empty() {
            write!(f, "{}:", self.file)?;
            if let Some(line) = self.line {
                write!(f, "{line}:")?;
                if let Some(col) = self.column {
                    write!(f, "{col}:")?;
                }
            }
            f.write_str(" ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a bundle (never empty when returned as an error), sorted by file and line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Error)]
pub struct BundleErrors(pub Vec<BundleError>);

impl BundleErrors {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &BundleError> {
        self.0.iter()
    }
}

impl fmt::Display for BundleErrors {
    /// One error per line, in `file:line:col: message` form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// 1-based line and column (in characters) of a byte offset into `src`.
/// Offsets past the end clamp to the end; offsets inside a character round down.
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut off = offset.min(src.len());
    while off > 0 && !src.is_char_boundary(off) {
        off -= 1;
    }
    let before = src.get(..off).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).unwrap_or("").chars().count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let src = "ab\ncdé\nf";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 1), (1, 2));
        assert_eq!(line_col(src, 3), (2, 1));
        assert_eq!(line_col(src, 5), (2, 3));
        assert_eq!(line_col(src, 6), (2, 3)); // inside the two-byte é
        assert_eq!(line_col(src, 8), (3, 1));
        assert_eq!(line_col(src, 999), (3, 2));
    }

    #[test]
    fn display_forms() {
        assert_eq!(BundleError::new("roles/a.toml", Some(3), Some(7), "bad").to_string(), "roles/a.toml:3:7: bad");
        assert_eq!(BundleError::new("roles/a.toml", Some(3), None, "bad").to_string(), "roles/a.toml:3: bad");
        assert_eq!(BundleError::new("roles/a.toml", None, None, "bad").to_string(), "roles/a.toml: bad");
        assert_eq!(BundleError::new("", None, None, "bad").to_string(), "bad");
        let all =
            BundleErrors(vec![BundleError::new("a", Some(1), None, "x"), BundleError::new("b", Some(2), Some(3), "y")]);
        assert_eq!(all.to_string(), "a:1: x\nb:2:3: y");
    }
}
