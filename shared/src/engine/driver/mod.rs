//! The engine: drives one stage (usually a [`super::Then`] chain of them)
//! through a request's events. It reads the request head once, holds the
//! body when a stage asks for it, parks requests that wait and wakes them
//! ([`waiting`]), routes timer ticks and call responses, sends replies and
//! publishes `palisade.denial`. It decides nothing.
//!
//! Written against [`Host`], so every scenario runs natively against the
//! fake host; [`super::wasm`] feeds it proxy-wasm's events.

mod response;
mod waiting;

use std::cell::RefCell;
use std::collections::HashMap;

use crate::contract::{self, Denial};
use crate::problem::{self, Problem};

use super::exchange::{
    publish_json, Attributes, Decisions, Exchange, MapAccess, RequestHead, ResponseHead,
};
use super::host::{log, Body, Host, LogLevel};
use super::stage::{BodyStep, Needs, Refusal, Reply, Stage, Step};

#[cfg(feature = "proxy-wasm")]
pub(super) use waiting::call_status;
pub use waiting::Waiting;

/// What the proxy should do with the stream after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Go on to the next filter.
    Continue,
    /// Stop here (a reply was sent, the body is being held, or the request
    /// waits).
    Pause,
}

/// The request body's state for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    /// No stage asked for it.
    NotWanted,
    /// A stage asked for this many bytes; held until it has arrived.
    Wanted(usize),
    /// Handed to the stages.
    Done,
}

/// Everything the engine keeps for one request.
pub struct Flow<R> {
    request: R,
    head: RequestHead,
    response: ResponseHead,
    attributes: Attributes,
    decisions: Decisions,
    body: BodyState,
    response_body: response::ResponseBodyState,
    end_of_stream: bool,
    waiting: Waiting,
}

impl<R: Default> Flow<R> {
    fn new(head: RequestHead, decisions: Decisions, end_of_stream: bool) -> Self {
        Flow {
            request: R::default(),
            head,
            response: ResponseHead::default(),
            attributes: Attributes::default(),
            decisions,
            body: BodyState::NotWanted,
            response_body: response::ResponseBodyState::NotWanted,
            end_of_stream,
            waiting: Waiting::No,
        }
    }
}

impl<R> Flow<R> {
    /// The stage's state and the exchange it acts through, with what this
    /// event may do with each header map.
    fn split<'a>(
        &'a mut self,
        host: &'a dyn Host,
        request_map: MapAccess,
        response_map: MapAccess,
    ) -> (&'a mut R, Exchange<'a>) {
        self.head.set_access(request_map);
        self.response.set_access(response_map);
        (
            &mut self.request,
            Exchange {
                host,
                request: &mut self.head,
                response: &mut self.response,
                attributes: &mut self.attributes,
                decisions: &mut self.decisions,
                end_of_stream: self.end_of_stream,
                now_ms: std::cell::Cell::new(None),
            },
        )
    }

    /// The decisions so far (for tests and the glue's logs).
    pub fn decisions(&self) -> &Decisions {
        &self.decisions
    }
}

/// Where the HTTP context keeps its request's flow between events.
pub type FlowSlot<R> = Option<Flow<R>>;

/// A stage, ready to serve requests.
pub struct Engine<S: Stage> {
    stage: S,
    needs: Needs,
    /// The name in engine log lines.
    name: &'static str,
    root_context_id: u32,
    /// Requests that wait, and those resumed from the root context until
    /// their HTTP context takes them back.
    parked: RefCell<HashMap<u32, Flow<S::Request>>>,
    /// The deadlines of the requests that wait.
    deadlines: RefCell<Vec<(u32, i64)>>,
    /// Calls requests wait for, by token: their answers may come to the
    /// root context (a call made while resuming a request there).
    call_owners: RefCell<HashMap<u32, u32>>,
}

/// What became of a header step.
enum Applied {
    /// The stream goes on, or stops (a reply was sent).
    Go(Action),
    /// The request waits.
    Park(Waiting, i64),
}

impl<S: Stage> Engine<S> {
    /// Sets up `stage` for the root context `root_context_id`: asks the host
    /// for the ticks it needs.
    pub fn new(
        stage: S,
        name: &'static str,
        root_context_id: u32,
        host: &dyn Host,
    ) -> Result<Self, String> {
        let needs = stage.needs();
        if let Some(period) = needs.tick {
            host.set_tick_period(period)
                .map_err(|status| format!("cannot set the tick period: {status:?}"))?;
        }
        Ok(Engine {
            stage,
            needs,
            name,
            root_context_id,
            parked: RefCell::new(HashMap::new()),
            deadlines: RefCell::new(Vec::new()),
            call_owners: RefCell::new(HashMap::new()),
        })
    }

    /// The stage.
    pub fn stage(&self) -> &S {
        &self.stage
    }

    /// What the engine reads and arranges for its stages.
    pub fn needs(&self) -> &Needs {
        &self.needs
    }

    fn new_flow(&self, host: &dyn Host, end_of_stream: bool) -> Flow<S::Request> {
        let head = RequestHead::read(
            host,
            &self.needs.request_headers,
            self.needs.reads_whole_request_map(),
        );
        Flow::new(head, Decisions::new(self.needs.provides), end_of_stream)
    }

    /// The request headers: every stage's header step, in order.
    pub fn on_request_headers(
        &self,
        context_id: u32,
        slot: &mut FlowSlot<S::Request>,
        end_of_stream: bool,
        host: &dyn Host,
    ) -> Action {
        // Built in its slot: a flow is large, and moving it costs.
        let flow = slot.insert(self.new_flow(host, end_of_stream));
        let step = {
            let (request, mut cx) = flow.split(host, MapAccess::Edit, MapAccess::None);
            self.stage.on_request_headers(request, &mut cx)
        };
        match self.apply(step, flow, host, false) {
            Applied::Go(action) => action,
            Applied::Park(waiting, deadline_ms) => {
                if let Some(flow) = slot.take() {
                    self.park(context_id, flow, waiting, deadline_ms);
                }
                Action::Pause
            }
        }
    }

    /// Applies a header step. `timed_out`: the stage was woken by its
    /// deadline and may not wait again.
    fn apply(
        &self,
        step: Step,
        flow: &mut Flow<S::Request>,
        host: &dyn Host,
        timed_out: bool,
    ) -> Applied {
        match step {
            Step::Continue => Applied::Go(Action::Continue),
            Step::ReadBody { max_bytes } => {
                flow.body = BodyState::Wanted(max_bytes);
                Applied::Go(Action::Continue)
            }
            Step::Refuse(refusal) => {
                self.refuse(flow, &refusal, host);
                Applied::Go(Action::Pause)
            }
            Step::Respond(reply) => {
                self.send(&reply, self.name, host);
                Applied::Go(Action::Pause)
            }
            Step::Wait { deadline_ms } if self.needs.tick.is_some() && !timed_out => {
                Applied::Park(Waiting::ForWake, deadline_ms)
            }
            Step::AwaitCall { token, deadline_ms } if !timed_out => {
                Applied::Park(Waiting::ForCall(token), deadline_ms)
            }
            Step::Wait { .. } | Step::AwaitCall { .. } => {
                // Without ticks nothing would end the wait; after its
                // deadline the stage must decide. Closed: refuse.
                log(
                    host,
                    self.name,
                    LogLevel::Error,
                    "a stage waited where it cannot (no timer, or past its deadline); refusing",
                );
                self.refuse_unavailable(flow, host, "stage_wait_failed");
                Applied::Go(Action::Pause)
            }
        }
    }

    /// A refusal the engine itself makes, with a problem body.
    fn engine_refusal(
        &self,
        flow: &Flow<S::Request>,
        host: &dyn Host,
        status: u16,
        title: &str,
        reason: &str,
        detail: &str,
    ) -> Refusal {
        Refusal {
            filter: "palisade",
            reason: reason.to_string(),
            reply: Reply {
                status,
                headers: vec![("content-type".into(), problem::CONTENT_TYPE.into())],
                body: Problem::new(status, title)
                    .with_detail(detail)
                    .with_request_id(flow.head.request_id(host))
                    .to_json(),
            },
        }
    }

    /// Refuses with 503: the request could not be decided in time.
    fn refuse_unavailable(&self, flow: &mut Flow<S::Request>, host: &dyn Host, reason: &str) {
        let mut refusal = self.engine_refusal(
            flow,
            host,
            503,
            "Service Unavailable",
            reason,
            "the request could not be decided in time",
        );
        refusal
            .reply
            .headers
            .push(("retry-after".into(), "5".into()));
        self.refuse(flow, &refusal, host);
    }

    /// Publishes `palisade.denial` and sends the reply.
    fn refuse(&self, flow: &mut Flow<S::Request>, refusal: &Refusal, host: &dyn Host) {
        let denial = Denial {
            filter: refusal.filter.to_string(),
            status: refusal.reply.status,
            reason: refusal.reason.clone(),
        };
        publish_json(host, refusal.filter, contract::DENIAL, &denial);
        flow.decisions.set_denial(denial);
        self.send(&refusal.reply, refusal.filter, host);
    }

    /// Sends a local reply; a failure is logged under `stage`.
    fn send(&self, reply: &Reply, stage: &str, host: &dyn Host) {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        if let Err(status) = host.send_reply(reply.status, &headers, &reply.body) {
            log(
                host,
                stage,
                LogLevel::Error,
                &format!("could not send the {} reply: {status:?}", reply.status),
            );
        }
    }

    /// A chunk of the request body. Held until all of it (or the most a
    /// stage wants) has arrived, then handed to the stages that asked.
    pub fn on_request_body(
        &self,
        context_id: u32,
        slot: &mut FlowSlot<S::Request>,
        body_size: usize,
        end_of_stream: bool,
        host: &dyn Host,
    ) -> Action {
        if self.is_waiting(context_id, slot) {
            // A request that waits goes nowhere, whatever Envoy delivers.
            return Action::Pause;
        }
        let Some(flow) = self.reclaim(context_id, slot) else {
            return Action::Continue;
        };
        let BodyState::Wanted(max) = flow.body else {
            return Action::Continue;
        };
        if !end_of_stream && body_size <= max {
            return Action::Pause;
        }
        self.hand_body(flow, Some(body_size), max, host)
    }

    /// The request trailers: a body still held (a stream that ends with
    /// trailers has no last body chunk) is handed to the stages now, so
    /// trailers never carry an uninspected body past them.
    pub fn on_request_trailers(
        &self,
        context_id: u32,
        slot: &mut FlowSlot<S::Request>,
        host: &dyn Host,
    ) -> Action {
        if self.is_waiting(context_id, slot) {
            return Action::Pause;
        }
        let Some(flow) = self.reclaim(context_id, slot) else {
            return Action::Continue;
        };
        let BodyState::Wanted(max) = flow.body else {
            return Action::Continue;
        };
        self.hand_body(flow, None, max, host)
    }

    /// Hands the held body (`held` bytes when known) to the stages that
    /// asked, reading at most one byte past `max`.
    fn hand_body(
        &self,
        flow: &mut Flow<S::Request>,
        held: Option<usize>,
        max: usize,
        host: &dyn Host,
    ) -> Action {
        flow.body = BodyState::Done;
        let read = held.unwrap_or(usize::MAX).min(max.saturating_add(1));
        let body = match host.body(Body::Request, read) {
            Ok(body) => body,
            Err(status) => {
                // A body that cannot be inspected does not pass unseen.
                log(
                    host,
                    self.name,
                    LogLevel::Error,
                    &format!("cannot read the request body ({status:?}); refusing"),
                );
                let refusal = self.engine_refusal(
                    flow,
                    host,
                    500,
                    "Internal Server Error",
                    "body_unreadable",
                    "the request body could not be inspected",
                );
                self.refuse(flow, &refusal, host);
                return Action::Pause;
            }
        };
        let step = {
            let (request, mut cx) = flow.split(host, MapAccess::None, MapAccess::None);
            self.stage.on_request_body(request, &mut cx, &body)
        };
        match step {
            BodyStep::Continue => Action::Continue,
            BodyStep::Replace(new_body) => {
                // Only a body the stages saw whole can be rewritten whole.
                let whole = body.len() <= max;
                let replaced = whole
                    && host
                        .replace_body(Body::Request, body.len(), &new_body)
                        .is_ok();
                if replaced {
                    return Action::Continue;
                }
                log(
                    host,
                    self.name,
                    LogLevel::Error,
                    "cannot rewrite the request body (over the limit, or refused by the host); refusing",
                );
                let refusal = self.engine_refusal(
                    flow,
                    host,
                    500,
                    "Internal Server Error",
                    "body_unchangeable",
                    "the request body could not be rewritten",
                );
                self.refuse(flow, &refusal, host);
                Action::Pause
            }
            BodyStep::Refuse(refusal) => {
                self.refuse(flow, &refusal, host);
                Action::Pause
            }
        }
    }

    /// The end of the request (access-log time).
    pub fn on_log(&self, context_id: u32, slot: &mut FlowSlot<S::Request>, host: &dyn Host) {
        if self.reclaim(context_id, slot).is_none() {
            // A stream the request headers never reached (Envoy refused it
            // first): still one record.
            *slot = Some(self.new_flow(host, true));
        }
        if let Some(flow) = slot.as_mut() {
            if self.needs.whole_request_map_at_log {
                flow.head.read_whole(host);
            }
            let (request, mut cx) = flow.split(host, MapAccess::Read, MapAccess::Read);
            self.stage.on_log(request, &mut cx);
        }
    }
}
