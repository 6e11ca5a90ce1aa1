//! Bad input and interrupted work: clear errors, nothing lost, no secret in a message.

mod common;

use std::process::Output;

use kvseal::manifest::{SealedSecret, Secret, SecretOptions, split_documents};

fn kvseal(dir: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    common::kvseal_with_input(dir, args, stdin.as_bytes())
}

const CONFIG: &str = "store = \"dir:store\"\ncert_dir = \"certs\"\n[keysets.main]\n[clusters.one]\nkeyset = \"main\"\n";

/// A temporary fleet with one cluster and one generation of its key set.
fn fleet_with_one_generation() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kvseal.toml"), CONFIG).unwrap();
    let out = kvseal(dir.path(), &["keys", "generate", "--keyset", "main"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

#[test]
fn parse_errors_never_quote_secret_values() {
    let secret_value = "hunter2-do-not-print";
    let inputs = [
        format!(
            r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"a","namespace":"b"}},"stringData":{{"pin":["{secret_value}"]}}}}"#
        ),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: a, namespace: b}}\nstringData:\n  pin: [{secret_value}]\n"
        ),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: a, namespace: b}}\ndata:\n  pin: {secret_value}!\n"
        ),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: a, namespace: b}}\nstringData:\n  pin: \"{secret_value}\n"
        ),
    ];
    for input in &inputs {
        let err = match Secret::read_stream(input, &SecretOptions::default()) {
            Ok(_) => panic!("must be refused: {input}"),
            Err(e) => e.to_string(),
        };
        assert!(
            !err.contains("hunter2"),
            "the error quotes the secret: {err}"
        );
        assert!(
            err.contains("line") || err.contains("data.pin"),
            "the error says where: {err}"
        );
        let docs = split_documents(input);
        assert!(
            !format!("{:?}", docs).contains("hunter2"),
            "Debug of a document prints its text"
        );
    }
}

#[test]
fn export_never_removes_certificates_the_store_knows_nothing_about() {
    let dir = fleet_with_one_generation();
    let cert = dir.path().join("certs/main/0001.pem");
    assert!(cert.is_file());

    // A checkout without the private store (the usual GitOps case): nothing is deleted.
    std::fs::rename(dir.path().join("store"), dir.path().join("elsewhere")).unwrap();
    let out = kvseal(dir.path(), &["keys", "export-certs"], "");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no active or retained generations"));
    assert!(cert.is_file(), "the committed certificate must survive");
}

#[test]
fn a_generation_cut_short_does_not_block_the_next_one() {
    let dir = fleet_with_one_generation();
    // A crash right after claiming generation 2 left an empty directory.
    std::fs::create_dir(dir.path().join("store/main/0002")).unwrap();
    let out = kvseal(dir.path(), &["keys", "generate", "--keyset", "main"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("created main generation 3"));
    let listed = kvseal(dir.path(), &["keys", "list"], "");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("main    1    retained") && listed.contains("main    3    active"),
        "{listed}"
    );
}

#[test]
fn an_empty_sealed_secret_unseals_to_an_empty_secret() {
    let dir = fleet_with_one_generation();
    let empty = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: e\n  namespace: n\n";
    let sealed = kvseal(
        dir.path(),
        &["seal", "--cluster", "one", "--allow-empty-data"],
        empty,
    );
    assert!(sealed.status.success());
    let sealed = String::from_utf8(sealed.stdout).unwrap();
    assert!(sealed.contains("encryptedData: {}"));
    let out = kvseal(dir.path(), &["unseal"], &sealed);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("\ndata:"), "Go omits empty data: {text}");
}

#[test]
fn documents_that_are_not_sealed_secrets_are_named() {
    let cases = [
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            "this is a ConfigMap",
        ),
        (
            "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: x}\n",
            "has no spec",
        ),
        (
            "apiVersion: v2\nkind: SealedSecret\nmetadata: {name: x}\nspec: {}\n",
            "apiVersion is \"v2\"",
        ),
        (
            "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nspec: {}\n",
            "no metadata.name",
        ),
        (
            "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: [x}\n",
            "line 3",
        ),
    ];
    for (text, expected) in cases {
        let docs = split_documents(text);
        let err = SealedSecret::from_document(&docs[0])
            .unwrap_err()
            .to_string();
        assert!(err.contains(expected), "{text}: {err}");
    }
}

#[test]
fn unseal_asks_for_a_namespace_when_the_document_has_none() {
    let dir = tempfile::tempdir().unwrap();
    let key = common::data("vectors/rsa4096.pem");
    let doc = "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: x}\nspec:\n  encryptedData: {a: AgA=}\n";
    let out = kvseal(dir.path(), &["unseal", "--key", key.to_str().unwrap()], doc);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass -n NAMESPACE"));
}
