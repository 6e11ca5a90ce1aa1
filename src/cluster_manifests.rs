//! What GitOps applies to each cluster so that its controller loads the key set's
//! generations from Azure Key Vault: a Secrets Store CSI `SecretProviderClass` that syncs
//! each loaded generation into its own `kubernetes.io/tls` Secret, a key-sync Deployment
//! that keeps the CSI volume mounted (so the Secrets exist before the controller starts and
//! it never mints a key of its own), a `kustomization.yaml`, and a values patch for the
//! sealed-secrets Helm chart that switches key renewal off.
//!
//! Everything is built from typed Kubernetes objects and serialized, never templated.
//! Output is a function of the configuration and the store's listing: the same store gives
//! the same bytes, and a rotation adds or removes whole generations without touching the
//! entries of the others, which stay pinned to the same Key Vault version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    CSIVolumeSource, Container, PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements,
    SeccompProfile, SecurityContext, ServiceAccount, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

use crate::config::{ClusterConfig, Config};
use crate::fleet::ExportChange;
use crate::store::{GenerationInfo, GenerationState, KeyStore, StoreSpec};

/// The label the controller loads its keys by, and the only value it loads.
pub const KEY_LABEL: &str = "sealedsecrets.bitnami.com/sealed-secrets-key";
/// The value of [`KEY_LABEL`] on a key the controller loads.
pub const KEY_LABEL_ACTIVE: &str = "active";
/// Name of the key-sync Deployment and its ServiceAccount.
pub const KEY_SYNC_NAME: &str = "kvseal-key-sync";
/// The files written per cluster.
pub const FILES: [&str; 4] = [
    SECRET_PROVIDER_CLASS_FILE,
    KEY_SYNC_FILE,
    KUSTOMIZATION_FILE,
    HELM_VALUES_FILE,
];
const SECRET_PROVIDER_CLASS_FILE: &str = "secretproviderclass.yaml";
const KEY_SYNC_FILE: &str = "key-sync.yaml";
const KUSTOMIZATION_FILE: &str = "kustomization.yaml";
const HELM_VALUES_FILE: &str = "sealed-secrets-values.yaml";
const CSI_DRIVER: &str = "secrets-store.csi.k8s.io";
const MOUNT_PATH: &str = "/mnt/kvseal-keys";
/// The label that marks what kvseal manages.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

/// Why manifests could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestsError {
    /// The store is not a Key Vault, so there is nothing for the CSI driver to read.
    #[error(
        "cluster manifests load keys from Azure Key Vault, but the store is {0}; set store = \"azure-keyvault:https://NAME.vault.azure.net/\" (a dir: store is loaded with `kvseal cluster sync` instead)"
    )]
    NotKeyVault(String),
    /// A setting the manifests need is missing.
    #[error("{0}")]
    Missing(String),
    /// A generation has no pinned version.
    #[error(
        "key set {keyset:?} generation {generation} has no Key Vault version to pin; run `kvseal keys list` to check the store"
    )]
    Unpinned {
        /// Key set.
        keyset: String,
        /// Generation.
        generation: u32,
    },
    /// The store could not be listed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A file could not be written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: String,
        /// Cause.
        cause: std::io::Error,
    },
    /// Serialization failed (a bug).
    #[error("cannot write {file}: {message}")]
    Serialize {
        /// The file.
        file: String,
        /// The serializer's message.
        message: String,
    },
}

/// The Secrets Store CSI driver's `SecretProviderClass` (`secrets-store.csi.x-k8s.io/v1`).
/// The CRD is not in k8s-openapi; its field names are checked against the driver's CRD in
/// the tests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretProviderClass {
    /// `secrets-store.csi.x-k8s.io/v1`.
    pub api_version: String,
    /// `SecretProviderClass`.
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// What to fetch and which Secrets to sync.
    pub spec: SecretProviderClassSpec,
}

/// `SecretProviderClass.spec`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretProviderClassSpec {
    /// `azure`.
    pub provider: String,
    /// The Azure provider's parameters (all strings).
    pub parameters: BTreeMap<String, String>,
    /// The Kubernetes Secrets the driver keeps in sync with the mounted objects.
    pub secret_objects: Vec<SecretObject>,
}

/// One synced Secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretObject {
    /// The Secret's name.
    pub secret_name: String,
    /// `kubernetes.io/tls`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Labels on the Secret.
    pub labels: BTreeMap<String, String>,
    /// Its data keys, each from a mounted object.
    pub data: Vec<SecretObjectData>,
}

/// One data key of a synced Secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretObjectData {
    /// The mounted object (its alias).
    pub object_name: String,
    /// The data key.
    pub key: String,
}

/// One entry of the Azure provider's `objects` parameter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyVaultObject {
    /// The Key Vault secret name.
    pub object_name: String,
    /// `secret`.
    pub object_type: String,
    /// The pinned version.
    pub object_version: String,
    /// The file name in the mount, and the `objectName` of the synced Secret's data.
    pub object_alias: String,
}

/// The Azure provider's `objects` parameter: a YAML document `array:` of YAML strings.
#[derive(Serialize, Deserialize)]
struct ObjectsParameter {
    array: Vec<String>,
}

/// A `kustomization.yaml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Kustomization {
    /// `kustomize.config.k8s.io/v1beta1`.
    pub api_version: String,
    /// `Kustomization`.
    pub kind: String,
    /// The controller's namespace.
    pub namespace: String,
    /// The files.
    pub resources: Vec<String>,
}

/// The values this patch sets on the sealed-secrets Helm chart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HelmValues {
    /// The controller's name (its Deployment and Service).
    pub fullname_override: String,
    /// The controller's namespace.
    pub namespace: String,
    /// `"0"`: the controller never mints a key; kvseal rotates.
    pub keyrenewperiod: String,
}

/// One file to write, relative to the output directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestFile {
    /// `<cluster>/<file>`.
    pub path: PathBuf,
    /// Its bytes.
    pub contents: String,
}

/// Where the key set's generations live in Key Vault.
#[derive(Clone, Debug)]
pub struct VaultRef {
    /// The vault's name (the first label of its host).
    pub name: String,
    /// The secret name prefix.
    pub prefix: String,
}

impl VaultRef {
    /// The vault named by the configured store (or by `[manifests] keyvault_name`).
    pub fn from_config(config: &Config) -> Result<Self, ManifestsError> {
        let StoreSpec::AzureKeyVault { url, prefix } = &config.store else {
            let described = match &config.store {
                StoreSpec::Dir(path) => format!("dir:{}", path.display()),
                StoreSpec::AzureKeyVault { url, .. } => url.clone(),
            };
            return Err(ManifestsError::NotKeyVault(described));
        };
        let name = match &config.manifests.keyvault_name {
            Some(name) => name.clone(),
            None => {
                let host = url::Url::parse(url)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned))
                    .unwrap_or_default();
                let first = host.split('.').next().unwrap_or_default();
                if host.parse::<std::net::IpAddr>().is_ok() || first.is_empty() {
                    return Err(ManifestsError::Missing(format!(
                        "the vault URL {url} does not name the vault; set [manifests] keyvault_name"
                    )));
                }
                first.to_owned()
            }
        };
        Ok(Self {
            name,
            prefix: prefix.clone(),
        })
    }

    fn object_name(&self, keyset: &str, generation: u32) -> String {
        format!("{}-{keyset}-{generation}", self.prefix)
    }
}

/// The name of the synced Secret that holds one generation; stable for its life.
pub fn key_secret_name(keyset: &str, generation: u32) -> String {
    format!("kvseal-{keyset}-{generation}")
}

/// The `SecretProviderClass`'s name for a key set.
pub fn secret_provider_class_name(keyset: &str) -> String {
    format!("kvseal-{keyset}-keys")
}

fn labels(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([(MANAGED_BY.to_owned(), "kvseal".to_owned())]);
    for (k, v) in extra {
        labels.insert((*k).to_owned(), (*v).to_owned());
    }
    labels
}

fn to_yaml<T: Serialize>(file: &str, value: &T) -> Result<String, ManifestsError> {
    serde_saphyr::to_string(value).map_err(|e| ManifestsError::Serialize {
        file: file.to_owned(),
        message: e.to_string(),
    })
}

/// The generations a cluster loads, oldest first: staged, active, retained and compromised.
pub fn loaded_generations(generations: &[GenerationInfo]) -> Vec<&GenerationInfo> {
    let mut loaded: Vec<&GenerationInfo> = generations
        .iter()
        .filter(|g| g.state.is_loaded() && g.state != GenerationState::Pending)
        .collect();
    loaded.sort_by_key(|g| g.generation);
    loaded
}

/// The `SecretProviderClass` for a cluster.
pub fn secret_provider_class(
    config: &Config,
    cluster: &ClusterConfig,
    vault: &VaultRef,
    generations: &[GenerationInfo],
) -> Result<SecretProviderClass, ManifestsError> {
    let tenant = config.manifests.tenant_id.clone().ok_or_else(|| {
        ManifestsError::Missing(
            "set [manifests] tenant_id to the Azure tenant of the vault".to_owned(),
        )
    })?;
    let client_id = cluster.client_id.clone().ok_or_else(|| {
        ManifestsError::Missing(format!(
            "cluster {}: set client_id (or [manifests] client_id) to the client ID of the workload identity that reads the vault",
            cluster.name
        ))
    })?;
    let mut objects = Vec::new();
    let mut secret_objects = Vec::new();
    for generation in loaded_generations(generations) {
        let version = generation
            .version
            .clone()
            .ok_or_else(|| ManifestsError::Unpinned {
                keyset: generation.keyset.clone(),
                generation: generation.generation,
            })?;
        let alias = key_secret_name(&cluster.keyset, generation.generation);
        let object = KeyVaultObject {
            object_name: vault.object_name(&cluster.keyset, generation.generation),
            object_type: "secret".to_owned(),
            object_version: version,
            object_alias: alias.clone(),
        };
        objects.push(to_yaml(SECRET_PROVIDER_CLASS_FILE, &object)?);
        secret_objects.push(SecretObject {
            secret_name: alias.clone(),
            type_: "kubernetes.io/tls".to_owned(),
            labels: labels(&[(KEY_LABEL, KEY_LABEL_ACTIVE)]),
            // The driver takes tls.crt from the bundle's CERTIFICATE blocks and tls.key from
            // its private key block.
            data: ["tls.crt", "tls.key"]
                .map(|key| SecretObjectData {
                    object_name: alias.clone(),
                    key: key.to_owned(),
                })
                .to_vec(),
        });
    }
    let objects = to_yaml(
        SECRET_PROVIDER_CLASS_FILE,
        &ObjectsParameter { array: objects },
    )?;
    let parameters = BTreeMap::from([
        ("clientID".to_owned(), client_id),
        ("keyvaultName".to_owned(), vault.name.clone()),
        ("objects".to_owned(), objects),
        ("tenantId".to_owned(), tenant),
        ("usePodIdentity".to_owned(), "false".to_owned()),
    ]);
    Ok(SecretProviderClass {
        api_version: "secrets-store.csi.x-k8s.io/v1".to_owned(),
        kind: "SecretProviderClass".to_owned(),
        metadata: ObjectMeta {
            name: Some(secret_provider_class_name(&cluster.keyset)),
            namespace: Some(cluster.controller_namespace.clone()),
            labels: Some(labels(&[])),
            ..Default::default()
        },
        spec: SecretProviderClassSpec {
            provider: "azure".to_owned(),
            parameters,
            secret_objects,
        },
    })
}

/// The key-sync ServiceAccount and Deployment: one small pod that keeps the CSI volume
/// mounted, so that the driver keeps the key Secrets in sync.
pub fn key_sync(config: &Config, cluster: &ClusterConfig) -> (ServiceAccount, Deployment) {
    let namespace = Some(cluster.controller_namespace.clone());
    let selector = BTreeMap::from([(
        "app.kubernetes.io/name".to_owned(),
        KEY_SYNC_NAME.to_owned(),
    )]);
    let mut pod_labels = selector.clone();
    pod_labels.insert("azure.workload.identity/use".to_owned(), "true".to_owned());
    let service_account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(KEY_SYNC_NAME.to_owned()),
            namespace: namespace.clone(),
            labels: Some(labels(&[])),
            annotations: cluster.client_id.as_ref().map(|id| {
                BTreeMap::from([("azure.workload.identity/client-id".to_owned(), id.clone())])
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let limits = BTreeMap::from([
        ("cpu".to_owned(), Quantity("10m".to_owned())),
        ("memory".to_owned(), Quantity("16Mi".to_owned())),
    ]);
    let container = Container {
        name: "key-sync".to_owned(),
        image: Some(config.manifests.key_sync_image.clone()),
        resources: Some(ResourceRequirements {
            limits: Some(limits.clone()),
            requests: Some(limits),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(k8s_openapi::api::core::v1::Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "keys".to_owned(),
            mount_path: MOUNT_PATH.to_owned(),
            read_only: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let deployment = Deployment {
        metadata: ObjectMeta {
            name: Some(KEY_SYNC_NAME.to_owned()),
            namespace,
            labels: Some(labels(&[])),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                ..Default::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(KEY_SYNC_NAME.to_owned()),
                    automount_service_account_token: Some(true),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "keys".to_owned(),
                        csi: Some(CSIVolumeSource {
                            driver: CSI_DRIVER.to_owned(),
                            read_only: Some(true),
                            volume_attributes: Some(BTreeMap::from([(
                                "secretProviderClass".to_owned(),
                                secret_provider_class_name(&cluster.keyset),
                            )])),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    (service_account, deployment)
}

/// Every file for one cluster.
pub fn render_cluster(
    config: &Config,
    cluster: &ClusterConfig,
    vault: &VaultRef,
    generations: &[GenerationInfo],
) -> Result<Vec<ManifestFile>, ManifestsError> {
    let dir = Path::new(&cluster.name);
    let spc = secret_provider_class(config, cluster, vault, generations)?;
    let (service_account, deployment) = key_sync(config, cluster);
    let key_sync = format!(
        "{}---\n{}",
        to_yaml(KEY_SYNC_FILE, &service_account)?,
        to_yaml(KEY_SYNC_FILE, &deployment)?
    );
    let kustomization = Kustomization {
        api_version: "kustomize.config.k8s.io/v1beta1".to_owned(),
        kind: "Kustomization".to_owned(),
        namespace: cluster.controller_namespace.clone(),
        resources: vec![
            SECRET_PROVIDER_CLASS_FILE.to_owned(),
            KEY_SYNC_FILE.to_owned(),
        ],
    };
    let values = HelmValues {
        fullname_override: cluster.controller_name.clone(),
        namespace: cluster.controller_namespace.clone(),
        keyrenewperiod: "0".to_owned(),
    };
    let header = |what: &str| {
        format!(
            "# Generated by `kvseal manifests` for cluster {} (key set {}): {what}.\n# Do not edit; regenerate after every rotation.\n",
            cluster.name, cluster.keyset
        )
    };
    Ok(vec![
        ManifestFile {
            path: dir.join(SECRET_PROVIDER_CLASS_FILE),
            contents: header("the generations the cluster loads, pinned by version")
                + &to_yaml(SECRET_PROVIDER_CLASS_FILE, &spc)?,
        },
        ManifestFile {
            path: dir.join(KEY_SYNC_FILE),
            contents: header("keeps the key Secrets synced before the controller starts")
                + &key_sync,
        },
        ManifestFile {
            path: dir.join(KUSTOMIZATION_FILE),
            contents: header("the resources above") + &to_yaml(KUSTOMIZATION_FILE, &kustomization)?,
        },
        ManifestFile {
            path: dir.join(HELM_VALUES_FILE),
            contents: header("merge into the sealed-secrets chart's values; key renewal stays off")
                + &to_yaml(HELM_VALUES_FILE, &values)?,
        },
    ])
}

/// Renders the manifests of `clusters` from the store's listing and writes those that
/// changed under `out`, each atomically. Files of other clusters are left alone.
pub fn write_clusters(
    config: &Config,
    store: &dyn KeyStore,
    clusters: &[&ClusterConfig],
    out: &Path,
) -> Result<Vec<ExportChange>, ManifestsError> {
    let vault = VaultRef::from_config(config)?;
    let mut listings: BTreeMap<&str, Vec<GenerationInfo>> = BTreeMap::new();
    let mut changes = Vec::new();
    for cluster in clusters {
        if !listings.contains_key(cluster.keyset.as_str()) {
            listings.insert(&cluster.keyset, store.list(&cluster.keyset)?);
        }
        let generations = &listings[cluster.keyset.as_str()];
        for file in render_cluster(config, cluster, &vault, generations)? {
            let path = out.join(&file.path);
            let change = crate::fleet::write_if_changed(path.clone(), file.contents.as_bytes())
                .map_err(|cause| ManifestsError::Io {
                    path: path.display().to_string(),
                    cause,
                })?;
            changes.push(change);
        }
    }
    Ok(changes)
}
