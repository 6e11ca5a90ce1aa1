//! kvseal against Go's standard library (`tests/interop/gocheck`): the keys and certificates
//! kvseal generates parse as the controller parses them (`keyutil.ParsePrivateKeyPEM`, x509),
//! and values cross between Go's crypto/rsa + AES-GCM and kvseal in both directions.
//! `tests/run.sh` builds gocheck into target/.

mod common;

use std::path::PathBuf;

use kvseal::config::Config;
use kvseal::format::{self, Scope, SessionKey};
use kvseal::lifecycle;
use kvseal::store::{KeyStore, LocalDirStore};
use time::OffsetDateTime;

fn gocheck() -> PathBuf {
    let path = std::env::var_os("KVSEAL_GOCHECK")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_root().join("target/gocheck"));
    assert!(
        path.exists(),
        "gocheck is not built at {}: run `bash tests/run.sh`",
        path.display()
    );
    path
}

fn run(args: &[&std::ffi::OsStr], stdin: &[u8]) -> Result<Vec<u8>, String> {
    let out = common::run_with_input(&gocheck(), &std::env::temp_dir(), args, stdin);
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn go_parses_generated_keys_and_values_cross_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        "store = \"dir:store\"\ncert_dir = \"certs\"\n[keysets.k]\n[clusters.c]\nkeyset = \"k\"\n";
    let config = Config::parse(text, &dir.path().join("kvseal.toml"), dir.path()).unwrap();
    let store = LocalDirStore::new(dir.path().join("store"));
    let now = OffsetDateTime::now_utc();
    lifecycle::generate(&store, config.keyset("k").unwrap(), now).unwrap();
    lifecycle::generate(&store, config.keyset("k").unwrap(), now).unwrap();

    let mut not_befores = Vec::new();
    for generation in ["0001", "0002"] {
        let key = dir.path().join(format!("store/k/{generation}/tls.key"));
        let cert = dir.path().join(format!("store/k/{generation}/tls.crt"));
        let out = run(
            &["verify-key".as_ref(), key.as_os_str(), cert.as_os_str()],
            b"",
        )
        .unwrap_or_else(|e| panic!("Go refuses generation {generation}: {e}"));
        not_befores.push(
            String::from_utf8(out)
                .unwrap()
                .trim()
                .parse::<i64>()
                .unwrap(),
        );
    }
    assert!(
        not_befores[1] > not_befores[0],
        "Go sees NotBefore increase: {not_befores:?}"
    );

    let generation = store.load("k", 2).unwrap();
    let key_path = dir.path().join("store/k/0002/tls.key");
    let cert_path = dir.path().join("store/k/0002/tls.crt");
    for scope in Scope::ALL {
        let label = scope.label("ns", "name");
        let label_arg = std::ffi::OsString::from(String::from_utf8(label.clone()).unwrap());
        for value in [
            b"".as_slice(),
            b"go and rust".as_slice(),
            &common::pattern_1mib(),
        ] {
            // Go seals, kvseal opens.
            let sealed = run(&["seal".as_ref(), cert_path.as_os_str(), &label_arg], value).unwrap();
            let bytes = format::decode_base64(std::str::from_utf8(&sealed).unwrap()).unwrap();
            let opened = format::open(&generation.private_key, &bytes, &label).unwrap();
            assert_eq!(opened.expose(), value, "{scope}");
            // kvseal seals, Go opens.
            let ours = format::seal(
                generation.private_key.public_key(),
                value,
                &label,
                &SessionKey::generate(),
            )
            .unwrap();
            let opened = run(
                &["open".as_ref(), key_path.as_os_str(), &label_arg],
                format::encode_base64(&ours).as_bytes(),
            )
            .unwrap();
            assert_eq!(opened, value, "{scope}");
        }
        // Go refuses a value under another scope's label.
        let ours = format::seal(
            generation.private_key.public_key(),
            b"x",
            &label,
            &SessionKey::generate(),
        )
        .unwrap();
        let other = if scope == Scope::ClusterWide {
            "ns"
        } else {
            ""
        };
        assert!(
            run(
                &["open".as_ref(), key_path.as_os_str(), other.as_ref()],
                format::encode_base64(&ours).as_bytes()
            )
            .is_err()
        );
    }
}
