//! The verified-result cache: re-scans of unchanged SealedSecrets cost no RSA operation.
//!
//! A positive entry maps the SHA-256 of a sealed value to the key and label hash that opened
//! it, authenticated by an HMAC whose key is derived from that private key: whoever can write
//! the cache file but does not hold the key cannot forge one, so a wrong-key SealedSecret
//! cannot be made to pass. A negative entry ("no key of this keyring opens it") is
//! authenticated with a key derived from every private key of the keyring, so it lapses when
//! the keyring changes; forging one could only add a finding. Entries carry no plaintext.
//!
//! The file is text: a `file "<path>"` line for each scanned file, in scan order, then one
//! line per sealed value in it: `value-hash key-fingerprint|- label-hash mac`. Because the
//! scan walks files in order, the old cache is read and the new one written as the scan
//! goes, one file's entries at a time: the cache never needs memory that grows with the
//! repository. Sections of files this scan does not visit are copied through unchanged.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::hmac;

use crate::fsutil::AtomicFile;
use crate::keys::{Fingerprint, PrivateKey};

const HEADER: &str = "# kvseal verified-result cache v2";
const SECTION: &str = "file ";
const MAC_CONTEXT: &[u8] = b"kvseal verified-result cache v1";
const NO_KEY: &str = "-";

#[derive(Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// `None` for a negative entry.
    key: Option<Fingerprint>,
    label_hash: [u8; 32],
    mac: [u8; 32],
}

/// What the cache knows about a value.
pub(crate) enum Cached {
    /// This key opened it under the label with this hash.
    OpenedBy(Fingerprint, [u8; 32]),
    /// No key of the current keyring opens it.
    NoKey,
}

/// A cache file: the old one is read and the new one written as the scan goes.
pub struct VerifiedCache {
    path: PathBuf,
    mac_keys: std::sync::OnceLock<MacKeys>,
    io: Mutex<CacheIo>,
}

struct CacheIo {
    /// The old cache, positioned after `pending`.
    old: Option<std::io::Lines<BufReader<std::fs::File>>>,
    /// The next section's path in the old cache, read but not yet consumed.
    pending: Option<String>,
    /// The new cache, until it is committed.
    new: Option<AtomicFile>,
    /// The last section written: sections go out in strictly increasing `Path` order, so
    /// that the next scan can read them in step with its walk.
    last_written: Option<String>,
    /// Whether the new cache differs from the old one.
    changed: bool,
    /// The first error writing the new cache, reported by [`VerifiedCache::save`].
    error: Option<std::io::Error>,
}

/// The cache entries of one file while it is checked (on one thread).
pub(crate) struct FileCache<'c> {
    cache: &'c VerifiedCache,
    file: String,
    known: HashMap<[u8; 32], Entry>,
    /// Entries that hold for this file now: found valid in the old cache, or learned.
    kept: RefCell<HashMap<[u8; 32], Entry>>,
}

/// The SHA-256 of a decoded sealed value: the cache's lookup key.
pub fn value_hash(value: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, value).as_ref());
    out
}

/// The MAC key for entries about one private key.
fn key_mac_key(private: &PrivateKey) -> hmac::Key {
    let derived = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, private.pkcs8_der().expose()),
        MAC_CONTEXT,
    );
    hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
}

/// The MAC keys of one scan's keyring, derived once rather than per entry.
struct MacKeys {
    /// For entries about one private key.
    per_key: HashMap<Fingerprint, hmac::Key>,
    /// For negative entries: derived from every private key, in fingerprint order, so that
    /// they lapse when the keyring changes.
    keyring: hmac::Key,
}

impl MacKeys {
    fn new<'k>(keys: impl Iterator<Item = &'k PrivateKey>) -> Self {
        let mut per_key: Vec<(Fingerprint, hmac::Key)> =
            keys.map(|k| (k.fingerprint(), key_mac_key(k))).collect();
        per_key.sort_by_key(|(fingerprint, _)| *fingerprint);
        let mut context = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, MAC_CONTEXT));
        for (_, key) in &per_key {
            context.update(hmac::sign(key, b"keyring").as_ref());
        }
        Self {
            keyring: hmac::Key::new(hmac::HMAC_SHA256, context.sign().as_ref()),
            per_key: per_key.into_iter().collect(),
        }
    }
}

fn message(value_hash: &[u8; 32], label_hash: &[u8; 32]) -> [u8; 64] {
    let mut message = [0u8; 64];
    message[..32].copy_from_slice(value_hash);
    message[32..].copy_from_slice(label_hash);
    message
}

fn tag(key: &hmac::Key, value_hash: &[u8; 32], label_hash: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(hmac::sign(key, &message(value_hash, label_hash)).as_ref());
    out
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

fn parse_line(line: &str) -> Option<([u8; 32], Entry)> {
    let mut parts = line.split(' ');
    let value = hex32(parts.next()?)?;
    let key = match parts.next()? {
        NO_KEY => None,
        fingerprint => Some(Fingerprint::parse(fingerprint)?),
    };
    let label_hash = hex32(parts.next()?)?;
    let mac = hex32(parts.next()?)?;
    Some((
        value,
        Entry {
            key,
            label_hash,
            mac,
        },
    ))
}

/// `file "<path>"`.
fn section_header(file: &str) -> String {
    format!(
        "{SECTION}{}",
        serde_json::to_string(file).unwrap_or_default()
    )
}

fn parse_section_header(line: &str) -> Option<String> {
    serde_json::from_str(line.strip_prefix(SECTION)?).ok()
}

fn entry_line(value_hash: &[u8; 32], entry: &Entry) -> String {
    let key = entry
        .key
        .map_or_else(|| NO_KEY.to_owned(), |k| k.to_string());
    format!(
        "{} {key} {} {}",
        hex::encode(value_hash),
        hex::encode(entry.label_hash),
        hex::encode(entry.mac)
    )
}

/// The order files are walked in, and sections written in.
fn path_order(a: &str, b: &str) -> std::cmp::Ordering {
    Path::new(a).cmp(Path::new(b))
}

impl CacheIo {
    /// Consumes the old cache's next section: its path and entry lines.
    fn take_old_section(&mut self) -> Option<(String, Vec<String>)> {
        let path = self.pending.take()?;
        let mut lines = Vec::new();
        if let Some(old) = &mut self.old {
            // A read error ends the old cache early: the scan just does more work.
            while let Some(Ok(line)) = old.next() {
                if let Some(next) = parse_section_header(&line) {
                    self.pending = Some(next);
                    break;
                }
                lines.push(line);
            }
        }
        Some((path, lines))
    }

    fn write_section<S: AsRef<str>>(&mut self, file: &str, lines: &[S]) {
        if lines.is_empty() {
            return;
        }
        if self
            .last_written
            .as_deref()
            .is_some_and(|last| path_order(file, last).is_le())
        {
            // Out of walk order (overlapping scan roots): dropping it only costs work later.
            self.changed = true;
            return;
        }
        let Some(new) = &mut self.new else { return };
        let mut write = || -> std::io::Result<()> {
            writeln!(new, "{}", section_header(file))?;
            for line in lines {
                writeln!(new, "{}", line.as_ref())?;
            }
            Ok(())
        };
        if let Err(e) = write() {
            self.error.get_or_insert(e);
            self.new = None;
        }
        self.last_written = Some(file.to_owned());
    }
}

impl VerifiedCache {
    /// Opens the cache at `path`. A missing, unreadable or damaged file (or line) only
    /// makes the scan do the work again: a cache never changes results, only their cost.
    /// The new cache is written beside it and replaces it at [`VerifiedCache::save`].
    pub fn open(path: &Path) -> Self {
        let mut io = CacheIo {
            old: None,
            pending: None,
            new: None,
            last_written: None,
            changed: false,
            error: None,
        };
        match std::fs::File::open(path) {
            Ok(file) => {
                let mut lines = BufReader::new(file).lines();
                if matches!(lines.next(), Some(Ok(header)) if header == HEADER) {
                    while let Some(Ok(line)) = lines.next() {
                        if let Some(first) = parse_section_header(&line) {
                            io.pending = Some(first);
                            break;
                        }
                    }
                    io.old = Some(lines);
                } else {
                    io.changed = true;
                }
            }
            Err(_) => io.changed = true,
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(parent);
        }
        match AtomicFile::create(path).and_then(|mut new| {
            writeln!(new, "{HEADER}")?;
            Ok(new)
        }) {
            Ok(new) => io.new = Some(new),
            Err(e) => io.error = Some(e),
        }
        Self {
            path: path.to_owned(),
            mac_keys: std::sync::OnceLock::new(),
            io: Mutex::new(io),
        }
    }

    /// The file this cache lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Derives the MAC keys from the scan's private keys. Until this is called the cache
    /// answers nothing and learns nothing.
    pub(crate) fn use_keys<'k>(&self, keys: impl Iterator<Item = &'k PrivateKey>) {
        self.mac_keys.get_or_init(|| MacKeys::new(keys));
    }

    /// The old entries for `file`. Files must be asked for in walk order; sections of files
    /// the scan passes by are copied to the new cache as they were.
    pub(crate) fn for_file(&self, file: &str) -> FileCache<'_> {
        let mut known = HashMap::new();
        if let Ok(mut io) = self.io.lock() {
            while let Some(next) = io.pending.as_deref() {
                match path_order(next, file) {
                    std::cmp::Ordering::Less => {
                        if let Some((path, lines)) = io.take_old_section() {
                            io.write_section(&path, &lines);
                        }
                    }
                    std::cmp::Ordering::Equal => {
                        if let Some((_, lines)) = io.take_old_section() {
                            known = lines.iter().filter_map(|l| parse_line(l)).collect();
                        }
                        break;
                    }
                    std::cmp::Ordering::Greater => break,
                }
            }
        }
        FileCache {
            cache: self,
            file: file.to_owned(),
            known,
            kept: RefCell::new(HashMap::new()),
        }
    }

    /// Writes what holds for a checked file to the new cache. Call in walk order.
    pub(crate) fn finish_file(&self, checked: FileCache<'_>) {
        let kept = checked.kept.into_inner();
        let Ok(mut io) = self.io.lock() else { return };
        if kept != checked.known {
            io.changed = true;
        }
        let mut entries: Vec<_> = kept.into_iter().collect();
        entries.sort_by_key(|(value, _)| *value);
        let lines: Vec<String> = entries
            .iter()
            .map(|(value, entry)| entry_line(value, entry))
            .collect();
        io.write_section(&checked.file, &lines);
    }

    /// Copies what is left of the old cache and, if anything changed, replaces the cache
    /// file atomically. Returns whether it was written.
    pub fn save(&self) -> std::io::Result<bool> {
        let Ok(mut io) = self.io.lock() else {
            return Ok(false);
        };
        while let Some((path, lines)) = io.take_old_section() {
            io.write_section(&path, &lines);
        }
        if let Some(e) = io.error.take() {
            return Err(e);
        }
        match io.new.take() {
            Some(new) if io.changed => new.commit().map(|()| true),
            _ => Ok(false),
        }
    }
}

impl FileCache<'_> {
    /// What the cache holds for a value, if its MAC verifies under the current keyring.
    pub(crate) fn lookup(&self, value_hash: &[u8; 32]) -> Option<Cached> {
        let keys = self.cache.mac_keys.get()?;
        let entry = self.known.get(value_hash)?;
        let msg = message(value_hash, &entry.label_hash);
        // Constant-time verification: the MAC is what keeps forged entries out.
        let cached = match entry.key {
            Some(fingerprint) => {
                hmac::verify(keys.per_key.get(&fingerprint)?, &msg, &entry.mac).ok()?;
                Cached::OpenedBy(fingerprint, entry.label_hash)
            }
            None => {
                hmac::verify(&keys.keyring, &msg, &entry.mac).ok()?;
                Cached::NoKey
            }
        };
        self.kept.borrow_mut().insert(*value_hash, *entry);
        Some(cached)
    }

    /// Records that the key with this fingerprint opened a value under the label with
    /// this hash.
    pub(crate) fn record(&self, value_hash: [u8; 32], key: Fingerprint, label_hash: [u8; 32]) {
        let Some(mac_key) = self.cache.mac_keys.get().and_then(|k| k.per_key.get(&key)) else {
            return;
        };
        let mac = tag(mac_key, &value_hash, &label_hash);
        self.kept.borrow_mut().insert(
            value_hash,
            Entry {
                key: Some(key),
                label_hash,
                mac,
            },
        );
    }

    /// Records that no key of the keyring opens a value.
    pub(crate) fn record_no_key(&self, value_hash: [u8; 32]) {
        let Some(keys) = self.cache.mac_keys.get() else {
            return;
        };
        let label_hash = [0u8; 32];
        self.kept.borrow_mut().insert(
            value_hash,
            Entry {
                key: None,
                label_hash,
                mac: tag(&keys.keyring, &value_hash, &label_hash),
            },
        );
    }
}
