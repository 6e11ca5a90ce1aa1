//! The life of a key set's generations: generate, rotate (stage), promote, retire, mark
//! compromised, import.
//!
//! Every operation is a plan computed from the store's listing alone, then carried out one
//! store call at a time in an order where each prefix leaves a state the next run's plan
//! finishes. A crash at any point is therefore repaired by running the same command again,
//! and two runs at once end in one result (see `docs/rotation.md`).
//!
//! The controller seals with the loaded key whose certificate has the newest NotBefore.
//! A staged generation's certificate is therefore backdated just below every loaded one,
//! and promotion re-issues it, for the same key, with a NotBefore above all of them.

use std::collections::BTreeMap;
use std::time::Duration;

use time::OffsetDateTime;

use crate::config::KeySetConfig;
use crate::keys::{Certificate, CertificateRequest, Fingerprint, KeyError, PrivateKey};
use crate::store::{GenerationInfo, GenerationState, KeyStore, MAX_REASON_LEN, StoreError};

/// RSA modulus size of every generation kvseal makes.
pub const KEY_BITS: usize = 4096;
const MAX_NUMBER_PROBES: u32 = 100;

/// Why a lifecycle step could not be done. Each message says what to do next.
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
    #[error("no free generation number is left in key set {0:?}")]
    Exhausted(String),
    /// The validity does not fit in a certificate date.
    #[error("a validity of {0:?} runs past the dates a certificate can hold")]
    Validity(Duration),
    /// Nothing is loaded, so there is nothing to rotate from.
    #[error(
        "key set {0:?} has no loaded generation to rotate from; create the first one with `kvseal keys generate --keyset {0}`, or adopt a cluster's keys with `kvseal keys import`"
    )]
    NothingLoaded(String),
    /// A state change that would break clusters.
    #[error("key set {keyset:?} generation {generation}: {message}")]
    Refused {
        /// Key set.
        keyset: String,
        /// Generation.
        generation: u32,
        /// Why, and what to do instead.
        message: String,
    },
    /// SealedSecrets in the repository are still sealed with a generation.
    #[error(
        "key set {keyset:?} generation {generation} still seals {} SealedSecret file(s): {}; reseal them with `kvseal reseal` first, or pass --force --reason TEXT",
        files.len(),
        files.join(", ")
    )]
    InUse {
        /// Key set.
        keyset: String,
        /// Generation.
        generation: u32,
        /// The files, relative to the repository.
        files: Vec<String>,
    },
    /// A `--reason` that a store cannot record.
    #[error(
        "the reason is {0} characters long; a Key Vault tag holds {MAX_REASON_LEN}, so shorten it"
    )]
    ReasonTooLong(usize),
    /// An imported key has no certificate among the inputs.
    #[error(
        "no certificate for the key {0} among the files given; pass the tls.crt too (a `kubectl get secret -o yaml` backup has both)"
    )]
    MissingCertificate(Fingerprint),
}

/// Which SealedSecret files each generation seals, by (key set, generation): the
/// scanner's attribution, which retiring a generation must respect.
pub type Usage = BTreeMap<(String, u32), Vec<String>>;

fn check_reason(reason: Option<&str>) -> Result<(), LifecycleError> {
    match reason {
        Some(r) if r.chars().count() > MAX_REASON_LEN => {
            Err(LifecycleError::ReasonTooLong(r.chars().count()))
        }
        _ => Ok(()),
    }
}

fn whole_seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

fn not_after(
    keyset: &KeySetConfig,
    from: OffsetDateTime,
) -> Result<OffsetDateTime, LifecycleError> {
    time::Duration::try_from(keyset.validity)
        .ok()
        .and_then(|v| from.checked_add(v))
        .ok_or(LifecycleError::Validity(keyset.validity))
}

fn next_number(keyset: &str, generations: &[GenerationInfo]) -> Result<u32, LifecycleError> {
    generations
        .iter()
        .map(|g| g.generation)
        .max()
        .unwrap_or(0)
        .checked_add(1)
        .ok_or_else(|| LifecycleError::Exhausted(keyset.to_owned()))
}

/// The newest NotBefore among loaded generations, optionally leaving one out.
fn newest_loaded_start(
    generations: &[GenerationInfo],
    except: Option<u32>,
) -> Option<OffsetDateTime> {
    generations
        .iter()
        .filter(|g| g.state.is_loaded() && Some(g.generation) != except)
        .map(|g| g.not_before)
        .max()
}

/// The generation the controller seals with: of the active ones (normally exactly one),
/// the newest NotBefore.
pub fn sealing_generation(generations: &[GenerationInfo]) -> Option<&GenerationInfo> {
    generations
        .iter()
        .filter(|g| g.state == GenerationState::Active)
        .max_by_key(|g| (g.not_before, g.generation))
}

/// Stores a new generation under the first free number from `first`, moving on when a
/// number is taken by a leftover of a crashed run that the listing does not show.
fn create_numbered(
    store: &dyn KeyStore,
    keyset: &str,
    first: u32,
    key: &PrivateKey,
    certificate: &Certificate,
    state: GenerationState,
    taken_is_final: bool,
) -> Result<Result<GenerationInfo, u32>, LifecycleError> {
    let mut number = first;
    loop {
        match store.create(keyset, number, key, certificate, state) {
            Ok(info) => return Ok(Ok(info)),
            Err(StoreError::AlreadyExists { .. }) if taken_is_final => return Ok(Err(number)),
            Err(StoreError::AlreadyExists { .. }) if number - first < MAX_NUMBER_PROBES => {
                number = number
                    .checked_add(1)
                    .ok_or_else(|| LifecycleError::Exhausted(keyset.to_owned()))?;
            }
            Err(other) => return Err(other.into()),
        }
    }
}

/// What [`generate`] did.
#[derive(Debug)]
pub struct Generated {
    /// The new, active generation.
    pub created: GenerationInfo,
    /// Generations that were active and are now retained.
    pub demoted: Vec<u32>,
}

/// Creates the next generation of a key set and makes it active at once, for a key set's
/// first generation and for fleets that do not stage. Its NotBefore is strictly after every
/// earlier generation's, so that the controller seals with it; the previous active
/// generation is retained, so that everything sealed with it still decrypts.
pub fn generate(
    store: &dyn KeyStore,
    keyset: &KeySetConfig,
    now: OffsetDateTime,
) -> Result<Generated, LifecycleError> {
    let existing = store.list(&keyset.name)?;
    let first_free = next_number(&keyset.name, &existing)?;
    let now = whole_seconds(now);
    let latest_start = existing.iter().map(|g| g.not_before).max();
    let not_before = match latest_start {
        Some(latest) if latest >= now => latest
            .checked_add(time::Duration::SECOND)
            .ok_or(LifecycleError::Validity(keyset.validity))?,
        _ => now,
    };
    let key = PrivateKey::generate(KEY_BITS)?;
    let request = CertificateRequest::new(
        &keyset.common_name,
        not_before,
        not_after(keyset, not_before)?,
    );
    let certificate = Certificate::self_signed(&key, &request)?;
    let created = create_numbered(
        store,
        &keyset.name,
        first_free,
        &key,
        &certificate,
        GenerationState::Active,
        false,
    )?
    .map_err(|_| LifecycleError::Exhausted(keyset.name.clone()))?;

    // Only after the new generation is stored and verified do older ones step down; a crash
    // in between leaves two active generations, and the newest NotBefore still wins.
    let mut demoted = Vec::new();
    for previous in existing
        .iter()
        .filter(|g| g.state == GenerationState::Active)
    {
        store.set_state(
            &keyset.name,
            previous.generation,
            GenerationState::Retained,
            None,
        )?;
        demoted.push(previous.generation);
    }
    Ok(Generated { created, demoted })
}

/// What a rotation will do (or did) to one key set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RotationStep {
    /// A generation is staged already; promote it before rotating again.
    AlreadyStaged {
        /// The staged generation.
        generation: u32,
    },
    /// The active generation is younger than `--if-older-than`.
    NotDue {
        /// The active generation.
        generation: u32,
        /// Its age, in whole days.
        age_days: i64,
    },
    /// A run that crashed left this generation pending: verify it and stage it.
    FinishPending {
        /// The pending generation.
        generation: u32,
    },
    /// Make a new key and stage it under this number.
    StageNew {
        /// The number it will get (unless a concurrent run takes it).
        generation: u32,
        /// Its certificate's NotBefore: just below every loaded generation's.
        not_before: OffsetDateTime,
    },
}

/// Plans a rotation from a key set's listing: pure, no I/O.
pub fn plan_rotation(
    keyset: &str,
    generations: &[GenerationInfo],
    if_older_than: Option<Duration>,
    now: OffsetDateTime,
) -> Result<RotationStep, LifecycleError> {
    if let Some(staged) = generations
        .iter()
        .rev()
        .find(|g| g.state == GenerationState::Staged)
    {
        return Ok(RotationStep::AlreadyStaged {
            generation: staged.generation,
        });
    }
    if let Some(pending) = generations
        .iter()
        .rev()
        .find(|g| g.state == GenerationState::Pending)
    {
        return Ok(RotationStep::FinishPending {
            generation: pending.generation,
        });
    }
    let newest_start = newest_loaded_start(generations, None)
        .ok_or_else(|| LifecycleError::NothingLoaded(keyset.to_owned()))?;
    if let (Some(threshold), Some(active)) = (if_older_than, sealing_generation(generations)) {
        let age = now - active.not_before;
        if time::Duration::try_from(threshold).is_ok_and(|t| age < t) {
            return Ok(RotationStep::NotDue {
                generation: active.generation,
                age_days: age.whole_days(),
            });
        }
    }
    let not_before = whole_seconds(newest_start)
        .checked_sub(time::Duration::SECOND)
        .ok_or_else(|| LifecycleError::Exhausted(keyset.to_owned()))?;
    Ok(RotationStep::StageNew {
        generation: next_number(keyset, generations)?,
        not_before,
    })
}

/// What [`rotate`] did.
#[derive(Debug)]
pub struct Rotated {
    /// The step carried out (after any re-planning because of a concurrent run).
    pub step: RotationStep,
    /// The staged generation, when there is one now.
    pub staged: Option<GenerationInfo>,
    /// Leftovers of crashed runs that did not verify and were passed over.
    pub damaged: Vec<(u32, String)>,
}

/// Stages a new generation, unless one is staged already or the active one is younger
/// than `if_older_than`. Safe to run again after a crash at any point, and at the same
/// time as another rotation: both end with the same single staged generation.
pub fn rotate(
    store: &dyn KeyStore,
    keyset: &KeySetConfig,
    if_older_than: Option<Duration>,
    now: OffsetDateTime,
) -> Result<Rotated, LifecycleError> {
    rotate_with(store, keyset, if_older_than, now, &mut || {
        PrivateKey::generate(KEY_BITS)
    })
}

/// [`rotate`], taking the new key from `new_key` (called at most once, and only when a
/// generation is created), so that callers and tests choose where keys come from.
pub fn rotate_with(
    store: &dyn KeyStore,
    keyset: &KeySetConfig,
    if_older_than: Option<Duration>,
    now: OffsetDateTime,
    new_key: &mut dyn FnMut() -> Result<PrivateKey, KeyError>,
) -> Result<Rotated, LifecycleError> {
    let now = whole_seconds(now);
    let mut key: Option<PrivateKey> = None;
    let mut damaged: Vec<(u32, String)> = Vec::new();
    for _ in 0..MAX_NUMBER_PROBES {
        let generations = store.list(&keyset.name)?;
        let mut step = plan_rotation(&keyset.name, &generations, if_older_than, now)?;
        // A damaged leftover is passed over, not repaired: its number stays taken.
        if let RotationStep::FinishPending { generation } = step
            && damaged.iter().any(|(g, _)| *g == generation)
        {
            let rest: Vec<GenerationInfo> = generations
                .iter()
                .filter(|g| !damaged.iter().any(|(d, _)| *d == g.generation))
                .cloned()
                .collect();
            step = match plan_rotation(&keyset.name, &rest, if_older_than, now)? {
                RotationStep::StageNew { not_before, .. } => RotationStep::StageNew {
                    generation: next_number(&keyset.name, &generations)?,
                    not_before,
                },
                other => other,
            };
        }
        // Numbers taken by leftovers the listing cannot show are skipped, not retried.
        if let RotationStep::StageNew { generation, .. } = &mut step
            && let Some(highest) = damaged.iter().map(|(g, _)| *g).max()
            && highest >= *generation
        {
            *generation = highest
                .checked_add(1)
                .ok_or_else(|| LifecycleError::Exhausted(keyset.name.clone()))?;
        }
        match step {
            RotationStep::AlreadyStaged { generation } => {
                let staged = generations.into_iter().find(|g| g.generation == generation);
                return Ok(Rotated {
                    step,
                    staged,
                    damaged,
                });
            }
            RotationStep::NotDue { .. } => {
                return Ok(Rotated {
                    step,
                    staged: None,
                    damaged,
                });
            }
            RotationStep::FinishPending { generation } => {
                match store.load(&keyset.name, generation) {
                    Ok(loaded) => {
                        store.set_state(&keyset.name, generation, GenerationState::Staged, None)?;
                        let mut staged = loaded.info;
                        staged.state = GenerationState::Staged;
                        return Ok(Rotated {
                            step,
                            staged: Some(staged),
                            damaged,
                        });
                    }
                    Err(e @ (StoreError::Corrupt { .. } | StoreError::NotFound { .. })) => {
                        damaged.push((generation, e.to_string()));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            RotationStep::StageNew {
                generation,
                not_before,
            } => {
                let key = match &key {
                    Some(key) => key,
                    None => key.insert(new_key()?),
                };
                let request = CertificateRequest::new(
                    &keyset.common_name,
                    not_before,
                    not_after(keyset, now)?,
                );
                let certificate = Certificate::self_signed(key, &request)?;
                match create_numbered(
                    store,
                    &keyset.name,
                    generation,
                    key,
                    &certificate,
                    GenerationState::Staged,
                    true,
                )? {
                    Ok(staged) => {
                        return Ok(Rotated {
                            step,
                            staged: Some(staged),
                            damaged,
                        });
                    }
                    // Taken: by a concurrent rotation (the next listing shows it staged or
                    // pending, and this run finishes that one instead) or by a leftover the
                    // listing cannot show (then the next number is tried).
                    Err(taken) => {
                        let listed = store.list(&keyset.name)?;
                        if !listed.iter().any(|g| g.generation == taken) {
                            damaged.push((
                                taken,
                                "an incomplete leftover that the store does not list".into(),
                            ));
                        }
                    }
                }
            }
        }
    }
    Err(LifecycleError::Exhausted(keyset.name.clone()))
}

/// What a promotion will do (or did) to one key set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PromotionPlan {
    /// The staged generation that becomes active, if one is staged.
    pub promote: Option<u32>,
    /// Whether its certificate must be re-issued with a NotBefore above every loaded one.
    pub reissue: bool,
    /// Active generations that become retained.
    pub demote: Vec<u32>,
    /// Retained generations beyond `retain` that will be retired.
    pub retire: Vec<u32>,
    /// Retained generations beyond `retain` that stay loaded because SealedSecrets in the
    /// repository are still sealed with them.
    pub kept_in_use: Vec<(u32, Vec<String>)>,
}

impl PromotionPlan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.promote.is_none() && self.demote.is_empty() && self.retire.is_empty()
    }
}

/// Plans a promotion from a key set's listing: pure, no I/O.
pub fn plan_promotion(
    keyset: &KeySetConfig,
    generations: &[GenerationInfo],
    usage: &Usage,
) -> PromotionPlan {
    let staged = generations
        .iter()
        .rev()
        .find(|g| g.state == GenerationState::Staged);
    let new_active = staged.or_else(|| sealing_generation(generations));
    let Some(new_active) = new_active else {
        return PromotionPlan::default();
    };
    let reissue = staged.is_some_and(|s| {
        newest_loaded_start(generations, Some(s.generation)).is_some_and(|n| s.not_before <= n)
    });
    let demote: Vec<u32> = generations
        .iter()
        .filter(|g| g.state == GenerationState::Active && g.generation != new_active.generation)
        .map(|g| g.generation)
        .collect();
    // After the promotion the loaded generations that count towards `retain` are the new
    // active one and every retained one (demoted included); compromised ones stay loaded
    // until they are resealed away and retired by hand.
    let mut kept: Vec<&GenerationInfo> = generations
        .iter()
        .filter(|g| {
            g.generation != new_active.generation
                && matches!(g.state, GenerationState::Active | GenerationState::Retained)
        })
        .collect();
    kept.sort_by_key(|g| std::cmp::Reverse((g.not_before, g.generation)));
    let mut plan = PromotionPlan {
        promote: staged.map(|s| s.generation),
        reissue,
        demote,
        ..Default::default()
    };
    let retained_slots = keyset.retain.saturating_sub(1) as usize;
    for old in kept.into_iter().skip(retained_slots) {
        match usage.get(&(keyset.name.clone(), old.generation)) {
            Some(files) if !files.is_empty() => {
                plan.kept_in_use.push((old.generation, files.clone()));
            }
            _ => plan.retire.push(old.generation),
        }
    }
    plan.retire.sort_unstable();
    plan
}

/// Promotes the staged generation: its certificate is re-issued so that it seals, it
/// becomes active, the previous active generation is retained, and retained generations
/// beyond `retain` that nothing in the repository still uses are retired. The caller
/// checks first that every cluster has loaded the staged generation (or was forced, with
/// `reason`, which is recorded on the promoted generation).
pub fn promote(
    store: &dyn KeyStore,
    keyset: &KeySetConfig,
    usage: &Usage,
    reason: Option<&str>,
    now: OffsetDateTime,
) -> Result<PromotionPlan, LifecycleError> {
    check_reason(reason)?;
    let generations = store.list(&keyset.name)?;
    let plan = plan_promotion(keyset, &generations, usage);
    if let Some(number) = plan.promote {
        if plan.reissue {
            let staged = store.load(&keyset.name, number)?;
            let newest_other = newest_loaded_start(&generations, Some(number)).unwrap_or(now);
            let not_before = whole_seconds(now).max(
                whole_seconds(newest_other)
                    .checked_add(time::Duration::SECOND)
                    .ok_or_else(|| LifecycleError::Exhausted(keyset.name.clone()))?,
            );
            let valid_until = staged.info.not_after.max(not_after(keyset, not_before)?);
            let request = CertificateRequest::new(&keyset.common_name, not_before, valid_until);
            let certificate = Certificate::self_signed(&staged.private_key, &request)?;
            store.replace_certificate(&keyset.name, number, &certificate)?;
        }
        store.set_state(&keyset.name, number, GenerationState::Active, reason)?;
    }
    for &number in &plan.demote {
        store.set_state(&keyset.name, number, GenerationState::Retained, None)?;
    }
    for &number in &plan.retire {
        store.set_state(&keyset.name, number, GenerationState::Retired, None)?;
    }
    Ok(plan)
}

/// One generation as the store lists it (a disabled one included, which `load` cannot
/// read), or [`StoreError::NotFound`].
pub fn find_generation(
    store: &dyn KeyStore,
    keyset: &str,
    generation: u32,
) -> Result<GenerationInfo, StoreError> {
    store
        .list(keyset)?
        .into_iter()
        .find(|g| g.generation == generation)
        .ok_or_else(|| StoreError::NotFound {
            store: store.describe(),
            keyset: keyset.to_owned(),
            generation,
        })
}

/// Why a generation cannot be retired whatever the repository holds: it seals, or is
/// about to.
pub fn retire_refusal(info: &GenerationInfo) -> Option<LifecycleError> {
    let message = match info.state {
        GenerationState::Active => {
            "it is the active generation, which seals; stage and promote a new one first (`kvseal keys rotate`, then `kvseal keys promote`)"
        }
        GenerationState::Staged => {
            "it is staged; promote it, or mark it compromised (`kvseal keys compromised`) if it must not be used"
        }
        _ => return None,
    };
    Some(LifecycleError::Refused {
        keyset: info.keyset.clone(),
        generation: info.generation,
        message: message.to_owned(),
    })
}

/// Retires a generation: clusters stop loading it, and the store keeps it (disabled) for
/// recovery. Refused for the active or staged generation, and while SealedSecrets in the
/// repository are sealed with it, unless forced with a reason, which is recorded.
pub fn retire(
    store: &dyn KeyStore,
    keyset: &str,
    generation: u32,
    usage: &Usage,
    force_reason: Option<&str>,
) -> Result<GenerationInfo, LifecycleError> {
    check_reason(force_reason)?;
    let info = find_generation(store, keyset, generation)?;
    if let Some(refusal) = retire_refusal(&info) {
        return Err(refusal);
    }
    if info.state == GenerationState::Retired {
        return Ok(info);
    }
    if force_reason.is_none()
        && let Some(files) = usage.get(&(keyset.to_owned(), generation))
        && !files.is_empty()
    {
        return Err(LifecycleError::InUse {
            keyset: keyset.to_owned(),
            generation,
            files: files.clone(),
        });
    }
    store.set_state(keyset, generation, GenerationState::Retired, force_reason)?;
    let mut info = info;
    info.state = GenerationState::Retired;
    Ok(info)
}

/// What [`mark_compromised`] did.
#[derive(Debug)]
pub struct Compromised {
    /// The replacement, staged (promote it once every cluster has loaded it).
    pub replacement: Rotated,
    /// SealedSecret files sealed with the compromised generation: reseal them once the
    /// replacement is promoted.
    pub to_reseal: Vec<String>,
}

/// Marks a generation compromised and stages a replacement at once. The compromised
/// generation stays loaded so that what it sealed keeps decrypting until it is resealed;
/// the scanner reports each such file as `compromised-key`.
pub fn mark_compromised(
    store: &dyn KeyStore,
    keyset: &KeySetConfig,
    generation: u32,
    usage: &Usage,
    reason: Option<&str>,
    now: OffsetDateTime,
) -> Result<Compromised, LifecycleError> {
    check_reason(reason)?;
    let info = find_generation(store, &keyset.name, generation)?;
    if info.state == GenerationState::Retired {
        return Err(LifecycleError::Refused {
            keyset: keyset.name.clone(),
            generation,
            message: "it is retired, so no cluster loads it; nothing needs replacing".into(),
        });
    }
    if info.state != GenerationState::Compromised {
        store.set_state(
            &keyset.name,
            generation,
            GenerationState::Compromised,
            reason,
        )?;
    }
    let replacement = rotate(store, keyset, None, now)?;
    Ok(Compromised {
        replacement,
        to_reseal: usage
            .get(&(keyset.name.clone(), generation))
            .cloned()
            .unwrap_or_default(),
    })
}

/// What [`import`] did with one key.
#[derive(Debug)]
pub enum Imported {
    /// Stored as a new generation.
    Added(Box<GenerationInfo>),
    /// The store already has this key.
    Present {
        /// Its generation.
        generation: u32,
        /// Its fingerprint.
        fingerprint: Fingerprint,
    },
}

/// Pairs private keys with their certificates, by public key.
pub fn pair_keys(
    keys: Vec<PrivateKey>,
    certificates: &[Certificate],
) -> Result<Vec<(PrivateKey, Certificate)>, LifecycleError> {
    let mut pairs = Vec::new();
    for key in keys {
        let fingerprint = key.fingerprint();
        let certificate = certificates
            .iter()
            .filter(|c| c.public_key().fingerprint() == fingerprint)
            .max_by_key(|c| c.not_before())
            .ok_or(LifecycleError::MissingCertificate(fingerprint))?;
        if !pairs
            .iter()
            .any(|(k, _): &(PrivateKey, Certificate)| k.fingerprint() == fingerprint)
        {
            pairs.push((key, certificate.clone()));
        }
    }
    Ok(pairs)
}

/// Adopts keys a controller minted by itself. They get generation numbers in NotBefore
/// order, all stay loaded, and the one with the newest NotBefore among the loaded
/// generations is active, exactly as the controller already seals with it, so that every
/// SealedSecret keeps decrypting. Keys the store already has are left alone.
pub fn import(
    store: &dyn KeyStore,
    keyset: &KeySetConfig,
    mut pairs: Vec<(PrivateKey, Certificate)>,
) -> Result<Vec<Imported>, LifecycleError> {
    pairs.sort_by_key(|(_, c)| c.not_before());
    let mut outcome = Vec::new();
    for (key, certificate) in &pairs {
        let existing = store.list(&keyset.name)?;
        let fingerprint = key.fingerprint();
        if let Some(present) = existing.iter().find(|g| g.fingerprint == fingerprint) {
            if present.state == GenerationState::Pending {
                store.load(&keyset.name, present.generation)?;
                store.set_state(
                    &keyset.name,
                    present.generation,
                    GenerationState::Retained,
                    None,
                )?;
            }
            outcome.push(Imported::Present {
                generation: present.generation,
                fingerprint,
            });
            continue;
        }
        let first = next_number(&keyset.name, &existing)?;
        let info = create_numbered(
            store,
            &keyset.name,
            first,
            key,
            certificate,
            GenerationState::Retained,
            false,
        )?
        .map_err(|_| LifecycleError::Exhausted(keyset.name.clone()))?;
        outcome.push(Imported::Added(Box::new(info)));
    }
    // The controller seals with the newest NotBefore; the store must say the same.
    let generations = store.list(&keyset.name)?;
    let sealing = generations
        .iter()
        .filter(|g| matches!(g.state, GenerationState::Active | GenerationState::Retained))
        .max_by_key(|g| (g.not_before, g.generation));
    if let Some(sealing) = sealing {
        if sealing.state != GenerationState::Active {
            store.set_state(
                &keyset.name,
                sealing.generation,
                GenerationState::Active,
                None,
            )?;
        }
        for other in generations
            .iter()
            .filter(|g| g.state == GenerationState::Active && g.generation != sealing.generation)
        {
            store.set_state(
                &keyset.name,
                other.generation,
                GenerationState::Retained,
                None,
            )?;
        }
    }
    Ok(outcome)
}
