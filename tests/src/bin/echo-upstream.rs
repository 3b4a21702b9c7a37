//! The demo's upstream: answers every request with the request it received,
//! as JSON, so you can see what Envoy and the Palisade filters forwarded.
//!
//! `echo-upstream [ADDRESS]` (default `127.0.0.1:18080`).

use std::net::TcpListener;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into());
    let listener = match TcpListener::bind(&addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("echo-upstream: cannot listen on {addr}: {e}");
            std::process::exit(1);
        }
    };
    let upstream = palisade_e2e::EchoUpstream::serve(listener);
    eprintln!("echo-upstream: listening on {}", upstream.addr());
    loop {
        std::thread::park();
    }
}
