//! Where key generations live. The rest of kvseal talks to a [`KeyStore`] and never
//! knows which backend it is.

mod local;

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;

use crate::keys::{Certificate, Fingerprint, PrivateKey};

pub use local::LocalDirStore;

/// The life of a generation; see `docs/keys.md`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum GenerationState {
    /// Being written; not yet verified.
    Pending,
    /// Loaded into clusters for decryption, not yet used for sealing.
    Staged,
    /// Seals.
    Active,
    /// Still loaded; decrypts older secrets.
    Retained,
    /// No longer loaded; kept for recovery.
    Retired,
    /// Must be replaced; everything sealed with it is a finding.
    Compromised,
}

impl GenerationState {
    /// Whether clusters load this generation (so it can decrypt).
    pub fn is_loaded(self) -> bool {
        matches!(self, Self::Staged | Self::Active | Self::Retained)
    }

    /// Whether its certificate is published for sealing and scanning.
    pub fn is_published(self) -> bool {
        matches!(self, Self::Active | Self::Retained)
    }

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Staged => "staged",
            Self::Active => "active",
            Self::Retained => "retained",
            Self::Retired => "retired",
            Self::Compromised => "compromised",
        }
    }
}

impl fmt::Display for GenerationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known about a generation without its private key.
#[derive(Clone, Debug)]
pub struct GenerationInfo {
    /// Key set name.
    pub keyset: String,
    /// Generation number, counting from 1.
    pub generation: u32,
    /// Lifecycle state.
    pub state: GenerationState,
    /// When kvseal created it.
    pub created: OffsetDateTime,
    /// Its certificate (public).
    pub certificate: Certificate,
}

impl GenerationInfo {
    /// The public key's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.certificate.public_key().fingerprint()
    }
}

/// A generation with its private key.
pub struct Generation {
    /// Public facts.
    pub info: GenerationInfo,
    /// The private key.
    pub private_key: PrivateKey,
}

/// Why a store operation failed. Messages name the store, key set and generation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O failure on a named path.
    #[error("{path}: {cause}")]
    Io {
        /// The file or directory.
        path: String,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// Stored data does not parse or does not match itself.
    #[error(
        "{what}: {reason}; the store is damaged here, restore it from backup or remove that generation"
    )]
    Corrupt {
        /// Which entry.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// No such generation.
    #[error(
        "key set {keyset:?} has no generation {generation} in {store}; `kvseal keys list` shows what there is"
    )]
    NotFound {
        /// Store description.
        store: String,
        /// Key set.
        keyset: String,
        /// Generation.
        generation: u32,
    },
    /// The generation exists already.
    #[error(
        "key set {keyset:?} already has a generation {generation}; kvseal never overwrites a key"
    )]
    AlreadyExists {
        /// Key set.
        keyset: String,
        /// Generation.
        generation: u32,
    },
    /// A store URL kvseal does not understand.
    #[error(
        "unknown store {0:?}: use dir:PATH (Azure Key Vault support comes with azure-keyvault:URL)"
    )]
    UnknownSpec(String),
}

/// Key set and generation storage. Implementations are stateless and safe to call again
/// after a crash; policy (which generation seals, rotation) lives outside the store.
pub trait KeyStore {
    /// A human description, for messages (`dir:/path`).
    fn describe(&self) -> String;
    /// Names of the key sets that have at least one generation.
    fn keysets(&self) -> Result<Vec<String>, StoreError>;
    /// Every generation of a key set, oldest first.
    fn list(&self, keyset: &str) -> Result<Vec<GenerationInfo>, StoreError>;
    /// One generation with its private key, verified against its certificate.
    fn load(&self, keyset: &str, generation: u32) -> Result<Generation, StoreError>;
    /// Stores a new generation. Fails with [`StoreError::AlreadyExists`] rather than
    /// overwrite; reads it back and checks its fingerprint before returning.
    fn create(
        &self,
        keyset: &str,
        generation: u32,
        key: &PrivateKey,
        certificate: &Certificate,
        state: GenerationState,
    ) -> Result<GenerationInfo, StoreError>;
    /// Changes a generation's state.
    fn set_state(
        &self,
        keyset: &str,
        generation: u32,
        state: GenerationState,
    ) -> Result<(), StoreError>;
}

/// A parsed store location from configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSpec {
    /// `dir:PATH`.
    Dir(std::path::PathBuf),
}

impl FromStr for StoreSpec {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("dir", path)) if !path.is_empty() => Ok(StoreSpec::Dir(path.into())),
            _ => Err(StoreError::UnknownSpec(s.to_owned())),
        }
    }
}

impl StoreSpec {
    /// Opens the store.
    pub fn open(&self) -> Box<dyn KeyStore> {
        match self {
            StoreSpec::Dir(path) => Box::new(LocalDirStore::new(path.clone())),
        }
    }
}

/// Every generation of every key set whose private keys the store holds, loaded.
pub fn load_all(store: &dyn KeyStore, keysets: &[String]) -> Result<Vec<Generation>, StoreError> {
    let mut out = Vec::new();
    for keyset in keysets {
        for info in store.list(keyset)? {
            if info.state != GenerationState::Pending {
                out.push(store.load(keyset, info.generation)?);
            }
        }
    }
    Ok(out)
}
