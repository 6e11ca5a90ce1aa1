//! `kvseal scan` as CI runs it: planted cases in keys-example in every output format, real
//! kubeseal output from the corpus, public-certificate mode, exit codes, severities,
//! inline ignores and baselines.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// (code, file, document) of every finding that counts.
fn findings(report: &Value) -> Vec<(String, String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["suppressed"].is_null())
        .map(|f| {
            (
                f["code"].as_str().unwrap().to_owned(),
                f["file"].as_str().unwrap().to_owned(),
                f["document"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

const PLANTED: [(&str, &str, &str); 3] = [
    (
        "wrong-key",
        "apps/payments-api/overlays/dev/planted-wrong-key.yaml",
        "payments/feature-flags",
    ),
    (
        "scope-mismatch",
        "apps/payments-api/overlays/prod-us/planted-renamed.yaml",
        "payments/new-api-key",
    ),
    (
        "scope-mismatch",
        "apps/payments-api/overlays/stage/planted-scope-mismatch.yaml",
        "payments/webhook-token",
    ),
];

#[test]
fn keys_example_reports_the_planted_cases_and_nothing_else_in_every_format() {
    let root = common::repo_root();
    let out = common::kvseal(
        &root,
        &["scan", "keys-example", "--format", "json", "--fields"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    let expected: Vec<(String, String, String)> = PLANTED
        .iter()
        .map(|(c, f, d)| (c.to_string(), f.to_string(), d.to_string()))
        .collect();
    assert_eq!(findings(&report), expected);
    assert_eq!(report["verified"], true);
    // One private-key operation per field, renamed and wrong-scope ones included.
    assert_eq!(
        report["summary"]["privateKeyOperations"],
        report["summary"]["fields"]
    );
    // Every other field is attributed to a key set its clusters load.
    let fields = report["fields"].as_array().unwrap();
    assert!(fields.len() >= 15);
    let legacy = fields
        .iter()
        .find(|f| f["document"] == "payments/legacy-api-key")
        .unwrap();
    assert_eq!(legacy["sealedWith"]["keyset"], "prod");
    assert_eq!(legacy["sealedWith"]["generation"], 1);

    let human = common::kvseal(&root, &["scan", "keys-example"]);
    let human = String::from_utf8(human.stdout).unwrap();
    for (code, file, _) in PLANTED {
        assert!(
            human.contains(file) && human.contains(&format!("error[{code}]")),
            "{human}"
        );
    }
    assert!(human.contains("3 error(s), 0 warning(s)"), "{human}");

    let github = String::from_utf8(
        common::kvseal(&root, &["scan", "keys-example", "--format", "github"]).stdout,
    )
    .unwrap();
    assert_eq!(github.lines().count(), 3, "{github}");
    assert!(github.lines().all(
        |l| l.starts_with("::error file=apps/payments-api/overlays/")
            && l.contains(",line=11,title=kvseal ")
    ));
    assert!(github.contains("title=kvseal wrong-key::"));

    let azure = String::from_utf8(
        common::kvseal(&root, &["scan", "keys-example", "--format", "azure"]).stdout,
    )
    .unwrap();
    assert_eq!(azure.lines().count(), 3, "{azure}");
    assert!(azure.lines().all(
        |l| l.starts_with("##vso[task.logissue type=error;sourcepath=apps/")
            && l.contains(";linenumber=11;code=")
    ));

    let sarif_out = common::kvseal(&root, &["scan", "keys-example", "--format", "sarif"]);
    let sarif = json(&sarif_out);
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for result in results {
        assert!(
            result["partialFingerprints"]
                .as_object()
                .is_some_and(|o| !o.is_empty())
        );
        assert_eq!(
            result["locations"][0]["physicalLocation"]["region"]["startLine"],
            11
        );
    }
    validate_sarif(&sarif_out.stdout);
}

fn validate_sarif(sarif: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.sarif");
    std::fs::write(&file, sarif).unwrap();
    let script = common::repo_root().join("tests/interop/validate_sarif.mjs");
    let out = Command::new("node")
        .arg(&script)
        .arg(&file)
        .output()
        .expect("node runs (tests/run.sh installs the validator)");
    assert!(
        out.status.success(),
        "SARIF 2.1.0 schema: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn corpus_fields_are_attributed_and_undecryptable_ones_flagged() {
    let corpus = common::repo_root().join("../shared/corpus");
    let mut checked = 0;
    for entry in std::fs::read_dir(&corpus).unwrap() {
        let repo = entry.unwrap().path();
        let Ok(expected) = std::fs::read_to_string(repo.join("expected.json")) else {
            continue;
        };
        let expected: Value = serde_json::from_str(&expected).unwrap();
        let keys: Vec<String> = std::fs::read_dir(repo.join("keys"))
            .unwrap()
            .map(|e| e.unwrap().path().display().to_string())
            .collect();
        let out = common::kvseal(
            &repo,
            &["scan", ".", "--format", "json", "--key", &keys.join(",")],
        );
        let report = json(&out);
        for field in expected["fields"].as_array().unwrap() {
            let file = field["file"].as_str().unwrap();
            let name = field["field"].as_str().unwrap();
            let what = format!("{}/{file} {name}", repo.display());
            let reported = report["fields"].as_array().unwrap().iter().find(|f| {
                f["file"] == file
                    && f["field"] == name
                    && f["document"]
                        == format!(
                            "{}/{}",
                            field["namespace"].as_str().unwrap(),
                            field["name"].as_str().unwrap()
                        )
            });
            if field["decrypts"] == true {
                let reported = reported.unwrap_or_else(|| panic!("{what}: not in the report"));
                let key_file = Path::new(field["key"].as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let keyset = reported["sealedWith"]["keyset"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{what}: not attributed"));
                assert!(
                    keyset.starts_with(&key_file),
                    "{what}: attributed to {keyset}, expected {key_file}"
                );
                assert_eq!(reported["sealedWith"]["scope"], "strict", "{what}");
            } else {
                let flagged = report["findings"].as_array().unwrap().iter().any(|f| {
                    f["file"] == file
                        && (f["field"] == name || f["field"].is_null())
                        && (f["code"] == "malformed" || f["code"] == "unknown-key")
                });
                assert!(flagged, "{what}: not flagged");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 48, "every corpus field");
}

#[test]
fn a_renamed_or_moved_kubeseal_secret_is_a_scope_mismatch() {
    let corpus = common::repo_root().join("../shared/corpus/butterv__secret-sample-manifests");
    let original = std::fs::read_to_string(
        corpus.join("sealed/k8s__overlays__local__server__sealed-secret.yaml"),
    )
    .unwrap();
    let key = corpus.join("keys/sealed-secrets-key.yaml");
    let dir = tempfile::tempdir().unwrap();
    let docs = kvseal::manifest::split_documents(&original);
    let sealed = kvseal::manifest::SealedSecret::from_document(&docs[0]).unwrap();
    let (ns, name) = (
        sealed.metadata.namespace.clone(),
        sealed.metadata.name.clone(),
    );
    std::fs::write(
        dir.path().join("renamed.yaml"),
        original.replace(&format!("name: {name}"), "name: renamed-secret"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("moved.yaml"),
        original.replace(&format!("namespace: {ns}"), "namespace: elsewhere"),
    )
    .unwrap();
    let out = common::kvseal(
        dir.path(),
        &[
            "scan",
            ".",
            "--format",
            "json",
            "--key",
            key.to_str().unwrap(),
        ],
    );
    let report = json(&out);
    let codes: Vec<(String, String)> = findings(&report)
        .into_iter()
        .map(|(c, f, _)| (c, f))
        .collect();
    let fields = sealed.spec.encrypted_data.len();
    assert_eq!(
        codes
            .iter()
            .filter(|(c, f)| c == "scope-mismatch" && f == "renamed.yaml")
            .count(),
        fields,
        "{codes:?}"
    );
    assert_eq!(
        codes
            .iter()
            .filter(|(c, f)| c == "scope-mismatch" && f == "moved.yaml")
            .count(),
        fields,
        "{codes:?}"
    );
    assert_eq!(codes.len(), 2 * fields, "{codes:?}");
}

#[test]
fn public_certificates_only_use_the_annotation_and_say_so() {
    let root = common::repo_root();
    let out = common::kvseal(
        &root,
        &["scan", "keys-example", "--certs-only", "--format", "json"],
    );
    let report = json(&out);
    assert_eq!(report["verified"], false);
    // The annotation names the prod key in a dev overlay: found without private keys. The
    // scope cases need decryption, so they are not visible here.
    assert_eq!(
        findings(&report),
        vec![(
            "wrong-key".to_owned(),
            PLANTED[0].1.to_owned(),
            PLANTED[0].2.to_owned()
        )]
    );
    assert!(
        report["fields"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["sealedWith"]["verified"] == false)
    );
    let human =
        String::from_utf8(common::kvseal(&root, &["scan", "keys-example", "--certs-only"]).stdout)
            .unwrap();
    assert!(human.contains("unverified"), "{human}");
}

#[test]
fn exit_status_severities_ignores_and_baselines() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::copy_dir(&common::repo_root().join("keys-example"), root);

    // Clean subtree: 0. Findings: 1. No keys: 2.
    assert_eq!(
        common::kvseal(root, &["scan", "apps/payments-api/overlays/prod-eu"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(common::kvseal(root, &["scan", "."]).status.code(), Some(1));
    std::fs::rename(root.join("certs"), root.join("certs-gone")).unwrap();
    std::fs::rename(root.join("store"), root.join("store-gone")).unwrap();
    let out = common::kvseal(root, &["scan", "."]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no keys"));
    std::fs::rename(root.join("certs-gone"), root.join("certs")).unwrap();
    std::fs::rename(root.join("store-gone"), root.join("store")).unwrap();

    // Severity override: scope mismatches as warnings still fail with --fail-on warning only.
    let config = std::fs::read_to_string(root.join("kvseal.toml")).unwrap();
    std::fs::write(
        root.join("kvseal.toml"),
        format!(
            "{config}\n[scan.severity]\nscope-mismatch = \"warning\"\nwrong-key = \"warning\"\n"
        ),
    )
    .unwrap();
    assert_eq!(common::kvseal(root, &["scan", "."]).status.code(), Some(0));
    assert_eq!(
        common::kvseal(root, &["scan", ".", "--fail-on", "warning"])
            .status
            .code(),
        Some(1)
    );
    std::fs::write(root.join("kvseal.toml"), &config).unwrap();

    // Inline ignore on the wrong-key document.
    let planted = root.join(PLANTED[0].1);
    let text = std::fs::read_to_string(&planted).unwrap();
    let ignored = text.replacen(
        "  annotations:\n",
        "  annotations:\n    kvseal.dev/ignore: \"wrong-key: kept on purpose for the demo\"\n",
        1,
    );
    std::fs::write(&planted, ignored).unwrap();
    let report = json(&common::kvseal(root, &["scan", ".", "--format", "json"]));
    assert_eq!(report["summary"]["suppressedInline"], 1);
    assert_eq!(findings(&report).len(), 2);

    // Baseline: everything now known is accepted; a new problem still fails.
    assert!(
        common::kvseal(root, &["scan", ".", "--write-baseline", "baseline.json"])
            .status
            .code()
            == Some(1)
    );
    assert_eq!(
        common::kvseal(root, &["scan", ".", "--baseline", "baseline.json"])
            .status
            .code(),
        Some(0)
    );
    std::fs::write(
        root.join("apps/payments-api/overlays/dev/plain.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata: {name: p, namespace: n}\nstringData: {a: b}\n",
    )
    .unwrap();
    let out = common::kvseal(
        root,
        &[
            "scan",
            ".",
            "--baseline",
            "baseline.json",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        findings(&json(&out)),
        vec![(
            "plaintext-secret".into(),
            "apps/payments-api/overlays/dev/plain.yaml".into(),
            "n/p".into()
        )]
    );
}

#[test]
fn the_cache_makes_rescans_free_and_cannot_be_forged() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache.json");
    let root = common::repo_root();
    let scan = |cache: &Path| {
        let out = common::kvseal(
            &root,
            &[
                "scan",
                "keys-example",
                "--format",
                "json",
                "--cache",
                cache.to_str().unwrap(),
            ],
        );
        let report = json(&out);
        (
            report["summary"]["privateKeyOperations"].as_u64().unwrap(),
            findings(&report),
        )
    };
    let (first_ops, first) = scan(&cache);
    assert_eq!(first_ops, 17);
    let (second_ops, second) = scan(&cache);
    assert_eq!(
        second_ops, 0,
        "an unchanged repository costs no RSA operation"
    );
    assert_eq!(first, second);

    // Whoever can write the cache cannot move an entry to another key: the MAC fails, the
    // field is checked with RSA again, and the wrong-key finding stays.
    let dev_key = {
        let certs = std::fs::read(root.join("keys-example/certs/dev/0001.pem")).unwrap();
        kvseal::keys::Certificate::from_pem(&certs)
            .unwrap()
            .public_key()
            .fingerprint()
            .to_string()
    };
    let text = std::fs::read_to_string(&cache).unwrap();
    let forged_text: String = text
        .lines()
        .map(|line| {
            let mut parts: Vec<&str> = line.split(' ').collect();
            if !line.starts_with('#') && parts.len() == 4 {
                parts[1] = &dev_key;
            }
            parts.join(" ") + "\n"
        })
        .collect();
    assert_ne!(forged_text, text);
    let forged = dir.path().join("forged");
    std::fs::write(&forged, forged_text).unwrap();
    let (forged_ops, forged_findings) = scan(&forged);
    assert!(forged_ops > 0);
    assert_eq!(forged_findings, first);
}

#[test]
fn a_partial_scan_keeps_the_cache_of_files_it_did_not_visit() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let root = common::repo_root();
    let scan = |path: &str| {
        let out = common::kvseal(
            &root,
            &[
                "scan",
                path,
                "--format",
                "json",
                "--cache",
                cache.to_str().unwrap(),
            ],
        );
        json(&out)["summary"]["privateKeyOperations"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(scan("keys-example"), 17);
    // A pull-request scan of one file: its entry is rewritten, every other one copied.
    assert_eq!(
        scan("keys-example/apps/payments-api/overlays/dev/sealed-payments-db.yaml"),
        0
    );
    assert_eq!(scan("keys-example/apps/payments-api/overlays/prod-eu"), 0);
    assert_eq!(scan("keys-example"), 0, "nothing was lost from the cache");
    // A damaged cache only costs work again.
    std::fs::write(
        &cache,
        "# kvseal verified-result cache v2\nfile \"x\"\nnot an entry\n",
    )
    .unwrap();
    assert_eq!(scan("keys-example"), 17);
    assert_eq!(scan("keys-example"), 0);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "no temporary file is left beside the cache");
}

#[test]
fn since_scans_only_files_changed_since_a_revision() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    common::copy_dir(&common::repo_root().join("keys-example"), root);
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .current_dir(root)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["init", "-q"]);
    git(&["-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"]);
    git(&[
        "-c",
        "user.email=t@t",
        "-c",
        "user.name=t",
        "commit",
        "-qm",
        "base",
    ]);
    // A pull request that adds one wrong-key SealedSecret: only it is scanned.
    std::fs::copy(
        root.join(PLANTED[0].1),
        root.join("apps/payments-api/overlays/dev/new.yaml"),
    )
    .unwrap();
    git(&["add", "-A"]);
    let report = json(&common::kvseal(
        root,
        &["scan", ".", "--since", "HEAD", "--format", "json"],
    ));
    assert_eq!(report["summary"]["files"], 1);
    let codes: Vec<String> = findings(&report)
        .into_iter()
        .map(|(c, f, _)| format!("{c} {f}"))
        .collect();
    assert_eq!(
        codes,
        vec!["wrong-key apps/payments-api/overlays/dev/new.yaml".to_owned()]
    );
}

#[test]
fn the_cache_remembers_that_no_key_opens_a_value_until_the_keys_change() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let repo =
        common::repo_root().join("../shared/corpus/AndiDog__argo-cd-comparisonerror-control-repo");
    let key = repo.join("keys/sealed-secrets-master.key");
    let other = common::data("vectors/rsa4096.pem");
    let scan = |keys: &str| {
        let out = common::kvseal(
            &repo,
            &[
                "scan",
                ".",
                "--format",
                "json",
                "--key",
                keys,
                "--cache",
                cache.to_str().unwrap(),
            ],
        );
        let report = json(&out);
        (
            report["summary"]["privateKeyOperations"].as_u64().unwrap(),
            findings(&report).len(),
        )
    };
    let key = key.to_str().unwrap();
    assert_eq!(scan(key), (2, 1), "one field opens, one is unknown-key");
    assert_eq!(scan(key), (0, 1), "both answers come from the cache");
    // Another keyring: the negative entry no longer holds, the positive one still does.
    let both = format!("{key},{}", other.display());
    assert_eq!(
        scan(&both),
        (2, 1),
        "the unknown field is tried against both keys again"
    );
}
