//! The LLM policy's reader of a response's usage, over bodies the provider
//! (or anyone between) sends: any bytes, JSON or server-sent events, cut
//! into chunks anywhere, read in bounded memory without panicking, and the
//! same usage however the body is cut. The first byte says whether the body
//! is an event stream and where to cut it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_llm::usage::UsageReader;

fuzz_target!(|data: &[u8]| {
    let [mode, body @ ..] = data else {
        return;
    };
    let event_stream = mode & 1 == 1;
    let step = usize::from(mode >> 1) + 1;
    let mut whole = UsageReader::new(event_stream);
    whole.feed(body);
    let mut cut = UsageReader::new(event_stream);
    for chunk in body.chunks(step) {
        cut.feed(chunk);
    }
    assert_eq!(whole.usage(), cut.usage(), "cut every {step} bytes");
    assert_eq!(whole.model(), cut.model());
    assert_eq!(whole.ended(), cut.ended());
});
