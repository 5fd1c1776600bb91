//! (being written: the real Prometheus server harness)
