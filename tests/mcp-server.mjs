// An MCP server built on the official MCP TypeScript SDK
// (@modelcontextprotocol/sdk), serving the Streamable HTTP transport at /mcp
// on loopback, behind Envoy in the MCP end-to-end tests (tests/tests/mcp.rs).
// It trusts whatever reaches it: every policy is Envoy's. Its tools and
// resources are those of a typical server: read-only tools, a write tool,
// an admin tool, public and private notes.
//
//   node tests/mcp-server.mjs <port>
//
// Prints "ready" once listening. Each tool answers with what it was called
// with, so a test sees what got through; `GET /received` (on the server's
// own port, not through Envoy) lists every JSON-RPC message it was handed,
// so a test sees what never got through.
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const [port] = process.argv.slice(2);

function mcpServer() {
  const server = new McpServer({ name: 'palisade-e2e', version: '1.0.0' });
  const text = (t) => ({ content: [{ type: 'text', text: t }] });
  server.registerTool('search_notes', {
    description: 'Searches the notes (read-only).',
    inputSchema: { query: z.string() },
  }, async ({ query }) => text(`searched: ${query}`));
  server.registerTool('write_note', {
    description: 'Writes a note.',
    inputSchema: { text: z.string() },
  }, async ({ text: t }) => text(`written: ${t.length} characters`));
  server.registerTool('admin_reset', {
    description: 'Erases every note.',
    inputSchema: {},
  }, async () => text('reset'));
  server.registerResource('note', new ResourceTemplate('notes://{visibility}/{id}', { list: undefined }), {},
    async (uri, { visibility, id }) => ({
      contents: [{ uri: uri.href, text: `${visibility} note ${id}` }],
    }));
  return server;
}

// One transport per session, as the SDK's own examples keep them.
const sessions = new Map();

const received = [];

const http = createServer(async (req, res) => {
  const path = new URL(req.url, 'http://x').pathname;
  if (path === '/received') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(received));
    return;
  }
  if (path !== '/mcp') {
    res.writeHead(404).end();
    return;
  }
  const chunks = [];
  try {
    for await (const c of req) chunks.push(c);
  } catch {
    // The proxy reset the request before its body (a refusal it decided
    // on the body): nothing to answer.
    return;
  }
  const raw = Buffer.concat(chunks).toString();
  let body;
  if (raw) {
    try {
      body = JSON.parse(raw);
    } catch {
      body = undefined;
    }
    received.push(body ?? raw);
  }
  const id = req.headers['mcp-session-id'];
  let transport = id ? sessions.get(id) : undefined;
  if (!transport && req.method === 'POST' && body && isInitializeRequest(body)) {
    transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (sid) => sessions.set(sid, transport),
    });
    transport.onclose = () => transport.sessionId && sessions.delete(transport.sessionId);
    await mcpServer().connect(transport);
  }
  if (!transport) {
    res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({
      jsonrpc: '2.0', error: { code: -32000, message: 'no session' }, id: null,
    }));
    return;
  }
  await transport.handleRequest(req, res, body);
});

http.listen(Number(port), '127.0.0.1', () => console.log('ready'));
