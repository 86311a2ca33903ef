// A real OpenID Provider for latch's sign-in tests: panva's certified
// `oidc-provider` (npm), on 127.0.0.1, with one confidential client (latch),
// an RS256 key, and a minimal login step the test scripts over plain HTTP:
//
//   POST /interaction/:uid/login   login=alice&mfa=1&acr=X&deny=1
//       any password-less login; mfa=1 adds otp to amr; acr sets the ID token's acr;
//       deny=1 ends the sign-in with access_denied instead
//
// The device authorization grant (features.deviceFlow) is on unless
// DEVICE_FLOW=0. A second client, `ci` (same secret), gets JWT access tokens
// for audience `latch` by client_credentials (`elsewhere` with
// resource=https://elsewhere.test): tokens the test can tamper with.
// `POST /test/rotate` replaces the signing key (new kid, the old one withdrawn),
// as a provider rotating its keys would; it answers {"kid": …}.
//
// Accounts and their groups come from the ACCOUNTS environment variable
// (JSON: {"alice": {"groups": ["engineering"]}}; unknown logins get none),
// replaced whole by `POST /test/accounts` with the same JSON.
//
//   OIDC_PROVIDER_MODULE=/path/to/node_modules/oidc-provider/lib/index.js \
//   CLIENT_SECRET=… ACCOUNTS='{…}' node oidc_provider.mjs     # prints ISSUER=http://127.0.0.1:PORT
import http from 'node:http';
import crypto from 'node:crypto';
import { pathToFileURL } from 'node:url';

const { default: Provider } = await import(pathToFileURL(process.env.OIDC_PROVIDER_MODULE).href);
let accounts = JSON.parse(process.env.ACCOUNTS || '{}');

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const deviceFlow = process.env.DEVICE_FLOW !== '0';
const cookieKeys = [crypto.randomBytes(16).toString('hex')];
let keyNumber = 0;

// One provider per signing key: rotating builds a new one on the same issuer.
function newProvider() {
  keyNumber += 1;
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: `rsa-${keyNumber}`, alg: 'RS256', use: 'sig' };
  const p = new Provider(issuer, {
    clients: [{
      client_id: 'latch',
      client_secret: process.env.CLIENT_SECRET,
      application_type: 'native', // loopback redirect URIs on any port (RFC 8252)
      // The CLI's loopback listener, and the dashboard's callback (a latch on 127.0.0.1, any port).
      redirect_uris: ['http://127.0.0.1/callback', 'http://127.0.0.1/ui/oidc/corp/callback'],
      grant_types: ['authorization_code', ...(deviceFlow ? ['urn:ietf:params:oauth:grant-type:device_code'] : [])],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }, {
      client_id: 'ci',
      client_secret: process.env.CLIENT_SECRET,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys: [jwk] },
    cookies: { keys: cookieKeys },
    claims: { openid: ['sub'], profile: ['preferred_username', 'name', 'amr', 'acr'], email: ['email'], groups: ['groups'] },
    scopes: ['openid', 'profile', 'email', 'groups', 'deploy'],
    acrValues: ['urn:latch:test:loa1', 'urn:latch:test:loa2'],
    conformIdTokenClaims: false, // profile and groups claims in the ID token itself
    features: {
      devInteractions: { enabled: false },
      deviceFlow: { enabled: deviceFlow },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (ctx, client) => (client?.clientId === 'ci' ? 'https://latch.test' : undefined),
        useGrantedResource: () => true,
        // Audience `latch`, or `elsewhere` for resource https://elsewhere.test.
        getResourceServerInfo: (ctx, resource) => ({
          scope: 'deploy',
          audience: resource === 'https://elsewhere.test' ? 'elsewhere' : 'latch',
          accessTokenFormat: 'jwt',
          accessTokenTTL: 600,
        }),
      },
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, id) {
      return {
        accountId: id,
        async claims() {
          return { sub: `sub-${id}`, preferred_username: id, name: id, email: `${id}@example.com`, groups: accounts[id]?.groups ?? [] };
        },
      };
    },
  });
  return { provider: p, callback: p.callback(), kid: jwk.kid };
}

let current = newProvider();
server.on('request', async (req, res) => {
  if (req.method === 'POST' && req.url === '/test/accounts') {
    // The test changes who is in which group, as an IdP admin would.
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => { accounts = JSON.parse(data); res.writeHead(204); res.end(); });
    return undefined;
  }
  if (req.method === 'POST' && req.url === '/test/rotate') {
    current = newProvider();
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({ kid: current.kid }));
  }
  const { provider, callback } = current;
  const m = req.url.match(/^\/interaction\/([^/?]+)(\/login)?/);
  if (!m) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end(`<form method="post" action="/interaction/${details.uid}/login"><label>Login <input name="login"></label><input name="mfa" value="1" type="hidden"><button>Sign in</button></form>`);
    }
    const body = await new Promise((resolve) => {
      let data = '';
      req.on('data', (c) => { data += c; });
      req.on('end', () => resolve(new URLSearchParams(data)));
    });
    if (body.get('deny') === '1') {
      return await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the user declined' }, { mergeWithLastSubmission: false });
    }
    const accountId = body.get('login');
    const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
    grant.addOIDCScope(details.params.scope);
    const grantId = await grant.save();
    const amr = body.get('mfa') === '1' ? ['pwd', 'otp'] : ['pwd'];
    const acr = body.get('acr') || undefined;
    await provider.interactionFinished(req, res, { login: { accountId, amr, acr }, consent: { grantId } }, { mergeWithLastSubmission: false });
  } catch (err) {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(err));
  }
});

console.log(`ISSUER=${issuer}`);
