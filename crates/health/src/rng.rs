//! The generator behind every value a peer must not guess: branches, tags,
//! Record-Route tokens and probe nonces.
//!
//! ChaCha20 (`rand_chacha`) keyed with a 256-bit [`Seed`]. The pure crates
//! take no OS randomness: the gateway fills the seed from the operating
//! system once, at start-up; tests and simulations pass a constant, so
//! their runs repeat exactly.

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// The 256 bits a [`TokenRng`] is keyed with.
///
/// The gateway takes them from the operating system (`getrandom`); a test
/// expands a constant with [`From<u64>`] (deterministic, and as guessable
/// as the constant). `Debug` does not show the bits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Seed([u8; 32]);

impl Seed {
    /// A seed of these bytes (from the operating system's CSPRNG).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

/// A fixed seed for tests and simulations: `n` in the first 8 bytes
/// (little endian), zeros after.
impl From<u64> for Seed {
    fn from(n: u64) -> Self {
        let mut bytes = [0; 32];
        bytes[..8].copy_from_slice(&n.to_le_bytes());
        Self(bytes)
    }
}

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(..)")
    }
}

/// ChaCha20 keyed with a [`Seed`]: 128 bits per token, so that one token
/// seen on the wire says nothing about any other.
#[derive(Clone)]
pub struct TokenRng(ChaCha20Rng);

impl TokenRng {
    /// A generator whose output `seed` determines.
    pub fn new(seed: Seed) -> Self {
        Self(ChaCha20Rng::from_seed(seed.0))
    }

    /// 128 random bits: a token, a nonce.
    pub fn token(&mut self) -> u128 {
        let mut b = [0; 16];
        self.0.fill_bytes(&mut b);
        u128::from_le_bytes(b)
    }

    /// 64 random bits (draws that need no secrecy, such as a weighted choice).
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A seed for another generator (each component keeps its own stream).
    pub fn fork(&mut self) -> Seed {
        let mut b = [0; 32];
        self.0.fill_bytes(&mut b);
        Seed(b)
    }
}

impl std::fmt::Debug for TokenRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenRng(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::{Seed, TokenRng};

    #[test]
    fn the_same_seed_gives_the_same_tokens_and_another_seed_others() {
        let mut a = TokenRng::new(Seed::from(7));
        let mut b = TokenRng::new(Seed::from(7));
        let mut c = TokenRng::new(Seed::from(8));
        let (ta, tb, tc) = (a.token(), b.token(), c.token());
        assert_eq!(ta, tb);
        assert_ne!(ta, tc);
        assert_ne!(a.token(), ta, "a new token each time");
        let mut forked = TokenRng::new(a.fork());
        assert_ne!(forked.token(), a.token());
    }

    #[test]
    fn chacha20_reference_output() {
        // RFC 7539 appendix A.1, test vector 1: all-zero key, nonce and
        // counter; the first 16 bytes of the keystream.
        let mut r = TokenRng::new(Seed::from_bytes([0; 32]));
        assert_eq!(
            r.token().to_le_bytes(),
            [
                0x76, 0xb8, 0xe0, 0xad, 0xa0, 0xf1, 0x3d, 0x90, 0x40, 0x5d, 0x6a, 0xe5, 0x53, 0x86,
                0xbd, 0x28
            ]
        );
    }

    #[test]
    fn debug_shows_no_key_material() {
        assert_eq!(format!("{:?}", Seed::from(7)), "Seed(..)");
        assert_eq!(
            format!("{:?}", TokenRng::new(Seed::from(7))),
            "TokenRng(..)"
        );
    }
}
