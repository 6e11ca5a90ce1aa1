//! The credential chain users of the Azure CLI and SDKs expect, in the order the issue
//! tracker and `DefaultAzureCredential` users know (Rust `azure_identity` has no chain of
//! its own):
//!
//! 1. `KVSEAL_AZURE_ACCESS_TOKEN`: a bearer token obtained elsewhere, or for an emulator;
//! 2. workload identity (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`);
//! 3. a service principal's client secret (`AZURE_CLIENT_SECRET` with the two IDs), or its
//!    certificate (`AZURE_CLIENT_CERTIFICATE_PATH`, a PEM file with the private key and the
//!    certificate), presented as a signed client assertion;
//! 4. managed identity;
//! 5. the Azure CLI or Azure Developer CLI.
//!
//! The first that yields a token is kept for the rest of the process. When all fail, the
//! error lists each one and why.

use std::sync::{Arc, Mutex};

use azure_core::credentials::{AccessToken, Secret, TokenCredential, TokenRequestOptions};
use azure_core::error::ErrorKind;

/// Environment variable holding a ready bearer token.
pub const ACCESS_TOKEN_ENV: &str = "KVSEAL_AZURE_ACCESS_TOKEN";

/// A token handed over as it is. Its lifetime is unknown, so it is reported as valid for
/// an hour and re-read from the environment when that runs out.
struct StaticToken(zeroize::Zeroizing<String>);

impl std::fmt::Debug for StaticToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticToken(..)")
    }
}

#[async_trait::async_trait]
impl TokenCredential for StaticToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Ok(AccessToken::new(
            Secret::new(self.0.as_str().to_owned()),
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }
}

/// One link of the chain: its name, and the credential or why it could not be built.
type Link = (&'static str, Result<Arc<dyn TokenCredential>, String>);

/// The chain; see the module documentation.
pub struct ChainedCredential {
    links: Vec<Link>,
    chosen: Mutex<Option<usize>>,
}

impl std::fmt::Debug for ChainedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.links.iter().map(|(name, _)| *name).collect();
        f.debug_struct("ChainedCredential")
            .field("links", &names)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn built<T: TokenCredential + 'static>(
    result: azure_core::Result<Arc<T>>,
) -> Result<Arc<dyn TokenCredential>, String> {
    result
        .map(|c| c as Arc<dyn TokenCredential>)
        .map_err(|e| e.to_string())
}

impl ChainedCredential {
    /// The chain, built from the environment.
    pub fn from_environment() -> Self {
        Self::from_environment_with(None)
    }

    /// The chain, built from the environment; token requests that kvseal makes itself (the
    /// client certificate's) go through `transport` when one is given.
    pub fn from_environment_with(transport: Option<azure_core::http::Transport>) -> Self {
        let mut links: Vec<Link> = Vec::new();
        if let Some(token) = env(ACCESS_TOKEN_ENV) {
            links.push((
                ACCESS_TOKEN_ENV,
                Ok(Arc::new(StaticToken(zeroize::Zeroizing::new(token)))),
            ));
        }
        links.push((
            "workload identity",
            if env("AZURE_FEDERATED_TOKEN_FILE").is_some() {
                built(azure_identity::WorkloadIdentityCredential::new(None))
            } else {
                Err("AZURE_FEDERATED_TOKEN_FILE is not set".into())
            },
        ));
        links.push((
            "client secret",
            match (
                env("AZURE_TENANT_ID"),
                env("AZURE_CLIENT_ID"),
                env("AZURE_CLIENT_SECRET"),
            ) {
                (Some(tenant), Some(client), Some(secret)) => {
                    built(azure_identity::ClientSecretCredential::new(
                        &tenant,
                        client,
                        Secret::new(secret),
                        None,
                    ))
                }
                _ => Err(
                    "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET are not all set"
                        .into(),
                ),
            },
        ));
        links.push((
            "client certificate",
            match (
                env("AZURE_TENANT_ID"),
                env("AZURE_CLIENT_ID"),
                env(CERTIFICATE_PATH_ENV),
            ) {
                (Some(tenant), Some(client), Some(path)) => {
                    CertificateAssertion::from_file(std::path::Path::new(&path), &tenant, &client)
                        .and_then(|assertion| {
                            let options = azure_identity::ClientAssertionCredentialOptions {
                                client_options: azure_core::http::ClientOptions {
                                    transport,
                                    ..Default::default()
                                },
                            };
                            built(azure_identity::ClientAssertionCredential::new(
                                tenant,
                                client,
                                assertion,
                                Some(options),
                            ))
                        })
                }
                _ => Err(format!(
                    "AZURE_TENANT_ID, AZURE_CLIENT_ID and {CERTIFICATE_PATH_ENV} are not all set"
                )),
            },
        ));
        links.push((
            "managed identity",
            built(azure_identity::ManagedIdentityCredential::new(None)),
        ));
        links.push((
            "Azure CLI / Azure Developer CLI",
            built(azure_identity::DeveloperToolsCredential::new(None)),
        ));
        Self {
            links,
            chosen: Mutex::new(None),
        }
    }
}

#[async_trait::async_trait]
impl TokenCredential for ChainedCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let chosen = self.chosen.lock().ok().and_then(|c| *c);
        if let Some(index) = chosen
            && let (_, Ok(credential)) = &self.links[index]
        {
            return credential.get_token(scopes, options).await;
        }
        let mut tried = Vec::new();
        for (index, (name, credential)) in self.links.iter().enumerate() {
            match credential {
                Ok(credential) => match credential.get_token(scopes, options.clone()).await {
                    Ok(token) => {
                        if let Ok(mut chosen) = self.chosen.lock() {
                            *chosen = Some(index);
                        }
                        return Ok(token);
                    }
                    Err(e) => tried.push(format!("{name}: {e}")),
                },
                Err(why) => tried.push(format!("{name}: {why}")),
            }
        }
        Err(azure_core::Error::with_message(
            ErrorKind::Credential,
            format!(
                "no Azure credential worked; tried, in order:\n  - {}\nSet {ACCESS_TOKEN_ENV}, run in a pod with workload identity, set a service principal's AZURE_* variables, or `az login`",
                tried.join("\n  - ")
            ),
        ))
    }
}

/// The environment variable naming a service principal's certificate (PEM).
pub const CERTIFICATE_PATH_ENV: &str = "AZURE_CLIENT_CERTIFICATE_PATH";

/// A service principal's certificate, presented to Microsoft Entra ID as an RS256-signed
/// JWT client assertion. The Rust SDK's own certificate credential needs OpenSSL; this one
/// signs with aws-lc, which kvseal already uses for its keys.
struct CertificateAssertion {
    key: crate::keys::PrivateKey,
    /// `x5t`: base64url SHA-1 of the certificate DER, which Entra ID matches.
    thumbprint_sha1: String,
    /// `x5t#S256`: base64url SHA-256 of the certificate DER.
    thumbprint_sha256: String,
    client_id: String,
    audience: String,
}

impl std::fmt::Debug for CertificateAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAssertion")
            .field("x5t", &self.thumbprint_sha1)
            .finish_non_exhaustive()
    }
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl CertificateAssertion {
    fn from_file(path: &std::path::Path, tenant: &str, client_id: &str) -> Result<Self, String> {
        let shown = path.display();
        if env("AZURE_CLIENT_CERTIFICATE_PASSWORD").is_some() {
            return Err(format!(
                "{shown}: password-protected (PFX) certificates are not supported; convert it to an unencrypted PEM file (`openssl pkcs12 -in cert.pfx -nodes -out cert.pem`) kept with mode 0600"
            ));
        }
        let bytes = crate::secret::SecretBytes::new(
            std::fs::read(path).map_err(|e| format!("{shown}: cannot read it: {e}"))?,
        );
        let material = crate::keys::read_key_material(bytes.expose()).map_err(|e| {
            format!("{shown}: {e}; it must be PEM with the private key and the certificate")
        })?;
        let key = material
            .keys
            .into_iter()
            .next()
            .ok_or_else(|| format!("{shown}: no private key"))?;
        let certificate = material
            .certificates
            .into_iter()
            .find(|c| c.public_key().fingerprint() == key.fingerprint())
            .ok_or_else(|| format!("{shown}: no certificate for its private key"))?;
        let digest = |algorithm| aws_lc_rs::digest::digest(algorithm, certificate.der());
        let authority = env("AZURE_AUTHORITY_HOST")
            .unwrap_or_else(|| "https://login.microsoftonline.com".to_owned());
        Ok(Self {
            key,
            thumbprint_sha1: base64url(
                digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY).as_ref(),
            ),
            thumbprint_sha256: base64url(digest(&aws_lc_rs::digest::SHA256).as_ref()),
            client_id: client_id.to_owned(),
            audience: format!(
                "{}/{tenant}/oauth2/v2.0/token",
                authority.trim_end_matches('/')
            ),
        })
    }

    /// A fresh assertion, valid for ten minutes.
    fn sign(&self) -> Result<String, String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| "no randomness for the assertion id")?;
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t": self.thumbprint_sha1,
            "x5t#S256": self.thumbprint_sha256,
        });
        let claims = serde_json::json!({
            "aud": self.audience,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": hex::encode(jti),
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        });
        let signing_input = format!(
            "{}.{}",
            base64url(header.to_string().as_bytes()),
            base64url(claims.to_string().as_bytes())
        );
        let pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(self.key.pkcs8_der().expose())
            .map_err(|e| format!("the certificate's key cannot sign: {e}"))?;
        let mut signature = vec![0u8; pair.public_modulus_len()];
        pair.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .map_err(|e| format!("signing the client assertion failed: {e}"))?;
        Ok(format!("{signing_input}.{}", base64url(&signature)))
    }
}

#[async_trait::async_trait]
impl azure_identity::ClientAssertion for CertificateAssertion {
    async fn secret(
        &self,
        _options: Option<azure_core::http::ClientMethodOptions<'_>>,
    ) -> azure_core::Result<String> {
        self.sign()
            .map_err(|message| azure_core::Error::with_message(ErrorKind::Credential, message))
    }
}
