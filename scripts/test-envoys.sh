#!/usr/bin/env bash
# Runs the end-to-end tests against several Envoy releases, in both
# deployments (the policies as separate modules, then the bundle), and
# prints a table version x deployment -> pass/fail with each run's time.
#
#   scripts/test-envoys.sh [--full | --only "FILE:TEST ..."] VERSION...
#
# Each VERSION's Envoy is .tools/bin/envoy-VERSION (`make envoy-matrix-deps`
# installs them). Without --full each run is the smoke subset below (or the
# tests given with --only); with --full it is the whole suite (what
# `make test-e2e` runs), about 15 minutes per version. A subset run fails
# when fewer of its tests pass than it names (a renamed test would otherwise
# run nothing and pass). Each run's output is in
# .run/envoys/VERSION-DEPLOYMENT.log.
# $E2E_POLICY_TESTS (from the Makefile) lists the `--test FILE` arguments of
# the tests that run in the bundle deployment too. Exits non-zero when any
# run failed.
set -euo pipefail

full=false
only=
case ${1:-} in
  --full) full=true; shift ;;
  --only) only=${2:?--only needs a list of FILE:TEST}; shift 2 ;;
esac
versions=("$@")
if [[ ${#versions[@]} -eq 0 ]]; then
  echo "usage: scripts/test-envoys.sh [--full] VERSION..." >&2
  exit 2
fi
cd "$(dirname "$0")/.."
: "${E2E_POLICY_TESTS:?set by the Makefile: the --test FILE arguments of the policy tests}"

# The smoke subset: at least one test for every host feature the modules
# use, as FILE:TEST. Tests of files in $E2E_POLICY_TESTS run in both
# deployments; the others (bundle, envoy_configs) once, in the first.
SMOKE=(
  # Every shipped Envoy config (envoy/*.yaml) loads in this Envoy
  # (`--mode validate`, which also configures every module).
  envoy_configs:every_envoy_config_validates_from_the_repo_root
  # The bundle and the module chain refuse alike; a bad section is refused at load.
  bundle:every_refusal_is_the_same_from_the_bundle_as_from_the_module_chain
  # JWT: JWKS over HTTP calls from the root context (discovery, rotation,
  # outage), the host's verify_signature against the portable verifiers,
  # filter state and stats.
  jwt:discovery_rotation_kid_flood_and_outage
  jwt:host_and_portable_verifiers_agree_on_wycheproof
  jwt:inline_keys_allow_deny_headers_identity_and_metrics
  # Rate limits exact across workers (shared data, CAS), ticks, and the
  # key table under spraying.
  ratelimit:exact_count_with_two_workers_mostly_allowed
  ratelimit:buckets_refill_over_time
  # Global rate limits: gRPC calls to the rate-limit service.
  ratelimit_global:one_limit_across_two_envoys_lets_exactly_that_many_through
  ratelimit_global:a_cluster_envoy_does_not_have_is_a_failure_not_a_crash
  # WAF: request bodies (buffered, limits, prefixes), local replies.
  waf:bodies_over_the_limit_are_refused_or_inspected_by_prefix
  waf:attacks_anywhere_are_refused_with_a_problem_body
  waf:an_invalid_configuration_stops_envoy
  # Audit: access log, filter state, request/response attributes, the
  # peer certificate.
  audit:palisade_record_describes_the_request_and_response
  audit:the_client_certificate_is_described_when_envoy_forwards_it
  # Transport: connection attributes over TLS, the peer certificate.
  transport:tls_versions_and_cipher_suites
  transport:client_certificates_and_the_spiffe_allowlist
  # MFA: step-up challenges from the JWT stage's identity.
  mfa:step_up_policies_challenge_pass_and_publish
  # MCP: request body read, the SDK's client against the SDK's server.
  mcp:sdk_client_discovers_the_issuer_and_is_governed_per_tool_and_resource
  # LLM: request body replaced, response bodies (streamed) observed,
  # shared-data budgets across workers.
  llm:output_tokens_are_capped_in_the_body_the_provider_gets
  llm:a_budget_is_spent_exactly_by_concurrent_streams_across_two_workers
)

if [[ -n $only ]]; then
  read -r -a SMOKE <<< "$only"
fi

# The subset's entries that run in a deployment (FILE:TEST, one a line).
smoke_entries() {
  local deployment=$1 entry
  for entry in "${SMOKE[@]}"; do
    if [[ $deployment == bundle && " $E2E_POLICY_TESTS " != *" --test ${entry%%:*} "* ]]; then
      continue
    fi
    echo "$entry"
  done
}

# The cargo arguments of one run: `--test FILE...` then `-- --exact TEST...`.
smoke_args() {
  local deployment=$1 files=() tests=() entry file
  for entry in $(smoke_entries "$deployment"); do
    file=${entry%%:*}
    [[ " ${files[*]} " == *" --test $file "* ]] || files+=(--test "$file")
    tests+=("${entry#*:}")
  done
  echo "${files[@]}" -- --exact "${tests[@]}"
}

run_args() {
  local deployment=$1
  if $full; then
    if [[ $deployment == bundle ]]; then echo "$E2E_POLICY_TESTS"; else echo --tests; fi
  else
    smoke_args "$deployment"
  fi
}

for v in "${versions[@]}"; do
  if [[ ! -x .tools/bin/envoy-$v ]]; then
    echo ".tools/bin/envoy-$v is missing: run \`make envoy-matrix-deps ENVOY_VERSIONS=\"${versions[*]}\"\`" >&2
    exit 2
  fi
done

# Compile the test binaries once, before any run is timed.
cargo test -p palisade-e2e --tests --no-run --quiet

mkdir -p .run/envoys
results=()
failed=0
for v in "${versions[@]}"; do
  bin=$(readlink -f ".tools/bin/envoy-$v")
  for deployment in modules bundle; do
    log=.run/envoys/$v-$deployment.log
    # shellcheck disable=SC2046 # the arguments are words on purpose
    args=($(run_args "$deployment"))
    echo "== Envoy $v, $deployment"
    start=$SECONDS
    if {
      echo "ENVOY_BIN=$bin PALISADE_E2E_DEPLOYMENT=$deployment cargo test --no-fail-fast -p palisade-e2e ${args[*]}"
      ENVOY_BIN=$bin PALISADE_E2E_DEPLOYMENT=$deployment \
        cargo test --no-fail-fast -p palisade-e2e "${args[@]}"
    } >"$log" 2>&1; then
      outcome=pass
    else
      outcome=FAIL
      failed=1
    fi
    passed=$(grep -o '[0-9]* passed' "$log" | awk '{s += $1} END {print s + 0}')
    failing=$(grep -o '[0-9]* failed' "$log" | awk '{s += $1} END {print s + 0}')
    if ! $full && [[ $outcome == pass ]]; then
      named=$(smoke_entries "$deployment" | wc -l)
      if ((passed < named)); then
        outcome=FAIL
        failed=1
        echo "   only $passed of the $named tests named for $deployment ran: is one renamed or gone?" | tee -a "$log"
      fi
    fi
    results+=("$(printf '%-8s %-8s %-5s %4d passed %3d failed %5ds' \
      "$v" "$deployment" "$outcome" "$passed" "$failing" $((SECONDS - start)))")
    echo "${results[-1]}"
    if [[ $outcome == FAIL ]]; then
      grep -E '^(test .* FAILED|---- )' "$log" | sort -u || true
      echo "   (output: $log)"
    fi
  done
done

echo
echo "Envoy    deploy   result  ($(if $full; then echo whole suite; else echo "subset: ${#SMOKE[@]} tests"; fi))"
printf '%s\n' "${results[@]}"
exit $failed
