//! Key generation for a key set. Rotation with staging and promotion builds on this.

use std::time::Duration;

use time::OffsetDateTime;

use crate::config::KeySetConfig;
use crate::keys::{Certificate, CertificateRequest, KeyError, PrivateKey};
use crate::store::{GenerationInfo, GenerationState, KeyStore, StoreError};

/// RSA modulus size of every generation kvseal makes.
pub const KEY_BITS: usize = 4096;
const MAX_NUMBER_PROBES: u32 = 100;

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
    /// No generation number is left.
    #[error("no free generation number is left in this key set")]
    Exhausted,
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
    let first_free = existing
        .iter()
        .map(|g| g.generation)
        .max()
        .unwrap_or(0)
        .checked_add(1);
    let first_free = first_free.ok_or(LifecycleError::Exhausted)?;
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let latest_start = existing.iter().map(|g| g.not_before).max();
    let not_before = match latest_start {
        Some(latest) if latest >= now => latest
            .checked_add(time::Duration::SECOND)
            .ok_or(LifecycleError::Validity(keyset.validity))?,
        _ => now,
    };
    let not_after = time::Duration::try_from(keyset.validity)
        .ok()
        .and_then(|v| not_before.checked_add(v))
        .ok_or(LifecycleError::Validity(keyset.validity))?;

    let key = PrivateKey::generate(KEY_BITS)?;
    let request = CertificateRequest::new(&keyset.common_name, not_before, not_after);
    let certificate = Certificate::self_signed(&key, &request)?;
    // A number can be taken by a concurrent run or by a crashed one that left an incomplete
    // directory behind; either way, move on to the next number instead of failing for good.
    let mut number = first_free;
    let created = loop {
        match store.create(
            &keyset.name,
            number,
            &key,
            &certificate,
            GenerationState::Active,
        ) {
            Err(StoreError::AlreadyExists { .. }) if number - first_free < MAX_NUMBER_PROBES => {
                number = number.checked_add(1).ok_or(LifecycleError::Exhausted)?;
            }
            other => break other?,
        }
    };

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
