//! A live cluster through the Kubernetes API, reached with the user's kubeconfig and
//! context the way kubectl reaches it.
//!
//! Only these endpoints are called, so that the RBAC role in docs/clusters.md is enough:
//! secrets list, get and patch (server-side apply and a label patch) in the controller's
//! namespace; the controller's Service, its proxy (`/v1/cert.pem`, `/v1/verify`) and its
//! Deployment (get, and patch for a restart); and a cluster-wide SealedSecret list.

use std::cell::Cell;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta, Time};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use zeroize::{Zeroize as _, Zeroizing};

use super::{
    ClusterError, ClusterErrorKind, Controller, KEY_LABEL_RETIRED, KeySecret, Observation,
    RESTARTED_AT, Target, Unsynced, from_jiff,
};
use crate::cluster_manifests::{KEY_LABEL, KEY_LABEL_ACTIVE, MANAGED_BY};
use crate::config::ClusterConfig;
use crate::keys::Certificate;
use crate::store::Generation;

/// The field manager kvseal's server-side applies are recorded under.
pub const FIELD_MANAGER: &str = "kvseal";
/// The label that records which key set a synced Secret belongs to.
pub const KEYSET_LABEL: &str = "kvseal.dev/keyset";
/// The label that records which generation a synced Secret holds.
pub const GENERATION_LABEL: &str = "kvseal.dev/generation";
/// The controller's default rate limit on `/v1/verify` is 2 requests per second.
const VERIFY_INTERVAL: Duration = Duration::from_millis(500);
const LIST_PAGE: usize = 500;
const MAX_PAGES: usize = 10_000;

/// How long to wait and how often to retry.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Per request, connection included (kubectl's `--request-timeout`).
    pub timeout: Duration,
    /// Attempts for a request the API server throttles with 429.
    pub attempts: u32,
    /// The longest wait between attempts, whatever `Retry-After` asks for.
    pub max_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(30),
            attempts: 6,
            max_wait: Duration::from_secs(10),
        }
    }
}

/// Which kubeconfig context a cluster uses: `--context`, else the cluster's `context` in
/// `kvseal.toml`, else the kubeconfig's current context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContextChoice {
    /// Given on the command line.
    Flag(String),
    /// From the cluster's entry in `kvseal.toml`.
    Config(String),
    /// The kubeconfig's current context, because neither names one.
    Current,
}

impl ContextChoice {
    /// The choice for a cluster.
    pub fn for_cluster(cluster: &ClusterConfig, flag: Option<&str>) -> Self {
        match (flag, &cluster.context) {
            (Some(flag), _) => ContextChoice::Flag(flag.to_owned()),
            (None, Some(configured)) => ContextChoice::Config(configured.clone()),
            (None, None) => ContextChoice::Current,
        }
    }
}

/// A connection to one cluster's API server, for one cluster of `kvseal.toml`.
pub struct LiveCluster {
    target: Target,
    client: kube::Client,
    runtime: tokio::runtime::Runtime,
    limits: Limits,
    service_port: Cell<Option<String>>,
    last_verify: Cell<Option<Instant>>,
}

impl std::fmt::Debug for LiveCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCluster")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// An answer from the API server: status and body. The body may hold private keys (a
/// list of key Secrets), so it lives in zeroizing memory.
struct Answer {
    status: StatusCode,
    body: Zeroizing<Vec<u8>>,
}

/// One request, described for error messages in RBAC terms.
struct Call {
    verb: &'static str,
    resource: String,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Bytes,
    /// Statuses besides 2xx the caller handles itself.
    accept: &'static [u16],
    /// What to do when the answer is 404.
    not_found: String,
}

impl LiveCluster {
    /// Opens a connection with the kubeconfig kubectl would use (`KUBECONFIG`, else
    /// `~/.kube/config`). Nothing is sent until the first request.
    pub fn connect(
        cluster: &ClusterConfig,
        context: &ContextChoice,
        limits: Limits,
    ) -> Result<Self, ClusterError> {
        let kubeconfig_error = |message: String| -> ClusterError {
            ClusterErrorKind::Kubeconfig {
                cluster: cluster.name.clone(),
                message,
            }
            .into()
        };
        let source = match std::env::var_os("KUBECONFIG") {
            Some(paths) if !paths.is_empty() => {
                format!("KUBECONFIG={}", paths.to_string_lossy())
            }
            _ => "~/.kube/config".to_owned(),
        };
        let kubeconfig = Kubeconfig::read().map_err(|e| {
            kubeconfig_error(format!(
                "cannot read the kubeconfig ({source}): {}; set KUBECONFIG to the file `az aks get-credentials` wrote",
                kubeconfig_error_text(&e)
            ))
        })?;
        let context = match context {
            ContextChoice::Flag(name) | ContextChoice::Config(name) => name.clone(),
            ContextChoice::Current => kubeconfig.current_context.clone().ok_or_else(|| {
                kubeconfig_error(format!(
                    "the kubeconfig ({source}) has no current context and kvseal.toml names none for this cluster; set `context` for it or pass --context"
                ))
            })?,
        };
        if !kubeconfig.contexts.iter().any(|c| c.name == context) {
            let known: Vec<&str> = kubeconfig
                .contexts
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            return Err(kubeconfig_error(format!(
                "context {context} is not in the kubeconfig ({source}), which has: {}; fix `context` in kvseal.toml or pass --context",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )));
        }
        let target = Target {
            cluster: cluster.name.clone(),
            context: context.clone(),
            namespace: cluster.controller_namespace.clone(),
            controller: cluster.controller_name.clone(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| kubeconfig_error(format!("cannot start the I/O runtime: {e}")))?;
        let options = KubeConfigOptions {
            context: Some(context.clone()),
            ..Default::default()
        };
        let mut config = runtime
            .block_on(kube::Config::from_custom_kubeconfig(kubeconfig, &options))
            .map_err(|e| {
                kubeconfig_error(format!(
                    "context {context} in the kubeconfig ({source}) cannot be used: {}",
                    kubeconfig_error_text(&e)
                ))
            })?;
        // The whole request is bounded by `limits.timeout` in `call`, which names what timed
        // out; the transport's own timeouts sit behind it so that they never fire first.
        let transport_timeout = limits.timeout + Duration::from_secs(5);
        config.connect_timeout = Some(limits.timeout);
        config.read_timeout = Some(transport_timeout);
        config.write_timeout = Some(transport_timeout);
        let client = {
            let _guard = runtime.enter();
            kube::Client::try_from(config).map_err(|e| {
                kubeconfig_error(format!(
                    "context {context} cannot be used: {}",
                    error_chain(&e)
                ))
            })?
        };
        Ok(LiveCluster {
            target,
            client,
            runtime,
            limits,
            service_port: Cell::new(None),
            last_verify: Cell::new(None),
        })
    }

    /// Where this connection goes.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The context's namespace (`default` when it names none), as kubectl uses it.
    pub fn context_namespace(&self) -> &str {
        self.client.default_namespace()
    }

    /// Reads everything `kvseal cluster status` reports; each part may fail on its own.
    pub fn observe(&self) -> Observation {
        let keys = self.key_secrets();
        if let Err(error) = &keys
            && error.is_unreachable()
        {
            // Unreachable: the other reads would only wait out the same timeout.
            return Observation {
                keys: Err(error.clone()),
                served: Err(error.clone()),
                controller: Err(error.clone()),
                unsynced: Err(error.clone()),
            };
        }
        Observation {
            keys,
            served: self.served_certificate(),
            controller: self.controller(),
            unsynced: self.unsynced_sealed_secrets(),
        }
    }

    /// The Secrets in the controller's namespace that carry the key label, whatever its
    /// value. Only `tls.crt` is kept; the response itself is wiped.
    pub fn key_secrets(&self) -> Result<Vec<KeySecret>, ClusterError> {
        // Only what is needed: a key Secret's full metadata may carry kubectl's
        // last-applied-configuration annotation, which holds the private key.
        #[derive(Deserialize)]
        struct Item {
            metadata: Option<Metadata>,
            data: Option<Data>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Metadata {
            name: Option<String>,
            labels: Option<std::collections::BTreeMap<String, String>>,
            creation_timestamp: Option<Time>,
            managed_fields: Option<Vec<ManagedField>>,
        }
        #[derive(Deserialize)]
        struct ManagedField {
            time: Option<Time>,
        }
        #[derive(Deserialize, Default)]
        struct Data {
            #[serde(rename = "tls.crt")]
            tls_crt: Option<ByteString>,
        }
        let namespace = &self.target.namespace;
        let items: Vec<Item> = self.list(
            format!("secrets in namespace {namespace}"),
            &format!(
                "/api/v1/namespaces/{namespace}/secrets?labelSelector={}",
                url_escape(KEY_LABEL)
            ),
            format!("does namespace {namespace} exist? Set controller_namespace for this cluster in kvseal.toml"),
        )?;
        Ok(items
            .into_iter()
            .map(|item| {
                let metadata = item.metadata.unwrap_or(Metadata {
                    name: None,
                    labels: None,
                    creation_timestamp: None,
                    managed_fields: None,
                });
                let name = metadata.name.unwrap_or_default();
                let label = metadata
                    .labels
                    .and_then(|mut l| l.remove(KEY_LABEL))
                    .unwrap_or_default();
                // The last write by anyone (an apply, the CSI driver, a relabel) counts: the
                // controller reads the Secret as it was when it started.
                let changed = metadata
                    .creation_timestamp
                    .iter()
                    .chain(
                        metadata
                            .managed_fields
                            .iter()
                            .flatten()
                            .filter_map(|f| f.time.as_ref()),
                    )
                    .map(|t| from_jiff(&t.0))
                    .max();
                let certificate = match item.data.and_then(|d| d.tls_crt) {
                    Some(pem) => Certificate::from_pem(&pem.0).map_err(|e| e.to_string()),
                    None => Err("it has no tls.crt".to_owned()),
                };
                KeySecret {
                    name,
                    label,
                    changed,
                    certificate,
                }
            })
            .collect())
    }

    /// The certificate the controller serves for sealing, fetched as kubeseal fetches it:
    /// the Service's first port name, then `GET .../services/http:NAME:PORT/proxy/v1/cert.pem`.
    pub fn served_certificate(&self) -> Result<Certificate, ClusterError> {
        let pem = self.served_certificate_pem()?;
        Certificate::from_pem(pem.as_bytes()).map_err(|e| self.bad_response("/v1/cert.pem", e))
    }

    /// The PEM text `/v1/cert.pem` answers with, as served.
    pub fn served_certificate_pem(&self) -> Result<String, ClusterError> {
        let proxy = self.proxy_path()?;
        let answer = self.call(Call {
            verb: "get",
            resource: self.proxy_resource(),
            method: Method::GET,
            path: format!("{proxy}/v1/cert.pem"),
            content_type: None,
            body: Bytes::new(),
            accept: &[],
            not_found: self.controller_not_found_help(),
        })?;
        String::from_utf8(answer.body.to_vec())
            .map_err(|_| self.bad_response("/v1/cert.pem", "the answer is not text"))
    }

    /// Asks the controller whether it can decrypt a SealedSecret (`POST /v1/verify`, the
    /// document as JSON). At most two requests a second, the controller's default limit;
    /// a 429 is retried after the wait it asks for.
    pub fn verify(&self, sealed_secret_json: &[u8]) -> Result<bool, ClusterError> {
        let proxy = self.proxy_path()?;
        if let Some(last) = self.last_verify.get() {
            let since = last.elapsed();
            if since < VERIFY_INTERVAL {
                std::thread::sleep(VERIFY_INTERVAL - since);
            }
        }
        let result = self.call(Call {
            verb: "create",
            resource: self.proxy_resource(),
            method: Method::POST,
            path: format!("{proxy}/v1/verify"),
            content_type: Some("application/json"),
            body: Bytes::copy_from_slice(sealed_secret_json),
            accept: &[409],
            not_found: self.controller_not_found_help(),
        });
        self.last_verify.set(Some(Instant::now()));
        Ok(result?.status != StatusCode::CONFLICT)
    }

    /// The controller's Deployment, read for its start time and key-renewal flag.
    pub fn controller(&self) -> Result<Controller, ClusterError> {
        let Target {
            namespace,
            controller,
            ..
        } = &self.target;
        let deployment: Deployment = self.get_json(Call {
            verb: "get",
            resource: format!("deployments/{controller} in namespace {namespace}"),
            method: Method::GET,
            path: format!("/apis/apps/v1/namespaces/{namespace}/deployments/{controller}"),
            content_type: None,
            body: Bytes::new(),
            accept: &[],
            not_found: self.controller_not_found_help(),
        })?;
        Ok(Controller::from_deployment(&deployment))
    }

    /// Every SealedSecret in the cluster whose `Synced` condition is False.
    pub fn unsynced_sealed_secrets(&self) -> Result<Vec<Unsynced>, ClusterError> {
        #[derive(Deserialize)]
        struct Item {
            #[serde(default)]
            metadata: ObjectMeta,
            status: Option<Status>,
        }
        #[derive(Deserialize)]
        struct Status {
            conditions: Option<Vec<Condition>>,
        }
        #[derive(Deserialize)]
        struct Condition {
            #[serde(rename = "type")]
            type_: String,
            status: String,
            message: Option<String>,
        }
        let items: Vec<Item> = self.list(
            "sealedsecrets.bitnami.com in all namespaces".to_owned(),
            "/apis/bitnami.com/v1alpha1/sealedsecrets?",
            "is the SealedSecret CRD installed? Install the sealed-secrets controller".to_owned(),
        )?;
        let mut unsynced = Vec::new();
        for item in items {
            let failed = item
                .status
                .and_then(|s| s.conditions)
                .into_iter()
                .flatten()
                .find(|c| c.type_ == "Synced" && c.status == "False");
            if let Some(condition) = failed {
                unsynced.push(Unsynced {
                    namespace: item.metadata.namespace.unwrap_or_default(),
                    name: item.metadata.name.unwrap_or_default(),
                    message: condition.message.unwrap_or_default(),
                });
            }
        }
        unsynced.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(unsynced)
    }

    /// Creates or updates the Secret holding one generation with a server-side apply,
    /// labelled so that the controller loads it. The request body holds the private key;
    /// kvseal's copy is wiped once the request is done.
    pub fn apply_key_secret(
        &self,
        name: &str,
        keyset: &str,
        generation: &Generation,
    ) -> Result<(), ClusterError> {
        use base64::Engine as _;
        let engine = base64::engine::general_purpose::STANDARD;
        let certificate = generation
            .info
            .certificate
            .as_ref()
            .map(|c| c.to_pem())
            .ok_or_else(|| {
                self.bad_response(
                    name,
                    format!(
                        "generation {} has no certificate in the store",
                        generation.info.generation
                    ),
                )
            })?;
        let key_pem = generation.private_key.to_pkcs8_pem();
        let key_b64 = Zeroizing::new(engine.encode(key_pem.expose()));
        let metadata = serde_json::json!({
            "name": name,
            "namespace": self.target.namespace,
            "labels": {
                KEY_LABEL: KEY_LABEL_ACTIVE,
                MANAGED_BY: "kvseal",
                KEYSET_LABEL: keyset,
                GENERATION_LABEL: generation.info.generation.to_string(),
            },
        });
        // Assembled by hand into one buffer of the exact size, so that the private key is
        // never in a serde value or in a reallocated buffer that is freed unwiped.
        let metadata = metadata.to_string();
        let certificate = engine.encode(certificate.as_bytes());
        let parts: [&[u8]; 7] = [
            br#"{"apiVersion":"v1","kind":"Secret","metadata":"#,
            metadata.as_bytes(),
            br#","type":"kubernetes.io/tls","data":{"tls.crt":""#,
            certificate.as_bytes(),
            br#"","tls.key":""#,
            key_b64.as_bytes(),
            br#""}}"#,
        ];
        let mut body = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        for part in parts {
            body.extend_from_slice(part);
        }
        let body = Bytes::from(body);
        let namespace = &self.target.namespace;
        let result = self.call(Call {
            verb: "patch",
            resource: format!("secrets/{name} in namespace {namespace}"),
            method: Method::PATCH,
            path: format!(
                "/api/v1/namespaces/{namespace}/secrets/{name}?fieldManager={FIELD_MANAGER}&force=true"
            ),
            content_type: Some("application/apply-patch+yaml"),
            body: body.clone(),
            accept: &[],
            not_found: format!("does namespace {namespace} exist?"),
        });
        wipe(body);
        result.map(|_| ())
    }

    /// Relabels a key Secret `retired`, so that the controller drops the key at its next
    /// start. The Secret is kept.
    pub fn retire_key_secret(&self, name: &str) -> Result<(), ClusterError> {
        let namespace = &self.target.namespace;
        let patch = serde_json::json!({"metadata": {"labels": {KEY_LABEL: KEY_LABEL_RETIRED}}});
        self.call(Call {
            verb: "patch",
            resource: format!("secrets/{name} in namespace {namespace}"),
            method: Method::PATCH,
            path: format!("/api/v1/namespaces/{namespace}/secrets/{name}"),
            content_type: Some("application/merge-patch+json"),
            body: Bytes::from(patch.to_string()),
            accept: &[],
            not_found: "it was deleted meanwhile; run the command again".to_owned(),
        })
        .map(|_| ())
    }

    /// Restarts the controller as `kubectl rollout restart` does: a new pod-template
    /// annotation, so that new pods read every key Secret.
    pub fn restart_controller(&self, at: OffsetDateTime) -> Result<(), ClusterError> {
        let Target {
            namespace,
            controller,
            ..
        } = &self.target;
        let at = at
            .replace_nanosecond(0)
            .unwrap_or(at)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let patch = serde_json::json!({
            "spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at}}}}
        });
        self.call(Call {
            verb: "patch",
            resource: format!("deployments/{controller} in namespace {namespace}"),
            method: Method::PATCH,
            path: format!("/apis/apps/v1/namespaces/{namespace}/deployments/{controller}"),
            content_type: Some("application/strategic-merge-patch+json"),
            body: Bytes::from(patch.to_string()),
            accept: &[],
            not_found: self.controller_not_found_help(),
        })
        .map(|_| ())
    }

    /// `/api/v1/namespaces/NS/services/http:NAME:PORT/proxy`, the port name looked up once.
    fn proxy_path(&self) -> Result<String, ClusterError> {
        let Target {
            namespace,
            controller,
            ..
        } = &self.target;
        let port = match self.service_port.take() {
            Some(port) => port,
            None => {
                let service: Service = self.get_json(Call {
                    verb: "get",
                    resource: format!("services/{controller} in namespace {namespace}"),
                    method: Method::GET,
                    path: format!("/api/v1/namespaces/{namespace}/services/{controller}"),
                    content_type: None,
                    body: Bytes::new(),
                    accept: &[],
                    not_found: self.controller_not_found_help(),
                })?;
                service
                    .spec
                    .and_then(|s| s.ports)
                    .and_then(|p| p.into_iter().next())
                    .and_then(|p| p.name)
                    .unwrap_or_default()
            }
        };
        self.service_port.set(Some(port.clone()));
        Ok(format!(
            "/api/v1/namespaces/{namespace}/services/http:{controller}:{port}/proxy"
        ))
    }

    fn proxy_resource(&self) -> String {
        format!(
            "services/proxy {} in namespace {}",
            self.target.controller, self.target.namespace
        )
    }

    fn controller_not_found_help(&self) -> String {
        format!(
            "is the sealed-secrets controller installed as {} in namespace {}? Set controller_name and controller_namespace for cluster {} in kvseal.toml",
            self.target.controller, self.target.namespace, self.target.cluster
        )
    }

    fn bad_response(&self, resource: &str, message: impl std::fmt::Display) -> ClusterError {
        ClusterErrorKind::Response {
            cluster: self.target.cluster.clone(),
            context: self.target.context.clone(),
            resource: resource.to_owned(),
            message: message.to_string(),
        }
        .into()
    }

    fn get_json<T: DeserializeOwned>(&self, call: Call) -> Result<T, ClusterError> {
        let resource = call.resource.clone();
        let answer = self.call(call)?;
        serde_json::from_slice(&answer.body)
            .map_err(|e| self.bad_response(&resource, format!("the answer does not parse: {e}")))
    }

    /// A paged list (`limit`, `continue`), every page's items.
    fn list<T: DeserializeOwned>(
        &self,
        resource: String,
        path: &str,
        not_found: String,
    ) -> Result<Vec<T>, ClusterError> {
        #[derive(Deserialize)]
        struct Page<T> {
            items: Option<Vec<T>>,
            metadata: Option<ListMeta>,
        }
        let separator = if path.ends_with('?') { "" } else { "&" };
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let continue_ = next
                .as_deref()
                .map(|token| format!("&continue={}", url_escape(token)))
                .unwrap_or_default();
            let page: Page<T> = self.get_json(Call {
                verb: "list",
                resource: resource.clone(),
                method: Method::GET,
                path: format!("{path}{separator}limit={LIST_PAGE}{continue_}"),
                content_type: None,
                body: Bytes::new(),
                accept: &[],
                not_found: not_found.clone(),
            })?;
            items.extend(page.items.unwrap_or_default());
            match page
                .metadata
                .and_then(|m| m.continue_)
                .filter(|c| !c.is_empty())
            {
                Some(token) => next = Some(token),
                None => return Ok(items),
            }
        }
        Err(self.bad_response(&resource, "the list never ends (more than 10000 pages)"))
    }

    /// Sends one request, retrying while the API server answers 429, and turns anything
    /// but success (or a status in `accept`) into an error that names the cluster, the
    /// context, the verb and the resource.
    fn call(&self, call: Call) -> Result<Answer, ClusterError> {
        let Target {
            cluster, context, ..
        } = &self.target;
        let refused = |status: Option<u16>, cause: String, help: String| -> ClusterError {
            ClusterErrorKind::Request {
                cluster: cluster.clone(),
                context: context.clone(),
                verb: call.verb,
                resource: call.resource.clone(),
                status,
                cause,
                help,
            }
            .into()
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = http::Request::builder()
                .method(call.method.clone())
                .uri(&call.path);
            if let Some(content_type) = call.content_type {
                request = request.header(http::header::CONTENT_TYPE, content_type);
            }
            let request = request
                .body(kube::client::Body::from(call.body.clone()))
                .map_err(|e| refused(None, format!("bad request: {e}"), String::new()))?;
            let sent = self.runtime.block_on(async {
                tokio::time::timeout(self.limits.timeout, async {
                    let response = self.client.send(request).await?;
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    let collected = response.into_body().collect().await?.to_bytes();
                    let body = Zeroizing::new(collected.to_vec());
                    wipe(collected);
                    Ok::<_, kube::Error>((status, retry_after, body))
                })
                .await
            });
            let (status, retry_after, body) = match sent {
                Err(_elapsed) => {
                    return Err(refused(
                        None,
                        format!(
                            "no answer within {} s",
                            self.limits.timeout.as_secs_f32()
                        ),
                        "check the network (VPN, private endpoint) and that the API server is up, or raise --request-timeout".to_owned(),
                    ));
                }
                Ok(Err(kube::Error::Auth(_))) => {
                    // The credential plugin's output may hold a token: say only what failed.
                    return Err(refused(
                        None,
                        "the kubeconfig's credentials could not be used (a token, certificate or exec plugin such as kubelogin failed)".to_owned(),
                        format!(
                            "run `kubectl --context {context} get --raw /version` to see why, then sign in again"
                        ),
                    ));
                }
                Ok(Err(e)) => {
                    return Err(refused(
                        None,
                        format!("the API server cannot be reached: {}", error_chain(&e)),
                        "check the network (VPN, private endpoint) and that the context points at a running cluster".to_owned(),
                    ));
                }
                Ok(Ok(answer)) => answer,
            };
            if status.is_success() || call.accept.contains(&status.as_u16()) {
                return Ok(Answer { status, body });
            }
            if status == StatusCode::TOO_MANY_REQUESTS && attempt < self.limits.attempts {
                let wait = retry_after
                    .map(Duration::from_secs)
                    .unwrap_or_else(|| Duration::from_millis(250 << attempt.min(6)))
                    .min(self.limits.max_wait);
                std::thread::sleep(wait);
                continue;
            }
            let message = status_message(&body);
            let (cause, help) = match status.as_u16() {
                401 => (
                    format!("the API server rejected the credentials (401 Unauthorized){message}"),
                    "refresh them (`az aks get-credentials`, `kubelogin convert-kubeconfig`)"
                        .to_owned(),
                ),
                403 => (
                    format!("forbidden (403){message}"),
                    format!(
                        "the identity of context {context} may not {} {}; grant it the role docs/clusters.md gives for this command",
                        call.verb, call.resource
                    ),
                ),
                404 => (format!("not found (404){message}"), call.not_found.clone()),
                429 => (
                    format!(
                        "the API server still answered 429 Too Many Requests after {attempt} attempts"
                    ),
                    "try again later".to_owned(),
                ),
                _ => (
                    format!("the API server answered {status}{message}"),
                    "try again; if it persists, check the API server and the controller".to_owned(),
                ),
            };
            return Err(refused(Some(status.as_u16()), cause, help));
        }
    }
}

/// `: message` from a Kubernetes `Status` body, or from a short text body.
fn status_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Status {
        message: Option<String>,
    }
    let message = match serde_json::from_slice::<Status>(body) {
        Ok(status) => status.message.unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(body)
            .trim()
            .chars()
            .take(300)
            .collect(),
    };
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

/// Wipes a buffer once nothing else shares it; a shared one is left to its other owner.
fn wipe(bytes: Bytes) {
    if let Ok(mut unique) = bytes.try_into_mut() {
        unique.as_mut().zeroize();
    }
}

/// A kubeconfig error without the parser's snippet of the file, which may hold a token or
/// a client key.
fn kubeconfig_error_text(error: &kube::config::KubeconfigError) -> String {
    match error {
        kube::config::KubeconfigError::Parse(_) => {
            "its YAML does not parse (details withheld: the file holds credentials); check it with `kubectl config view`".to_owned()
        }
        other => error_chain(other),
    }
}

fn url_escape(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
