"""An MCP client built on the official MCP Python SDK (PyPI `mcp`) for the
MCP end-to-end tests (tests/tests/mcp.rs). It connects over Streamable HTTP
with the SDK's OAuth client-credentials provider and nothing else: the
server's first 401 names its RFC 9728 metadata, from which the SDK finds the
authorization server and asks it for a token for this resource, with the
scope the challenge names; a 403 `insufficient_scope` makes it ask for one
with the scope named there as well (MCP authorization, scope selection and
step-up).

    .tools/mcp/bin/python tests/mcp_client.py <server-url> <issuer> <client-id> <client-secret>

Prints one JSON object: every HTTP exchange the SDK made (method, URL,
status, challenge), then the outcome of each step: its result, or the
JSON-RPC error the SDK raised, with the statuses of the HTTP exchanges the
step made.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.auth import TokenStorage
from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


class MemoryStorage(TokenStorage):
    """Tokens for this run only."""

    def __init__(self):
        self.tokens = None
        self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info):
        self.client_info = client_info


async def main(url, issuer, client_id, client_secret):
    exchanges = []

    async def record(response):
        exchanges.append({
            "method": response.request.method,
            "url": str(response.request.url),
            "status": response.status_code,
            "www_authenticate": response.headers.get("www-authenticate"),
        })

    auth = ClientCredentialsOAuthProvider(
        server_url=url, storage=MemoryStorage(), client_id=client_id,
        client_secret=client_secret, issuer=issuer,
    )
    http = httpx2.AsyncClient(auth=auth, event_hooks={"response": [record]}, timeout=30)
    steps = {}

    current = ["connect"]

    async def step(name, f):
        current[:] = [name]
        first = len(exchanges)
        try:
            steps[name] = {"ok": True, "result": await f()}
        except MCPError as e:
            steps[name] = {"ok": False, "code": e.error.code, "error": e.error.message}
        except Exception as e:  # noqa: BLE001 - the report names whatever the SDK raised
            steps[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        steps[name]["statuses"] = [x["status"] for x in exchanges[first:] if x["url"] == url]

    def dump(result):
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)

    async with http:
        # The handshake protocol (initialize, then MCP-Protocol-Version on
        # every request): the revisions the route allows.
        client = Client(streamable_http_client(url, http_client=http), mode="legacy")
        try:
            await _steps(client, step, dump, steps)
        except Exception as group:  # noqa: BLE001
            # When the IdP refuses the token a step-up asks for, the SDK's
            # transport fails as a whole (the error escapes its task group)
            # rather than failing that one call: the step in progress gets
            # the error, and the client stops there.
            steps[current[0]] = {"ok": False, "error": "; ".join(_leaves(group))}
    print(json.dumps({"exchanges": exchanges, "steps": steps}))


def _leaves(error):
    if isinstance(error, BaseExceptionGroup):
        return [leaf for e in error.exceptions for leaf in _leaves(e)]
    return [f"{type(error).__name__}: {error}"]


async def _steps(client, step, dump, steps):
    async with client:
        steps["connect"] = {"ok": True, "result": {"protocol_version": client.protocol_version}}
        await step("list_tools", lambda: _names(client))
        await step("search", lambda: _call(client, dump, "search_notes", {"query": "q3"}))
        await step("read_public", lambda: _read(client, dump, "notes://public/1"))
        await step("read_private", lambda: _read(client, dump, "notes://private/1"))
        await step("admin", lambda: _call(client, dump, "admin_reset", {}))
        # The write tool needs a scope the first token lacks: its 403
        # names it, and the SDK asks the IdP for a token with it too.
        await step("write", lambda: _call(client, dump, "write_note", {"text": "hello"}))
        await step("list_tools_after_write", lambda: _names(client))
        await step("write_oversized", lambda: _call(client, dump, "write_note", {"text": "x" * 5000}))


async def _names(client):
    return [t.name for t in (await client.list_tools()).tools]


async def _call(client, dump, name, arguments):
    result = await client.call_tool(name, arguments)
    if result.is_error:
        raise RuntimeError(f"tool error: {dump(result)}")
    return dump(result)


async def _read(client, dump, uri):
    return dump(await client.read_resource(uri))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
