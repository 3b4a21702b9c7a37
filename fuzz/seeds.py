#!/usr/bin/env python3
"""Writes the committed seed corpora (fuzz/seeds/<target>/) and the fixed key
sets of the JWS target (fuzz/keys/) from the test vectors the project already
has: the Wycheproof JOSE corpus and the CRS regression corpus (../shared
beside the checkout, or $PALISADE_SHARED), the WAF's benign values, and the
configurations in envoy/*.yaml. Python's standard library only.

Run it again (`make fuzz-seeds`) when those vectors change; the seeds stay
small on purpose (a few dozen short inputs per target): libFuzzer grows its
own working corpus under fuzz/corpus/, which git ignores.
"""

import base64
import hashlib
import json
import os
import random
import re
import sys
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("PALISADE_SHARED", os.path.join(ROOT, "..", "shared"))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
KEYS = os.path.join(ROOT, "fuzz", "keys")
MAX_SEEDS = 40
MAX_BYTES = 4096

# The loaders of the `config` target, by its first byte.
CONFIG_LOADERS = ["waf", "jwt", "mfa", "ratelimit", "audit", "bundle", "transport", "llm"]


def write(target, items):
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        os.remove(os.path.join(folder, name))
    seen = set()
    kept = 0
    for item in items:
        data = item if isinstance(item, bytes) else item.encode()
        if len(data) > MAX_BYTES or data in seen:
            continue
        seen.add(data)
        with open(os.path.join(folder, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
            f.write(data)
        kept += 1
        if kept == MAX_SEEDS:
            break
    print(f"fuzz/seeds/{target}: {kept} seeds")


def sample(items, n):
    items = list(items)
    random.Random(7).shuffle(items)
    return items[:n]


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jose():
    folder = os.path.join(SHARED, "corpora", "jose")
    with open(os.path.join(folder, "json_web_signature_test.json")) as f:
        signatures = json.load(f)
    with open(os.path.join(folder, "json_web_key_test.json")) as f:
        keys = json.load(f)
    return signatures, keys


def public_part(jwk):
    private = {"d", "p", "q", "dp", "dq", "qi", "oth"}
    return {k: v for k, v in jwk.items() if k not in private}


def jose_seeds():
    signatures, keys = jose()
    tokens, claims, headers = [], [], []
    asymmetric, symmetric = [], []
    for group in signatures["testGroups"]:
        key = group.get("public") or group.get("private")
        if isinstance(key, dict) and key.get("kty") == "oct":
            symmetric.append(key)
        elif isinstance(key, dict):
            asymmetric.append(public_part(key))
        for case in group["tests"]:
            token = case.get("jws")
            if not isinstance(token, str):
                continue
            tokens.append(token)
            parts = token.split(".")
            for i, into in ((0, headers), (1, claims)):
                try:
                    into.append(b64url_decode(parts[i]))
                except (IndexError, ValueError):
                    pass
    # One token per group first (every algorithm), then a sample of the rest.
    firsts = [g["tests"][0]["jws"] for g in signatures["testGroups"]
              if g["tests"] and isinstance(g["tests"][0].get("jws"), str)]
    write("jws", firsts + sample(tokens, MAX_SEEDS))
    handmade = [
        '{"iss":"https://idp","aud":["api","x"],"sub":"alice","exp":1700003600,'
        '"nbf":1699999000,"iat":1700000000.5,"scope":"a b","scp":["c"],'
        '"acr":"mfa","amr":["pwd","otp"],"auth_time":1699999999,'
        '"realm_access":{"roles":["admin"]},"a.b":{"c":1}}',
        '{"alg":"ES256","kid":"k1","typ":"at+jwt"}',
        '{"alg":"none"}', '{"alg":"RS256","crit":["exp"]}',
    ]
    write("jwt_claims", handmade + sample(claims + headers, MAX_SEEDS))
    documents = []
    for group in keys["testGroups"]:
        for case in group["tests"]:
            for field in ("jwk", "private", "public"):
                if isinstance(case.get(field), dict):
                    documents.append(json.dumps({"keys": [case[field]]}))
    for key in asymmetric + symmetric:
        documents.append(json.dumps({"keys": [key]}))
    write("jwk", sample(documents, MAX_SEEDS))
    os.makedirs(KEYS, exist_ok=True)
    unique = lambda ks: list({json.dumps(k, sort_keys=True): k for k in ks}.values())
    for name, ks in (("asymmetric.json", asymmetric), ("symmetric.json", symmetric)):
        with open(os.path.join(KEYS, name), "w") as f:
            json.dump({"keys": unique(ks)}, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"fuzz/keys/{name}: {len(unique(ks))} keys")


def yaml_scalar(text):
    """A one-line YAML scalar as the CRS corpus writes them."""
    text = text.strip()
    if text.startswith('"'):
        try:
            return json.loads(text)
        except ValueError:
            return None
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1].replace("''", "'")
    return text


def crs_requests():
    """(method, uri, headers, data) of the CRS regression tests, read line by
    line: enough for seeds, not a YAML parser."""
    folder = os.path.join(SHARED, "corpora", "crs-regression")
    requests = []
    for family in sorted(os.listdir(folder)):
        path = os.path.join(folder, family)
        if not family.startswith("REQUEST-") or not os.path.isdir(path):
            continue
        for name in sorted(os.listdir(path)):
            with open(os.path.join(path, name), errors="replace") as f:
                lines = f.read().splitlines()
            current, in_headers = None, False
            for line in lines:
                stripped = line.strip()
                if stripped.startswith("- input:") or stripped == "input:":
                    current = {"method": "GET", "uri": "/", "headers": [], "data": None}
                    requests.append(current)
                    in_headers = False
                    continue
                if current is None:
                    continue
                if stripped == "headers:":
                    in_headers = True
                    continue
                m = re.match(r"\s*(method|uri|data):\s*(.*)$", line)
                if m:
                    in_headers = False
                    value = yaml_scalar(m.group(2))
                    if isinstance(value, str):
                        current[m.group(1)] = value
                    continue
                if in_headers:
                    h = re.match(r"\s+([A-Za-z0-9-]+):\s*(.*)$", line)
                    if h:
                        value = yaml_scalar(h.group(2))
                        if isinstance(value, str):
                            current["headers"].append((h.group(1).lower(), value))
                        continue
                    in_headers = False
    return requests


def request_text(r):
    head = [f"{r['method']} {r['uri']}"]
    head += [f"{n}: {v}" for n, v in r["headers"] if "\n" not in v]
    return "\n".join(head) + "\n\n" + (r["data"] or "")


def waf_seeds():
    with open(os.path.join(ROOT, "filters", "waf", "tests", "benign.txt")) as f:
        benign = [l for l in f.read().splitlines() if l and not l.startswith("#")]
    requests = crs_requests()
    attacks = sample(requests, 400)
    payloads = [r["data"] for r in attacks if r["data"]] + [r["uri"] for r in attacks]
    write("waf_transform", sample(benign, 10) + [
        "%2527%252F..%252f%u0027&#x3c;script&gt;\\u003c\\x3c/*c*/--x\n#y\0$IFS c''a^t",
    ] + payloads[:40])
    bodies = [
        ("BOUNDARY", '--BOUNDARY\r\nContent-Disposition: form-data; name="f"; filename="a.php"\r\n'
                     "Content-Type: text/plain\r\n\r\n<?php system($_GET['c']); ?>\r\n--BOUNDARY--\r\n"),
        ("b", '{"a":[1,{"b":"<script>"}],"c\\u0027":"x\\ny","d":{"e":null}}'),
        ("b", '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
              '<r a="1"><![CDATA[<b>]]>&x;</r>'),
        ("b", "a=1&b=%27%20or%201%3D1&c[]=x&&=&d"),
    ]
    bodies += [("b", r["data"]) for r in attacks if r["data"]][:30]
    write("waf_fields", [f"{b}\n{body}" for b, body in bodies])
    handmade = [
        "POST /api/orders?id=1\ncontent-type: application/json\norigin: https://evil.example\n"
        'cookie: a=1; session="x"\n\n{"q":"1 union select password from users"}',
        "PUT /upload\ncontent-type: multipart/form-data; boundary=X\n\n"
        '--X\r\nContent-Disposition: form-data; name="f"; filename="x.jsp"\r\n\r\n<% x %>\r\n--X--',
        "GET /search?q=benign+words&page=2\nuser-agent: curl/8\n\n",
    ]
    write("waf_inspect", handmade + [request_text(r) for r in attacks[:40]])


def envoy_configs():
    """The JSON configuration of every wasm filter in envoy/*.yaml, with the
    loader (the `config` target's first byte) that reads it: the module
    named by the nearest `filename: dist/palisade_<name>.wasm` above it."""
    found = []
    for name in sorted(os.listdir(os.path.join(ROOT, "envoy"))):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(ROOT, "envoy", name)) as f:
            lines = f.read().splitlines()
        loader = None
        i = 0
        while i < len(lines):
            module = re.search(r"dist/palisade(?:_([a-z]+))?\.wasm", lines[i])
            if module:
                loader = module.group(1) or "bundle"
            if not lines[i].rstrip().endswith("value: |") or loader not in CONFIG_LOADERS:
                i += 1
                continue
            indent, block = None, []
            i += 1
            while i < len(lines):
                line = lines[i]
                width = len(line) - len(line.lstrip())
                if line.strip() and indent is None:
                    indent = width
                if line.strip() and width < indent:
                    break
                block.append(line[indent or 0:])
                i += 1
            try:
                doc = json.loads("\n".join(block))
            except ValueError:
                continue
            found.append((loader, doc))
            if loader == "bundle" and isinstance(doc, dict):
                found += [(k, v) for k, v in doc.items() if k in CONFIG_LOADERS]
    return found


def config_seeds():
    seeds = [bytes([CONFIG_LOADERS.index(loader)]) + json.dumps(doc).encode()
             for loader, doc in envoy_configs()]
    seeds += [bytes([i]) + b"{}" for i in range(len(CONFIG_LOADERS))]
    write("config", seeds)


def field(number, payload):
    """A length-delimited protobuf field (`payload` under 128 bytes)."""
    return bytes([number << 3 | 2, len(payload)]) + payload


def varint(number, value):
    """A varint protobuf field (`value` under 128)."""
    return bytes([number << 3, value])


def rls_seeds():
    """RateLimitResponses as a rate-limit service sends them: OK and
    OVER_LIMIT with a descriptor status (a named limit of 10 per minute,
    remaining hits, a reset with nanoseconds), UNKNOWN, no status, an empty
    answer, and a truncated one."""
    limit = varint(2, 10) + varint(3, 2) + field(1, b"fleet")
    reset = varint(1, 59) + bytes([0x10, 0x80, 0x94, 0xEB, 0xDC, 0x03])
    answers = []
    for code, remaining in [(1, 9), (2, 0), (0, 0)]:
        status = varint(1, code) + field(2, limit) + varint(3, remaining) + field(4, reset)
        answers.append(varint(1, code) + field(2, status))
    answers += [varint(1, 1), b"", answers[0][:-3], answers[1] + field(2, varint(1, 1))]
    write("ratelimit_rls", answers)


def x509_seeds():
    """The certificate fixtures as Envoy hands them over (PEM, URL-encoded
    PEM) and as DER."""
    seeds = []
    folder = os.path.join(ROOT, "shared", "src", "fixtures")
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".pem"):
            continue
        with open(os.path.join(folder, name), "rb") as f:
            pem = f.read()
        body = pem.split(b"-----BEGIN CERTIFICATE-----")[1].split(b"-----END CERTIFICATE-----")[0]
        der = base64.b64decode(b"".join(body.split()))
        seeds += [pem, urllib.parse.quote(pem, safe="").encode(), der]
    write("x509", seeds)


# Realistic LLM calls and answers (the shapes tests/src/llm_upstream.rs and
# filters/llm/src/usage.rs test with).
LLM_REQUESTS = [
    # (API: the `llm_body` target's first byte, body)
    (0, open(os.path.join(ROOT, "bench", "llm", "chat.json")).read().strip()),
    (0, open(os.path.join(ROOT, "bench", "llm", "chat-stream.json")).read().strip()),
    (0, '{"model":"o3","messages":[],"max_completion_tokens":null,"max_tokens":9000}'),
    (1, '{"model":"gpt-3.5-turbo-instruct","prompt":"Say this is a test","max_tokens":7}'),
    (2, '{"model":"text-embedding-3-small","input":["a","b"]}'),
    (3, '{"model":"gpt-4.1","input":"Tell me a story","max_output_tokens":  4096, "stream": true}'),
    (4, '{ "model" : "claude-sonnet-4-5", "max_tokens": 1024, "messages": [{"role": "user", "content": "Hi"}], "stream": false }'),
    (4, '{"mod\\u0065l":"claude-haiku-4-5","messages":[]}'),
]

LLM_RESPONSES = [
    # (event stream, body)
    (False, '{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29}}'),
    (False, '{"type":"message","model":"claude-sonnet-4-5","content":[{"type":"text","text":"usage"}],"usage":{"input_tokens":12,"cache_read_input_tokens":50,"output_tokens":6}}'),
    (True, 'data: {"model":"gpt-4o-mini","choices":[{"delta":{"content":"\\"usage\\": {}"}}],"usage":null}\n\n'
           'data: {"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}\n\ndata: [DONE]\n\n'),
    (True, 'event: message_start\r\ndata: {"type":"message_start","message":{"model":"claude-sonnet-4-5","usage":{"input_tokens":25,"output_tokens":1}}}\r\n\r\n'
           'event: message_delta\r\ndata: {"type":"message_delta","usage":{"output_tokens":15}}\r\n\r\nevent: message_stop\r\ndata: {"type":"message_stop"}\r\n\r\n'),
    (True, 'event: response.completed\ndata: {"type":"response.completed","response":{"model":"gpt-4.1","usage":{"input_tokens":36,"output_tokens":87,"total_tokens":123}}}\n\n'),
]


def llm_seeds():
    write("llm_body", [bytes([api, 0, 100]) + body.encode() for api, body in LLM_REQUESTS])
    seeds = []
    for sse, body in LLM_RESPONSES:
        for step in (0, 6, 30):
            seeds.append(bytes([step << 1 | int(sse)]) + body.encode())
    write("llm_usage", seeds)


def main():
    if not os.path.isdir(os.path.join(SHARED, "corpora")):
        sys.exit(f"no corpora under {SHARED}: set PALISADE_SHARED to the shared/ folder")
    jose_seeds()
    waf_seeds()
    config_seeds()
    rls_seeds()
    x509_seeds()
    llm_seeds()


if __name__ == "__main__":
    main()
