//! `lifeline-proxy`: the RFC 3261 transaction layer (§17), the proxy core
//! (§16), routing and serial failover per call. Pure: no IO, no clock — time is
//! a `now` argument and outputs are drained with `poll_*` calls.
//!
//! This crate is being built; today it holds no logic. See
//! `docs/ARCHITECTURE.md` for the design it follows.
#![forbid(unsafe_code)]
