//! Key generation for a key set. Rotation with staging and promotion builds on this.

use std::time::Duration;

use time::OffsetDateTime;

use crate::config::KeySetConfig;
use crate::keys::{Certificate, CertificateRequest, KeyError, PrivateKey};
use crate::store::{GenerationInfo, GenerationState, KeyStore, StoreError};

/// RSA modulus size of every generation kvseal makes.
pub const KEY_BITS: usize = 4096;

/// Why a generation could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// Store problem.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Key generation problem.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Certificate problem.
    #[error(transparent)]
    Certificate(#[from] crate::keys::CertificateError),
    /// The validity does not fit in a certificate date.
    #[error("a validity of {0:?} runs past the dates a certificate can hold")]
    Validity(Duration),
}

/// What [`generate`] did.
#[derive(Debug)]
pub struct Generated {
    /// The new, active generation.
    pub created: GenerationInfo,
    /// Generations that were active and are now retained.
    pub demoted: Vec<u32>,
}

/// Creates the next generation of a key set and makes it the active one. Its certificate's
/// NotBefore is strictly after every earlier generation's, so that the controller, which
/// seals with the newest NotBefore, seals with it. The previous active generation is kept,
/// retained, so that everything sealed with it still decrypts.
pub fn generate(
    store: &dyn KeyStore,
    keyset: &KeySetConfig,
    now: OffsetDateTime,
) -> Result<Generated, LifecycleError> {
    let existing = store.list(&keyset.name)?;
    let number = existing.iter().map(|g| g.generation).max().unwrap_or(0) + 1;
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let latest_start = existing.iter().map(|g| g.certificate.not_before()).max();
    let not_before = match latest_start {
        Some(latest) if latest >= now => latest + time::Duration::SECOND,
        _ => now,
    };
    let not_after = time::Duration::try_from(keyset.validity)
        .ok()
        .and_then(|v| not_before.checked_add(v))
        .ok_or(LifecycleError::Validity(keyset.validity))?;

    let key = PrivateKey::generate(KEY_BITS)?;
    let request = CertificateRequest::new(&keyset.common_name, not_before, not_after);
    let certificate = Certificate::self_signed(&key, &request)?;
    let created = store.create(
        &keyset.name,
        number,
        &key,
        &certificate,
        GenerationState::Active,
    )?;

    // Only after the new generation is stored and verified do older ones step down; a crash
    // in between leaves two active generations, and the newest NotBefore still wins.
    let mut demoted = Vec::new();
    for previous in existing
        .iter()
        .filter(|g| g.state == GenerationState::Active)
    {
        store.set_state(&keyset.name, previous.generation, GenerationState::Retained)?;
        demoted.push(previous.generation);
    }
    Ok(Generated { created, demoted })
}
