//! Reading input and writing output at the edge.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context as _;
use kvseal::secret::{SecretBytes, SecretString};

/// Reads `-f FILE`, or stdin when no file (or `-`) is given. The text may hold plaintext
/// Secrets, so it is read into zeroizing memory, and growing the buffer zeroes the old one.
pub fn read_input(file: Option<&Path>) -> anyhow::Result<SecretString> {
    let (bytes, source) = match file {
        Some(path) if path != Path::new("-") => {
            let f = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let size_hint = f.metadata().map(|m| m.len() as usize).unwrap_or(0);
            (
                read_zeroizing(f, size_hint)
                    .with_context(|| format!("cannot read {}", path.display()))?,
                path.display().to_string(),
            )
        }
        _ => (
            read_zeroizing(std::io::stdin().lock(), 0).context("cannot read standard input")?,
            "standard input".to_owned(),
        ),
    };
    match std::str::from_utf8(bytes.expose()) {
        Ok(text) => Ok(SecretString::new(text.to_owned())),
        Err(_) => anyhow::bail!("{source} is not UTF-8 text"),
    }
}

fn read_zeroizing(mut reader: impl Read, size_hint: usize) -> std::io::Result<SecretBytes> {
    let mut buffer = zeroize::Zeroizing::new(Vec::with_capacity(size_hint + 1));
    let mut chunk = zeroize::Zeroizing::new([0u8; 8192]);
    loop {
        let n = match reader.read(chunk.as_mut_slice()) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buffer.len() + n > buffer.capacity() {
            let mut bigger = zeroize::Zeroizing::new(Vec::with_capacity((buffer.len() + n) * 2));
            bigger.extend_from_slice(&buffer);
            buffer = bigger; // the old buffer is zeroed as it drops
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Ok(SecretBytes::new(std::mem::take(&mut *buffer)))
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

/// Reads every private key in a key file (any shape `kvseal unseal --key` takes).
pub fn read_key_file(path: &Path) -> anyhow::Result<Vec<kvseal::keys::PrivateKey>> {
    let bytes = SecretBytes::new(
        std::fs::read(path).with_context(|| format!("cannot read key file {}", path.display()))?,
    );
    kvseal::keys::read_private_keys(bytes.expose())
        .with_context(|| format!("key file {}", path.display()))
}

/// Asks before a command changes a store. `--yes` answers for the user; without it, a
/// terminal is asked, and anything else (a pipeline) gets no change and is told why.
pub fn confirm(yes: bool, question: &str) -> anyhow::Result<bool> {
    use std::io::IsTerminal as _;
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "no change made: standard input is not a terminal, so nobody can confirm this plan; pass --yes to carry it out"
        );
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("cannot read the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
