//! (being written: the real search node harness)
