//! # periscope-exporter-elasticsearch
//!
//! A Periscope exporter plugin (`plugin = "elasticsearch"`) that indexes every sample, and every
//! removal of a source, as one document into Elasticsearch or OpenSearch with the `_bulk` API, so
//! the index holds the history of every series.
//!
//! Two modes ([`target::Target`]): a time series data stream `metrics-<dataset>-<namespace>`
//! (`data_stream = {…}`), or date-math indices (`index = "periscope-%Y.%m.%d"`, also what a config
//! with neither key gets).
//!
//! It works against Elasticsearch and OpenSearch: before installing anything it reads the root
//! endpoint (`GET /`) and adapts to the distribution there ([`distribution`]).
//!
//! Start with [`ElasticsearchExporter`]; its options are in [`config::ElasticsearchConfig`].
//!
//! Modules:
//! - [`config`]: the options (`url`, `data_stream` or `index`, `template`, auth, TLS, `timeout`);
//! - [`distribution`]: Elasticsearch or OpenSearch, from `GET /`, and what differs;
//! - [`target`]: the two modes and the data stream's name;
//! - [`document`]: samples → documents, their deterministic ids, the index name's date math;
//! - [`bulk`]: a batch → one `_bulk` request;
//! - [`response`]: the per-item results of a `_bulk` response;
//! - [`template`]: the templates (mappings, time series settings) installed at start;
//! - [`client`]: the official `elasticsearch` client and the requests it makes.
//!
//! Delivery: one `_bulk` request per `export`, acknowledged only once the node acknowledged every
//! item. An item answered 429 or 5xx, an unreachable node, a timeout or a 429/5xx on the request
//! make the whole batch [`Export::Retry`]. That duplicates nothing: in index mode the ids are
//! deterministic and the operations are `index`, so the items already indexed are overwritten; in
//! data-stream mode the node derives the id from the dimensions and the timestamp, and answers a
//! second `create` of a sample with a 409 version conflict, counted as stored. Items refused for good
//! (a 400 mapping conflict), once no item needs a retry, make it [`Export::RejectItems`] naming
//! each refused sample (or removal) with the node's reason: every other item of the batch is
//! indexed by then, and the host dead-letters only the refused ones.
//!
//! The client is async: the exporter owns a current-thread tokio runtime, created in `new` and
//! shut down in `shutdown`.

pub mod bulk;
pub mod client;
pub mod config;
pub mod distribution;
pub mod document;
pub mod response;
pub mod target;
pub mod template;

use std::time::Duration;

use periscope_plugin_api::{Batch, BoxError, Context, Export, Exporter, Health, RejectedItem};

use crate::client::{Client, SendError};
use crate::config::ElasticsearchConfig;
use crate::distribution::{Distribution, NodeInfo};
use crate::response::Outcome;
use crate::target::Target;
use crate::template::{Kind, Template};

/// The shortest wait before a retry the host is asked for.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The wait asked for when the node refuses our credentials, or we refuse its certificate: only
/// an operator can fix that.
const RETRY_AFTER_UNAUTHORIZED: Duration = Duration::from_secs(30);

/// The Elasticsearch exporter.
pub struct ElasticsearchExporter {
    runtime: Option<tokio::runtime::Runtime>,
    client: Client,
    target: Target,
    /// What `GET /` said; `None` until the node answered.
    node: Option<NodeInfo>,
    /// Whether to install templates (the `template` option).
    install: bool,
    /// `number_of_replicas` for the templates.
    number_of_replicas: Option<u32>,
    /// The templates still to install, in order; `None` until the distribution is known (they
    /// depend on it).
    pending_templates: Option<Vec<Template>>,
    /// The times of the removals in the batch being retried.
    removal_stamps: bulk::RemovalStamps,
    /// The last failure, cleared by the next success; reported by `health`.
    last_error: Option<(Health, String)>,
}

impl Exporter for ElasticsearchExporter {
    type Config = ElasticsearchConfig;

    fn validate(config: &ElasticsearchConfig) -> Result<(), BoxError> {
        Ok(config.validate()?)
    }

    fn new(config: ElasticsearchConfig, context: Context<'_>) -> Result<Self, BoxError> {
        Self::validate(&config)?;
        let target = config.target()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the exporter's tokio runtime: {e}"))?;
        let client = Client::new(&config)?;
        let mut exporter = ElasticsearchExporter {
            runtime: Some(runtime),
            client,
            target,
            node: None,
            install: config.template,
            number_of_replicas: config.number_of_replicas,
            pending_templates: None,
            removal_stamps: bulk::RemovalStamps::default(),
            last_error: None,
        };
        match exporter.prepare() {
            Ok(_) => {}
            // A node that is not up yet is no reason to fail: the first export tries again.
            Err(
                SendError::Unavailable(reason)
                | SendError::Unauthorized(reason)
                | SendError::Forbidden(reason)
                | SendError::Untrusted(reason),
            ) => {
                tracing::warn!(%reason, "templates not installed yet; will retry before the first export");
            }
            Err(SendError::Refused(reason)) => {
                return Err(reason.into());
            }
        }
        match &exporter.target {
            Target::Index(_) => tracing::info!(
                exporter = context.exporter,
                url = %config.url,
                index = config.index.as_deref().unwrap_or(config::DEFAULT_INDEX),
                template = config.template,
                "indexing into Elasticsearch (index mode)"
            ),
            Target::DataStream(stream) => tracing::info!(
                exporter = context.exporter,
                url = %config.url,
                data_stream = %stream.name(),
                template = config.template,
                "indexing into an Elasticsearch time series data stream"
            ),
        }
        Ok(exporter)
    }

    fn export(&mut self, batch: &Batch) -> Result<Export, BoxError> {
        let result = self.export_batch(batch)?;
        if !matches!(result, Export::Retry { .. }) {
            self.removal_stamps.clear();
        }
        self.last_error = match &result {
            Export::Ok => None,
            Export::Retry { reason, after } => {
                let health = if *after >= RETRY_AFTER_UNAUTHORIZED {
                    Health::Unhealthy(reason.clone())
                } else {
                    Health::Degraded(reason.clone())
                };
                Some((health, reason.clone()))
            }
            // A refused item says nothing about the node's health.
            _ => None,
        };
        Ok(result)
    }

    fn health(&self) -> Health {
        match &self.last_error {
            None => Health::Healthy,
            Some((health, _)) => health.clone(),
        }
    }

    fn shutdown(&mut self) -> Result<(), BoxError> {
        // Every export waited for its answer: nothing is in flight or buffered.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
        Ok(())
    }
}

impl ElasticsearchExporter {
    fn runtime(&self) -> Result<&tokio::runtime::Runtime, BoxError> {
        self.runtime
            .as_ref()
            .ok_or_else(|| "the exporter was shut down".into())
    }

    /// Reads which distribution the node is (once), then installs the templates still pending.
    fn prepare(&mut self) -> Result<Distribution, SendError> {
        let distribution = match &self.node {
            Some(node) => node.distribution,
            None => {
                let Ok(runtime) = self.runtime() else {
                    return Err(SendError::Unavailable("the exporter was shut down".into()));
                };
                let node = match runtime.block_on(self.client.root()) {
                    Ok(node) => node,
                    // Elasticsearch needs the cluster privilege `monitor` (`cluster:monitor/main`)
                    // for `GET /`, which a writer's API key may lack.
                    Err(SendError::Forbidden(reason)) => {
                        tracing::warn!(
                            %reason,
                            "the credentials may not read `GET /` (the cluster privilege \
                             `monitor`, action `cluster:monitor/main`): taking the node for \
                             Elasticsearch"
                        );
                        NodeInfo {
                            distribution: Distribution::Elasticsearch,
                            version: String::new(),
                        }
                    }
                    Err(other) => return Err(other),
                };
                tracing::info!(
                    distribution = node.distribution.name(),
                    version = %node.version,
                    "connected to the node"
                );
                let distribution = node.distribution;
                self.node = Some(node);
                distribution
            }
        };
        if self.pending_templates.is_none() {
            self.pending_templates = Some(self.templates(distribution));
        }
        self.install_templates()?;
        Ok(distribution)
    }

    /// The templates the options ask for on `distribution`.
    fn templates(&self, distribution: Distribution) -> Vec<Template> {
        if !self.install {
            return Vec::new();
        }
        match &self.target {
            Target::Index(pattern) => pattern
                .template_pattern()
                .map(|p| template::for_indices(&p, distribution, self.number_of_replicas))
                .unwrap_or_default(),
            Target::DataStream(stream) => {
                template::for_data_stream(stream, distribution, self.number_of_replicas)
            }
        }
    }

    /// Puts the pending templates, in order. A template the credentials may not put (403) is
    /// looked up instead: one that exists (an administrator installed it) is used as it is; a
    /// missing one is an error naming the privilege.
    fn install_templates(&mut self) -> Result<(), SendError> {
        while let Some(template) = self.pending_templates.as_ref().and_then(|t| t.first()) {
            let Ok(runtime) = self.runtime() else {
                return Err(SendError::Unavailable("the exporter was shut down".into()));
            };
            let kind = template.kind.endpoint();
            let name = template.name.clone();
            match runtime.block_on(self.client.put_template(template)) {
                Ok(()) => tracing::info!(template = %name, kind, "template installed"),
                Err(SendError::Forbidden(reason)) => {
                    let privilege = template.kind.privilege();
                    let found = runtime.block_on(self.client.template_exists(template.kind, &name));
                    match found {
                        Ok(true) => tracing::warn!(
                            template = %name,
                            kind,
                            %reason,
                            "the credentials lack {privilege}; using the one already installed"
                        ),
                        Ok(false) | Err(SendError::Forbidden(_)) => {
                            return Err(SendError::Forbidden(format!(
                                "cannot install {kind}/{name}: the credentials lack {privilege} \
                                 ({reason}), and it is not installed: grant the privilege, or \
                                 have an administrator install it (`template = false` skips this \
                                 step)"
                            )));
                        }
                        Err(other) => return Err(other),
                    }
                }
                Err(SendError::Refused(reason)) => {
                    return Err(SendError::Refused(refusal(template.kind, &name, &reason)));
                }
                Err(other) => return Err(other),
            }
            if let Some(pending) = self.pending_templates.as_mut() {
                pending.remove(0);
            }
        }
        Ok(())
    }

    fn export_batch(&mut self, batch: &Batch) -> Result<Export, BoxError> {
        // The request depends on the distribution (ids in an OpenSearch data stream); until the
        // node has told it, build for Elasticsearch and build again once it is known.
        let known = self.node.as_ref().map(|n| n.distribution);
        let build = |exporter: &mut Self, distribution| {
            bulk::build(
                batch,
                &exporter.target,
                distribution,
                &mut exporter.removal_stamps,
                periscope_plugin_api::now_ms(),
            )
        };
        let mut request = build(self, known.unwrap_or(Distribution::Elasticsearch));
        if request.sent.is_empty() && request.unsendable.is_empty() {
            return Ok(Export::Ok);
        }
        if !request.sent.is_empty() {
            match self.prepare() {
                Ok(distribution) if Some(distribution) != known => {
                    request = build(self, distribution);
                }
                Ok(_) => {}
                Err(e) => {
                    return Ok(retry_or_reject(
                        e,
                        "reading the node's root endpoint and installing the templates",
                    ));
                }
            }
        }
        let mut rejected: Vec<RejectedItem> = request
            .unsendable
            .into_iter()
            .map(|u| refused(u.position, u.reason))
            .collect();
        if !request.sent.is_empty() {
            let sent = request.sent;
            let answer = self.runtime()?.block_on(self.client.bulk(request.body));
            let body = match answer {
                Ok(body) => body,
                Err(SendError::Forbidden(reason)) => {
                    return Ok(retry_or_reject(
                        SendError::Forbidden(format!(
                            "{reason} (the credentials need {})",
                            write_privileges(&self.target)
                        )),
                        "sending the batch",
                    ));
                }
                Err(e) => return Ok(retry_or_reject(e, "sending the batch")),
            };
            match response::classify(&body, sent.len()) {
                // Nothing tells which items were indexed: sending them again is safe.
                Err(error) => return Ok(retry(RETRY_AFTER, error.to_string())),
                Ok(Outcome::Indexed { already_stored }) => {
                    if already_stored > 0 {
                        tracing::debug!(
                            already_stored,
                            "documents the node already held (sent before) counted as stored"
                        );
                    }
                }
                Ok(Outcome::Retry { items, first }) => {
                    return Ok(retry(
                        RETRY_AFTER,
                        format!(
                            "{items} of {} documents must be sent again (429/5xx), first: {first}",
                            sent.len()
                        ),
                    ));
                }
                Ok(Outcome::Rejected(items)) => {
                    let product = self
                        .node
                        .as_ref()
                        .map_or("Elasticsearch", |n| n.distribution.name());
                    for r in items {
                        // `classify` checked that the response has one item per operation.
                        let Some(s) = sent.get(r.position) else {
                            continue;
                        };
                        let reason = match &s.id {
                            Some(id) => format!(
                                "rejected by {product}: HTTP {}: {} (document {id}, {})",
                                r.status, r.error, s.what
                            ),
                            None => format!(
                                "rejected by {product}: HTTP {}: {} ({})",
                                r.status, r.error, s.what
                            ),
                        };
                        rejected.push(refused(s.position, reason));
                    }
                }
            }
        }
        if rejected.is_empty() {
            return Ok(Export::Ok);
        }
        Ok(Export::RejectItems { items: rejected })
    }
}

/// The message of a template the node refused for good, with what to do when the refusal means
/// the node lacks the feature the options ask for.
fn refusal(kind: Kind, name: &str, reason: &str) -> String {
    let hint = if kind == Kind::IsmPolicy && reason.contains("no handler found") {
        Some(
            "`data_stream.retention` on OpenSearch is an ISM policy, and the node has no Index \
             State Management plugin (`opensearch-index-management`): install it, or drop \
             `retention`",
        )
    } else if reason.contains("unknown setting [index.lifecycle.name]") {
        Some(
            "`data_stream.policy` on Elasticsearch is an ILM policy (`index.lifecycle.name`), and \
             the node has no ILM (an x-pack feature of Elastic's distribution): use `retention` \
             (data stream lifecycle) instead",
        )
    } else if reason.contains("unknown setting [index.plugins.index_state_management.policy_id]") {
        Some(
            "`data_stream.policy` on OpenSearch is an ISM policy, and the node has no Index State \
             Management plugin (`opensearch-index-management`): install it, or drop `policy`",
        )
    } else {
        None
    };
    let what = format!("{} {name} was refused: {reason}", kind.endpoint());
    match hint {
        Some(hint) => format!("{hint} ({what})"),
        None => what,
    }
}

/// The index privileges writing into `target` needs, for the message of a 403.
fn write_privileges(target: &Target) -> String {
    match target {
        Target::Index(_) => {
            "the index privileges `create_index` and `index` on the indices `index` names"
                .to_owned()
        }
        Target::DataStream(stream) => format!(
            "the index privileges `auto_configure` and `create_doc` on `{}`",
            stream.name()
        ),
    }
}

/// A refused document as the host addresses it.
fn refused(position: bulk::Position, reason: String) -> RejectedItem {
    RejectedItem {
        update: position.update,
        sample: position.sample,
        reason,
    }
}

fn retry(after: Duration, reason: String) -> Export {
    Export::Retry { after, reason }
}

/// The result of a request that got no usable answer.
fn retry_or_reject(error: SendError, doing: &str) -> Export {
    match error {
        SendError::Unavailable(reason) => retry(RETRY_AFTER, format!("{doing}: {reason}")),
        SendError::Unauthorized(reason) => retry(
            RETRY_AFTER_UNAUTHORIZED,
            format!("{doing}: {reason} (check the credentials)"),
        ),
        SendError::Forbidden(reason) => retry(
            RETRY_AFTER_UNAUTHORIZED,
            format!("{doing}: {reason} (the credentials lack a privilege)"),
        ),
        SendError::Untrusted(reason) => retry(
            RETRY_AFTER_UNAUTHORIZED,
            format!(
                "{doing}: {reason} (check `tls.ca_file`: it must hold the CA that signed the node's \
                 certificate, and the certificate must name the host in `url`)"
            ),
        ),
        SendError::Refused(reason) => Export::Reject {
            reason: format!("{doing}: {reason}"),
        },
    }
}

periscope_plugin_api::export_exporter!(name = "elasticsearch", exporter = ElasticsearchExporter);

#[cfg(test)]
mod tests {
    use super::*;
    use periscope_plugin_api::config::parse;
    use periscope_plugin_api::{BatchBuilder, Family, FamilyKind, Source, SourceKind, Suffix};

    fn batch() -> Batch {
        let mut b = BatchBuilder::new();
        let f = b.family(Family {
            name: "up",
            help: "",
            unit: "",
            kind: FamilyKind::Gauge,
        });
        b.replace(Source::new(SourceKind::Endpoint, "e"))
            .sample(f, Suffix::None, 1.0, 1);
        b.build()
    }

    #[test]
    fn a_node_that_is_down_means_retry_and_degraded_health() {
        // A port nobody listens on: the start does not fail, the export asks for a retry.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = parse(&format!(
            "url = \"http://127.0.0.1:{port}\"\ntimeout = \"2s\""
        ))
        .unwrap();
        let mut exporter = ElasticsearchExporter::new(config, Context { exporter: "t" }).unwrap();
        match exporter.export(&batch()).unwrap() {
            Export::Retry { after, reason } => {
                assert_eq!(after, RETRY_AFTER);
                assert!(reason.contains("root endpoint"), "{reason}");
                assert!(reason.contains(&port.to_string()), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(exporter.health(), Health::Degraded(_)));
        assert_eq!(exporter.export(&Batch::new()).unwrap(), Export::Ok);
        exporter.shutdown().unwrap();
    }

    /// A stand-in node on a free port that answers every request with `answer(method, path)`
    /// (status and JSON body) and closes the connection; it records each `METHOD path`.
    fn canned_node(
        answer: fn(&str, &str) -> (u16, &'static str),
    ) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use std::io::{BufRead as _, BufReader, Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let (method, path) = (
                    parts.next().unwrap_or_default().to_owned(),
                    parts.next().unwrap_or_default().to_owned(),
                );
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                record.lock().unwrap().push(format!("{method} {path}"));
                let (status, text) = answer(&method, &path);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        (port, seen)
    }

    const ELASTICSEARCH_ROOT: &str = r#"{"version":{"number":"8.19.21"}}"#;

    const FORBIDDEN: &str = r#"{"error":{"type":"security_exception","reason":"action [cluster:admin/component_template/put] is unauthorized"},"status":403}"#;

    #[test]
    fn without_the_template_privilege_installed_templates_are_used() {
        // An administrator installed both templates; the exporter may not put them.
        let (port, seen) = canned_node(|method, path| match (method, path) {
            ("GET", "/") => (200, ELASTICSEARCH_ROOT),
            ("PUT", p) if p.contains("_template/") => (403, FORBIDDEN),
            ("GET", p) if p.contains("_template/") => (200, "{}"),
            ("POST", "/_bulk") => (
                200,
                r#"{"errors":false,"items":[{"create":{"_id":"x","status":201}}]}"#,
            ),
            _ => (400, "{}"),
        });
        let config = parse(&format!(
            "url = \"http://127.0.0.1:{port}\"\ndata_stream = {{}}\ntimeout = \"5s\""
        ))
        .unwrap();
        let mut exporter = ElasticsearchExporter::new(config, Context { exporter: "t" }).unwrap();
        assert_eq!(exporter.export(&batch()).unwrap(), Export::Ok);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "GET /",
                "PUT /_component_template/periscope-metrics-periscope@mappings",
                "GET /_component_template/periscope-metrics-periscope@mappings",
                "PUT /_index_template/periscope-metrics-periscope",
                "GET /_index_template/periscope-metrics-periscope",
                "POST /_bulk",
            ]
        );
        exporter.shutdown().unwrap();
    }

    #[test]
    fn without_the_template_privilege_a_missing_template_names_the_privilege() {
        let (port, seen) = canned_node(|method, path| match (method, path) {
            ("GET", "/") => (200, ELASTICSEARCH_ROOT),
            ("PUT", p) if p.contains("_template/") => (403, FORBIDDEN),
            ("GET", p) if p.contains("_component_template/") => (200, "{}"),
            ("GET", p) if p.contains("_index_template/") => (404, "{}"),
            _ => (400, "{}"),
        });
        let config = parse(&format!(
            "url = \"http://127.0.0.1:{port}\"\ndata_stream = {{}}\ntimeout = \"5s\""
        ))
        .unwrap();
        let mut exporter = ElasticsearchExporter::new(config, Context { exporter: "t" }).unwrap();
        match exporter.export(&batch()).unwrap() {
            Export::Retry { after, reason } => {
                assert_eq!(after, RETRY_AFTER_UNAUTHORIZED);
                assert!(reason.contains("`manage_index_templates`"), "{reason}");
                assert!(
                    reason.contains("_index_template/periscope-metrics-periscope"),
                    "{reason}"
                );
                assert!(reason.contains("HTTP 403"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(exporter.health(), Health::Unhealthy(_)));
        // Nothing was sent: the data waits for the template.
        assert!(!seen.lock().unwrap().iter().any(|r| r == "POST /_bulk"));
        exporter.shutdown().unwrap();
    }

    #[test]
    fn a_bulk_refused_for_a_privilege_names_the_index_privileges() {
        let (port, _) = canned_node(|_, _| (403, FORBIDDEN));
        let config = parse(&format!(
            "url = \"http://127.0.0.1:{port}\"\ndata_stream = {{}}\ntemplate = false\ntimeout = \"5s\""
        ))
        .unwrap();
        let mut exporter = ElasticsearchExporter::new(config, Context { exporter: "t" }).unwrap();
        match exporter.export(&batch()).unwrap() {
            Export::Retry { reason, .. } => assert!(
                reason.contains("`auto_configure` and `create_doc` on `metrics-periscope-default`"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
        exporter.shutdown().unwrap();
    }

    #[test]
    fn a_refused_lifecycle_names_the_missing_feature() {
        let ilm = refusal(
            Kind::Component,
            "c",
            "HTTP 400: unknown setting [index.lifecycle.name] please check that any required \
             plugins are installed",
        );
        assert!(
            ilm.starts_with("`data_stream.policy` on Elasticsearch is an ILM policy"),
            "{ilm}"
        );
        assert!(ilm.ends_with("(_component_template c was refused: HTTP 400: unknown setting [index.lifecycle.name] please check that any required plugins are installed)"), "{ilm}");
        let ism = refusal(
            Kind::IsmPolicy,
            "p",
            r#"HTTP 400: {"error":"no handler found for uri [/_plugins/_ism/policies/p] and method [PUT]"}"#,
        );
        assert!(ism.contains("no Index State Management plugin"), "{ism}");
        assert_eq!(
            refusal(Kind::Index, "i", "HTTP 400: other"),
            "_index_template i was refused: HTTP 400: other"
        );
    }

    #[test]
    fn opensearch_gets_its_templates_and_ids_after_get_root() {
        const OPENSEARCH_ROOT: &str =
            r#"{"version":{"distribution":"opensearch","number":"2.19.6"}}"#;
        let (port, seen) = canned_node(|method, path| match (method, path) {
            ("GET", "/") => (200, OPENSEARCH_ROOT),
            ("PUT", p) if p.contains("_template/") => (200, r#"{"acknowledged":true}"#),
            ("POST", "/_bulk") => (
                200,
                r#"{"errors":false,"items":[{"create":{"_id":"x","status":201}}]}"#,
            ),
            _ => (400, "{}"),
        });
        let config = parse(&format!(
            "url = \"http://127.0.0.1:{port}\"\ndata_stream = {{}}\ntimeout = \"5s\""
        ))
        .unwrap();
        let mut exporter = ElasticsearchExporter::new(config, Context { exporter: "t" }).unwrap();
        assert_eq!(exporter.export(&batch()).unwrap(), Export::Ok);
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "GET /",
                "PUT /_component_template/periscope-metrics-periscope@mappings",
                "PUT /_index_template/periscope-metrics-periscope",
                "POST /_bulk",
            ]
        );
        assert_eq!(
            exporter.node.as_ref().map(|n| n.distribution),
            Some(Distribution::OpenSearch)
        );
        exporter.shutdown().unwrap();
    }

    #[test]
    fn a_bad_config_fails_new() {
        let config = parse("index = \"UPPER\"").unwrap();
        let err = ElasticsearchExporter::new(config, Context { exporter: "t" })
            .err()
            .unwrap();
        assert!(err.to_string().contains("lowercase"), "{err}");
    }

    #[test]
    fn a_document_that_cannot_be_written_is_refused_alone_by_its_position() {
        let mut b = BatchBuilder::new();
        let f = b.family(Family {
            name: "up",
            help: "",
            unit: "",
            kind: FamilyKind::Gauge,
        });
        b.remove(Source::new(SourceKind::Endpoint, "gone"));
        let mut r = b.replace(Source::new(SourceKind::Endpoint, "e"));
        r.sample(f, Suffix::None, 1.0, i64::MAX);
        let batch = b.build();
        // Only the removal would be sent, to a port nobody listens on: a retry.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = parse(&format!(
            "url = \"http://127.0.0.1:{port}\"\ntemplate = false\ntimeout = \"2s\""
        ))
        .unwrap();
        let mut exporter = ElasticsearchExporter::new(config, Context { exporter: "t" }).unwrap();
        assert!(matches!(
            exporter.export(&batch).unwrap(),
            Export::Retry { .. }
        ));
        // Without the removal, only the unwritable sample is left: refused by its position.
        let mut b = BatchBuilder::new();
        let f = b.family(Family {
            name: "up",
            help: "",
            unit: "",
            kind: FamilyKind::Gauge,
        });
        b.replace(Source::new(SourceKind::Endpoint, "empty"));
        b.replace(Source::new(SourceKind::Endpoint, "e"))
            .sample(f, Suffix::None, 1.0, i64::MAX);
        match exporter.export(&b.build()).unwrap() {
            Export::RejectItems { items } => {
                assert_eq!(items.len(), 1, "{items:?}");
                assert_eq!((items[0].update, items[0].sample), (1, Some(0)));
                assert!(
                    items[0].reason.contains("out of range"),
                    "{}",
                    items[0].reason
                );
            }
            other => panic!("{other:?}"),
        }
        exporter.shutdown().unwrap();
    }
}
