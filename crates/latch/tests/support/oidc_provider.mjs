// A real OpenID Provider for latch's sign-in tests: panva's certified
// `oidc-provider` (npm), on 127.0.0.1, with one confidential client (latch),
// an RS256 key, and a minimal login step the test scripts over plain HTTP:
//
//   POST /interaction/:uid/login   login=alice&mfa=1   (any password-less login; mfa=1 adds otp to amr)
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

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'rsa-1', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'latch',
    client_secret: process.env.CLIENT_SECRET,
    application_type: 'native', // loopback redirect URIs on any port (RFC 8252)
    redirect_uris: ['http://127.0.0.1/callback'],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [jwk] },
  cookies: { keys: [crypto.randomBytes(16).toString('hex')] },
  claims: { openid: ['sub'], profile: ['preferred_username', 'name', 'amr', 'acr'], email: ['email'], groups: ['groups'] },
  scopes: ['openid', 'profile', 'email', 'groups'],
  conformIdTokenClaims: false, // profile and groups claims in the ID token itself
  features: { devInteractions: { enabled: false } },
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

const callback = provider.callback();
server.on('request', async (req, res) => {
  if (req.method === 'POST' && req.url === '/test/accounts') {
    // The test changes who is in which group, as an IdP admin would.
    let data = '';
    req.on('data', (c) => { data += c; });
    req.on('end', () => { accounts = JSON.parse(data); res.writeHead(204); res.end(); });
    return undefined;
  }
  const m = req.url.match(/^\/interaction\/([^/?]+)(\/login)?/);
  if (!m) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/html' });
      return res.end(`<form method="post" action="/interaction/${details.uid}/login"><input name="login"><input name="mfa" value="1"><button>Sign in</button></form>`);
    }
    const body = await new Promise((resolve) => {
      let data = '';
      req.on('data', (c) => { data += c; });
      req.on('end', () => resolve(new URLSearchParams(data)));
    });
    const accountId = body.get('login');
    const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
    grant.addOIDCScope(details.params.scope);
    const grantId = await grant.save();
    const amr = body.get('mfa') === '1' ? ['pwd', 'otp'] : ['pwd'];
    await provider.interactionFinished(req, res, { login: { accountId, amr }, consent: { grantId } }, { mergeWithLastSubmission: false });
  } catch (err) {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(err));
  }
});

console.log(`ISSUER=${issuer}`);
