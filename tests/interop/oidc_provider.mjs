// A real OpenID provider for the console tests: the certified `oidc-provider` package, with the
// users, groups and `amr` values the test passes in, and a plain sign-in page (a login field and
// a button) in place of a password prompt.
//
// Environment: OIDC_CLIENTS (JSON array of client metadata), OIDC_USERS (JSON object: login →
// { email, groups, amr, acr }). Listens on 127.0.0.1 on a free port and prints one JSON line,
// {"issuer": "http://127.0.0.1:PORT"}, once it serves.
import http from 'node:http';
import Provider from 'oidc-provider';

// Stdout carries the one line the test reads (and may close after it): oidc-provider's notices
// go to stderr.
console.log = console.info = console.warn = (...args) => process.stderr.write(args.join(' ') + '\n');
process.stdout.on('error', () => {});

const clients = JSON.parse(process.env.OIDC_CLIENTS || '[]');
const users = JSON.parse(process.env.OIDC_USERS || '{}');

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients,
    findAccount: async (ctx, sub) => {
      const user = users[sub];
      if (!user) return undefined;
      return {
        accountId: sub,
        claims: async () => ({
          sub,
          email: user.email,
          email_verified: true,
          preferred_username: sub,
          groups: user.groups || [],
        }),
      };
    },
    claims: {
      openid: ['sub', 'acr', 'amr', 'auth_time'],
      email: ['email', 'email_verified'],
      profile: ['preferred_username'],
      groups: ['groups'],
    },
    // Every granted claim in the ID token (the console reads groups from it, as from an API
    // token), not only in the userinfo response.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    pkce: { required: () => true },
    cookies: { keys: ['countersign-console-test'] },
  });
  provider.proxy = false;
  const callback = provider.callback();

  server.on('request', async (req, res) => {
    try {
      const url = new URL(req.url, issuer);
      const m = url.pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
      if (process.env.OIDC_DEBUG) process.stderr.write(req.method + ' ' + req.url + ' ' + JSON.stringify(req.headers) + '\n');
      if (!m) return callback(req, res);
      const details = await provider.interactionDetails(req, res);
      if (req.method === 'GET' && !m[2]) {
        res.setHeader('content-type', 'text/html; charset=utf-8');
        res.end(`<!doctype html><html lang="en"><head><title>Test IdP sign-in</title></head><body>
<main><h1>Sign in to the test IdP</h1>
<form method="post" action="/interaction/${escape(details.uid)}/login">
<label for="login">Login</label> <input id="login" name="login" autocomplete="off">
<button id="sign-in" type="submit">Sign in</button></form></main></body></html>`);
        return;
      }
      if (req.method === 'POST' && m[2]) {
        let body = '';
        for await (const chunk of req) body += chunk;
        const login = new URLSearchParams(body).get('login') || '';
        const user = users[login];
        if (!user) {
          res.statusCode = 403;
          res.end('unknown user');
          return;
        }
        const grant = new provider.Grant({ accountId: login, clientId: details.params.client_id });
        grant.addOIDCScope(String(details.params.scope || 'openid'));
        const grantId = await grant.save();
        const result = {
          login: { accountId: login, amr: user.amr || ['pwd'], ...(user.acr ? { acr: user.acr } : {}) },
          consent: { grantId },
        };
        await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
        return;
      }
      res.statusCode = 405;
      res.end();
    } catch (e) {
      res.statusCode = 500;
      res.end(String(e && e.message));
    }
  });
  process.stdout.write(JSON.stringify({ issuer }) + '\n');
});
