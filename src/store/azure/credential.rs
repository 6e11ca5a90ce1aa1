//! The credential chain users of the Azure CLI and SDKs expect, in the order the issue
//! tracker and `DefaultAzureCredential` users know (Rust `azure_identity` has no chain of
//! its own):
//!
//! 1. `KVSEAL_AZURE_ACCESS_TOKEN`: a bearer token obtained elsewhere, or for an emulator;
//! 2. workload identity (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`);
//! 3. a service principal's client secret (`AZURE_CLIENT_SECRET` with the two IDs);
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
