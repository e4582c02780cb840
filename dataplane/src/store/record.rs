//! The event record of the log and how a reader finds records again after damage.
//!
//! Record: `len u32 | crc32 u32 | body`, little-endian, CRC over the body; event body:
//! `kind u8 (1) | publish_time i64 (ms) | n u16 | n × subscription id u32 | event JSON`.
//! The subscription ids are those whose filter matched when the event was published.
//!
//! A record whose bytes changed (a flipped bit, a bad sector) fails its CRC. When that happens
//! the reader cannot trust the length either, so it **resynchronises**: it looks for the next
//! offset where a whole valid record starts ([`find_record`]) and treats the bytes in between
//! as one bad range. A chance match needs, at one offset, a length in
//! `EVENT_FIXED_BYTES..=MAX_RECORD_BYTES` that fits in the segment (so its fourth byte is
//! 0x00), the kind byte 1 and a CRC32 matching the body (2^-32). Event JSON is UTF-8 text and
//! never holds a 0x00 byte, so a header cannot be forged inside an event's payload: candidates
//! only arise within the few binary bytes of real records (headers, times, ids), a few dozen
//! per record, each matching with probability below 2^-40.

use super::clock::Millis;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub const RECORD_HEADER_BYTES: usize = 8;
const EVENT_KIND: u8 = 1;
/// Fixed part of an event body before the subscription ids.
pub const EVENT_FIXED_BYTES: usize = 1 + 8 + 2;
/// Larger than any event the HTTP layer accepts (1 MB); a length past it is a torn or corrupt
/// header, never a real record. Below 2^24, so a length's fourth byte is always 0x00.
const MAX_RECORD_BYTES: usize = 8 << 20;
/// How much of a segment the resynchronising scan reads at a time.
const SCAN_WINDOW: usize = 1 << 20;

/// Append one event record to `buf`.
pub fn encode_event(buf: &mut Vec<u8>, publish_time: Millis, matches: &[u32], json: &[u8]) {
    let count = u16::try_from(matches.len()).unwrap_or(u16::MAX);
    let body_len = EVENT_FIXED_BYTES + usize::from(count) * 4 + json.len();
    let start = buf.len();
    buf.extend_from_slice(&u32::try_from(body_len).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend_from_slice(&[0; 4]);
    buf.push(EVENT_KIND);
    buf.extend_from_slice(&publish_time.to_le_bytes());
    buf.extend_from_slice(&count.to_le_bytes());
    for id in &matches[..usize::from(count)] {
        buf.extend_from_slice(&id.to_le_bytes());
    }
    buf.extend_from_slice(json);
    let crc = crc32fast::hash(&buf[start + RECORD_HEADER_BYTES..]);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// One event record inside a buffer read from the log.
#[derive(Clone, Copy, Debug)]
pub struct EventView<'a> {
    pub address: u64,
    /// Header included: the distance to the next record.
    pub total_len: u32,
    pub publish_time: Millis,
    matches: &'a [u8],
    pub json: &'a [u8],
}

impl EventView<'_> {
    /// Whether the subscription's filter matched this event at publish time.
    pub fn matched(&self, subscription: u32) -> bool {
        let wanted = subscription.to_le_bytes();
        self.matches.chunks_exact(4).any(|id| id == wanted)
    }
}

/// What a record at the start of `bytes` is.
pub enum Parsed<'a> {
    Event(EventView<'a>),
    /// The buffer ends inside the record; it needs this many bytes in all.
    Incomplete(usize),
    /// Not a valid record (torn write or corruption).
    Invalid,
}

/// The body length a header claims, if it is one a record can have.
fn plausible_body_len(header: &[u8]) -> Option<usize> {
    let len = u32::from_le_bytes(header.get(..4)?.try_into().ok()?) as usize;
    (EVENT_FIXED_BYTES..=MAX_RECORD_BYTES)
        .contains(&len)
        .then_some(len)
}

pub fn parse(bytes: &[u8], address: u64) -> Parsed<'_> {
    parse_checked(bytes, address, true)
}

/// [`parse`] for bytes whose records were already checked (a chunk the log validated when it
/// read it): the CRC is not computed again.
pub fn parse_validated(bytes: &[u8], address: u64) -> Parsed<'_> {
    parse_checked(bytes, address, false)
}

fn parse_checked(bytes: &[u8], address: u64, check_crc: bool) -> Parsed<'_> {
    let Some(header) = bytes.get(..RECORD_HEADER_BYTES) else {
        return Parsed::Incomplete(RECORD_HEADER_BYTES);
    };
    let Some(body_len) = plausible_body_len(header) else {
        return Parsed::Invalid;
    };
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let total = RECORD_HEADER_BYTES + body_len;
    let Some(body) = bytes.get(RECORD_HEADER_BYTES..total) else {
        return Parsed::Incomplete(total);
    };
    if (check_crc && crc32fast::hash(body) != crc) || body[0] != EVENT_KIND {
        return Parsed::Invalid;
    }
    let mut time = [0u8; 8];
    time.copy_from_slice(&body[1..9]);
    let count = usize::from(u16::from_le_bytes([body[9], body[10]]));
    let Some(matches) = body.get(EVENT_FIXED_BYTES..EVENT_FIXED_BYTES + count * 4) else {
        return Parsed::Invalid;
    };
    Parsed::Event(EventView {
        address,
        total_len: total as u32,
        publish_time: i64::from_le_bytes(time),
        matches,
        json: &body[EVENT_FIXED_BYTES + count * 4..],
    })
}

/// Why a range of the log is quarantined (a bounded metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// The record's length was right (the next valid record starts where it said it ends),
    /// its body or checksum changed.
    Checksum,
    /// The length was wrong or impossible: the record boundary was lost and the next record
    /// was found by scanning.
    Length,
}

impl Corruption {
    pub fn as_str(self) -> &'static str {
        match self {
            Corruption::Checksum => "checksum",
            Corruption::Length => "length",
        }
    }

    /// Classify the bad range `start..next` by what its first header claimed.
    pub fn of(bytes_at_start: &[u8], start: u64, next: u64) -> Corruption {
        let claimed = plausible_body_len(bytes_at_start).map(|len| RECORD_HEADER_BYTES + len);
        if claimed.is_some_and(|total| start + total as u64 == next) {
            Corruption::Checksum
        } else {
            Corruption::Length
        }
    }
}

/// Positioned reads from a segment: its file, or bytes in tests.
pub trait ReadAt {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let bytes = self
            .get(start..start + buf.len())
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(bytes);
        Ok(())
    }
}

/// The first offset in `from..end` of `source` where a whole valid record starts and ends by
/// `end`; `None` if there is none. Offsets are the source's (a segment's file offsets).
pub fn find_record<S: ReadAt + ?Sized>(source: &S, from: u64, end: u64) -> io::Result<Option<u64>> {
    let mut window = Vec::new();
    let mut window_start = from;
    while window_start < end {
        // Candidates start in the first SCAN_WINDOW bytes; the window runs on by a header and
        // kind byte so that each candidate's can be checked without another read.
        let length = usize::try_from(end - window_start)
            .unwrap_or(usize::MAX)
            .min(SCAN_WINDOW + RECORD_HEADER_BYTES + 1);
        window.resize(length, 0);
        source.read_exact_at(&mut window, window_start)?;
        let candidates = length.min(SCAN_WINDOW);
        for offset in 0..candidates {
            let rest = &window[offset..];
            // Cheap checks first: a plausible length and the kind byte.
            let Some(body_len) = plausible_body_len(rest) else {
                continue;
            };
            if rest.get(RECORD_HEADER_BYTES) != Some(&EVENT_KIND) {
                continue;
            }
            let address = window_start + offset as u64;
            let total = RECORD_HEADER_BYTES + body_len;
            if address + total as u64 > end {
                continue;
            }
            let valid = match rest.get(..total) {
                Some(bytes) => matches!(parse(bytes, address), Parsed::Event(_)),
                None => {
                    let mut bytes = vec![0u8; total];
                    source.read_exact_at(&mut bytes, address)?;
                    matches!(parse(&bytes, address), Parsed::Event(_))
                }
            };
            if valid {
                return Ok(Some(address));
            }
        }
        window_start += candidates as u64;
    }
    Ok(None)
}

/// A range of bad bytes with valid records after it (segment offsets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadRange {
    pub start: u64,
    pub end: u64,
    pub corruption: Corruption,
}

/// What a scan of a whole segment found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Where the last valid record ends. What follows (if anything) holds no valid record: a
    /// torn tail.
    pub records_end: u64,
    /// Bad ranges followed by valid records, in order.
    pub bad: Vec<BadRange>,
}

/// Read the segment `source` (offsets `0..end`) record by record, calling `on_record` for each
/// valid one (its address is `base` plus its offset). A bad record followed by valid ones is
/// skipped as a bad range (the scan resynchronises on the next valid record); bad bytes with
/// no valid record after them end the scan.
pub fn scan<S: ReadAt + ?Sized>(
    source: &S,
    base: u64,
    end: u64,
    mut on_record: impl FnMut(&EventView<'_>),
) -> io::Result<Scan> {
    const CHUNK: usize = 1 << 20;
    let mut result = Scan::default();
    let mut position = 0u64;
    let mut buffer = Vec::new();
    'scan: while position < end {
        let want = usize::try_from(end - position)
            .unwrap_or(usize::MAX)
            .min(CHUNK);
        buffer.resize(want, 0);
        source.read_exact_at(&mut buffer, position)?;
        let mut offset = 0usize;
        let bad = loop {
            match parse(&buffer[offset..], base + position + offset as u64) {
                Parsed::Event(view) => {
                    on_record(&view);
                    offset += view.total_len as usize;
                    if offset == buffer.len() {
                        position += offset as u64;
                        continue 'scan;
                    }
                }
                Parsed::Incomplete(needed) => {
                    if position + (offset + needed) as u64 > end {
                        // Runs past the segment: a cut-short write or a wrong length.
                        break position + offset as u64;
                    }
                    if offset == 0 {
                        // One record larger than the chunk: read it whole.
                        buffer.resize(needed, 0);
                        source.read_exact_at(&mut buffer, position)?;
                        continue;
                    }
                    position += offset as u64;
                    continue 'scan;
                }
                Parsed::Invalid => break position + offset as u64,
            }
        };
        let mut head = [0u8; RECORD_HEADER_BYTES];
        let head_len = usize::try_from(end - bad).map_or(head.len(), |n| n.min(head.len()));
        source.read_exact_at(&mut head[..head_len], bad)?;
        match find_record(source, bad + 1, end)? {
            Some(next) => {
                result.bad.push(BadRange {
                    start: bad,
                    end: next,
                    corruption: Corruption::of(&head[..head_len], bad, next),
                });
                position = next;
            }
            None => {
                result.records_end = bad;
                return Ok(result);
            }
        }
    }
    result.records_end = position;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A segment of `count` records with JSON of varied sizes; the records' offsets.
    fn segment(count: usize, sizes: &[usize]) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut offsets = Vec::new();
        for n in 0..count {
            offsets.push(bytes.len() as u64);
            let padding = "x".repeat(sizes[n % sizes.len()]);
            let json = format!("{{\"id\":\"{n}\",\"data\":\"{padding}\"}}");
            let ids: Vec<u32> = (0..(n % 3) as u32).map(|i| 0x0101_0000 + i).collect();
            encode_event(
                &mut bytes,
                1_765_000_000_000 + n as i64,
                &ids,
                json.as_bytes(),
            );
        }
        (bytes, offsets)
    }

    fn scanned(bytes: &[u8]) -> (Scan, Vec<u64>) {
        let mut found = Vec::new();
        let scan = scan(bytes, 0, bytes.len() as u64, |view| {
            found.push(view.address)
        })
        .unwrap();
        (scan, found)
    }

    #[test]
    fn an_intact_segment_scans_to_its_end() {
        let (bytes, offsets) = segment(50, &[10, 300, 2]);
        let (scan, found) = scanned(&bytes);
        assert_eq!(found, offsets);
        assert_eq!(scan.records_end, bytes.len() as u64);
        assert!(scan.bad.is_empty());
    }

    #[test]
    fn a_flipped_body_byte_quarantines_exactly_its_record() {
        let (mut bytes, offsets) = segment(20, &[40]);
        bytes[offsets[7] as usize + 30] ^= 0x04;
        let (scan, found) = scanned(&bytes);
        let expected: Vec<u64> = offsets
            .iter()
            .copied()
            .filter(|o| *o != offsets[7])
            .collect();
        assert_eq!(found, expected);
        assert_eq!(
            scan.bad,
            vec![BadRange {
                start: offsets[7],
                end: offsets[8],
                corruption: Corruption::Checksum
            }]
        );
        assert_eq!(scan.records_end, bytes.len() as u64);
    }

    #[test]
    fn a_flipped_length_resynchronises_on_the_next_record() {
        let (mut bytes, offsets) = segment(20, &[40]);
        // A length far past the end of the segment, then one just a little too long.
        bytes[offsets[3] as usize + 2] ^= 0x10;
        bytes[offsets[12] as usize] ^= 0x01;
        let (scan, found) = scanned(&bytes);
        assert_eq!(found.len(), 18);
        assert!(!found.contains(&offsets[3]) && !found.contains(&offsets[12]));
        let ranges: Vec<_> = scan
            .bad
            .iter()
            .map(|b| (b.start, b.end, b.corruption))
            .collect();
        assert_eq!(
            ranges,
            vec![
                (offsets[3], offsets[4], Corruption::Length),
                (offsets[12], offsets[13], Corruption::Length),
            ]
        );
    }

    #[test]
    fn a_partial_final_record_is_a_torn_tail() {
        let (bytes, offsets) = segment(5, &[100]);
        let torn = &bytes[..bytes.len() - 7];
        let (scan, found) = scanned(torn);
        assert_eq!(found, offsets[..4]);
        assert_eq!(scan.records_end, offsets[4]);
        assert!(scan.bad.is_empty());
    }

    #[test]
    fn garbage_after_the_last_record_is_a_torn_tail() {
        let (mut bytes, offsets) = segment(5, &[100]);
        let end = bytes.len() as u64;
        bytes.extend_from_slice(&[0u8; 4096]);
        let (scan, found) = scanned(&bytes);
        assert_eq!(found, offsets);
        assert_eq!(scan.records_end, end);
        assert!(scan.bad.is_empty());
    }

    #[test]
    fn a_record_larger_than_the_scan_window_is_found_after_damage() {
        let (mut bytes, offsets) = segment(3, &[SCAN_WINDOW + 5000, 10]);
        bytes[offsets[0] as usize + 100] ^= 0xff;
        let (scan, found) = scanned(&bytes);
        assert_eq!(found, offsets[1..]);
        assert_eq!(scan.bad.len(), 1);
        assert_eq!(scan.bad[0].end, offsets[1]);
    }

    #[test]
    fn event_json_cannot_hold_a_record_header() {
        // A payload that spells a header and kind byte in text: the length's fourth byte
        // would have to be 0x00, which JSON text never holds.
        let mut bytes = Vec::new();
        encode_event(
            &mut bytes,
            1,
            &[],
            br#"{"data":"\u0013\u0000\u0000\u0000 forged"}"#,
        );
        assert!(!bytes[RECORD_HEADER_BYTES + EVENT_FIXED_BYTES..].contains(&0));
        assert_eq!(
            find_record(&bytes[..], 1, bytes.len() as u64).unwrap(),
            None
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The rule recovery lives by: one changed byte anywhere in a segment costs at most
        /// the record it is in, every other record keeps its address, and nothing that was
        /// not a record is taken for one.
        #[test]
        fn any_single_changed_byte_loses_at_most_the_record_it_is_in(
            count in 1usize..40,
            sizes in proptest::collection::vec(0usize..600, 1..5),
            position in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let (mut bytes, offsets) = segment(count, &sizes);
            let at = position.index(bytes.len());
            bytes[at] ^= flip;
            let hit = offsets.iter().rposition(|o| *o as usize <= at).unwrap();
            let (scan, found) = scanned(&bytes);
            let expected: Vec<u64> = offsets
                .iter()
                .enumerate()
                .filter(|(n, _)| *n != hit)
                .map(|(_, o)| *o)
                .collect();
            prop_assert_eq!(&found, &expected);
            let hit_end = offsets.get(hit + 1).copied().unwrap_or(bytes.len() as u64);
            if hit + 1 == offsets.len() {
                // The last record: nothing valid follows, so it is a torn tail.
                prop_assert!(scan.bad.is_empty());
                prop_assert_eq!(scan.records_end, offsets[hit]);
            } else {
                prop_assert_eq!(scan.bad.len(), 1);
                prop_assert_eq!((scan.bad[0].start, scan.bad[0].end), (offsets[hit], hit_end));
                prop_assert_eq!(scan.records_end, bytes.len() as u64);
            }
        }
    }
}
