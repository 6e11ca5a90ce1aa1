//! End-to-end flows through the `kvseal` binary that change files: a new key set from an
//! empty store, per-cluster files from a template, and merging into an existing
//! SealedSecret in its own format and scope.

mod common;

use std::path::Path;
use std::process::Output;

fn kvseal(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    common::kvseal_with_input(dir, args, stdin.unwrap_or_default().as_bytes())
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const CONFIG: &str = r#"
store = "dir:store"
cert_dir = "certs"
[keysets.shared]
[keysets.edge]
[clusters.eu]
keyset = "shared"
[clusters.us]
keyset = "shared"
[clusters.edge]
keyset = "edge"
"#;

const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api\n  namespace: web\nstringData:\n  token: t0k3n\n";

#[test]
fn generate_seal_per_cluster_and_unseal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("kvseal.toml"), CONFIG).unwrap();

    // Sealing before any key exists says what to run.
    let out = kvseal(root, &["seal", "--cluster", "eu"], Some(SECRET));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("kvseal keys generate --keyset shared"));

    ok(kvseal(
        root,
        &["keys", "generate", "--keyset", "shared"],
        None,
    ));
    ok(kvseal(
        root,
        &["keys", "generate", "--keyset", "edge"],
        None,
    ));
    assert!(root.join("certs/shared/0001.pem").is_file());

    ok(kvseal(
        root,
        &[
            "seal",
            "--all-clusters",
            "--out-template",
            "out/{cluster}.yaml",
        ],
        Some(SECRET),
    ));
    let eu = std::fs::read_to_string(root.join("out/eu.yaml")).unwrap();
    let us = std::fs::read_to_string(root.join("out/us.yaml")).unwrap();
    let edge = std::fs::read_to_string(root.join("out/edge.yaml")).unwrap();
    assert_eq!(
        eu, us,
        "clusters that share a key set get the same SealedSecret"
    );
    assert_ne!(eu, edge);
    assert!(eu.starts_with("---\n# kvseal: key set shared, clusters eu, us\n"));

    // Each file opens with its own key set only.
    let opened = ok(kvseal(
        root,
        &["unseal", "--keyset", "shared", "-f", "out/eu.yaml"],
        None,
    ));
    assert!(opened.contains("token: dDBrM24=\n"), "{opened}");
    let refused = kvseal(
        root,
        &["unseal", "--keyset", "shared", "-f", "out/edge.yaml"],
        None,
    );
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("token: no key could decrypt it"));

    // A new generation keeps the old one: older SealedSecrets still open, new ones use it.
    ok(kvseal(
        root,
        &["keys", "generate", "--keyset", "shared"],
        None,
    ));
    let listed = ok(kvseal(root, &["keys", "list", "--keyset", "shared"], None));
    assert!(
        listed.contains("shared  1    retained") && listed.contains("shared  2    active"),
        "{listed}"
    );
    ok(kvseal(root, &["unseal", "-f", "out/eu.yaml"], None));
    let resealed = ok(kvseal(root, &["seal", "--cluster", "eu"], Some(SECRET)));
    let fingerprint2 = std::fs::read(root.join("certs/shared/0002.pem")).unwrap();
    let cert2 = kvseal::keys::Certificate::from_pem(&fingerprint2).unwrap();
    assert!(
        resealed.contains(&cert2.public_key().fingerprint().to_string()),
        "seals with the newest generation"
    );
}

#[test]
fn merge_into_keeps_format_scope_and_existing_values() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("kvseal.toml"), CONFIG).unwrap();
    ok(kvseal(
        root,
        &["keys", "generate", "--keyset", "edge"],
        None,
    ));

    let json = ok(kvseal(
        root,
        &[
            "seal",
            "--cluster",
            "edge",
            "--scope",
            "namespace-wide",
            "-o",
            "json",
        ],
        Some(SECRET),
    ));
    std::fs::write(root.join("sealed.json"), &json).unwrap();

    // No --scope given: the file's namespace-wide scope is used, not the default.
    ok(kvseal(
        root,
        &[
            "seal",
            "--cluster",
            "edge",
            "--merge-into",
            "sealed.json",
            "--from-literal",
            "extra=more",
        ],
        None,
    ));
    let merged = std::fs::read_to_string(root.join("sealed.json")).unwrap();
    assert!(
        merged.starts_with("{\n  \"kind\": \"SealedSecret\""),
        "stays JSON: {merged}"
    );
    assert!(merged.contains("sealedsecrets.bitnami.com/namespace-wide"));
    let opened = ok(kvseal(
        root,
        &["unseal", "-f", "sealed.json", "-o", "json"],
        None,
    ));
    assert!(
        opened.contains("\"token\": \"dDBrM24=\"") && opened.contains("\"extra\": \"bW9yZQ==\""),
        "{opened}"
    );

    // A contradicting --scope is refused and the file is left as it was.
    let before = std::fs::read(root.join("sealed.json")).unwrap();
    let out = kvseal(
        root,
        &[
            "seal",
            "--cluster",
            "edge",
            "--merge-into",
            "sealed.json",
            "--scope",
            "strict",
            "--from-literal",
            "x=y",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("keeps the file's scope"));
    assert_eq!(std::fs::read(root.join("sealed.json")).unwrap(), before);
}
