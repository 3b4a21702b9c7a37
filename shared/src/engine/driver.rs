//! The engine: drives one stage (usually a [`super::Then`] chain of them)
//! through a request's events. It reads the request head once, holds the
//! body when a stage asks for it, parks requests that wait and wakes them,
//! routes timer ticks and call responses, sends refusals and publishes
//! `palisade.denial`. It decides nothing.
//!
//! Written against [`Host`], so every scenario runs natively against the
//! fake host; [`super::wasm`] feeds it proxy-wasm's events.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::contract::{self, Denial};
use crate::problem::{self, Problem};

use super::exchange::{publish_json, Attributes, Decisions, Exchange, RequestHead, ResponseHead};
use super::host::{log, Body, HeaderMap, Host, LogLevel};
use super::stage::{
    BodyStep, CallResponse, Needs, Refusal, Reply, ResponseBodyStep, ResponseStep, Stage, Step,
    Wake,
};

/// What the proxy should do with the stream after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Go on to the next filter.
    Continue,
    /// Stop here (a reply was sent, the body is being held, or the request
    /// waits).
    Pause,
}

/// The body's state for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    /// No stage asked for it.
    NotWanted,
    /// A stage asked for this many bytes; held until it has arrived.
    Wanted(usize),
    /// Handed to the stages.
    Done,
}

/// What the stages asked of the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseBodyState {
    /// Nothing.
    NotWanted,
    /// Held until complete (or this many bytes), then handed over once.
    Wanted(usize),
    /// Each chunk shown as it passes.
    Observed,
    /// Handed over.
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
    response_body: ResponseBodyState,
    end_of_stream: bool,
    /// Parked by a wait: its request is paused until resumed.
    paused: bool,
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
            response_body: ResponseBodyState::NotWanted,
            end_of_stream,
            paused: false,
        }
    }
}

impl<R> Flow<R> {
    /// The stage's state and the exchange it acts through.
    fn split<'a>(&'a mut self, host: &'a dyn Host) -> (&'a mut R, Exchange<'a>) {
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

struct Waiter {
    context_id: u32,
    deadline_ms: i64,
}

/// A stage, ready to serve requests.
pub struct Engine<S: Stage> {
    stage: S,
    needs: Needs,
    /// The name in engine log lines and engine-made refusals.
    name: &'static str,
    root_context_id: u32,
    waiters: RefCell<Vec<Waiter>>,
    /// Requests between a wait and their next event: the root context
    /// resumes them, and their HTTP context takes them back.
    parked: RefCell<HashMap<u32, Flow<S::Request>>>,
}

/// Where an event found the request's flow.
pub type Slot<R> = Option<Flow<R>>;

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
            waiters: RefCell::new(Vec::new()),
            parked: RefCell::new(HashMap::new()),
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

    /// The flow of `context_id`: in its slot, or parked after a wait.
    fn reclaim<'s>(
        &self,
        context_id: u32,
        slot: &'s mut Slot<S::Request>,
    ) -> Option<&'s mut Flow<S::Request>> {
        if slot.is_none() {
            *slot = self.parked.borrow_mut().remove(&context_id);
        }
        slot.as_mut()
    }

    /// The request headers: every stage's header step, in order.
    pub fn on_request_headers(
        &self,
        context_id: u32,
        slot: &mut Slot<S::Request>,
        end_of_stream: bool,
        host: &dyn Host,
    ) -> Action {
        // Built in its slot: a flow is large, and moving it costs.
        let flow = slot.insert(self.new_flow(host, end_of_stream));
        let step = {
            let (request, mut cx) = flow.split(host);
            self.stage.on_request_headers(request, &mut cx)
        };
        match self.apply(step, flow, host, false) {
            Applied::Go(action) => action,
            Applied::Wait(deadline_ms) => {
                self.waiters.borrow_mut().push(Waiter {
                    context_id,
                    deadline_ms,
                });
                if let Some(mut flow) = slot.take() {
                    flow.paused = true;
                    self.parked.borrow_mut().insert(context_id, flow);
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
                Applied::Wait(deadline_ms)
            }
            Step::Wait { .. } => {
                // Without ticks nothing would end the wait; after its
                // deadline the stage must decide. Closed: refuse.
                log(
                    host,
                    self.name,
                    LogLevel::Error,
                    "a stage waited where it cannot (no timer, or past its deadline); refusing",
                );
                let refusal = self.engine_refusal(
                    flow,
                    host,
                    503,
                    "Service Unavailable",
                    "stage_wait_failed",
                    "the request could not be decided in time",
                );
                self.refuse(flow, &refusal, host);
                Applied::Go(Action::Pause)
            }
        }
    }

    /// A refusal the engine itself makes (the body cannot be read, a wait
    /// that cannot end), with a problem body.
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
        slot: &mut Slot<S::Request>,
        body_size: usize,
        end_of_stream: bool,
        host: &dyn Host,
    ) -> Action {
        let Some(flow) = self.reclaim(context_id, slot) else {
            return Action::Continue;
        };
        let BodyState::Wanted(max) = flow.body else {
            return Action::Continue;
        };
        if !end_of_stream && body_size <= max {
            return Action::Pause;
        }
        self.hand_body(flow, body_size, max, host)
    }

    /// The request trailers: a body still held (a stream that ends with
    /// trailers has no last body chunk) is handed to the stages now, so
    /// trailers never carry an uninspected body past them.
    pub fn on_request_trailers(
        &self,
        context_id: u32,
        slot: &mut Slot<S::Request>,
        host: &dyn Host,
    ) -> Action {
        let Some(flow) = self.reclaim(context_id, slot) else {
            return Action::Continue;
        };
        let BodyState::Wanted(max) = flow.body else {
            return Action::Continue;
        };
        self.hand_body(flow, usize::MAX, max, host)
    }

    /// Hands the held body (`held` bytes, as far as known) to the stages
    /// that asked, reading at most one byte past `max`.
    fn hand_body(
        &self,
        flow: &mut Flow<S::Request>,
        held: usize,
        max: usize,
        host: &dyn Host,
    ) -> Action {
        flow.body = BodyState::Done;
        let body = match host.body(Body::Request, held.min(max.saturating_add(1))) {
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
            let (request, mut cx) = flow.split(host);
            self.stage.on_request_body(request, &mut cx, &body)
        };
        match step {
            BodyStep::Continue => Action::Continue,
            BodyStep::Replace(new_body) => {
                let held = if held == usize::MAX { body.len() } else { held };
                if let Err(status) = host.replace_body(Body::Request, held, &new_body) {
                    // The body cannot become what the stage decided: it
                    // does not go on as it was.
                    log(
                        host,
                        self.name,
                        LogLevel::Error,
                        &format!("cannot replace the request body ({status:?}); refusing"),
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
                    return Action::Pause;
                }
                Action::Continue
            }
            BodyStep::Refuse(refusal) => {
                self.refuse(flow, &refusal, host);
                Action::Pause
            }
        }
    }

    /// The response headers.
    pub fn on_response_headers(
        &self,
        context_id: u32,
        slot: &mut Slot<S::Request>,
        host: &dyn Host,
    ) -> Action {
        if let Some(flow) = self.reclaim(context_id, slot) {
            let step = {
                let (request, mut cx) = flow.split(host);
                self.stage.on_response_headers(request, &mut cx)
            };
            flow.response_body = match step {
                ResponseStep::Continue => ResponseBodyState::NotWanted,
                ResponseStep::ReadBody { max_bytes } => ResponseBodyState::Wanted(max_bytes),
                ResponseStep::ObserveBody => ResponseBodyState::Observed,
            };
        }
        Action::Continue
    }

    /// A chunk of the response body: held until complete for stages that
    /// read it whole, shown as it passes to stages that observe it.
    pub fn on_response_body(
        &self,
        context_id: u32,
        slot: &mut Slot<S::Request>,
        body_size: usize,
        end_of_stream: bool,
        host: &dyn Host,
    ) -> Action {
        let Some(flow) = self.reclaim(context_id, slot) else {
            return Action::Continue;
        };
        match flow.response_body {
            ResponseBodyState::Wanted(max) if !end_of_stream && body_size <= max => Action::Pause,
            ResponseBodyState::Wanted(max) => {
                flow.response_body = ResponseBodyState::Done;
                let complete = end_of_stream && body_size <= max;
                self.hand_response_body(flow, body_size, max, complete, host);
                Action::Continue
            }
            ResponseBodyState::Observed => {
                let chunk = host.body(Body::Response, body_size).unwrap_or_default();
                let (request, mut cx) = flow.split(host);
                // An observer sees; it does not change a body it did not hold.
                let _ = self
                    .stage
                    .on_response_body(request, &mut cx, &chunk, end_of_stream);
                Action::Continue
            }
            ResponseBodyState::NotWanted | ResponseBodyState::Done => Action::Continue,
        }
    }

    /// The response trailers: a response body still held is handed over.
    pub fn on_response_trailers(
        &self,
        context_id: u32,
        slot: &mut Slot<S::Request>,
        host: &dyn Host,
    ) -> Action {
        let Some(flow) = self.reclaim(context_id, slot) else {
            return Action::Continue;
        };
        if let ResponseBodyState::Wanted(max) = flow.response_body {
            flow.response_body = ResponseBodyState::Done;
            self.hand_response_body(flow, usize::MAX, max, true, host);
        }
        Action::Continue
    }

    fn hand_response_body(
        &self,
        flow: &mut Flow<S::Request>,
        held: usize,
        max: usize,
        complete: bool,
        host: &dyn Host,
    ) {
        let body = host
            .body(Body::Response, held.min(max.saturating_add(1)))
            .unwrap_or_default();
        let step = {
            let (request, mut cx) = flow.split(host);
            self.stage
                .on_response_body(request, &mut cx, &body, complete)
        };
        if let ResponseBodyStep::Replace(new_body) = step {
            let held = if held == usize::MAX { body.len() } else { held };
            if let Err(status) = host.replace_body(Body::Response, held, &new_body) {
                log(
                    host,
                    self.name,
                    LogLevel::Error,
                    &format!("cannot replace the response body ({status:?})"),
                );
            }
        }
    }

    /// The response to a call a stage made while deciding this request.
    pub fn on_request_call_response(
        &self,
        context_id: u32,
        slot: &mut Slot<S::Request>,
        token: u32,
        response: &CallResponse,
        host: &dyn Host,
    ) {
        let Some(flow) = self.reclaim(context_id, slot) else {
            return;
        };
        let step = {
            let (request, mut cx) = flow.split(host);
            self.stage
                .on_call_response(request, &mut cx, token, response)
        };
        let Some(step) = step else {
            log(
                host,
                self.name,
                LogLevel::Warn,
                &format!("response to an unknown call (token {token})"),
            );
            return;
        };
        let was_paused = std::mem::replace(&mut flow.paused, false);
        if let Ok(mut waiters) = self.waiters.try_borrow_mut() {
            waiters.retain(|w| w.context_id != context_id);
        }
        match self.apply(step, flow, host, false) {
            Applied::Go(Action::Continue) if was_paused => {
                if let Err(status) = host.resume_request() {
                    log(
                        host,
                        self.name,
                        LogLevel::Warn,
                        &format!("cannot resume a request: {status:?}"),
                    );
                }
            }
            Applied::Go(_) => {}
            Applied::Wait(deadline_ms) => {
                self.waiters.borrow_mut().push(Waiter {
                    context_id,
                    deadline_ms,
                });
                if let Some(mut flow) = slot.take() {
                    flow.paused = true;
                    self.parked.borrow_mut().insert(context_id, flow);
                }
            }
        }
    }

    /// The end of the request (access-log time).
    pub fn on_log(&self, context_id: u32, slot: &mut Slot<S::Request>, host: &dyn Host) {
        if self.reclaim(context_id, slot).is_none() {
            // A stream the request headers never reached (Envoy refused it
            // first): still one record.
            *slot = Some(self.new_flow(host, true));
        }
        if let Some(flow) = slot.as_mut() {
            if self.needs.whole_request_map_at_log {
                flow.head.read_whole(host);
            }
            let (request, mut cx) = flow.split(host);
            self.stage.on_log(request, &mut cx);
        }
    }

    /// The request's HTTP context is gone: drop what was kept for it.
    pub fn forget(&self, context_id: u32) {
        if let Ok(mut parked) = self.parked.try_borrow_mut() {
            parked.remove(&context_id);
        }
        if let Ok(mut waiters) = self.waiters.try_borrow_mut() {
            waiters.retain(|w| w.context_id != context_id);
        }
    }

    /// The root context's timer: the stages' ticks, then the waiting
    /// requests that were woken or whose time is up.
    pub fn on_tick(&self, host: &dyn Host) {
        let wake = self.stage.on_tick(host);
        self.serve_waiters(host, wake);
    }

    /// The response to an HTTP call a stage made from the root context.
    pub fn on_http_call_response(&self, token: u32, body_size: usize, host: &dyn Host) {
        let response = CallResponse {
            status: host.header(HeaderMap::CallResponse, ":status"),
            grpc_status: None,
            body_size,
        };
        self.on_root_call_response(token, &response, host);
    }

    /// The response to a gRPC call a stage made from the root context.
    pub fn on_grpc_call_response(
        &self,
        token: u32,
        status_code: u32,
        body_size: usize,
        host: &dyn Host,
    ) {
        let response = CallResponse {
            status: None,
            grpc_status: Some(status_code),
            body_size,
        };
        self.on_root_call_response(token, &response, host);
    }

    fn on_root_call_response(&self, token: u32, response: &CallResponse, host: &dyn Host) {
        match self.stage.on_root_call_response(token, response, host) {
            Some(wake) => self.serve_waiters(host, wake),
            None => log(
                host,
                self.name,
                LogLevel::Warn,
                &format!("response to an unknown call (token {token})"),
            ),
        }
    }

    /// Resumes the waiting requests that `wake` concerns (all of them) or
    /// whose deadline has passed.
    fn serve_waiters(&self, host: &dyn Host, wake: Wake) {
        let now_ms = host.now_unix_ms();
        let ready: Vec<(u32, bool)> = {
            let Ok(mut waiters) = self.waiters.try_borrow_mut() else {
                return;
            };
            if waiters.is_empty() {
                return;
            }
            let all = std::mem::take(&mut *waiters);
            let (ready, keep): (Vec<Waiter>, Vec<Waiter>) = all
                .into_iter()
                .partition(|w| wake == Wake::Waiters || now_ms >= w.deadline_ms);
            *waiters = keep;
            ready
                .into_iter()
                .map(|w| (w.context_id, now_ms >= w.deadline_ms))
                .collect()
        };
        for (context_id, timed_out) in ready {
            let flow = self.parked.borrow_mut().remove(&context_id);
            let Some(mut flow) = flow else {
                continue; // taken back by its context, or gone
            };
            if host.set_effective_context(context_id).is_err() {
                continue; // the request has ended
            }
            let step = {
                let (request, mut cx) = flow.split(host);
                self.stage.on_resume(request, &mut cx, timed_out)
            };
            flow.paused = false;
            match self.apply(step, &mut flow, host, timed_out) {
                Applied::Go(Action::Continue) => {
                    if let Err(status) = host.resume_request() {
                        log(
                            host,
                            self.name,
                            LogLevel::Warn,
                            &format!("cannot resume a request: {status:?}"),
                        );
                    }
                }
                Applied::Go(Action::Pause) => {}
                Applied::Wait(deadline_ms) => {
                    flow.paused = true;
                    self.waiters.borrow_mut().push(Waiter {
                        context_id,
                        deadline_ms,
                    });
                }
            }
            self.parked.borrow_mut().insert(context_id, flow);
        }
        let _ = host.set_effective_context(self.root_context_id);
    }

    /// How many requests wait (for tests and metrics).
    pub fn waiting(&self) -> usize {
        self.waiters.try_borrow().map_or(0, |w| w.len())
    }
}

/// What became of a header step.
enum Applied {
    /// The stream goes on, or stops (a reply was sent).
    Go(Action),
    /// The request waits until this deadline.
    Wait(i64),
}
