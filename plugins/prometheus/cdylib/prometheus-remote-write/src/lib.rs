//! The `prometheus-remote-write` exporter plugin: the remote-write exporter of
//! [`periscope_prometheus`], exported as a plugin library
//! (`libperiscope_exporter_prometheus_remote_write.so`). The code is in `plugins/prometheus/`.

periscope_plugin_api::export_exporter!(
    name = "prometheus-remote-write",
    exporter = periscope_prometheus::RemoteWriteExporter
);
