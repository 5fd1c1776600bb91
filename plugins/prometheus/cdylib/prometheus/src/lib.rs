//! The `prometheus` exporter plugin: the metrics page of [`periscope_prometheus`], exported as
//! a plugin library (`libperiscope_exporter_prometheus.so`). The code is in `plugins/prometheus/`.

periscope_plugin_api::export_exporter!(
    name = "prometheus",
    exporter = periscope_prometheus::PrometheusExporter
);

/// The plugin's own allocator, jemalloc (a copy apart from the host's): the page's blocks are
/// replaced and its gzip pieces remade as sources change, and with the system's malloc the freed
/// memory stayed in the process; jemalloc's background thread gives it back to the kernel.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
