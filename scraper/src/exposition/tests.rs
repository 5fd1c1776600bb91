use std::borrow::Cow;

use periscope_plugin_api::batch::{FamilyKind, Suffix};

use super::*;

fn parse_ok(page: &str, format: Format) -> Exposition<'_> {
    match parse(page.as_bytes(), format) {
        Ok(exposition) => exposition,
        Err(error) => panic!("{format:?} page refused: {error}\n{page}"),
    }
}

fn text(page: &str) -> Exposition<'_> {
    parse_ok(page, Format::Text)
}

fn openmetrics(page: &str) -> Exposition<'_> {
    parse_ok(page, Format::OpenMetrics)
}

fn error(page: &str, format: Format) -> ParseError {
    match parse(page.as_bytes(), format) {
        Ok(exposition) => panic!("{format:?} page accepted: {exposition:#?}\n{page}"),
        Err(error) => error,
    }
}

/// Family name plus suffix of every sample, in output order.
fn parsed_names(exposition: &Exposition<'_>) -> Vec<String> {
    exposition
        .samples()
        .map(|(family, sample)| family.metric_name(sample.suffix))
        .collect()
}

/// The metric name of every sample line, read without the parser: what precedes `{` or a blank.
fn written_names(page: &str) -> Vec<String> {
    page.lines()
        .map(str::trim_start)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
            line[..end].to_owned()
        })
        .collect()
}

/// The invariant: family name + suffix is the name written for every sample, in order (for pages
/// whose families are not interleaved and hold no duplicate).
fn assert_names_as_written(page: &str, format: Format) {
    let exposition = parse_ok(page, format);
    assert_eq!(exposition.duplicates, 0);
    assert_eq!(parsed_names(&exposition), written_names(page));
}

fn family<'e, 'a>(exposition: &'e Exposition<'a>, name: &str) -> &'e ParsedFamily<'a> {
    exposition
        .families
        .iter()
        .find(|family| family.name == name)
        .unwrap_or_else(|| panic!("no family {name}"))
}

fn labels<'s>(sample: &'s ParsedSample<'_>) -> Vec<(&'s str, &'s str)> {
    sample
        .labels
        .iter()
        .map(|(name, value)| (*name, value.as_ref()))
        .collect()
}

const NODE_EXPORTER: &str = r##"# HELP go_gc_duration_seconds A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.5467e-05
go_gc_duration_seconds{quantile="0.25"} 3.8832e-05
go_gc_duration_seconds{quantile="0.5"} 4.6174e-05
go_gc_duration_seconds{quantile="0.75"} 6.3e-05
go_gc_duration_seconds{quantile="1"} 0.001404501
go_gc_duration_seconds_sum 0.042212287
go_gc_duration_seconds_count 612
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 8
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 1.03957181e+06
node_cpu_seconds_total{cpu="0",mode="iowait"} 1045.78
node_cpu_seconds_total{cpu="0",mode="irq"} 0
node_cpu_seconds_total{cpu="0",mode="system"} 9187.35
node_cpu_seconds_total{cpu="1",mode="idle"} 1.04022874e+06
node_cpu_seconds_total{cpu="1",mode="user"} 21440.13
# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{device="/dev/nvme0n1p2",fstype="ext4",mountpoint="/"} 3.4017968128e+11
node_filesystem_avail_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run"} 3.323527168e+09
node_filesystem_avail_bytes{device="/dev/nvme0n1p1",fstype="vfat",mountpoint="/boot/efi"} 5.25557248e+08
# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.43
# HELP node_network_receive_bytes_total Network device statistic receive_bytes.
# TYPE node_network_receive_bytes_total counter
node_network_receive_bytes_total{device="eth0"} 9.7135468e+08
node_network_receive_bytes_total{device="lo"} 1.4321895e+07
# HELP node_scrape_collector_duration_seconds node_exporter: Duration of a collector scrape.
# TYPE node_scrape_collector_duration_seconds gauge
node_scrape_collector_duration_seconds{collector="cpu"} 0.000398416
node_scrape_collector_duration_seconds{collector="filesystem"} 0.001226044
# HELP node_uname_info Labeled system information as provided by the uname system call.
# TYPE node_uname_info gauge
node_uname_info{domainname="(none)",machine="x86_64",nodename="worker-1",release="6.8.0-45-generic",sysname="Linux",version="#45-Ubuntu SMP PREEMPT_DYNAMIC Fri Aug 30 12:02:04 UTC 2024"} 1
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1.72643251497e+09
# HELP promhttp_metric_handler_requests_total Total number of scrapes by HTTP status code.
# TYPE promhttp_metric_handler_requests_total counter
promhttp_metric_handler_requests_total{code="200"} 6523
promhttp_metric_handler_requests_total{code="500"} 0
promhttp_metric_handler_requests_total{code="503"} 0
"##;

#[test]
fn node_exporter_page_reads_as_prometheus_reads_it() {
    let page = text(NODE_EXPORTER);
    assert_eq!(page.duplicates, 0);
    assert_eq!(page.sample_count(), 27);
    let kinds: Vec<(&str, FamilyKind)> = page
        .families
        .iter()
        .map(|family| (family.name, family.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("go_gc_duration_seconds", FamilyKind::Summary),
            ("go_goroutines", FamilyKind::Gauge),
            ("node_cpu_seconds", FamilyKind::Counter),
            ("node_filesystem_avail_bytes", FamilyKind::Gauge),
            ("node_load1", FamilyKind::Gauge),
            ("node_network_receive_bytes", FamilyKind::Counter),
            ("node_scrape_collector_duration_seconds", FamilyKind::Gauge),
            ("node_uname_info", FamilyKind::Gauge),
            ("process_start_time_seconds", FamilyKind::Gauge),
            ("promhttp_metric_handler_requests", FamilyKind::Counter),
        ]
    );
    let gc = family(&page, "go_gc_duration_seconds");
    assert_eq!(
        gc.help,
        "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles."
    );
    let suffixes: Vec<Suffix> = gc.samples.iter().map(|sample| sample.suffix).collect();
    assert_eq!(suffixes[..5], [Suffix::None; 5]);
    assert_eq!(suffixes[5..], [Suffix::Sum, Suffix::Count]);
    assert_eq!(gc.samples[1].label("quantile"), Some("0.25"));
    assert_eq!(gc.samples[6].value, 612.0);

    let cpu = family(&page, "node_cpu_seconds");
    assert_eq!(cpu.samples[0].suffix, Suffix::Total);
    assert_eq!(labels(&cpu.samples[0]), [("cpu", "0"), ("mode", "idle")]);
    assert_eq!(cpu.samples[0].value, 1_039_571.81);
    assert_eq!(cpu.samples[0].timestamp_ms, None);

    let uname = family(&page, "node_uname_info");
    assert_eq!(
        uname.samples[0].label("version"),
        Some("#45-Ubuntu SMP PREEMPT_DYNAMIC Fri Aug 30 12:02:04 UTC 2024")
    );
    assert_names_as_written(NODE_EXPORTER, Format::Text);
}

#[test]
fn strings_without_escapes_are_borrowed_from_the_page() {
    let page = text(NODE_EXPORTER);
    for (family, sample) in page.samples() {
        assert!(matches!(family.help, Cow::Borrowed(_)));
        for (_, value) in &sample.labels {
            assert!(matches!(value, Cow::Borrowed(_)));
        }
    }
}

const PROMETHEUS_SELF: &str = r#"# HELP prometheus_build_info A metric with a constant '1' value labeled by version, revision, branch, goversion from which prometheus was built, and the goos and goarch for the build.
# TYPE prometheus_build_info gauge
prometheus_build_info{branch="HEAD",goarch="amd64",goos="linux",goversion="go1.23.4",revision="7086161a93b262aa0949dbf2aba15a5a7b13e0a3",tags="netgo,builtinassets,stringlabels",version="3.1.0"} 1
# HELP prometheus_http_request_duration_seconds Histogram of latencies for HTTP requests.
# TYPE prometheus_http_request_duration_seconds histogram
prometheus_http_request_duration_seconds_bucket{handler="/api/v1/query",le="0.1"} 120
prometheus_http_request_duration_seconds_bucket{handler="/api/v1/query",le="0.2"} 125
prometheus_http_request_duration_seconds_bucket{handler="/api/v1/query",le="0.4"} 127
prometheus_http_request_duration_seconds_bucket{handler="/api/v1/query",le="1"} 127
prometheus_http_request_duration_seconds_bucket{handler="/api/v1/query",le="+Inf"} 127
prometheus_http_request_duration_seconds_sum{handler="/api/v1/query"} 3.0712
prometheus_http_request_duration_seconds_count{handler="/api/v1/query"} 127
prometheus_http_request_duration_seconds_bucket{handler="/metrics",le="0.1"} 4301
prometheus_http_request_duration_seconds_bucket{handler="/metrics",le="+Inf"} 4301
prometheus_http_request_duration_seconds_sum{handler="/metrics"} 11.9
prometheus_http_request_duration_seconds_count{handler="/metrics"} 4301
# HELP prometheus_rule_evaluation_failures_total The total number of rule evaluation failures.
# TYPE prometheus_rule_evaluation_failures_total counter
prometheus_rule_evaluation_failures_total{rule_group="/etc/prometheus/rules.yml;node"} 0
# HELP prometheus_sd_discovered_targets Current number of discovered targets.
# TYPE prometheus_sd_discovered_targets gauge
prometheus_sd_discovered_targets{config="kubernetes-pods",name="scrape"} 42
prometheus_sd_discovered_targets{config="node",name="scrape"} 3
# HELP prometheus_target_interval_length_seconds Actual intervals between scrapes.
# TYPE prometheus_target_interval_length_seconds summary
prometheus_target_interval_length_seconds{interval="15s",quantile="0.01"} 14.99
prometheus_target_interval_length_seconds{interval="15s",quantile="0.99"} NaN
prometheus_target_interval_length_seconds_sum{interval="15s"} 64410.02
prometheus_target_interval_length_seconds_count{interval="15s"} 4294
# HELP prometheus_tsdb_head_max_time Maximum timestamp of the head block. The unit is decided by the library consumer.
# TYPE prometheus_tsdb_head_max_time gauge
prometheus_tsdb_head_max_time 1.732623616891e+12
# HELP net_conntrack_dialer_conn_failed_total Total number of connections failed to dial by the dialer a given name.
# TYPE net_conntrack_dialer_conn_failed_total counter
net_conntrack_dialer_conn_failed_total{dialer_name="alertmanager",reason="refused"} 0
net_conntrack_dialer_conn_failed_total{dialer_name="alertmanager",reason="timeout"} 0
"#;

#[test]
fn prometheus_self_metrics_page_keeps_histograms_and_summaries_together() {
    let page = text(PROMETHEUS_SELF);
    let http = family(&page, "prometheus_http_request_duration_seconds");
    assert_eq!(http.kind, FamilyKind::Histogram);
    assert_eq!(http.samples.len(), 11);
    assert_eq!(http.samples[4].label("le"), Some("+Inf"));
    assert_eq!(http.samples[5].suffix, Suffix::Sum);
    assert_eq!(http.samples[6].suffix, Suffix::Count);
    let interval = family(&page, "prometheus_target_interval_length_seconds");
    assert!(interval.samples[1].value.is_nan());
    assert_eq!(
        family(&page, "prometheus_tsdb_head_max_time").samples[0].value,
        1_732_623_616_891.0
    );
    assert_eq!(
        family(&page, "prometheus_rule_evaluation_failures").samples[0].label("rule_group"),
        Some("/etc/prometheus/rules.yml;node")
    );
    assert_names_as_written(PROMETHEUS_SELF, Format::Text);
}

const GO_CLIENT: &str = "# HELP go_info Information about the Go environment.
# TYPE go_info gauge
go_info{version=\"go1.22.5\"} 1
# HELP go_memstats_alloc_bytes_total Total number of bytes allocated, even if freed.
# TYPE go_memstats_alloc_bytes_total counter
go_memstats_alloc_bytes_total 1.0393256e+08
# HELP go_memstats_frees_total Total number of frees.
# TYPE go_memstats_frees_total counter
go_memstats_frees_total 1.102431e+06
# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.34
# HELP process_max_fds Maximum number of open file descriptors.
# TYPE process_max_fds gauge
process_max_fds 1.048576e+06
# HELP workqueue_queue_duration_seconds How long in seconds an item stays in workqueue before being requested
# TYPE workqueue_queue_duration_seconds histogram
workqueue_queue_duration_seconds_bucket{name=\"virtualmachine\",le=\"1e-08\"} 0
workqueue_queue_duration_seconds_bucket{name=\"virtualmachine\",le=\"1e-07\"} 0
workqueue_queue_duration_seconds_bucket{name=\"virtualmachine\",le=\"0.001\"} 917
workqueue_queue_duration_seconds_bucket{name=\"virtualmachine\",le=\"+Inf\"} 1042
workqueue_queue_duration_seconds_sum{name=\"virtualmachine\"} 1.734
workqueue_queue_duration_seconds_count{name=\"virtualmachine\"} 1042
# HELP kubevirt_info Version information
# TYPE kubevirt_info gauge
kubevirt_info{goversion=\"go1.22.5\",kubeversion=\"v1.4.0\"} 1
";

#[test]
fn go_client_page_names_every_sample_as_written() {
    let page = text(GO_CLIENT);
    assert_eq!(
        family(&page, "go_memstats_alloc_bytes").samples[0].suffix,
        Suffix::Total
    );
    // A gauge called `…_info` stays a gauge of that name.
    assert_eq!(family(&page, "go_info").kind, FamilyKind::Gauge);
    assert_eq!(family(&page, "go_info").samples[0].suffix, Suffix::None);
    assert_names_as_written(GO_CLIENT, Format::Text);
}

// The OpenMetrics 1.0 specification's examples.

const OM_HISTOGRAM: &str = r#"# TYPE foo histogram
foo_bucket{le="0.0"} 0
foo_bucket{le="1e-05"} 0
foo_bucket{le="0.0001"} 5
foo_bucket{le="0.1"} 8
foo_bucket{le="1.0"} 10
foo_bucket{le="10.0"} 11
foo_bucket{le="100000.0"} 11
foo_bucket{le="1e+06"} 15
foo_bucket{le="1e+23"} 16
foo_bucket{le="1.1e+23"} 17
foo_bucket{le="+Inf"} 17
foo_count 17
foo_sum 324789.3
foo_created 1520430000.123
# EOF
"#;

#[test]
fn openmetrics_histogram_with_created() {
    let page = openmetrics(OM_HISTOGRAM);
    let foo = &page.families[0];
    assert_eq!((foo.name, foo.kind), ("foo", FamilyKind::Histogram));
    assert_eq!(foo.samples.len(), 14);
    assert_eq!(foo.samples[10].label("le"), Some("+Inf"));
    assert_eq!(foo.samples[11].suffix, Suffix::Count);
    assert_eq!(foo.samples[12].suffix, Suffix::Sum);
    assert_eq!(foo.samples[13].suffix, Suffix::Created);
    assert_eq!(foo.samples[13].value, 1_520_430_000.123);
    assert_names_as_written(OM_HISTOGRAM, Format::OpenMetrics);
}

const OM_COUNTER_WITH_EXEMPLARS: &str = r#"# TYPE foo counter
# HELP foo Number of foos.
foo_total 17.0 1520879607.789 # {trace_id="KOO5S4vxi0o"} 0.67
foo_created 1520872607.123 1520879607.789 # {trace_id="KOO5S4vxi0o"} 0.67 1520879602.890
# TYPE foo_seconds counter
# UNIT foo_seconds seconds
foo_seconds_total{a="b"} 1
# TYPE bar histogram
bar_bucket{le="0.01"} 0
bar_bucket{le="0.1"} 8 # {} 0.054
bar_bucket{le="+Inf"} 17 # {trace_id="oHg5SJYRHA0",span_id="a"} 9.8 1520879607.789
bar_count 17
bar_sum 324789.3
# EOF"#;

#[test]
fn openmetrics_counters_take_timestamps_in_seconds_and_ignore_exemplars() {
    let page = openmetrics(OM_COUNTER_WITH_EXEMPLARS);
    let foo = family(&page, "foo");
    assert_eq!(foo.kind, FamilyKind::Counter);
    assert_eq!(foo.help, "Number of foos.");
    assert_eq!(foo.samples[0].suffix, Suffix::Total);
    assert_eq!(foo.samples[0].value, 17.0);
    assert_eq!(foo.samples[0].timestamp_ms, Some(1_520_879_607_789));
    assert!(foo.samples[0].labels.is_empty());
    assert_eq!(foo.samples[1].suffix, Suffix::Created);
    let seconds = family(&page, "foo_seconds");
    assert_eq!(seconds.unit, "seconds");
    assert_eq!(seconds.samples[0].suffix, Suffix::Total);
    assert_eq!(family(&page, "bar").samples.len(), 5);
    assert_names_as_written(OM_COUNTER_WITH_EXEMPLARS, Format::OpenMetrics);
}

const OM_SUMMARY_INFO_STATESET: &str = r#"# TYPE rpc_duration_seconds summary
# UNIT rpc_duration_seconds seconds
# HELP rpc_duration_seconds RPC latency \"per call\"\nin seconds \\ quantiles.
rpc_duration_seconds{quantile="0.5"} 4.2
rpc_duration_seconds{quantile="0.9"} 8.1
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
rpc_duration_seconds_created 1520430000.0
# TYPE build info
build_info{version="1.2.3",revision="abc"} 1.0
# TYPE feature stateset
feature{feature="a"} 1
feature{feature="b"} 0
# TYPE vm_sizes gaugehistogram
vm_sizes_bucket{le="1.0"} 2
vm_sizes_bucket{le="+Inf"} 5
vm_sizes_gcount 5
vm_sizes_gsum 11.5
# TYPE queue_depth unknown
queue_depth 3
# TYPE temperature_celsius gauge
# UNIT temperature_celsius celsius
temperature_celsius{room="a"} -3.5
# EOF
"#;

#[test]
fn openmetrics_summary_info_stateset_gaugehistogram_and_units() {
    let page = openmetrics(OM_SUMMARY_INFO_STATESET);
    let rpc = family(&page, "rpc_duration_seconds");
    assert_eq!((rpc.kind, rpc.unit), (FamilyKind::Summary, "seconds"));
    assert_eq!(
        rpc.help,
        "RPC latency \"per call\"\nin seconds \\ quantiles."
    );
    assert!(matches!(rpc.help, Cow::Owned(_)));
    let suffixes: Vec<Suffix> = rpc.samples.iter().map(|sample| sample.suffix).collect();
    assert_eq!(
        suffixes,
        [
            Suffix::None,
            Suffix::None,
            Suffix::Sum,
            Suffix::Count,
            Suffix::Created
        ]
    );
    let build = family(&page, "build");
    assert_eq!(build.kind, FamilyKind::Info);
    assert_eq!(build.samples[0].suffix, Suffix::Info);
    assert_eq!(build.samples[0].label("revision"), Some("abc"));
    assert_eq!(family(&page, "feature").kind, FamilyKind::StateSet);
    let sizes = family(&page, "vm_sizes");
    assert_eq!(sizes.kind, FamilyKind::GaugeHistogram);
    assert_eq!(
        sizes
            .samples
            .iter()
            .map(|sample| sample.suffix)
            .collect::<Vec<_>>(),
        [Suffix::Bucket, Suffix::Bucket, Suffix::GCount, Suffix::GSum]
    );
    assert_eq!(family(&page, "queue_depth").kind, FamilyKind::Unknown);
    assert_eq!(family(&page, "temperature_celsius").unit, "celsius");
    assert_names_as_written(OM_SUMMARY_INFO_STATESET, Format::OpenMetrics);
}

#[test]
fn counters_are_named_after_their_samples_in_both_formats() {
    let om = openmetrics("# TYPE foo counter\nfoo_total 1\n# EOF\n");
    assert_eq!(
        (om.families[0].name, om.families[0].samples[0].suffix),
        ("foo", Suffix::Total)
    );
    let declared_total = text("# TYPE foo_total counter\nfoo_total 1\n");
    assert_eq!(
        (
            declared_total.families[0].name,
            declared_total.families[0].samples[0].suffix
        ),
        ("foo", Suffix::Total)
    );
    let without_total = text("# TYPE foo counter\nfoo 1\n");
    let foo = &without_total.families[0];
    assert_eq!(
        (foo.name, foo.kind, foo.samples[0].suffix),
        ("foo", FamilyKind::Counter, Suffix::None)
    );
    let om_declared_total = openmetrics("# TYPE foo_total counter\nfoo_total 1\n# EOF\n");
    assert_eq!(om_declared_total.families[0].name, "foo");
    let info_declared = openmetrics("# TYPE foo_info info\nfoo_info{a=\"b\"} 1\n# EOF\n");
    assert_eq!(
        (
            info_declared.families[0].name,
            info_declared.families[0].samples[0].suffix
        ),
        ("foo", Suffix::Info)
    );
}

#[test]
fn help_before_type_under_the_sample_name_joins_the_counter() {
    let page = text("# HELP foo_total Foos.\n# TYPE foo_total counter\nfoo_total 3\n");
    assert_eq!(page.families.len(), 1);
    let foo = &page.families[0];
    assert_eq!(
        (foo.name, foo.help.as_ref(), foo.kind),
        ("foo", "Foos.", FamilyKind::Counter)
    );
}

#[test]
fn samples_without_type_are_unknown_families_of_their_own() {
    let page = text("# HELP a An a.\na 1\nb_total{x=\"1\"} 2\nb_total{x=\"2\"} 3\nc_bucket 4\n");
    let names: Vec<(&str, FamilyKind, usize)> = page
        .families
        .iter()
        .map(|family| (family.name, family.kind, family.samples.len()))
        .collect();
    assert_eq!(
        names,
        [
            ("a", FamilyKind::Unknown, 1),
            ("b_total", FamilyKind::Unknown, 2),
            ("c_bucket", FamilyKind::Unknown, 1),
        ]
    );
    assert_eq!(page.families[0].help, "An a.");
    let untyped = text("# TYPE d untyped\nd 1\n");
    assert_eq!(untyped.families[0].kind, FamilyKind::Unknown);
    let unknown_om = openmetrics("e 1\n# EOF\n");
    assert_eq!(unknown_om.families[0].kind, FamilyKind::Unknown);
}

#[test]
fn a_suffix_the_text_type_does_not_have_starts_a_family_of_its_own() {
    let page = text("# TYPE foo summary\nfoo_sum 1\nfoo_count 1\nfoo_bucket{le=\"1\"} 1\n");
    assert_eq!(page.families.len(), 2);
    assert_eq!(page.families[1].name, "foo_bucket");
    assert_eq!(page.families[1].kind, FamilyKind::Unknown);
}

#[test]
fn families_and_samples_keep_page_order_and_interleaved_samples_join_their_family() {
    let page = text("# TYPE z gauge\nz 1\n# TYPE a gauge\na 1\nz{x=\"1\"} 2\n");
    assert_eq!(
        page.families.iter().map(|f| f.name).collect::<Vec<_>>(),
        ["z", "a"]
    );
    assert_eq!(page.families[0].samples.len(), 2);
    assert_eq!(page.families[0].samples[1].value, 2.0);
}

#[test]
fn families_without_samples_are_left_out() {
    let page = text("# HELP lonely Nothing here.\n# TYPE lonely gauge\n# TYPE x gauge\nx 1\n");
    assert_eq!(page.families.len(), 1);
    assert_eq!(page.families[0].name, "x");
}

#[test]
fn duplicate_series_keep_the_first_and_are_counted() {
    let page = text(
        "# TYPE foo gauge\nfoo{a=\"1\",b=\"2\"} 1\nfoo{b=\"2\",a=\"1\"} 2\nfoo{a=\"1\"} 3\nfoo{a=\"1\",b=\"2\"} 4\nfoo{a=\"1\",b=\"3\"} 5\n",
    );
    let foo = &page.families[0];
    assert_eq!(
        foo.samples.iter().map(|s| s.value).collect::<Vec<_>>(),
        [1.0, 3.0, 5.0]
    );
    assert_eq!(page.duplicates, 2);
    assert_eq!(page.sample_count(), 3);
    // Same labels under different metric names are different series.
    let names = text("# TYPE h histogram\nh_sum 1\nh_count 1\nh_count 2\n");
    assert_eq!(names.duplicates, 1);
    assert_eq!(names.sample_count(), 2);
    // However the series is written.
    let spaced = text(
        "foo{a=\"1\",b=\"x\\\\y\"} 1\nfoo { b = \"x\\\\y\" , a=\"1\" } 2\nfoo{a=\"1\",b=\"x\\\\y\",} 3\n  foo{b=\"x\\\\y\",a=\"1\"}\t4\nbar{} 1\nbar 2\n",
    );
    assert_eq!((spaced.sample_count(), spaced.duplicates), (2, 4));
    let om = openmetrics("bar{} 1\nbar 2\nbaz{a=\"\\n\"} 1\nbaz{a=\"\\n\"} 2\n# EOF\n");
    assert_eq!((om.sample_count(), om.duplicates), (2, 2));
    // An escaped value equal to a plain one is the same series.
    let escaped = text("m{a=\"x\\\\y\"} 1\nm{a=\"x\\\\y\"} 2\nm{a=\"x\\ny\"} 3\n");
    assert_eq!((escaped.sample_count(), escaped.duplicates), (2, 1));
}

#[test]
fn escapes_are_unescaped_and_round_trip() {
    let page = text(
        "# HELP m A \\\\ backslash,\\na newline and \"quotes\".\nm{path=\"C:\\\\dir\",quote=\"say \\\"hi\\\"\",lines=\"a\\nb\",plain=\"p\"} 1\n",
    );
    let m = &page.families[0];
    assert_eq!(m.help, "A \\ backslash,\na newline and \"quotes\".");
    let sample = &m.samples[0];
    assert_eq!(sample.label("path"), Some("C:\\dir"));
    assert_eq!(sample.label("quote"), Some("say \"hi\""));
    assert_eq!(sample.label("lines"), Some("a\nb"));
    assert!(matches!(sample.labels[3].1, Cow::Borrowed("p")));

    for value in [
        "",
        "plain",
        "\\",
        "\"",
        "\n",
        "a\\\"b\nc\\\\",
        "ünïcödé \u{1F600}",
    ] {
        for format in [Format::Text, Format::OpenMetrics] {
            let written = format!("m{{v=\"{}\"}} 1\n# EOF\n", escape(value));
            let written = if format == Format::Text {
                written.replace("# EOF\n", "")
            } else {
                written
            };
            let page = parse_ok(&written, format);
            assert_eq!(page.families[0].samples[0].label("v"), Some(value));
        }
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[test]
fn text_format_allows_blanks_a_trailing_comma_and_a_missing_last_newline() {
    let page = text(
        "  # TYPE  foo\tgauge  \n\n   foo { a = \"1\" , b=\"2\", }\t 7   1395066363000  \nfoo{c=\"3\"}8\nbar 1",
    );
    let foo = &page.families[0];
    assert_eq!(labels(&foo.samples[0]), [("a", "1"), ("b", "2")]);
    assert_eq!(foo.samples[0].timestamp_ms, Some(1_395_066_363_000));
    assert_eq!(foo.samples[1].value, 8.0);
    assert_eq!(page.families[1].samples[0].value, 1.0);
}

#[test]
fn values_take_every_spelling_of_infinity_and_nan() {
    let page = text("a 1\nb +Inf\nc -Inf\nd Inf\ne NaN\nf -0.5e-3\n");
    let values: Vec<f64> = page.samples().map(|(_, sample)| sample.value).collect();
    assert_eq!(
        values[..4],
        [1.0, f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY]
    );
    assert!(values[4].is_nan());
    assert_eq!(values[5], -0.0005);
}

#[test]
fn comments_are_ignored_in_text() {
    let page = text("# just a comment\n#no space\n# HELPER not help\n# TYPE\nfoo 1\n");
    assert_eq!(page.sample_count(), 1);
}

fn max_samples(max_samples: usize) -> Limits<'static> {
    Limits {
        max_samples,
        ..Limits::none()
    }
}

#[test]
fn sample_limit_stops_at_the_first_sample_over_it() {
    let page = "a 1\na 1\nb 2\nc 3\n";
    let kept = parse_with_limits(page.as_bytes(), Format::Text, max_samples(3));
    assert_eq!(kept.map(|e| e.sample_count()), Ok(3));
    let error = parse_with_limits(page.as_bytes(), Format::Text, max_samples(2)).unwrap_err();
    assert_eq!((error.line, error.kind), (4, ErrorKind::TooManySamples));
}

#[test]
fn samples_left_out_by_keep_are_checked_counted_and_not_kept() {
    let page = "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\nh_sum 2\nb 2\nb 2\nc 3\n";
    let mut asked = Vec::new();
    let mut keep = |name: &str| {
        asked.push(name.to_owned());
        name == "h_count" || name == "c"
    };
    let limits = Limits {
        keep: Some(&mut keep),
        ..Limits::none()
    };
    let page = parse_with_limits(page.as_bytes(), Format::Text, limits).unwrap();
    let kept: Vec<String> = page
        .samples()
        .map(|(family, sample)| family.metric_name(sample.suffix))
        .collect();
    assert_eq!(kept, ["h_count", "c"]);
    assert_eq!((page.filtered, page.duplicates), (4, 0));
    assert_eq!(asked, ["h_bucket", "h_count", "h_sum", "b", "b", "c"]);
    // A sample left out is still checked.
    let mut none = |_: &str| false;
    let limits = Limits {
        keep: Some(&mut none),
        ..Limits::none()
    };
    let error = parse_with_limits(b"h{a=\"1\",a=\"2\"} 1\n", Format::Text, limits).unwrap_err();
    assert_eq!(error.kind, ErrorKind::DuplicateLabelName);
    // And a TYPE line after it is still late.
    let mut none = |_: &str| false;
    let limits = Limits {
        keep: Some(&mut none),
        ..Limits::none()
    };
    let error = parse_with_limits(
        b"# TYPE m counter\nm_total 1\n# TYPE m counter\n",
        Format::OpenMetrics,
        limits,
    )
    .unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidMetadata);
}

#[test]
fn the_sample_limit_counts_only_what_keep_keeps() {
    let mut page = String::new();
    for i in 0..1000 {
        page.push_str(&format!("dropped{{i=\"{i}\"}} 1\nkept{{i=\"{i}\"}} 1\n"));
    }
    let mut keep = |name: &str| name == "kept";
    let limits = Limits {
        max_samples: 10,
        keep: Some(&mut keep),
        ..Limits::none()
    };
    let error = parse_with_limits(page.as_bytes(), Format::Text, limits).unwrap_err();
    // The eleventh kept sample is on line 22: the parse stops there.
    assert_eq!((error.line, error.kind), (22, ErrorKind::TooManySamples));
}

#[test]
fn families_past_the_bound_fail_the_parse_with_or_without_samples() {
    let mut page = String::new();
    for i in 0..MAX_FAMILIES {
        page.push_str(&format!("# TYPE m{i} gauge\n"));
    }
    assert!(parse(page.as_bytes(), Format::Text).is_ok());
    for extra in ["# HELP over h\n", "over 1\n"] {
        let page = format!("{page}{extra}");
        let error = parse(page.as_bytes(), Format::Text).unwrap_err();
        assert_eq!(
            (error.line, error.kind),
            (MAX_FAMILIES + 1, ErrorKind::TooManyFamilies)
        );
    }
}

#[test]
fn label_limits_stop_the_parse_at_the_first_label_over_them() {
    let limits = || Limits {
        max_labels: 2,
        max_label_value_bytes: 4,
        max_label_name_bytes: 3,
        ..Limits::none()
    };
    let ok = "m{a=\"1234\",b=\"x\"} 1\n";
    assert!(parse_with_limits(ok.as_bytes(), Format::Text, limits()).is_ok());
    let many = "m 1\nm{a=\"1\",b=\"2\",c=\"3\",d=\"4\"} 1\n";
    let error = parse_with_limits(many.as_bytes(), Format::Text, limits()).unwrap_err();
    assert_eq!(
        (error.line, error.kind, error.message.as_str()),
        (2, ErrorKind::TooManyLabels, "sample m: more than 2 labels")
    );
    let long = "m{a=\"12345\"} 1\n";
    let error = parse_with_limits(long.as_bytes(), Format::Text, limits()).unwrap_err();
    assert_eq!(error.kind, ErrorKind::LabelValueTooLong);
    assert_eq!(
        error.message,
        "sample m: the value of label \"a\" has 5 bytes, more than 4"
    );
    let long_name = "m{abcd=\"1\"} 1\n";
    let error = parse_with_limits(long_name.as_bytes(), Format::Text, limits()).unwrap_err();
    assert_eq!(
        (error.kind, error.message.as_str()),
        (
            ErrorKind::LabelNameTooLong,
            "sample m: a label name of 4 bytes, more than 3"
        )
    );
    // Escapes are counted as the value they stand for.
    let escaped = "m{a=\"\\\\\\\\\\\\\\\\\"} 1\n";
    assert!(parse_with_limits(escaped.as_bytes(), Format::Text, limits()).is_ok());
    // An exemplar's labels are not a sample's.
    let exemplar = "# TYPE c counter\nc_total 1 # {a=\"123456789\",b=\"1\",c=\"2\"} 1\n# EOF\n";
    assert!(parse_with_limits(exemplar.as_bytes(), Format::OpenMetrics, limits()).is_ok());
}

#[test]
fn content_types_name_their_format() {
    for (content_type, format) in [
        (
            "text/plain; version=0.0.4; charset=utf-8",
            Some(Format::Text),
        ),
        ("text/plain", Some(Format::Text)),
        ("Text/Plain;version=0.0.4", Some(Format::Text)),
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Some(Format::OpenMetrics),
        ),
        (
            "application/openmetrics-text;version=0.0.1",
            Some(Format::OpenMetrics),
        ),
        ("application/openmetrics-text", Some(Format::OpenMetrics)),
        ("application/openmetrics-text; version=2.0.0", None),
        (
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily",
            None,
        ),
        ("", None),
    ] {
        assert_eq!(
            Format::from_content_type(content_type),
            format,
            "{content_type}"
        );
    }
}

#[test]
fn every_malformed_line_fails_with_its_line_number() {
    use ErrorKind::*;
    use Format::{OpenMetrics as Om, Text};
    let cases: &[(Format, &str, usize, ErrorKind)] = &[
        (Text, "a 1\n1a 2\n", 2, InvalidMetricName),
        (Text, "a 1\n{x=\"1\"} 2\n", 2, InvalidMetricName),
        (Text, "a-b 1\n", 1, Syntax),
        (Text, "# HELP 9x help\n", 1, InvalidMetricName),
        (Text, "a{1x=\"1\"} 1\n", 1, InvalidLabelName),
        (Text, "a{x:y=\"1\"} 1\n", 1, Syntax),
        (Text, "a{x=1} 1\n", 1, Syntax),
        (Text, "a 1\na{x=\"1} 1\nb 2\n", 2, UnterminatedLabelValue),
        (Text, "a{x=\"1\\\n\"} 1\n", 1, UnterminatedLabelValue),
        (Text, "a{x=\"1", 1, UnterminatedLabelValue),
        (Text, "a{x=\"1\"", 1, Syntax),
        (Text, "a{x=\"1\" y=\"2\"} 1\n", 1, Syntax),
        (Text, "a 1\n\na{x=\"\\t\"} 1\n", 3, InvalidEscape),
        (Text, "# HELP a bad \\t escape\n", 1, InvalidEscape),
        (
            Text,
            "# HELP a quote \\\" is not a text escape\n",
            1,
            InvalidEscape,
        ),
        (Text, "# HELP a trailing \\\n", 1, InvalidEscape),
        (Text, "a one\n", 1, InvalidValue),
        (Text, "a\n", 1, Syntax),
        (Text, "a{x=\"1\"}\n", 1, Syntax),
        (Text, "a 1e999\n", 1, InvalidValue),
        (Text, "a 1 12.5\n", 1, InvalidTimestamp),
        (Text, "a 1 99999999999999999999\n", 1, InvalidTimestamp),
        (Text, "a 1 2 3\n", 1, Syntax),
        (Text, "a{x=\"1\",x=\"2\"} 1\n", 1, DuplicateLabelName),
        (
            Text,
            "a{y=\"0\",x=\"1\",z=\"2\",x=\"1\"} 1\n",
            1,
            DuplicateLabelName,
        ),
        (
            Text,
            "# TYPE a gauge\n# TYPE a counter\n",
            2,
            InvalidMetadata,
        ),
        (Text, "# HELP a x\n# HELP a y\n", 2, InvalidMetadata),
        (Text, "# TYPE a info\n", 1, InvalidMetadata),
        (Text, "# TYPE a histogram extra\n", 1, Syntax),
        (Text, "# TYPE a\n", 1, Syntax),
        (Text, "a 1\n# TYPE a gauge\n", 2, MetadataAfterSamples),
        (
            Text,
            "a_total 1\n# TYPE a counter\n",
            2,
            MetadataAfterSamples,
        ),
        (
            Text,
            "a_count 1\n# TYPE a summary\n",
            2,
            MetadataAfterSamples,
        ),
        (Text, "# TYPE a histogram\na_sum 1\na 2\n", 3, TypeMismatch),
        (Text, "# TYPE a histogram\na_bucket 1\n", 2, TypeMismatch),
        (
            Text,
            "# TYPE a histogram\na_bucket{le=\"x\"} 1\n",
            2,
            TypeMismatch,
        ),
        (Text, "# TYPE a summary\na_sum 1\na 1\n", 3, TypeMismatch),
        (Om, "# TYPE a counter\na 1\n# EOF\n", 2, TypeMismatch),
        (
            Om,
            "# TYPE a summary\na_bucket{le=\"1\"} 1\n# EOF\n",
            2,
            TypeMismatch,
        ),
        (Om, "# TYPE a info\na 1\n# EOF\n", 2, TypeMismatch),
        (
            Om,
            "# TYPE a gaugehistogram\na_bucket{le=\"1\"} 1\na_count 1\n# EOF\n",
            3,
            TypeMismatch,
        ),
        (Om, "a 1\n", 2, MissingEof),
        (Om, "", 1, MissingEof),
        (Om, "a 1\n# EOF\nb 2\n", 3, AfterEof),
        (Om, "a 1\n# EOF\n\n", 3, AfterEof),
        (Om, "a 1\n# EOF\n# EOF\n", 3, AfterEof),
        (Om, "a 1\nb 2", 2, TruncatedLine),
        (Om, "a 1\n# TYPE b gauge", 2, TruncatedLine),
        (Om, "a 1\n\nb 1\n# EOF\n", 2, Syntax),
        (Om, "# a comment\n# EOF\n", 1, Syntax),
        (Om, "a  1\n# EOF\n", 1, Syntax),
        (Om, "a\t1\n# EOF\n", 1, Syntax),
        (Om, "a{x=\"1\", y=\"2\"} 1\n# EOF\n", 1, InvalidLabelName),
        (Om, "a{x=\"1\",} 1\n# EOF\n", 1, Syntax),
        (Om, "a 1 1.5e999\n# EOF\n", 1, InvalidTimestamp),
        (Om, "a 1 NaN\n# EOF\n", 1, InvalidTimestamp),
        (Om, "a 1 # {x=\"1\"} one\n# EOF\n", 1, InvalidValue),
        (Om, "a 1 # x\n# EOF\n", 1, Syntax),
        (Om, "a 1 5 6\n# EOF\n", 1, Syntax),
        (
            Om,
            "# TYPE a gauge\n# UNIT a seconds\n# EOF\n",
            2,
            InvalidMetadata,
        ),
        (
            Om,
            "# UNIT a_seconds seconds\n# UNIT a_seconds seconds\n# EOF\n",
            2,
            InvalidMetadata,
        ),
        (
            Om,
            "# TYPE a gauge\na 1\n# HELP a late\n# EOF\n",
            3,
            MetadataAfterSamples,
        ),
        (Om, "# HELP a bad \\t\n# EOF\n", 1, InvalidEscape),
    ];
    for &(format, page, line, kind) in cases {
        let error = error(page, format);
        assert_eq!(
            (error.line, error.kind),
            (line, kind),
            "{format:?} {page:?}: {error}"
        );
        assert!(!error.message.is_empty());
        assert_eq!(error.to_string(), format!("line {line}: {}", error.message));
    }
}

#[test]
fn invalid_utf8_fails_with_its_line_number() {
    for (page, line) in [
        (&b"\xff 1\n"[..], 1),
        (b"a 1\n\xff 2\n", 2),
        (b"a 1\nb 2\nb{x=\"\xc3\x28\"} 2\n", 3),
        (b"# HELP a \xe2\x82\n", 1),
    ] {
        for format in [Format::Text, Format::OpenMetrics] {
            let error = parse(page, format).unwrap_err();
            assert_eq!((error.line, error.kind), (line, ErrorKind::InvalidUtf8));
        }
    }
}

#[test]
fn errors_say_what_is_wrong() {
    let mismatch = error("# TYPE a histogram\na 1\n", Format::Text);
    assert_eq!(
        mismatch.message,
        "sample a does not fit histogram family a: expected a_bucket, a_count, a_sum, a_created"
    );
    let unexpected = error("a{x=\"1\" 1\n", Format::Text);
    assert_eq!(
        unexpected.message,
        "expected ',' or '}' after the label value, found '1'"
    );
    let after = error("a 1\n# TYPE a gauge\n", Format::Text);
    assert_eq!(after.message, "TYPE line for a after its samples");
    assert_eq!(ErrorKind::TruncatedLine.as_str(), "truncated_line");
}

#[test]
fn help_after_samples_is_allowed_in_text_as_prometheus_allows_it() {
    let page = text("a 1\n# HELP a Late help.\n");
    assert_eq!(page.families[0].help, "Late help.");
}

#[test]
fn every_sample_is_named_by_its_family_and_suffix_on_mixed_pages() {
    for (page, format) in [
        (NODE_EXPORTER, Format::Text),
        (PROMETHEUS_SELF, Format::Text),
        (GO_CLIENT, Format::Text),
        (OM_HISTOGRAM, Format::OpenMetrics),
        (OM_COUNTER_WITH_EXEMPLARS, Format::OpenMetrics),
        (OM_SUMMARY_INFO_STATESET, Format::OpenMetrics),
    ] {
        let exposition = parse_ok(page, format);
        let mut parsed = parsed_names(&exposition);
        let mut written = written_names(page);
        parsed.sort();
        written.sort();
        assert_eq!(parsed, written);
    }
}
