//! `kvseal manifests`: the files match a reviewed snapshot byte for byte, parse back into
//! the Kubernetes types they were built from, and the SecretProviderClass uses only field
//! names that the Secrets Store CSI driver's v1 CRD defines.

mod common;

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use kvseal::cluster_manifests::{
    self, HelmValues, KeyVaultObject, Kustomization, SecretProviderClass, VaultRef,
};
use kvseal::config::Config;
use kvseal::store::{GenerationInfo, GenerationState, KeyStore, LocalDirStore};
use serde_json::Value;

const CONFIG: &str = r#"
store = "azure-keyvault:https://kv-fleet.vault.azure.net/"
cert_dir = "certs"

[keysets.prod]

[clusters.prod-eu]
keyset = "prod"
client_id = "11111111-2222-3333-4444-555555555555"

[clusters.prod-us]
keyset = "prod"
controller_namespace = "sealed-secrets"
controller_name = "sealed-secrets"

[manifests]
tenant_id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
client_id = "99999999-8888-7777-6666-555555555555"
"#;

fn config() -> Config {
    Config::parse(CONFIG, Path::new("/repo/kvseal.toml"), Path::new("/repo")).unwrap()
}

/// The example store's prod generations, as Key Vault would list them: pinned versions,
/// one staged and one retired generation besides.
fn generations() -> Vec<GenerationInfo> {
    let store = LocalDirStore::new(common::repo_root().join("keys-example/store"));
    let mut listed = store.list("prod").unwrap();
    let dev = store.list("dev").unwrap().remove(0);
    let mut staged = dev.clone();
    staged.keyset = "prod".into();
    staged.generation = 3;
    staged.state = GenerationState::Staged;
    listed.push(staged);
    let mut retired = dev;
    retired.keyset = "prod".into();
    retired.generation = 4;
    retired.state = GenerationState::Retired;
    listed.push(retired);
    for g in &mut listed {
        g.version = Some(format!("{:032x}", 0xabc0 + g.generation));
    }
    listed
}

fn render(cluster: &str, generations: &[GenerationInfo]) -> Vec<cluster_manifests::ManifestFile> {
    let config = config();
    let vault = VaultRef::from_config(&config).unwrap();
    cluster_manifests::render_cluster(
        &config,
        config.cluster(cluster).unwrap(),
        &vault,
        generations,
    )
    .unwrap()
}

#[test]
fn manifests_match_the_snapshot() {
    let snapshots = common::data("manifests");
    for cluster in ["prod-eu", "prod-us"] {
        for file in render(cluster, &generations()) {
            let path = snapshots.join(&file.path);
            if std::env::var_os("KVSEAL_UPDATE_SNAPSHOTS").is_some() {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &file.contents).unwrap();
            }
            let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; run with KVSEAL_UPDATE_SNAPSHOTS=1 and review",
                    path.display()
                )
            });
            assert_eq!(
                file.contents,
                expected,
                "{} changed; if that is intended, run with KVSEAL_UPDATE_SNAPSHOTS=1 and review the diff",
                path.display()
            );
        }
    }
}

#[test]
fn output_is_deterministic_and_a_rotation_only_adds_or_removes_whole_generations() {
    let before = generations();
    assert_eq!(render("prod-eu", &before), render("prod-eu", &before));
    // Loaded: 1 (retained), 2 (active), 3 (staged); 4 is retired and not loaded.
    let spc = |generations: &[GenerationInfo]| {
        let config = config();
        cluster_manifests::secret_provider_class(
            &config,
            config.cluster("prod-eu").unwrap(),
            &VaultRef::from_config(&config).unwrap(),
            generations,
        )
        .unwrap()
    };
    let old = spc(&before);
    let names: Vec<&str> = old
        .spec
        .secret_objects
        .iter()
        .map(|o| o.secret_name.as_str())
        .collect();
    assert_eq!(names, ["kvseal-prod-1", "kvseal-prod-2", "kvseal-prod-3"]);

    // Generation 1 retires and a generation 5 is staged: entries for 2 and 3 are unchanged.
    let mut after = before.clone();
    after[0].state = GenerationState::Retired;
    let mut fifth = after[2].clone();
    fifth.generation = 5;
    fifth.version = Some("f".repeat(32));
    after.push(fifth);
    let new = spc(&after);
    let kept: Vec<_> = old.spec.secret_objects[1..].to_vec();
    assert_eq!(new.spec.secret_objects[..2], kept[..]);
    assert_eq!(new.spec.secret_objects[2].secret_name, "kvseal-prod-5");
    let objects = |spc: &SecretProviderClass| -> Vec<KeyVaultObject> {
        #[derive(serde::Deserialize)]
        struct Objects {
            array: Vec<String>,
        }
        let objects: Objects = serde_saphyr::from_str(&spc.spec.parameters["objects"]).unwrap();
        objects
            .array
            .iter()
            .map(|o| serde_saphyr::from_str(o).unwrap())
            .collect()
    };
    assert_eq!(objects(&new)[..2], objects(&old)[1..]);
    assert_eq!(objects(&old)[0].object_name, "kvseal-prod-1");
    assert_eq!(objects(&old)[0].object_version, format!("{:032x}", 0xabc1));
}

#[test]
fn manifests_parse_back_into_the_kubernetes_types() {
    for file in render("prod-eu", &generations()) {
        let name = file.path.file_name().unwrap().to_str().unwrap().to_owned();
        match name.as_str() {
            "secretproviderclass.yaml" => {
                let spc: SecretProviderClass = serde_saphyr::from_str(&file.contents).unwrap();
                assert_eq!(spc.metadata.namespace.as_deref(), Some("kube-system"));
                assert_eq!(spc.spec.provider, "azure");
                assert_eq!(spc.spec.parameters["keyvaultName"], "kv-fleet");
                for object in &spc.spec.secret_objects {
                    assert_eq!(object.type_, "kubernetes.io/tls");
                    assert_eq!(
                        object.labels[cluster_manifests::KEY_LABEL],
                        cluster_manifests::KEY_LABEL_ACTIVE
                    );
                }
            }
            "key-sync.yaml" => {
                let docs: Vec<&str> = file.contents.split("\n---\n").collect();
                assert_eq!(docs.len(), 2, "{}", file.contents);
                let account: ServiceAccount = serde_saphyr::from_str(docs[0]).unwrap();
                assert_eq!(
                    account.metadata.annotations.unwrap()["azure.workload.identity/client-id"],
                    "11111111-2222-3333-4444-555555555555"
                );
                let deployment: Deployment = serde_saphyr::from_str(docs[1]).unwrap();
                let pod = deployment.spec.unwrap().template.spec.unwrap();
                let csi = pod.volumes.unwrap().remove(0).csi.unwrap();
                assert_eq!(csi.driver, "secrets-store.csi.k8s.io");
                assert_eq!(
                    csi.volume_attributes.unwrap()["secretProviderClass"],
                    "kvseal-prod-keys"
                );
            }
            "kustomization.yaml" => {
                let k: Kustomization = serde_saphyr::from_str(&file.contents).unwrap();
                assert_eq!(k.resources, ["secretproviderclass.yaml", "key-sync.yaml"]);
            }
            "sealed-secrets-values.yaml" => {
                let values: HelmValues = serde_saphyr::from_str(&file.contents).unwrap();
                assert_eq!(values.keyrenewperiod, "0");
                assert_eq!(values.fullname_override, "sealed-secrets-controller");
                assert!(
                    file.contents.contains("keyrenewperiod: \"0\""),
                    "the chart needs the string \"0\": {}",
                    file.contents
                );
            }
            other => panic!("unexpected file {other}"),
        }
    }
}

/// Every key of `value` is a property the schema declares (or falls under
/// `additionalProperties`), recursively.
fn check_against_schema(value: &Value, schema: &Value, path: &str, errors: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (key, child) in map {
                let child_path = format!("{path}.{key}");
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(child_schema), _) => {
                        check_against_schema(child, child_schema, &child_path, errors)
                    }
                    (None, Some(child_schema)) if child_schema.is_object() => {
                        check_against_schema(child, child_schema, &child_path, errors)
                    }
                    // `metadata` is `type: object` with no properties: any ObjectMeta.
                    (None, _) if properties.is_none() && schema["type"] == "object" => {}
                    _ => errors.push(format!("{child_path} is not in the CRD")),
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_against_schema(item, &schema["items"], &format!("{path}[{i}]"), errors);
            }
        }
        Value::String(_) if schema["type"] != "string" => errors.push(format!(
            "{path} is a string; the CRD says {}",
            schema["type"]
        )),
        _ => {}
    }
}

#[test]
fn the_secret_provider_class_uses_only_fields_of_the_csi_v1_crd() {
    let crd_text =
        std::fs::read_to_string(common::data("csi/secretproviderclass-crd.yaml")).unwrap();
    let crd: Value = serde_saphyr::from_str(&crd_text).unwrap();
    assert_eq!(crd["spec"]["names"]["kind"], "SecretProviderClass");
    let v1 = crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v1")
        .expect("the CRD serves v1");
    assert_eq!(v1["storage"], true);
    let schema = &v1["schema"]["openAPIV3Schema"];

    let config = config();
    let spc = cluster_manifests::secret_provider_class(
        &config,
        config.cluster("prod-eu").unwrap(),
        &VaultRef::from_config(&config).unwrap(),
        &generations(),
    )
    .unwrap();
    assert_eq!(
        spc.api_version,
        format!("{}/v1", crd["spec"]["group"].as_str().unwrap())
    );
    let value = serde_json::to_value(&spc).unwrap();
    let mut errors = Vec::new();
    check_against_schema(&value, schema, "", &mut errors);
    assert!(errors.is_empty(), "{errors:#?}");

    // The check itself catches a misspelt field.
    let mut wrong = value.clone();
    wrong["spec"]["secretObjects"][0]["secretname"] = Value::String("x".into());
    let mut errors = Vec::new();
    check_against_schema(&wrong, schema, "", &mut errors);
    assert_eq!(
        errors,
        [".spec.secretObjects[0].secretname is not in the CRD"]
    );
}

#[test]
fn a_directory_store_is_told_to_use_key_vault_or_cluster_sync() {
    let config = Config::parse(
        &CONFIG.replace(
            "azure-keyvault:https://kv-fleet.vault.azure.net/",
            "dir:store",
        ),
        Path::new("/repo/kvseal.toml"),
        Path::new("/repo"),
    )
    .unwrap();
    let error = VaultRef::from_config(&config).unwrap_err().to_string();
    assert!(error.contains("azure-keyvault"), "{error}");
}
