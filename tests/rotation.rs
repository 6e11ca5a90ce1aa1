//! Rotation and promotion against the Key Vault emulator: a crash at every request, two
//! rotations at once, what seals while a generation is staged, and throttling storms.

mod common;
mod keyvault;
mod loopback;

use std::path::Path;
use std::time::{Duration, Instant};

use kvseal::config::Config;
use kvseal::keys::{Certificate, KeyError, PrivateKey};
use kvseal::lifecycle::{self, Usage};
use kvseal::store::{GenerationState, KeyStore, RetryLimits};
use time::OffsetDateTime;

const PLAINTEXT: &[u8] = b"s3cr3t sealed before the rotation";
const LABEL: &[u8] = b"payments/payments-db";

fn config(dir: &Path, url: &str) -> Config {
    let text = format!(
        r#"
cert_dir = "certs"

[store]
url = "azure-keyvault:{url}"

[keysets.prod]
retain = 2

[clusters.prod-eu]
keyset = "prod"
client_id = "00000000-0000-0000-0000-0000000000e1"

[clusters.prod-us]
keyset = "prod"
client_id = "00000000-0000-0000-0000-0000000000e2"

[manifests]
tenant_id = "00000000-0000-0000-0000-00000000000a"
keyvault_name = "kv-fleet"
"#
    );
    Config::parse(&text, &dir.join("kvseal.toml"), dir).unwrap()
}

/// Keys made once per test process: RSA key generation is the slow part, and the
/// properties under test do not depend on which keys they are.
fn key(index: usize) -> PrivateKey {
    static KEYS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let pems = KEYS.get_or_init(|| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    PrivateKey::generate(2048)
                        .unwrap()
                        .to_pkcs8_pem()
                        .expose()
                        .to_owned()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    PrivateKey::from_pem(pems[index].as_bytes()).unwrap()
}

fn certificate(key: &PrivateKey, days_ago: i64) -> Certificate {
    common::certificate_since(key, days_ago)
}

/// Two generations, retained and active, each with a value sealed for it by an
/// independent implementation.
struct Seeded {
    sealed: Vec<(kvseal::keys::Fingerprint, Vec<u8>)>,
}

fn seed(store: &dyn KeyStore) -> Seeded {
    let mut sealed = Vec::new();
    for (number, state, days_ago) in [
        (1, GenerationState::Retained, 120),
        (2, GenerationState::Active, 30),
    ] {
        let key = key(number as usize - 1);
        let cert = certificate(&key, days_ago);
        store.create("prod", number, &key, &cert, state).unwrap();
        let public = common::oracle_public_key(key.public_key().spki_der());
        sealed.push((
            key.fingerprint(),
            common::oracle_seal(&public, PLAINTEXT, LABEL),
        ));
    }
    Seeded { sealed }
}

fn staged_key() -> Result<PrivateKey, KeyError> {
    Ok(key(2))
}

fn rotate(store: &dyn KeyStore, config: &Config) -> Result<lifecycle::Rotated, String> {
    lifecycle::rotate_with(
        store,
        config.keyset("prod").unwrap(),
        None,
        OffsetDateTime::now_utc(),
        &mut staged_key,
    )
    .map_err(|e| e.to_string())
}

/// The repository the seeded values stand for: one file sealed with each generation.
fn usage() -> Usage {
    Usage::from([
        (
            ("prod".to_owned(), 1),
            vec!["apps/a/sealed.yaml".to_owned()],
        ),
        (
            ("prod".to_owned(), 2),
            vec!["apps/b/sealed.yaml".to_owned()],
        ),
    ])
}

fn promote(store: &dyn KeyStore, config: &Config) -> Result<lifecycle::PromotionPlan, String> {
    lifecycle::promote(
        store,
        config.keyset("prod").unwrap(),
        &usage(),
        Some("test"),
        OffsetDateTime::now_utc(),
    )
    .map_err(|e| e.to_string())
}

/// What must hold after any run that completed: one active generation, at most one
/// staged, nothing lost, everything parses, and everything sealed before still opens.
fn check_invariants(store: &dyn KeyStore, seeded: &Seeded, context: &str) {
    let listed = store.list("prod").unwrap();
    let count = |state| listed.iter().filter(|g| g.state == state).count();
    assert_eq!(
        count(GenerationState::Active),
        1,
        "{context}: exactly one active: {listed:?}"
    );
    assert!(
        count(GenerationState::Staged) <= 1,
        "{context}: at most one staged: {listed:?}"
    );
    for (fingerprint, value) in &seeded.sealed {
        let generation = listed
            .iter()
            .find(|g| g.fingerprint == *fingerprint)
            .unwrap_or_else(|| panic!("{context}: generation {fingerprint} was lost"));
        assert!(
            generation.state.is_loaded(),
            "{context}: {fingerprint} is no longer loaded"
        );
        let loaded = store.load("prod", generation.generation).unwrap();
        let opened = kvseal::format::open(&loaded.private_key, value, LABEL)
            .unwrap_or_else(|e| panic!("{context}: a value sealed before no longer opens: {e}"));
        assert_eq!(opened.expose(), PLAINTEXT);
    }
    for generation in &listed {
        if generation.state != GenerationState::Retired {
            store
                .load("prod", generation.generation)
                .unwrap_or_else(|e| panic!("{context}: generation does not parse: {e}"));
        }
    }
}

/// A vault seeded with two generations, a store on it that gives up at once (no retries),
/// and the configuration.
fn fresh(
    dir: &Path,
) -> (
    keyvault::Vault,
    kvseal::store::AzureKeyVaultStore,
    Seeded,
    Config,
) {
    let vault = keyvault::Vault::start();
    let store = vault.store_with(RetryLimits {
        max_retries: 0,
        ..keyvault::quick_retry()
    });
    let seeded = seed(&store);
    let config = config(dir, &vault.url);
    (vault, store, seeded, config)
}

#[test]
fn a_rotation_cut_short_at_any_request_is_finished_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    // How many requests a whole rotation makes.
    let (vault, store, _, config) = fresh(dir.path());
    let before = vault.requests();
    rotate(&store, &config).unwrap();
    let total = vault.requests() - before;
    assert!(total > 3, "a rotation makes {total} requests");
    eprintln!("a rotation of a key set with 2 generations makes {total} Key Vault requests");

    for k in 1..=total {
        let (vault, store, seeded, config) = fresh(dir.path());
        let fault = if k % 2 == 0 {
            keyvault::Fault::Drop
        } else {
            keyvault::Fault::ServerError
        };
        vault.fail_from(k, fault);
        let cut = rotate(&store, &config);
        assert!(cut.is_err(), "request {k} of {total} failed, yet: {cut:?}");
        vault.heal();
        let context = format!("rotation cut at request {k} of {total}");
        let rerun = rotate(&store, &config).unwrap_or_else(|e| panic!("{context}: re-run: {e}"));
        check_invariants(&store, &seeded, &context);
        let listed = store.list("prod").unwrap();
        let staged: Vec<_> = listed
            .iter()
            .filter(|g| g.state == GenerationState::Staged)
            .collect();
        assert_eq!(staged.len(), 1, "{context}: {listed:?}");
        assert_eq!(
            rerun.staged.as_ref().map(|g| g.generation),
            Some(staged[0].generation)
        );
        assert_eq!(
            lifecycle::sealing_generation(&listed).map(|g| g.generation),
            Some(2),
            "{context}: the active generation still seals"
        );
        // No second generation was started.
        assert_eq!(listed.len(), 3, "{context}: {listed:?}");
    }
}

#[test]
fn a_promotion_cut_short_at_any_request_is_finished_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, store, _, config) = fresh(dir.path());
    rotate(&store, &config).unwrap();
    let before = vault.requests();
    promote(&store, &config).unwrap();
    let promotion = vault.requests() - before;
    eprintln!("a promotion of a key set with 3 generations makes {promotion} Key Vault requests");
    let (vault, store, _, config) = fresh(dir.path());
    let before = vault.requests();
    rotate(&store, &config).unwrap();
    let rotation = vault.requests() - before;
    drop((vault, store));

    for k in 1..=promotion.max(rotation) {
        let (vault, store, seeded, config) = fresh(dir.path());
        let staged = rotate(&store, &config).unwrap().staged.unwrap();
        vault.fail_from(k, keyvault::Fault::ServerError);
        let cut = promote(&store, &config);
        assert!(
            cut.is_err() || k > promotion,
            "request {k} of {promotion} failed, yet: {cut:?}"
        );
        vault.heal();
        let context = format!("promotion cut at request {k} of {promotion}");
        promote(&store, &config).unwrap_or_else(|e| panic!("{context}: re-run: {e}"));
        check_invariants(&store, &seeded, &context);
        let listed = store.list("prod").unwrap();
        let active = lifecycle::sealing_generation(&listed).unwrap();
        assert_eq!(active.generation, staged.generation, "{context}");
        assert_eq!(active.fingerprint, staged.fingerprint, "{context}");
        assert!(
            listed
                .iter()
                .filter(|g| g.generation != active.generation && g.state.is_loaded())
                .all(|g| g.not_before < active.not_before),
            "{context}: the promoted generation has the newest NotBefore: {listed:?}"
        );
        assert!(
            listed.iter().all(|g| g.state != GenerationState::Staged),
            "{context}"
        );
    }
}

#[test]
fn two_rotations_at_once_end_with_one_staged_generation() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let vault = keyvault::Vault::start();
        let seeding = vault.store();
        let seeded = seed(&seeding);
        let config = config(dir.path(), &vault.url);
        let barrier = std::sync::Barrier::new(2);
        let outcomes: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = [2usize, 3]
                .into_iter()
                .map(|key_index| {
                    let store = vault.store();
                    let (config, barrier) = (&config, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        lifecycle::rotate_with(
                            &store,
                            config.keyset("prod").unwrap(),
                            None,
                            OffsetDateTime::now_utc(),
                            &mut || Ok(key(key_index)),
                        )
                        .map(|r| r.staged.map(|g| (g.generation, g.fingerprint)))
                        .map_err(|e| e.to_string())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let listed = seeding.list("prod").unwrap();
        let staged: Vec<_> = listed
            .iter()
            .filter(|g| g.state == GenerationState::Staged)
            .collect();
        assert_eq!(staged.len(), 1, "round {round}: {listed:?} {outcomes:?}");
        assert_eq!(listed.len(), 3, "round {round}: {listed:?}");
        for outcome in &outcomes {
            let (generation, fingerprint) = outcome.clone().unwrap().unwrap();
            assert_eq!(generation, staged[0].generation, "round {round}");
            assert_eq!(
                fingerprint, staged[0].fingerprint,
                "round {round}: both runs report the key that is stored"
            );
        }
        check_invariants(&seeding, &seeded, &format!("round {round}"));
    }
}

/// The controller's rule: of the keys it loaded, in the order it loaded them, it seals
/// with the newest certificate NotBefore (a later key wins only if strictly newer).
fn controller_sealing_key(loaded: &[&Certificate]) -> kvseal::keys::Fingerprint {
    let mut best = loaded[0];
    for certificate in &loaded[1..] {
        if certificate.not_before() > best.not_before() {
            best = certificate;
        }
    }
    best.public_key().fingerprint()
}

fn permutations<T: Copy>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut tail in permutations(&rest) {
            tail.insert(0, first);
            out.push(tail);
        }
    }
    out
}

#[test]
fn while_staged_the_active_generation_seals_whatever_order_clusters_load_keys() {
    let dir = tempfile::tempdir().unwrap();
    let vault = keyvault::Vault::start();
    let store = vault.store();
    seed(&store);
    let config = config(dir.path(), &vault.url);
    let active_before = lifecycle::sealing_generation(&store.list("prod").unwrap())
        .unwrap()
        .fingerprint;
    rotate(&store, &config).unwrap();
    kvseal::fleet::export_certs(&config, &store).unwrap();

    // kvseal seal: the certificate directory still seals with the active generation.
    let (sealing, _) =
        kvseal::fleet::sealing_certificate(&config, "prod", OffsetDateTime::now_utc()).unwrap();
    assert_eq!(sealing.public_key().fingerprint(), active_before);

    // The manifests: every loaded generation pinned, and whatever order the controller
    // reads the synced Secrets in, it seals with the active one.
    let cluster = config.cluster("prod-eu").unwrap();
    let vault_ref = kvseal::cluster_manifests::VaultRef::from_config(&config).unwrap();
    let spc = kvseal::cluster_manifests::secret_provider_class(
        &config,
        cluster,
        &vault_ref,
        &store.list("prod").unwrap(),
    )
    .unwrap();
    #[derive(serde::Deserialize)]
    struct Objects {
        array: Vec<String>,
    }
    let objects: Objects = serde_saphyr::from_str(&spc.spec.parameters["objects"]).unwrap();
    assert_eq!(
        objects.array.len(),
        3,
        "two loaded and one staged generation"
    );
    let mut pinned = Vec::new();
    for object in &objects.array {
        let object: kvseal::cluster_manifests::KeyVaultObject =
            serde_saphyr::from_str(object).unwrap();
        let bundle = vault
            .value(&object.object_name, &object.object_version)
            .unwrap_or_else(|| {
                panic!(
                    "{} version {} is pinned but missing",
                    object.object_name, object.object_version
                )
            });
        pinned.push(Certificate::from_pem(bundle.as_bytes()).unwrap());
    }
    let refs: Vec<&Certificate> = pinned.iter().collect();
    for order in permutations(&refs) {
        assert_eq!(controller_sealing_key(&order), active_before);
    }

    // After promotion the staged generation seals, in the manifests too.
    promote(&store, &config).unwrap();
    let listed = store.list("prod").unwrap();
    let promoted = lifecycle::sealing_generation(&listed).unwrap();
    let spc =
        kvseal::cluster_manifests::secret_provider_class(&config, cluster, &vault_ref, &listed)
            .unwrap();
    let objects: Objects = serde_saphyr::from_str(&spc.spec.parameters["objects"]).unwrap();
    let pinned: Vec<Certificate> = objects
        .array
        .iter()
        .map(|o| {
            let o: kvseal::cluster_manifests::KeyVaultObject = serde_saphyr::from_str(o).unwrap();
            Certificate::from_pem(
                vault
                    .value(&o.object_name, &o.object_version)
                    .unwrap()
                    .as_bytes(),
            )
            .unwrap()
        })
        .collect();
    let refs: Vec<&Certificate> = pinned.iter().collect();
    for order in permutations(&refs) {
        assert_eq!(controller_sealing_key(&order), promoted.fingerprint);
    }
}

#[test]
fn a_throttling_storm_is_waited_out_within_a_cap_or_named() {
    let vault = keyvault::Vault::start();
    let limits = RetryLimits {
        max_retries: 4,
        initial_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(250),
        max_total: Duration::from_secs(10),
    };
    let store = vault.store_with(limits);

    // Four throttled answers in a row, each asking for 100 seconds: kvseal waits the cap
    // each time, not the hundred seconds, and then succeeds.
    for n in 1..=4 {
        vault.fail_request(n, keyvault::Fault::Throttle(100));
    }
    let started = Instant::now();
    assert!(store.keysets().unwrap().is_empty());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(4 * 250) && waited < Duration::from_secs(8),
        "waited {waited:?}"
    );

    // A storm that does not end: a clear error, after the retries, not a hang.
    vault.fail_from(1, keyvault::Fault::Throttle(100));
    let started = Instant::now();
    let error = store.list("prod").unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(error.contains("429"), "{error}");
    assert!(error.contains("throttling"), "{error}");
    assert!(error.contains("run it again later"), "{error}");
}
