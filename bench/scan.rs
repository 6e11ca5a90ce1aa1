//! Scanner benchmark: a synthetic GitOps repository (5 clusters, 3 key sets with 3
//! generations each, 1–4 fields per SealedSecret, about 10% wrong-key, unknown-key and
//! scope-mismatch cases), scanned with all cores, against the machine's RSA-4096 private
//! operation bound from `openssl speed -multi $(nproc) rsa4096`.
//!
//! `cargo bench --bench scan` (2,000 documents); `cargo bench --bench scan -- --docs 2000,20000`.
//! Each scan runs in a child process so that its peak RSS is its own.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use kvseal::config::Config;
use kvseal::keys::{Certificate, CertificateRequest, PrivateKey, PublicKey};
use kvseal::manifest::{OutputFormat, SealOptions, SealedSecret, Secret};
use kvseal::report::{ReportFormat, ReportWriter};
use kvseal::scan::{self, Keyring, ScanOptions};
use kvseal::secret::SecretBytes;
use kvseal::store::{GenerationState, KeyStore, LocalDirStore};
use time::OffsetDateTime;

const CONFIG: &str = r#"
store = "dir:store"
cert_dir = "certs"
[keysets.prod]
[keysets.stage]
[keysets.dev]
[clusters.prod-eu]
keyset = "prod"
paths = ["apps/*/overlays/prod-eu/**"]
[clusters.prod-us]
keyset = "prod"
paths = ["apps/*/overlays/prod-us/**"]
[clusters.prod-ap]
keyset = "prod"
paths = ["apps/*/overlays/prod-ap/**"]
[clusters.stage]
keyset = "stage"
paths = ["apps/*/overlays/stage/**"]
[clusters.dev]
keyset = "dev"
paths = ["apps/*/overlays/dev/**"]
"#;
const CLUSTERS: [(&str, &str); 5] = [
    ("prod-eu", "prod"),
    ("prod-us", "prod"),
    ("prod-ap", "prod"),
    ("stage", "stage"),
    ("dev", "dev"),
];

fn arg_after(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// A small deterministic generator, so that every run builds the same repository.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn child(dir: &Path, cache: Option<&Path>) {
    let cache = cache.map(scan::VerifiedCache::open);
    let config = Config::load(&dir.join("kvseal.toml")).expect("config");
    let store = config.store.open().expect("store");
    let keyring = Keyring::from_store(&config, store.as_ref()).expect("keys");
    let options = ScanOptions {
        config: Some(&config),
        keyring: &keyring,
        root: dir.to_path_buf(),
        now: OffsetDateTime::now_utc(),
        baseline: Default::default(),
        collect_fields: false,
        progress: None,
        cache: cache.as_ref(),
    };
    if std::env::var_os("KVSEAL_BENCH_BREAKDOWN").is_some() {
        // Private operations per field by outcome, from the first 600 files scanned one by one.
        let mut per: BTreeMap<String, (u64, usize)> = BTreeMap::new();
        let (files, _) = scan::find_manifest_files(&[dir.to_path_buf()]);
        for f in files.iter().take(600) {
            let r = scan::scan(std::slice::from_ref(f), &options);
            let outcome = r
                .findings
                .first()
                .map_or("clean".to_string(), |x| x.code.to_string());
            let e = per.entry(outcome).or_default();
            e.0 += r.summary.private_operations;
            e.1 += r.summary.field_count;
        }
        for (outcome, (ops, fields)) in per {
            eprintln!(
                "  {outcome:<16} {:.2} private ops per field ({fields} fields)",
                ops as f64 / fields as f64
            );
        }
    }
    // As `kvseal scan -o json` runs: the report streamed as the scan goes.
    let ops_before = kvseal::keys::private_operations();
    let start = Instant::now();
    let mut by_code: BTreeMap<String, usize> = BTreeMap::new();
    let mut report =
        ReportWriter::begin(std::io::sink(), ReportFormat::Json, false, true).expect("report");
    let summary = scan::scan_each(&[dir.to_path_buf()], &options, &mut |outcome| {
        for f in &outcome.findings {
            *by_code.entry(f.code.to_string()).or_default() += 1;
        }
        report.file(&outcome).expect("report");
    });
    report.finish(&summary).expect("report");
    let seconds = start.elapsed().as_secs_f64();
    let ops = kvseal::keys::private_operations() - ops_before;
    if let Some(cache) = &cache {
        cache.save().expect("cache written");
    }
    println!(
        "{}",
        serde_json::json!({"seconds": seconds, "fields": summary.field_count, "docs": summary.sealed_secrets,
            "ops": ops, "rss_kib": peak_rss_kib(), "findings": by_code})
    );
}

struct Keys {
    /// (keyset, generation, key)
    generations: Vec<(String, u32, PrivateKey)>,
    foreign: PrivateKey,
}

fn make_keys(dir: &Path) -> Keys {
    let store = LocalDirStore::new(dir.join("store"));
    let now = OffsetDateTime::now_utc();
    let mut generations = Vec::new();
    for keyset in ["prod", "stage", "dev"] {
        for generation in 1..=3u32 {
            let key = PrivateKey::generate(4096).unwrap();
            let start = now - time::Duration::days(i64::from(3 - generation) * 30);
            let cert = Certificate::self_signed(
                &key,
                &CertificateRequest::new(
                    "sealed-secret",
                    start,
                    start + time::Duration::days(3650),
                ),
            )
            .unwrap();
            let state = if generation == 3 {
                GenerationState::Active
            } else {
                GenerationState::Retained
            };
            store
                .create(keyset, generation, &key, &cert, state)
                .unwrap();
            generations.push((keyset.to_owned(), generation, key));
        }
    }
    Keys {
        generations,
        foreign: PrivateKey::generate(4096).unwrap(),
    }
}

fn public_of<'k>(keys: &'k Keys, keyset: &str, generation: u32) -> &'k PublicKey {
    keys.generations
        .iter()
        .find(|(k, g, _)| k == keyset && *g == generation)
        .map(|(_, _, key)| key.public_key())
        .unwrap()
}

/// What a repository holds: its fields, and the fewest private operations that give a
/// definitive answer for all of them. A field some known key opens needs one (that key,
/// tried first); a field no known key opens needs one per known key that could have sealed
/// it (same size, modulus above the RSA part), since each must be ruled out.
struct Repo {
    fields: usize,
    minimum_ops: usize,
}

fn keys_to_rule_out(keys: &Keys, sealed: &SealedSecret) -> usize {
    sealed
        .spec
        .encrypted_data
        .values()
        .map(|value| {
            let bytes = kvseal::format::decode_base64(value).unwrap();
            let envelope = kvseal::format::Envelope::parse(&bytes).unwrap();
            keys.generations
                .iter()
                .filter(|(_, _, key)| {
                    let modulus = key.public_key().modulus();
                    modulus.len() == envelope.rsa_ciphertext.len()
                        && envelope.rsa_ciphertext < modulus
                })
                .count()
        })
        .sum()
}

fn make_repo(dir: &Path, keys_dir: &Path, keys: &Keys, docs: usize) -> Repo {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("kvseal.toml"), CONFIG).unwrap();
    let link = dir.join("store");
    if !link.exists() {
        std::os::unix::fs::symlink(keys_dir.join("store"), &link).unwrap();
    }
    let mut rng = Lcg(42);
    let mut fields = 0;
    let mut minimum_ops = 0;
    for i in 0..docs {
        let (cluster, keyset) = CLUSTERS[i % CLUSTERS.len()];
        let field_count = 1 + rng.below(4) as usize;
        let mut data = BTreeMap::new();
        for f in 0..field_count {
            let value: Vec<u8> = (0..32).map(|_| rng.below(256) as u8).collect();
            data.insert(format!("field-{f}"), SecretBytes::new(value));
        }
        fields += field_count;
        let name = format!("secret-{i}");
        let secret = Secret::from_values(&name, "apps", data);
        // About 10% broken, in three equal parts; the rest sealed with an active or
        // retained generation of the right key set.
        let case = rng.below(30);
        let (public, rename) = match case {
            0 => (
                public_of(keys, if keyset == "dev" { "stage" } else { "dev" }, 3),
                false,
            ), // wrong-key
            1 => (keys.foreign.public_key(), false), // unknown-key
            2 => (public_of(keys, keyset, 3), true), // renamed: scope-mismatch
            _ => (public_of(keys, keyset, 2 + rng.below(2) as u32), false),
        };
        let sealed = SealedSecret::seal(
            &secret,
            public,
            SealOptions {
                record_fingerprint: case != 1,
            },
        )
        .unwrap();
        minimum_ops += if case == 1 {
            keys_to_rule_out(keys, &sealed)
        } else {
            field_count
        };
        let mut text = sealed.render(OutputFormat::Yaml);
        if rename {
            text = text.replace(
                &format!("name: {name}\n"),
                &format!("name: {name}-renamed\n"),
            );
        }
        let path = dir.join(format!(
            "apps/app-{}/overlays/{cluster}/sealed-{i}.yaml",
            i / 50
        ));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    Repo {
        fields,
        minimum_ops,
    }
}

fn openssl_bound() -> Option<f64> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let out = Command::new("openssl")
        .args([
            "speed",
            "-multi",
            &cores.to_string(),
            "-seconds",
            "5",
            "rsa4096",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("rsa 4096 bits"))?;
    line.split_whitespace().nth(5)?.parse().ok()
}

fn main() {
    if let Some(dir) = arg_after("--scan-child") {
        return child(
            Path::new(&dir),
            arg_after("--cache").as_deref().map(Path::new),
        );
    }
    if !std::env::args().any(|a| a == "--bench") {
        println!("scan benchmark: run it with `cargo bench --bench scan`");
        return;
    }
    let sizes: Vec<usize> = arg_after("--docs")
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![2000]);
    let work = tempfile::tempdir().unwrap();
    println!("generating 10 RSA-4096 keys ...");
    let keys = make_keys(work.path());
    let bound = openssl_bound();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "openssl speed -multi {cores} rsa4096: {} private ops/s\n",
        bound.map_or("?".into(), |b| format!("{b:.0}"))
    );
    for docs in sizes {
        let repo = work.path().join(format!("repo-{docs}"));
        let Repo {
            fields,
            minimum_ops,
        } = make_repo(&repo, work.path(), &keys, docs);
        let run = |cache: Option<&Path>| -> serde_json::Value {
            let mut command = Command::new(std::env::current_exe().unwrap());
            command.args(["--scan-child", repo.to_str().unwrap()]);
            if let Some(cache) = cache {
                command.arg("--cache").arg(cache);
            }
            let out = command.output().unwrap();
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
        };
        let cache = work.path().join(format!("cache-{docs}.json"));
        let result = run(Some(&cache));
        let cached = run(Some(&cache));
        let seconds = result["seconds"].as_f64().unwrap();
        let ops = result["ops"].as_f64().unwrap();
        let scanned = result["fields"].as_f64().unwrap();
        assert_eq!(scanned as usize, fields);
        let ops_per_s = ops / seconds;
        println!("{docs} SealedSecrets, {fields} fields, {cores} threads");
        println!("  scan time            {seconds:.2} s");
        println!("  fields per second    {:.0}", scanned / seconds);
        println!(
            "  private ops / field  {:.3} (fewest possible for definitive answers: {:.3})",
            ops / scanned,
            minimum_ops as f64 / scanned
        );
        println!("  private ops / s      {ops_per_s:.0}");
        if let Some(bound) = bound {
            println!("  ratio to openssl     {:.2}", ops_per_s / bound);
        }
        println!(
            "  peak RSS             {:.1} MiB",
            result["rss_kib"].as_f64().unwrap() / 1024.0
        );
        println!(
            "  cached re-scan       {:.2} s, {} private ops, peak RSS {:.1} MiB",
            cached["seconds"].as_f64().unwrap(),
            cached["ops"],
            cached["rss_kib"].as_f64().unwrap() / 1024.0
        );
        println!("  findings             {}\n", result["findings"]);
    }
}
