//! The local directory store, kvseal's embedded default.
//!
//! ```text
//! <root>/<keyset>/<generation, 4 digits>/
//!     tls.crt     certificate (PEM)
//!     tls.key     PKCS#8 private key (PEM), created new with mode 0600, never overwritten
//!     meta.toml   state, fingerprint, created (and the reason for a forced change);
//!                 written last, as `pending`, and moved on only after the generation
//!                 reads back whole
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{Generation, GenerationInfo, GenerationState, KeyStore, StoreError};
use crate::fsutil;
use crate::keys::{Certificate, PrivateKey};
use crate::secret::SecretBytes;

const CERT_FILE: &str = "tls.crt";
const KEY_FILE: &str = "tls.key";
const META_FILE: &str = "meta.toml";

/// A key store in a local directory.
#[derive(Clone, Debug)]
pub struct LocalDirStore {
    root: PathBuf,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    state: GenerationState,
    fingerprint: String,
    #[serde(with = "time::serde::rfc3339")]
    created: OffsetDateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |cause| StoreError::Io {
        path: path.display().to_string(),
        cause,
    }
}

impl LocalDirStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn generation_dir(&self, keyset: &str, generation: u32) -> PathBuf {
        self.root.join(keyset).join(format!("{generation:04}"))
    }

    fn read_info(
        &self,
        keyset: &str,
        generation: u32,
    ) -> Result<Option<GenerationInfo>, StoreError> {
        let dir = self.generation_dir(keyset, generation);
        let meta_path = dir.join(META_FILE);
        let meta_text = match fs::read_to_string(&meta_path) {
            Ok(text) => text,
            // No meta.toml: a creation cut short. With its certificate written (the key was
            // written before it) it is a pending generation that a re-run can verify and
            // finish; without, there is nothing to go on and the number is simply taken.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let cert_path = dir.join(CERT_FILE);
                let certificate = fs::read(&cert_path)
                    .ok()
                    .and_then(|pem| Certificate::from_pem(&pem).ok());
                return Ok(certificate.map(|certificate| {
                    GenerationInfo::new(
                        keyset,
                        generation,
                        GenerationState::Pending,
                        certificate.not_before(),
                        certificate,
                        None,
                    )
                }));
            }
            Err(e) => return Err(io_error(&meta_path)(e)),
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            what: meta_path.display().to_string(),
            reason,
        };
        let meta: Meta = toml::from_str(&meta_text).map_err(|e| corrupt(e.to_string()))?;
        let cert_path = dir.join(CERT_FILE);
        let cert_pem = fs::read(&cert_path).map_err(io_error(&cert_path))?;
        let certificate = Certificate::from_pem(&cert_pem).map_err(|e| StoreError::Corrupt {
            what: cert_path.display().to_string(),
            reason: e.to_string(),
        })?;
        let actual = certificate.public_key().fingerprint().to_string();
        if actual != meta.fingerprint {
            return Err(corrupt(format!(
                "records fingerprint {} but {CERT_FILE} has {actual}",
                meta.fingerprint
            )));
        }
        let mut info = GenerationInfo::new(
            keyset,
            generation,
            meta.state,
            meta.created,
            certificate,
            None,
        );
        info.reason = meta.reason;
        Ok(Some(info))
    }

    fn require_info(&self, keyset: &str, generation: u32) -> Result<GenerationInfo, StoreError> {
        self.read_info(keyset, generation)?
            .ok_or_else(|| StoreError::NotFound {
                store: self.describe(),
                keyset: keyset.to_owned(),
                generation,
            })
    }

    fn write_meta(dir: &Path, meta: &Meta) -> Result<(), StoreError> {
        let path = dir.join(META_FILE);
        let text = toml::to_string(meta).map_err(|e| StoreError::Corrupt {
            what: path.display().to_string(),
            reason: e.to_string(),
        })?;
        fsutil::write_atomic(&path, text.as_bytes()).map_err(io_error(&path))
    }
}

impl KeyStore for LocalDirStore {
    fn describe(&self) -> String {
        format!("dir:{}", self.root.display())
    }

    fn keysets(&self) -> Result<Vec<String>, StoreError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&self.root)(e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !name.starts_with('.') {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn list(&self, keyset: &str) -> Result<Vec<GenerationInfo>, StoreError> {
        let dir = self.root.join(keyset);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&dir)(e)),
        };
        let mut numbers = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error(&dir))?;
            if let Ok(n) = entry.file_name().to_string_lossy().parse::<u32>() {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        let mut out = Vec::new();
        for n in numbers {
            out.extend(self.read_info(keyset, n)?);
        }
        Ok(out)
    }

    fn load(&self, keyset: &str, generation: u32) -> Result<Generation, StoreError> {
        let info = self.require_info(keyset, generation)?;
        let key_path = self.generation_dir(keyset, generation).join(KEY_FILE);
        let pem = SecretBytes::new(fs::read(&key_path).map_err(io_error(&key_path))?);
        let corrupt = |reason: String| StoreError::Corrupt {
            what: key_path.display().to_string(),
            reason,
        };
        let private_key = PrivateKey::from_pem(pem.expose()).map_err(|e| corrupt(e.to_string()))?;
        if private_key.fingerprint() != info.fingerprint() {
            return Err(corrupt(format!(
                "the private key ({}) does not match the certificate ({})",
                private_key.fingerprint(),
                info.fingerprint()
            )));
        }
        Ok(Generation { info, private_key })
    }

    fn create(
        &self,
        keyset: &str,
        generation: u32,
        key: &PrivateKey,
        certificate: &Certificate,
        state: GenerationState,
    ) -> Result<GenerationInfo, StoreError> {
        let keyset_dir = self.root.join(keyset);
        fs::create_dir_all(&keyset_dir).map_err(io_error(&keyset_dir))?;
        let dir = self.generation_dir(keyset, generation);
        // Creating the directory is the exclusive claim on the generation number.
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StoreError::AlreadyExists {
                    keyset: keyset.to_owned(),
                    generation,
                });
            }
            Err(e) => return Err(io_error(&dir)(e)),
        }
        let key_path = dir.join(KEY_FILE);
        fsutil::create_new_private(&key_path, key.to_pkcs8_pem().expose().as_bytes())
            .map_err(io_error(&key_path))?;
        let cert_path = dir.join(CERT_FILE);
        fsutil::write_atomic(&cert_path, certificate.to_pem().as_bytes())
            .map_err(io_error(&cert_path))?;
        let mut meta = Meta {
            state: GenerationState::Pending,
            fingerprint: certificate.public_key().fingerprint().to_string(),
            created: OffsetDateTime::now_utc()
                .replace_nanosecond(0)
                .unwrap_or_else(|_| OffsetDateTime::now_utc()),
            reason: None,
        };
        Self::write_meta(&dir, &meta)?;
        fsutil::sync_dir(&keyset_dir).map_err(io_error(&keyset_dir))?;

        // It only counts once it reads back whole and matching.
        let stored = self.load(keyset, generation)?;
        if stored.private_key.fingerprint() != key.fingerprint() {
            return Err(StoreError::Corrupt {
                what: dir.display().to_string(),
                reason: "the stored key does not read back as the key that was written".into(),
            });
        }
        let mut info = stored.info;
        if state != GenerationState::Pending {
            meta.state = state;
            Self::write_meta(&dir, &meta)?;
            info.state = state;
        }
        Ok(info)
    }

    fn set_state(
        &self,
        keyset: &str,
        generation: u32,
        state: GenerationState,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let info = self.require_info(keyset, generation)?;
        let meta = Meta {
            state,
            fingerprint: info.fingerprint().to_string(),
            created: info.created,
            reason: reason.map(str::to_owned).or(info.reason),
        };
        Self::write_meta(&self.generation_dir(keyset, generation), &meta)
    }

    fn replace_certificate(
        &self,
        keyset: &str,
        generation: u32,
        certificate: &Certificate,
    ) -> Result<GenerationInfo, StoreError> {
        let stored = self.load(keyset, generation)?;
        if certificate.public_key().fingerprint() != stored.info.fingerprint() {
            return Err(StoreError::Corrupt {
                what: format!("{} {keyset} generation {generation}", self.describe()),
                reason: "the new certificate is for another key".into(),
            });
        }
        // One atomic rename: a crash leaves the old certificate or the new one, both valid
        // for the same key.
        let cert_path = self.generation_dir(keyset, generation).join(CERT_FILE);
        fsutil::write_atomic(&cert_path, certificate.to_pem().as_bytes())
            .map_err(io_error(&cert_path))?;
        self.require_info(keyset, generation)
    }
}
