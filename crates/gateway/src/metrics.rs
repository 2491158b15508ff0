//! Prometheus metrics for the daemon.
