//! Interop with independent implementations of the format, run as separate programs:
//! PyPI `kubesealpy` and `aes-gcm-rsa-oaep` and npm `@linode/kubeseal-encrypt` seal, and
//! kvseal opens; `kvseal seal` seals, and Python `cryptography` opens.
//! `tests/run.sh` installs the peers; see tests/interop/README.md.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use kvseal::format::{self, Scope};
use kvseal::keys::{Certificate, CertificateRequest, PrivateKey};
use time::OffsetDateTime;

fn python() -> PathBuf {
    let path = std::env::var_os("KVSEAL_INTEROP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_root().join("target/interop-venv/bin/python"));
    assert!(
        path.exists(),
        "interop peers are not installed at {}: run `bash tests/run.sh`",
        path.display()
    );
    path
}

struct Fixture {
    dir: tempfile::TempDir,
    key: PrivateKey,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pem = common::vector_key_pem("rsa4096.pem");
        let key = PrivateKey::from_pem(&pem).unwrap();
        let now = OffsetDateTime::now_utc();
        let cert = Certificate::self_signed(
            &key,
            &CertificateRequest::new("sealed-secret", now, now + time::Duration::days(365)),
        )
        .unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert.to_pem()).unwrap();
        std::fs::write(dir.path().join("key.pem"), &pem).unwrap();
        Self { dir, key }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn values() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("ascii", b"correct horse battery staple".to_vec()),
        ("empty", Vec::new()),
        ("non-ascii", "Grüße — 你好 — 🗝️".as_bytes().to_vec()),
        ("1MiB-binary", common::pattern_1mib()),
    ]
}

fn peer_seal(
    fixture: &Fixture,
    peer: &str,
    scope: Scope,
    value: &[u8],
) -> Result<String, (i32, String)> {
    let value_file = fixture.path("value.bin");
    std::fs::write(&value_file, value).unwrap();
    let out = Command::new(python())
        .arg(common::repo_root().join("tests/interop/peer_seal.py"))
        .args([
            "--peer",
            peer,
            "--scope",
            scope.as_str(),
            "--namespace",
            "team-a",
            "--name",
            "api-token",
        ])
        .arg("--cert")
        .arg(fixture.path("cert.pem"))
        .arg("--value-file")
        .arg(&value_file)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap().trim().to_owned())
    } else {
        Err((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

#[test]
fn values_sealed_by_independent_peers_open_in_kvseal() {
    let fixture = Fixture::new();
    let mut opened = Vec::new();
    for peer in ["kubesealpy", "aes-gcm-rsa-oaep", "linode-kubeseal-encrypt"] {
        for scope in Scope::ALL {
            for (name, value) in values() {
                let case = format!("{peer} {scope} {name}");
                match peer_seal(&fixture, peer, scope, &value) {
                    Ok(sealed) => {
                        let bytes = format::decode_base64(&sealed)
                            .unwrap_or_else(|e| panic!("{case}: {e}"));
                        let label = scope.label("team-a", "api-token");
                        let plain = format::open(&fixture.key, &bytes, &label)
                            .unwrap_or_else(|e| panic!("{case}: {e}"));
                        assert_eq!(plain.expose(), value.as_slice(), "{case}");
                        opened.push(case);
                    }
                    // The npm peer only seals namespace-wide, and only text (see its README).
                    Err((3, _))
                        if peer == "linode-kubeseal-encrypt"
                            && (scope != Scope::NamespaceWide || name == "1MiB-binary") => {}
                    Err((code, stderr)) => panic!("{case}: peer failed with {code}: {stderr}"),
                }
            }
        }
    }
    assert_eq!(opened.len(), 2 * 3 * 4 + 3, "{opened:#?}");
}

fn peer_open(fixture: &Fixture, sealed_b64: &str, label: &[u8]) -> Option<Vec<u8>> {
    let file = fixture.path("sealed.b64");
    std::fs::write(&file, sealed_b64).unwrap();
    let out = Command::new(python())
        .arg(common::repo_root().join("tests/interop/peer_open.py"))
        .arg("--key")
        .arg(fixture.path("key.pem"))
        .arg("--label")
        .arg(std::str::from_utf8(label).unwrap())
        .arg("--ciphertext-file")
        .arg(&file)
        .output()
        .unwrap();
    out.status.success().then_some(out.stdout)
}

fn kvseal(args: &[&str], stdin_file: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kvseal"))
        .args(args)
        .stdin(std::fs::File::open(stdin_file).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kvseal {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn secrets_sealed_by_kvseal_open_in_python_cryptography() {
    use base64::Engine as _;
    let fixture = Fixture::new();
    let cert = fixture.path("cert.pem");
    for scope in Scope::ALL {
        let mut data = String::new();
        for (name, value) in values() {
            data.push_str(&format!(
                "  {name}: {}\n",
                base64::engine::general_purpose::STANDARD.encode(&value)
            ));
        }
        let secret = fixture.path("secret.yaml");
        std::fs::write(&secret, format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: api-token\n  namespace: team-a\ndata:\n{data}")).unwrap();
        let json = kvseal(
            &[
                "seal",
                "--cert",
                cert.to_str().unwrap(),
                "--scope",
                scope.as_str(),
                "-o",
                "json",
            ],
            &secret,
        );
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        // The label comes from the document's own metadata, as the controller reads it.
        let annotations = doc["metadata"]["annotations"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let annotations = annotations
            .into_iter()
            .map(|(k, v)| (k, v.as_str().unwrap().to_owned()))
            .collect();
        assert_eq!(Scope::from_annotations(&annotations), scope);
        let label = scope.label(
            doc["metadata"]["namespace"].as_str().unwrap(),
            doc["metadata"]["name"].as_str().unwrap(),
        );
        for (name, value) in values() {
            let sealed = doc["spec"]["encryptedData"][name].as_str().unwrap();
            let plain = peer_open(&fixture, sealed, &label)
                .unwrap_or_else(|| panic!("{scope} {name}: Python cryptography refused it"));
            assert_eq!(plain, value, "{scope} {name}");
        }
        let wrong = if scope == Scope::ClusterWide {
            b"team-a".as_slice()
        } else {
            b"".as_slice()
        };
        assert!(
            peer_open(
                &fixture,
                doc["spec"]["encryptedData"]["ascii"].as_str().unwrap(),
                wrong
            )
            .is_none()
        );
    }
}
