"""Calls an LLM gateway with the official OpenAI Python client, as an
application would: the end-to-end tests of the LLM policy (tests/tests/llm.rs)
run it with the pinned `openai` package of `.tools/llm` (make llm-deps).

It reads a JSON plan on stdin:

    {"base_url": "http://127.0.0.1:10000/v1", "parallel": true,
     "calls": [{"api": "chat", "model": "gpt-4o", "api_key": "<bearer token>",
                "max_tokens": 100, "stream": true, "include_usage": true,
                "prompt": "Say hello"}]}

`api` is `chat`, `completions`, `embeddings` or `responses`. With
`parallel`, every call starts at once (one thread each, released together).
It prints one JSON result per call, in order: `{"status": 200, "text",
"usage", "model"}`, or for an error the status, the error object the SDK
parsed, the headers a client would act on and the SDK's exception class.
The SDK never retries (max_retries=0): a retried 429 would hide a refusal.
"""

import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import openai


def usage_of(obj):
    usage = getattr(obj, "usage", None)
    return usage.model_dump() if usage is not None else None


def call(client, spec, barrier):
    if barrier is not None:
        barrier.wait()
    api = spec.get("api", "chat")
    model = spec["model"]
    prompt = spec.get("prompt", "Say hello to the gateway")
    extra = {}
    for field in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        if field in spec:
            extra[field] = spec[field]
    stream = spec.get("stream", False)
    if stream and spec.get("include_usage") and api in ("chat", "completions"):
        extra["stream_options"] = {"include_usage": True}
    try:
        if api == "embeddings":
            r = client.embeddings.create(model=model, input=prompt)
            return {"status": 200, "usage": usage_of(r), "model": r.model, "count": len(r.data)}
        if api == "responses":
            if stream:
                text, usage, got = "", None, None
                for event in client.responses.create(model=model, input=prompt, stream=True, **extra):
                    if event.type == "response.output_text.delta":
                        text += event.delta
                    elif event.type == "response.completed":
                        usage, got = usage_of(event.response), event.response.model
                return {"status": 200, "text": text, "usage": usage, "model": got}
            r = client.responses.create(model=model, input=prompt, **extra)
            return {"status": 200, "text": r.output_text, "usage": usage_of(r), "model": r.model}
        if api == "completions":
            r = client.completions.create(model=model, prompt=prompt, stream=stream, **extra)
            if not stream:
                return {"status": 200, "text": r.choices[0].text, "usage": usage_of(r), "model": r.model}
            text, usage, got = "", None, None
            for chunk in r:
                if chunk.choices:
                    text += chunk.choices[0].text or ""
                usage = usage_of(chunk) or usage
                got = chunk.model
            return {"status": 200, "text": text, "usage": usage, "model": got}
        messages = [{"role": "user", "content": prompt}]
        r = client.chat.completions.create(model=model, messages=messages, stream=stream, **extra)
        if not stream:
            return {"status": 200, "text": r.choices[0].message.content, "usage": usage_of(r), "model": r.model}
        text, usage, got = "", None, None
        for chunk in r:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            usage = usage_of(chunk) or usage
            got = chunk.model
        return {"status": 200, "text": text, "usage": usage, "model": got}
    except openai.APIStatusError as e:
        headers = {k: e.response.headers.get(k) for k in ("retry-after", "ratelimit", "ratelimit-policy", "content-type")}
        return {"status": e.status_code, "error": e.body, "headers": headers, "exception": type(e).__name__}


def main():
    plan = json.load(sys.stdin)
    calls = plan["calls"]
    clients = {}

    def client_for(key):
        if key not in clients:
            clients[key] = openai.OpenAI(base_url=plan["base_url"], api_key=key, max_retries=0, timeout=60)
        return clients[key]

    for spec in calls:
        client_for(spec.get("api_key", "sk-test"))
    if plan.get("parallel"):
        barrier = threading.Barrier(len(calls))
        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            futures = [pool.submit(call, client_for(s.get("api_key", "sk-test")), s, barrier) for s in calls]
            results = [f.result() for f in futures]
    else:
        results = [call(client_for(s.get("api_key", "sk-test")), s, None) for s in calls]
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
