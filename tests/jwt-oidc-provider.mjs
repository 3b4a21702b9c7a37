// A certified OpenID Provider (npm `oidc-provider`) on loopback for the JWT
// and MCP end-to-end tests (tests/src/idp.rs): client credentials grant with a
// resource indicator, issuing RS256 JWT access tokens. The resource is the
// API of the JWT tests (https://api.palisade.test, scopes orders:*) or an
// MCP server behind Envoy on loopback (http://127.0.0.1:<port>/..., scopes
// mcp:*), whose URI becomes the token's audience (RFC 8707).
//
//   node tests/jwt-oidc-provider.mjs <port> <kid>
//
// The signing key is generated at start under the given kid, so restarting
// with another kid is a key rotation. Prints "ready <issuer>" once listening.
import { generateKeyPairSync } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

const [port, kid] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };

const API = 'https://api.palisade.test';
const MCP = /^http:\/\/127\.0\.0\.1:[0-9]+\/[^?#]*$/;

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'e2e',
    client_secret: 'e2e-secret-not-used-anywhere-else',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: 'orders:read orders:write mcp:read mcp:write',
  }, {
    client_id: 'e2e-reader',
    client_secret: 'e2e-reader-secret-not-used-anywhere-else',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: 'mcp:read',
  }],
  scopes: ['orders:read', 'orders:write', 'mcp:read', 'mcp:write'],
  jwks: { keys: [jwk] },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => API,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== API && !MCP.test(resource)) {
          throw new errors.InvalidTarget();
        }
        return {
          scope: resource === API ? 'orders:read orders:write' : 'mcp:read mcp:write',
          audience: resource,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
});
provider.proxy = false;
const server = provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
