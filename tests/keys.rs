//! Generated keys and certificates, re-parsed by independent parsers (the `rsa` crate and
//! the OpenSSL command line) under the rules the controller and kubeseal apply.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use kvseal::config::Config;
use kvseal::keys::{Certificate, PrivateKey, read_private_keys};
use kvseal::lifecycle;
use kvseal::store::{GenerationState, KeyStore, LocalDirStore};
use time::OffsetDateTime;

fn config_for(dir: &std::path::Path) -> Config {
    let text = "store = \"dir:store\"\ncert_dir = \"certs\"\n[keysets.prod]\n[clusters.eu]\nkeyset = \"prod\"\n";
    Config::parse(text, &dir.join("kvseal.toml"), dir).unwrap()
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn generated_generation_parses_everywhere_and_keeps_its_promises() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(dir.path());
    let store = LocalDirStore::new(dir.path().join("store"));
    let keyset = config.keyset("prod").unwrap();
    let now = OffsetDateTime::now_utc();

    let first = lifecycle::generate(&store, keyset, now).unwrap();
    // Same second on purpose: the second NotBefore must still be strictly later.
    let second = lifecycle::generate(&store, keyset, now).unwrap();
    assert!(second.created.not_before > first.created.not_before);
    assert_eq!(second.demoted, vec![1]);
    let states: Vec<_> = store
        .list("prod")
        .unwrap()
        .iter()
        .map(|g| g.state)
        .collect();
    assert_eq!(
        states,
        vec![GenerationState::Retained, GenerationState::Active]
    );

    let gen_dir = dir.path().join("store/prod/0002");
    let key_path = gen_dir.join("tls.key");
    let cert_path = gen_dir.join("tls.crt");
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The key: PKCS#8 PEM that the rsa crate and OpenSSL read, matching the certificate.
    let key_pem = std::fs::read(&key_path).unwrap();
    assert!(key_pem.starts_with(b"-----BEGIN PRIVATE KEY-----\n"));
    let oracle = common::oracle_private_key(&key_pem);
    let cert = Certificate::from_pem(&std::fs::read(&cert_path).unwrap()).unwrap();
    assert_eq!(
        common::oracle_public_key(cert.public_key().spki_der()),
        oracle.to_public_key()
    );
    openssl(&["rsa", "-in", key_path.to_str().unwrap(), "-check", "-noout"]);
    let key_modulus = openssl(&[
        "rsa",
        "-in",
        key_path.to_str().unwrap(),
        "-noout",
        "-modulus",
    ]);
    let cert_modulus = openssl(&[
        "x509",
        "-in",
        cert_path.to_str().unwrap(),
        "-noout",
        "-modulus",
    ]);
    assert_eq!(key_modulus, cert_modulus);

    // The certificate: the controller's template.
    let text = openssl(&[
        "x509",
        "-in",
        cert_path.to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    for expected in [
        "Public-Key: (4096 bit)",
        "Signature Algorithm: sha256WithRSAEncryption",
        "CA:TRUE",
        "Encipher Only",
        "Subject: CN = sealed-secret",
    ] {
        assert!(
            text.contains(expected),
            "certificate lacks {expected:?}:\n{text}"
        );
    }
    let serial = cert.serial();
    assert!(
        !serial.is_empty() && serial[0] & 0x80 == 0 && serial.iter().any(|&b| b != 0),
        "positive serial"
    );
    let years = (cert.not_after() - cert.not_before()).whole_days() / 365;
    assert_eq!(years, 10, "default validity");
    openssl(&[
        "verify",
        "-partial_chain",
        "-CAfile",
        cert_path.to_str().unwrap(),
        cert_path.to_str().unwrap(),
    ]);

    // A PKCS#1 form of the same key reads back to the same fingerprint.
    let pkcs1 = openssl(&["rsa", "-in", key_path.to_str().unwrap(), "-traditional"]);
    assert!(pkcs1.contains("BEGIN RSA PRIVATE KEY"));
    let reread = read_private_keys(pkcs1.as_bytes()).unwrap();
    assert_eq!(reread[0].fingerprint(), cert.public_key().fingerprint());
}

#[test]
fn fingerprints_match_kubeseal_for_the_corpus_keys() {
    // The corpus records the fingerprint kubeseal computes for each committed key.
    let corpus = common::repo_root().join("../shared/corpus");
    let key = std::fs::read(
        corpus.join("madpearl__helm-operator-get-started/keys/sealed-secrets-key.yaml"),
    )
    .expect("../shared/corpus is checked out beside the repository");
    let keys = read_private_keys(&key).unwrap();
    assert_eq!(
        keys[0].public_key().kubeseal_fingerprint(),
        "SHA256:UIOvpwg7wiqZQXIbB43c6uTQhwKPl/xXgj0ICf1ti6c"
    );
}

#[test]
fn the_store_refuses_to_overwrite_and_detects_a_swapped_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalDirStore::new(dir.path().to_path_buf());
    let key = PrivateKey::from_pem(&common::vector_key_pem("rsa2048.pem")).unwrap();
    let now = OffsetDateTime::now_utc();
    let request =
        kvseal::keys::CertificateRequest::new("sealed-secret", now, now + time::Duration::days(1));
    let cert = Certificate::self_signed(&key, &request).unwrap();
    store
        .create("dev", 1, &key, &cert, GenerationState::Active)
        .unwrap();
    let again = store.create("dev", 1, &key, &cert, GenerationState::Active);
    assert!(again.unwrap_err().to_string().contains("never overwrites"));

    // Replace the key file behind the store's back: loading must refuse, naming the file.
    let other = PrivateKey::from_pem(&common::vector_key_pem("rsa4096.pem")).unwrap();
    let key_path = dir.path().join("dev/0001/tls.key");
    std::fs::remove_file(&key_path).unwrap();
    std::fs::write(&key_path, other.to_pkcs8_pem().expose()).unwrap();
    let err = store
        .load("dev", 1)
        .err()
        .expect("a swapped key must not load")
        .to_string();
    assert!(
        err.contains("tls.key") && err.contains("does not match"),
        "{err}"
    );
}

#[test]
fn expired_certificates_are_refused_with_their_date() {
    let key = PrivateKey::from_pem(&common::vector_key_pem("rsa2048.pem")).unwrap();
    let start = OffsetDateTime::from_unix_timestamp(1_600_000_000).unwrap();
    let request = kvseal::keys::CertificateRequest::new(
        "sealed-secret",
        start,
        start + time::Duration::days(30),
    );
    let cert = Certificate::self_signed(&key, &request).unwrap();
    let err = cert
        .check_not_expired(OffsetDateTime::now_utc())
        .unwrap_err()
        .to_string();
    assert!(err.contains("expired on October 13, 2020"), "{err}");
}
