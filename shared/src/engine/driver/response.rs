//! The response's events: headers toward the client, and the body held
//! whole (to be read or rewritten) or observed chunk by chunk.

use super::super::exchange::MapAccess;
use super::super::host::{log, Body, Host, LogLevel};
use super::super::stage::{ResponseBodyStep, ResponseStep, Stage};
use super::{Action, Engine, Flow, FlowSlot};

/// What the stages asked of the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResponseBodyState {
    /// Nothing.
    NotWanted,
    /// Held until complete (or this many bytes), then handed over once.
    Wanted(usize),
    /// Each chunk shown as it passes.
    Observed,
    /// Handed over.
    Done,
}

impl<S: Stage> Engine<S> {
    /// The response headers.
    pub fn on_response_headers(
        &self,
        context_id: u32,
        slot: &mut FlowSlot<S::Request>,
        host: &dyn Host,
    ) -> Action {
        if let Some(flow) = self.reclaim(context_id, slot) {
            let step = {
                let (request, mut cx) = flow.split(host, MapAccess::None, MapAccess::Edit);
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
        slot: &mut FlowSlot<S::Request>,
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
                let complete = end_of_stream && body_size <= max;
                self.hand_response_body(flow, Some(body_size), max, complete, host);
                // What passed the limit still passes under observers' eyes.
                flow.response_body = if complete {
                    ResponseBodyState::Done
                } else {
                    ResponseBodyState::Observed
                };
                Action::Continue
            }
            ResponseBodyState::Observed => {
                let chunk = match host.body(Body::Response, body_size) {
                    Ok(chunk) => chunk,
                    Err(status) => {
                        log(
                            host,
                            self.name,
                            LogLevel::Error,
                            &format!("cannot read the response body ({status:?})"),
                        );
                        Vec::new()
                    }
                };
                let (request, mut cx) = flow.split(host, MapAccess::None, MapAccess::None);
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
        slot: &mut FlowSlot<S::Request>,
        host: &dyn Host,
    ) -> Action {
        let Some(flow) = self.reclaim(context_id, slot) else {
            return Action::Continue;
        };
        if let ResponseBodyState::Wanted(max) = flow.response_body {
            flow.response_body = ResponseBodyState::Done;
            self.hand_response_body(flow, None, max, true, host);
        }
        Action::Continue
    }

    /// Hands the held response body to the stages that asked. A body that
    /// cannot be read reaches them empty and incomplete, so a stage that
    /// must see it can replace it with an error rather than pass it.
    fn hand_response_body(
        &self,
        flow: &mut Flow<S::Request>,
        held: Option<usize>,
        max: usize,
        complete: bool,
        host: &dyn Host,
    ) {
        let read = held.unwrap_or(usize::MAX).min(max.saturating_add(1));
        let (body, complete) = match host.body(Body::Response, read) {
            Ok(body) => (body, complete),
            Err(status) => {
                log(
                    host,
                    self.name,
                    LogLevel::Error,
                    &format!("cannot read the response body ({status:?})"),
                );
                (Vec::new(), false)
            }
        };
        let step = {
            let (request, mut cx) = flow.split(host, MapAccess::None, MapAccess::None);
            self.stage
                .on_response_body(request, &mut cx, &body, complete)
        };
        if let ResponseBodyStep::Replace(new_body) = step {
            let old_len = held.unwrap_or(body.len());
            if let Err(status) = host.replace_body(Body::Response, old_len, &new_body) {
                log(
                    host,
                    self.name,
                    LogLevel::Error,
                    &format!("cannot replace the response body ({status:?})"),
                );
            }
        }
    }
}
