//! `lifeline-sip`: SIP messages for an edge proxy — framing, parsing,
//! validation and the edits a proxy makes — with no IO and no clock.
//!
//! # What it does
//!
//! - [`Message::parse`] takes one [`bytes::Bytes`] buffer and, in a single pass,
//!   checks the start line and every header line (folding, compact names, any
//!   case) and records where the headers a proxy needs on every message sit.
//!   Nothing is copied and nothing is allocated: header values are slices of
//!   the buffer; typed views ([`Via`], [`CSeq`], [`NameAddr`], [`Uri`] ...)
//!   are built on demand.
//! - [`validate()`] decides what a proxy does with a message before acting on
//!   it ([`Verdict`]): accept, answer 400/413/501/505, or drop a bad response.
//! - [`StreamFramer`] cuts messages out of a TCP/TLS byte stream by
//!   Content-Length, with a size cap; UDP datagram rules are [`Message::parse`]'s.
//! - [`Edit`] makes a proxy's changes (push/pop Via, Record-Route, Route,
//!   Max-Forwards, Request-URI, removing headers or the body) as splices, so
//!   every untouched header and the body leave byte-identical.
//! - [`Multipart`] finds the parts of a `multipart/*` body and their
//!   Content-Types, so that one part can be left out.
//! - [`MessageWriter`] writes new requests (probes, CANCEL) and responses
//!   (copying Via, From, To, Call-ID and CSeq from the request as received).
//! - [`Error`] is a kind, an offset and the SIP status it maps to; it never allocates.
//!
//! # What it does not do
//!
//! - No transactions, dialogs, routing, retransmission or timers: that is
//!   `lifeline-proxy`. No sockets: that is the `lifeline` binary.
//! - No policy that needs configuration: 483 for Max-Forwards 0, 416 for a
//!   scheme the proxy will not route and 420 for Proxy-Require are decided by
//!   the proxy, which knows what it supports.
//! - No body parsing beyond Content-Type and the parts of a multipart body:
//!   SDP and PIDF-LO are opaque octets, forwarded untouched.
//!
//! No input may make it panic: wire data is never indexed without a bound
//! checked on the same line, and the parser is fuzzed.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod build;
mod edit;
mod error;
mod framing;
mod header;
mod message;
mod multipart;
mod name;
mod scan;
mod typed;
mod uri;
mod validate;

#[doc(hidden)]
pub mod fuzzing;

pub use build::MessageWriter;
pub use edit::Edit;
pub use error::{Error, ErrorKind};
pub use framing::{Frame, StreamFramer, DEFAULT_MAX_MESSAGE};
pub use header::{split_values, Header, HeaderName, Headers, Values};
pub use message::{Message, Method, MAX_MESSAGE};
pub use multipart::{Multipart, Part};
pub use typed::{CSeq, ContentType, NameAddr, Via, MAGIC_COOKIE};
pub use uri::{unescape, Host, Params, SipUri, TelUri, Unescape, Uri};
pub use validate::{check_datagram, sniff, validate, Sniff, Verdict};
