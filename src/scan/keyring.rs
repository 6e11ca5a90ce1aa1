//! Every key the scanner knows: generations from the store (with private keys), exported
//! public certificates (public-only mode), or `--key` files.

use std::path::Path;

use time::OffsetDateTime;

use crate::config::Config;
use crate::keys::{Certificate, Fingerprint, PrivateKey};
use crate::store::{GenerationState, KeyStore, StoreError};

/// One key, with what is known about where it belongs.
pub struct KnownKey {
    /// Key set name; for `--key` files, the file name.
    pub keyset: String,
    /// Generation number, for keys from a store or certificate directory.
    pub generation: Option<u32>,
    /// Lifecycle state, when known.
    pub state: Option<GenerationState>,
    /// When the generation started (its certificate's NotBefore), for staleness.
    pub not_before: Option<OffsetDateTime>,
    /// Public key fingerprint.
    pub fingerprint: Fingerprint,
    /// The private key, when the scan can decrypt.
    pub private: Option<PrivateKey>,
}

impl KnownKey {
    /// `prod generation 2`, or the key file's name.
    pub fn describe(&self) -> String {
        match self.generation {
            Some(g) => format!("{} generation {g}", self.keyset),
            None => self.keyset.clone(),
        }
    }
}

/// The keys a scan checks against.
#[derive(Default)]
pub struct Keyring {
    /// All of them.
    pub keys: Vec<KnownKey>,
}

impl Keyring {
    /// Every generation of every configured key set in the store, private keys included.
    pub fn from_store(config: &Config, store: &dyn KeyStore) -> Result<Self, StoreError> {
        let mut keys = Vec::new();
        for keyset in config.keysets.keys() {
            for info in store.list(keyset)? {
                if info.state == GenerationState::Pending {
                    continue;
                }
                // A retired generation in Key Vault is disabled and cannot be read: it is
                // still known by its fingerprint, for public-certificate attribution.
                let private = match store.load(keyset, info.generation) {
                    Ok(generation) => Some(generation.private_key),
                    Err(StoreError::Unreadable { .. }) => None,
                    Err(other) => return Err(other),
                };
                keys.push(KnownKey {
                    keyset: keyset.clone(),
                    generation: Some(info.generation),
                    state: Some(info.state),
                    not_before: Some(info.not_before),
                    fingerprint: info.fingerprint(),
                    private,
                });
            }
        }
        Ok(Self { keys })
    }

    /// Public certificates from the certificate directory. The newest NotBefore of each key
    /// set is taken as active, the rest as retained, as the controller would see them.
    pub fn from_cert_dir(config: &Config) -> Result<Self, String> {
        let mut keys = Vec::new();
        for keyset in config.keysets.keys() {
            let dir = config.keyset_cert_dir(keyset);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut found = Vec::new();
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) != Some("pem") {
                    continue;
                }
                let pem = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let cert =
                    Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
                let generation = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse().ok());
                found.push((generation, cert));
            }
            let newest = found.iter().map(|(_, c)| c.not_before()).max();
            for (generation, cert) in found {
                let state = if Some(cert.not_before()) == newest {
                    GenerationState::Active
                } else {
                    GenerationState::Retained
                };
                keys.push(KnownKey {
                    keyset: keyset.clone(),
                    generation,
                    state: Some(state),
                    not_before: Some(cert.not_before()),
                    fingerprint: cert.public_key().fingerprint(),
                    private: None,
                });
            }
        }
        Ok(Self { keys })
    }

    /// Private keys from files, each named after its file.
    pub fn add_key_file(&mut self, path: &Path, keys: Vec<PrivateKey>) {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let count = keys.len();
        for (i, key) in keys.into_iter().enumerate() {
            let keyset = if count > 1 {
                format!("{name}#{}", i + 1)
            } else {
                name.clone()
            };
            self.keys.push(KnownKey {
                keyset,
                generation: None,
                state: None,
                not_before: None,
                fingerprint: key.fingerprint(),
                private: Some(key),
            });
        }
    }

    /// Whether the scan can decrypt (definitive mode).
    pub fn has_private_keys(&self) -> bool {
        self.keys.iter().any(|k| k.private.is_some())
    }

    /// The key with this fingerprint.
    pub fn by_fingerprint(&self, fingerprint: Fingerprint) -> Option<&KnownKey> {
        self.keys.iter().find(|k| k.fingerprint == fingerprint)
    }
}
