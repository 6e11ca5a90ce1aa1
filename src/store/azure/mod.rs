//! Azure Key Vault, through the official SDK (`azure_security_keyvault_secrets`).
//!
//! Layout: one secret per generation, named `<prefix>-<keyset>-<generation>`, whose value
//! is a PEM bundle (the PKCS#8 private key, then the certificate), content type
//! `application/x-pem-file`, tagged with the key set, generation, state, fingerprint and
//! validity. A new generation is always a new secret name, so cluster manifests pin each
//! generation by name and version. kvseal never deletes or purges: retiring disables.
//!
//! Key Vault has no create-if-absent. Two writers of the same generation both create a
//! version; the oldest version (then the smallest version id) wins, deterministically,
//! and the other writer marks its own version `superseded`, disables it, and reports
//! that the generation already exists.
//!
//! Promotion re-issues a staged generation's certificate for the same key. That is the
//! one time a generation gets a second version: tagged `kvseal-replaces=<old version>`,
//! it counts only once it has read back whole and the old version is tagged
//! `superseded`. The old version stays enabled, because cluster manifests may still pin it.

mod credential;
mod retry;

use std::collections::HashMap;
use std::sync::Arc;

use azure_core::http::{ClientOptions, Transport};
use azure_security_keyvault_secrets::models::{
    SecretAttributes, SecretClientGetSecretOptions,
    SecretClientListSecretPropertiesVersionsOptions, SecretClientUpdateSecretPropertiesOptions,
    SecretProperties, SetSecretParameters, UpdateSecretPropertiesParameters,
};
use azure_security_keyvault_secrets::{SecretClient, SecretClientOptions};
use futures::TryStreamExt as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Generation, GenerationInfo, GenerationState, KeyStore, StoreError};
use crate::keys::{Certificate, Fingerprint, PrivateKey};
use crate::secret::SecretString;

pub use credential::{ACCESS_TOKEN_ENV, ChainedCredential};
pub use retry::RetryLimits;

/// Environment variable naming an extra trusted root certificate (PEM), for an HTTPS
/// emulator on loopback.
pub const CA_FILE_ENV: &str = "KVSEAL_KEYVAULT_CA_FILE";
/// The secret name prefix when the configuration sets none.
pub const DEFAULT_PREFIX: &str = "kvseal";
const CONTENT_TYPE: &str = "application/x-pem-file";

const TAG_KEYSET: &str = "kvseal-keyset";
const TAG_GENERATION: &str = "kvseal-generation";
const TAG_STATE: &str = "kvseal-state";
const TAG_FINGERPRINT: &str = "kvseal-fingerprint";
const TAG_NOT_BEFORE: &str = "kvseal-not-before";
const TAG_NOT_AFTER: &str = "kvseal-not-after";
const TAG_CREATED: &str = "kvseal-created";
const TAG_REASON: &str = "kvseal-reason";
const TAG_REPLACES: &str = "kvseal-replaces";
/// More secrets (or versions of one) than any vault kvseal manages holds: a listing that
/// pages past this is a vault (or proxy) that keeps answering `nextLink`, not data.
const MAX_LISTED: usize = 100_000;

/// The state of a version that lost a race for its generation number.
const SUPERSEDED: &str = "superseded";

/// A key store in an Azure Key Vault.
pub struct AzureKeyVaultStore {
    url: String,
    prefix: String,
    client: SecretClient,
    runtime: tokio::runtime::Runtime,
}

/// One version of a kvseal secret, as listed (no value).
#[derive(Clone, Debug)]
struct Listed {
    name: String,
    version: String,
    enabled: bool,
    created: Option<OffsetDateTime>,
    tags: HashMap<String, String>,
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// `name` and `version` from a secret id `https://<vault>/secrets/<name>/<version>`.
fn name_and_version(id: &str) -> Option<(String, String)> {
    let (_, path) = id.split_once("/secrets/")?;
    let mut parts = path.trim_end_matches('/').split('/');
    let name = parts.next()?.to_owned();
    let version = parts.next().unwrap_or_default().to_owned();
    Some((name, version))
}

fn listed(properties: SecretProperties) -> Option<Listed> {
    let (name, version) = name_and_version(properties.id.as_deref()?)?;
    let attributes = properties.attributes.unwrap_or_default();
    Some(Listed {
        name,
        version,
        enabled: attributes.enabled.unwrap_or(true),
        created: attributes.created,
        tags: properties.tags.unwrap_or_default(),
    })
}

/// An SDK error with every cause under it: the retry policy wraps a credential's failure
/// ("non-transport error occurred which will not be retried"), and the cause is what says
/// which credentials were tried and why each failed.
fn error_chain(error: &azure_core::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

impl AzureKeyVaultStore {
    /// A store for the vault at `url` (`https://<name>.vault.azure.net/`), authenticating
    /// with the [`ChainedCredential`].
    pub fn open(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Self::open_with_retry(url, prefix, RetryLimits::default())
    }

    /// [`open`](Self::open), backing off within other limits.
    pub fn open_with_retry(
        url: &str,
        prefix: &str,
        limits: RetryLimits,
    ) -> Result<Self, StoreError> {
        let config_error = |message: String| StoreError::Config {
            store: format!("azure-keyvault:{url}"),
            message,
        };
        let parsed = url::Url::parse(url).map_err(|e| config_error(format!("not a URL: {e}")))?;
        if parsed.scheme() != "https" {
            return Err(config_error(
                "Key Vault must be reached over https (the Azure SDK refuses to send a token over plain HTTP)".into(),
            ));
        }
        let loopback = parsed.host().as_ref().is_some_and(is_loopback);
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
            || prefix.is_empty()
        {
            return Err(config_error(format!(
                "prefix {prefix:?}: Key Vault secret names allow only letters, digits and '-'"
            )));
        }

        let mut http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(60));
        if let Some(path) = std::env::var_os(CA_FILE_ENV).filter(|p| !p.is_empty()) {
            let pem = std::fs::read(&path).map_err(|e| {
                config_error(format!(
                    "{CA_FILE_ENV}={}: cannot read it: {e}",
                    std::path::Path::new(&path).display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                config_error(format!(
                    "{CA_FILE_ENV}={}: not PEM certificates: {e}",
                    std::path::Path::new(&path).display()
                ))
            })?;
            http = http.tls_certs_merge(certs);
        }
        let http = http
            .build()
            .map_err(|e| config_error(format!("cannot set up HTTPS: {e}")))?;

        let client_options = ClientOptions {
            transport: Some(Transport::new(Arc::new(http.clone()))),
            retry: retry::options(limits),
            ..Default::default()
        };
        let options = SecretClientOptions {
            client_options,
            // The challenge names the vault's resource (https://vault.azure.net), which an
            // address like 127.0.0.1 can never end with; only loopback may skip the check.
            verify_challenge_resource: Some(!loopback),
            ..Default::default()
        };
        let credential = Arc::new(ChainedCredential::from_environment_with(Some(
            Transport::new(Arc::new(http.clone())),
        )));
        let client = SecretClient::new(url, credential, Some(options))
            .map_err(|e| config_error(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| config_error(format!("cannot start the I/O runtime: {e}")))?;
        Ok(Self {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
            client,
            runtime,
        })
    }

    fn secret_name(&self, keyset: &str, generation: u32) -> String {
        format!("{}-{keyset}-{generation}", self.prefix)
    }

    /// A Key Vault error, with what kvseal was doing and what to do about it.
    fn remote(&self, doing: String, error: azure_core::Error) -> StoreError {
        let status = match error.kind() {
            azure_core::error::ErrorKind::HttpResponse {
                status, error_code, ..
            } => Some((u16::from(*status), error_code.clone())),
            _ => None,
        };
        let hint = match status.as_ref().map(|(s, _)| *s) {
            Some(401 | 403) => {
                "the identity lacks a Key Vault role: the scanner needs \"Key Vault Secrets User\", the rotation job \"Key Vault Secrets Officer\" (docs/keystores.md)"
            }
            Some(429) => {
                "Key Vault is throttling requests; kvseal backed off and gave up, so run it again later"
            }
            Some(409) => {
                "a deleted secret of this name is waiting to be purged or recovered; recover it with `az keyvault secret recover`, or choose another prefix"
            }
            Some(s) if s >= 500 => {
                "Key Vault failed; kvseal retried and gave up, so run it again later"
            }
            Some(_) => "see the message from Key Vault",
            None => {
                "check the vault URL and the network; when no credential worked, each one kvseal tried is listed with the reason it failed (docs/keystores.md)"
            }
        };
        StoreError::Remote(Box::new(super::RemoteFailure {
            store: self.describe(),
            doing,
            status: status.as_ref().map(|(s, _)| *s),
            code: status.and_then(|(_, c)| c),
            message: error_chain(&error),
            hint: hint.to_owned(),
        }))
    }

    fn check_listing_size(&self, listed: usize, what: &str) -> Result<(), StoreError> {
        if listed < MAX_LISTED {
            return Ok(());
        }
        Err(StoreError::Corrupt {
            what: self.describe(),
            reason: format!(
                "listing {what} went past {MAX_LISTED} entries; the vault (or a proxy before it) keeps answering with another page"
            ),
        })
    }

    fn is_not_found(error: &azure_core::Error) -> bool {
        matches!(error.kind(), azure_core::error::ErrorKind::HttpResponse { status, .. } if u16::from(*status) == 404)
    }

    /// Every kvseal secret in the vault (latest version of each name).
    fn list_all(&self) -> Result<Vec<Listed>, StoreError> {
        self.runtime.block_on(async {
            let doing = || "listing secrets".to_owned();
            let mut pager = self
                .client
                .list_secret_properties(None)
                .map_err(|e| self.remote(doing(), e))?;
            let mut out = Vec::new();
            let mut seen = 0;
            while let Some(properties) = pager
                .try_next()
                .await
                .map_err(|e| self.remote(doing(), e))?
            {
                seen += 1;
                self.check_listing_size(seen, "secrets")?;
                // The service lists tags; a vault that leaves them out is read by name.
                if let Some(item) = listed(properties)
                    && (item.tags.contains_key(TAG_KEYSET) || item.tags.is_empty())
                    && item.name.starts_with(&format!("{}-", self.prefix))
                {
                    out.push(item);
                }
            }
            Ok(out)
        })
    }

    /// Every version of one secret; empty when it does not exist.
    fn versions(&self, name: &str) -> Result<Vec<Listed>, StoreError> {
        self.runtime
            .block_on(async {
                let doing = || format!("listing the versions of secret {name}");
                let options = SecretClientListSecretPropertiesVersionsOptions::default();
                let mut pager = self
                    .client
                    .list_secret_properties_versions(name, Some(options))
                    .map_err(|e| self.remote(doing(), e))?;
                let mut out = Vec::new();
                loop {
                    match pager.try_next().await {
                        Ok(Some(properties)) => {
                            self.check_listing_size(out.len(), &format!("versions of {name}"))?;
                            out.extend(listed(properties));
                        }
                        Ok(None) => break,
                        Err(e) if Self::is_not_found(&e) => break,
                        Err(e) => return Err(self.remote(doing(), e)),
                    }
                }
                Ok(out)
            })
            .and_then(|mut out: Vec<Listed>| {
                for version in out.iter_mut().filter(|v| v.tags.is_empty() && v.enabled) {
                    version.tags = self.read_tags(version)?;
                }
                Ok(out)
            })
    }

    /// A version's tags from a GET, for a vault whose listings leave tags out.
    fn read_tags(&self, version: &Listed) -> Result<HashMap<String, String>, StoreError> {
        self.runtime.block_on(async {
            let doing = || {
                format!(
                    "reading secret {} version {}",
                    version.name, version.version
                )
            };
            let options = SecretClientGetSecretOptions {
                secret_version: Some(version.version.clone()),
                ..Default::default()
            };
            let mut secret = self
                .client
                .get_secret(&version.name, Some(options))
                .await
                .map_err(|e| self.remote(doing(), e))?
                .into_model()
                .map_err(|e| self.remote(doing(), e))?;
            // Only the tags are wanted; the value (a private key) is wiped, not just dropped.
            drop(SecretString::new(secret.value.take().unwrap_or_default()));
            Ok(secret.tags.unwrap_or_default())
        })
    }

    fn is_superseded(version: &Listed) -> bool {
        version.tags.get(TAG_STATE).map(String::as_str) == Some(SUPERSEDED)
    }

    /// The version that holds a generation: of the versions not superseded, and not a
    /// replacement whose original still stands, the oldest, the smallest id on a tie.
    fn winner(versions: &[Listed]) -> Option<&Listed> {
        let stands = |v: &Listed| {
            !Self::is_superseded(v)
                && v.tags.get(TAG_REPLACES).is_none_or(|original| {
                    versions
                        .iter()
                        .any(|o| &o.version == original && Self::is_superseded(o))
                })
        };
        versions
            .iter()
            .filter(|v| stands(v))
            .min_by(|a, b| (a.created, &a.version).cmp(&(b.created, &b.version)))
    }

    fn current(&self, keyset: &str, generation: u32) -> Result<Listed, StoreError> {
        let name = self.secret_name(keyset, generation);
        Self::winner(&self.versions(&name)?)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                store: self.describe(),
                keyset: keyset.to_owned(),
                generation,
            })
    }

    /// Reads a version's value and splits the PEM bundle.
    fn read_bundle(&self, listed: &Listed) -> Result<(PrivateKey, Certificate), StoreError> {
        let value = self.runtime.block_on(async {
            let options = SecretClientGetSecretOptions {
                secret_version: Some(listed.version.clone()),
                ..Default::default()
            };
            let response = self
                .client
                .get_secret(&listed.name, Some(options))
                .await
                .map_err(|e| self.remote(format!("reading secret {}", listed.name), e))?;
            let secret = response
                .into_model()
                .map_err(|e| self.remote(format!("reading secret {}", listed.name), e))?;
            // The SDK hands the value over as a plain String; it moves into zeroizing memory
            // here and is not copied again.
            Ok::<_, StoreError>(SecretString::new(secret.value.unwrap_or_default()))
        })?;
        let what = || {
            format!(
                "{} secret {} version {}",
                self.describe(),
                listed.name,
                listed.version
            )
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            what: what(),
            reason,
        };
        let text = value.expose();
        let cert_start = text
            .find("-----BEGIN CERTIFICATE-----")
            .ok_or_else(|| corrupt("the PEM bundle has no certificate".into()))?;
        let private_key = PrivateKey::from_pem(&text.as_bytes()[..cert_start])
            .map_err(|e| corrupt(format!("the private key does not parse: {e}")))?;
        let certificate = Certificate::from_pem(&text.as_bytes()[cert_start..])
            .map_err(|e| corrupt(format!("the certificate does not parse: {e}")))?;
        if private_key.fingerprint() != certificate.public_key().fingerprint() {
            return Err(corrupt(
                "the private key does not match the certificate".into(),
            ));
        }
        if let Some(tagged) = listed.tags.get(TAG_FINGERPRINT)
            && *tagged != certificate.public_key().fingerprint().to_string()
        {
            return Err(corrupt(format!(
                "tagged with fingerprint {tagged} but holds {}",
                certificate.public_key().fingerprint()
            )));
        }
        Ok((private_key, certificate))
    }

    /// A generation's facts from its tags alone (no request); the certificate is left out.
    fn info_from_tags(&self, keyset: &str, listed: &Listed) -> Result<GenerationInfo, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            what: format!("{} secret {}", self.describe(), listed.name),
            reason,
        };
        let tag = |name: &str| {
            listed
                .tags
                .get(name)
                .ok_or_else(|| corrupt(format!("the tag {name} is missing")))
        };
        let time_tag = |name: &str| {
            OffsetDateTime::parse(tag(name)?, &Rfc3339)
                .map_err(|e| corrupt(format!("the tag {name} is not a time: {e}")))
        };
        let generation: u32 = tag(TAG_GENERATION)?
            .parse()
            .map_err(|_| corrupt(format!("the tag {TAG_GENERATION} is not a number")))?;
        let state: GenerationState = tag(TAG_STATE)?.parse().map_err(|e: String| corrupt(e))?;
        let fingerprint = Fingerprint::parse(tag(TAG_FINGERPRINT)?)
            .ok_or_else(|| corrupt(format!("the tag {TAG_FINGERPRINT} is not a fingerprint")))?;
        Ok(GenerationInfo {
            keyset: keyset.to_owned(),
            generation,
            state,
            created: time_tag(TAG_CREATED)?,
            fingerprint,
            not_before: time_tag(TAG_NOT_BEFORE)?,
            not_after: time_tag(TAG_NOT_AFTER)?,
            certificate: None,
            version: Some(listed.version.clone()),
            reason: listed.tags.get(TAG_REASON).cloned(),
        })
    }

    fn tags(
        keyset: &str,
        generation: u32,
        state: &str,
        certificate: &Certificate,
        created: OffsetDateTime,
    ) -> HashMap<String, String> {
        HashMap::from([
            (TAG_KEYSET.to_owned(), keyset.to_owned()),
            (TAG_GENERATION.to_owned(), generation.to_string()),
            (TAG_STATE.to_owned(), state.to_owned()),
            (
                TAG_FINGERPRINT.to_owned(),
                certificate.public_key().fingerprint().to_string(),
            ),
            (TAG_NOT_BEFORE.to_owned(), rfc3339(certificate.not_before())),
            (TAG_NOT_AFTER.to_owned(), rfc3339(certificate.not_after())),
            (TAG_CREATED.to_owned(), rfc3339(created)),
        ])
    }

    /// Writes a new version of `name` holding the key and certificate; returns its id.
    fn write_version(
        &self,
        name: &str,
        key: &PrivateKey,
        certificate: &Certificate,
        tags: HashMap<String, String>,
    ) -> Result<String, StoreError> {
        // The SDK takes the value as a plain String (and serializes it into a request body),
        // so the bundle is built once, straight into the String it takes.
        let key_pem = key.to_pkcs8_pem();
        let cert_pem = certificate.to_pem();
        let mut bundle = String::with_capacity(key_pem.expose().len() + cert_pem.len());
        bundle.push_str(key_pem.expose());
        bundle.push_str(&cert_pem);
        self.runtime.block_on(async {
            let doing = || format!("writing secret {name}");
            let parameters = SetSecretParameters {
                value: Some(bundle),
                content_type: Some(CONTENT_TYPE.to_owned()),
                tags: Some(tags),
                ..Default::default()
            };
            let body = parameters.try_into().map_err(|e| self.remote(doing(), e))?;
            let mut secret = self
                .client
                .set_secret(name, body, None)
                .await
                .map_err(|e| self.remote(doing(), e))?
                .into_model()
                .map_err(|e| self.remote(doing(), e))?;
            // Key Vault echoes the value it stored; wipe it rather than just drop it.
            drop(SecretString::new(secret.value.take().unwrap_or_default()));
            secret
                .id
                .as_deref()
                .and_then(name_and_version)
                .map(|(_, version)| version)
                .ok_or_else(|| StoreError::Corrupt {
                    what: format!("{} secret {name}", self.describe()),
                    reason: "Key Vault answered without a secret id".into(),
                })
        })
    }

    /// Reads a written version back and checks that it holds exactly what was written.
    fn verify_version(
        &self,
        written: &Listed,
        key: &PrivateKey,
        certificate: &Certificate,
    ) -> Result<Certificate, StoreError> {
        let (stored_key, stored_cert) = self.read_bundle(written)?;
        if stored_key.fingerprint() != key.fingerprint() || stored_cert != *certificate {
            return Err(StoreError::Corrupt {
                what: format!(
                    "{} secret {} version {}",
                    self.describe(),
                    written.name,
                    written.version
                ),
                reason: "the stored bundle does not read back as the one that was written".into(),
            });
        }
        Ok(stored_cert)
    }

    /// Replaces a version's tags and sets whether it is enabled.
    fn update(
        &self,
        listed: &Listed,
        tags: HashMap<String, String>,
        enabled: bool,
    ) -> Result<(), StoreError> {
        self.runtime.block_on(async {
            let doing = || format!("updating secret {} version {}", listed.name, listed.version);
            let parameters = UpdateSecretPropertiesParameters {
                tags: Some(tags),
                secret_attributes: Some(SecretAttributes {
                    enabled: Some(enabled),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let options = SecretClientUpdateSecretPropertiesOptions {
                secret_version: Some(listed.version.clone()),
                ..Default::default()
            };
            let body = parameters.try_into().map_err(|e| self.remote(doing(), e))?;
            self.client
                .update_secret_properties(&listed.name, body, Some(options))
                .await
                .map_err(|e| self.remote(doing(), e))?;
            Ok(())
        })
    }
}

impl KeyStore for AzureKeyVaultStore {
    fn describe(&self) -> String {
        format!("azure-keyvault:{}", self.url)
    }

    fn keysets(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self
            .list_all()?
            .into_iter()
            .filter_map(|l| l.tags.get(TAG_KEYSET).cloned())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn list(&self, keyset: &str) -> Result<Vec<GenerationInfo>, StoreError> {
        let mut out = Vec::new();
        let untagged_name = format!("{}-{keyset}-", self.prefix);
        for item in self.list_all()? {
            let ours = match item.tags.get(TAG_KEYSET) {
                Some(tagged) => tagged == keyset,
                None => item
                    .name
                    .strip_prefix(&untagged_name)
                    .is_some_and(|n| n.parse::<u32>().is_ok()),
            };
            if !ours {
                continue;
            }
            // The listing shows each name's latest version; the generation is its winner.
            let versions = self.versions(&item.name)?;
            if let Some(winner) = Self::winner(&versions) {
                let mut info = self.info_from_tags(keyset, winner)?;
                // A disabled (retired) secret cannot be read; its tags still describe it.
                if winner.enabled {
                    info.certificate = Some(self.read_bundle(winner)?.1);
                }
                out.push(info);
            }
        }
        out.sort_by_key(|g| g.generation);
        Ok(out)
    }

    fn load(&self, keyset: &str, generation: u32) -> Result<Generation, StoreError> {
        let current = self.current(keyset, generation)?;
        let mut info = self.info_from_tags(keyset, &current)?;
        if !current.enabled {
            return Err(StoreError::Unreadable {
                keyset: keyset.to_owned(),
                generation,
                state: info.state,
            });
        }
        let (private_key, certificate) = self.read_bundle(&current)?;
        info.certificate = Some(certificate);
        Ok(Generation { info, private_key })
    }

    fn create(
        &self,
        keyset: &str,
        generation: u32,
        key: &PrivateKey,
        certificate: &Certificate,
        state: GenerationState,
    ) -> Result<GenerationInfo, StoreError> {
        if !keyset
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(StoreError::Config {
                store: self.describe(),
                message: format!(
                    "key set {keyset:?}: Key Vault secret names allow only letters, digits and '-'"
                ),
            });
        }
        let name = self.secret_name(keyset, generation);
        let already = || StoreError::AlreadyExists {
            keyset: keyset.to_owned(),
            generation,
        };
        if !self.versions(&name)?.is_empty() {
            return Err(already());
        }
        let created = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());
        let pending = Self::tags(
            keyset,
            generation,
            GenerationState::Pending.as_str(),
            certificate,
            created,
        );
        let written_version = self.write_version(&name, key, certificate, pending.clone())?;

        // Another writer may have created the same generation at the same moment.
        let versions = self.versions(&name)?;
        let mine = versions
            .iter()
            .find(|v| v.version == written_version)
            .cloned()
            .unwrap_or(Listed {
                name: name.clone(),
                version: written_version.clone(),
                enabled: true,
                created: None,
                tags: pending.clone(),
            });
        let lost = |versions: &[Listed]| -> Result<(), StoreError> {
            if Self::winner(versions).is_some_and(|w| w.version != written_version) {
                let mut tags = pending.clone();
                tags.insert(TAG_STATE.to_owned(), SUPERSEDED.to_owned());
                self.update(&mine, tags, false)?;
                return Err(already());
            }
            Ok(())
        };
        lost(&versions)?;

        // It only counts once it reads back whole and matching.
        let stored_cert = self.verify_version(&mine, key, certificate)?;
        if state != GenerationState::Pending {
            let tags = Self::tags(keyset, generation, state.as_str(), certificate, created);
            self.update(&mine, tags, state != GenerationState::Retired)?;
        }
        // A writer whose version appeared only after the first look may still win the
        // tie-break (same second, smaller id): look once more, so that exactly one writer
        // reports the generation as its own.
        lost(&self.versions(&name)?)?;
        Ok(GenerationInfo::new(
            keyset,
            generation,
            state,
            created,
            stored_cert,
            Some(written_version),
        ))
    }

    fn set_state(
        &self,
        keyset: &str,
        generation: u32,
        state: GenerationState,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let current = self.current(keyset, generation)?;
        let mut tags = current.tags.clone();
        tags.insert(TAG_STATE.to_owned(), state.as_str().to_owned());
        if let Some(reason) = reason {
            tags.insert(TAG_REASON.to_owned(), reason.to_owned());
        }
        self.update(&current, tags, state != GenerationState::Retired)
    }

    fn replace_certificate(
        &self,
        keyset: &str,
        generation: u32,
        certificate: &Certificate,
    ) -> Result<GenerationInfo, StoreError> {
        let name = self.secret_name(keyset, generation);
        let versions = self.versions(&name)?;
        let current = Self::winner(&versions)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                store: self.describe(),
                keyset: keyset.to_owned(),
                generation,
            })?;
        let info = self.info_from_tags(keyset, &current)?;
        let (key, _) = self.read_bundle(&current)?;
        if certificate.public_key().fingerprint() != key.fingerprint() {
            return Err(StoreError::Corrupt {
                what: format!("{} secret {name}", self.describe()),
                reason: "the new certificate is for another key".into(),
            });
        }
        // Replacements a crashed run wrote but never put in force are dead: never pinned,
        // never counted. Retire them so that exactly one replacement can stand.
        for orphan in versions
            .iter()
            .filter(|v| v.version != current.version && !Self::is_superseded(v))
        {
            let mut tags = orphan.tags.clone();
            tags.insert(TAG_STATE.to_owned(), SUPERSEDED.to_owned());
            self.update(orphan, tags, false)?;
        }
        let mut tags = Self::tags(
            keyset,
            generation,
            info.state.as_str(),
            certificate,
            info.created,
        );
        if let Some(reason) = &info.reason {
            tags.insert(TAG_REASON.to_owned(), reason.clone());
        }
        tags.insert(TAG_REPLACES.to_owned(), current.version.clone());
        let written_version = self.write_version(&name, &key, certificate, tags.clone())?;
        let written = Listed {
            name: name.clone(),
            version: written_version.clone(),
            enabled: true,
            created: None,
            tags,
        };
        let stored_cert = self.verify_version(&written, &key, certificate)?;
        // The switch: from here the replacement is the generation.
        let mut superseded = current.tags.clone();
        superseded.insert(TAG_STATE.to_owned(), SUPERSEDED.to_owned());
        self.update(&current, superseded, current.enabled)?;
        let mut out = GenerationInfo::new(
            keyset,
            generation,
            info.state,
            info.created,
            stored_cert,
            Some(written_version),
        );
        out.reason = info.reason;
        Ok(out)
    }
}
