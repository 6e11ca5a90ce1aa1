//! Reading input and writing output at the edge.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context as _;
use kvseal::secret::SecretString;

/// Reads `-f FILE`, or stdin when no file (or `-`) is given. The text stays in zeroizing
/// memory because it may hold plaintext Secrets.
pub fn read_input(file: Option<&Path>) -> anyhow::Result<SecretString> {
    let mut text = String::new();
    match file {
        Some(path) if path != Path::new("-") => {
            let mut f = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            f.read_to_string(&mut text)
                .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?;
        }
        _ => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input as UTF-8 text")?;
        }
    }
    Ok(SecretString::new(text))
}

/// Writes to stdout, treating a closed pipe as success.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}

/// Writes a public file atomically.
pub fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    kvseal::fsutil::write_atomic(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}
