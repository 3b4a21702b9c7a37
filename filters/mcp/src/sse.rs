//! Server-sent events (the WHATWG framing MCP's Streamable HTTP uses):
//! lines end with CRLF, LF or CR, and a blank line ends an event. Bytes
//! arrive in chunks cut anywhere, a CRLF included, so the splitter keeps
//! what it has not finished and never mistakes a CR at the end of a chunk
//! for a whole line ending until it knows whether an LF follows.

/// One event as received.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// Its bytes, exactly as received (the ending blank line included).
    pub raw: Vec<u8>,
}

impl Event {
    /// The event's `data` field: its `data:` lines joined with LF.
    pub fn data(&self) -> Option<String> {
        let text = std::str::from_utf8(&self.raw).ok()?;
        let mut data: Option<String> = None;
        for line in lines(text) {
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            if field == "data" {
                match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                }
            }
        }
        data
    }

    /// The same event with its `data` replaced (other fields kept, in
    /// order, the data as one line: `data` must hold no line break).
    pub fn with_data(&self, data: &str) -> Vec<u8> {
        let text = String::from_utf8_lossy(&self.raw);
        let mut out = String::with_capacity(text.len() + data.len());
        let mut written = false;
        for line in lines(&text) {
            let field = line.split_once(':').map_or(line, |(f, _)| f);
            if field == "data" {
                if !written {
                    out.push_str("data: ");
                    out.push_str(data);
                    out.push('\n');
                    written = true;
                }
            } else if !line.is_empty() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push('\n');
        out.into_bytes()
    }
}

/// The lines of an event's text (any line ending).
fn lines(text: &str) -> impl Iterator<Item = &str> {
    text.split("\r\n").flat_map(|l| l.split(['\r', '\n']))
}

/// Splits a stream into events, chunk by chunk.
#[derive(Debug, Default)]
pub struct Splitter {
    pending: Vec<u8>,
    /// Where the current line starts in `pending`.
    line_start: usize,
    /// How far `pending` has been scanned.
    scanned: usize,
}

impl Splitter {
    /// Takes in a chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        let mut event_start = 0;
        let mut i = self.scanned;
        while let Some(&b) = self.pending.get(i) {
            let ending = match b {
                b'\n' => 1,
                b'\r' => match self.pending.get(i + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    // A CR last in the buffer: an LF may follow in the next chunk.
                    None => break,
                },
                _ => {
                    i += 1;
                    continue;
                }
            };
            let blank = i == self.line_start;
            i += ending;
            self.line_start = i;
            if blank {
                events.push(Event {
                    raw: self
                        .pending
                        .get(event_start..i)
                        .unwrap_or_default()
                        .to_vec(),
                });
                event_start = i;
            }
        }
        self.pending.drain(..event_start);
        self.line_start -= event_start;
        self.scanned = i - event_start;
        events
    }

    /// What is left when the stream ends: an unfinished event, if any.
    pub fn finish(self) -> Option<Event> {
        (!self.pending.is_empty()).then_some(Event { raw: self.pending })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] = b"event: message\r\nid: 1\r\ndata: {\"a\":1}\r\n\r\n: comment\n\ndata: x\ndata: y\n\nretry: 5\r\rdata: z\r\n\r\ndata: tail";

    fn all(chunks: &[&[u8]]) -> (Vec<Event>, Option<Event>) {
        let mut s = Splitter::default();
        let mut events = Vec::new();
        for c in chunks {
            events.extend(s.push(c));
        }
        (events, s.finish())
    }

    #[test]
    fn events_and_their_data() {
        let (events, rest) = all(&[STREAM]);
        let raws: Vec<&[u8]> = events.iter().map(|e| e.raw.as_slice()).collect();
        assert_eq!(
            raws,
            [
                &b"event: message\r\nid: 1\r\ndata: {\"a\":1}\r\n\r\n"[..],
                b": comment\n\n",
                b"data: x\ndata: y\n\n",
                b"retry: 5\r\r",
                b"data: z\r\n\r\n",
            ]
        );
        let data: Vec<Option<String>> = events.iter().map(Event::data).collect();
        assert_eq!(
            data,
            [
                Some("{\"a\":1}".into()),
                None,
                Some("x\ny".into()),
                None,
                Some("z".into())
            ]
        );
        assert_eq!(rest.unwrap().raw, b"data: tail");
        assert_eq!(
            Event {
                raw: b"data:no-space\n\n".to_vec()
            }
            .data()
            .as_deref(),
            Some("no-space")
        );
    }

    #[test]
    fn split_at_any_byte_gives_the_same_events() {
        let whole = all(&[STREAM]);
        for cut in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(cut);
            assert_eq!(all(&[a, b]), whole, "cut at {cut}");
        }
        for cut in 0..STREAM.len() {
            for cut2 in cut..STREAM.len() {
                let parts = [&STREAM[..cut], &STREAM[cut..cut2], &STREAM[cut2..]];
                assert_eq!(all(&parts), whole, "cuts at {cut}, {cut2}");
            }
        }
        let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
        assert_eq!(all(&bytes), whole, "one byte at a time");
    }

    #[test]
    fn replacing_data_keeps_the_other_fields() {
        let e = Event {
            raw: b"event: message\r\nid: 7\r\ndata: {\"old\":\r\ndata: 1}\r\n\r\n".to_vec(),
        };
        assert_eq!(
            e.with_data("{\"new\":2}"),
            b"event: message\nid: 7\ndata: {\"new\":2}\n\n"
        );
    }
}
