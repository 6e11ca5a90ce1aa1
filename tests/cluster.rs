//! `kvseal cluster status|sync`, `cert fetch`, `validate` and the promote gate, run as the
//! binary against fake API servers (tests/kubeapi) over HTTPS. The binary gets nothing but
//! `KUBECONFIG` (and a `HOME` with no `.kube`), as a user's CI job would.

mod common;
mod kubeapi;
mod loopback;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use hyper::Method;
use k8s_openapi::jiff::Timestamp;
use kubeapi::{FakeApiServer, Fault, write_kubeconfig};
use kvseal::keys::{Certificate, PrivateKey};
use kvseal::store::{GenerationState, KeyStore, LocalDirStore};
use serde_json::Value;

const KEYSET: &str = "fleet";

/// A repository with a directory store, two clusters (east and west) each behind its own
/// fake API server, and a kubeconfig with a context for each.
struct Fleet {
    dir: tempfile::TempDir,
    east: FakeApiServer,
    west: FakeApiServer,
    kubeconfig: PathBuf,
    store: LocalDirStore,
}

fn hours_ago(hours: u64) -> Timestamp {
    Timestamp::now() - Duration::from_secs(hours * 3600)
}

impl Fleet {
    fn new() -> Self {
        Self::with_config("context = \"ctx-west\"\n")
    }

    /// `west_extra` ends the west cluster's table (e.g. its `context`).
    fn with_config(west_extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("kvseal.toml"),
            format!(
                "store = \"dir:store\"\ncert_dir = \"certs\"\n[keysets.{KEYSET}]\nretain = 2\n\
                 [clusters.east]\nkeyset = \"{KEYSET}\"\ncontext = \"ctx-east\"\npaths = [\"east/**\"]\n\
                 [clusters.west]\nkeyset = \"{KEYSET}\"\npaths = [\"west/**\"]\n{west_extra}"
            ),
        )
        .unwrap();
        let (east, west) = (FakeApiServer::start(), FakeApiServer::start());
        let kubeconfig = dir.path().join("kubeconfig");
        write_kubeconfig(&kubeconfig, &[("ctx-east", &east), ("ctx-west", &west)]);
        let store = LocalDirStore::new(dir.path().join("store"));
        Fleet {
            dir,
            east,
            west,
            kubeconfig,
            store,
        }
    }

    /// Stores a generation whose certificate started `days_ago` days ago.
    fn generation(&self, generation: u32, state: GenerationState, days_ago: i64) -> PrivateKey {
        let key = PrivateKey::generate(2048).unwrap();
        let cert = common::certificate_since(&key, days_ago);
        self.store
            .create(KEYSET, generation, &key, &cert, state)
            .unwrap();
        key
    }

    fn certificate(&self, generation: u32) -> Certificate {
        self.store
            .list(KEYSET)
            .unwrap()
            .into_iter()
            .find(|g| g.generation == generation)
            .and_then(|g| g.certificate)
            .unwrap()
    }

    /// Puts a generation into a cluster as the CSI driver would: `kvseal-fleet-N`.
    fn load(&self, server: &FakeApiServer, generation: u32, created: Timestamp) {
        let loaded = self.store.load(KEYSET, generation).unwrap();
        server.add_key_secret(
            &format!("kvseal-{KEYSET}-{generation}"),
            "active",
            self.certificate(generation).to_pem().as_bytes(),
            loaded.private_key.to_pkcs8_pem().expose().as_bytes(),
            created,
        );
    }

    fn kvseal(&self, args: &[&str]) -> Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_kvseal"))
            .current_dir(self.dir.path())
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    fn status_json(&self, cluster: &str) -> (Option<i32>, Value) {
        let out = self.kvseal(&["cluster", "status", "--cluster", cluster, "-o", "json"]);
        let json: Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
        (out.status.code(), json["clusters"][0].clone())
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn codes(status: &Value) -> Vec<String> {
    status["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_owned())
        .collect()
}

fn presence(status: &Value) -> Vec<(u64, String, String)> {
    status["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["generation"].as_u64().unwrap(),
                g["state"].as_str().unwrap().to_owned(),
                g["in_cluster"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn owned(rows: &[(u64, &str, &str)]) -> Vec<(u64, String, String)> {
    rows.iter()
        .map(|(g, s, p)| (*g, s.to_string(), p.to_string()))
        .collect()
}

#[test]
fn a_healthy_cluster_has_no_findings() {
    let fleet = Fleet::new();
    fleet.generation(1, GenerationState::Retained, 200);
    fleet.generation(2, GenerationState::Active, 20);
    fleet.load(&fleet.east, 1, hours_ago(48));
    fleet.load(&fleet.east, 2, hours_ago(24));
    fleet.east.start_controller();
    fleet.east.add_sealed_secret("apps", "db", true, "");

    let (code, status) = fleet.status_json("east");
    assert_eq!(code, Some(0), "{status:#}");
    assert_eq!(
        presence(&status),
        owned(&[(1, "retained", "loaded"), (2, "active", "loaded")])
    );
    assert_eq!(status["serving"]["generation"], 2);
    assert_eq!(status["key_renewal"], "off");
    assert_eq!(status["context"], "ctx-east");
    assert!(codes(&status).is_empty(), "{status:#}");
    // Five reads a cluster: key Secrets, Service, cert.pem, Deployment, SealedSecrets.
    assert_eq!(fleet.east.seen().len(), 5, "{:#?}", fleet.east.seen());

    let out = fleet.kvseal(&["cluster", "status", "--cluster", "east"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cluster east (context ctx-east)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("seals with:   generation 2 (active)"),
        "{stdout}"
    );
    assert!(stdout.contains("key renewal:  off"), "{stdout}");
}

#[test]
fn promote_waits_for_the_lagging_cluster_then_sync_loads_it() {
    let fleet = Fleet::new();
    fleet.generation(1, GenerationState::Active, 20);
    // As `keys rotate` stages it: a certificate older than the active one's, so that the
    // controllers keep sealing with generation 1.
    fleet.generation(2, GenerationState::Staged, 21);
    for server in [&fleet.east, &fleet.west] {
        fleet.load(server, 1, hours_ago(48));
    }
    fleet.load(&fleet.east, 2, hours_ago(2));
    fleet.east.start_controller();
    fleet.west.start_controller();

    let (code, west) = fleet.status_json("west");
    assert_eq!(
        code,
        Some(0),
        "a staged key not loaded yet is a warning: {west:#}"
    );
    assert_eq!(
        presence(&west),
        owned(&[(1, "active", "loaded"), (2, "staged", "missing")])
    );
    assert_eq!(codes(&west), ["staged-key-missing"]);

    let out = fleet.kvseal(&["keys", "promote", "--keyset", KEYSET, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cluster west: no Secret labelled"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("cluster east:"),
        "east has loaded it: {stderr}"
    );
    let states: Vec<_> = fleet
        .store
        .list(KEYSET)
        .unwrap()
        .iter()
        .map(|g| g.state)
        .collect();
    assert_eq!(states, [GenerationState::Active, GenerationState::Staged]);

    let out = fleet.kvseal(&["cluster", "sync", "--cluster", "west", "--restart", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = fleet.kvseal(&["keys", "promote", "--keyset", KEYSET, "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let states: Vec<_> = fleet
        .store
        .list(KEYSET)
        .unwrap()
        .iter()
        .map(|g| g.state)
        .collect();
    assert_eq!(states, [GenerationState::Retained, GenerationState::Active]);

    // Promotion re-issued generation 2's certificate with a later NotBefore; until the
    // clusters get it, their controllers still seal with generation 1, and status says so.
    let (code, east) = fleet.status_json("east");
    assert_eq!(code, Some(1), "{east:#}");
    assert_eq!(codes(&east), ["wrong-sealing-key"]);
    assert_eq!(east["serving"]["generation"], 1);
    let out = fleet.kvseal(&["cluster", "sync", "--all", "--restart", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for cluster in ["east", "west"] {
        let (code, status) = fleet.status_json(cluster);
        assert_eq!(code, Some(0), "{status:#}");
        assert_eq!(status["serving"]["generation"], 2, "{status:#}");
    }
}

#[test]
fn a_controller_minted_key_that_serves_is_an_error() {
    let fleet = Fleet::new();
    fleet.generation(1, GenerationState::Active, 20);
    fleet.load(&fleet.east, 1, hours_ago(48));
    // Key renewal left on: the controller minted a key of its own, newer than ours.
    fleet
        .east
        .set_deployment(hours_ago(30 * 24), &["--key-renew-period", "720h"]);
    let minted = PrivateKey::generate(2048).unwrap();
    let minted_cert = common::certificate_since(&minted, 0);
    fleet.east.add_key_secret(
        "sealed-secrets-keyx7k2p",
        "active",
        minted_cert.to_pem().as_bytes(),
        minted.to_pkcs8_pem().expose().as_bytes(),
        hours_ago(1),
    );
    fleet.east.start_controller();

    let (code, status) = fleet.status_json("east");
    assert_eq!(code, Some(1), "{status:#}");
    let mut found = codes(&status);
    found.sort();
    assert_eq!(
        found,
        ["foreign-key", "key-renewal-on", "wrong-sealing-key"]
    );
    assert_eq!(status["serving"]["secret"], "sealed-secrets-keyx7k2p");
    assert_eq!(status["foreign"][0]["secret"], "sealed-secrets-keyx7k2p");
    assert_eq!(status["key_renewal"]["on"], "every 720h");
    let out = fleet.kvseal(&["cluster", "status", "--cluster", "east"]);
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(human.contains("seals with:   foreign key "), "{human}");
    assert!(
        human.contains("error[wrong-sealing-key] service sealed-secrets-controller: the controller seals with a foreign key"),
        "{human}"
    );

    // sync leaves the minted key alone (what it sealed must keep opening) and says so.
    let out = fleet.kvseal(&["cluster", "sync", "--cluster", "east", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("leaving Secret sealed-secrets-keyx7k2p alone"),
        "{}",
        text(&out)
    );
    assert!(fleet.east.writes().is_empty(), "{:?}", fleet.east.writes());
}

#[test]
fn a_missing_generation_is_an_error() {
    let fleet = Fleet::new();
    fleet.generation(1, GenerationState::Retained, 200);
    fleet.generation(2, GenerationState::Active, 20);
    fleet.load(&fleet.east, 2, hours_ago(24));
    fleet.east.start_controller();
    let (code, status) = fleet.status_json("east");
    assert_eq!(code, Some(1), "{status:#}");
    assert_eq!(
        presence(&status),
        owned(&[(1, "retained", "missing"), (2, "active", "loaded")])
    );
    assert_eq!(codes(&status), ["key-missing"]);
    let message = status["findings"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("retained generation 1 is not loaded"),
        "{message}"
    );
}

#[test]
fn a_retired_generation_still_loaded_is_relabelled_by_sync_and_kept() {
    let fleet = Fleet::new();
    fleet.generation(1, GenerationState::Retired, 400);
    fleet.generation(2, GenerationState::Active, 20);
    fleet.load(&fleet.east, 1, hours_ago(48));
    fleet.load(&fleet.east, 2, hours_ago(24));
    fleet.east.start_controller();

    let (code, status) = fleet.status_json("east");
    assert_eq!(code, Some(0), "a warning: {status:#}");
    assert_eq!(codes(&status), ["retired-key-loaded"]);
    let out = fleet.kvseal(&[
        "cluster",
        "status",
        "--cluster",
        "east",
        "--fail-on",
        "warning",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let out = fleet.kvseal(&["cluster", "sync", "--cluster", "east", "--yes", "--restart"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let secret = fleet.east.secret("kvseal-fleet-1").expect("never deleted");
    assert_eq!(
        secret.metadata.labels.unwrap()[kubeapi::KEY_LABEL],
        "retired"
    );
    assert!(secret.data.unwrap().contains_key("tls.key"));
    let (code, status) = fleet.status_json("east");
    assert_eq!(code, Some(0), "{status:#}");
    assert!(codes(&status).is_empty(), "{status:#}");
    assert_eq!(
        presence(&status),
        owned(&[(1, "retired", "missing"), (2, "active", "loaded")])
    );
}

#[test]
fn sealed_secrets_that_fail_to_sync_are_listed_with_their_message() {
    let fleet = Fleet::new();
    fleet.generation(1, GenerationState::Active, 20);
    fleet.load(&fleet.east, 1, hours_ago(24));
    fleet.east.start_controller();
    fleet.east.add_sealed_secret("apps", "db", true, "");
    fleet.east.add_sealed_secret(
        "apps",
        "api",
        false,
        "no key could decrypt secret (password)",
    );
    fleet
        .east
        .add_sealed_secret("web", "tls", false, "no key could decrypt secret (tls.key)");

    let (code, status) = fleet.status_json("east");
    assert_eq!(code, Some(1), "{status:#}");
    assert_eq!(
        codes(&status),
        ["sealedsecret-not-synced", "sealedsecret-not-synced"]
    );
    assert_eq!(status["not_synced"][0]["name"], "api");
    assert_eq!(
        status["not_synced"][0]["message"],
        "no key could decrypt secret (password)"
    );
    assert_eq!(status["not_synced"][1]["namespace"], "web");
}

#[test]
fn sync_from_empty_then_again_changes_nothing() {
    let fleet = Fleet::new();
    fleet.generation(1, GenerationState::Retained, 200);
    fleet.generation(2, GenerationState::Active, 20);
    fleet.generation(3, GenerationState::Staged, 21);
    fleet.east.start_controller();

    // No terminal and no --yes: the plan is shown, nothing is written.
    let out = fleet.kvseal(&["cluster", "sync", "--cluster", "east"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(fleet.east.writes().is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("create Secret kvseal-fleet-3"),
        "{}",
        text(&out)
    );

    let out = fleet.kvseal(&["cluster", "sync", "--cluster", "east", "--yes", "--restart"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let writes = fleet.east.writes();
    assert_eq!(writes.len(), 4, "three applies and a restart: {writes:?}");
    for write in &writes[..3] {
        assert_eq!(write.method, Method::PATCH);
        assert_eq!(
            write.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
        assert!(
            write.path_and_query.contains("fieldManager=kvseal"),
            "{write:?}"
        );
    }
    assert!(
        writes[3]
            .path_and_query
            .contains("/deployments/sealed-secrets-controller")
    );
    for generation in 1..=3 {
        let secret = fleet
            .east
            .secret(&format!("kvseal-fleet-{generation}"))
            .unwrap();
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let labels = secret.metadata.labels.unwrap();
        assert_eq!(labels[kubeapi::KEY_LABEL], "active");
        assert_eq!(labels["kvseal.dev/generation"], generation.to_string());
        let data = secret.data.unwrap();
        assert_eq!(
            data["tls.crt"].0,
            fleet.certificate(generation).to_pem().into_bytes()
        );
        // The key is the store's, read back by an independent implementation.
        let key = common::oracle_private_key(&data["tls.key"].0);
        let spki = rsa::pkcs8::EncodePublicKey::to_public_key_der(&key.to_public_key()).unwrap();
        assert_eq!(
            spki.as_bytes(),
            fleet.certificate(generation).public_key().spki_der()
        );
    }
    let (code, status) = fleet.status_json("east");
    assert_eq!(code, Some(0), "{status:#}");
    assert_eq!(
        presence(&status),
        owned(&[
            (1, "retained", "loaded"),
            (2, "active", "loaded"),
            (3, "staged", "loaded")
        ])
    );
    assert_eq!(status["serving"]["generation"], 2);

    let out = fleet.kvseal(&["cluster", "sync", "--cluster", "east", "--yes", "--restart"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        fleet.east.writes().len(),
        4,
        "the second sync wrote nothing"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("east: in sync"), "{stderr}");
    assert!(stderr.contains("nothing to change"), "{stderr}");
}

#[test]
fn sync_writes_only_to_a_cluster_whose_context_is_named() {
    let fleet = Fleet::with_config("");
    fleet.generation(1, GenerationState::Active, 20);
    let out = fleet.kvseal(&["cluster", "sync", "--cluster", "west", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cluster west: kvseal.toml names no kubeconfig context"),
        "{stderr}"
    );
    assert!(fleet.west.seen().is_empty() && fleet.east.seen().is_empty());

    let out = fleet.kvseal(&[
        "cluster",
        "sync",
        "--cluster",
        "west",
        "--context",
        "ctx-west",
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(fleet.west.secret("kvseal-fleet-1").is_some());
    assert!(fleet.east.writes().is_empty());

    // Reading is fine with the current context (ctx-east), and the output says which.
    let (_, status) = fleet.status_json("west");
    assert_eq!(status["context"], "ctx-east");
}

#[test]
fn cert_fetch_prints_what_the_controller_serves() {
    let fleet = Fleet::new();
    fleet.generation(1, GenerationState::Active, 20);
    fleet.load(&fleet.east, 1, hours_ago(24));
    fleet.east.start_controller();
    let out = fleet.kvseal(&["cert", "fetch", "--cluster", "east"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(out.stdout, fleet.certificate(1).to_pem().into_bytes());
    let proxied: Vec<_> = fleet
        .east
        .seen()
        .into_iter()
        .map(|s| s.path_and_query)
        .collect();
    assert_eq!(
        proxied,
        [
            "/api/v1/namespaces/kube-system/services/sealed-secrets-controller",
            "/api/v1/namespaces/kube-system/services/http:sealed-secrets-controller:http/proxy/v1/cert.pem"
        ]
    );
}

#[test]
fn validate_tells_a_decryptable_document_from_an_undecryptable_one() {
    let fleet = Fleet::new();
    fleet.generation(1, GenerationState::Active, 20);
    fleet.load(&fleet.east, 1, hours_ago(24));
    fleet.east.start_controller();
    let out = fleet.kvseal(&["keys", "export-certs"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: apps\nstringData:\n  password: hunter2\n";
    std::fs::write(fleet.dir.path().join("secret.yaml"), secret).unwrap();
    let out = fleet.kvseal(&[
        "seal",
        "--cluster",
        "east",
        "-f",
        "secret.yaml",
        "-w",
        "good.yaml",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The same ciphertext under another name: sealed for apps/db, so it cannot open here.
    let good = std::fs::read_to_string(fleet.dir.path().join("good.yaml")).unwrap();
    let renamed = good.replace("name: db", "name: db-copy");
    assert_ne!(good, renamed);
    std::fs::write(
        fleet.dir.path().join("both.yaml"),
        format!("{good}{renamed}"),
    )
    .unwrap();

    // The controller's rate limit answers the first try with 429.
    fleet.east.fault(
        Some(Method::POST),
        "/proxy/v1/verify",
        Fault::Throttle(1),
        Some(1),
    );
    let out = fleet.kvseal(&["validate", "--cluster", "east", "-f", "both.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("SealedSecret apps/db: cluster east can decrypt it"),
        "{stdout}"
    );
    assert!(
        stdout.contains("SealedSecret apps/db-copy: cluster east cannot decrypt it"),
        "{stdout}"
    );
    let verifies: Vec<_> = fleet
        .east
        .seen()
        .into_iter()
        .filter(|s| s.path_and_query.ends_with("/v1/verify"))
        .collect();
    assert_eq!(
        verifies.len(),
        3,
        "one 429, retried, then the second document"
    );
    for pair in verifies.windows(2) {
        assert!(
            pair[1].at.duration_since(pair[0].at) >= Duration::from_millis(450),
            "at most two requests a second"
        );
    }

    let out = fleet.kvseal(&["validate", "--cluster", "east", "-f", "good.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn refusals_name_the_cluster_the_context_and_the_verb() {
    let fleet = Fleet::new();
    fleet.generation(1, GenerationState::Active, 20);
    fleet.load(&fleet.east, 1, hours_ago(24));
    fleet.east.start_controller();

    // RBAC: the identity may not list Secrets.
    fleet
        .east
        .fault(Some(Method::GET), "/secrets?", Fault::Status(403), Some(1));
    let out = fleet.kvseal(&["cluster", "status", "--cluster", "east"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "cluster east (context ctx-east): cannot list secrets in namespace kube-system: forbidden (403)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("docs/clusters.md"), "{stdout}");

    // RBAC on a write.
    fleet
        .east
        .fault(Some(Method::PATCH), "/secrets/", Fault::Status(403), None);
    fleet.generation(2, GenerationState::Staged, 21);
    let out = fleet.kvseal(&["cluster", "sync", "--cluster", "east", "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "cluster east (context ctx-east): cannot patch secrets/kvseal-fleet-2 in namespace kube-system: forbidden (403)"
        ),
        "{stderr}"
    );

    // No controller Service.
    fleet.east.remove_service();
    let out = fleet.kvseal(&["cert", "fetch", "--cluster", "east"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot get services/sealed-secrets-controller in namespace kube-system: not found (404)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("is the sealed-secrets controller installed"),
        "{stderr}"
    );

    // 429 on a read is waited out.
    let west = &fleet.west;
    fleet.load(west, 1, hours_ago(24));
    west.start_controller();
    west.fault(Some(Method::GET), "/secrets?", Fault::Throttle(1), Some(2));
    let (code, status) = fleet.status_json("west");
    assert_eq!(code, Some(0), "{status:#}");

    // An API server that does not answer in time.
    west.fault(
        Some(Method::GET),
        "/deployments/",
        Fault::Delay(Duration::from_secs(5)),
        None,
    );
    let out = fleet.kvseal(&[
        "cluster",
        "status",
        "--cluster",
        "west",
        "--request-timeout",
        "1s",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cluster west (context ctx-west): cannot get deployments/sealed-secrets-controller in namespace kube-system: no answer within 1 s"),
        "{stdout}"
    );
}

#[test]
fn an_unreachable_cluster_is_named_and_the_others_are_still_read() {
    let fleet = Fleet::new();
    fleet.generation(1, GenerationState::Active, 20);
    fleet.load(&fleet.east, 1, hours_ago(24));
    fleet.east.start_controller();
    // West's API server is gone: a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let text_config = std::fs::read_to_string(&fleet.kubeconfig).unwrap();
    let west_url = fleet.west.url().to_owned();
    std::fs::write(
        &fleet.kubeconfig,
        text_config.replace(&west_url, &format!("https://127.0.0.1:{port}")),
    )
    .unwrap();
    let out = fleet.kvseal(&["cluster", "status", "--all", "-o", "json"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["clusters"][0]["readable"], true);
    assert_eq!(json["clusters"][1]["readable"], false);
    let findings = json["clusters"][1]["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "said once: {findings:#?}");
    let message = findings[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "cluster west (context ctx-west): cannot list secrets in namespace kube-system: the API server cannot be reached"
        ),
        "{message}"
    );

    // A context the kubeconfig lacks.
    let out = fleet.kvseal(&[
        "cert",
        "fetch",
        "--cluster",
        "east",
        "--context",
        "ctx-nowhere",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cluster east: context ctx-nowhere is not in the kubeconfig"),
        "{stderr}"
    );
    assert!(stderr.contains("ctx-east, ctx-west"), "{stderr}");
}

#[test]
fn without_a_controller_start_time_loaded_keys_are_unconfirmed_and_promote_waits() {
    let fleet = Fleet::new();
    fleet.generation(1, GenerationState::Active, 20);
    fleet.generation(2, GenerationState::Staged, 21);
    for server in [&fleet.east, &fleet.west] {
        fleet.load(server, 1, hours_ago(48));
        fleet.load(server, 2, hours_ago(24));
        server.start_controller();
    }
    fleet.west.forget_controller_start();
    let (code, west) = fleet.status_json("west");
    assert_eq!(code, Some(0), "{west:#}");
    assert_eq!(
        presence(&west),
        owned(&[(1, "active", "loaded"), (2, "staged", "unconfirmed")])
    );
    assert_eq!(codes(&west), ["controller-start-unknown"]);
    let out = fleet.kvseal(&["keys", "promote", "--keyset", KEYSET, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cluster west: the Deployment does not say"),
        "{stderr}"
    );

    // A key Secret that appeared after the controller started is not loaded either.
    let fleet = Fleet::new();
    fleet.generation(1, GenerationState::Active, 20);
    fleet.load(&fleet.east, 1, hours_ago(48));
    fleet.east.start_controller();
    fleet.generation(2, GenerationState::Staged, 21);
    fleet.load(&fleet.east, 2, Timestamp::now() + Duration::from_secs(5));
    let (_, east) = fleet.status_json("east");
    assert_eq!(
        presence(&east),
        owned(&[(1, "active", "loaded"), (2, "staged", "awaiting-restart")])
    );
    assert_eq!(codes(&east), ["restart-needed"]);
}

#[test]
fn every_cluster_code_is_documented_with_its_severity() {
    let doc = std::fs::read_to_string(common::repo_root().join("docs/clusters.md")).unwrap();
    for code in kvseal::cluster::ClusterCode::ALL {
        let row = format!("| `{}` | {} | ", code.as_str(), code.severity());
        assert!(doc.contains(&row), "docs/clusters.md lacks the row {row:?}");
    }
}

#[test]
fn a_key_secret_rewritten_after_the_controller_started_waits_for_a_restart() {
    let fleet = Fleet::new();
    fleet.generation(1, GenerationState::Active, 20);
    fleet.generation(2, GenerationState::Staged, 21);
    fleet.load(&fleet.east, 1, hours_ago(48));
    fleet.load(&fleet.east, 2, hours_ago(48));
    fleet.east.start_controller();
    // Created long ago, but written again after the controller started (a CSI sync that
    // updated it, say): the controller holds what it read at start, not this.
    fleet
        .east
        .rewrite_secret("kvseal-fleet-2", Timestamp::now() + Duration::from_secs(60));
    let (_, east) = fleet.status_json("east");
    assert_eq!(
        presence(&east),
        owned(&[(1, "active", "loaded"), (2, "staged", "awaiting-restart")])
    );
    let out = fleet.kvseal(&["keys", "promote", "--keyset", KEYSET, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cluster east: its key Secret appeared after the controller started"),
        "{}",
        text(&out)
    );

    // Nothing to apply, but the controller must restart, and sync --restart does that.
    let out = fleet.kvseal(&["cluster", "sync", "--cluster", "east", "--restart", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let writes = fleet.east.writes();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(
        writes[0]
            .path_and_query
            .ends_with("/deployments/sealed-secrets-controller")
    );
}
