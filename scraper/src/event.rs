//! What every input sends to the host: changes of sources, readiness, and errors to count.

use periscope_plugin_api::batch::{Batch, BatchBuilder, Source, Update};

use crate::objects::ExpressionFailure;

/// A message from an input (an offline directory, a Kubernetes watcher, an endpoint poller) to
/// the host's collector.
#[derive(Debug)]
pub enum Event {
    /// The new state of one source; the host keeps a copy of it for resyncs.
    Update(SourceUpdate),
    /// The new state of one source the input can send again when asked ([`Event::Resent`]): a
    /// watch holds the object it comes from, so the host keeps no copy of it.
    Resendable(SourceUpdate),
    /// A source sent again at the host's request ([`crate::objects::Change::Resend`]): its
    /// current state, for the resync that asked, not a change.
    Resent(SourceUpdate),
    /// Every source of the input was sent again for resync `round`.
    ResendDone {
        /// The round asked.
        round: u64,
    },
    /// The input finished its first complete read; the host is ready once every input has.
    Synced {
        /// The input's name, as in self-metrics (`files:examples/quickstart/manifests`).
        input: String,
    },
    /// Something went wrong reading the input or extracting from an object. The host logs it and
    /// counts it under the input's name and its kind; the input carries on.
    Error {
        /// The input's name.
        input: String,
        /// What kind of error: the `kind` label of `periscope_input_errors_total`.
        kind: ErrorKind,
        /// What went wrong, naming the file, object or path at fault.
        message: String,
    },
    /// An expression gave no value for an object: counted as an error of kind `value` and in
    /// `periscope_expression_errors_total` (or, refused by the cost bound, in
    /// `periscope_expression_cost_exceeded_total`); logged at most once a minute per metric.
    Expression {
        /// The input's name.
        input: String,
        /// Which expression, and how it failed.
        failure: ExpressionFailure,
    },
}

/// What kind of error an input met: the `kind` label of `periscope_input_errors_total`, so an
/// alert can tell a cluster that cannot be reached from a value that is not a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Reading failed: a file, a directory, a list or watch of the Kubernetes API.
    Read,
    /// A document could not be parsed (YAML, JSON).
    Parse,
    /// A value of an object or a page did not become a sample (not a number, several values,
    /// not a state, a duplicate series).
    Value,
    /// A scrape failed: connection, HTTP status, timeout, content type, a page too large,
    /// malformed or with too many samples.
    Scrape,
    /// The input cannot run as configured.
    Config,
}

impl ErrorKind {
    /// Every kind, for self-metrics that show each from the start.
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Read,
        ErrorKind::Parse,
        ErrorKind::Value,
        ErrorKind::Scrape,
        ErrorKind::Config,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Read => "read",
            ErrorKind::Parse => "parse",
            ErrorKind::Value => "value",
            ErrorKind::Scrape => "scrape",
            ErrorKind::Config => "config",
        }
    }
}

/// A batch holding exactly one update: `Replace` of one source with all its samples, or `Remove`.
///
/// The host keeps a fingerprint of the latest `SourceUpdate` of every source, to skip updates that
/// change nothing, and a copy of those no input can send again, for full snapshots (resyncs).
#[derive(Debug, Clone)]
pub struct SourceUpdate {
    batch: Batch,
}

impl SourceUpdate {
    /// A `Replace` of `source`, whose samples `write` adds.
    pub fn replace(
        source: Source<'_>,
        write: impl FnOnce(&mut periscope_plugin_api::batch::ReplaceWriter<'_>),
    ) -> Self {
        let mut builder = BatchBuilder::new();
        let mut writer = builder.replace(source);
        write(&mut writer);
        SourceUpdate {
            batch: builder.build(),
        }
    }

    /// A `Remove` of `source`.
    pub fn remove(source: Source<'_>) -> Self {
        let mut builder = BatchBuilder::new();
        builder.remove(source);
        SourceUpdate {
            batch: builder.build(),
        }
    }

    /// The one update.
    pub fn update(&self) -> Update<'_> {
        // A SourceUpdate is only ever built with exactly one update (the two constructors above).
        self.batch
            .updates()
            .next()
            .expect("a SourceUpdate holds one update")
    }

    /// The source's key (`Source::id`).
    pub fn source_id(&self) -> &str {
        self.update().source().id
    }

    /// The `Remove` of the same source.
    pub fn to_remove(&self) -> SourceUpdate {
        SourceUpdate::remove(self.update().source())
    }

    /// Whether this is a `Remove`.
    pub fn is_remove(&self) -> bool {
        matches!(self.update(), Update::Remove { .. })
    }

    /// The update as a batch, to append to a larger one.
    pub fn batch(&self) -> &Batch {
        &self.batch
    }
}
