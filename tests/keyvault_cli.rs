//! The quarterly rotation, as its pipeline runs it: the `kvseal` binary against the Key
//! Vault emulator, configured only by `[store] url` and the two environment variables a
//! user sets for an emulator (`KVSEAL_KEYVAULT_CA_FILE`, `KVSEAL_AZURE_ACCESS_TOKEN`).

mod keyvault;
mod loopback;

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn kvseal(dir: &Path, vault: &keyvault::Vault, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvseal"))
        .current_dir(dir)
        .args(args)
        .env_remove("KVSEAL_CONFIG")
        .env("KVSEAL_KEYVAULT_CA_FILE", &vault.ca_file)
        .env("KVSEAL_AZURE_ACCESS_TOKEN", keyvault::TOKEN)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn ok(dir: &Path, vault: &keyvault::Vault, args: &[&str]) -> String {
    let output = kvseal(dir, vault, args);
    assert!(
        output.status.success(),
        "kvseal {args:?}: {}",
        text(&output)
    );
    text(&output)
}

fn fails(dir: &Path, vault: &keyvault::Vault, args: &[&str]) -> String {
    let output = kvseal(dir, vault, args);
    assert!(
        !output.status.success(),
        "kvseal {args:?}: {}",
        text(&output)
    );
    text(&output)
}

#[test]
fn the_rotation_job_runs_end_to_end_against_key_vault() {
    let vault = keyvault::Vault::start();
    let repo = tempfile::tempdir().unwrap();
    let dir = repo.path();
    std::fs::write(
        dir.join("kvseal.toml"),
        format!(
            r#"cert_dir = "certs"

[store]
url = "azure-keyvault:{}"

[keysets.prod]
retain = 2

[clusters.prod-eu]
keyset = "prod"
paths = ["apps/**"]

[manifests]
out_dir = "clusters"
tenant_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
client_id = "11111111-2222-3333-4444-555555555555"
keyvault_name = "kv-fleet"
"#,
            vault.url
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("apps")).unwrap();
    std::fs::write(
        dir.join("secret.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: payments\nstringData:\n  password: hunter2\n",
    )
    .unwrap();

    ok(dir, &vault, &["keys", "generate", "--keyset", "prod"]);
    ok(
        dir,
        &vault,
        &[
            "seal",
            "-f",
            "secret.yaml",
            "--cluster",
            "prod-eu",
            "-w",
            "apps/sealed-db.yaml",
        ],
    );

    // The plan, and no change without --yes when nobody can confirm.
    let refused = fails(dir, &vault, &["keys", "rotate", "--keyset", "prod"]);
    assert!(refused.contains("stage a new generation 2"), "{refused}");
    assert!(refused.contains("pass --yes"), "{refused}");
    assert_eq!(vault.dump().len(), 1, "no change was made");

    let rotated = ok(dir, &vault, &["keys", "rotate", "--all", "--yes"]);
    assert!(rotated.contains("generation 2"), "{rotated}");
    let again = ok(
        dir,
        &vault,
        &["keys", "rotate", "--all", "--if-older-than", "90d", "--yes"],
    );
    assert!(again.contains("staged already"), "{again}");
    let list = ok(dir, &vault, &["keys", "list"]);
    assert!(list.contains("staged"), "{list}");

    // Clusters load the staged generation; the certificate directory still seals with 1.
    let spc =
        std::fs::read_to_string(dir.join("clusters/prod-eu/secretproviderclass.yaml")).unwrap();
    assert!(spc.contains("objectName: kvseal-prod-2"), "{spc}");
    assert!(!dir.join("certs/prod/0002.pem").exists());
    assert!(dir.join("certs/prod/0001.pem").exists());
    ok(dir, &vault, &["scan", "apps"]);

    // Promotion waits for the clusters, unless forced with a reason.
    let gate = fails(
        dir,
        &vault,
        &["keys", "promote", "--keyset", "prod", "--yes"],
    );
    assert!(gate.contains("prod-eu"), "{gate}");
    ok(
        dir,
        &vault,
        &[
            "keys",
            "promote",
            "--keyset",
            "prod",
            "--force",
            "--reason",
            "CHG-1234: both clusters checked by hand",
            "--yes",
        ],
    );
    assert!(dir.join("certs/prod/0002.pem").exists());
    let json = ok(dir, &vault, &["keys", "list", "--json"]);
    assert!(json.contains("CHG-1234"), "{json}");

    // Generation 1 still seals apps/sealed-db.yaml: retiring it is refused, by name.
    let in_use = fails(
        dir,
        &vault,
        &["keys", "retire", "--keyset", "prod", "1", "--yes"],
    );
    assert!(in_use.contains("apps/sealed-db.yaml"), "{in_use}");
    assert!(in_use.contains("kvseal reseal"), "{in_use}");
    ok(dir, &vault, &["reseal", "apps"]);
    ok(
        dir,
        &vault,
        &["keys", "retire", "--keyset", "prod", "1", "--yes"],
    );
    let retired = vault
        .dump()
        .into_iter()
        .find(|(name, ..)| name == "kvseal-prod-1")
        .unwrap();
    assert!(!retired.2, "a retired generation's secret is disabled");
    let spc =
        std::fs::read_to_string(dir.join("clusters/prod-eu/secretproviderclass.yaml")).unwrap();
    assert!(!spc.contains("objectName: kvseal-prod-1"), "{spc}");
    ok(dir, &vault, &["scan", "apps"]);
    let list = ok(dir, &vault, &["keys", "list"]);
    assert!(list.contains("retired"), "{list}");
}

#[test]
fn a_key_vault_that_refuses_the_identity_names_the_role_to_grant() {
    let vault = keyvault::Vault::start();
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(
        repo.path().join("kvseal.toml"),
        format!(
            "cert_dir = \"certs\"\nstore = \"azure-keyvault:{}\"\n[keysets.prod]\n",
            vault.url
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kvseal"))
        .current_dir(repo.path())
        .args(["keys", "list"])
        .env_remove("KVSEAL_CONFIG")
        .env("KVSEAL_KEYVAULT_CA_FILE", &vault.ca_file)
        .env("KVSEAL_AZURE_ACCESS_TOKEN", "not-the-token")
        .output()
        .unwrap();
    let message = text(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(message.contains("Key Vault Secrets"), "{message}");
}

/// A service principal with a certificate (`AZURE_CLIENT_CERTIFICATE_PATH`) signs in with
/// an RS256 client assertion that the emulator's token endpoint verifies independently
/// (the `rsa` crate), and uses the token it gets on the vault.
#[test]
fn a_service_principal_signs_in_with_its_certificate() {
    use kvseal::keys::{Certificate, CertificateRequest, PrivateKey};
    let vault = keyvault::Vault::start();
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(
        repo.path().join("kvseal.toml"),
        format!(
            "cert_dir = \"certs\"\n[store]\nurl = \"azure-keyvault:{}\"\n[keysets.prod]\n",
            vault.url
        ),
    )
    .unwrap();
    let key = PrivateKey::generate(2048).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let cert = Certificate::self_signed(
        &key,
        &CertificateRequest::new("kvseal-rotation", now, now + time::Duration::days(365)),
    )
    .unwrap();
    let pem_path = repo.path().join("sp.pem");
    std::fs::write(
        &pem_path,
        format!("{}{}", key.to_pkcs8_pem().expose(), cert.to_pem()),
    )
    .unwrap();
    let client_id = "22222222-3333-4444-5555-666666666666";
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kvseal"))
            .current_dir(repo.path())
            .args(args)
            .env_remove("KVSEAL_CONFIG")
            .env_remove("KVSEAL_AZURE_ACCESS_TOKEN")
            .env_remove("AZURE_FEDERATED_TOKEN_FILE")
            .env_remove("AZURE_CLIENT_SECRET")
            .env_remove("AZURE_CLIENT_CERTIFICATE_PASSWORD")
            .env("KVSEAL_KEYVAULT_CA_FILE", &vault.ca_file)
            .env("AZURE_AUTHORITY_HOST", &vault.url)
            .env("AZURE_TENANT_ID", "11111111-2222-3333-4444-555555555555")
            .env("AZURE_CLIENT_ID", client_id)
            .env("AZURE_CLIENT_CERTIFICATE_PATH", &pem_path)
            .output()
            .unwrap()
    };

    // Not yet trusted: refused, and the error says which credentials were tried.
    let refused = run(&["keys", "list", "--json"]);
    let message = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{message}");
    assert!(message.contains("client certificate"), "{message}");
    assert!(message.contains("AADSTS700027"), "{message}");

    vault.trust_client_certificate(client_id, key.public_key().spki_der());
    let output = run(&["keys", "generate", "--keyset", "prod"]);
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(vault.dump().len(), 1);
}
