//! # periscope-exporter-layout-mismatch
//!
//! A plugin that plays one built against a changed `periscope-plugin-api` of the same ABI version:
//! it exports, with abi_stable directly, a root module with the host's module name and version
//! (`periscope_exporter`, `2.0.0`) whose `new` takes other arguments. abi_stable's layout check
//! must refuse it, and the host must say so in one line naming the type that differs. Beside the
//! root module it exports the plain C self-description every plugin-api plugin exports
//! (`periscope_exporter_about`), so `periscope plugins inspect` can show it although the plugin is
//! refused.
// abi_stable's derive and export macros expand to impls that trip this lint on current compilers.
#![allow(non_local_definitions)]

use abi_stable::library::RootModule;
use abi_stable::prefix_type::PrefixTypeTrait as _;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RResult, RStr, RString};
use abi_stable::{StableAbi, declare_root_module_statics, export_root_module};

/// The root module: the host's first fields, then a `new` of another signature.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = ExporterModRef)))]
#[sabi(missing_field(panic))]
pub struct ExporterMod {
    /// The ABI version as the plugin saw it.
    pub abi_version: u32,
    /// The plugin's name.
    pub name: RStr<'static>,
    /// The plugin crate's version.
    pub plugin_version: RStr<'static>,
    /// The compiler that built it.
    pub rustc_version: RStr<'static>,
    /// Checks a config.
    pub check_config: extern "C" fn(RStr<'_>) -> RResult<(), RString>,
    /// Creates an exporter — from a number, which the host's ABI does not know.
    #[sabi(last_prefix_field)]
    pub new: extern "C" fn(u64) -> RResult<u64, RString>,
}

impl RootModule for ExporterModRef {
    declare_root_module_statics! {ExporterModRef}
    const BASE_NAME: &'static str = "periscope_exporter";
    const NAME: &'static str = "periscope_exporter";
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("2.0.0");
}

extern "C" fn check_config(_: RStr<'_>) -> RResult<(), RString> {
    RResult::ROk(())
}

extern "C" fn new(n: u64) -> RResult<u64, RString> {
    RResult::ROk(n)
}

pub use export::{periscope_exporter_about, root_module};

/// The exported entry points, in a module of their own so their lint exceptions stay local.
// `#[export_root_module]` adds an undocumented static (the symbol the loader looks up).
#[allow(missing_docs)]
mod export {
    use super::*;

    /// Builds this library's root module; abi_stable's loader calls it.
    #[export_root_module]
    pub fn root_module() -> ExporterModRef {
        ExporterMod {
            abi_version: 2,
            name: RStr::from_str("layout-mismatch"),
            plugin_version: RStr::from_str(env!("CARGO_PKG_VERSION")),
            rustc_version: RStr::from_str("rustc (unknown)"),
            check_config,
            new,
        }
        .leak_into_prefix()
    }

    /// The self-description, as `periscope_plugin_api::host::ABOUT_SYMBOL` defines it.
    // Unsafe only in name: an unmangled symbol, which is what makes it findable by name.
    #[allow(unsafe_code)]
    #[unsafe(no_mangle)]
    pub extern "C" fn periscope_exporter_about() -> *const std::ffi::c_char {
        c"name=layout-mismatch\nplugin_version=0.0.0\nabi_version=2\n".as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_the_hosts_module_name_and_version_string() {
        use periscope_plugin_api::abi::ExporterModRef as HostModRef;
        assert_eq!(
            <ExporterModRef as RootModule>::NAME,
            <HostModRef as RootModule>::NAME
        );
        assert_eq!(
            <ExporterModRef as RootModule>::VERSION_STRINGS.version,
            <HostModRef as RootModule>::VERSION_STRINGS.version
        );
    }
}
