//! What is wrong with a configuration file, and how it is printed:
//! `file:line:column: key: message`, one error per line.

use std::fmt;

/// One thing wrong with a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConfigError {
    /// The file (as given).
    pub(crate) origin: String,
    /// 1-based line, 0 when unknown.
    pub(crate) line: u64,
    /// 1-based column (characters), 0 when unknown.
    pub(crate) column: u64,
    /// Key path such as `trunks[1].address`; empty for the whole file.
    pub(crate) key: String,
    /// What is wrong.
    pub(crate) message: String,
}

impl ConfigError {
    pub(super) fn whole_file(origin: &str, message: String) -> Self {
        Self {
            origin: origin.to_string(),
            line: 0,
            column: 0,
            key: String::new(),
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    /// `file:line:column: key: message`, leaving out what is unknown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A [`ConfigError`] that is only a warning: `file:line:column: warning:
/// key: message`.
pub(crate) struct Warning<'a>(pub(crate) &'a ConfigError);

impl fmt::Display for Warning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.0;
        f.write_str(&w.origin)?;
        if w.line > 0 {
            write!(f, ":{}:{}", w.line, w.column)?;
        }
        f.write_str(": warning")?;
        if !w.key.is_empty() {
            write!(f, ": {}", w.key)?;
        }
        write!(f, ": {}", w.message)
    }
}

/// Every error found in a configuration file (never empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConfigErrors(pub(super) Vec<ConfigError>);

#[allow(dead_code, reason = "for callers that want the errors one by one")]
impl ConfigErrors {
    /// The errors, in file order.
    pub(crate) fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
