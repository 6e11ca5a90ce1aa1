//! Crypto benchmark: RSA-4096 key generation against `openssl genrsa 4096`, sealing and
//! unsealing throughput for 1 KiB values, and the machine's `openssl speed rsa4096`
//! private-operation rate for reference. Run with `cargo bench --bench crypto`.
//!
//! It prints numbers; it asserts nothing, because speed depends on the machine.

use std::process::Command;
use std::time::{Duration, Instant};

use kvseal::format::{self, Scope, SessionKey};
use kvseal::keys::PrivateKey;

const KEYGEN_RUNS: usize = 15;
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(3);

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn timed<T>(f: impl FnOnce() -> T) -> Duration {
    let start = Instant::now();
    std::hint::black_box(f());
    start.elapsed()
}

fn main() {
    // `cargo test --all-targets` runs bench binaries too, without `--bench`; the full
    // benchmark takes minutes, so it runs only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("crypto benchmark: run it with `cargo bench --bench crypto`");
        return;
    }
    println!("kvseal crypto benchmark (one thread, release build)\n");

    // Interleave the two so that both see the same machine load.
    let (mut ours, mut openssl) = (Vec::new(), Vec::new());
    let scratch = std::env::temp_dir().join(format!("kvseal-bench-{}.pem", std::process::id()));
    for _ in 0..KEYGEN_RUNS {
        ours.push(timed(|| PrivateKey::generate(4096).expect("keygen")));
        openssl.push(timed(|| {
            let status = Command::new("openssl")
                .args(["genrsa", "-out"])
                .arg(&scratch)
                .arg("4096")
                .stderr(std::process::Stdio::null())
                .status()
                .expect("openssl is installed");
            assert!(status.success());
        }));
    }
    let _ = std::fs::remove_file(&scratch);
    let (ours_min, ours_max) = (
        ours.iter().min().copied().unwrap(),
        ours.iter().max().copied().unwrap(),
    );
    let ours_median = median(ours);
    let openssl_median = median(openssl);
    println!("RSA-4096 keygen, {KEYGEN_RUNS} runs each, interleaved");
    println!(
        "  kvseal (aws-lc-rs)       median {}  (min {}, max {})",
        secs(ours_median),
        secs(ours_min),
        secs(ours_max)
    );
    println!(
        "  openssl genrsa 4096      median {}  (includes process start)",
        secs(openssl_median)
    );
    println!(
        "  ratio kvseal/openssl     {:.2} ({})\n",
        ours_median.as_secs_f64() / openssl_median.as_secs_f64(),
        if ours_median <= openssl_median {
            "no slower"
        } else {
            "SLOWER"
        }
    );

    let key = PrivateKey::generate(4096).expect("keygen");
    let label = Scope::Strict.label("payments", "db-credentials");
    let value = vec![0x5au8; 1024];

    let start = Instant::now();
    let mut sealed = Vec::new();
    while start.elapsed() < THROUGHPUT_WINDOW {
        let out =
            format::seal(key.public_key(), &value, &label, &SessionKey::generate()).expect("seal");
        sealed.push(format::encode_base64(&out));
    }
    let seal_rate = sealed.len() as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut opened = 0usize;
    while start.elapsed() < THROUGHPUT_WINDOW {
        let text = &sealed[opened % sealed.len()];
        let bytes = format::decode_base64(text).expect("base64");
        let plain = format::open(&key, &bytes, &label).expect("open");
        assert_eq!(plain.len(), 1024);
        opened += 1;
    }
    let open_rate = opened as f64 / start.elapsed().as_secs_f64();
    println!("1 KiB values (RSA-OAEP + AES-256-GCM + base64)");
    println!("  seal                     {seal_rate:.0} values/s");
    println!("  unseal                   {open_rate:.0} values/s");

    let speed = Command::new("openssl")
        .args(["speed", "-seconds", "3", "rsa4096"])
        .output()
        .expect("openssl speed");
    let text = String::from_utf8_lossy(&speed.stdout);
    let sign_per_s = text
        .lines()
        .find(|l| l.trim_start().starts_with("rsa 4096 bits"))
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(|v| v.parse::<f64>().ok());
    match sign_per_s {
        Some(rate) => {
            println!("  openssl speed rsa4096    {rate:.0} private ops/s (sign), one thread");
            println!("  unseal / openssl bound   {:.2}", open_rate / rate);
        }
        None => println!(
            "  openssl speed rsa4096    (could not parse: {})",
            text.lines().last().unwrap_or_default()
        ),
    }
}
