//! Checking `[[endpoints]]` and compiling it: URLs parsed, regular expressions compiled, names
//! and selectors checked, TLS files read, JSON metrics compiled — every problem reported with its
//! key and span.

use std::collections::HashSet;
use std::sync::Arc;

use periscope_plugin_api::auth::{Auth, AuthConfig, AuthError};
use periscope_plugin_api::names::is_user_label_name;
use regex::RegexSet;
use toml::Spanned;

use super::{Discovery, Endpoint, client};
use crate::config::{EndpointConfig, EndpointFormat, PortRef};
use crate::objects::{CompileError, DocumentMetrics};
use crate::path::Path;
use crate::selector::LabelSelector;

/// Labels every target sets itself; a config may not set them.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// Compiles every entry, collecting every problem.
pub fn compile(configs: &[EndpointConfig]) -> Result<Vec<Arc<Endpoint>>, Vec<CompileError>> {
    let mut errors = Errors::default();
    let mut names = HashSet::new();
    let endpoints: Vec<Option<Endpoint>> = configs
        .iter()
        .enumerate()
        .map(|(i, config)| {
            let key = format!("endpoints[{i}]");
            let name = config.name.get_ref();
            if !is_endpoint_name(name) || !names.insert(name.clone()) {
                let message =
                    format!("endpoint names must be unique and not empty; {name:?} is not");
                errors.at(&format!("{key}.name"), Some(&config.name), message);
            }
            endpoint(&key, config, &mut errors)
        })
        .collect();
    if errors.0.is_empty() {
        Ok(endpoints.into_iter().flatten().map(Arc::new).collect())
    } else {
        Err(errors.0)
    }
}

/// An entry's name: not empty, and without `:` (it separates the parts of source ids).
fn is_endpoint_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(':')
}

#[derive(Default)]
struct Errors(Vec<CompileError>);

impl Errors {
    fn at<T>(&mut self, key: &str, spanned: Option<&Spanned<T>>, message: impl Into<String>) {
        self.0.push(CompileError {
            key: key.to_owned(),
            span: spanned.map(Spanned::span).filter(|s| !s.is_empty()),
            message: message.into(),
        });
    }
}

/// The range of a scrape's `interval`; its `timeout` goes from the same minimum to the interval.
const INTERVAL_RANGE: (std::time::Duration, std::time::Duration) = (
    std::time::Duration::from_millis(1),
    std::time::Duration::from_secs(24 * 3600),
);

fn endpoint(key: &str, config: &EndpointConfig, errors: &mut Errors) -> Option<Endpoint> {
    let urls: Vec<reqwest::Url> = config
        .urls
        .iter()
        .enumerate()
        .filter_map(|(j, url)| {
            let parsed = reqwest::Url::parse(url.get_ref())
                .map_err(|e| e.to_string())
                .and_then(|u| match (u.scheme(), u.host_str()) {
                    ("http" | "https", Some(_)) => Ok(u),
                    _ => Err("only http and https URLs with a host can be scraped".to_owned()),
                });
            parsed
                .map_err(|e| errors.at(&format!("{key}.urls[{j}]"), Some(url), e))
                .ok()
        })
        .collect();
    if config.urls.is_empty() && config.kubernetes.is_none() {
        errors.at::<()>(
            &format!("{key}.urls"),
            None,
            "give `urls` or an `[endpoints.kubernetes]` table, or both",
        );
    }

    let interval = config.interval.get_ref().0;
    let timeout = config.timeout.get_ref().0;
    let (min, max) = INTERVAL_RANGE;
    if let Err(message) = config.interval.get_ref().check_range(min, max) {
        errors.at(&format!("{key}.interval"), Some(&config.interval), message);
    }
    if let Err(message) = config.timeout.get_ref().check_range(min, interval.max(min)) {
        let message = format!("{message} (at most the interval)");
        errors.at(&format!("{key}.timeout"), Some(&config.timeout), message);
    }

    let keep = regex_set(&format!("{key}.keep"), &config.keep, errors);
    let drop = regex_set(&format!("{key}.drop"), &config.drop, errors);

    let mut labels = Vec::new();
    for (name, value) in &config.labels {
        let label_key = format!("{key}.labels.{}", name.get_ref());
        if !is_user_label_name(name.get_ref()) || TARGET_LABELS.contains(&name.get_ref().as_str()) {
            let message = format!(
                "{:?} is not a label name an entry may set (`job` and `instance` are the target's)",
                name.get_ref()
            );
            errors.at(&label_key, Some(name), message);
        }
        labels.push((name.get_ref().clone(), value.clone()));
    }

    let discovery = config.kubernetes.as_ref().map(|k| {
        let key = format!("{key}.kubernetes");
        let label_selector = k.label_selector.as_ref().and_then(|s| {
            LabelSelector::parse(s.get_ref())
                .map_err(|e| errors.at(&format!("{key}.label_selector"), Some(s), e.to_string()))
                .ok()
                .map(|_| s.get_ref().clone())
        });
        if let PortRef::Name(name) = k.port.get_ref()
            && name.is_empty()
        {
            errors.at(
                &format!("{key}.port"),
                Some(&k.port),
                "a port name must not be empty",
            );
        }
        if !k.path.starts_with('/') {
            errors.at::<()>(&format!("{key}.path"), None, "must start with `/`");
        }
        let mut object_labels = Vec::new();
        for (name, path) in &k.labels {
            let label_key = format!("{key}.labels.{}", name.get_ref());
            if !is_user_label_name(name.get_ref())
                || TARGET_LABELS.contains(&name.get_ref().as_str())
            {
                let message = format!("{:?} is not a label name an entry may set", name.get_ref());
                errors.at(&label_key, Some(name), message);
            }
            match Path::parse(path.get_ref()) {
                Ok(parsed) => object_labels.push((name.get_ref().clone(), parsed)),
                Err(e) => errors.at(&label_key, Some(path), e.to_string()),
            }
        }
        Discovery {
            role: k.role,
            namespaces: k.namespaces.clone(),
            label_selector,
            port: k.port.get_ref().clone(),
            path: k.path.clone(),
            scheme: k.scheme,
            labels: object_labels,
        }
    });

    let auth = match &config.auth {
        None => Some(None),
        Some(table) => match auth(table) {
            Ok(auth) => Some(Some(auth)),
            Err(e) => {
                let at = if e.key().is_empty() {
                    format!("{key}.auth")
                } else {
                    format!("{key}.auth.{}", e.key())
                };
                errors.at::<()>(&at, None, e.to_string());
                None
            }
        },
    };
    let http = client::build(config.tls.as_ref())
        .map_err(|e| errors.at::<()>(&format!("{key}.{}", e.key()), None, e.to_string()))
        .ok();

    let json = match (config.format, config.metrics.is_empty()) {
        (EndpointFormat::Json, true) => {
            let message = "a JSON endpoint needs `[[endpoints.metrics]]` to read";
            errors.at::<()>(&format!("{key}.metrics"), None, message);
            None
        }
        (EndpointFormat::Prometheus, false) => {
            let message = "`metrics` are for `format = \"json\"`; Prometheus pages name their own";
            errors.at::<()>(&format!("{key}.metrics"), None, message);
            None
        }
        (EndpointFormat::Prometheus, true) => None,
        (EndpointFormat::Json, false) => {
            let what = format!("endpoint {}", config.name.get_ref());
            DocumentMetrics::compile(key, &what, config.prefix.as_ref(), &config.metrics)
                .map_err(|e| errors.0.extend(e))
                .ok()
        }
    };
    if config.prefix.is_some() && config.format != EndpointFormat::Json {
        errors.at(
            &format!("{key}.prefix"),
            config.prefix.as_ref(),
            "`prefix` is for `format = \"json\"`",
        );
    }

    for (name, cap) in [
        ("max_series", &config.max_series),
        ("max_values", &config.max_values),
    ] {
        if let Some(max) = cap
            && *max.get_ref() == 0
        {
            let message = "must be at least 1 (leave it out for no cap)";
            errors.at(&format!("{key}.{name}"), Some(max), message);
        }
    }
    let stats = std::sync::Arc::new(crate::objects::PipelineStats::default());
    let caps = crate::objects::Caps {
        max_series: config.max_series.as_ref().map(|max| *max.get_ref()),
        max_values: config.max_values.as_ref().map(|max| *max.get_ref()),
    };
    let cap = (caps.max_series.is_some() || caps.max_values.is_some()).then(|| {
        let cap = crate::objects::SeriesCap::new(key.to_owned(), caps, stats.clone());
        std::sync::Mutex::new(cap)
    });
    Some(Endpoint {
        entry: key.to_owned(),
        cap,
        stats,
        name: config.name.get_ref().clone(),
        urls,
        discovery,
        format: config.format,
        interval,
        timeout,
        max_response_bytes: config.max_response_bytes.0,
        max_samples: config.max_samples,
        label_limit: config.label_limit,
        label_value_length_limit: config.label_value_length_limit,
        label_name_length_limit: config.label_name_length_limit,
        keep: keep?,
        drop: drop?,
        labels,
        auth: auth?,
        http: http?,
        json,
    })
}

/// The credentials of an entry: basic or bearer, from files only, each file readable now (it is
/// read again at every scrape).
fn auth(table: &AuthConfig) -> Result<Auth, AuthError> {
    table.refuse_inline()?;
    let auth = table.auth()?;
    if let Auth::ApiKey(_) = auth {
        return Err(AuthError::Unsupported {
            key: "api_key_file",
            kind: auth.kind(),
            takes: "basic auth or a bearer token",
        });
    }
    auth.load()?;
    Ok(auth)
}

/// The patterns as one set, each anchored at both ends (they must match the whole name, as in
/// Prometheus' relabelling); `Some(None)` when there are none.
fn regex_set(
    key: &str,
    patterns: &[Spanned<String>],
    errors: &mut Errors,
) -> Option<Option<RegexSet>> {
    if patterns.is_empty() {
        return Some(None);
    }
    let mut ok = true;
    for (j, pattern) in patterns.iter().enumerate() {
        if let Err(e) = regex::Regex::new(pattern.get_ref()) {
            errors.at(&format!("{key}[{j}]"), Some(pattern), e.to_string());
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    RegexSet::new(patterns.iter().map(|p| format!("^(?:{})$", p.get_ref())))
        .map_err(|e| errors.at::<()>(key, None, e.to_string()))
        .ok()
        .map(Some)
}
