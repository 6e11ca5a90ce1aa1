//! The key lifecycle on the local directory store, as users meet it: importing a
//! controller's keys from a `kubectl` backup, retain, retire refusals, a compromised key
//! and its replacement, and what the scanner says about staged and compromised keys.

mod common;

use std::path::Path;

use base64::Engine as _;
use kvseal::config::Config;
use kvseal::keys::{Certificate, PrivateKey};
use kvseal::lifecycle::{self, Imported, LifecycleError, Usage};
use kvseal::store::{GenerationState, KeyStore, LocalDirStore};
use time::OffsetDateTime;

fn key() -> PrivateKey {
    PrivateKey::generate(2048).unwrap()
}

fn certificate(key: &PrivateKey, days_ago: i64) -> Certificate {
    common::certificate_since(key, days_ago)
}

fn repo(dir: &Path, retain: u32) -> Config {
    let text = format!(
        "store = \"dir:store\"\ncert_dir = \"certs\"\n[keysets.prod]\nretain = {retain}\n[clusters.prod-eu]\nkeyset = \"prod\"\npaths = [\"apps/**\"]\n"
    );
    std::fs::write(dir.join("kvseal.toml"), &text).unwrap();
    Config::load(&dir.join("kvseal.toml")).unwrap()
}

fn store(config: &Config) -> LocalDirStore {
    match &config.store {
        kvseal::store::StoreSpec::Dir(path) => LocalDirStore::new(path.clone()),
        other => panic!("{other:?}"),
    }
}

/// A `kubectl get secret -l sealedsecrets.bitnami.com/sealed-secrets-key -o yaml` backup,
/// with the controller's PKCS#1 keys.
fn kubectl_backup(pairs: &[(&PrivateKey, &Certificate)]) -> String {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out =
        String::from("apiVersion: v1\nkind: List\nmetadata:\n  resourceVersion: \"\"\nitems:\n");
    for (i, (key, cert)) in pairs.iter().enumerate() {
        let pkcs1 = common::oracle_private_key(key.to_pkcs8_pem().expose().as_bytes());
        let pkcs1 =
            rsa::pkcs1::EncodeRsaPrivateKey::to_pkcs1_pem(&pkcs1, Default::default()).unwrap();
        out.push_str(&format!(
            "- apiVersion: v1\n  kind: Secret\n  type: kubernetes.io/tls\n  metadata:\n    name: sealed-secrets-key{i:05}\n    namespace: kube-system\n    labels:\n      sealedsecrets.bitnami.com/sealed-secrets-key: active\n  data:\n    tls.crt: {}\n    tls.key: {}\n",
            b64(cert.to_pem().as_bytes()),
            b64(pkcs1.as_bytes())
        ));
    }
    out
}

#[test]
fn importing_a_kubectl_backup_keeps_the_controllers_not_before_order() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo(dir.path(), 3);
    let store = store(&config);
    let (old, new) = (key(), key());
    let (old_cert, new_cert) = (certificate(&old, 200), certificate(&new, 20));
    // kubectl lists by name, which need not be NotBefore order.
    let backup = kubectl_backup(&[(&new, &new_cert), (&old, &old_cert)]);
    let material = kvseal::keys::read_key_material(backup.as_bytes()).unwrap();
    let pairs = lifecycle::pair_keys(material.keys, &material.certificates).unwrap();
    let outcome = lifecycle::import(&store, config.keyset("prod").unwrap(), pairs).unwrap();
    assert_eq!(outcome.len(), 2);

    let listed = store.list("prod").unwrap();
    let summary: Vec<_> = listed
        .iter()
        .map(|g| (g.generation, g.state, g.fingerprint))
        .collect();
    assert_eq!(
        summary,
        [
            (1, GenerationState::Retained, old.fingerprint()),
            (2, GenerationState::Active, new.fingerprint()),
        ],
        "numbered in NotBefore order; the controller's sealing key is active"
    );
    // The certificates are the controller's own, so kubeseal --cert output stays valid.
    assert_eq!(listed[1].certificate.as_ref(), Some(&new_cert));

    // Importing again changes nothing.
    let material = kvseal::keys::read_key_material(backup.as_bytes()).unwrap();
    let pairs = lifecycle::pair_keys(material.keys, &material.certificates).unwrap();
    let again = lifecycle::import(&store, config.keyset("prod").unwrap(), pairs).unwrap();
    assert!(again.iter().all(|o| matches!(o, Imported::Present { .. })));
    assert_eq!(store.list("prod").unwrap().len(), 2);
}

#[test]
fn a_key_without_its_certificate_is_refused_by_fingerprint() {
    let k = key();
    let Err(error) = lifecycle::pair_keys(
        vec![PrivateKey::from_pem(k.to_pkcs8_pem().expose().as_bytes()).unwrap()],
        &[],
    ) else {
        panic!("a key without a certificate was accepted");
    };
    assert!(matches!(error, LifecycleError::MissingCertificate(fp) if fp == k.fingerprint()));
    assert!(error.to_string().contains("tls.crt"), "{error}");
}

#[test]
fn promotion_keeps_retain_generations_and_never_retires_one_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo(dir.path(), 2);
    let store = store(&config);
    let keyset = config.keyset("prod").unwrap();
    for (number, days_ago) in [(1u32, 300), (2, 200), (3, 100)] {
        let k = key();
        let state = if number == 3 {
            GenerationState::Active
        } else {
            GenerationState::Retained
        };
        store
            .create("prod", number, &k, &certificate(&k, days_ago), state)
            .unwrap();
    }
    let staged_key = key();
    lifecycle::rotate_with(&store, keyset, None, OffsetDateTime::now_utc(), &mut || {
        Ok(PrivateKey::from_pem(staged_key.to_pkcs8_pem().expose().as_bytes()).unwrap())
    })
    .unwrap();
    // Generation 1 still seals a file; generation 2 seals nothing.
    let usage = Usage::from([(("prod".to_owned(), 1), vec!["apps/legacy.yaml".to_owned()])]);
    let plan = lifecycle::plan_promotion(keyset, &store.list("prod").unwrap(), &usage);
    assert_eq!(plan.promote, Some(4));
    assert!(plan.reissue);
    assert_eq!(plan.demote, [3]);
    assert_eq!(plan.retire, [2]);
    assert_eq!(plan.kept_in_use, [(1, vec!["apps/legacy.yaml".to_owned()])]);
    lifecycle::promote(&store, keyset, &usage, None, OffsetDateTime::now_utc()).unwrap();
    let states: Vec<_> = store
        .list("prod")
        .unwrap()
        .iter()
        .map(|g| (g.generation, g.state))
        .collect();
    assert_eq!(
        states,
        [
            (1, GenerationState::Retained),
            (2, GenerationState::Retired),
            (3, GenerationState::Retained),
            (4, GenerationState::Active),
        ]
    );
    // Promoting again finds nothing to do.
    assert!(
        lifecycle::promote(&store, keyset, &usage, None, OffsetDateTime::now_utc())
            .unwrap()
            .is_empty()
    );
    // The active and the staged generation cannot be retired.
    let error = lifecycle::retire(&store, "prod", 4, &Usage::new(), None).unwrap_err();
    assert!(error.to_string().contains("active"), "{error}");
    let error = lifecycle::retire(&store, "prod", 1, &usage, None).unwrap_err();
    assert!(error.to_string().contains("apps/legacy.yaml"), "{error}");
    let forced =
        lifecycle::retire(&store, "prod", 1, &usage, Some("INC-7: values rotated")).unwrap();
    assert_eq!(forced.state, GenerationState::Retired);
    assert_eq!(
        store.list("prod").unwrap()[0].reason.as_deref(),
        Some("INC-7: values rotated")
    );
}

fn seal_with(dir: &Path, cert: &Certificate, out: &str) {
    let cert_path = dir.join("seal-cert.pem");
    std::fs::write(&cert_path, cert.to_pem()).unwrap();
    let secret = b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: payments\nstringData:\n  password: hunter2\n";
    std::fs::create_dir_all(dir.join("apps")).unwrap();
    let output = common::kvseal_with_input(
        dir,
        &["seal", "--cert", cert_path.to_str().unwrap(), "-w", out],
        secret,
    );
    assert!(output.status.success(), "{output:?}");
    std::fs::remove_file(cert_path).unwrap();
}

fn scan_codes(dir: &Path) -> Vec<String> {
    let output = common::kvseal(dir, &["scan", "apps", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{} {}",
                f["code"].as_str().unwrap(),
                f["file"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn the_scanner_flags_staged_and_compromised_keys_and_compromise_stages_a_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo(dir.path(), 3);
    let store = store(&config);
    let keyset = config.keyset("prod").unwrap();
    let active = key();
    let active_cert = certificate(&active, 30);
    store
        .create("prod", 1, &active, &active_cert, GenerationState::Active)
        .unwrap();
    let staged_key = key();
    let staged =
        lifecycle::rotate_with(&store, keyset, None, OffsetDateTime::now_utc(), &mut || {
            Ok(PrivateKey::from_pem(staged_key.to_pkcs8_pem().expose().as_bytes()).unwrap())
        })
        .unwrap()
        .staged
        .unwrap();

    seal_with(dir.path(), &active_cert, "apps/good.yaml");
    seal_with(
        dir.path(),
        staged.certificate.as_ref().unwrap(),
        "apps/too-early.yaml",
    );
    assert_eq!(scan_codes(dir.path()), ["staged-key apps/too-early.yaml"]);

    // Generation 1 leaks: it is marked, the staged generation is its replacement, and the
    // files it sealed are named.
    std::fs::remove_file(dir.path().join("apps/too-early.yaml")).unwrap();
    let keyring = kvseal::scan::Keyring::from_store(&config, &store).unwrap();
    let usage = kvseal::scan::generation_usage(&config, &keyring, OffsetDateTime::now_utc());
    assert_eq!(usage[&("prod".to_owned(), 1)], ["apps/good.yaml"]);
    let outcome = lifecycle::mark_compromised(
        &store,
        keyset,
        1,
        &usage,
        Some("key file in a public gist"),
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert_eq!(outcome.to_reseal, ["apps/good.yaml"]);
    assert_eq!(
        outcome.replacement.staged.as_ref().map(|g| g.generation),
        Some(staged.generation),
        "the generation already staged is the replacement"
    );
    let listed = store.list("prod").unwrap();
    assert_eq!(listed[0].state, GenerationState::Compromised);
    assert!(
        listed[0].state.is_loaded(),
        "it still decrypts until resealed"
    );
    assert_eq!(scan_codes(dir.path()), ["compromised-key apps/good.yaml"]);

    // After promotion and a reseal, nothing is left to report, and it can be retired.
    lifecycle::promote(
        &store,
        keyset,
        &usage,
        Some("test"),
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    kvseal::fleet::export_certs(&config, &store).unwrap();
    let output = common::kvseal(dir.path(), &["reseal", "apps"]);
    assert!(output.status.success(), "{output:?}");
    assert!(scan_codes(dir.path()).is_empty());
    let keyring = kvseal::scan::Keyring::from_store(&config, &store).unwrap();
    let usage = kvseal::scan::generation_usage(&config, &keyring, OffsetDateTime::now_utc());
    lifecycle::retire(&store, "prod", 1, &usage, None).unwrap();
}

#[test]
fn rotation_passes_over_the_leftovers_of_a_crashed_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = repo(dir.path(), 3);
    let store = store(&config);
    let keyset = config.keyset("prod").unwrap();
    let active = key();
    store
        .create(
            "prod",
            1,
            &active,
            &certificate(&active, 10),
            GenerationState::Active,
        )
        .unwrap();
    // Runs that died while writing generation 2's and 4's keys left only their
    // directories, which the store cannot list; one that died after writing generation 3's
    // certificate left a pending generation whose key file is cut short.
    let store_dir = dir.path().join("store/prod");
    for leftover in ["0002", "0003", "0004"] {
        std::fs::create_dir(store_dir.join(leftover)).unwrap();
    }
    let half = key();
    std::fs::write(
        store_dir.join("0003/tls.key"),
        &half.to_pkcs8_pem().expose()[..100],
    )
    .unwrap();
    std::fs::write(
        store_dir.join("0003/tls.crt"),
        certificate(&half, 0).to_pem(),
    )
    .unwrap();
    assert_eq!(
        store.list("prod").unwrap()[1].state,
        GenerationState::Pending
    );

    let staged_key = key();
    let rotated =
        lifecycle::rotate_with(&store, keyset, None, OffsetDateTime::now_utc(), &mut || {
            Ok(PrivateKey::from_pem(staged_key.to_pkcs8_pem().expose().as_bytes()).unwrap())
        })
        .unwrap();
    assert_eq!(rotated.staged.as_ref().map(|g| g.generation), Some(5));
    assert_eq!(
        rotated.damaged.iter().map(|(g, _)| *g).collect::<Vec<_>>(),
        [3, 4]
    );
    assert_eq!(
        store.load("prod", 5).unwrap().private_key.fingerprint(),
        staged_key.fingerprint()
    );
}
