//! The layout of stream's messages, for the side that writes them (stream's feed) and the
//! sides that read them (loadgen, the benchmarks, the tests). A message is one SSE event:
//! `id: <seq>` and one data line holding `{"host":…,"timestamp":"…","seq":…,"message":"…"}`,
//! its fields in that order. The message is tens of kilobytes of random text: a client that
//! wants the host or the time reads the head of the data and leaves the rest undecoded, which
//! only works because the order is fixed here.

use std::fmt::Write;

use crate::{DATA, ID};

/// The message's fields, in the order they are written.
pub const HOST: &str = "host";
pub const TIMESTAMP: &str = "timestamp";
pub const SEQ: &str = "seq";
pub const MESSAGE: &str = "message";

/// One message as a complete SSE frame. `host_json` is already JSON (a quoted, escaped
/// string); the RFC 3339 `timestamp` and the alphanumeric `message` need no escaping, so
/// nothing is escaped here: the feed encodes a frame once per tick, for every client.
pub fn encode(seq: u64, host_json: &str, timestamp: &str, message: &str) -> String {
    let mut frame = String::with_capacity(message.len() + host_json.len() + timestamp.len() + 96);
    let _ = write!(frame, "{ID}: {seq}\n{DATA}: ");
    key(&mut frame, '{', HOST);
    frame.push_str(host_json);
    key(&mut frame, ',', TIMESTAMP);
    quoted(&mut frame, timestamp);
    key(&mut frame, ',', SEQ);
    let _ = write!(frame, "{seq}");
    key(&mut frame, ',', MESSAGE);
    quoted(&mut frame, message);
    frame.push_str("}\n\n");
    frame
}

/// `{"name":` or `,"name":`: what opens a field, after the brace or the field before it.
fn key(frame: &mut String, opener: char, name: &str) {
    frame.push(opener);
    frame.push('"');
    frame.push_str(name);
    frame.push_str("\":");
}

fn quoted(frame: &mut String, text: &str) {
    frame.push('"');
    frame.push_str(text);
    frame.push('"');
}

/// The text after the key `encode` opens the field `name` with, if `data` starts there.
fn after_key<'a>(data: &'a str, opener: char, name: &str) -> Option<&'a str> {
    data.strip_prefix(opener)?.strip_prefix('"')?.strip_prefix(name)?.strip_prefix("\":")
}

/// The `host` of a message (the instance that sent it), read from the head of its data.
pub fn host(data: &str) -> Option<String> {
    let rest = after_key(data, '{', HOST)?;
    serde_json::Deserializer::from_str(rest).into_iter::<String>().next()?.ok()
}

/// The `timestamp` of a message (RFC 3339, when it was made), read from the head of its data:
/// past the host, which is the only field before it.
pub fn timestamp(data: &str) -> Option<&str> {
    let rest = after_key(data, '{', HOST)?;
    let mut host = serde_json::Deserializer::from_str(rest).into_iter::<String>();
    host.next()?.ok()?;
    let rest = after_key(&rest[host.byte_offset()..], ',', TIMESTAMP)?.strip_prefix('"')?;
    rest.find('"').map(|end| &rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_and_time_are_read_without_decoding_the_rest() {
        let data =
            r#"{"host":"stream-6d9f \"b\"","timestamp":"2026-01-02T03:04:05.678Z","seq":7,"message":"xyz"}"#;
        assert_eq!(host(data).as_deref(), Some("stream-6d9f \"b\""));
        assert_eq!(timestamp(data), Some("2026-01-02T03:04:05.678Z"));
        assert_eq!(host("{}"), None);
        assert_eq!(host(r#"{"seq":1}"#), None);
        assert_eq!(timestamp(r#"{"seq":1}"#), None);
        assert_eq!(timestamp(r#"{"host":"h","seq":1}"#), None);
    }

    #[test]
    fn an_encoded_message_is_one_sse_event_of_json_that_reads_back() {
        let frame = encode(7, r#""pod \"1\"""#, "2026-01-02T03:04:05.678Z", "abc");
        assert_eq!(
            frame,
            "id: 7\ndata: {\"host\":\"pod \\\"1\\\"\",\"timestamp\":\"2026-01-02T03:04:05.678Z\",\"seq\":7,\"message\":\"abc\"}\n\n"
        );
        let mut parser = crate::Parser::new();
        parser.push(frame.as_bytes());
        let event = parser.next_event().unwrap();
        assert_eq!(event.seq(), Some(7));
        assert_eq!(host(&event.data).as_deref(), Some("pod \"1\""));
        assert_eq!(timestamp(&event.data), Some("2026-01-02T03:04:05.678Z"));
        let json: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!((&json[SEQ], &json[MESSAGE]), (&serde_json::json!(7), &serde_json::json!("abc")));
    }
}
