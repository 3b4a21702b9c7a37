//! Prints DPoP proofs (RFC 9449) for benchmarks, one per line, each with its
//! own `jti` and the current time: `count` proofs for `method url`, bound to
//! the access token in `token_file`, signed by the benchmark client's key
//! (the key `bench/jwt/mint.py` binds `es256-dpop-token.txt` to).
//!
//!   dpop-proofs <count> <method> <url> <token_file>

use palisade_e2e::tokens::DpopKey;

/// The benchmark client's key: `DpopKey::new(BENCH_KEY_SEED)`.
const BENCH_KEY_SEED: u8 = 0x42;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, count, method, url, token_file] = args.as_slice() else {
        eprintln!("usage: dpop-proofs <count> <method> <url> <token_file>");
        std::process::exit(2);
    };
    let count: usize = count.parse().unwrap_or_else(|_| {
        eprintln!("count must be a number");
        std::process::exit(2);
    });
    let token = std::fs::read_to_string(token_file).unwrap_or_else(|e| {
        eprintln!("{token_file}: {e}");
        std::process::exit(2);
    });
    let key = DpopKey::new(BENCH_KEY_SEED);
    let mut out = String::with_capacity(count * 700);
    for _ in 0..count {
        out.push_str(&key.proof(method, url, Some(token.trim())));
        out.push('\n');
    }
    print!("{out}");
}
