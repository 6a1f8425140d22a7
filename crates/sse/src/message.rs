//! The fields of stream's messages that clients read. stream's feed writes each message as
//! `{"host":…,"timestamp":"…","seq":…,"message":"…"}`, in that order, and the message is tens
//! of kilobytes of random text: a client that wants the host or the time reads the head of the
//! data and leaves the rest undecoded.

/// The `host` of a message (the instance that sent it), read from the head of its data.
pub fn host(data: &str) -> Option<String> {
    let rest = data.strip_prefix("{\"host\":")?;
    serde_json::Deserializer::from_str(rest).into_iter::<String>().next()?.ok()
}

/// The `timestamp` of a message (RFC 3339, when it was made), read from the head of its data.
pub fn timestamp(data: &str) -> Option<&str> {
    const KEY: &str = ",\"timestamp\":\"";
    let at = data.find(KEY)? + KEY.len();
    let end = data[at..].find('"')? + at;
    Some(&data[at..end])
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
    }
}
