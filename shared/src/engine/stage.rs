//! The stage interface: what a policy answers at each event of a request.

use std::time::Duration;

use super::exchange::{DecisionSet, Exchange};
use super::host::Host;

/// A local reply: status, headers and body, ready to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// The body (empty for none).
    pub body: Vec<u8>,
}

/// A request a stage refuses: the reply, and what `palisade.denial` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The stage that refused (`waf`, `jwt`, ...): `palisade.denial`'s `filter`.
    pub filter: &'static str,
    /// A short machine-readable reason, such as `token_expired`.
    pub reason: String,
    /// The reply to send.
    pub reply: Reply,
}

impl Refusal {
    /// 503 with `Retry-After: 5`: the stage cannot decide now (closed).
    pub fn unavailable(filter: &'static str, reason: &str) -> Self {
        Refusal {
            filter,
            reason: reason.to_string(),
            reply: Reply {
                status: 503,
                headers: vec![("retry-after".into(), "5".into())],
                body: Vec::new(),
            },
        }
    }
}

/// What a stage answers to the request headers (or, after waiting, when
/// woken).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing to object to: the next stage runs.
    Continue,
    /// The stage decides on the body: the next stages run now, the body is
    /// held (never reaching the upstream) until it has all arrived (or
    /// `max_bytes` plus one byte, so the stage sees that the limit was
    /// passed), and then handed to [`Stage::on_request_body`].
    ReadBody {
        /// The most the stage wants to see.
        max_bytes: usize,
    },
    /// Refuse the request; no later stage runs.
    Refuse(Refusal),
    /// Answer the request locally, as a service and not a refusal (a
    /// metadata document the stage serves, say): no later stage runs, and no
    /// `palisade.denial` is published.
    Respond(Reply),
    /// Hold the request until the stage's root side wakes it
    /// ([`Wake::Waiters`] from a root event) or until `deadline_ms` (host
    /// wall clock) passes; then [`Stage::on_resume`] answers for it. Only
    /// in a module that ticks ([`Needs::tick`]): the ticks enforce the
    /// deadline.
    Wait {
        /// When waiting ends regardless, ms since the epoch.
        deadline_ms: i64,
    },
    /// Hold the request until the answer to the call `token` (HTTP or gRPC,
    /// made while deciding it) arrives: [`Stage::on_call_response`] answers
    /// for it then. Envoy answers every call (a failure or its timeout
    /// included); `deadline_ms`, enforced when the module ticks, refuses
    /// the request (503) if the answer is later still.
    AwaitCall {
        /// The call's token.
        token: u32,
        /// When waiting ends regardless, ms since the epoch.
        deadline_ms: i64,
    },
}

/// What a stage answers to the request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyStep {
    /// The body may go on.
    Continue,
    /// The body goes on changed to this. The stage removed `content-length`
    /// when it answered the headers (the upstream request's headers are on
    /// their way before the body is decided).
    Replace(Vec<u8>),
    /// Refuse the request.
    Refuse(Refusal),
}

/// What a stage answers to the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseStep {
    /// Nothing more to see of the response.
    Continue,
    /// Hold the response body until it has all arrived (or `max_bytes`
    /// plus one byte), then hand it to [`Stage::on_response_body`], which
    /// may replace it.
    ReadBody {
        /// The most the stage wants to see.
        max_bytes: usize,
    },
    /// Show each chunk of the response body to [`Stage::on_response_body`]
    /// as it passes, without holding it (a stream).
    ObserveBody,
}

impl ResponseStep {
    /// What two stages' answers ask of the engine together: holding wins
    /// over observing (an observer then sees the whole body at once).
    pub fn and(self, other: ResponseStep) -> ResponseStep {
        use ResponseStep::*;
        match (self, other) {
            (ReadBody { max_bytes: a }, ReadBody { max_bytes: b }) => ReadBody {
                max_bytes: a.max(b),
            },
            (r @ ReadBody { .. }, _) | (_, r @ ReadBody { .. }) => r,
            (ObserveBody, _) | (_, ObserveBody) => ObserveBody,
            (Continue, Continue) => Continue,
        }
    }
}

/// What a stage answers to (a chunk of) the response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseBodyStep {
    /// The body goes on as it is.
    Continue,
    /// The body goes on changed to this (only for a body the stage held
    /// with [`ResponseStep::ReadBody`]; the stage removed `content-length`
    /// when it answered the response headers).
    Replace(Vec<u8>),
}

/// Whether a root event (a tick, a call's response) changed something the
/// waiting requests wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Nothing changed for them.
    No,
    /// Ask every waiting request again.
    Waiters,
}

impl Wake {
    /// `Waiters` when either says so.
    pub fn or(self, other: Wake) -> Wake {
        if self == Wake::Waiters || other == Wake::Waiters {
            Wake::Waiters
        } else {
            Wake::No
        }
    }
}

/// The response to an HTTP or gRPC call a stage dispatched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallResponse {
    /// `:status` of an HTTP call, when it got an answer.
    pub status: Option<String>,
    /// The gRPC status code of a gRPC call (0 is OK).
    pub grpc_status: Option<u32>,
    /// The body's size; the stage reads as much of it as it wants with
    /// `host.body(Body::CallResponse, ..)` (`Body::GrpcResponse` for gRPC).
    pub body_size: usize,
}

/// What a stage needs the engine to read or arrange for it, worked out once
/// from its configuration. The engine merges the needs of all its stages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Request headers (lower case, pseudo-headers included) to read when
    /// the request starts. Reading one costs a host call that returns data,
    /// about half the cost of reading the whole map: with two or more, the
    /// engine reads the whole map once.
    pub request_headers: Vec<String>,
    /// Whether the stage reads (or may read) any request header.
    pub whole_request_map: bool,
    /// Whether the stage reads every request header when the request ends
    /// (the audit record): the engine reads the map then, unless it
    /// already holds it whole, with the edits stages made since.
    pub whole_request_map_at_log: bool,
    /// Root ticks at this period (or faster, for another stage).
    pub tick: Option<Duration>,
    /// The decisions the stage makes: later stages in the same VM read them
    /// from memory instead of filter state.
    pub provides: DecisionSet,
    /// Whether the stage may read the request body ([`Step::ReadBody`]).
    pub request_body: bool,
}

impl Needs {
    /// Both needs at once.
    pub fn merge(mut self, other: Needs) -> Needs {
        for name in other.request_headers {
            if !self.request_headers.contains(&name) {
                self.request_headers.push(name);
            }
        }
        self.whole_request_map |= other.whole_request_map;
        self.whole_request_map_at_log |= other.whole_request_map_at_log;
        self.tick = match (self.tick, other.tick) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.provides = self.provides.union(other.provides);
        self.request_body |= other.request_body;
        self
    }

    /// Whether the engine reads the whole request map (else the named headers).
    pub fn reads_whole_request_map(&self) -> bool {
        self.whole_request_map || self.request_headers.len() >= 2
    }
}

/// A policy, as the engine runs it. Every method has a default that does
/// nothing, so a stage writes only the events it acts on; each module's
/// `Cargo.toml` declares them (`[package.metadata.palisade]`), and a test
/// checks the declaration against the code.
///
/// Methods take `&self`: one stage value serves every request of a worker,
/// and state that changes (caches, key sets) sits in cells inside it. The
/// engine never calls a stage while another of its calls is running.
pub trait Stage: 'static {
    /// What the stage keeps for one request.
    type Request: Default;

    /// What the engine must read or arrange.
    fn needs(&self) -> Needs;

    /// The request headers have arrived.
    fn on_request_headers(&self, request: &mut Self::Request, cx: &mut Exchange<'_>) -> Step {
        let _ = (request, cx);
        Step::Continue
    }

    /// A request this stage held with [`Step::Wait`] is woken: by the stage
    /// (`timed_out` false) or by its deadline (`timed_out` true, and the
    /// stage must not wait again). A stage that waits must answer here; the
    /// default refuses (503), so a wait never ends open.
    fn on_resume(
        &self,
        request: &mut Self::Request,
        cx: &mut Exchange<'_>,
        timed_out: bool,
    ) -> Step {
        let _ = (request, cx, timed_out);
        Step::Refuse(Refusal::unavailable("palisade", "stage_cannot_resume"))
    }

    /// The body a stage asked for with [`Step::ReadBody`]: all of it, or
    /// its first `max_bytes + 1` bytes.
    fn on_request_body(
        &self,
        request: &mut Self::Request,
        cx: &mut Exchange<'_>,
        body: &[u8],
    ) -> BodyStep {
        let _ = (request, cx, body);
        BodyStep::Continue
    }

    /// The response headers are on their way to the client.
    fn on_response_headers(
        &self,
        request: &mut Self::Request,
        cx: &mut Exchange<'_>,
    ) -> ResponseStep {
        let _ = (request, cx);
        ResponseStep::Continue
    }

    /// The response body a stage asked for at the response headers: all of
    /// it at once (`complete` false when it passed the stage's limit), or,
    /// observed, chunk by chunk (`complete` on the last).
    fn on_response_body(
        &self,
        request: &mut Self::Request,
        cx: &mut Exchange<'_>,
        body: &[u8],
        complete: bool,
    ) -> ResponseBodyStep {
        let _ = (request, cx, body, complete);
        ResponseBodyStep::Continue
    }

    /// The request is over (Envoy's access-log time).
    fn on_log(&self, request: &mut Self::Request, cx: &mut Exchange<'_>) {
        let _ = (request, cx);
    }

    /// The response to a call this stage made while deciding this request:
    /// what to do with the request now. The engine acts on the answer only
    /// when the request waits for this call ([`Step::AwaitCall`]); for a
    /// call the stage did not wait for, it is only news. `None` when the
    /// token is not one of this stage's calls.
    fn on_call_response(
        &self,
        request: &mut Self::Request,
        cx: &mut Exchange<'_>,
        token: u32,
        response: &CallResponse,
    ) -> Option<Step> {
        let _ = (request, cx, token, response);
        None
    }

    /// The root context's timer.
    fn on_tick(&self, host: &dyn Host) -> Wake {
        let _ = host;
        Wake::No
    }

    /// The response to an HTTP call; `None` when the token is not one of
    /// this stage's calls.
    fn on_root_call_response(
        &self,
        token: u32,
        response: &CallResponse,
        host: &dyn Host,
    ) -> Option<Wake> {
        let _ = (token, response, host);
        None
    }
}
