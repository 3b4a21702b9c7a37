// An MCP client built on the official MCP TypeScript SDK
// (@modelcontextprotocol/sdk) for the MCP end-to-end tests
// (tests/tests/mcp.rs). It connects over Streamable HTTP with the SDK's
// OAuth client credentials provider and nothing else: the server's first 401
// names its RFC 9728 metadata, from which the SDK finds the authorization
// server and asks it for a token for this resource.
//
//   node tests/mcp-client.mjs <server-url> <issuer> <client-id> <client-secret> <scope>
//
// Prints one JSON object: every HTTP exchange the SDK made (method, URL,
// status), then the outcome of each step (a result, or the error the SDK
// raised).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';

const [serverUrl, issuer, clientId, clientSecret, scope] = process.argv.slice(2);

const exchanges = [];
const recordingFetch = async (url, init) => {
  const res = await fetch(url, init);
  exchanges.push({
    method: init?.method ?? 'GET',
    url: String(url),
    status: res.status,
    www_authenticate: res.headers.get('www-authenticate'),
  });
  return res;
};

const authProvider = new ClientCredentialsProvider({
  clientId, clientSecret, scope, expectedIssuer: issuer,
});
const transport = new StreamableHTTPClientTransport(new URL(serverUrl), {
  authProvider, fetch: recordingFetch,
});
const client = new Client({ name: 'palisade-e2e-client', version: '1.0.0' });

const steps = {};
async function step(name, f) {
  try {
    steps[name] = { ok: true, result: await f() };
  } catch (e) {
    steps[name] = { ok: false, error: String(e?.message ?? e), code: e?.code };
  }
}

await step('connect', async () => {
  await client.connect(transport);
  return { protocol_version: transport.protocolVersion, session: transport.sessionId };
});
if (steps.connect.ok) {
  await step('list_tools', async () => (await client.listTools()).tools.map((t) => t.name));
  await step('search', () => client.callTool({ name: 'search_notes', arguments: { query: 'q3' } }));
  await step('write', () => client.callTool({ name: 'write_note', arguments: { text: 'hello' } }));
  await step('write_oversized', () => client.callTool({ name: 'write_note', arguments: { text: 'x'.repeat(5000) } }));
  await step('admin', () => client.callTool({ name: 'admin_reset', arguments: {} }));
  await step('read_public', () => client.readResource({ uri: 'notes://public/1' }));
  await step('read_private', () => client.readResource({ uri: 'notes://private/1' }));
  await step('close', () => transport.terminateSession());
}
console.log(JSON.stringify({ exchanges, steps }));
process.exit(0);
