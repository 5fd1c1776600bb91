//! # periscope-exporter-abi-mismatch
//!
//! A plugin that plays one built against a future Periscope ABI, so the host's loader test can
//! check that such a file is refused cleanly.
//!
//! It does not depend on `periscope-plugin-api`: it exports, with abi_stable directly, a root
//! module that shares the host's module name (`periscope_exporter`) but declares ABI version
//! `3.0.0`, with a layout of its own. The host speaks `2.0.0`; abi_stable checks the version before
//! the layout, so the host must refuse the file with `IncompatibleVersionNumber` and log one short
//! line (path, expected and found version) — not a layout-mismatch dump, and not a crash.
// abi_stable's derive and export macros expand to impls that trip this lint on current compilers.
#![allow(non_local_definitions)]

use abi_stable::library::RootModule;
use abi_stable::prefix_type::PrefixTypeTrait as _;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::RStr;
use abi_stable::{StableAbi, declare_root_module_statics, export_root_module};

/// The ABI version this plugin claims; the host speaks another major version.
pub const CLAIMED_ABI_VERSION: &str = "3.0.0";

/// The root module of the pretend future ABI: nothing but a name.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = FutureExporterModRef)))]
#[sabi(missing_field(panic))]
pub struct FutureExporterMod {
    /// The plugin's name.
    #[sabi(last_prefix_field)]
    pub name: RStr<'static>,
}

impl RootModule for FutureExporterModRef {
    declare_root_module_statics! {FutureExporterModRef}
    const BASE_NAME: &'static str = "periscope_exporter";
    const NAME: &'static str = "periscope_exporter";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new(CLAIMED_ABI_VERSION);
}

pub use export::root_module;

/// The exported entry point, in a module of its own so its lint exception stays local.
// `#[export_root_module]` adds an undocumented static (the symbol the loader looks up).
#[allow(missing_docs)]
mod export {
    use super::*;

    /// Builds this library's root module; abi_stable's loader calls it.
    #[export_root_module]
    pub fn root_module() -> FutureExporterModRef {
        FutureExporterMod {
            name: RStr::from_str("abi-mismatch"),
        }
        .leak_into_prefix()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_a_major_version_the_host_does_not_speak() {
        let major = CLAIMED_ABI_VERSION.split('.').next().unwrap();
        assert_ne!(major, periscope_plugin_api::ABI_VERSION.to_string());
    }

    #[test]
    fn shares_the_hosts_module_name() {
        use periscope_plugin_api::abi::ExporterModRef;
        assert_eq!(
            <FutureExporterModRef as RootModule>::NAME,
            <ExporterModRef as RootModule>::NAME
        );
        assert_eq!(root_module().name().as_str(), "abi-mismatch");
    }
}
