//! Where key generations live. The rest of kvseal talks to a [`KeyStore`] and never
//! knows which backend it is.

mod azure;
mod local;

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;

use crate::keys::{Certificate, Fingerprint, PrivateKey};

pub use azure::{
    ACCESS_TOKEN_ENV, AzureKeyVaultStore, CA_FILE_ENV, ChainedCredential, DEFAULT_PREFIX,
    RetryLimits,
};
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
    /// Whether clusters load this generation (so it can decrypt). A compromised generation
    /// stays loaded until everything it sealed is resealed and it is retired, because
    /// unloading it at once would break those secrets in every cluster.
    pub fn is_loaded(self) -> bool {
        matches!(
            self,
            Self::Staged | Self::Active | Self::Retained | Self::Compromised
        )
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

impl FromStr for GenerationState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Pending,
            Self::Staged,
            Self::Active,
            Self::Retained,
            Self::Retired,
            Self::Compromised,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
        .ok_or_else(|| format!("{s:?} is not a generation state"))
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
    /// The public key's fingerprint.
    pub fingerprint: Fingerprint,
    /// Its certificate's NotBefore: the controller seals with the newest.
    pub not_before: OffsetDateTime,
    /// Its certificate's NotAfter.
    pub not_after: OffsetDateTime,
    /// Its certificate, when the store can read it: a retired generation in Key Vault is a
    /// disabled secret, whose value cannot be read until it is enabled again.
    pub certificate: Option<Certificate>,
    /// The store's own version of the generation (a Key Vault secret version), which
    /// cluster manifests pin.
    pub version: Option<String>,
    /// Why its state was last forced (`--force --reason`), when it was.
    pub reason: Option<String>,
}

impl GenerationInfo {
    /// The facts of a generation whose certificate is at hand.
    pub fn new(
        keyset: &str,
        generation: u32,
        state: GenerationState,
        created: OffsetDateTime,
        certificate: Certificate,
        version: Option<String>,
    ) -> Self {
        Self {
            keyset: keyset.to_owned(),
            generation,
            state,
            created,
            fingerprint: certificate.public_key().fingerprint(),
            not_before: certificate.not_before(),
            not_after: certificate.not_after(),
            certificate: Some(certificate),
            version,
            reason: None,
        }
    }

    /// The public key's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The certificate, or an error naming the generation when the store cannot read it.
    pub fn require_certificate(&self) -> Result<&Certificate, StoreError> {
        self.certificate
            .as_ref()
            .ok_or_else(|| StoreError::Unreadable {
                keyset: self.keyset.clone(),
                generation: self.generation,
                state: self.state,
            })
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
    /// The generation's data cannot be read in its state (a disabled Key Vault secret).
    #[error(
        "key set {keyset:?} generation {generation} is {state} and its secret is disabled, so it cannot be read; enable it again (`kvseal keys list` shows it) if it is needed"
    )]
    Unreadable {
        /// Key set.
        keyset: String,
        /// Generation.
        generation: u32,
        /// Its state.
        state: GenerationState,
    },
    /// The store is configured wrongly (bad URL, unreadable CA file, invalid name).
    #[error("{store}: {message}")]
    Config {
        /// Store description.
        store: String,
        /// What is wrong.
        message: String,
    },
    /// The remote store refused or failed.
    #[error("{0}")]
    Remote(Box<RemoteFailure>),
    /// A store URL kvseal does not understand.
    #[error("unknown store {0:?}: use dir:PATH or azure-keyvault:https://NAME.vault.azure.net/")]
    UnknownSpec(String),
}

/// A remote store's refusal or failure, with what kvseal was doing and what to do.
#[derive(Debug)]
pub struct RemoteFailure {
    /// Store description.
    pub store: String,
    /// What kvseal was doing (names the secret).
    pub doing: String,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The service's error code (`SecretNotFound`, `Forbidden`, `Throttled`, ...).
    pub code: Option<String>,
    /// The service's message.
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl fmt::Display for RemoteFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.store, self.doing)?;
        if let Some(status) = self.status {
            write!(f, "HTTP {status} ")?;
        }
        if let Some(code) = &self.code {
            write!(f, "{code} ")?;
        }
        write!(f, "({}); {}", self.message, self.hint)
    }
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
    /// Changes a generation's state, recording why when the change was forced.
    fn set_state(
        &self,
        keyset: &str,
        generation: u32,
        state: GenerationState,
        reason: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Replaces a generation's certificate with another one for the same key (promotion
    /// re-issues a staged generation's certificate with a newer NotBefore). The key never
    /// changes; the new certificate only counts once it reads back whole.
    fn replace_certificate(
        &self,
        keyset: &str,
        generation: u32,
        certificate: &Certificate,
    ) -> Result<GenerationInfo, StoreError>;
}

/// The longest `--reason` a store keeps (a Key Vault tag value holds 256 characters).
pub const MAX_REASON_LEN: usize = 256;

/// A parsed store location from configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSpec {
    /// `dir:PATH`.
    Dir(std::path::PathBuf),
    /// `azure-keyvault:URL`, with the secret name prefix.
    AzureKeyVault {
        /// The vault URL.
        url: String,
        /// Secret names are `<prefix>-<keyset>-<generation>`.
        prefix: String,
    },
}

impl FromStr for StoreSpec {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("dir", path)) if !path.is_empty() => Ok(StoreSpec::Dir(path.into())),
            Some(("azure-keyvault", url)) if url.starts_with("https://") => {
                Ok(StoreSpec::AzureKeyVault {
                    url: url.to_owned(),
                    prefix: DEFAULT_PREFIX.to_owned(),
                })
            }
            _ => Err(StoreError::UnknownSpec(s.to_owned())),
        }
    }
}

impl StoreSpec {
    /// Opens the store.
    pub fn open(&self) -> Result<Box<dyn KeyStore>, StoreError> {
        Ok(match self {
            StoreSpec::Dir(path) => Box::new(LocalDirStore::new(path.clone())),
            StoreSpec::AzureKeyVault { url, prefix } => {
                Box::new(AzureKeyVaultStore::open(url, prefix)?)
            }
        })
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
