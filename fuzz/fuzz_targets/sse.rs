//! The SSE client parser of `kubescaler-sse` (loadgen, bench and the stream tests read stream's
//! events with it) on any bytes, fed in pieces whose boundaries the input also chooses.
//!
//! Asserts: it never panics; the events read do not depend on how the bytes were split (in
//! one piece, in the chosen pieces, byte by byte), nor does what is still pending (a blank line
//! pushed at the end yields the same in every case); no field of an event holds a line end
//! other than the newlines that join `data:` lines; the message helpers never panic.

#![no_main]

use kubescaler_sse::{Event, Parser, message};
use libfuzzer_sys::fuzz_target;

/// Most split points one input chooses.
const MAX_CUTS: usize = 16;

fuzz_target!(|data: &[u8]| {
    let (stream, cuts) = split_input(data);
    let whole = read(&[stream]);
    let chunked = read(&pieces(stream, &cuts));
    let bytewise = read(&stream.chunks(1).collect::<Vec<_>>());
    assert_eq!(chunked, whole, "split at {cuts:?}");
    assert_eq!(bytewise, whole, "split byte by byte");
    for event in &whole {
        for field in [&event.event, &event.id].into_iter().flatten() {
            assert!(!field.contains(['\r', '\n']), "{event:?}");
        }
        assert!(!event.data.contains('\r'), "{event:?}");
        let _ = (event.name(), event.seq(), event.is_message());
        let _ = (message::host(&event.data), message::timestamp(&event.data));
    }
});

/// The input's first byte says how many split points follow it (two bytes each, an offset
/// into the stream); the rest is the stream.
fn split_input(data: &[u8]) -> (&[u8], Vec<usize>) {
    let Some((&count, rest)) = data.split_first() else { return (data, Vec::new()) };
    let count = (usize::from(count) % (MAX_CUTS + 1)).min(rest.len() / 2);
    let (offsets, stream) = rest.split_at(count * 2);
    let mut cuts: Vec<usize> = offsets
        .chunks_exact(2)
        .map(|pair| usize::from(u16::from_le_bytes([pair[0], pair[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    (stream, cuts)
}

fn pieces<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::with_capacity(cuts.len() + 1);
    let mut start = 0;
    for &cut in cuts {
        pieces.push(&stream[start..cut]);
        start = cut;
    }
    pieces.push(&stream[start..]);
    pieces
}

/// Every event the pieces yield, reading after each piece as a client does, then whatever a
/// final blank line completes.
fn read(pieces: &[&[u8]]) -> Vec<Event> {
    let mut parser = Parser::new();
    let mut events = Vec::new();
    for piece in pieces.iter().copied().chain([&b"\n\n"[..]]) {
        parser.push(piece);
        while let Some(event) = parser.next_event() {
            events.push(event);
        }
    }
    events
}
