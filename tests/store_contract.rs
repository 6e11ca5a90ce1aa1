//! One contract for every key store, run unchanged against the local directory store and
//! against Azure Key Vault (the real SDK, over HTTPS, against the emulator in
//! `tests/keyvault`).

mod keyvault;
mod loopback;

use kvseal::keys::{Certificate, CertificateRequest, PrivateKey};
use kvseal::store::{GenerationState, KeyStore, LocalDirStore, StoreError};
use time::OffsetDateTime;

fn generation(days_ago: i64) -> (PrivateKey, Certificate) {
    let key = PrivateKey::generate(2048).unwrap();
    let start =
        OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - time::Duration::days(days_ago);
    let cert = Certificate::self_signed(
        &key,
        &CertificateRequest::new("sealed-secret", start, start + time::Duration::days(3650)),
    )
    .unwrap();
    (key, cert)
}

fn states(store: &dyn KeyStore, keyset: &str) -> Vec<(u32, GenerationState)> {
    store
        .list(keyset)
        .unwrap()
        .into_iter()
        .map(|g| (g.generation, g.state))
        .collect()
}

/// What every store must do.
fn contract(store: &dyn KeyStore) {
    assert!(store.keysets().unwrap().is_empty());
    assert!(store.list("prod").unwrap().is_empty());
    assert!(matches!(
        store.load("prod", 1),
        Err(StoreError::NotFound { generation: 1, .. })
    ));

    let (key1, cert1) = generation(30);
    let info = store
        .create("prod", 1, &key1, &cert1, GenerationState::Active)
        .unwrap();
    assert_eq!(info.fingerprint(), key1.fingerprint());
    assert_eq!(info.state, GenerationState::Active);
    assert_eq!(info.not_before, cert1.not_before());

    // A generation is never overwritten.
    let (other, other_cert) = generation(0);
    assert!(matches!(
        store.create("prod", 1, &other, &other_cert, GenerationState::Active),
        Err(StoreError::AlreadyExists { generation: 1, .. })
    ));
    let loaded = store.load("prod", 1).unwrap();
    assert_eq!(loaded.private_key.fingerprint(), key1.fingerprint());
    assert_eq!(
        loaded.info.certificate.as_ref().unwrap().to_pem(),
        cert1.to_pem()
    );

    let (key2, cert2) = generation(0);
    store
        .create("prod", 2, &key2, &cert2, GenerationState::Staged)
        .unwrap();
    assert_eq!(
        states(store, "prod"),
        vec![(1, GenerationState::Active), (2, GenerationState::Staged)]
    );
    store
        .set_state("prod", 2, GenerationState::Active, None)
        .unwrap();
    store
        .set_state("prod", 1, GenerationState::Retained, None)
        .unwrap();
    assert_eq!(
        states(store, "prod"),
        vec![(1, GenerationState::Retained), (2, GenerationState::Active)]
    );

    // Retiring keeps the generation: listed, with its fingerprint, and restorable. A
    // forced change keeps its reason.
    store
        .set_state("prod", 1, GenerationState::Retired, Some("audit ticket 42"))
        .unwrap();
    let listed = store.list("prod").unwrap();
    assert_eq!(listed[0].state, GenerationState::Retired);
    assert_eq!(listed[0].fingerprint(), key1.fingerprint());
    assert_eq!(listed[0].reason.as_deref(), Some("audit ticket 42"));
    store
        .set_state("prod", 1, GenerationState::Retained, None)
        .unwrap();
    assert_eq!(
        store.load("prod", 1).unwrap().private_key.fingerprint(),
        key1.fingerprint()
    );

    // Promotion re-issues a certificate for the same key; the key never changes, and a
    // certificate for another key is refused.
    let start = cert2.not_before() + time::Duration::hours(1);
    let reissued = Certificate::self_signed(
        &key2,
        &CertificateRequest::new("sealed-secret", start, cert2.not_after()),
    )
    .unwrap();
    let info = store.replace_certificate("prod", 2, &reissued).unwrap();
    assert_eq!(info.not_before, start);
    assert_eq!(info.state, GenerationState::Active);
    let loaded = store.load("prod", 2).unwrap();
    assert_eq!(loaded.private_key.fingerprint(), key2.fingerprint());
    assert_eq!(loaded.info.certificate.as_ref(), Some(&reissued));
    assert_eq!(store.list("prod").unwrap()[1].not_before, start);
    assert!(matches!(
        store.replace_certificate("prod", 2, &other_cert),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(store.load("prod", 2).unwrap().info.not_before, start);

    let (key3, cert3) = generation(0);
    store
        .create("stage", 1, &key3, &cert3, GenerationState::Active)
        .unwrap();
    assert_eq!(store.keysets().unwrap(), vec!["prod", "stage"]);
    assert!(matches!(
        store.set_state("stage", 9, GenerationState::Retired, None),
        Err(StoreError::NotFound { generation: 9, .. })
    ));
}

#[test]
fn the_local_directory_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&LocalDirStore::new(dir.path().join("store")));
}

#[test]
fn the_azure_key_vault_store_keeps_the_contract() {
    let vault = keyvault::Vault::start();
    let store = vault.store();
    contract(&store);
    // Retiring disables the secret; nothing is ever deleted.
    store
        .set_state("prod", 1, GenerationState::Retired, None)
        .unwrap();
    let dump = vault.dump();
    let names: std::collections::BTreeSet<&String> = dump.iter().map(|(name, ..)| name).collect();
    assert_eq!(names.len(), 3, "one secret per generation: {dump:?}");
    let prod2: Vec<_> = dump
        .iter()
        .filter(|(name, ..)| name == "kvseal-prod-2")
        .collect();
    assert_eq!(
        prod2.len(),
        2,
        "a re-issued certificate is a second version: {dump:?}"
    );
    assert!(
        prod2.iter().all(|v| v.2),
        "the replaced version stays enabled, since manifests may pin it"
    );
    let retired = dump
        .iter()
        .find(|(name, ..)| name == "kvseal-prod-1")
        .unwrap();
    assert!(!retired.2, "a retired generation's secret is disabled");
    assert_eq!(retired.3["kvseal-state"], "retired");
    assert!(matches!(
        store.load("prod", 1),
        Err(StoreError::Unreadable { generation: 1, .. })
    ));
}

#[test]
fn key_vault_throttling_and_failures_are_retried_or_named() {
    let vault = keyvault::Vault::start();
    let store = vault.store();
    vault.fail_request(1, keyvault::Fault::Throttle(1));
    vault.fail_request(2, keyvault::Fault::ServerError);
    assert!(
        store.keysets().unwrap().is_empty(),
        "retried past a 429 and a 500"
    );

    vault.fail_from(1, keyvault::Fault::ServerError);
    let (key, cert) = generation(0);
    let error = store
        .create("prod", 1, &key, &cert, GenerationState::Active)
        .unwrap_err()
        .to_string();
    assert!(error.contains("kvseal-prod-1"), "{error}");
    assert!(error.contains("500"), "{error}");
    assert!(error.contains("run it again later"), "{error}");
    vault.heal();
    assert!(
        store.list("prod").unwrap().is_empty(),
        "nothing half-written counts"
    );
}

/// The real service lists tags; a vault (or emulator) whose lists leave them out costs
/// kvseal a read per version, not correctness.
#[test]
fn a_vault_that_lists_without_tags_keeps_the_contract() {
    let vault = keyvault::Vault::start();
    vault.leave_tags_out_of_lists();
    let store = vault.store();
    // `keysets()` reads names from tags, which such a listing cannot give; everything
    // addressed by key set works.
    let (key, cert) = generation(3);
    store
        .create("prod", 1, &key, &cert, GenerationState::Active)
        .unwrap();
    let (key2, cert2) = generation(0);
    store
        .create("prod", 2, &key2, &cert2, GenerationState::Staged)
        .unwrap();
    assert_eq!(
        states(&store, "prod"),
        vec![(1, GenerationState::Active), (2, GenerationState::Staged)]
    );
    store
        .set_state("prod", 1, GenerationState::Retained, None)
        .unwrap();
    assert!(matches!(
        store.create("prod", 2, &key, &cert, GenerationState::Active),
        Err(StoreError::AlreadyExists { generation: 2, .. })
    ));
    assert_eq!(
        store.load("prod", 2).unwrap().private_key.fingerprint(),
        key2.fingerprint()
    );
    assert_eq!(
        states(&store, "prod"),
        vec![(1, GenerationState::Retained), (2, GenerationState::Staged)]
    );
}
