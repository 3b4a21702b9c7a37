// A certified OpenID Provider (npm `oidc-provider`) on loopback for the JWT
// end-to-end tests (tests/tests/jwt.rs): client credentials grant with a
// resource indicator, issuing RS256 JWT access tokens.
//
//   node tests/jwt-oidc-provider.mjs <port> <kid>
//
// The signing key is generated at start under the given kid, so restarting
// with another kid is a key rotation. Prints "ready <issuer>" once listening.
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const [port, kid] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'e2e',
    client_secret: 'e2e-secret-not-used-anywhere-else',
    grant_types: ['client_credentials'],
    redirect_uris: [],
    response_types: [],
    scope: 'orders:read orders:write',
  }],
  scopes: ['orders:read', 'orders:write'],
  jwks: { keys: [jwk] },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'https://api.palisade.test',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'orders:read orders:write',
        audience: 'https://api.palisade.test',
        accessTokenTTL: 600,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
});
provider.proxy = false;
const server = provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
