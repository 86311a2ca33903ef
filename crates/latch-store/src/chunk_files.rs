//! Recording chunks kept in files beside the SQLite database: one
//! append-only file of event lines per recording, in `<database>-recordings/`,
//! with each chunk's row naming its byte range (`file_offset`, `file_len`).
//!
//! Why not rows: SQLite writes every byte of a row twice (to the WAL, then
//! to the database at checkpoint), and a session recording is by far the
//! largest thing latch stores, written once and never changed. On the
//! gateway benchmark, inserting the chunks was more than half of the
//! server's CPU per recorded byte; a file takes each byte once.
//!
//! Crash safety (nothing acknowledged is lost): the writer writes a chunk
//! at the end of the ranges committed rows name, and syncs it, before the
//! row naming it commits, in the same writer job; a new file's directory
//! entry is synced too. A crash (or a failed commit) between the two leaves
//! bytes no row names; the next chunk, usually the retry, is written over
//! them. Readers read only ranges that committed rows name.
//!
//! PostgreSQL keeps chunks in their rows, where every node sees them.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::{Result, StoreError};

pub(crate) struct ChunkFiles {
    dir: PathBuf,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("cannot {what} recording file {}: {e}", path.display()))
}

/// Makes a new directory entry in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl ChunkFiles {
    /// The directory for the database at `db` (made at the first chunk).
    pub fn beside(db: &Path) -> Self {
        let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "latch.db".into());
        name.push("-recordings");
        ChunkFiles { dir: db.with_file_name(name) }
    }

    /// Creates the directory, durably, if it is not there.
    fn make_dir(&self) -> Result<()> {
        if self.dir.is_dir() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| io_err("create the directory for", &self.dir, e))?;
        let parent = self.dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        sync_dir(parent).map_err(|e| io_err("sync the directory of", &self.dir, e))
    }

    /// The file of recording `id`. Ids are made by latch (`rec_` and base32),
    /// but one that could step out of the directory is refused all the same.
    fn path(&self, id: &str) -> Result<PathBuf> {
        let safe = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !safe {
            return Err(StoreError::Backend(format!("recording id {id:?} cannot name a file")));
        }
        Ok(self.dir.join(format!("{id}.events")))
    }

    /// A recording's first chunk makes its file (and the directory, the
    /// first time), each entry synced so the file survives a crash.
    fn create(&self, path: &Path) -> Result<File> {
        self.make_dir()?;
        let file = OpenOptions::new().write(true).create_new(true).open(path).map_err(|e| io_err("create", path, e))?;
        sync_dir(&self.dir).map_err(|e| io_err("sync the directory of", path, e))?;
        Ok(file)
    }

    /// Writes `body` at `offset` of recording `id`'s file and syncs it.
    pub fn write_at(&self, id: &str, offset: u64, body: &[u8]) -> Result<()> {
        let path = self.path(id)?;
        // Every chunk after the first finds its file: one open, no stat.
        let file = match OpenOptions::new().write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => self.create(&path)?,
            Err(e) => return Err(io_err("open", &path, e)),
        };
        file.write_all_at(body, offset).map_err(|e| io_err("write", &path, e))?;
        file.sync_data().map_err(|e| io_err("sync", &path, e))
    }

    /// The `len` bytes at `offset` of recording `id`'s file, as text.
    pub fn read_at(&self, id: &str, offset: u64, len: u64) -> Result<String> {
        let path = self.path(id)?;
        let file = File::open(&path).map_err(|e| io_err("open", &path, e))?;
        let len = usize::try_from(len).map_err(|_| io_err("read", &path, ErrorKind::InvalidData.into()))?;
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, offset).map_err(|e| io_err("read", &path, e))?;
        String::from_utf8(buf).map_err(|_| {
            StoreError::Backend(format!("recording file {} holds bytes that are not UTF-8 at {offset}", path.display()))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn chunks_are_read_back_from_their_ranges_and_overwritten_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let files = ChunkFiles::beside(&dir.path().join("latch.db"));
        files.write_at("rec_a", 0, b"[0.1, \"o\", \"a\"]\n").unwrap();
        assert!(dir.path().join("latch.db-recordings/rec_a.events").is_file());
        // What a crash before the commit leaves: bytes no row names...
        files.write_at("rec_a", 16, b"left over from a lost commit, longer\n").unwrap();
        // ...are written over by the next chunk.
        files.write_at("rec_a", 16, b"[0.2, \"o\", \"b\"]\n").unwrap();
        assert_eq!(files.read_at("rec_a", 0, 16).unwrap(), "[0.1, \"o\", \"a\"]\n");
        assert_eq!(files.read_at("rec_a", 16, 16).unwrap(), "[0.2, \"o\", \"b\"]\n");
    }

    #[test]
    fn an_id_that_could_leave_the_directory_names_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let files = ChunkFiles::beside(&dir.path().join("latch.db"));
        files.write_at("rec_ok", 0, b"x").unwrap();
        for id in ["../x", "a/b", "", ".", "rec_\u{e9}"] {
            assert!(files.write_at(id, 0, b"x").is_err(), "{id:?}");
        }
        assert_eq!(std::fs::read_dir(dir.path().join("latch.db-recordings")).unwrap().count(), 1);
    }
}
