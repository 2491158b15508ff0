//! The on-disk format: segment files of checksummed, length-prefixed records.
//!
//! ```text
//! segment  = header record*
//! header   = "LLJRNL" version:u8 flags:u8 first_seq:u64le        (16 bytes)
//!            [node_len:u16le node[node_len]]           (version 3 on)
//! record   = len:u32le crc:u32le payload[len]
//! crc      = crc32c(len:u32le ++ payload)        (Castagnoli, as in iSCSI/ext4)
//! payload  = postcard((seq:u64, JournalRecord))
//! ```
//!
//! Versions (the header's `version` says which one a segment holds; a writer
//! always starts a new segment, so one segment is one version):
//!
//! - 1: the first.
//! - 2: `CallRecord` gained `notes` (rescues, hedges, trunks skipped for
//!   capacity); new enum variants at the end (`JournalRecord::Note`,
//!   `AttemptResult::TrunkDown` and `Superseded`, `TrunkChange::CanaryStarted`
//!   and `CanaryEnded`). Version 1 segments are still read: their calls have
//!   no notes. Later, still version 2: `JournalRecord::Refused` at the end
//!   (refusals counted per source and interval); readers from before it
//!   report such a record as corrupt, skip it and read on.
//! - 3: the header names the gateway that wrote the segment (`node_name` in
//!   its configuration, UTF-8, at most [`MAX_NODE_LEN`] bytes; empty if
//!   none), so that the journals of several gateways can be reported on
//!   together; and `JournalRecord::Started` (an emergency call's record
//!   as it starts, so that a gateway that stops leaves its calls in
//!   progress on the callback list). Readers from before it refuse
//!   version 3 segments with a bad-header note.
//!
//! A segment is named `journal-<first_seq, 20 digits>-<unix seconds>.log` so
//! that a plain sort by name is the order of its records. Sequence numbers
//! start at 1 and increase by one per record across segments.
//!
//! Reading (see [`parse_segment`]): a frame whose length is zero or above
//! [`MAX_RECORD`], that runs past the end of the file, whose checksum does not
//! match or whose payload does not decode is bad. From a bad frame the reader
//! *resynchronises*: it scans forward byte by byte for the next offset where a
//! whole frame checks out (length, checksum, decoding, and a sequence number
//! above the last good one). If there is one, the bytes skipped are reported
//! as [`Issue::Corrupt`] and reading goes on from there; if there is none, the
//! rest of the file is a torn tail ([`Issue::TornTail`]), which is what a crash
//! or power loss in the middle of a write leaves behind. Nothing before a bad
//! frame is ever dropped, and a corrupt journal never panics the reader.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::record::{v1, JournalRecord};

/// Magic bytes at the start of every segment.
pub const MAGIC: &[u8; 6] = b"LLJRNL";
/// The format version this crate writes.
pub const FORMAT_VERSION: u8 = 3;
/// The oldest format version this crate reads (it reads every version from
/// this one to [`FORMAT_VERSION`]).
pub const OLDEST_READABLE_VERSION: u8 = 1;
/// Size of the fixed part of the segment header (all of it before version
/// 3; from version 3 the gateway's name follows, see [`header_len`]).
pub const HEADER_LEN: usize = 16;
/// The longest gateway name a segment header holds, in bytes.
pub const MAX_NODE_LEN: usize = 255;
/// Size of a record's frame header (length and checksum).
pub const FRAME_HEADER_LEN: usize = 8;
/// The largest payload accepted (a call record is a few hundred bytes).
pub const MAX_RECORD: u32 = 1 << 20;

/// Segment file name prefix and suffix.
const PREFIX: &str = "journal-";
const SUFFIX: &str = ".log";

/// The name of a segment whose first record has `first_seq`, created at
/// `unix_secs`.
pub fn segment_name(first_seq: u64, unix_secs: u64) -> String {
    format!("{PREFIX}{first_seq:020}-{unix_secs}{SUFFIX}")
}

/// `(first_seq, unix_secs)` from a segment file name, if it is one.
pub fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let (seq, ts) = rest.split_once('-')?;
    Some((seq.parse().ok()?, ts.parse().ok()?))
}

/// The segment header bytes, naming the gateway `node` (cut to
/// [`MAX_NODE_LEN`] bytes at a character boundary; empty: unnamed).
pub fn encode_header(first_seq: u64, node: &str) -> Vec<u8> {
    let node = cut_node(node);
    let mut h = Vec::with_capacity(header_len(node));
    h.extend_from_slice(MAGIC);
    h.push(FORMAT_VERSION);
    h.push(0);
    h.extend_from_slice(&first_seq.to_le_bytes());
    h.extend_from_slice(&(node.len() as u16).to_le_bytes());
    h.extend_from_slice(node.as_bytes());
    h
}

/// The size of the header [`encode_header`] writes for `node`.
pub fn header_len(node: &str) -> usize {
    HEADER_LEN + 2 + cut_node(node).len()
}

fn cut_node(node: &str) -> &str {
    let mut end = node.len().min(MAX_NODE_LEN);
    while !node.is_char_boundary(end) {
        end -= 1;
    }
    &node[..end]
}

/// Append one framed record to `out`. Fails only if the record does not
/// encode or is larger than [`MAX_RECORD`].
pub fn encode_frame(seq: u64, record: &JournalRecord, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    let res = postcard::to_extend(&(seq, record), std::mem::take(out));
    *out = match res {
        Ok(v) => v,
        Err(e) => return Err(format!("record {seq} does not encode: {e}")),
    };
    let len = out.len() - start - FRAME_HEADER_LEN;
    let Ok(len32) = u32::try_from(len) else {
        out.truncate(start);
        return Err(format!("record {seq} is {len} bytes"));
    };
    if len32 > MAX_RECORD {
        out.truncate(start);
        return Err(format!("record {seq} is {len} bytes, over {MAX_RECORD}"));
    }
    let len_bytes = len32.to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), &out[start + FRAME_HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&len_bytes);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Something wrong found while reading a journal. Reading goes on past all
/// of them; they are reported, never fatal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Issue {
    /// The end of a segment is not a whole record: what a crash during a
    /// write leaves. The bytes from `offset` on were skipped.
    TornTail {
        /// The segment.
        path: PathBuf,
        /// Where the partial record starts.
        offset: u64,
        /// How many bytes were skipped.
        bytes: u64,
    },
    /// Bytes in the middle of a segment that are not a valid record, followed
    /// by valid records again: skipped.
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Where the bad bytes start.
        offset: u64,
        /// How many bytes were skipped to the next valid record.
        bytes: u64,
    },
    /// A file that is not a segment of a version this reader knows (bad
    /// magic, short header, other version): skipped whole.
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file that could not be read.
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The error.
        error: String,
    },
    /// A record whose sequence number was not above the one before it (a
    /// record written twice after a write error was retried): skipped.
    Duplicate {
        /// The segment.
        path: PathBuf,
        /// Its offset.
        offset: u64,
        /// Its sequence number.
        seq: u64,
    },
}

impl Issue {
    /// Whether this is only the torn tail a crash leaves (expected after
    /// kill -9 or power loss; nothing that was durable is missing).
    pub fn is_torn_tail(&self) -> bool {
        matches!(self, Issue::TornTail { .. })
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Issue::TornTail {
                path,
                offset,
                bytes,
            } => write!(
                f,
                "{}: torn final record at offset {offset} ({bytes} bytes skipped; expected after a crash)",
                path.display()
            ),
            Issue::Corrupt {
                path,
                offset,
                bytes,
            } => write!(
                f,
                "{}: corrupt data at offset {offset} ({bytes} bytes skipped, reading resumed after them)",
                path.display()
            ),
            Issue::BadHeader { path, reason } => {
                write!(f, "{}: not read: {reason}", path.display())
            }
            Issue::Unreadable { path, error } => {
                write!(f, "{}: cannot read: {error}", path.display())
            }
            Issue::Duplicate { path, offset, seq } => write!(
                f,
                "{}: record {seq} at offset {offset} repeats an earlier one (skipped)",
                path.display()
            ),
        }
    }
}

/// A record read back, with where it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence number.
    pub seq: u64,
    /// Its offset in its segment.
    pub offset: u64,
    /// The record.
    pub record: JournalRecord,
}

/// Everything in one segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// The first sequence number, from the header (0 if the header is bad).
    pub first_seq: u64,
    /// The gateway that wrote it, from the header (format version 3 on;
    /// `None` before, or if the writer had no name).
    pub node: Option<String>,
    /// The good records, in file order.
    pub entries: Vec<Entry>,
    /// What was wrong.
    pub issues: Vec<Issue>,
    /// Where the last good record ends (a writer continuing would append here).
    pub valid_len: u64,
}

/// Decode a payload of a segment of format `version`.
fn decode(version: u8, payload: &[u8]) -> Option<(u64, JournalRecord)> {
    match version {
        1 => postcard::from_bytes::<(u64, v1::JournalRecord)>(payload)
            .ok()
            .map(|(seq, r)| (seq, r.into())),
        _ => postcard::from_bytes(payload).ok(),
    }
}

/// Try to read one frame at `pos`: `(seq, record, frame length)`.
fn frame_at(data: &[u8], pos: usize, version: u8) -> Option<(u64, JournalRecord, usize)> {
    let header = data.get(pos..pos.checked_add(FRAME_HEADER_LEN)?)?;
    let len_bytes: [u8; 4] = header.get(..4)?.try_into().ok()?;
    let crc_bytes: [u8; 4] = header.get(4..8)?.try_into().ok()?;
    let len = u32::from_le_bytes(len_bytes);
    if len == 0 || len > MAX_RECORD {
        return None;
    }
    let start = pos + FRAME_HEADER_LEN;
    let payload = data.get(start..start.checked_add(len as usize)?)?;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload);
    if crc != u32::from_le_bytes(crc_bytes) {
        return None;
    }
    let (seq, record) = decode(version, payload)?;
    Some((seq, record, FRAME_HEADER_LEN + len as usize))
}

/// Parse a whole segment held in memory. Never panics, whatever `data` is.
pub fn parse_segment(path: &Path, data: &[u8]) -> Segment {
    let mut seg = Segment::default();
    let bad = |reason: String| Issue::BadHeader {
        path: path.to_path_buf(),
        reason,
    };
    let Some(header) = data.get(..HEADER_LEN) else {
        seg.issues.push(bad(format!(
            "{} bytes, shorter than a segment header (created just before a crash?)",
            data.len()
        )));
        return seg;
    };
    if header.get(..6) != Some(MAGIC.as_slice()) {
        seg.issues
            .push(bad("not a lifeline journal segment (bad magic)".into()));
        return seg;
    }
    let version = header.get(6).copied().unwrap_or(0);
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&version) {
        seg.issues.push(bad(format!(
            "format version {version}; this build reads versions \
             {OLDEST_READABLE_VERSION} to {FORMAT_VERSION}"
        )));
        return seg;
    }
    let mut first = [0u8; 8];
    if let Some(b) = header.get(8..16) {
        first.copy_from_slice(b);
    }
    seg.first_seq = u64::from_le_bytes(first);
    let mut pos = HEADER_LEN;
    if version >= 3 {
        let node = data
            .get(HEADER_LEN..HEADER_LEN + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
            .and_then(|n| data.get(HEADER_LEN + 2..HEADER_LEN + 2 + n));
        let Some(node) = node.filter(|n| n.len() <= MAX_NODE_LEN) else {
            seg.issues.push(bad(
                "the gateway name in the header is cut short or too long".into(),
            ));
            return seg;
        };
        let Ok(node) = std::str::from_utf8(node) else {
            seg.issues
                .push(bad("the gateway name in the header is not UTF-8".into()));
            return seg;
        };
        seg.node = (!node.is_empty()).then(|| node.to_string());
        pos += 2 + node.len();
    }
    seg.valid_len = pos as u64;
    let mut last_seq: Option<u64> = None;
    while pos < data.len() {
        match frame_at(data, pos, version) {
            Some((seq, record, len)) => {
                if last_seq.is_some_and(|l| seq <= l) {
                    seg.issues.push(Issue::Duplicate {
                        path: path.to_path_buf(),
                        offset: pos as u64,
                        seq,
                    });
                } else {
                    last_seq = Some(seq);
                    seg.entries.push(Entry {
                        seq,
                        offset: pos as u64,
                        record,
                    });
                }
                pos += len;
                seg.valid_len = pos as u64;
            }
            None => {
                // Resynchronise: the next offset holding a whole valid frame
                // with a later sequence number.
                let next = (pos + 1..data.len()).find(|&p| {
                    frame_at(data, p, version)
                        .is_some_and(|(seq, _, _)| last_seq.is_none_or(|l| seq > l))
                });
                match next {
                    Some(p) => {
                        seg.issues.push(Issue::Corrupt {
                            path: path.to_path_buf(),
                            offset: pos as u64,
                            bytes: (p - pos) as u64,
                        });
                        pos = p;
                    }
                    None => {
                        seg.issues.push(Issue::TornTail {
                            path: path.to_path_buf(),
                            offset: pos as u64,
                            bytes: (data.len() - pos) as u64,
                        });
                        break;
                    }
                }
            }
        }
    }
    seg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{TrunkChange, TrunkRecord, WallTime};
    use serde::{Deserialize, Serialize};

    fn rec(i: i64) -> JournalRecord {
        JournalRecord::Trunk(TrunkRecord {
            at: WallTime(i),
            trunk: "primary".into(),
            change: TrunkChange::Drained,
        })
    }

    #[test]
    fn names_round_trip_and_sort() {
        let a = segment_name(9, 1_700_000_000);
        let b = segment_name(10, 1_600_000_000);
        assert_eq!(parse_segment_name(&a), Some((9, 1_700_000_000)));
        assert!(a < b, "names sort by first sequence number");
        assert_eq!(parse_segment_name("journal-x-1.log"), None);
        assert_eq!(parse_segment_name("other.log"), None);
    }

    #[test]
    fn frames_round_trip() {
        let mut data = encode_header(1, "");
        for i in 1..=3 {
            encode_frame(i as u64, &rec(i), &mut data).unwrap();
        }
        let seg = parse_segment(Path::new("s"), &data);
        assert!(seg.issues.is_empty(), "{:?}", seg.issues);
        assert_eq!(seg.first_seq, 1);
        let seqs: Vec<u64> = seg.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(seg.valid_len, data.len() as u64);
    }

    /// A version 1 segment as the version 1 writer wrote it (seq 7-9: a
    /// failed emergency call, a trunk going down, a late answer).
    const V1_SEGMENT: &str = concat!(
        "4c4c4a524e4c01000700000000000000c900000074304fa7070080a0e2c0a9bcff05a09799c1a9bcff05096331406f72",
        "6967696e207369703a2b343437373030393030313233406f726967696e2e6578616d706c650105416c69636501133c74",
        "656c3a2b3434373730303930303132333e127369703a3939394067772e6578616d706c65010101103c6369643a6c6f63",
        "406f726967696e3e0109656d657267656e6379127564703a3139322e302e322e373a3530363002077072696d61727901",
        "000101c09a0c01b401066261636b757002c09a0c03f70301d086030001f703000027000000ec9f00cd0801c0baeec0a9",
        "bcff05077072696d617279000002116c6976653a206e6f20726573706f6e73652700000032181008090280a9dcc1a9bc",
        "ff05096331406f726967696e80a0e2c0a9bcff05077072696d617279c80101",
    );

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn version_1_segments_are_still_read() {
        use crate::record::*;
        let data = unhex(V1_SEGMENT);
        assert_eq!(data[6], 1, "a version 1 header");
        let seg = parse_segment(Path::new("v1"), &data);
        assert!(seg.issues.is_empty(), "{:?}", seg.issues);
        assert_eq!(seg.valid_len, data.len() as u64);
        let seqs: Vec<u64> = seg.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [7, 8, 9]);
        let JournalRecord::Call(c) = &seg.entries[0].record else {
            panic!("{:?}", seg.entries[0]);
        };
        assert_eq!(c.call_id, "c1@origin");
        assert_eq!(c.caller.from_display.as_deref(), Some("Alice"));
        assert_eq!(c.emergency, Some(EmergencyRule::Number));
        assert!(c.location.pidf_lo);
        assert_eq!(
            c.attempts_summary(),
            "primary:no-response(late 180) backup:503"
        );
        assert_eq!(
            c.outcome,
            CallOutcome::Failed {
                status: 503,
                reason: FailReason::AllTrunksFailed
            }
        );
        assert!(c.notes.is_empty(), "version 1 calls have no notes");
        assert_eq!(
            seg.entries[1].record,
            JournalRecord::Trunk(TrunkRecord {
                at: WallTime(1_687_687_200_100_000),
                trunk: "primary".into(),
                change: TrunkChange::State {
                    from: TrunkState::Up,
                    to: TrunkState::Down,
                    reason: "live: no response".into(),
                },
            })
        );
        assert!(matches!(
            &seg.entries[2].record,
            JournalRecord::Late(l) if l.connected && l.status == 200
        ));
        // The same records written now are the current version, and read
        // back equal.
        let mut v2 = encode_header(7, "");
        for e in &seg.entries {
            encode_frame(e.seq, &e.record, &mut v2).unwrap();
        }
        assert_eq!(v2[6], FORMAT_VERSION);
        let again = parse_segment(Path::new("v2"), &v2);
        assert!(again.issues.is_empty(), "{:?}", again.issues);
        let records = |s: &Segment| {
            s.entries
                .iter()
                .map(|e| e.record.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(records(&again), records(&seg));
        assert_eq!(
            again.entries[1].offset - again.entries[0].offset,
            seg.entries[1].offset - seg.entries[0].offset + 1,
            "the call's empty notes take one byte"
        );
    }

    #[test]
    fn the_header_names_the_gateway() {
        let mut data = encode_header(5, "gw-a.example.net");
        assert_eq!(data.len(), header_len("gw-a.example.net"));
        encode_frame(5, &rec(1), &mut data).unwrap();
        let seg = parse_segment(Path::new("named"), &data);
        assert!(seg.issues.is_empty(), "{:?}", seg.issues);
        assert_eq!(seg.node.as_deref(), Some("gw-a.example.net"));
        assert_eq!((seg.first_seq, seg.entries.len()), (5, 1));

        // No name: none read back.
        let mut data = encode_header(1, "");
        encode_frame(1, &rec(1), &mut data).unwrap();
        let seg = parse_segment(Path::new("unnamed"), &data);
        assert_eq!((seg.node, seg.entries.len()), (None, 1));

        // A name longer than the header holds is cut at a character boundary.
        let long = "\u{e9}".repeat(200);
        let h = encode_header(1, &long);
        let seg = parse_segment(Path::new("long"), &h);
        assert_eq!(seg.node.as_deref(), Some("\u{e9}".repeat(127).as_str()));

        // Version 2: no name in the header; its records are read.
        let mut v2 = encode_header(9, "gw-a")[..HEADER_LEN].to_vec();
        v2[6] = 2;
        encode_frame(9, &rec(1), &mut v2).unwrap();
        let seg = parse_segment(Path::new("v2"), &v2);
        assert!(seg.issues.is_empty(), "{:?}", seg.issues);
        assert_eq!((seg.node, seg.entries.len()), (None, 1));

        // A header cut inside the name, or a name that is not UTF-8, is bad.
        let h = encode_header(1, "gw-a");
        for bad in [
            &h[..h.len() - 1],
            &[&h[..HEADER_LEN], &[2, 0, 0xff, 0xfe]].concat()[..],
        ] {
            let seg = parse_segment(Path::new("bad"), bad);
            assert!(
                matches!(seg.issues.as_slice(), [Issue::BadHeader { .. }]),
                "{:?}",
                seg.issues
            );
        }
    }

    #[test]
    fn version_2_records_round_trip() {
        use crate::record::*;
        let call = JournalRecord::Call(Box::new(CallRecord {
            started: WallTime(1),
            ended: WallTime(2),
            call_id: "c".into(),
            caller: Caller::default(),
            dialled: "urn:service:sos".into(),
            emergency: Some(EmergencyRule::SosUrn),
            location: LocationRecord::default(),
            route: "emergency".into(),
            source: "udp:192.0.2.7:5060".into(),
            attempts: vec![AttemptRecord {
                trunk: "primary".into(),
                attempt: 1,
                offset: Micros(0),
                result: AttemptResult::TrunkDown,
                elapsed: Some(Micros(3)),
                late_status: None,
            }],
            outcome: CallOutcome::Connected {
                trunk: "backup".into(),
            },
            setup: Some(Micros(9)),
            notes: vec![
                CallNote::Skipped {
                    trunk: "third".into(),
                    offset: Micros(0),
                    reason: SkipReason::MaxCps,
                },
                CallNote::Rescued {
                    trunk: "primary".into(),
                    offset: Micros(3),
                    ringing: true,
                },
                CallNote::Hedged {
                    trunk: "backup".into(),
                    offset: Micros(4),
                },
            ],
        }));
        let records = [
            call,
            JournalRecord::Trunk(TrunkRecord {
                at: WallTime(5),
                trunk: "primary".into(),
                change: TrunkChange::CanaryStarted { until: WallTime(6) },
            }),
            JournalRecord::Trunk(TrunkRecord {
                at: WallTime(6),
                trunk: "primary".into(),
                change: TrunkChange::CanaryEnded { passed: false },
            }),
            JournalRecord::Note(NoteRecord {
                call_id: "c".into(),
                started: WallTime(1),
                emergency: true,
                note: CallNote::DuplicateAnswer {
                    trunk: "primary".into(),
                    offset: Micros(8),
                },
            }),
            JournalRecord::Refused(RefusedRecord {
                first: WallTime(10),
                last: WallTime(11),
                source: Some("2001:db8::7".parse().unwrap()),
                refusal: Refusal::Call {
                    status: 404,
                    reason: FailReason::NoRoute,
                },
                count: 10_000,
            }),
            JournalRecord::Refused(RefusedRecord {
                first: WallTime(12),
                last: WallTime(12),
                source: None,
                refusal: Refusal::Message {
                    status: None,
                    reason: "access".into(),
                },
                count: 1,
            }),
        ];
        let mut data = encode_header(1, "");
        for (i, r) in records.iter().enumerate() {
            encode_frame(i as u64 + 1, r, &mut data).unwrap();
        }
        let seg = parse_segment(Path::new("s"), &data);
        assert!(seg.issues.is_empty(), "{:?}", seg.issues);
        let back: Vec<JournalRecord> = seg.entries.into_iter().map(|e| e.record).collect();
        assert_eq!(back, records);
        assert_eq!(back[3].time(), WallTime(9));
        assert_eq!(back[4].time(), WallTime(10));
    }

    /// A reader from before `Refused` (the version 2 records up to `Note`)
    /// skips one as corrupt and reads the records after it.
    #[test]
    fn readers_before_refused_records_skip_them() {
        use crate::record::*;
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        enum Before {
            Call(Box<CallRecord>),
            Trunk(TrunkRecord),
            Late(LateRecord),
            Note(NoteRecord),
        }
        let refused = JournalRecord::Refused(RefusedRecord {
            first: WallTime(1),
            last: WallTime(2),
            source: Some("192.0.2.66".parse().unwrap()),
            refusal: Refusal::Call {
                status: 404,
                reason: FailReason::NoRoute,
            },
            count: 3,
        });
        let mut data = encode_header(1, "");
        for (i, r) in [rec(1), refused, rec(3)].iter().enumerate() {
            encode_frame(i as u64 + 1, r, &mut data).unwrap();
        }
        let old = |payload: &[u8]| postcard::from_bytes::<(u64, Before)>(payload).ok();
        let mut pos = header_len("");
        let mut read = Vec::new();
        while let Some(h) = data.get(pos..pos + FRAME_HEADER_LEN) {
            let len = u32::from_le_bytes(h[..4].try_into().unwrap()) as usize;
            let payload = &data[pos + FRAME_HEADER_LEN..pos + FRAME_HEADER_LEN + len];
            read.push(old(payload).map(|(seq, _)| seq));
            pos += FRAME_HEADER_LEN + len;
        }
        assert_eq!(
            read,
            [Some(1), None, Some(3)],
            "the old enum cannot decode it"
        );
    }

    #[test]
    fn bad_headers_are_reported() {
        for (data, what) in [
            (b"LLJ".to_vec(), "shorter"),
            (
                b"XXXXXX\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec(),
                "magic",
            ),
            (
                b"LLJRNL\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec(),
                "version 9",
            ),
        ] {
            let seg = parse_segment(Path::new("s"), &data);
            assert!(seg.entries.is_empty());
            match &seg.issues[..] {
                [Issue::BadHeader { reason, .. }] => assert!(reason.contains(what), "{reason}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
