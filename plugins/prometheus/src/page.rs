//! The metrics page exporter (`plugin = "prometheus"`): every batch is applied to the state and
//! published at once; scrapes read the published state.
//!
//! Its `export` never fails: the page has no target that can refuse. Pulled samples carry no
//! timestamps, so Prometheus marks vanished series stale itself.

use std::sync::Arc;

use periscope_plugin_api::{Batch, BoxError, Context, Export, Exporter};

use crate::config::{self, PrometheusConfig};
use crate::gzip_pages::GzipPages;
use crate::server::{Server, ServerOptions};
use crate::state::{Ingest, Options, Published, State};
use crate::stats::Stats;

/// The metrics page exporter.
#[derive(Debug)]
pub struct PrometheusExporter {
    state: State,
    options: Options,
    published: Arc<Published>,
    stats: Arc<Stats>,
    server: Server,
}

impl PrometheusExporter {
    /// The address the metrics page is served on (the bound one, also with port 0).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }

    /// The state scrapes currently see.
    pub fn published(&self) -> Arc<State> {
        self.published.get()
    }

    /// The gzipped series kept for gzip scrapes of the current state.
    pub fn gzip_pages(&self) -> &GzipPages {
        self.published.gzip()
    }

    /// The exporter's own counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl Exporter for PrometheusExporter {
    type Config = PrometheusConfig;

    fn validate(config: &PrometheusConfig) -> Result<(), BoxError> {
        Ok(config.validate()?)
    }

    fn new(config: PrometheusConfig, context: Context<'_>) -> Result<Self, BoxError> {
        Self::validate(&config)?;
        let stats = Arc::new(Stats::default());
        let published = Arc::new(Published::default());
        let auth = config
            .auth
            .as_ref()
            .map(|auth| config::credentials("auth", auth))
            .transpose()?;
        let server = Server::start(
            &ServerOptions {
                listen: config.listen,
                path: config.path.clone(),
                tls: config.tls.clone(),
                auth,
                write_timeout: config.write_timeout.0,
                idle_timeout: config.idle_timeout.0,
            },
            published.clone(),
            stats.clone(),
        )?;
        tracing::info!(
            exporter = context.exporter,
            listen = %server.local_addr(),
            path = %config.path,
            tls = config.tls.is_some(),
            "prometheus page exporter started"
        );
        Ok(PrometheusExporter {
            state: State::default(),
            options: config.options(),
            published,
            stats,
            server,
        })
    }

    fn export(&mut self, batch: &Batch) -> Result<Export, BoxError> {
        let mut ingest = Ingest::new(&self.options, false, 0);
        self.state.apply(batch, &mut ingest);
        let (delta, _) = ingest.finish();
        self.stats
            .commit(&delta, self.state.source_count(), self.state.series_count());
        self.published.set(Arc::new(self.state.clone()));
        Ok(Export::Ok)
    }

    fn shutdown(&mut self) -> Result<(), BoxError> {
        self.server.shutdown();
        Ok(())
    }
}
