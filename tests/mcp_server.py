"""An MCP server built on the official MCP Python SDK (PyPI `mcp`), serving
the Streamable HTTP transport at /mcp on loopback, behind Envoy in the MCP
end-to-end tests (tests/tests/mcp.rs). It trusts whatever reaches it: every
policy is Envoy's. Its tools and resources are those of a typical server:
a read-only tool, a write tool, an admin tool, public and private notes.

    .tools/mcp/bin/python tests/mcp_server.py <port>

Prints "ready" once listening. Each tool answers with what it was called
with, so a test sees what got through; `GET /received` (on the server's own
port, not through Envoy) lists every JSON-RPC message it was handed, so a
test sees what never got through.
"""

import json
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

server = MCPServer("palisade-e2e", version="1.0.0")


@server.tool(description="Searches the notes (read-only).")
def search_notes(query: str) -> str:
    return f"searched: {query}"


@server.tool(description="Writes a note.")
def write_note(text: str) -> str:
    return f"written: {len(text)} characters"


@server.tool(description="Erases every note.")
def admin_reset() -> str:
    return "reset"


@server.resource("notes://{visibility}/{id}")
def note(visibility: str, id: str) -> str:
    return f"{visibility} note {id}"


class Recorder:
    """Records each body POSTed to /mcp (parsed when it is JSON) before the
    SDK sees it, and answers `GET /received` with the list."""

    def __init__(self, app):
        self.app = app
        self.received = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["path"] == "/received":
            body = json.dumps(self.received).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["method"] != "POST":
            return await self.app(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # The proxy reset the request before its end (a refusal it
                # decided on the body): nothing reached the server.
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        if raw:
            try:
                self.received.append(json.loads(raw))
            except ValueError:
                self.received.append(raw.decode(errors="replace"))
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": raw, "more_body": False}

        await self.app(scope, replay, send)


class Server(uvicorn.Server):
    """Uvicorn, saying "ready" once its socket listens."""

    async def startup(self, sockets=None):
        await super().startup(sockets)
        print("ready", flush=True)


def main():
    port = int(sys.argv[1])
    app = server.streamable_http_app(
        host="127.0.0.1",
        # Envoy fronts this server under its own host and port, and checks
        # Origin itself: that check is what the tests exercise.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    Server(uvicorn.Config(Recorder(app), host="127.0.0.1", port=port, log_level="warning")).run()


if __name__ == "__main__":
    main()
