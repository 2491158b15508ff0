//! Values the proxy writes into every forwarded message (Via, Record-Route,
//! branches, tags), built in a buffer on the stack with hand-written hex
//! digits and `itoa`'s decimal ones: `format!` costs a heap allocation or three (the
//! string grows as it is written) and the formatting machinery, on every
//! call.

use bytes::Bytes;
use smallvec::SmallVec;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// A value being written: inline up to 256 bytes (a Via with an IPv6
/// address and the longest branch fits), on the heap beyond.
#[derive(Default)]
pub(super) struct Text(SmallVec<[u8; 256]>);

impl Text {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// Append `s` as it is.
    pub(super) fn push(&mut self, s: impl AsRef<[u8]>) -> &mut Self {
        self.0.extend_from_slice(s.as_ref());
        self
    }

    /// Append `v` in lower-case hex, zero-padded to 16 digits (`{v:016x}`).
    pub(super) fn hex64(&mut self, v: u64) -> &mut Self {
        self.hex_digits(u128::from(v), 16)
    }

    /// Append `v` in lower-case hex, zero-padded to 32 digits (`{v:032x}`).
    pub(super) fn hex128(&mut self, v: u128) -> &mut Self {
        self.hex_digits(v, 32)
    }

    /// Append `v` in lower-case hex, as few digits as it takes (`{v:x}`).
    pub(super) fn hex(&mut self, v: usize) -> &mut Self {
        let v = v as u128;
        let digits = (128 - v.leading_zeros()).div_ceil(4).max(1);
        self.hex_digits(v, digits as usize)
    }

    /// Append `v` in decimal (`{v}`).
    pub(super) fn dec(&mut self, v: usize) -> &mut Self {
        self.push(itoa::Buffer::new().format(v))
    }

    /// The last `n` hex digits of `v`, most significant first.
    fn hex_digits(&mut self, v: u128, n: usize) -> &mut Self {
        for i in (0..n).rev() {
            let nibble = (v >> (4 * i)) & 0xf;
            self.0.push(DIGITS[nibble as usize]);
        }
        self
    }

    pub(super) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A copy in a buffer of its own, of its exact size.
    pub(super) fn to_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Text)) -> String {
        let mut t = Text::new();
        f(&mut t);
        String::from_utf8(t.as_bytes().to_vec()).unwrap()
    }

    /// Values at the edges and a spread between them (a multiplicative
    /// sequence touches every digit position).
    fn samples() -> Vec<u128> {
        let mut v = vec![0, 1, 9, 10, 15, 16, 255, 256, u64::MAX as u128, u128::MAX];
        let mut x: u128 = 1;
        for _ in 0..200 {
            x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) ^ (x >> 7);
            v.push(x);
            v.push(x >> 64);
            v.push(x >> 100);
        }
        v
    }

    #[test]
    fn digits_are_what_format_writes() {
        for v in samples() {
            assert_eq!(
                text(|t| {
                    t.hex128(v);
                }),
                format!("{v:032x}")
            );
            let v64 = v as u64;
            assert_eq!(
                text(|t| {
                    t.hex64(v64);
                }),
                format!("{v64:016x}")
            );
            let vs = v as usize;
            assert_eq!(
                text(|t| {
                    t.hex(vs);
                }),
                format!("{vs:x}")
            );
            assert_eq!(
                text(|t| {
                    t.dec(vs);
                }),
                format!("{vs}")
            );
        }
    }

    #[test]
    fn pieces_join_in_order_past_the_inline_size() {
        let long = "h".repeat(300);
        let got = text(|t| {
            t.push("SIP/2.0/UDP ")
                .push(&long)
                .push(";branch=")
                .hex64(0xab)
                .push(".")
                .hex128(1)
                .hex(10);
        });
        assert_eq!(
            got,
            format!("SIP/2.0/UDP {long};branch={:016x}.{:032x}{:x}", 0xab, 1, 10)
        );
        assert_eq!(Text::new().push("ab").to_bytes(), Bytes::from_static(b"ab"));
    }
}
