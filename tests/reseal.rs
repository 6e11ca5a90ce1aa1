//! `kvseal reseal` after a new generation: stale fields move to the active generation, open
//! to the same plaintext, and everything else in the files stays byte for byte.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// Every Secret that the SealedSecrets under `root` unseal to, by document.
fn unsealed(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let (files, _) =
        kvseal::scan::find_manifest_files(&[root.join("apps"), root.join("infrastructure")]);
    for file in files {
        let name = file.to_string_lossy();
        if name.contains("planted") || !name.contains("sealed-") {
            continue;
        }
        let result = common::kvseal(
            root,
            &["unseal", "-f", file.to_str().unwrap(), "-o", "json"],
        );
        assert!(
            result.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&result.stderr)
        );
        out.insert(
            file.display().to_string(),
            String::from_utf8(result.stdout).unwrap(),
        );
    }
    out
}

fn codes(root: &Path) -> Vec<String> {
    let out = common::kvseal(root, &["scan", ".", "--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn reseal_after_a_new_generation_clears_stale_keys_and_keeps_plaintext_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::copy_dir(&common::repo_root().join("keys-example"), root);
    // A one-second rotation period makes every non-active generation stale once it ages.
    let config = std::fs::read_to_string(root.join("kvseal.toml")).unwrap();
    std::fs::write(
        root.join("kvseal.toml"),
        config.replace(
            "rotation_period = \"90d\"\nretain = 3",
            "rotation_period = \"1s\"\nretain = 3",
        ),
    )
    .unwrap();
    let before = unsealed(root);

    let generated = common::kvseal(root, &["keys", "generate", "--keyset", "prod"]);
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let stale = codes(root).iter().filter(|c| *c == "stale-key").count();
    assert!(stale >= 6, "every prod field is now stale: {stale}");

    let legacy = root.join("apps/payments-api/overlays/prod-eu/sealed-legacy-api-key.yaml");
    let legacy_before = std::fs::read_to_string(&legacy).unwrap();

    // A dry run changes nothing.
    let snapshot = std::fs::read(&legacy).unwrap();
    let dry = common::kvseal(root, &["reseal", "--dry-run"]);
    assert!(String::from_utf8_lossy(&dry.stderr).contains("would re-seal"));
    assert_eq!(std::fs::read(&legacy).unwrap(), snapshot);

    let out = common::kvseal(root, &["reseal"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The planted problems are left alone and named; they are not key-age problems.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("planted-wrong-key.yaml") && stderr.contains("planted-renamed.yaml"),
        "{stderr}"
    );
    assert!(
        stderr.contains("(prod generation 1 -> prod generation 3)"),
        "{stderr}"
    );

    let after_codes = codes(root);
    assert!(
        !after_codes.iter().any(|c| c == "stale-key"),
        "{after_codes:?}"
    );
    assert_eq!(
        unsealed(root),
        before,
        "every re-sealed secret opens to the same plaintext"
    );

    // Only the encrypted value and the sealing-key annotation changed, in place.
    let legacy_after = std::fs::read_to_string(&legacy).unwrap();
    assert_ne!(legacy_before, legacy_after);
    let differing: Vec<(&str, &str)> = legacy_before
        .lines()
        .zip(legacy_after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(legacy_before.lines().count(), legacy_after.lines().count());
    assert_eq!(differing.len(), 2, "{differing:#?}");
    assert!(
        differing
            .iter()
            .all(|(a, _)| a.contains("api-key: Ag") || a.contains("sealing-key-fingerprint"))
    );
    // Comments in re-sealed files survive.
    let overlay = std::fs::read_to_string(
        root.join("apps/payments-api/overlays/prod-eu/sealed-payments-db.yaml"),
    )
    .unwrap();
    assert!(
        overlay.starts_with("---\n# kvseal: key set prod, clusters prod-ap, prod-eu, prod-us\n")
    );
}

#[test]
fn a_shared_base_for_several_key_sets_is_left_alone_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::copy_dir(&common::repo_root().join("keys-example"), root);
    let base = root.join("apps/payments-api/base/sealed.yaml");
    std::fs::copy(
        root.join("apps/payments-api/overlays/dev/sealed-payments-db.yaml"),
        &base,
    )
    .unwrap();
    let before = std::fs::read(&base).unwrap();
    let out = common::kvseal(root, &["reseal", "--all", "apps/payments-api/base"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("per-cluster overlays"), "{stderr}");
    assert_eq!(std::fs::read(&base).unwrap(), before);
}
