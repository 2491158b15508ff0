//! Parse and validation errors.
//!
//! An [`Error`] is two words: what went wrong ([`ErrorKind`]) and the byte
//! offset in the message where it was noticed. It never allocates, so a flood of
//! garbage costs no heap. Each kind knows the SIP status a proxy answers a bad
//! request with ([`ErrorKind::status`]); a bad *response* is never answered,
//! only dropped and counted.

use core::fmt;

use crate::name::HeaderName;

/// What is wrong with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input holds nothing but line ends (a keep-alive) or nothing at all.
    Empty,
    /// The message is larger than the configured cap (413).
    TooLarge,
    /// The start line is not `Method SP Request-URI SP SIP-Version CRLF` or
    /// `SIP-Version SP Status-Code SP Reason-Phrase CRLF` (single spaces, no
    /// trailing white space).
    BadStartLine,
    /// The SIP-Version is not of the form `SIP/<digits>.<digits>`.
    BadVersion,
    /// A well-formed SIP-Version other than `SIP/2.0` (505).
    UnsupportedVersion,
    /// The status code is not three digits between 100 and 699.
    BadStatusCode,
    /// The Request-URI is malformed, enclosed in `<>`, or otherwise unusable.
    BadRequestUri,
    /// The Request-URI carries escaped headers (`?Route=...`), which a proxy
    /// must never forward nor turn into real header fields.
    RequestUriHeaders,
    /// A header name holds a control or separator character, or is empty.
    BadHeaderName,
    /// A header line has no colon after its name.
    MissingColon,
    /// A CR or LF that is not part of a CRLF pair, in the start line or header.
    BareLineEnd,
    /// The header section does not end with an empty line.
    Unterminated,
    /// Content-Length is not a non-negative decimal that fits in 32 bits.
    BadContentLength,
    /// Content-Length claims more octets than the datagram carries.
    ContentLengthExceedsBody,
    /// A stream-framed message has no Content-Length.
    MissingContentLength,
    /// A mandatory header field is absent.
    MissingHeader(HeaderName),
    /// A header field that may appear only once appears more than once.
    DuplicateHeader(HeaderName),
    /// The value of a header field does not follow its grammar.
    BadHeaderValue(HeaderName),
    /// A header value holds a control character other than HT (NUL, DEL,
    /// ESC ...; CR and LF end lines or fold them, else they are a
    /// [`BareLineEnd`](Self::BareLineEnd)). RFC 3261's `TEXT-UTF8` and
    /// `qdtext` exclude them, and a stack downstream that stops at a NUL
    /// would read another message than the one checked here. Only a
    /// `quoted-pair` inside a quoted string may carry one (`"\<NUL>"`, which
    /// RFC 4475 §3.1.1.2 holds valid). The header is [`HeaderName::Other`]
    /// for a name this crate does not know.
    ControlCharacter(HeaderName),
    /// A quoted string is not terminated.
    UnterminatedQuote,
    /// A parameter list holds an empty parameter (`;;`) or an empty value.
    EmptyParameter,
    /// The CSeq method differs from the Request-Line method.
    MethodMismatch,
    /// An extension method whose CSeq method differs from the Request-Line
    /// method (501, as RFC 4475 §3.1.2.18 prefers at a proxy).
    UnknownMethodMismatch,
}

impl ErrorKind {
    /// The SIP status code that answers a request with this fault.
    pub const fn status(self) -> u16 {
        match self {
            Self::TooLarge => 413,
            Self::UnsupportedVersion => 505,
            Self::UnknownMethodMismatch => 501,
            _ => 400,
        }
    }

    /// The reason phrase for [`status`](Self::status).
    pub const fn reason_phrase(self) -> &'static str {
        match self.status() {
            413 => "Request Entity Too Large",
            501 => "Not Implemented",
            505 => "Version Not Supported",
            _ => "Bad Request",
        }
    }

    fn describe(self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Empty => "empty message",
            Self::TooLarge => "message too large",
            Self::BadStartLine => "malformed start line",
            Self::BadVersion => "malformed SIP-Version",
            Self::UnsupportedVersion => "SIP version not supported",
            Self::BadStatusCode => "status code is not 100-699",
            Self::BadRequestUri => "malformed Request-URI",
            Self::RequestUriHeaders => "Request-URI carries escaped headers",
            Self::BadHeaderName => "malformed header name",
            Self::MissingColon => "header line without a colon",
            Self::BareLineEnd => "bare CR or LF",
            Self::Unterminated => "header section not terminated by an empty line",
            Self::BadContentLength => "malformed Content-Length",
            Self::ContentLengthExceedsBody => "Content-Length larger than the body received",
            Self::MissingContentLength => "no Content-Length on a stream transport",
            Self::MissingHeader(h) => return write!(f, "missing {} header", h.as_str()),
            Self::DuplicateHeader(h) => return write!(f, "more than one {} header", h.as_str()),
            Self::BadHeaderValue(h) => return write!(f, "malformed {} header", h.as_str()),
            Self::ControlCharacter(HeaderName::Other) => "control character in a header value",
            Self::ControlCharacter(h) => {
                return write!(f, "control character in the {} header value", h.as_str())
            }
            Self::UnterminatedQuote => "unterminated quoted string",
            Self::EmptyParameter => "empty parameter",
            Self::MethodMismatch => "CSeq method differs from the request method",
            Self::UnknownMethodMismatch => {
                "CSeq method differs from the (unsupported) request method"
            }
        };
        f.write_str(s)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.describe(f)
    }
}

/// A parse or validation error: a kind and the byte offset where it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Error {
    kind: ErrorKind,
    offset: u32,
}

impl Error {
    pub(crate) const fn new(kind: ErrorKind, offset: usize) -> Self {
        // Messages are capped far below 4 GiB; saturate rather than wrap.
        let offset = if offset > u32::MAX as usize {
            u32::MAX
        } else {
            offset as u32
        };
        Self { kind, offset }
    }

    /// What went wrong.
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Byte offset from the start of the message where the fault was found.
    pub const fn offset(&self) -> usize {
        self.offset as usize
    }

    /// The status a proxy answers a request with this fault (400, 413, 501, 505).
    pub const fn status(&self) -> u16 {
        self.kind.status()
    }

    /// Attribute the error to a header, for errors raised by a typed-value
    /// parser that does not know which header it was parsing.
    pub(crate) const fn in_header(self, name: HeaderName) -> Self {
        match self.kind {
            ErrorKind::UnterminatedQuote | ErrorKind::EmptyParameter => self,
            _ => Self {
                kind: ErrorKind::BadHeaderValue(name),
                offset: self.offset,
            },
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind, self.offset)
    }
}

impl std::error::Error for Error {}
