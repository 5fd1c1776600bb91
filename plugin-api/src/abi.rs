//! The stable ABI between the host and an exporter plugin.
//!
//! Plugin authors do not use this module directly: they implement [`crate::Exporter`] and call
//! [`crate::export_exporter!`]. The host loads a plugin's [`ExporterModRef`] and creates exporter
//! instances through it.
//!
//! Any change a host relies on bumps [`ABI_VERSION`], and the host then refuses plugins built
//! against another version with one line asking for a rebuild. abi_stable 0.11's layout check
//! accepts a library whose prefix types (the root module, the vtable) have *more* fields than the
//! host's, never fewer: a field or method appended in a minor version would let newer plugins load
//! into older hosts, but a host that relies on it refuses every older plugin ("too many fields").
//! New module fields and trait methods still go last, so that an older host can load a newer
//! plugin of the same major version.
//!
//! History:
//! - 1: [`ExporterFfi`] with `export`, `flush`, `health`, `shutdown`; [`ExporterMod`].
//! - 2: [`ExportResult::RejectItems`]: an exporter can refuse single items of a batch, and the
//!   host dead-letters only those.
// `#[sabi_trait]` expands to impls that trip this lint on current compilers.
#![allow(non_local_definitions)]
// Unsafe: this is the FFI boundary. `#[sabi_trait]` and `StableAbi` expand to unsafe impls and
// calls through vtables; the layout check at load time is what makes them sound.
#![allow(unsafe_code)]

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, ROption, RResult, RStr, RString, RVec};
use abi_stable::{StableAbi, declare_root_module_statics, sabi_trait};

use crate::batch::Batch;

/// The version of this ABI. A host loads only plugins built against the same version.
pub const ABI_VERSION: u32 = 2;

/// [`ABI_VERSION`] as the `major.minor.patch` string abi_stable checks (major = ABI version).
const ABI_VERSION_STRING: &str = "2.0.0";

/// What one `export` call achieved.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum ExportResult {
    /// The batch is handed over durably (written and flushed per policy, or acknowledged).
    Ok,
    /// The target cannot take the batch now; the host retries it after at least `after_ms`.
    Retry {
        /// The shortest wait before the retry, in milliseconds.
        after_ms: u64,
        /// Why, for the log.
        reason: RString,
    },
    /// The target refuses this batch for good; the host writes it to the dead-letter file.
    Reject {
        /// The target's reason.
        reason: RString,
    },
    /// The target took every item of the batch durably except `items`, which it refused for good;
    /// the host writes only those to the dead-letter file (ABI 2).
    RejectItems {
        /// The refused items, each with its reason.
        items: RVec<RejectedItemFfi>,
    },
    /// The exporter itself failed (an error or a caught panic); the host restarts it and retries.
    Failed {
        /// What went wrong.
        reason: RString,
    },
}

/// One item of a batch that the target refused for good (ABI 2).
///
/// Items are addressed by position: `update` is the index of the update in
/// [`Batch::updates`](crate::batch::Batch::updates), `sample` the index of the sample within that
/// update's samples. Without `sample`, the whole update is meant: a `Remove`, or every sample of a
/// `Replace`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct RejectedItemFfi {
    /// The update's position in the batch.
    pub update: u64,
    /// The sample's position in the update, or none for the whole update.
    pub sample: ROption<u64>,
    /// The target's reason for this item.
    pub reason: RString,
}

/// How an exporter feels about its target.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub enum HealthFfi {
    /// Working normally.
    Healthy,
    /// Working, with a problem worth reporting.
    Degraded {
        /// What is wrong.
        reason: RString,
    },
    /// Not working.
    Unhealthy {
        /// What is wrong.
        reason: RString,
    },
}

/// The host's log callback: `(level, plugin, target, message)`, level as [`crate::log::level_to_u8`].
pub type LogFn = extern "C" fn(u8, RStr<'_>, RStr<'_>, RStr<'_>);

/// What the host hands to a new exporter instance.
#[repr(C)]
#[derive(StableAbi, Clone, Copy)]
pub struct HostContext<'a> {
    /// The exporter's name in the host's config.
    pub exporter: RStr<'a>,
    /// Where the plugin's `tracing` events go (a [`LogFn`], spelled out for the layout check).
    pub log: extern "C" fn(u8, RStr<'_>, RStr<'_>, RStr<'_>),
    /// The most verbose level the host records, as [`crate::log::level_to_u8`].
    pub max_level: u8,
}

/// The exporter trait object as it crosses the boundary. Every method must not unwind: the safe
/// adapter behind [`crate::export_exporter!`] catches panics and turns them into errors.
#[sabi_trait]
pub trait ExporterFfi: Send {
    /// Hands a batch over (see [`ExportResult`]).
    fn export(&mut self, batch: &Batch) -> ExportResult;

    /// Writes out anything buffered.
    fn flush(&mut self) -> RResult<(), RString>;

    /// Reports health.
    fn health(&self) -> HealthFfi;

    /// Flushes and releases everything; the instance is dropped right after.
    #[sabi(last_prefix_field)]
    fn shutdown(&mut self) -> RResult<(), RString>;
}

/// An owned exporter instance behind the ABI.
pub type ExporterBox = ExporterFfi_TO<'static, RBox<()>>;

/// The root module every exporter plugin exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = ExporterModRef)))]
#[sabi(missing_field(panic))]
pub struct ExporterMod {
    /// [`ABI_VERSION`] as the plugin saw it.
    pub abi_version: u32,
    /// The plugin's name (`file`, `prometheus`, …).
    pub name: RStr<'static>,
    /// The plugin crate's version.
    pub plugin_version: RStr<'static>,
    /// The `rustc --version` of the compiler that built the plugin.
    pub rustc_version: RStr<'static>,
    /// Checks an exporter config (TOML text) without creating an exporter.
    pub check_config: extern "C" fn(RStr<'_>) -> RResult<(), RString>,
    /// Creates an exporter from its config (TOML text).
    #[sabi(last_prefix_field)]
    pub new: extern "C" fn(RStr<'_>, HostContext<'_>) -> RResult<ExporterBox, RString>,
}

impl RootModule for ExporterModRef {
    declare_root_module_statics! {ExporterModRef}
    const BASE_NAME: &'static str = "periscope_exporter";
    const NAME: &'static str = "periscope_exporter";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(ABI_VERSION_STRING);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_string_carries_the_abi_version_as_major() {
        assert_eq!(
            ABI_VERSION_STRING.split('.').next(),
            Some(ABI_VERSION.to_string().as_str())
        );
    }
}
