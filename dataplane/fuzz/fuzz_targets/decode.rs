//! Arbitrary bytes into the MQTT decoder, as a server reads them: from the first packet (which
//! must be a CONNECT and chooses the version) and with a codec of each version already chosen,
//! packet after packet until an error or an incomplete packet. The decoder must never panic.
#![no_main]

use gridline_dataplane::mqtt::codec::{Version, decode_stream};
use libfuzzer_sys::fuzz_target;

/// The broker's limit (528 KiB of remaining length), so size checks are exercised as served.
const MAX_INCOMING: u32 = 512 * 1024 + 16 * 1024;

fuzz_target!(|bytes: &[u8]| {
    for version in [None, Some(Version::V311), Some(Version::V5)] {
        let _ = decode_stream(version, MAX_INCOMING, bytes);
    }
});
