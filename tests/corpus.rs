//! Real kubeseal output from public repositories (`../shared/corpus`, see its INDEX.md):
//! every field recorded as decrypting opens to the recorded plaintext hash with the
//! repository's own key files, through the same path as `kvseal unseal`; everything in
//! `wrong-key/` and `malformed/` is refused with a clear error; and no repository's
//! SealedSecrets open with another repository's keys.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kvseal::keys::{PrivateKey, read_private_keys};
use kvseal::manifest::{SealedSecret, UnsealError, split_documents};
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    let dir = std::env::var_os("KVSEAL_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_root().join("../shared/corpus"));
    assert!(
        dir.join("INDEX.md").is_file(),
        "the corpus is missing at {}: check out shared/ beside the repository or set KVSEAL_CORPUS",
        dir.display()
    );
    dir
}

fn repositories() -> Vec<PathBuf> {
    let mut repos: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    repos.sort();
    repos
}

fn repo_keys(repo: &Path) -> BTreeMap<String, Vec<PrivateKey>> {
    let mut keys = BTreeMap::new();
    for entry in std::fs::read_dir(repo.join("keys")).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let parsed =
            read_private_keys(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        keys.insert(
            format!("keys/{}", path.file_name().unwrap().to_string_lossy()),
            parsed,
        );
    }
    keys
}

fn sealed_secrets(path: &Path) -> Vec<Result<SealedSecret, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    split_documents(&text)
        .iter()
        .map(|d| SealedSecret::from_document(d).map_err(|e| e.to_string()))
        .collect()
}

#[test]
fn every_recorded_field_opens_or_is_refused_as_expected() {
    let (mut opened, mut refused) = (0, 0);
    for repo in repositories() {
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(repo.join("expected.json")).unwrap())
                .unwrap();
        let keys_by_file = repo_keys(&repo);
        let all_keys: Vec<&PrivateKey> = keys_by_file.values().flatten().collect();
        for field in expected["fields"].as_array().unwrap() {
            let file = field["file"].as_str().unwrap();
            let what = format!("{}/{file} field {}", repo.display(), field["field"]);
            let doc = field["doc"].as_u64().unwrap() as usize;
            let sealed = sealed_secrets(&repo.join(file)).remove(doc);
            let sealed = match sealed {
                Ok(sealed) => sealed,
                Err(message) => {
                    assert_eq!(field["decrypts"], false, "{what}: {message}");
                    refused += 1;
                    continue;
                }
            };
            assert_eq!(
                sealed.metadata.namespace,
                field["namespace"].as_str().unwrap(),
                "{what}"
            );
            let name = field["field"].as_str().unwrap();
            let keys: Vec<PrivateKey> = all_keys
                .iter()
                .map(|k| PrivateKey::from_pkcs8_der(k.pkcs8_der().clone()).unwrap())
                .collect();
            match sealed.unseal(&keys) {
                Ok(secret) => {
                    assert_eq!(
                        field["decrypts"], true,
                        "{what}: opened but recorded as not decrypting"
                    );
                    let plaintext = &secret.data[name];
                    assert_eq!(
                        plaintext.len() as u64,
                        field["plaintext_len"].as_u64().unwrap(),
                        "{what}"
                    );
                    assert_eq!(
                        common::sha256_hex(plaintext.expose()),
                        field["plaintext_sha256"].as_str().unwrap(),
                        "{what}"
                    );
                    // The key that opened it is the recorded one, by kubeseal's fingerprint.
                    let fingerprint = secret.opened_with[name];
                    let key_file = field["key"].as_str().unwrap();
                    let recorded = keys_by_file[key_file]
                        .iter()
                        .find(|k| k.fingerprint() == fingerprint);
                    let recorded = recorded
                        .unwrap_or_else(|| panic!("{what}: opened with a key not from {key_file}"));
                    assert_eq!(
                        recorded.public_key().kubeseal_fingerprint(),
                        field["key_fingerprint"].as_str().unwrap()
                    );
                    opened += 1;
                }
                Err(UnsealError::Fields { errors, .. }) => {
                    assert_eq!(field["decrypts"], false, "{what}: {errors:?}");
                    let error = errors
                        .iter()
                        .find(|e| e.field == name)
                        .unwrap_or_else(|| panic!("{what}: no error for field"));
                    let why = field["why"].as_str().unwrap();
                    if why.starts_with("malformed") {
                        assert!(
                            error.reason.contains("not valid base64"),
                            "{what}: {}",
                            error.reason
                        );
                        assert!(
                            why.contains(&format!(
                                "at input byte {}",
                                error
                                    .reason
                                    .split("at input byte ")
                                    .nth(1)
                                    .unwrap()
                                    .split(')')
                                    .next()
                                    .unwrap()
                            )),
                            "{what}: byte offset differs from Go's: {} vs {why}",
                            error.reason
                        );
                    } else {
                        assert!(
                            error.reason.contains("no key could decrypt"),
                            "{what}: {}",
                            error.reason
                        );
                    }
                    refused += 1;
                }
                Err(other) => panic!("{what}: {other}"),
            }
        }
    }
    assert_eq!(
        (opened, refused),
        (39, 9),
        "the corpus has 39 decrypting fields and 9 that do not"
    );
}

#[test]
fn no_repository_opens_with_another_repositorys_keys() {
    let repos = repositories();
    let keys: Vec<(PathBuf, Vec<PrivateKey>)> = repos
        .iter()
        .map(|r| (r.clone(), repo_keys(r).into_values().flatten().collect()))
        .collect();
    let mut checked = 0;
    for repo in &repos {
        let sealed_dir = repo.join("sealed");
        for entry in std::fs::read_dir(&sealed_dir).unwrap() {
            let path = entry.unwrap().path();
            for sealed in sealed_secrets(&path).into_iter().flatten() {
                for (other, other_keys) in keys.iter().filter(|(r, _)| r != repo) {
                    // Every scope label: the error must stay "no key", never a wrong opening.
                    let err = sealed.unseal(other_keys).err().unwrap_or_else(|| {
                        panic!("{} opened with keys of {}", path.display(), other.display())
                    });
                    assert!(err.to_string().contains("no key could decrypt"), "{err}");
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 200, "checked {checked} combinations");
}
