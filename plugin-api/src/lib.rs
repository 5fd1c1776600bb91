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
//! - [`abi`]: the stable ABI itself (root module, trait object, version), for the host;
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
pub mod json;
pub mod log;
pub mod names;
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
    pub use crate::exporter::root_module;
    pub use abi_stable::library::{
        __call_root_module_loader as call_root_module_loader, CheckTypeLayout, LibHeader,
        RootModuleResult,
    };

    /// The symbol name the macro exports must be abi_stable's loader name.
    #[cfg(test)]
    #[test]
    fn exported_symbol_matches_abi_stables_loader_name() {
        let source = include_str!("exporter.rs");
        let needle = format!(
            "pub static {}:",
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
        assert!(
            source.contains(&needle),
            "export_exporter! must export `{needle}`"
        );
    }
}
