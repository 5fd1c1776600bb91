//! The `prometheus` exporter plugin: the metrics page of [`periscope_prometheus`], exported as
//! a plugin library (`libperiscope_exporter_prometheus.so`). The code is in `plugins/prometheus/`.

periscope_plugin_api::export_exporter!(
    name = "prometheus",
    exporter = periscope_prometheus::PrometheusExporter
);
