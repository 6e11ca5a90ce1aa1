//! Writing files so that a crash never leaves a half-written one behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Replaces `path` with `contents` atomically: a sibling temporary file is written,
/// flushed to disk, and renamed over the target. Public data only: never use it for
/// private keys (see [`create_new_private`]).
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(contents)?;
    file.commit()
}

/// A file written in pieces that replaces its target only when [`AtomicFile::commit`] is
/// called: until then the target keeps its old contents, and a dropped (uncommitted) file
/// leaves nothing behind. For reports and caches that are streamed, never held whole.
pub struct AtomicFile {
    target: std::path::PathBuf,
    tmp: std::path::PathBuf,
    file: Option<io::BufWriter<File>>,
}

impl AtomicFile {
    /// Starts replacing `path`. The mode of the file being replaced is kept.
    pub fn create(path: &Path) -> io::Result<Self> {
        let dir = parent_dir(path);
        let file_name = path
            .file_name()
            .ok_or_else(|| io::Error::other("path has no file name"))?;
        // A random name: a leftover from a crashed run never blocks a later write.
        let mut suffix = [0u8; 8];
        aws_lc_rs::rand::fill(&mut suffix).map_err(|_| io::Error::other("no randomness"))?;
        let tmp = dir.join(format!(
            ".{}.kvseal-tmp-{}",
            file_name.to_string_lossy(),
            hex::encode(suffix)
        ));
        // Keep the mode of the file being replaced (a user's SealedSecret, say).
        let mode = fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        Ok(Self {
            target: path.to_path_buf(),
            tmp,
            file: Some(io::BufWriter::new(file)),
        })
    }

    /// Flushes the new contents to disk and renames them over the target.
    pub fn commit(mut self) -> io::Result<()> {
        let Some(writer) = self.file.take() else {
            return Err(io::Error::other("already committed"));
        };
        let file = writer
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&self.tmp, &self.target)?;
        sync_dir(parent_dir(&self.target))
    }

    fn writer(&mut self) -> io::Result<&mut io::BufWriter<File>> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("already committed"))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer()?.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Not committed (an error, or a failed commit): the temporary file must not stay.
        if self.file.take().is_some() || self.tmp.exists() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Creates `path` new (failing if it exists) with mode 0600, writes `contents` and syncs.
/// On failure the partial file is removed.
pub fn create_new_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let result = file.write_all(contents).and_then(|()| file.sync_all());
    if result.is_err() {
        drop(file);
        let _ = fs::remove_file(path);
    }
    result
}

/// Flushes a directory entry change (a rename or a new file) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
