//! A test double of a paid LLM provider: an OpenAI-compatible server (chat
//! completions, text completions, embeddings, the Responses API) that also
//! speaks Anthropic's Messages API, on a free loopback port. It stands in
//! for the external service the gateway meters (which costs money per
//! token and cannot run in tests), answering what the real ones answer:
//! the same JSON bodies and server-sent event streams, with the `usage`
//! each provider reports in each shape (OpenAI's final usage chunk only
//! with `stream_options.include_usage`; Anthropic's `message_start` and
//! cumulative `message_delta`; the Responses API's `response.completed`).
//!
//! Its "model" is deterministic so tests know the tokens: the prompt costs
//! one token per whitespace-separated word of its text plus 3 per message,
//! and the reply is `max_tokens` words (any of the API's limit fields; 12
//! without one), one token each, streamed one token per event with a short
//! pause so that streams overlap. A model named `error-500` answers 500.
//! Every call and the usage reported for it are recorded.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::http::{read_body, read_head};

/// Output tokens of a reply when the request sets no limit.
pub const DEFAULT_REPLY_TOKENS: u64 = 12;

/// One call the double answered.
#[derive(Debug, Clone)]
pub struct LlmCall {
    /// The path.
    pub path: String,
    /// The request body as received.
    pub body: Value,
    /// Input tokens reported.
    pub input_tokens: u64,
    /// Output tokens reported.
    pub output_tokens: u64,
    /// Whether the usage was in the response (a stream without
    /// `include_usage` carries none).
    pub usage_reported: bool,
}

/// The double. It stops when dropped.
pub struct LlmUpstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<LlmCall>>>,
}

impl LlmUpstream {
    /// Starts it; `token_pause` is the pause between two streamed tokens.
    pub fn start(token_pause: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the LLM upstream");
        let addr = listener.local_addr().expect("LLM upstream address");
        let stop = Arc::new(AtomicBool::new(false));
        let calls: Arc<Mutex<Vec<LlmCall>>> = Arc::default();
        let (stopping, log) = (stop.clone(), calls.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(conn) = conn {
                    let log = log.clone();
                    thread::spawn(move || serve(conn, &log, token_pause));
                }
            }
        });
        LlmUpstream { addr, stop, calls }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The calls answered so far.
    pub fn calls(&self) -> Vec<LlmCall> {
        self.calls.lock().expect("the call log").clone()
    }
}

impl Drop for LlmUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Words of every text in a request: message contents (strings or text
/// parts), `system`, `prompt`, `input`.
fn prompt_tokens(body: &Value) -> u64 {
    fn words(v: &Value) -> u64 {
        match v {
            Value::String(s) => s.split_whitespace().count() as u64,
            Value::Array(items) => items.iter().map(words).sum(),
            Value::Object(o) => o.get("text").or_else(|| o.get("content")).map_or(0, words),
            _ => 0,
        }
    }
    let messages = body["messages"].as_array().map_or(0, |m| m.len() as u64);
    ["messages", "system", "prompt", "input"]
        .iter()
        .map(|k| words(&body[*k]))
        .sum::<u64>()
        + 3 * messages
}

fn reply_tokens(body: &Value) -> u64 {
    ["max_tokens", "max_completion_tokens", "max_output_tokens"]
        .iter()
        .filter_map(|k| body[*k].as_u64())
        .min()
        .unwrap_or(DEFAULT_REPLY_TOKENS)
        .min(4096)
}

fn serve(conn: TcpStream, log: &Mutex<Vec<LlmCall>>, pause: Duration) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    while let Ok((line, headers)) = read_head(&mut reader) {
        let Ok(raw) = read_body(&mut reader, &headers, false) else {
            return;
        };
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let body: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        let ok = answer(&mut writer, &path, &body, log, pause);
        if ok.is_err() {
            return;
        }
    }
}

fn write_json(w: &mut TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    let text = body.to_string();
    write!(
        w,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
        text.len()
    )?;
    w.flush()
}

/// A stream of server-sent events, one chunk each, with `pause` before
/// each event after the first.
struct Events<'a> {
    w: &'a mut TcpStream,
    pause: Duration,
    started: bool,
}

impl<'a> Events<'a> {
    fn start(w: &'a mut TcpStream, pause: Duration) -> std::io::Result<Self> {
        write!(w, "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")?;
        w.flush()?;
        Ok(Events {
            w,
            pause,
            started: false,
        })
    }

    fn send(&mut self, event: Option<&str>, data: &str) -> std::io::Result<()> {
        if self.started {
            thread::sleep(self.pause);
        }
        self.started = true;
        let text = match event {
            Some(e) => format!("event: {e}\ndata: {data}\n\n"),
            None => format!("data: {data}\n\n"),
        };
        write!(self.w, "{:x}\r\n{text}\r\n", text.len())?;
        self.w.flush()
    }

    fn end(self) -> std::io::Result<()> {
        write!(self.w, "0\r\n\r\n")?;
        self.w.flush()
    }
}

fn answer(
    w: &mut TcpStream,
    path: &str,
    body: &Value,
    log: &Mutex<Vec<LlmCall>>,
    pause: Duration,
) -> std::io::Result<()> {
    let model = body["model"].as_str().unwrap_or("unknown").to_string();
    let stream = body["stream"].as_bool().unwrap_or(false);
    let input = prompt_tokens(body);
    let output = if path.ends_with("/embeddings") {
        0
    } else {
        reply_tokens(body)
    };
    let words: Vec<String> = (1..=output).map(|i| format!("w{i}")).collect();
    let text = words.join(" ");
    let include_usage = body["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let record = |reported: bool| {
        log.lock().expect("the call log").push(LlmCall {
            path: path.to_string(),
            body: body.clone(),
            input_tokens: input,
            output_tokens: output,
            usage_reported: reported,
        });
    };
    if model == "error-500" {
        record(false);
        return write_json(
            w,
            500,
            &json!({"error": {"message": "The server had an error", "type": "server_error", "param": null, "code": null}}),
        );
    }
    let created = 1_767_225_600;
    if path.ends_with("/v1/messages") {
        let usage = json!({"input_tokens": input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": output});
        record(true);
        if !stream {
            return write_json(
                w,
                200,
                &json!({
                    "id": "msg_01Palisade", "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "max_tokens", "stop_sequence": null, "usage": usage,
                }),
            );
        }
        let mut ev = Events::start(w, pause)?;
        ev.send(Some("message_start"), &json!({"type": "message_start", "message": {
            "id": "msg_01Palisade", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": input, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 1}}}).to_string())?;
        ev.send(
            Some("content_block_start"),
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        )?;
        ev.send(Some("ping"), r#"{"type": "ping"}"#)?;
        for (i, word) in words.iter().enumerate() {
            let piece = if i == 0 {
                word.clone()
            } else {
                format!(" {word}")
            };
            ev.send(Some("content_block_delta"), &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}).to_string())?;
        }
        ev.send(
            Some("content_block_stop"),
            r#"{"type":"content_block_stop","index":0}"#,
        )?;
        ev.send(Some("message_delta"), &json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens", "stop_sequence": null}, "usage": {"output_tokens": output}}).to_string())?;
        ev.send(Some("message_stop"), r#"{"type":"message_stop"}"#)?;
        return ev.end();
    }
    let chat_usage = json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}});
    if path.ends_with("/v1/embeddings") {
        record(true);
        let inputs = match &body["input"] {
            Value::Array(items) => items.len(),
            _ => 1,
        };
        let data: Vec<Value> = (0..inputs)
            .map(|i| json!({"object": "embedding", "index": i, "embedding": [0.0023064255, -0.009327292, 0.015797347]}))
            .collect();
        return write_json(
            w,
            200,
            &json!({"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": input, "total_tokens": input}}),
        );
    }
    if path.ends_with("/v1/responses") {
        record(true);
        let usage = json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": input + output});
        let response = |status: &str, output_items: Value, usage: Value| {
            json!({
            "id": "resp_palisade", "object": "response", "created_at": created, "status": status, "model": model,
            "output": output_items, "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "usage": usage})
        };
        let message = json!([{"type": "message", "id": "msg_palisade", "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}]);
        if !stream {
            return write_json(w, 200, &response("completed", message, usage));
        }
        let mut ev = Events::start(w, pause)?;
        ev.send(Some("response.created"), &json!({"type": "response.created", "sequence_number": 0, "response": response("in_progress", json!([]), Value::Null)}).to_string())?;
        for (i, word) in words.iter().enumerate() {
            ev.send(Some("response.output_text.delta"), &json!({"type": "response.output_text.delta", "sequence_number": i + 1,
                "item_id": "msg_palisade", "output_index": 0, "content_index": 0, "delta": format!(" {word}")}).to_string())?;
        }
        ev.send(Some("response.completed"), &json!({"type": "response.completed", "sequence_number": words.len() + 1, "response": response("completed", message, usage)}).to_string())?;
        return ev.end();
    }
    let chat = path.ends_with("/v1/chat/completions");
    record(!stream || include_usage);
    if !stream {
        let choice = if chat {
            json!({"index": 0, "message": {"role": "assistant", "content": text, "refusal": null, "annotations": []}, "logprobs": null, "finish_reason": "length"})
        } else {
            json!({"index": 0, "text": text, "logprobs": null, "finish_reason": "length"})
        };
        return write_json(
            w,
            200,
            &json!({
            "id": "chatcmpl-palisade", "object": if chat { "chat.completion" } else { "text_completion" },
            "created": created, "model": model, "choices": [choice], "usage": chat_usage,
            "service_tier": "default", "system_fingerprint": "fp_palisade"}),
        );
    }
    let object = if chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let usage_field = if include_usage {
        Value::Null
    } else {
        json!("absent")
    };
    let chunk = |choices: Value, usage: &Value| {
        let mut c = json!({"id": "chatcmpl-palisade", "object": object, "created": created, "model": model,
            "system_fingerprint": "fp_palisade", "choices": choices});
        if usage != "absent" {
            c["usage"] = usage.clone();
        }
        c.to_string()
    };
    let delta = |content: Value, finish: Value| {
        if chat {
            json!([{"index": 0, "delta": content, "logprobs": null, "finish_reason": finish}])
        } else {
            json!([{"index": 0, "text": content.get("content").cloned().unwrap_or(json!("")), "logprobs": null, "finish_reason": finish}])
        }
    };
    let mut ev = Events::start(w, pause)?;
    ev.send(
        None,
        &chunk(
            delta(
                json!({"role": "assistant", "content": "", "refusal": null}),
                Value::Null,
            ),
            &usage_field,
        ),
    )?;
    for (i, word) in words.iter().enumerate() {
        let piece = if i == 0 {
            word.clone()
        } else {
            format!(" {word}")
        };
        ev.send(
            None,
            &chunk(delta(json!({"content": piece}), Value::Null), &usage_field),
        )?;
    }
    ev.send(
        None,
        &chunk(delta(json!({}), json!("length")), &usage_field),
    )?;
    if include_usage {
        ev.send(None, &chunk(json!([]), &chat_usage))?;
    }
    ev.send(None, "[DONE]")?;
    ev.end()
}
