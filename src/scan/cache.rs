//! The verified-result cache: re-scans of unchanged SealedSecrets cost no RSA operation.
//!
//! A positive entry maps the SHA-256 of a sealed value to the key and label hash that opened
//! it, authenticated by an HMAC whose key is derived from that private key: whoever can write
//! the cache file but does not hold the key cannot forge one, so a wrong-key SealedSecret
//! cannot be made to pass. A negative entry ("no key of this keyring opens it") is
//! authenticated with a key derived from every private key of the keyring, so it lapses when
//! the keyring changes; forging one could only add a finding. Entries carry no plaintext.
//!
//! The file is text, one entry a line: `value-hash key-fingerprint|- label-hash mac`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::hmac;

use crate::keys::{Fingerprint, PrivateKey};

const HEADER: &str = "# kvseal verified-result cache v1";
const MAC_CONTEXT: &[u8] = b"kvseal verified-result cache v1";
const NO_KEY: &str = "-";

#[derive(Clone, Copy)]
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

/// A cache file, loaded once and written back with what the scan learned.
pub struct VerifiedCache {
    path: PathBuf,
    keyring_key: std::sync::OnceLock<hmac::Key>,
    known: HashMap<[u8; 32], Entry>,
    learned: Mutex<HashMap<[u8; 32], Entry>>,
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

/// The MAC key for negative entries: derived from every private key, in fingerprint order.
fn keyring_mac_key<'k>(keys: impl Iterator<Item = &'k PrivateKey>) -> hmac::Key {
    let mut keys: Vec<&PrivateKey> = keys.collect();
    keys.sort_by_key(|k| k.fingerprint());
    let mut context = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, MAC_CONTEXT));
    for key in keys {
        context.update(hmac::sign(&key_mac_key(key), b"keyring").as_ref());
    }
    hmac::Key::new(hmac::HMAC_SHA256, context.sign().as_ref())
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

impl VerifiedCache {
    /// Loads the cache at `path`; a missing, unreadable or damaged file (or line) only makes
    /// the scan do the work again: a cache never changes results, only their cost.
    pub fn load(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let known = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(parse_line)
            .collect();
        Self {
            path: path.to_owned(),
            keyring_key: std::sync::OnceLock::new(),
            known,
            learned: Mutex::new(HashMap::new()),
        }
    }

    /// The negative-entry MAC key for this scan's keyring, computed once.
    pub(crate) fn keyring_key<'k>(&self, keys: impl Iterator<Item = &'k PrivateKey>) -> &hmac::Key {
        self.keyring_key.get_or_init(|| keyring_mac_key(keys))
    }

    /// What the cache holds for a value, if its MAC verifies. `private_of` finds the private
    /// key for a fingerprint; `keyring_key` is [`keyring_mac_key`] of the current keyring.
    pub(crate) fn lookup<'k>(
        &self,
        value_hash: &[u8; 32],
        private_of: impl Fn(Fingerprint) -> Option<&'k PrivateKey>,
        keyring_key: &hmac::Key,
    ) -> Option<Cached> {
        let entry = self.known.get(value_hash)?;
        let msg = message(value_hash, &entry.label_hash);
        // Constant-time verification: the MAC is what keeps forged entries out.
        match entry.key {
            Some(fingerprint) => {
                hmac::verify(&key_mac_key(private_of(fingerprint)?), &msg, &entry.mac).ok()?;
                Some(Cached::OpenedBy(fingerprint, entry.label_hash))
            }
            None => {
                hmac::verify(keyring_key, &msg, &entry.mac).ok()?;
                Some(Cached::NoKey)
            }
        }
    }

    /// Records that `private` opened a value under the label with this hash.
    pub(crate) fn record(&self, value_hash: [u8; 32], private: &PrivateKey, label_hash: [u8; 32]) {
        let mac = tag(&key_mac_key(private), &value_hash, &label_hash);
        self.learn(
            value_hash,
            Entry {
                key: Some(private.fingerprint()),
                label_hash,
                mac,
            },
        );
    }

    /// Records that no key of the keyring opens a value.
    pub(crate) fn record_no_key(&self, value_hash: [u8; 32], keyring_key: &hmac::Key) {
        let label_hash = [0u8; 32];
        self.learn(
            value_hash,
            Entry {
                key: None,
                label_hash,
                mac: tag(keyring_key, &value_hash, &label_hash),
            },
        );
    }

    fn learn(&self, value_hash: [u8; 32], entry: Entry) {
        if let Ok(mut learned) = self.learned.lock() {
            learned.insert(value_hash, entry);
        }
    }

    /// Writes the cache back, atomically, when the scan learned something.
    pub fn save(&self) -> std::io::Result<bool> {
        let learned = match self.learned.lock() {
            Ok(learned) if !learned.is_empty() => learned,
            _ => return Ok(false),
        };
        let mut all: Vec<(&[u8; 32], &Entry)> = self
            .known
            .iter()
            .filter(|(k, _)| !learned.contains_key(*k))
            .chain(learned.iter())
            .collect();
        all.sort_by_key(|(value, _)| **value);
        const LINE: usize = 64 + 1 + 71 + 1 + 64 + 1 + 64 + 1;
        let mut text = String::with_capacity(HEADER.len() + 1 + all.len() * LINE);
        text.push_str(HEADER);
        text.push('\n');
        for (value, entry) in all {
            let key = entry
                .key
                .map_or_else(|| NO_KEY.to_owned(), |k| k.to_string());
            text.push_str(&format!(
                "{} {key} {} {}\n",
                hex::encode(value),
                hex::encode(entry.label_hash),
                hex::encode(entry.mac)
            ));
        }
        crate::fsutil::write_atomic(&self.path, text.as_bytes())?;
        Ok(true)
    }
}
