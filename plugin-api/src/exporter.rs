//! The safe side of a plugin: the [`Exporter`] trait a plugin author implements, and the adapter
//! that turns it into the ABI's trait object, catching every panic on the way.

use std::mem::ManuallyDrop;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use abi_stable::std_types::{RResult, RStr, RString};
use serde::de::DeserializeOwned;

use crate::abi::{
    ABI_VERSION, ExportResult, ExporterBox, ExporterFfi, ExporterFfi_TO, ExporterMod,
    ExporterModRef, HealthFfi, HostContext, RejectedItemFfi,
};
use crate::batch::Batch;
use crate::config;

/// The error type plugin methods return: anything that can be displayed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What an `export` call achieved, from the plugin author's side.
///
/// Non-exhaustive: later versions of the ABI may add results, so a `match` on it needs a `_` arm.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Export {
    /// The batch is durably handed over. Return this only then: the host forgets the batch.
    Ok,
    /// The target cannot take it now (down, overloaded); the host keeps the batch and retries it
    /// with backoff, waiting at least `after`.
    Retry {
        /// The shortest wait before the retry.
        after: Duration,
        /// Why, for the log.
        reason: String,
    },
    /// The target refuses this batch for good (a 4xx on the whole request); the host writes the
    /// whole batch to the dead-letter file and counts it. When the target took some items and
    /// refused others, say which with [`Export::RejectItems`] instead.
    Reject {
        /// The target's reason.
        reason: String,
    },
    /// The target took every item of the batch durably except `items`, which it refused for good
    /// (a mapping conflict on one document of a bulk request). The host writes only those to the
    /// dead-letter file, each with its reason, counts them as rejected and the rest as sent.
    /// An empty list means [`Export::Ok`]. (New in ABI 2.)
    RejectItems {
        /// The refused items, each with its reason.
        items: Vec<RejectedItem>,
    },
}

/// One item of a batch that the target refused for good; see [`Export::RejectItems`].
///
/// Items are addressed by position, as [`Batch::updates`] and [`crate::batch::Samples::iter`] yield
/// them: count while you iterate the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedItem {
    /// The update's position in [`Batch::updates`].
    pub update: usize,
    /// The sample's position in that update's samples; `None` means the whole update (a
    /// `Remove`, or every sample of a `Replace`).
    pub sample: Option<usize>,
    /// Why the target refused it.
    pub reason: String,
}

impl RejectedItem {
    /// Sample `sample` of update `update` was refused.
    pub fn sample(update: usize, sample: usize, reason: impl Into<String>) -> Self {
        RejectedItem {
            update,
            sample: Some(sample),
            reason: reason.into(),
        }
    }

    /// All of update `update` was refused (for a `Remove`, the removal itself).
    pub fn update(update: usize, reason: impl Into<String>) -> Self {
        RejectedItem {
            update,
            sample: None,
            reason: reason.into(),
        }
    }
}

impl Export {
    /// The ABI form of this result.
    fn into_ffi(self) -> ExportResult {
        match self {
            Export::Ok => ExportResult::Ok,
            Export::Retry { after, reason } => ExportResult::Retry {
                after_ms: u64::try_from(after.as_millis()).unwrap_or(u64::MAX),
                reason: reason.into(),
            },
            Export::Reject { reason } => ExportResult::Reject {
                reason: reason.into(),
            },
            Export::RejectItems { items } if items.is_empty() => ExportResult::Ok,
            Export::RejectItems { items } => ExportResult::RejectItems {
                items: items
                    .into_iter()
                    .map(|item| RejectedItemFfi {
                        update: item.update as u64,
                        sample: item.sample.map(|s| s as u64).into(),
                        reason: item.reason.into(),
                    })
                    .collect(),
            },
        }
    }
}

/// How an exporter feels about its target. The host asks after every export and shows it in its
/// self-metrics (`periscope_exporter_health{state}`), logging each change with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Working normally.
    Healthy,
    /// Working, with a problem worth reporting.
    Degraded(String),
    /// Not working.
    Unhealthy(String),
}

/// What the host tells a new exporter about itself.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The exporter's name in the host's config (`[[exporters]] name = …`).
    pub exporter: &'a str,
}

/// An exporter, as a plugin author writes it.
///
/// The host calls every method from one dedicated thread per exporter, never from an async runtime:
/// block freely, and if you need async, own a runtime created in [`Exporter::new`]. A panic in any
/// method is caught, reported as a failure, and the host restarts the exporter with a fresh instance.
///
/// The host owns queueing, batching, retries and persistence: an exporter should send what it is
/// given and report honestly what happened, never buffer data it has acknowledged.
pub trait Exporter: Send + Sized + 'static {
    /// The exporter's config: the TOML table under `config` in the host's `[[exporters]]` entry.
    /// Use `#[serde(deny_unknown_fields)]` so typos are errors.
    type Config: DeserializeOwned;

    /// Checks a parsed config the way [`Exporter::new`] would, without starting anything: `periscope
    /// check` asks this, so a config that `new` would refuse fails `check` too. The default accepts
    /// every config that parses.
    fn validate(config: &Self::Config) -> Result<(), BoxError> {
        let _ = config;
        Ok(())
    }

    /// Creates an exporter. Fail here on anything wrong with the config or the target that will
    /// not fix itself (an unwritable directory, a bad certificate).
    fn new(config: Self::Config, context: Context<'_>) -> Result<Self, BoxError>;

    /// Hands a batch over. An `Err` means the exporter itself is broken: the host restarts it.
    fn export(&mut self, batch: &Batch) -> Result<Export, BoxError>;

    /// Writes out anything buffered.
    fn flush(&mut self) -> Result<(), BoxError> {
        Ok(())
    }

    /// Reports health; the default is always healthy.
    fn health(&self) -> Health {
        Health::Healthy
    }

    /// Flushes and releases everything before the instance is dropped.
    fn shutdown(&mut self) -> Result<(), BoxError> {
        self.flush()
    }
}

/// Wraps a plugin author's exporter behind the ABI; every call, drop included, runs inside
/// `catch_unwind`.
struct Adapter<E> {
    inner: ManuallyDrop<E>,
    /// Set once a call panicked: the instance's state can no longer be trusted.
    poisoned: bool,
}

impl<E: Exporter> Adapter<E> {
    fn guarded<T>(
        &mut self,
        on_error: impl Fn(String) -> T,
        call: impl FnOnce(&mut E) -> Result<T, BoxError>,
    ) -> T {
        if self.poisoned {
            return on_error("the exporter panicked earlier and must be restarted".to_owned());
        }
        match catch_unwind(AssertUnwindSafe(|| call(&mut self.inner))) {
            Ok(Ok(value)) => value,
            Ok(Err(error)) => on_error(error.to_string()),
            Err(panic) => {
                self.poisoned = true;
                on_error(format!("panicked: {}", panic_message(&*panic)))
            }
        }
    }
}

// Unsafe: the exporter must be dropped inside `catch_unwind`, which needs it by value out of
// `&mut self`; `ManuallyDrop::take` is the one way to move it out of a value being dropped.
#[allow(unsafe_code)]
impl<E> Drop for Adapter<E> {
    fn drop(&mut self) {
        // SAFETY: `inner` is taken exactly once, here, and never touched again.
        let inner = unsafe { ManuallyDrop::take(&mut self.inner) };
        // A panic unwinding out of here would cross the ABI boundary and abort the host.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(inner)));
    }
}

impl<E: Exporter> ExporterFfi for Adapter<E> {
    fn export(&mut self, batch: &Batch) -> ExportResult {
        let failed = |reason: String| ExportResult::Failed {
            reason: reason.into(),
        };
        self.guarded(failed, |exporter| Ok(exporter.export(batch)?.into_ffi()))
    }

    fn flush(&mut self) -> RResult<(), RString> {
        self.guarded(
            |e| RResult::RErr(e.into()),
            |exporter| exporter.flush().map(RResult::ROk),
        )
    }

    fn health(&self) -> HealthFfi {
        if self.poisoned {
            return HealthFfi::Unhealthy {
                reason: "panicked".into(),
            };
        }
        match catch_unwind(AssertUnwindSafe(|| self.inner.health())) {
            Ok(Health::Healthy) => HealthFfi::Healthy,
            Ok(Health::Degraded(reason)) => HealthFfi::Degraded {
                reason: reason.into(),
            },
            Ok(Health::Unhealthy(reason)) => HealthFfi::Unhealthy {
                reason: reason.into(),
            },
            Err(panic) => HealthFfi::Unhealthy {
                reason: format!("health panicked: {}", panic_message(&*panic)).into(),
            },
        }
    }

    fn shutdown(&mut self) -> RResult<(), RString> {
        self.guarded(
            |e| RResult::RErr(e.into()),
            |exporter| exporter.shutdown().map(RResult::ROk),
        )
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// Parses the exporter's config. The host re-serialized the table, so positions inside it mean
/// nothing to the user: the error names the key only, and the host adds where the table is.
fn parse_config<E: Exporter>(text: RStr<'_>) -> Result<E::Config, String> {
    config::parse(text.as_str()).map_err(|e| {
        if e.key.is_empty() {
            e.message
        } else {
            format!("`{}`: {}", e.key, e.message)
        }
    })
}

extern "C" fn check_config<E: Exporter>(text: RStr<'_>) -> RResult<(), RString> {
    let result = catch_unwind(|| {
        let config = parse_config::<E>(text)?;
        E::validate(&config).map_err(|e| e.to_string())
    });
    match result {
        Ok(Ok(())) => RResult::ROk(()),
        Ok(Err(e)) => RResult::RErr(e.into()),
        Err(panic) => {
            RResult::RErr(format!("config check panicked: {}", panic_message(&*panic)).into())
        }
    }
}

/// The plugin name handed to [`root_module`]; read by `new` to label the plugin's log lines.
static PLUGIN_NAME: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

extern "C" fn new_exporter<E: Exporter>(
    text: RStr<'_>,
    host: HostContext<'_>,
) -> RResult<ExporterBox, RString> {
    let plugin = PLUGIN_NAME.get().copied().unwrap_or("plugin");
    crate::log::install(plugin, host.log, host.max_level);
    let result = catch_unwind(AssertUnwindSafe(|| {
        let config = parse_config::<E>(text)?;
        let context = Context {
            exporter: host.exporter.as_str(),
        };
        E::new(config, context).map_err(|e| e.to_string())
    }));
    match result {
        Ok(Ok(exporter)) => {
            let adapter = Adapter {
                inner: ManuallyDrop::new(exporter),
                poisoned: false,
            };
            RResult::ROk(ExporterFfi_TO::from_value(
                adapter,
                abi_stable::sabi_trait::TD_Opaque,
            ))
        }
        Ok(Err(e)) => RResult::RErr(e.into()),
        Err(panic) => RResult::RErr(format!("new panicked: {}", panic_message(&*panic)).into()),
    }
}

/// The plugin's description for [`crate::host::ABOUT_SYMBOL`]: built once, kept for the life of
/// the library. Called by [`crate::export_exporter!`].
#[doc(hidden)]
pub fn about(name: &'static str, version: &'static str) -> *const std::ffi::c_char {
    static ABOUT: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();
    ABOUT
        .get_or_init(|| {
            let text = crate::host::About::text(name, version).replace('\0', "");
            std::ffi::CString::new(text).unwrap_or_default()
        })
        .as_ptr()
}

/// Builds the root module of a plugin whose exporter is `E`. Called by [`crate::export_exporter!`].
#[doc(hidden)]
pub fn root_module<E: Exporter>(name: &'static str, version: &'static str) -> ExporterModRef {
    let _ = PLUGIN_NAME.set(name);
    use abi_stable::prefix_type::PrefixTypeTrait as _;
    ExporterMod {
        abi_version: ABI_VERSION,
        name: RStr::from_str(name),
        plugin_version: RStr::from_str(version),
        rustc_version: RStr::from_str(env!("PERISCOPE_RUSTC_VERSION")),
        check_config: check_config::<E>,
        new: new_exporter::<E>,
    }
    .leak_into_prefix()
}

/// Exports a type implementing [`Exporter`] as this library's plugin.
///
/// Put it once in the `lib.rs` of a `cdylib` crate:
///
/// ```ignore
/// periscope_plugin_api::export_exporter!(name = "stdout", exporter = StdoutExporter);
/// ```
///
/// The host finds the plugin as `lib periscope_exporter_<name>.so` in its plugin directories.
#[macro_export]
macro_rules! export_exporter {
    (name = $name:expr, exporter = $exporter:ty $(,)?) => {
        // The symbol abi_stable's loader looks for (`abi_stable::library::ROOT_MODULE_LOADER_NAME`);
        // written out here so plugins need no direct dependency on abi_stable. A test in
        // periscope-plugin-api checks that the two agree.
        // Unsafe: the loader finds the library by this unmangled symbol, and the header can only
        // be built with abi_stable's unsafe constructor (see the SAFETY note below).
        #[doc(hidden)]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader = {
            extern "C" fn erased_root_module() -> $crate::__private::RootModuleResult {
                $crate::__private::call_root_module_loader(root_module)
            }
            fn root_module() -> $crate::abi::ExporterModRef {
                $crate::__private::root_module::<$exporter>($name, env!("CARGO_PKG_VERSION"))
            }
            // SAFETY: this is what abi_stable's `#[export_root_module]` expands to: a header whose
            // constructor returns this library's root module, with its layout checked by the host.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::abi::ExporterModRef>(
                    erased_root_module,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };

        /// The plugin's self-description as `key=value` lines, in a plain C signature that never
        /// changes, so that a host can read it even from a plugin it refuses to load
        /// (`periscope_plugin_api::host::ABOUT_SYMBOL`).
        // Unsafe only in name: an unmangled symbol, which is what makes it findable by name.
        #[doc(hidden)]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn periscope_exporter_about() -> *const ::std::ffi::c_char {
            $crate::__private::about($name, env!("CARGO_PKG_VERSION"))
        }
    };
}
