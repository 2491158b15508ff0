//! `lifeline-health`: one state machine per trunk (Up, Suspect, Down,
//! Recovering) fed by OPTIONS probes and by live evidence from calls, and the
//! selection of usable trunks in priority order. Pure: no IO, no clock.
//!
//! This crate is being built; today it holds no logic. See
//! `docs/ARCHITECTURE.md` for the design it follows.
#![forbid(unsafe_code)]
