//! A fake Kubernetes API server for tests: real HTTPS on loopback, reached through a
//! generated kubeconfig (CA data and a bearer token), answering with the JSON the real API
//! server sends, built from k8s-openapi types. It serves only what kvseal calls:
//! - secrets: list (label selector, `limit`/`continue` paging), get, server-side apply and
//!   merge patch;
//! - the controller's Service, and its proxy: `/v1/cert.pem` and `/v1/verify`;
//! - a cluster-wide SealedSecret list;
//! - the controller's Deployment: get, and patch (a rollout restart).
//!
//! Behind the proxy it plays the sealed-secrets controller: at start it loads the Secrets
//! labelled `sealed-secrets-key=active` that exist then, serves the certificate with the
//! latest NotBefore, and verifies SealedSecrets with those keys using an independent
//! implementation (the `rsa` crate, from `tests/common`). Faults: any status (403, 404,
//! 429 with Retry-After) or a delay, for requests matching a method and path.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus,
};
use k8s_openapi::api::core::v1::{
    Container, PodSpec, PodTemplateSpec, Secret, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ListMeta, ManagedFieldsEntry, ObjectMeta, Status, Time,
};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::common::{oracle_open, oracle_private_key};
use crate::loopback::{Answer, Loopback, has_bearer};

/// The bearer token the fake accepts.
pub const TOKEN: &str = "kvseal-fake-apiserver-token";
pub const KEY_LABEL: &str = "sealedsecrets.bitnami.com/sealed-secrets-key";
const NAMESPACE: &str = "kube-system";
const CONTROLLER: &str = "sealed-secrets-controller";
const PORT_NAME: &str = "http";

/// A fault for requests that match.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and a Kubernetes `Status` body.
    Status(u16),
    /// 429 with `Retry-After` (seconds).
    Throttle(u32),
    /// Answer only after this long.
    Delay(Duration),
}

#[derive(Clone, Debug)]
struct FaultRule {
    method: Option<Method>,
    path_contains: String,
    fault: Fault,
    /// How many more requests it hits; `None` is every one.
    remaining: Option<usize>,
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path_and_query: String,
    pub content_type: Option<String>,
    pub at: std::time::Instant,
}

struct State {
    secrets: BTreeMap<String, Secret>,
    deployment: Option<Deployment>,
    service: bool,
    sealed_secrets: Vec<Value>,
    /// Fingerprints (certificate DER) and PEM key of what the controller loaded at start.
    loaded: Vec<LoadedKey>,
    /// Overrides what `/v1/cert.pem` serves.
    serving_override: Option<Vec<u8>>,
    faults: Vec<FaultRule>,
    seen: Vec<Seen>,
}

#[derive(Clone)]
struct LoadedKey {
    secret: String,
    not_before: i64,
    created: i64,
    crt: Vec<u8>,
    key: Vec<u8>,
}

/// A running fake API server. It stops when dropped.
pub struct FakeApiServer {
    server: Loopback,
    state: Arc<Mutex<State>>,
}

impl FakeApiServer {
    /// A cluster with a sealed-secrets controller installed as kubeseal expects it
    /// (kube-system/sealed-secrets-controller), key renewal off, created an hour ago and
    /// holding no keys.
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            secrets: BTreeMap::new(),
            deployment: Some(controller_deployment(
                Timestamp::now() - Duration::from_secs(3600),
                &["--key-renew-period", "0"],
            )),
            service: true,
            sealed_secrets: Vec::new(),
            loaded: Vec::new(),
            serving_override: None,
            faults: Vec::new(),
            seen: Vec::new(),
        }));
        let handler_state = state.clone();
        let server = Loopback::start(Arc::new(move |request| {
            let state = handler_state.clone();
            Box::pin(async move { handle(request, &state).await })
        }));
        FakeApiServer { server, state }
    }

    /// The API server's URL.
    pub fn url(&self) -> &str {
        &self.server.base
    }

    /// The CA that signed the server's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.server.ca_pem
    }

    /// Adds a key Secret as the CSI driver or kubectl would have, created at `created`.
    pub fn add_key_secret(
        &self,
        name: &str,
        label: &str,
        crt_pem: &[u8],
        key_pem: &[u8],
        created: Timestamp,
    ) {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(NAMESPACE.to_owned()),
                labels: Some(BTreeMap::from([(KEY_LABEL.to_owned(), label.to_owned())])),
                creation_timestamp: Some(Time(created)),
                uid: Some(format!("uid-{name}")),
                resource_version: Some("1".to_owned()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(BTreeMap::from([
                ("tls.crt".to_owned(), ByteString(crt_pem.to_vec())),
                ("tls.key".to_owned(), ByteString(key_pem.to_vec())),
            ])),
            ..Default::default()
        };
        self.state
            .lock()
            .unwrap()
            .secrets
            .insert(name.to_owned(), secret);
    }

    /// Records a write to a Secret at `at` (its managed fields), as an update by another
    /// field manager would, without changing its content.
    pub fn rewrite_secret(&self, name: &str, at: Timestamp) {
        let mut state = self.state.lock().unwrap();
        let secret = state.secrets.get_mut(name).unwrap();
        record_write(secret, "kubectl-edit", "Update", at);
    }

    /// A Secret, as stored.
    pub fn secret(&self, name: &str) -> Option<Secret> {
        self.state.lock().unwrap().secrets.get(name).cloned()
    }

    /// Every Secret's name.
    pub fn secret_names(&self) -> Vec<String> {
        self.state.lock().unwrap().secrets.keys().cloned().collect()
    }

    /// (Re)starts the controller now: it loads the `active` key Secrets that exist, as the
    /// real controller does at start, and the Deployment records the restart.
    pub fn start_controller(&self) {
        let mut state = self.state.lock().unwrap();
        let now = Timestamp::now();
        if let Some(deployment) = &mut state.deployment {
            restart(
                deployment,
                now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                now,
            );
        }
        load_keys(&mut state);
    }

    /// Replaces the Deployment: created at `created`, with these container args.
    pub fn set_deployment(&self, created: Timestamp, args: &[&str]) {
        let mut state = self.state.lock().unwrap();
        state.deployment = Some(controller_deployment(created, args));
    }

    /// Removes every timestamp from the Deployment, as a minimal API server might.
    pub fn forget_controller_start(&self) {
        let mut state = self.state.lock().unwrap();
        if let Some(d) = &mut state.deployment {
            d.metadata.creation_timestamp = None;
            d.status = None;
            if let Some(template) = d.spec.as_mut().and_then(|s| s.template.metadata.as_mut()) {
                template.annotations = None;
            }
        }
    }

    /// Removes the controller's Service (kubeseal then cannot fetch a certificate).
    pub fn remove_service(&self) {
        self.state.lock().unwrap().service = false;
    }

    /// Makes `/v1/cert.pem` serve this certificate, as a controller that minted its own
    /// key in memory would.
    pub fn serve_certificate(&self, crt_pem: &[u8]) {
        self.state.lock().unwrap().serving_override = Some(crt_pem.to_vec());
    }

    /// Adds a SealedSecret object with a `Synced` condition.
    pub fn add_sealed_secret(&self, namespace: &str, name: &str, synced: bool, message: &str) {
        self.state.lock().unwrap().sealed_secrets.push(json!({
            "apiVersion": "bitnami.com/v1alpha1",
            "kind": "SealedSecret",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}")},
            "spec": {"encryptedData": {"x": "AgB="}, "template": {"metadata": {"name": name, "namespace": namespace}}},
            "status": {"conditions": [{
                "type": "Synced",
                "status": if synced { "True" } else { "False" },
                "message": message,
                "lastTransitionTime": Time(Timestamp::now()),
                "lastUpdateTime": Time(Timestamp::now()),
            }], "observedGeneration": 1},
        }));
    }

    /// Injects a fault into requests with this method (any if `None`) whose path and query
    /// contain `path_contains`; `times` of them, or every one.
    pub fn fault(
        &self,
        method: Option<Method>,
        path_contains: &str,
        fault: Fault,
        times: Option<usize>,
    ) {
        self.state.lock().unwrap().faults.push(FaultRule {
            method,
            path_contains: path_contains.to_owned(),
            fault,
            remaining: times,
        });
    }

    /// Every request so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Requests that change something (anything but GET).
    pub fn writes(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method != Method::GET)
            .filter(|s| !s.path_and_query.ends_with("/proxy/v1/verify"))
            .collect()
    }
}

/// Writes a kubeconfig with one context per `(context, server)`, each with the server's
/// CA data and the bearer token; the first is the current context.
pub fn write_kubeconfig(path: &Path, contexts: &[(&str, &FakeApiServer)]) {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let clusters: Vec<Value> = contexts
        .iter()
        .map(|(name, server)| {
            json!({"name": format!("{name}-cluster"), "cluster": {
                "server": server.url(),
                "certificate-authority-data": engine.encode(server.ca_pem()),
            }})
        })
        .collect();
    let contexts_yaml: Vec<Value> = contexts
        .iter()
        .map(|(name, _)| {
            json!({"name": name, "context": {"cluster": format!("{name}-cluster"), "user": "ci", "namespace": "default"}})
        })
        .collect();
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": contexts.first().map(|(n, _)| *n),
        "clusters": clusters,
        "contexts": contexts_yaml,
        "users": [{"name": "ci", "user": {"token": TOKEN}}],
    });
    // JSON is YAML; kubectl and kube-rs read it alike.
    std::fs::write(path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

fn controller_deployment(created: Timestamp, args: &[&str]) -> Deployment {
    let labels = BTreeMap::from([(
        "app.kubernetes.io/name".to_owned(),
        "sealed-secrets".to_owned(),
    )]);
    Deployment {
        metadata: ObjectMeta {
            name: Some(CONTROLLER.to_owned()),
            namespace: Some(NAMESPACE.to_owned()),
            creation_timestamp: Some(Time(created)),
            generation: Some(1),
            uid: Some("uid-deployment".to_owned()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "controller".to_owned(),
                        image: Some(
                            "docker.io/bitnami/sealed-secrets-controller:0.36.6".to_owned(),
                        ),
                        command: Some(vec!["controller".to_owned()]),
                        args: Some(
                            ["--update-status", "--key-prefix", "sealed-secrets-key"]
                                .iter()
                                .chain(args)
                                .map(|s| s.to_string())
                                .collect(),
                        ),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: Some(DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(1),
            updated_replicas: Some(1),
            ready_replicas: Some(1),
            available_replicas: Some(1),
            conditions: Some(vec![DeploymentCondition {
                type_: "Progressing".to_owned(),
                status: "True".to_owned(),
                reason: Some("NewReplicaSetAvailable".to_owned()),
                message: Some(format!(
                    "ReplicaSet \"{CONTROLLER}-5d8f\" has successfully progressed."
                )),
                last_update_time: Some(Time(created)),
                last_transition_time: Some(Time(created)),
            }]),
            ..Default::default()
        }),
    }
}

/// A rollout restart, as `kubectl rollout restart` makes it (the annotation's value is
/// the client's), completed at once.
fn restart(deployment: &mut Deployment, restarted_at: String, now: Timestamp) {
    let template = deployment
        .spec
        .as_mut()
        .and_then(|s| s.template.metadata.as_mut())
        .unwrap();
    template
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert("kubectl.kubernetes.io/restartedAt".to_owned(), restarted_at);
    record_restart(deployment, now);
}

fn record_restart(deployment: &mut Deployment, at: Timestamp) {
    let generation = deployment.metadata.generation.unwrap_or(1) + 1;
    deployment.metadata.generation = Some(generation);
    if let Some(status) = &mut deployment.status {
        status.observed_generation = Some(generation);
        for condition in status.conditions.iter_mut().flatten() {
            condition.last_update_time = Some(Time(at));
        }
    }
}

/// The controller's start: every `active` key Secret that exists now.
fn load_keys(state: &mut State) {
    state.loaded = state
        .secrets
        .values()
        .filter(|s| {
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(KEY_LABEL))
                .map(String::as_str)
                == Some("active")
        })
        .filter_map(|s| {
            let data = s.data.as_ref()?;
            let crt = data.get("tls.crt")?.0.clone();
            let key = data.get("tls.key")?.0.clone();
            let der = pem_der(&crt)?;
            let not_before = not_before(&der)?;
            Some(LoadedKey {
                secret: s.metadata.name.clone().unwrap_or_default(),
                not_before,
                created: s
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.as_second())
                    .unwrap_or(0),
                crt,
                key,
            })
        })
        .collect();
    // Registered in creation order; the newest NotBefore seals, the first wins a tie.
    state.loaded.sort_by_key(|k| k.created);
}

/// The API server records each field manager's last write in `managedFields`.
fn record_write(secret: &mut Secret, manager: &str, operation: &str, at: Timestamp) {
    let fields = secret.metadata.managed_fields.get_or_insert_with(Vec::new);
    fields.retain(|f| f.manager.as_deref() != Some(manager));
    fields.push(ManagedFieldsEntry {
        api_version: Some("v1".to_owned()),
        fields_type: Some("FieldsV1".to_owned()),
        manager: Some(manager.to_owned()),
        operation: Some(operation.to_owned()),
        time: Some(Time(at)),
        ..Default::default()
    });
}

fn pem_der(pem: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(pem).ok()?;
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

fn not_before(der: &[u8]) -> Option<i64> {
    use x509_cert::der::Decode as _;
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    Some(
        cert.tbs_certificate()
            .validity()
            .not_before
            .to_unix_duration()
            .as_secs() as i64,
    )
}

fn status(code: u16, reason: &str, message: String) -> Answer {
    let body = Status {
        code: Some(code as i32),
        message: Some(message),
        reason: Some(reason.to_owned()),
        status: Some("Failure".to_owned()),
        metadata: ListMeta::default(),
        details: None,
    };
    Ok(Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(&body).unwrap())))
        .unwrap())
}

fn ok_json(value: &impl serde::Serialize) -> Answer {
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(value).unwrap())))
        .unwrap())
}

fn not_found(kind: &str, name: &str) -> Answer {
    status(404, "NotFound", format!("{kind} \"{name}\" not found"))
}

fn query(uri: &hyper::Uri) -> BTreeMap<String, String> {
    uri.query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// `limit`/`continue` paging, the continue token being the offset.
fn page<T: Clone>(items: &[T], query: &BTreeMap<String, String>) -> (Vec<T>, ListMeta) {
    let start: usize = query
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(items.len());
    let meta = ListMeta {
        continue_: (end < items.len()).then(|| end.to_string()),
        resource_version: Some("100".to_owned()),
        ..Default::default()
    };
    (items.get(start..end).unwrap_or_default().to_vec(), meta)
}

fn selects(selector: Option<&String>, labels: Option<&BTreeMap<String, String>>) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    selector.split(',').all(|term| match term.split_once('=') {
        Some((k, v)) => labels.and_then(|l| l.get(k)).map(String::as_str) == Some(v),
        None => labels.is_some_and(|l| l.contains_key(term)),
    })
}

async fn handle(request: Request<Incoming>, state: &Mutex<State>) -> Answer {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let path = uri.path().to_owned();
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !has_bearer(&request, TOKEN) {
        return status(401, "Unauthorized", "Unauthorized".to_owned());
    }
    let fault = {
        let mut state = state.lock().unwrap();
        state.seen.push(Seen {
            method: method.clone(),
            path_and_query: path_and_query.clone(),
            content_type: content_type.clone(),
            at: std::time::Instant::now(),
        });
        let rule = state.faults.iter_mut().find(|r| {
            r.method.as_ref().is_none_or(|m| *m == method)
                && path_and_query.contains(&r.path_contains)
                && r.remaining != Some(0)
        });
        rule.map(|r| {
            if let Some(n) = &mut r.remaining {
                *n -= 1;
            }
            r.fault.clone()
        })
    };
    match fault {
        Some(Fault::Status(403)) => {
            return status(
                403,
                "Forbidden",
                format!(
                    "the server does not allow this method on the requested resource: User \"system:serviceaccount:ci:kvseal\" cannot {} {path}",
                    method.as_str().to_lowercase()
                ),
            );
        }
        Some(Fault::Status(code)) => return status(code, "Fault", format!("injected {code}")),
        Some(Fault::Throttle(seconds)) => {
            return Ok(Response::builder()
                .status(429)
                .header("retry-after", seconds.to_string())
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(
                    serde_json::to_vec(&Status {
                        code: Some(429),
                        message: Some("Too many requests, please try again later.".to_owned()),
                        reason: Some("TooManyRequests".to_owned()),
                        status: Some("Failure".to_owned()),
                        ..Default::default()
                    })
                    .unwrap(),
                )))
                .unwrap());
        }
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let q = query(&uri);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut state = state.lock().unwrap();
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["api", "v1", "namespaces", NAMESPACE, "secrets"]) => {
            let items: Vec<Secret> = state
                .secrets
                .values()
                .filter(|s| selects(q.get("labelSelector"), s.metadata.labels.as_ref()))
                .cloned()
                .collect();
            let (items, metadata) = page(&items, &q);
            ok_json(&k8s_openapi::List::<Secret> { items, metadata })
        }
        (_, ["api", "v1", "namespaces", ns, "secrets"]) if *ns != NAMESPACE => {
            ok_json(&k8s_openapi::List::<Secret>::default())
        }
        (Method::GET, ["api", "v1", "namespaces", NAMESPACE, "secrets", name]) => {
            match state.secrets.get(*name) {
                Some(secret) => ok_json(secret),
                None => not_found("secrets", name),
            }
        }
        (Method::PATCH, ["api", "v1", "namespaces", NAMESPACE, "secrets", name]) => {
            patch_secret(&mut state, name, content_type.as_deref(), &q, &body)
        }
        (Method::GET, ["api", "v1", "namespaces", NAMESPACE, "services", CONTROLLER])
            if state.service =>
        {
            ok_json(&Service {
                metadata: ObjectMeta {
                    name: Some(CONTROLLER.to_owned()),
                    namespace: Some(NAMESPACE.to_owned()),
                    ..Default::default()
                },
                spec: Some(ServiceSpec {
                    ports: Some(vec![ServicePort {
                        name: Some(PORT_NAME.to_owned()),
                        port: 8080,
                        target_port: Some(
                            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080),
                        ),
                        ..Default::default()
                    }]),
                    type_: Some("ClusterIP".to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            })
        }
        (
            _,
            [
                "api",
                "v1",
                "namespaces",
                NAMESPACE,
                "services",
                proxied,
                "proxy",
                "v1",
                endpoint,
            ],
        ) => {
            let wanted = format!("http:{CONTROLLER}:{PORT_NAME}");
            if !state.service || *proxied != wanted {
                return not_found("services", proxied);
            }
            match (method, *endpoint) {
                (Method::GET, "cert.pem") => serve_certificate(&state),
                (Method::POST, "verify") => verify(&state, &body),
                _ => Ok(Response::builder()
                    .status(405)
                    .body(Full::new(Bytes::new()))
                    .unwrap()),
            }
        }
        (Method::GET, ["apis", "bitnami.com", "v1alpha1", "sealedsecrets"]) => {
            let (items, metadata) = page(&state.sealed_secrets, &q);
            ok_json(&json!({
                "apiVersion": "bitnami.com/v1alpha1",
                "kind": "SealedSecretList",
                "metadata": metadata,
                "items": items,
            }))
        }
        (
            Method::GET,
            [
                "apis",
                "apps",
                "v1",
                "namespaces",
                NAMESPACE,
                "deployments",
                CONTROLLER,
            ],
        ) => match &state.deployment {
            Some(d) => ok_json(d),
            None => not_found("deployments.apps", CONTROLLER),
        },
        (
            Method::PATCH,
            [
                "apis",
                "apps",
                "v1",
                "namespaces",
                NAMESPACE,
                "deployments",
                CONTROLLER,
            ],
        ) => {
            let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
                return status(400, "BadRequest", "the patch does not parse".to_owned());
            };
            let annotation = patch
                .pointer("/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let Some(deployment) = state.deployment.as_mut() else {
                return not_found("deployments.apps", CONTROLLER);
            };
            if let Some(at) = annotation {
                restart(deployment, at, Timestamp::now());
                let deployment = deployment.clone();
                // The rollout is instant here: the new pod loads the keys now.
                load_keys(&mut state);
                return ok_json(&deployment);
            }
            ok_json(&deployment.clone())
        }
        _ => status(
            404,
            "NotFound",
            "the server could not find the requested resource".to_owned(),
        ),
    }
}

fn patch_secret(
    state: &mut State,
    name: &str,
    content_type: Option<&str>,
    q: &BTreeMap<String, String>,
    body: &[u8],
) -> Answer {
    match content_type {
        Some("application/apply-patch+yaml") => {
            if q.get("fieldManager").is_none_or(|m| m.is_empty()) {
                return status(
                    400,
                    "BadRequest",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch".to_owned(),
                );
            }
            let applied: Secret = match serde_json::from_slice(body) {
                Ok(s) => s,
                Err(e) => {
                    return status(
                        400,
                        "BadRequest",
                        format!("the apply body does not parse: {e}"),
                    );
                }
            };
            if applied.metadata.name.as_deref() != Some(name) {
                return status(
                    400,
                    "BadRequest",
                    "the name in the body does not match the URL".to_owned(),
                );
            }
            let now = Timestamp::now();
            let existing = state.secrets.get(name).cloned();
            let mut secret = existing.clone().unwrap_or_default();
            secret.metadata.name = Some(name.to_owned());
            secret.metadata.namespace = Some(NAMESPACE.to_owned());
            secret
                .metadata
                .uid
                .get_or_insert_with(|| format!("uid-{name}"));
            secret.metadata.creation_timestamp.get_or_insert(Time(now));
            secret.metadata.labels = applied.metadata.labels;
            secret.type_ = applied.type_;
            secret.data = applied.data;
            let changed = existing.as_ref().is_none_or(|e| {
                e.metadata.labels != secret.metadata.labels
                    || e.data != secret.data
                    || e.type_ != secret.type_
            });
            if changed {
                record_write(&mut secret, &q["fieldManager"], "Apply", now);
                let version = secret
                    .metadata
                    .resource_version
                    .as_deref()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    + 1;
                secret.metadata.resource_version = Some(version.to_string());
            }
            state.secrets.insert(name.to_owned(), secret.clone());
            ok_json(&secret)
        }
        Some("application/merge-patch+json") | Some("application/strategic-merge-patch+json") => {
            let Some(secret) = state.secrets.get_mut(name) else {
                return not_found("secrets", name);
            };
            let Ok(patch) = serde_json::from_slice::<Value>(body) else {
                return status(400, "BadRequest", "the patch does not parse".to_owned());
            };
            record_write(secret, "kubectl-patch", "Update", Timestamp::now());
            if let Some(labels) = patch.pointer("/metadata/labels").and_then(Value::as_object) {
                let current = secret.metadata.labels.get_or_insert_with(BTreeMap::new);
                for (k, v) in labels {
                    match v.as_str() {
                        Some(v) => current.insert(k.clone(), v.to_owned()),
                        None => current.remove(k),
                    };
                }
            }
            ok_json(&secret.clone())
        }
        other => status(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format: {}",
                other.unwrap_or("")
            ),
        ),
    }
}

fn serve_certificate(state: &State) -> Answer {
    let certificate = match &state.serving_override {
        Some(pem) => Some(pem.clone()),
        None => {
            let mut newest: Option<&LoadedKey> = None;
            for key in &state.loaded {
                if newest.is_none_or(|n| n.not_before < key.not_before) {
                    newest = Some(key);
                }
            }
            newest.map(|k| k.crt.clone())
        }
    };
    match certificate {
        Some(pem) => Ok(Response::builder()
            .status(200)
            .header("content-type", "application/x-pem-file")
            .body(Full::new(Bytes::from(pem)))
            .unwrap()),
        None => Ok(Response::builder()
            .status(500)
            .body(Full::new(Bytes::new()))
            .unwrap()),
    }
}

/// The controller's `/v1/verify`: 200 when every field opens with a loaded key under the
/// SealedSecret's scope label, 409 when one does not.
fn verify(state: &State, body: &[u8]) -> Answer {
    use base64::Engine as _;
    let Ok(sealed) = serde_json::from_slice::<Value>(body) else {
        return Ok(Response::builder()
            .status(500)
            .body(Full::new(Bytes::new()))
            .unwrap());
    };
    let name = sealed
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let namespace = sealed
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let annotation = |key: &str| {
        sealed
            .pointer(&format!(
                "/metadata/annotations/sealedsecrets.bitnami.com~1{key}"
            ))
            .and_then(Value::as_str)
            == Some("true")
    };
    let label = if annotation("cluster-wide") {
        String::new()
    } else if annotation("namespace-wide") {
        namespace.to_owned()
    } else {
        format!("{namespace}/{name}")
    };
    let keys: Vec<_> = state
        .loaded
        .iter()
        .map(|k| oracle_private_key(&k.key))
        .collect();
    let fields = sealed
        .pointer("/spec/encryptedData")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let all_open = !fields.is_empty()
        && fields.values().all(|value| {
            let Some(bytes) = value
                .as_str()
                .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            else {
                return false;
            };
            keys.iter()
                .any(|k| oracle_open(k, &bytes, label.as_bytes()).is_some())
        });
    Ok(Response::builder()
        .status(if all_open {
            StatusCode::OK
        } else {
            StatusCode::CONFLICT
        })
        .body(Full::new(Bytes::new()))
        .unwrap())
}
