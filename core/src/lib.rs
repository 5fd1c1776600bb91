//! The Periscope host.
