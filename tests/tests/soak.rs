//! The soak under hostile load (issue 18): the suite in one Envoy with two
//! workers, first as separate modules, then as the bundle, each for
//! `PALISADE_SOAK_SECONDS` (default 30: the smoke run of `make test`;
//! `make soak` runs 600 s each). See `palisade_e2e::soak` for the traffic,
//! the IdP's outages and what is asserted.

use std::time::Duration;

use palisade_e2e::{soak, Deployment};

fn seconds() -> u64 {
    std::env::var("PALISADE_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

/// Both deployments in one test, so that `make test`'s second (bundle) run
/// of the policy tests need not list this file and each runs once.
#[test]
fn modules_and_bundle_survive_hostile_load_with_exact_answers() {
    let duration = Duration::from_secs(seconds());
    let mut failed = Vec::new();
    for deployment in [Deployment::Modules, Deployment::Bundle] {
        let outcome = soak::run(deployment, duration);
        println!("{}", outcome.report);
        if !outcome.problems.is_empty() {
            failed.push(format!("{deployment:?}:\n{}", outcome.problems.join("\n")));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
