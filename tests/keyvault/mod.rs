//! A Key Vault emulator for tests: real HTTPS on loopback (a CA and a server certificate
//! made at test time), the secrets REST API kvseal's SDK calls, the 401 bearer challenge,
//! Key Vault's error JSON, and fault injection. It speaks the wire protocol, so the code
//! under test is the real SDK client, transport and TLS stack.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};

use crate::loopback::{Answer, Loopback, has_bearer};

/// The bearer token the emulator accepts.
pub const TOKEN: &str = "kvseal-test-token";

/// Guards the process environment, which the store reads when it opens.
static ENV: Mutex<()> = Mutex::new(());

/// Backoff short enough for tests: three retries, 10 ms doubling, at most 100 ms a wait.
pub fn quick_retry() -> kvseal::store::RetryLimits {
    kvseal::store::RetryLimits {
        max_retries: 3,
        initial_delay: std::time::Duration::from_millis(10),
        max_delay: std::time::Duration::from_millis(100),
        max_total: std::time::Duration::from_secs(5),
    }
}

/// A fault to inject into one request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// 429 with `Retry-After` (seconds).
    Throttle(u32),
    /// 500 Internal Server Error.
    ServerError,
    /// Close the connection without an answer.
    Drop,
    /// Answer after this many milliseconds.
    Delay(u64),
}

#[derive(Clone, Debug)]
struct Version {
    id: String,
    value: String,
    content_type: Option<String>,
    tags: HashMap<String, String>,
    enabled: bool,
    created: i64,
    updated: i64,
}

#[derive(Default)]
struct Secret {
    name: String,
    versions: Vec<Version>,
}

#[derive(Default)]
struct State {
    secrets: HashMap<String, Secret>,
    deleted: HashMap<String, Secret>,
    /// Faults by request number (1-based, counting authenticated requests).
    faults: HashMap<usize, Fault>,
    /// Faults for every request from this number on.
    fault_from: Option<(usize, Fault)>,
    /// Service principals that may sign in with a certificate: client ID and the
    /// certificate's public key (DER SubjectPublicKeyInfo).
    client_certificates: Vec<(String, Vec<u8>)>,
    /// Leave tags out of list answers, as a minimal emulator might.
    lists_without_tags: bool,
}

/// A running emulator. It stops when dropped.
pub struct Vault {
    pub url: String,
    pub ca_file: PathBuf,
    state: Arc<Mutex<State>>,
    requests: Arc<AtomicUsize>,
    _server: Loopback,
}

impl Vault {
    /// Starts an emulator on a free loopback port.
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let requests = Arc::new(AtomicUsize::new(0));
        // The handler learns its own address only once the server is bound.
        let base = Arc::new(Mutex::new(String::new()));
        let server = {
            let (state, requests, base) = (state.clone(), requests.clone(), base.clone());
            Loopback::start(Arc::new(move |request| {
                let (state, requests) = (state.clone(), requests.clone());
                let base = base.lock().unwrap().clone();
                Box::pin(async move { handle(request, &state, &requests, &base).await })
            }))
        };
        *base.lock().unwrap() = server.base.clone();
        Self {
            url: format!("{}/", server.base),
            ca_file: server.ca_file.clone(),
            state,
            requests,
            _server: server,
        }
    }

    /// Injects `fault` into the `n`-th authenticated request from now on (1-based).
    pub fn fail_request(&self, n: usize, fault: Fault) {
        let base = self.requests.load(Ordering::SeqCst);
        self.state.lock().unwrap().faults.insert(base + n, fault);
    }

    /// Injects `fault` into every authenticated request from the `n`-th on.
    pub fn fail_from(&self, n: usize, fault: Fault) {
        let base = self.requests.load(Ordering::SeqCst);
        self.state.lock().unwrap().fault_from = Some((base + n, fault));
    }

    /// Removes every fault.
    pub fn heal(&self) {
        let mut state = self.state.lock().unwrap();
        state.faults.clear();
        state.fault_from = None;
    }

    /// Authenticated requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// From now on, list answers (secrets and versions) carry no tags; a GET still does.
    pub fn leave_tags_out_of_lists(&self) {
        self.state.lock().unwrap().lists_without_tags = true;
    }

    /// Lets `client_id` sign in at this emulator's token endpoint
    /// (`AZURE_AUTHORITY_HOST` = the vault URL) with a client assertion signed by the key
    /// of this public key (DER SubjectPublicKeyInfo).
    pub fn trust_client_certificate(&self, client_id: &str, spki_der: &[u8]) {
        self.state
            .lock()
            .unwrap()
            .client_certificates
            .push((client_id.to_owned(), spki_der.to_vec()));
    }

    /// The value of one version, as a client that pins it (the CSI driver) reads it.
    pub fn value(&self, name: &str, version: &str) -> Option<String> {
        let state = self.state.lock().unwrap();
        state
            .secrets
            .get(&name.to_ascii_lowercase())?
            .versions
            .iter()
            .find(|v| v.id == version)
            .map(|v| v.value.clone())
    }

    /// A kvseal store for this vault, configured the way a user points kvseal at an
    /// emulator (the CA file and token in the environment), with short backoff.
    pub fn store(&self) -> kvseal::store::AzureKeyVaultStore {
        self.store_with(quick_retry())
    }

    /// [`store`](Self::store) with other retry limits.
    pub fn store_with(
        &self,
        limits: kvseal::store::RetryLimits,
    ) -> kvseal::store::AzureKeyVaultStore {
        let _guard = ENV.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: every test that sets or reads these variables holds ENV, and the store
        // reads them while it is being opened, inside the lock.
        unsafe {
            std::env::set_var(kvseal::store::CA_FILE_ENV, &self.ca_file);
            std::env::set_var(kvseal::store::ACCESS_TOKEN_ENV, TOKEN);
        }
        kvseal::store::AzureKeyVaultStore::open_with_retry(&self.url, "kvseal", limits).unwrap()
    }

    /// Every version of every secret: (name, version, enabled, tags).
    pub fn dump(&self) -> Vec<(String, String, bool, HashMap<String, String>)> {
        let state = self.state.lock().unwrap();
        let mut out: Vec<_> = state
            .secrets
            .values()
            .flat_map(|s| {
                s.versions
                    .iter()
                    .map(|v| (s.name.clone(), v.id.clone(), v.enabled, v.tags.clone()))
            })
            .collect();
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        out
    }
}

fn answer(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    answer(status, json!({"error": {"code": code, "message": message}}))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn random_version() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    hex::encode(bytes)
}

fn attributes(v: &Version) -> Value {
    json!({
        "enabled": v.enabled,
        "created": v.created,
        "updated": v.updated,
        "recoveryLevel": "Recoverable+Purgeable",
        "recoverableDays": 90,
    })
}

fn bundle(base: &str, name: &str, v: &Version, with_value: bool) -> Value {
    let mut out = json!({
        "id": format!("{base}/secrets/{name}/{}", v.id),
        "attributes": attributes(v),
        "tags": v.tags,
    });
    if let Some(ct) = &v.content_type {
        out["contentType"] = json!(ct);
    }
    if with_value {
        out["value"] = json!(v.value);
    }
    out
}

fn query(request: &Request<Incoming>) -> HashMap<String, String> {
    request
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        // Clients may re-encode the query (`$` as `%24`).
        .map(|(k, v)| (k.replace("%24", "$").to_ascii_lowercase(), v.to_owned()))
        .collect()
}

/// One page of `items`, with a `nextLink` when more follow.
fn page(base: &str, path: &str, items: Vec<Value>, q: &HashMap<String, String>) -> Value {
    let max: usize = q
        .get("maxresults")
        .and_then(|m| m.parse().ok())
        .unwrap_or(2)
        .clamp(1, 25);
    let skip: usize = q
        .get("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let end = (skip + max).min(items.len());
    let next = (end < items.len())
        .then(|| format!("{base}{path}?api-version=7.6&$skiptoken={end}&maxresults={max}"));
    json!({"value": items[skip.min(items.len())..end], "nextLink": next})
}

/// The whole request body (empty when the client broke off).
async fn body_of(request: Request<Incoming>) -> Bytes {
    request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

/// Microsoft Entra ID's token endpoint for the client-credentials grant with a client
/// assertion: checks the RS256 signature against a trusted certificate and the claims,
/// and answers with the vault's token.
async fn token_endpoint(request: Request<Incoming>, state: &Mutex<State>, tenant: &str) -> Answer {
    use rsa::pkcs8::DecodePublicKey as _;
    use sha2::Digest as _;
    let body = body_of(request).await;
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let refuse = |why: &str| {
        Ok(answer(
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_client", "error_description": format!("AADSTS700027: {why}")}),
        ))
    };
    let (Some(assertion), Some(client_id)) = (form.get("client_assertion"), form.get("client_id"))
    else {
        return refuse("no client assertion");
    };
    if form.get("client_assertion_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        || form.get("grant_type").map(String::as_str) != Some("client_credentials")
    {
        return refuse("not a client-credentials assertion grant");
    }
    let parts: Vec<&str> = assertion.split('.').collect();
    let decode = |part: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .ok()
    };
    let (Some(header), Some(claims), Some(signature)) = (
        parts.first().and_then(|p| decode(p)),
        parts.get(1).and_then(|p| decode(p)),
        parts.get(2).and_then(|p| decode(p)),
    ) else {
        return refuse("the assertion is not a JWT");
    };
    let header: Value = serde_json::from_slice(&header).unwrap_or_default();
    let claims: Value = serde_json::from_slice(&claims).unwrap_or_default();
    if header["alg"] != "RS256" || !header["x5t"].is_string() {
        return refuse("the assertion must be RS256 with an x5t thumbprint");
    }
    let trusted: Vec<Vec<u8>> = state
        .lock()
        .unwrap()
        .client_certificates
        .iter()
        .filter(|(id, _)| id == client_id)
        .map(|(_, spki)| spki.clone())
        .collect();
    let signed = format!("{}.{}", parts[0], parts[1]);
    let digest = sha2::Sha256::digest(signed.as_bytes());
    let verified = trusted.iter().any(|spki| {
        rsa::RsaPublicKey::from_public_key_der(spki).is_ok_and(|key| {
            key.verify(
                rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
                &digest,
                &signature,
            )
            .is_ok()
        })
    });
    if !verified {
        return refuse("the assertion's signature does not match a certificate of this client");
    }
    let now = now();
    let audience = claims["aud"].as_str().unwrap_or_default();
    if !audience.ends_with(&format!("/{tenant}/oauth2/v2.0/token"))
        || claims["iss"] != client_id.as_str()
        || claims["sub"] != client_id.as_str()
        || claims["exp"].as_i64().is_none_or(|exp| exp <= now)
        || claims["nbf"].as_i64().is_none_or(|nbf| nbf > now + 300)
    {
        return refuse("the assertion's claims are wrong or expired");
    }
    Ok(answer(
        StatusCode::OK,
        json!({"token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600, "access_token": TOKEN}),
    ))
}

async fn handle(
    request: Request<Incoming>,
    state: &Mutex<State>,
    requests: &AtomicUsize,
    base: &str,
) -> Answer {
    let token_path = request
        .uri()
        .path()
        .strip_suffix("/oauth2/v2.0/token")
        .map(|tenant| tenant.trim_start_matches('/').to_owned());
    if let Some(tenant) = token_path
        && request.method() == hyper::Method::POST
    {
        return token_endpoint(request, state, &tenant).await;
    }
    if !has_bearer(&request, TOKEN) {
        return Ok(Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header(
                "www-authenticate",
                "Bearer authorization=\"https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000\", resource=\"https://vault.azure.net\"",
            )
            .body(Full::new(Bytes::from(
                json!({"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}}).to_string(),
            )))
            .unwrap());
    }
    let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
    let fault = {
        let state = state.lock().unwrap();
        state.faults.get(&n).cloned().or_else(|| {
            state
                .fault_from
                .as_ref()
                .filter(|(from, _)| n >= *from)
                .map(|(_, f)| f.clone())
        })
    };
    match fault {
        Some(Fault::Throttle(seconds)) => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "Throttled",
                "Request was not processed because too many requests were received.",
            );
            response
                .headers_mut()
                .insert("retry-after", seconds.to_string().parse().unwrap());
            return Ok(response);
        }
        Some(Fault::ServerError) => {
            return Ok(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "injected",
            ));
        }
        Some(Fault::Drop) => {
            // An error from the service makes hyper close the connection unanswered.
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "injected: connection dropped",
            ));
        }
        Some(Fault::Delay(ms)) => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
        None => {}
    }

    let method = request.method().clone();
    let q = query(&request);
    let path = request.uri().path().trim_end_matches('/').to_owned();
    let body = body_of(request).await;
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut state = state.lock().unwrap();
    let untagged = |mut item: Value, lists_without_tags: bool| {
        if lists_without_tags && let Some(map) = item.as_object_mut() {
            map.remove("tags");
        }
        item
    };
    let lists_without_tags = state.lists_without_tags;
    let response = match (method.as_str(), parts.as_slice()) {
        ("GET", ["secrets"]) => {
            let mut names: Vec<&Secret> = state.secrets.values().collect();
            names.sort_by(|a, b| a.name.cmp(&b.name));
            let items = names
                .iter()
                .filter_map(|s| {
                    let latest = s.versions.last()?;
                    let mut item = bundle(base, &s.name, latest, false);
                    item["id"] = json!(format!("{base}/secrets/{}", s.name));
                    Some(untagged(item, lists_without_tags))
                })
                .collect();
            answer(StatusCode::OK, page(base, "/secrets", items, &q))
        }
        ("GET", ["secrets", name, "versions"]) => match state.secrets.get(&name.to_lowercase()) {
            Some(s) => {
                let items = s
                    .versions
                    .iter()
                    .map(|v| untagged(bundle(base, &s.name, v, false), lists_without_tags))
                    .collect();
                let path = format!("/secrets/{}/versions", s.name);
                answer(StatusCode::OK, page(base, &path, items, &q))
            }
            None => error(
                StatusCode::NOT_FOUND,
                "SecretNotFound",
                &format!("A secret with (name/id) {name} was not found in this key vault."),
            ),
        },
        ("GET", ["secrets", name]) | ("GET", ["secrets", name, ""]) => {
            get(&state, base, name, None)
        }
        ("GET", ["secrets", name, version]) => get(&state, base, name, Some(version)),
        ("PUT", ["secrets", name]) => {
            let key = name.to_lowercase();
            if state.deleted.contains_key(&key) {
                error(
                    StatusCode::CONFLICT,
                    "Conflict",
                    &format!(
                        "Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged."
                    ),
                )
            } else {
                let Ok(params) = serde_json::from_slice::<Value>(&body) else {
                    return Ok(error(
                        StatusCode::BAD_REQUEST,
                        "BadParameter",
                        "invalid JSON",
                    ));
                };
                let Some(value) = params["value"].as_str() else {
                    return Ok(error(
                        StatusCode::BAD_REQUEST,
                        "BadParameter",
                        "value is required",
                    ));
                };
                let version = Version {
                    id: random_version(),
                    value: value.to_owned(),
                    content_type: params["contentType"].as_str().map(str::to_owned),
                    tags: serde_json::from_value(params["tags"].clone()).unwrap_or_default(),
                    enabled: params["attributes"]["enabled"].as_bool().unwrap_or(true),
                    created: now(),
                    updated: now(),
                };
                let secret = state.secrets.entry(key).or_insert_with(|| Secret {
                    name: name.to_string(),
                    versions: Vec::new(),
                });
                secret.versions.push(version.clone());
                let name = secret.name.clone();
                answer(StatusCode::OK, bundle(base, &name, &version, true))
            }
        }
        ("PATCH", ["secrets", name, version]) => {
            let Ok(params) = serde_json::from_slice::<Value>(&body) else {
                return Ok(error(
                    StatusCode::BAD_REQUEST,
                    "BadParameter",
                    "invalid JSON",
                ));
            };
            match state.secrets.get_mut(&name.to_lowercase()).and_then(|s| {
                let name = s.name.clone();
                s.versions
                    .iter_mut()
                    .find(|v| v.id == *version)
                    .map(|v| (name, v))
            }) {
                Some((name, v)) => {
                    if let Some(enabled) = params["attributes"]["enabled"].as_bool() {
                        v.enabled = enabled;
                    }
                    if params.get("tags").is_some_and(|t| !t.is_null()) {
                        v.tags = serde_json::from_value(params["tags"].clone()).unwrap_or_default();
                    }
                    if let Some(ct) = params["contentType"].as_str() {
                        v.content_type = Some(ct.to_owned());
                    }
                    v.updated = now();
                    answer(StatusCode::OK, bundle(base, &name, v, false))
                }
                None => error(
                    StatusCode::NOT_FOUND,
                    "SecretNotFound",
                    &format!(
                        "A secret with (name/id) {name}/{version} was not found in this key vault."
                    ),
                ),
            }
        }
        ("DELETE", ["secrets", name]) => match state.secrets.remove(&name.to_lowercase()) {
            Some(s) => {
                let latest = s.versions.last().cloned();
                let name = s.name.clone();
                state.deleted.insert(name.to_lowercase(), s);
                let mut out = latest.map_or(json!({}), |v| bundle(base, &name, &v, false));
                out["recoveryId"] = json!(format!("{base}/deletedsecrets/{name}"));
                answer(StatusCode::OK, out)
            }
            None => error(StatusCode::NOT_FOUND, "SecretNotFound", "not found"),
        },
        ("POST", ["deletedsecrets", name, "recover"]) => {
            match state.deleted.remove(&name.to_lowercase()) {
                Some(s) => {
                    let latest = s.versions.last().cloned();
                    let name = s.name.clone();
                    state.secrets.insert(name.to_lowercase(), s);
                    answer(
                        StatusCode::OK,
                        latest.map_or(json!({}), |v| bundle(base, &name, &v, false)),
                    )
                }
                None => error(StatusCode::NOT_FOUND, "SecretNotFound", "not found"),
            }
        }
        ("DELETE", ["deletedsecrets", name]) => match state.deleted.remove(&name.to_lowercase()) {
            Some(_) => Response::builder()
                .status(StatusCode::NO_CONTENT)
                .body(Full::new(Bytes::new()))
                .unwrap(),
            None => error(StatusCode::NOT_FOUND, "SecretNotFound", "not found"),
        },
        _ => error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            &format!("unsupported: {method} {path}"),
        ),
    };
    Ok(response)
}

fn get(state: &State, base: &str, name: &str, version: Option<&str>) -> Response<Full<Bytes>> {
    let not_found = || {
        error(
            StatusCode::NOT_FOUND,
            "SecretNotFound",
            &format!("A secret with (name/id) {name} was not found in this key vault."),
        )
    };
    let Some(secret) = state.secrets.get(&name.to_lowercase()) else {
        return not_found();
    };
    let found = match version {
        Some(id) => secret.versions.iter().find(|v| v.id == id),
        None => secret.versions.last(),
    };
    match found {
        Some(v) if !v.enabled => answer(
            StatusCode::FORBIDDEN,
            json!({"error": {"code": "Forbidden", "message": "Operation get is not allowed on a disabled secret.", "innererror": {"code": "SecretDisabled"}}}),
        ),
        Some(v) => answer(StatusCode::OK, bundle(base, &secret.name, v, true)),
        None => not_found(),
    }
}
