//! Server-sent events as stream writes them and its clients read them — `loadgen`,
//! `kubescaler-bench` and the stream tests — so that the writer, the readers and a browser's
//! `EventSource` agree on what an event is.
//!
//! What each module holds, how they work together and why: docs/ARCHITECTURE.md, section
//! "kubescaler-sse".

pub mod message;

use std::fmt::Display;
use std::time::Duration;

/// The field names of the SSE lines, for the writers and the parser alike.
pub const EVENT: &str = "event";
pub const ID: &str = "id";
pub const DATA: &str = "data";
pub const RETRY: &str = "retry";
/// The field of a final event's data (`rebalance`, `shutdown`) that says when to come back, in
/// milliseconds, for clients that do not read `retry:`.
pub const RECONNECT_AFTER_MS: &str = "reconnect_after_ms";

/// A named event (`lock-lost`, `unbound`, `shutdown`, `refused`, …) with one line of data, and
/// the pause an `EventSource` should take before it reconnects when `retry` is given. The
/// data's `Display` must not hold a line end: compact JSON does not.
pub fn event(name: &str, data: impl Display, retry: Option<Duration>) -> String {
    match retry {
        Some(retry) => format!("{RETRY}: {}\n{EVENT}: {name}\n{DATA}: {data}\n\n", retry.as_millis()),
        None => format!("{EVENT}: {name}\n{DATA}: {data}\n\n"),
    }
}

/// What a stream sends first: the reconnection pause, and a comment, so that the client sees
/// the stream open before the first message is due.
pub fn opening(retry: Duration) -> String {
    format!("{RETRY}: {}\n: stream open\n\n", retry.as_millis())
}

/// One event: the fields of the lines before a blank line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// `event:`; absent for a plain message.
    pub event: Option<String>,
    /// `id:`; stream's messages carry their sequence number there.
    pub id: Option<String>,
    /// Every `data:` line, joined with newlines; empty when there was none.
    pub data: String,
    /// `retry:`, the time an `EventSource` waits before it reconnects.
    pub retry: Option<Duration>,
}

impl Event {
    /// The event's type as an `EventSource` dispatches it: `message` unless named.
    pub fn name(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }

    /// The `id` as a number: stream's sequence number, whose gaps are skipped messages.
    pub fn seq(&self) -> Option<u64> {
        self.id.as_deref()?.parse().ok()
    }

    /// Whether the event is a message (no `event:` name) that carries data.
    pub fn is_message(&self) -> bool {
        self.event.is_none() && !self.data.is_empty()
    }
}

/// Reads events out of a byte stream fed in pieces of any size.
///
/// It follows the SSE rules: lines end with LF, CRLF or CR; a blank line ends an event;
/// `:` starts a comment; one space after a field's colon is dropped; a field it does not know
/// is ignored. So it reads a raw HTTP/1.1 response too (a client on a bare socket): the head
/// and the chunk-size lines are lines of unknown fields and change nothing.
#[derive(Debug, Default)]
pub struct Parser {
    buffer: Vec<u8>,
    /// Where the search for the next line end resumes: the bytes before it hold none.
    scanned: usize,
    /// The event being read: the lines since the last blank one.
    pending: Event,
    /// Fields of `pending` read so far, and how many of them were `data:` lines.
    fields: usize,
    data_lines: usize,
    /// Whether the first line has been read (the only one a byte-order mark may open).
    started: bool,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete event, or `None` until more bytes arrive. Blocks with no field (a
    /// comment, the blank lines of an HTTP head) are skipped.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            let (line_end, next) = self.next_line_end()?;
            let mut line = String::from_utf8_lossy(&self.buffer[..line_end]).into_owned();
            // A byte-order mark may open the stream; it is not part of the first field's name.
            if !std::mem::replace(&mut self.started, true)
                && let Some(rest) = line.strip_prefix('\u{feff}')
            {
                line = rest.to_owned();
            }
            self.buffer.drain(..next);
            self.scanned = 0;
            if line.is_empty() {
                let event = std::mem::take(&mut self.pending);
                self.data_lines = 0;
                if std::mem::take(&mut self.fields) > 0 {
                    return Some(event);
                }
                continue;
            }
            self.field(&line);
        }
    }

    /// Where the first line in the buffer ends, and where the next one starts. A CR at the very
    /// end of the buffer waits for the next byte, which may be its LF.
    fn next_line_end(&mut self) -> Option<(usize, usize)> {
        let at = self.buffer[self.scanned..].iter().position(|b| matches!(b, b'\n' | b'\r'));
        let Some(at) = at.map(|at| at + self.scanned) else {
            self.scanned = self.buffer.len();
            return None;
        };
        match (self.buffer[at], self.buffer.get(at + 1)) {
            (b'\r', Some(b'\n')) => Some((at, at + 2)),
            (b'\r', None) => {
                self.scanned = at;
                None
            }
            _ => Some((at, at + 1)),
        }
    }

    fn field(&mut self, line: &str) {
        if line.starts_with(':') {
            return;
        }
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        let event = &mut self.pending;
        match name {
            EVENT => event.event = Some(value.to_owned()),
            // As an `EventSource` does: an id holding NUL is ignored, not kept.
            ID if value.contains('\0') => return,
            ID => event.id = Some(value.to_owned()),
            DATA => {
                if self.data_lines > 0 {
                    event.data.push('\n');
                }
                event.data.push_str(value);
                self.data_lines += 1;
            }
            // Only ASCII digits are a retry (`+500` or ` 5` are not); any other value is ignored
            // rather than clearing one read before, as an `EventSource` does.
            RETRY if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => match value.parse() {
                Ok(ms) => event.retry = Some(Duration::from_millis(ms)),
                Err(_) => return,
            },
            RETRY => return,
            _ => return,
        }
        self.fields += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&[u8]]) -> Vec<Event> {
        let mut parser = Parser::new();
        let mut events = Vec::new();
        for chunk in chunks {
            parser.push(chunk);
            while let Some(event) = parser.next_event() {
                events.push(event);
            }
        }
        events
    }

    #[test]
    fn messages_and_named_events_whatever_the_pieces() {
        let stream: &[u8] =
            b"retry: 500\n: stream open\n\nid: 7\ndata: {\"seq\":7}\n\nevent: shutdown\ndata: {}\n\n";
        let whole = events(&[stream]);
        let bytewise = events(&stream.chunks(1).collect::<Vec<_>>());
        assert_eq!(whole, bytewise, "split anywhere, read alike");
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].retry, Some(Duration::from_millis(500)));
        assert!(!whole[0].is_message(), "a retry hint is not a message");
        assert_eq!(
            (whole[1].name(), whole[1].seq(), whole[1].data.as_str()),
            ("message", Some(7), "{\"seq\":7}")
        );
        assert!(whole[1].is_message());
        assert_eq!((whole[2].name(), whole[2].data.as_str()), ("shutdown", "{}"));
    }

    /// The field rules of an `EventSource` where the fuzzer found this parser lenient: a
    /// `retry` that is not only digits is ignored (and keeps the one before), an `id` with NUL
    /// is ignored, and a byte-order mark opening the stream is dropped.
    #[test]
    fn fields_follow_the_event_source_rules() {
        let read = events(&[b"\xEF\xBB\xBFretry: 500\nretry: +7\nretry: 9x\nretry:\nid: a\0b\ndata: x\n\n"]);
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].retry, Some(Duration::from_millis(500)));
        assert_eq!(read[0].id, None);
        assert_eq!(read[0].data, "x");
        let late_bom = events(&[b"data: a\n\n\xEF\xBB\xBFdata: b\n\n"]);
        assert_eq!(late_bom.len(), 1, "a mark inside the stream opens no field: {late_bom:?}");
    }

    #[test]
    fn data_lines_join_and_line_ends_vary() {
        let got = events(&[b"data:a\r\ndata: b\rdata\n\r", b"\n"]);
        assert_eq!(got, vec![Event { data: "a\nb\n".into(), ..Event::default() }]);
    }

    #[test]
    fn written_frames_read_back_as_written() {
        let opening = opening(Duration::from_millis(500));
        assert_eq!(opening, "retry: 500\n: stream open\n\n");
        let plain = event("shutdown", "{\"reason\":\"stopping\"}", None);
        assert_eq!(plain, "event: shutdown\ndata: {\"reason\":\"stopping\"}\n\n");
        let retried = event("refused", 7, Some(Duration::from_millis(100)));
        assert_eq!(retried, "retry: 100\nevent: refused\ndata: 7\n\n");
        let read = events(&[opening.as_bytes(), plain.as_bytes(), retried.as_bytes()]);
        assert_eq!(read.len(), 3);
        assert_eq!((read[1].name(), read[1].data.as_str()), ("shutdown", "{\"reason\":\"stopping\"}"));
        assert_eq!((read[2].name(), read[2].retry), ("refused", Some(Duration::from_millis(100))));
    }

    #[test]
    fn a_raw_chunked_http_response_reads_as_its_events() {
        let response: &[u8] =
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
            1c\r\nretry: 500\n: stream open\n\n\r\n11\r\nid: 1\ndata: {}\n\n\r\n";
        let got = events(&[response]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!((got[1].seq(), got[1].data.as_str()), (Some(1), "{}"));
    }
}
