//! # periscope-plugin-api
//!
//! Everything an author of a Periscope exporter plugin needs, and nothing else.
//!
//! Start with [`Exporter`]: implement it for a plain Rust type, export it with
//! [`export_exporter!`], build the crate as a `cdylib`, and drop the library into one of the
//! host's plugin directories. The host hands the exporter [`batch::Batch`]es to read through safe
//! borrowed views; it owns queueing, batching, retries and persistence, so an exporter stays thin.
//!
//! Modules:
//! - [`batch`]: the data model (updates keyed by source, families, samples) and its builder;
//! - [`exporter`]: the safe trait, its results and the export macro;
//! - [`codec`]: a checked binary form of a batch, for queues on disk;
//! - [`config`]: strict TOML parsing with errors that name key, line and column;
//! - [`auth`] and [`tls`]: the one shape of credentials and TLS settings every part of Periscope
//!   takes, with the loading of their files;
//! - [`json`]: the one JSON form of a sample (NaN and infinities included) every writer uses;
//! - [`names`]: what a valid metric and label name is;
//! - [`hash`]: FNV-1a, for sharding and stable ids;
//! - [`abi`]: the stable ABI itself (root module, trait object, version);
//! - [`host`]: the host's safe side of the boundary (load a plugin, start exporters, call them);
//! - [`log`]: the bridge that makes a plugin's `tracing` events appear in the host's log.
//!
//! The guide for plugin authors is `docs/plugin-authors.md` in the repository.

pub mod abi;
pub mod auth;
pub mod batch;
pub mod codec;
pub mod config;
pub mod exporter;
pub mod hash;
pub mod host;
pub mod json;
pub mod log;
pub mod lz4;
pub mod names;
pub mod small_file;
pub mod tls;

pub use abi::ABI_VERSION;
pub use batch::{
    Batch, BatchBuilder, Family, FamilyId, FamilyKind, Sample, Source, SourceKind, Suffix, Update,
    now_ms,
};
pub use exporter::{BoxError, Context, Export, Exporter, Health, RejectedItem};

/// Re-exports used by [`export_exporter!`]; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::exporter::{about, root_module};
    pub use abi_stable::library::{
        __call_root_module_loader as call_root_module_loader, CheckTypeLayout, LibHeader,
        RootModuleResult,
    };
}

#[cfg(test)]
mod tests {
    /// The crate's version is `0.<ABI version>.<patch>` (see its Cargo.toml): a plugin that asks
    /// for `0.2` gets ABI 2.
    #[test]
    fn the_crate_version_names_the_abi_version() {
        let mut parts = env!("CARGO_PKG_VERSION").split('.');
        assert_eq!(parts.next(), Some("0"));
        assert_eq!(parts.next(), Some(crate::ABI_VERSION.to_string().as_str()));
    }

    /// `export_exporter!` writes abi_stable's loader symbol out by hand (so plugins need no direct
    /// dependency on abi_stable); this fails when an abi_stable version names it differently.
    #[test]
    fn the_exported_symbol_is_abi_stables_loader_name() {
        assert_eq!(
            abi_stable::library::ROOT_MODULE_LOADER_NAME,
            "_1as_0lib_1header_0root_bmodule_bloader"
        );
        let macro_source = include_str!("exporter.rs");
        let needle = format!(
            "pub static {}:",
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
        assert!(
            macro_source.contains(&needle),
            "export_exporter! must export `{needle}`"
        );
    }
}
