//! Writing files so that a crash never leaves a half-written one behind.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Replaces `path` with `contents` atomically: a sibling temporary file is written,
/// flushed to disk, and renamed over the target. Public data only: never use it for
/// private keys (see [`create_new_private`]).
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
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
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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
