//! The tokens a response reports, from a JSON body or a stream of
//! server-sent events, read chunk by chunk as the response passes.
//!
//! | response | where the usage is |
//! |---|---|
//! | OpenAI JSON (chat, completions, embeddings) | `usage.prompt_tokens`, `usage.completion_tokens` (`total_tokens`) |
//! | OpenAI stream with `stream_options.include_usage` | the last chunk's `usage` (every other chunk has `"usage": null`) |
//! | Responses API JSON / stream | `usage.input_tokens`, `output_tokens`; in a stream, `response.completed`'s `response.usage` |
//! | Anthropic JSON | `usage.input_tokens` (+ `cache_creation_input_tokens`, `cache_read_input_tokens`), `output_tokens` |
//! | Anthropic stream | `message_start`'s `message.usage`, then `message_delta`'s `usage` (cumulative) |
//!
//! Every `usage` object seen is merged field by field, keeping the largest
//! value: the counts a stream reports are cumulative, so the last report
//! is the largest, whatever the order the fields come in.

use serde::Deserialize;

use crate::json::Capture;

/// Tokens one call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Input (prompt) tokens, cached ones included.
    pub input: u64,
    /// Output (completion) tokens.
    pub output: u64,
}

/// One `usage` object, every spelling.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
struct Reported {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    total_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl Reported {
    fn merge(&mut self, other: &Reported) {
        let max = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.prompt_tokens = max(self.prompt_tokens, other.prompt_tokens);
        self.completion_tokens = max(self.completion_tokens, other.completion_tokens);
        self.total_tokens = max(self.total_tokens, other.total_tokens);
        self.input_tokens = max(self.input_tokens, other.input_tokens);
        self.output_tokens = max(self.output_tokens, other.output_tokens);
        self.cache_creation_input_tokens = max(
            self.cache_creation_input_tokens,
            other.cache_creation_input_tokens,
        );
        self.cache_read_input_tokens =
            max(self.cache_read_input_tokens, other.cache_read_input_tokens);
    }

    fn usage(&self) -> Option<Usage> {
        let input = self.prompt_tokens.or_else(|| {
            self.input_tokens.map(|n| {
                // Anthropic counts cache reads and writes beside input_tokens.
                n.saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
                    .saturating_add(self.cache_read_input_tokens.unwrap_or(0))
            })
        });
        let output = self.completion_tokens.or(self.output_tokens).or_else(|| {
            // Embeddings report no output; a total without one is input.
            self.total_tokens
                .map(|total| total.saturating_sub(input.unwrap_or(0)))
        });
        (input.is_some() || output.is_some()).then(|| Usage {
            input: input.unwrap_or(0),
            output: output.unwrap_or(0),
        })
    }
}

/// Where a server-sent event line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Line {
    /// At the start of a line.
    #[default]
    Start,
    /// Reading the field name.
    Field,
    /// In a `data` field's value (`space`: a leading space may still come).
    Data { space: bool },
    /// In an `event` field's value.
    Event { space: bool },
    /// In a line that does not matter (another field, a comment).
    Ignored,
}

/// Reads the usage of a response as its body passes.
#[derive(Debug, Default)]
pub struct UsageReader {
    event_stream: bool,
    capture: Capture,
    reported: Option<Reported>,
    line: Line,
    field: Vec<u8>,
    after_cr: bool,
    /// Whether the current event has data.
    event_has_data: bool,
    /// The current event's type (its `event` field), up to
    /// [`EVENT_NAME_BYTES`].
    event_name: Vec<u8>,
    /// The current event's data, up to [`DONE`]'s length plus one.
    data_head: Vec<u8>,
    /// Whether the stream's last event has passed.
    ended: bool,
}

/// OpenAI's last event of a chat or text completion stream.
const DONE: &[u8] = b"[DONE]";

/// The event types that end a stream: Anthropic's Messages API and the
/// Responses API (which sends no `[DONE]`).
const LAST_EVENTS: [&[u8]; 4] = [
    b"message_stop",
    b"response.completed",
    b"response.incomplete",
    b"response.failed",
];

/// Longer event types are none of [`LAST_EVENTS`].
const EVENT_NAME_BYTES: usize = 20;

impl UsageReader {
    /// A reader for a JSON body, or (`event_stream`) for
    /// `text/event-stream`.
    pub fn new(event_stream: bool) -> Self {
        UsageReader {
            event_stream,
            ..UsageReader::default()
        }
    }

    /// The next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.event_stream {
            for &b in chunk {
                self.event_byte(b);
            }
        } else {
            self.capture.feed(chunk);
        }
        self.collect();
    }

    fn collect(&mut self) {
        for raw in self.capture.take_usages() {
            if let Ok(reported) = serde_json::from_slice::<Reported>(&raw) {
                self.reported
                    .get_or_insert_with(Reported::default)
                    .merge(&reported);
            }
        }
    }

    fn event_byte(&mut self, b: u8) {
        if std::mem::take(&mut self.after_cr) && b == b'\n' {
            return;
        }
        if b == b'\r' || b == b'\n' {
            self.after_cr = b == b'\r';
            match self.line {
                // An empty line ends the event: the next starts a new document.
                Line::Start => {
                    let name = std::mem::take(&mut self.event_name);
                    let data = std::mem::take(&mut self.data_head);
                    if std::mem::take(&mut self.event_has_data) {
                        self.capture.reset();
                        // Each data line ends with a newline.
                        let data = data.strip_suffix(b"\n").unwrap_or(&data);
                        if data == DONE || LAST_EVENTS.contains(&name.as_slice()) {
                            self.ended = true;
                        }
                    }
                }
                // Data lines of one event are joined by a newline.
                Line::Data { .. } => {
                    self.capture.feed(b"\n");
                    self.keep_data(b'\n');
                }
                Line::Field | Line::Event { .. } | Line::Ignored => {}
            }
            self.line = Line::Start;
            self.field.clear();
            return;
        }
        match self.line {
            Line::Start | Line::Field => {
                if b == b':' {
                    self.line = if self.field == b"data" {
                        self.event_has_data = true;
                        Line::Data { space: true }
                    } else if self.field == b"event" {
                        self.event_name.clear();
                        Line::Event { space: true }
                    } else {
                        Line::Ignored
                    };
                } else if self.field.len() < 8 {
                    self.field.push(b);
                    self.line = Line::Field;
                } else {
                    self.line = Line::Ignored;
                }
            }
            Line::Data { space: true } if b == b' ' => self.line = Line::Data { space: false },
            Line::Data { .. } => {
                self.line = Line::Data { space: false };
                self.capture.feed(&[b]);
                self.keep_data(b);
            }
            Line::Event { space: true } if b == b' ' => self.line = Line::Event { space: false },
            Line::Event { .. } => {
                self.line = Line::Event { space: false };
                if self.event_name.len() <= EVENT_NAME_BYTES {
                    self.event_name.push(b);
                }
            }
            Line::Ignored => {}
        }
    }

    /// Keeps the start of the event's data, enough to tell `[DONE]`.
    fn keep_data(&mut self, b: u8) {
        if self.data_head.len() <= DONE.len() {
            self.data_head.push(b);
        }
    }

    /// Whether the stream's last event has passed (`data: [DONE]`,
    /// `message_stop`, `response.completed`...): its usage is final, even
    /// if the client hangs up before the body's end reaches the proxy.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The usage reported so far, `None` when the response reported none.
    pub fn usage(&self) -> Option<Usage> {
        self.reported.as_ref().and_then(Reported::usage)
    }

    /// The model the response named.
    pub fn model(&self) -> Option<&str> {
        self.capture.model()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Realistic bodies, as the providers send them.
    const OPENAI_JSON: &str = r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_fc9f1d7035"}"#;

    const OPENAI_STREAM: &str = concat!(
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi \\\"usage\\\": {}\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":7,\"total_tokens\":19}}\n\n",
        "data: [DONE]\n\n",
    );

    const ANTHROPIC_JSON: &str = r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hello!"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":100,"cache_read_input_tokens":50,"output_tokens":6}}"#;

    const ANTHROPIC_STREAM: &str = concat!(
        "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\r\n\r\n",
        "event: content_block_start\r\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\r\n\r\n",
        "event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\n",
        "event: content_block_delta\r\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\r\n\r\n",
        "event: content_block_stop\r\ndata: {\"type\":\"content_block_stop\",\"index\":0}\r\n\r\n",
        "event: message_delta\r\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\r\n\r\n",
        "event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n",
    );

    const RESPONSES_STREAM: &str = concat!(
        "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"gpt-4.1\",\"output\":[],\"usage\":null}}\n\n",
        "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}\n\n",
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"gpt-4.1\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi\"}]}],\"usage\":{\"input_tokens\":36,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":87,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":123}}}\n\n",
    );

    const EMBEDDINGS_JSON: &str = r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.0023064255,-0.009327292,-0.0028842222]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}"#;

    const STREAM_WITHOUT_USAGE: &str = concat!(
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n",
    );

    fn read(body: &str, event_stream: bool, chunks: &[usize]) -> (Option<Usage>, Option<String>) {
        let mut r = UsageReader::new(event_stream);
        let bytes = body.as_bytes();
        let mut at = 0;
        for &cut in chunks.iter().chain(std::iter::once(&bytes.len())) {
            let cut = cut.clamp(at, bytes.len());
            r.feed(&bytes[at..cut]);
            at = cut;
        }
        (r.usage(), r.model().map(str::to_string))
    }

    fn usage(input: u64, output: u64) -> Option<Usage> {
        Some(Usage { input, output })
    }

    #[test]
    fn every_response_shape() {
        let cases = [
            (OPENAI_JSON, false, usage(19, 10), "gpt-4o-2024-08-06"),
            (OPENAI_STREAM, true, usage(12, 7), "gpt-4o-mini"),
            (ANTHROPIC_JSON, false, usage(162, 6), "claude-sonnet-4-5"),
            (ANTHROPIC_STREAM, true, usage(25, 15), "claude-sonnet-4-5"),
            (RESPONSES_STREAM, true, usage(36, 87), "gpt-4.1"),
            (
                EMBEDDINGS_JSON,
                false,
                usage(8, 0),
                "text-embedding-3-small",
            ),
            (STREAM_WITHOUT_USAGE, true, None, "m"),
        ];
        for (body, sse, expected, model) in cases {
            let (got, got_model) = read(body, sse, &[]);
            assert_eq!(got, expected, "{body}");
            assert_eq!(got_model.as_deref(), Some(model));
        }
    }

    #[test]
    fn streams_split_at_every_byte_read_the_same() {
        for (body, sse) in [
            (OPENAI_STREAM, true),
            (ANTHROPIC_STREAM, true),
            (RESPONSES_STREAM, true),
            (OPENAI_JSON, false),
            (ANTHROPIC_JSON, false),
        ] {
            let whole = read(body, sse, &[]);
            assert!(whole.0.is_some());
            for cut in 0..=body.len() {
                assert_eq!(read(body, sse, &[cut]), whole, "cut at {cut}");
            }
            // And one byte at a time.
            let every: Vec<usize> = (0..body.len()).collect();
            assert_eq!(read(body, sse, &every), whole);
        }
    }

    #[test]
    fn the_last_event_ends_a_stream_wherever_the_body_is_cut() {
        for body in [OPENAI_STREAM, ANTHROPIC_STREAM, RESPONSES_STREAM] {
            let bytes = body.as_bytes();
            // Cut anywhere before the last event's data: not over yet.
            let last_data = body.rfind("data:").unwrap_or(0);
            for cut in 0..=last_data {
                let mut r = UsageReader::new(true);
                r.feed(&bytes[..cut]);
                assert!(!r.ended(), "ended at {cut}: {body}");
                r.feed(&bytes[cut..]);
                assert!(r.ended(), "{body}");
            }
        }
        let cases = [
            ("data: [DONE]\n\n", true),
            ("data:[DONE]\r\n\r\n", true),
            ("event: message_stop\ndata: {}\n\n", true),
            ("event:response.failed\ndata: {}\n\n", true),
            // No data: not an event. Another type, or more than `[DONE]`.
            ("event: message_stop\n\n", false),
            ("event: message_stop_and_more\ndata: {}\n\n", false),
            ("event: message_start\ndata: [DONE]!\n\n", false),
            ("data: [DONE]\n", false),
        ];
        for (body, ended) in cases {
            let mut r = UsageReader::new(true);
            r.feed(body.as_bytes());
            assert_eq!(r.ended(), ended, "{body:?}");
        }
        let mut json = UsageReader::new(false);
        json.feed(OPENAI_JSON.as_bytes());
        assert!(!json.ended(), "a JSON body ends with the response");
    }

    #[test]
    fn event_lines_in_every_layout() {
        // LF, CR and CRLF line ends; `data:` with and without its space; a
        // comment; one event's JSON over two data lines.
        let body = ": keep-alive\rdata:{\"usage\":\r\ndata: {\"prompt_tokens\":3,\n\ndata: \"completion_tokens\":4}}\n\n";
        assert_eq!(
            read(body, true, &[]).0,
            None,
            "an event's data is one document"
        );
        let body = ": keep-alive\rdata:{\"usage\":\r\ndata: {\"prompt_tokens\":3,\r\ndata: \"completion_tokens\":4}}\r\r";
        assert_eq!(read(body, true, &[]).0, usage(3, 4));
    }

    #[test]
    fn a_truncated_stream_reports_what_it_saw() {
        let cut = ANTHROPIC_STREAM.find("event: message_delta").unwrap();
        assert_eq!(read(&ANTHROPIC_STREAM[..cut], true, &[]).0, usage(25, 1));
    }
}
