// A certified OpenID Provider (npm `oidc-provider`) on loopback for the JWT
// end-to-end tests (tests/tests/jwt.rs, tests/tests/sender_constrained.rs):
// client credentials grant with a resource indicator, issuing RS256 JWT
// access tokens.
//
//   node tests/jwt-oidc-provider.mjs <port> <kid> [<tls dir>]
//
// The signing key is generated at start under the given kid, so restarting
// with another kid is a key rotation. With a TLS folder (scripts/certs.sh:
// ca.pem, server.pem, server.key), the provider serves HTTPS, asks clients
// for a certificate, and issues sender-constrained tokens: certificate-bound
// (RFC 8705, `cnf.x5t#S256`) to client `mtls-client`, DPoP-bound (RFC 9449,
// `cnf.jkt`) to client `dpop-client`. Prints "ready <issuer>" once listening.
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const [port, kid, tlsDir] = process.argv.slice(2);
const issuer = `${tlsDir ? 'https' : 'http'}://127.0.0.1:${port}`;
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };

const client = (id, extra) => ({
  client_id: id,
  client_secret: `${id}-secret-not-used-anywhere-else`,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  scope: 'orders:read orders:write',
  ...extra,
});

const clients = [client('e2e', {})];
if (tlsDir) {
  clients.push(client('mtls-client', { tls_client_certificate_bound_access_tokens: true }));
  clients.push(client('dpop-client', { dpop_bound_access_tokens: true }));
}

const provider = new Provider(issuer, {
  clients,
  scopes: ['orders:read', 'orders:write'],
  jwks: { keys: [jwk] },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    dPoP: { enabled: Boolean(tlsDir) },
    mTLS: {
      enabled: Boolean(tlsDir),
      certificateBoundAccessTokens: true,
      // The certificate of this TLS connection, when the handshake
      // verified it against our CA.
      getCertificate(ctx) {
        const socket = ctx.req.socket;
        if (!socket.authorized) return undefined;
        const peer = socket.getPeerCertificate();
        return peer && peer.raw ? new X509Certificate(peer.raw).toString() : undefined;
      },
    },
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
const ready = () => console.log(`ready ${issuer}`);
const server = tlsDir
  ? https
      .createServer(
        {
          key: readFileSync(`${tlsDir}/server.key`),
          cert: readFileSync(`${tlsDir}/server.pem`),
          ca: readFileSync(`${tlsDir}/ca.pem`),
          requestCert: true,
          rejectUnauthorized: false,
        },
        provider.callback(),
      )
      .listen(Number(port), '127.0.0.1', ready)
  : provider.listen(Number(port), '127.0.0.1', ready);
process.on('SIGTERM', () => server.close(() => process.exit(0)));
