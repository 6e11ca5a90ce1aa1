//! The verified-result cache: re-scans of unchanged SealedSecrets cost no RSA operation.
//!
//! An entry maps the SHA-256 of a sealed value to the key and label hash that opened it,
//! authenticated by an HMAC whose key is derived from that private key. Whoever can write
//! the cache file but does not hold the private key cannot forge an entry, so a wrong-key
//! SealedSecret cannot be made to pass. Entries carry no plaintext.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::hmac;

use crate::keys::{Fingerprint, PrivateKey};

const MAC_CONTEXT: &[u8] = b"kvseal verified-result cache v1";

#[derive(Clone, Copy)]
struct Entry {
    key: Fingerprint,
    label_hash: [u8; 32],
    mac: [u8; 32],
}

/// A cache file, loaded once and written back with what the scan learned.
pub struct VerifiedCache {
    path: PathBuf,
    known: HashMap<[u8; 32], Entry>,
    learned: Mutex<HashMap<[u8; 32], Entry>>,
}

/// The SHA-256 of a decoded sealed value: the cache's lookup key.
pub fn value_hash(value: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, value).as_ref());
    out
}

fn mac_key(private: &PrivateKey) -> hmac::Key {
    // HKDF-like: an HMAC keyed with the private key's DER derives the MAC key.
    let derived = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, private.pkcs8_der().expose()),
        MAC_CONTEXT,
    );
    hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
}

fn mac_message(value_hash: &[u8; 32], label_hash: &[u8; 32]) -> [u8; 64] {
    let mut message = [0u8; 64];
    message[..32].copy_from_slice(value_hash);
    message[32..].copy_from_slice(label_hash);
    message
}

fn mac(private: &PrivateKey, value_hash: &[u8; 32], label_hash: &[u8; 32]) -> [u8; 32] {
    let tag = hmac::sign(&mac_key(private), &mac_message(value_hash, label_hash));
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

fn hex32(text: Option<&str>) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text?, &mut out).ok()?;
    Some(out)
}

impl VerifiedCache {
    /// Loads the cache at `path`; a missing or unreadable file is an empty cache (a cache
    /// never changes results, only their cost).
    pub fn load(path: &Path) -> Self {
        let mut known = HashMap::new();
        let json = std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        if let Some(json) = json {
            {
                for item in json["entries"].as_array().into_iter().flatten() {
                    let entry = (|| {
                        let value = hex32(item["value"].as_str())?;
                        let key = Fingerprint::parse(item["key"].as_str()?)?;
                        let label_hash = hex32(item["label"].as_str())?;
                        let mac = hex32(item["mac"].as_str())?;
                        Some((
                            value,
                            Entry {
                                key,
                                label_hash,
                                mac,
                            },
                        ))
                    })();
                    if let Some((value, entry)) = entry {
                        known.insert(value, entry);
                    }
                }
            }
        }
        Self {
            path: path.to_owned(),
            known,
            learned: Mutex::new(HashMap::new()),
        }
    }

    /// The key fingerprint and label hash recorded for a value, if the entry's MAC verifies
    /// under that key. `private_key` looks up the private key for a fingerprint.
    pub(crate) fn lookup<'k>(
        &self,
        value_hash: &[u8; 32],
        private_key: impl Fn(Fingerprint) -> Option<&'k PrivateKey>,
    ) -> Option<(Fingerprint, [u8; 32])> {
        let entry = self.known.get(value_hash)?;
        let private = private_key(entry.key)?;
        // The MAC (checked in constant time) is what keeps forged entries out.
        hmac::verify(
            &mac_key(private),
            &mac_message(value_hash, &entry.label_hash),
            &entry.mac,
        )
        .ok()?;
        Some((entry.key, entry.label_hash))
    }

    /// Records a verified attribution.
    pub(crate) fn record(&self, value_hash: [u8; 32], private: &PrivateKey, label_hash: [u8; 32]) {
        if self.known.contains_key(&value_hash) {
            return;
        }
        let entry = Entry {
            key: private.fingerprint(),
            label_hash,
            mac: mac(private, &value_hash, &label_hash),
        };
        if let Ok(mut learned) = self.learned.lock() {
            learned.insert(value_hash, entry);
        }
    }

    /// Writes the cache back, atomically, when the scan learned something. Entries for
    /// values that no longer exist are kept; the file stays small (about 250 bytes a field).
    pub fn save(&self) -> std::io::Result<bool> {
        let learned = self.learned.lock().map(|l| l.clone()).unwrap_or_default();
        if learned.is_empty() {
            return Ok(false);
        }
        let mut all: Vec<([u8; 32], Entry)> = self.known.iter().map(|(k, v)| (*k, *v)).collect();
        all.extend(learned);
        all.sort_by_key(|entry| entry.0);
        let entries: Vec<serde_json::Value> = all
            .iter()
            .map(|(value, e)| {
                serde_json::json!({
                    "value": hex::encode(value), "key": e.key.to_string(),
                    "label": hex::encode(e.label_hash), "mac": hex::encode(e.mac),
                })
            })
            .collect();
        let text = serde_json::to_string(&serde_json::json!({"version": 1, "entries": entries}))?;
        crate::fsutil::write_atomic(&self.path, text.as_bytes())?;
        Ok(true)
    }
}
