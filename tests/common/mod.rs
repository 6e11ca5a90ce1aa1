//! Shared test helpers: fixture paths and an independent second implementation of the
//! format (RustCrypto's `rsa` and `aes-gcm`), so that format tests check one
//! implementation against another instead of against themselves.
#![allow(dead_code)]

use std::path::PathBuf;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::sha2::Sha256;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn data(path: &str) -> PathBuf {
    repo_root().join("tests/data").join(path)
}

pub fn vector_key_pem(name: &str) -> Vec<u8> {
    std::fs::read(data(&format!("vectors/{name}"))).expect("vector key")
}

/// The RustCrypto oracle's private key from PEM (PKCS#1 or PKCS#8).
pub fn oracle_private_key(pem: &[u8]) -> RsaPrivateKey {
    let text = std::str::from_utf8(pem).unwrap();
    RsaPrivateKey::from_pkcs8_pem(text)
        .or_else(|_| rsa::pkcs1::DecodeRsaPrivateKey::from_pkcs1_pem(text))
        .expect("oracle parses key")
}

pub fn oracle_public_key(spki_der: &[u8]) -> RsaPublicKey {
    RsaPublicKey::from_public_key_der(spki_der).expect("oracle parses SPKI")
}

/// Seals as `pkg/crypto/crypto.go` does, with RustCrypto.
pub fn oracle_seal(key: &RsaPublicKey, plaintext: &[u8], label: &[u8]) -> Vec<u8> {
    let mut rng = rand::rng();
    let mut session_key = [0u8; 32];
    rand::Rng::fill_bytes(&mut rng, &mut session_key);
    let rsa_ct = key
        .encrypt(
            &mut rng,
            Oaep::<Sha256>::new_with_label(label.to_vec()),
            &session_key,
        )
        .expect("oracle encrypts");
    let cipher = Aes256Gcm::new_from_slice(&session_key).unwrap();
    let aes_ct = cipher
        .encrypt(&Nonce::default(), plaintext)
        .expect("oracle seals");
    let mut out = (rsa_ct.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&rsa_ct);
    out.extend_from_slice(&aes_ct);
    out
}

/// Opens as `pkg/crypto/crypto.go` does, with RustCrypto.
pub fn oracle_open(key: &RsaPrivateKey, value: &[u8], label: &[u8]) -> Option<Vec<u8>> {
    let len = usize::from(u16::from_be_bytes([*value.first()?, *value.get(1)?]));
    let rsa_ct = value.get(2..2 + len)?;
    let aes_ct = value.get(2 + len..)?;
    let session_key = key
        .decrypt(Oaep::<Sha256>::new_with_label(label.to_vec()), rsa_ct)
        .ok()?;
    let cipher = Aes256Gcm::new_from_slice(&session_key).ok()?;
    cipher.decrypt(&Nonce::default(), aes_ct).ok()
}

/// The 1 MiB plaintext of the big vector; must match `make_vectors.py`.
pub fn pattern_1mib() -> Vec<u8> {
    (0..1usize << 20)
        .map(|i| ((i * 7 + 3) % 256) as u8)
        .collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use rsa::sha2::Digest;
    hex::encode(Sha256::digest(bytes))
}

/// Copies a directory tree (test fixtures into a temporary directory).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Runs the `kvseal` binary in `dir` with `stdin` as its input.
pub fn kvseal_with_input(
    dir: &std::path::Path,
    args: &[&str],
    stdin: &[u8],
) -> std::process::Output {
    run_with_input(
        std::path::Path::new(env!("CARGO_BIN_EXE_kvseal")),
        dir,
        args,
        stdin,
    )
}

/// Runs a program in `dir` with `stdin` as its input.
pub fn run_with_input<S: AsRef<std::ffi::OsStr>>(
    program: &std::path::Path,
    dir: &std::path::Path,
    args: &[S],
    stdin: &[u8],
) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The program may exit before reading its input (an early error): a closed pipe is fine.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

/// Runs the `kvseal` binary in `dir` with no input.
pub fn kvseal(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    kvseal_with_input(dir, args, b"")
}

/// A self-signed certificate for `key` whose validity started `days_ago` days ago (whole
/// seconds) and lasts ten years.
pub fn certificate_since(
    key: &kvseal::keys::PrivateKey,
    days_ago: i64,
) -> kvseal::keys::Certificate {
    let start = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        - time::Duration::days(days_ago);
    kvseal::keys::Certificate::self_signed(
        key,
        &kvseal::keys::CertificateRequest::new(
            "sealed-secret",
            start,
            start + time::Duration::days(3650),
        ),
    )
    .unwrap()
}
