//! Arbitrary bytes into the peer-link frame decoder, as a link's reader takes them: frame
//! after frame until an error or an incomplete frame, with the default maximum frame size and
//! with a small one (so the size check is exercised too). The decoder must never panic.
#![no_main]

use gridline_dataplane::cluster::link::DEFAULT_MAX_FRAME;
use gridline_dataplane::cluster::link::frame::decode_stream;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    for max_frame in [DEFAULT_MAX_FRAME, 64] {
        let _ = decode_stream(bytes, max_frame);
    }
});
