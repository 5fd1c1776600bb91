//! JSON schemas of the config entries, for the `MetricsConfig` custom resource (whose OpenAPI
//! schema is generated from the same types as the TOML entries, with `schemars`).
//!
//! Most types derive [`JsonSchema`]; a field wrapped in [`toml::Spanned`] names its inner type
//! with `#[schemars(with = "…")]` (the wrapper is `toml`'s, so it cannot implement the trait
//! here). This module holds the few schemas written by hand: the values whose deserializers take
//! more than one shape, and the plugin-api types the scraper does not own. Each is a schema the
//! Kubernetes API server accepts as structural: a string-or-table value keeps its own shape
//! (`x-kubernetes-preserve-unknown-fields`) and is checked when the host parses the entry.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};

use super::{AggregateFilter, LabelConfig, PortRef};

/// A duration written as text (`"500ms"`, `"2s"`, `"1m 30s"`), as
/// [`periscope_plugin_api::config::Duration`] reads it.
pub struct DurationText;

impl JsonSchema for DurationText {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration: `500ms`, `2s`, `1m 30s`."
        })
    }
}

/// A size as [`periscope_plugin_api::config::ByteSize`] reads it: a number of bytes or text
/// with a unit (`"64MiB"`).
pub struct ByteSizeText;

impl JsonSchema for ByteSizeText {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "description": "A size in bytes: a number, or text with a unit (`64MiB`, `1 GB`)."
        })
    }
}

/// The `auth` and `tls` tables of an endpoint: they name files on the host's own file system,
/// so a `MetricsConfig` may not hold them (the host refuses them with their field path); the
/// schema takes any table so that the refusal says why.
pub struct HostFiles;

impl JsonSchema for HostFiles {
    fn schema_name() -> Cow<'static, str> {
        "HostFiles".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
            "description": "Files on the host's file system (credentials, certificates): only \
                            in the host's own config, refused in a MetricsConfig."
        })
    }
}

impl JsonSchema for LabelConfig {
    fn schema_name() -> Cow<'static, str> {
        "LabelConfig".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-preserve-unknown-fields": true,
            "description": "A path from the object (`status.nodeName`) or a table \
                            `{ expr: \"<CEL expression>\" }`."
        })
    }
}

impl JsonSchema for AggregateFilter {
    fn schema_name() -> Cow<'static, str> {
        "AggregateFilter".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-preserve-unknown-fields": true,
            "description": "A CEL expression, or a table `{ path, in: [...] }` or \
                            `{ path, not_in: [...] }`."
        })
    }
}

impl JsonSchema for PortRef {
    fn schema_name() -> Cow<'static, str> {
        "PortRef".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "description": "A port number, or the name of a container port (pods) or slice \
                            port (slices)."
        })
    }
}
