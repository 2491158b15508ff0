//! HEP version 3 (HEP3, also called EEP), the encapsulation Homer
//! (sipcapture) collectors take: a captured message and where it went, in
//! one UDP datagram. Pure: bytes in, bytes out, no IO, no clock.
//!
//! ```text
//! packet = "HEP3" total-length:u16 chunk*        (total-length counts the 6 header bytes)
//! chunk  = vendor:u16 type:u16 length:u16 value  (length counts its own 6 header bytes)
//! ```
//!
//! Every integer is big-endian; every chunk here has vendor 0x0000 (the
//! generic chunks of the specification). The chunks written, in this
//! order:
//!
//! | type | value |
//! |---|---|
//! | 0x0001 | IP family: 2 (IPv4) or 10 (IPv6), u8 |
//! | 0x0002 | IP protocol: 17 (UDP) or 6 (TCP), u8 |
//! | 0x0003 / 0x0004 | IPv4 source / destination address, 4 bytes |
//! | 0x0005 / 0x0006 | IPv6 source / destination address, 16 bytes (instead of 3 and 4) |
//! | 0x0007 / 0x0008 | source / destination port, u16 |
//! | 0x0009 | timestamp, seconds since the Unix epoch, u32 |
//! | 0x000a | timestamp, microseconds within that second, u32 |
//! | 0x000b | protocol type: 1 (SIP), u8 |
//! | 0x000c | capture agent id (the node), u32 |
//! | 0x000e | authentication key, when one is set |
//! | 0x000f | the captured payload: the SIP message as it went over the wire |
//! | 0x0011 | correlation id: the Call-ID, when the message has one |
//!
//! A packet has one address family: an IPv4 address mapped into IPv6
//! (`::ffff:192.0.2.1`, a caller reaching a dual-stack socket) is written as
//! IPv4, and if one side is still IPv6 the other is written mapped.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The magic that starts every HEP version 3 packet.
pub const MAGIC: &[u8; 4] = b"HEP3";

/// The largest packet written: the largest UDP payload over IPv4 (65,535
/// less the IP and UDP headers), below HEP's own bound (a u16 length).
pub const MAX_PACKET: usize = 65_507;

/// The generic chunk types (vendor 0x0000) this encoder writes.
pub mod chunk {
    /// IP protocol family (2: IPv4, 10: IPv6).
    pub const IP_FAMILY: u16 = 0x0001;
    /// IP protocol id (17: UDP, 6: TCP).
    pub const IP_PROTO: u16 = 0x0002;
    /// IPv4 source address.
    pub const IPV4_SRC: u16 = 0x0003;
    /// IPv4 destination address.
    pub const IPV4_DST: u16 = 0x0004;
    /// IPv6 source address.
    pub const IPV6_SRC: u16 = 0x0005;
    /// IPv6 destination address.
    pub const IPV6_DST: u16 = 0x0006;
    /// Source port.
    pub const SRC_PORT: u16 = 0x0007;
    /// Destination port.
    pub const DST_PORT: u16 = 0x0008;
    /// Timestamp, seconds since the Unix epoch.
    pub const TIME_SEC: u16 = 0x0009;
    /// Timestamp, microseconds within the second.
    pub const TIME_USEC: u16 = 0x000a;
    /// Protocol type of the payload (1: SIP).
    pub const PROTO_TYPE: u16 = 0x000b;
    /// Capture agent id.
    pub const CAPTURE_ID: u16 = 0x000c;
    /// Authentication key.
    pub const AUTH_KEY: u16 = 0x000e;
    /// Captured payload.
    pub const PAYLOAD: u16 = 0x000f;
    /// Correlation id.
    pub const CORRELATION_ID: u16 = 0x0011;
}

/// `IP_FAMILY` values (the BSD socket constants the specification uses).
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// `PROTO_TYPE` of a SIP message.
const PROTO_SIP: u8 = 1;

/// The transport a captured message went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IpProto {
    /// UDP (17).
    Udp,
    /// TCP (6).
    Tcp,
}

impl IpProto {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            IpProto::Udp => 17,
            IpProto::Tcp => 6,
        }
    }
}

/// One captured message and what HEP says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The transport it went over.
    pub proto: IpProto,
    /// Who sent it.
    pub src: SocketAddr,
    /// Who it went to.
    pub dst: SocketAddr,
    /// When, since the Unix epoch.
    pub time: Duration,
    /// The capture agent id (chunk 0x000c).
    pub node_id: u32,
    /// The authentication key (chunk 0x000e), if the collector wants one.
    pub password: Option<&'a [u8]>,
    /// The message, byte for byte.
    pub payload: &'a [u8],
    /// The correlation id (chunk 0x0011): the message's Call-ID.
    pub correlation: Option<&'a [u8]>,
}

/// The packet would be larger than [`MAX_PACKET`]: its payload cannot be
/// exported whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLarge {
    /// The size it would have had.
    pub len: usize,
}

/// `a` as IPv4 if it is an IPv4 address mapped into IPv6.
fn canonical(a: IpAddr) -> IpAddr {
    a.to_canonical()
}

/// The two addresses in one family: IPv4 when both can be, else IPv6.
fn one_family(src: IpAddr, dst: IpAddr) -> (IpAddr, IpAddr) {
    let (src, dst) = (canonical(src), canonical(dst));
    let v6 = |a: IpAddr| match a {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        v6 => v6,
    };
    if src.is_ipv4() == dst.is_ipv4() {
        (src, dst)
    } else {
        (v6(src), v6(dst))
    }
}

/// Append one chunk header (vendor 0) for a value of `len` bytes.
fn header(out: &mut Vec<u8>, kind: u16, len: usize) {
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    // Within MAX_PACKET: checked by `encode` before anything is written.
    out.extend_from_slice(&((6 + len) as u16).to_be_bytes());
}

fn put(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    header(out, kind, value.len());
    out.extend_from_slice(value);
}

/// The size `p` encodes to.
pub fn encoded_len(p: &Packet<'_>) -> usize {
    let (src, _) = one_family(p.src.ip(), p.dst.ip());
    let addr = if src.is_ipv4() { 4 } else { 16 };
    let fixed = 6 // "HEP3" and the length
        + (6 + 1) * 2 // family, protocol
        + (6 + addr) * 2
        + (6 + 2) * 2 // ports
        + (6 + 4) * 2 // seconds, microseconds
        + (6 + 1) // protocol type
        + (6 + 4); // capture id
    fixed
        + p.password.map_or(0, |k| 6 + k.len())
        + 6
        + p.payload.len()
        + p.correlation.map_or(0, |c| 6 + c.len())
}

/// Append `p` as one HEP3 packet to `out`. Nothing is appended when it
/// would be larger than [`MAX_PACKET`].
pub fn encode(p: &Packet<'_>, out: &mut Vec<u8>) -> Result<(), TooLarge> {
    let len = encoded_len(p);
    if len > MAX_PACKET {
        return Err(TooLarge { len });
    }
    out.reserve(len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    let (src, dst) = one_family(p.src.ip(), p.dst.ip());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            put(out, chunk::IP_FAMILY, &[AF_INET]);
            put(out, chunk::IP_PROTO, &[p.proto.number()]);
            put(out, chunk::IPV4_SRC, &s.octets());
            put(out, chunk::IPV4_DST, &d.octets());
        }
        (s, d) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V6(v6) => v6.octets(),
                IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            };
            put(out, chunk::IP_FAMILY, &[AF_INET6]);
            put(out, chunk::IP_PROTO, &[p.proto.number()]);
            put(out, chunk::IPV6_SRC, &v6(s));
            put(out, chunk::IPV6_DST, &v6(d));
        }
    }
    put(out, chunk::SRC_PORT, &p.src.port().to_be_bytes());
    put(out, chunk::DST_PORT, &p.dst.port().to_be_bytes());
    // Seconds as u32 (the specification's width) run out in 2106.
    let secs = u32::try_from(p.time.as_secs()).unwrap_or(u32::MAX);
    put(out, chunk::TIME_SEC, &secs.to_be_bytes());
    put(out, chunk::TIME_USEC, &p.time.subsec_micros().to_be_bytes());
    put(out, chunk::PROTO_TYPE, &[PROTO_SIP]);
    put(out, chunk::CAPTURE_ID, &p.node_id.to_be_bytes());
    if let Some(key) = p.password {
        put(out, chunk::AUTH_KEY, key);
    }
    put(out, chunk::PAYLOAD, p.payload);
    if let Some(id) = p.correlation {
        put(out, chunk::CORRELATION_ID, id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet<'a>(src: &str, dst: &str, payload: &'a [u8]) -> Packet<'a> {
        Packet {
            proto: IpProto::Udp,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            time: Duration::new(1_700_000_000, 123_456_789),
            node_id: 2001,
            password: Some(b"key"),
            payload,
            correlation: Some(b"abc@host"),
        }
    }

    /// Every byte of an IPv4 packet, chunk by chunk, written out by hand
    /// from the specification's table.
    #[test]
    fn an_ipv4_udp_packet_byte_for_byte() {
        let p = packet("192.0.2.1:5060", "198.51.100.2:5080", b"OPTIONS");
        let mut out = Vec::new();
        encode(&p, &mut out).unwrap();
        #[rustfmt::skip]
        let want: Vec<u8> = [
            &b"HEP3"[..], &[0x00, 0x81],                       // 129 bytes in all
            &[0, 0, 0, 0x01, 0, 7, 2],                          // IPv4
            &[0, 0, 0, 0x02, 0, 7, 17],                         // UDP
            &[0, 0, 0, 0x03, 0, 10, 192, 0, 2, 1],              // source
            &[0, 0, 0, 0x04, 0, 10, 198, 51, 100, 2],           // destination
            &[0, 0, 0, 0x07, 0, 8, 0x13, 0xc4],                 // 5060
            &[0, 0, 0, 0x08, 0, 8, 0x13, 0xd8],                 // 5080
            &[0, 0, 0, 0x09, 0, 10, 0x65, 0x53, 0xf1, 0x00],    // 1700000000 s
            &[0, 0, 0, 0x0a, 0, 10, 0x00, 0x01, 0xe2, 0x40],    // 123456 us
            &[0, 0, 0, 0x0b, 0, 7, 1],                          // SIP
            &[0, 0, 0, 0x0c, 0, 10, 0, 0, 0x07, 0xd1],          // node 2001
            &[0, 0, 0, 0x0e, 0, 9], b"key",
            &[0, 0, 0, 0x0f, 0, 13], b"OPTIONS",
            &[0, 0, 0, 0x11, 0, 14], b"abc@host",
        ]
        .concat();
        assert_eq!(out, want);
        assert_eq!(out.len(), 129);
        assert_eq!(encoded_len(&p), 129);
    }

    #[test]
    fn ipv6_tcp_without_key_or_call_id() {
        let p = Packet {
            proto: IpProto::Tcp,
            password: None,
            correlation: None,
            ..packet("[2001:db8::1]:5060", "[2001:db8::2]:40000", b"x")
        };
        let mut out = vec![0xaa]; // appended, what was there stays
        encode(&p, &mut out).unwrap();
        assert_eq!(out[0], 0xaa);
        let out = &out[1..];
        assert_eq!(out.len(), encoded_len(&p));
        assert_eq!(&out[..4], b"HEP3");
        assert_eq!(u16::from_be_bytes([out[4], out[5]]) as usize, out.len());
        assert_eq!(&out[6..13], &[0, 0, 0, 1, 0, 7, 10]);
        assert_eq!(&out[13..20], &[0, 0, 0, 2, 0, 7, 6]);
        assert_eq!(&out[20..26], &[0, 0, 0, 5, 0, 22]);
        let src: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(&out[26..42], &src.octets());
        assert_eq!(&out[42..48], &[0, 0, 0, 6, 0, 22]);
        // No 0x000e, no 0x0011: the payload chunk is the last.
        assert_eq!(&out[out.len() - 7..], &[0, 0, 0, 0x0f, 0, 7, b'x']);
        assert!(!out.windows(4).any(|w| w == [0, 0, 0, 0x0e]));
    }

    #[test]
    fn mapped_addresses_are_written_as_ipv4_and_mixed_families_as_ipv6() {
        let mut out = Vec::new();
        let p = packet("[::ffff:192.0.2.1]:5060", "198.51.100.2:5060", b"x");
        encode(&p, &mut out).unwrap();
        assert_eq!(&out[6..13], &[0, 0, 0, 1, 0, 7, 2]);
        assert_eq!(&out[20..30], &[0, 0, 0, 3, 0, 10, 192, 0, 2, 1]);
        out.clear();
        let p = packet("[2001:db8::1]:5060", "198.51.100.2:5060", b"x");
        encode(&p, &mut out).unwrap();
        assert_eq!(&out[6..13], &[0, 0, 0, 1, 0, 7, 10]);
        let mapped = std::net::Ipv4Addr::new(198, 51, 100, 2).to_ipv6_mapped();
        assert_eq!(&out[42..48], &[0, 0, 0, 6, 0, 22]);
        assert_eq!(&out[48..64], &mapped.octets());
    }

    #[test]
    fn too_large_a_message_is_refused_whole() {
        let mut out = Vec::new();
        let fits = MAX_PACKET - encoded_len(&packet("192.0.2.1:1", "192.0.2.2:2", b""));
        let payload = vec![b'a'; fits];
        encode(&packet("192.0.2.1:1", "192.0.2.2:2", &payload), &mut out).unwrap();
        assert_eq!(out.len(), MAX_PACKET);
        out.clear();
        let payload = vec![b'a'; fits + 1];
        assert_eq!(
            encode(&packet("192.0.2.1:1", "192.0.2.2:2", &payload), &mut out),
            Err(TooLarge {
                len: MAX_PACKET + 1
            })
        );
        assert!(out.is_empty());
    }
}
