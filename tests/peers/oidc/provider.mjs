// The OpenID Provider the SSO tests sign in through: npm's oidc-provider (OpenID
// Certified) over HTTPS on 127.0.0.1, with one client and the people of a JSON file.
//
//   node provider.mjs SETTINGS.json
//
// SETTINGS: {"port", "issuer", "cert", "key", "client_id", "client_secret",
// "redirect_uri", "people"}. `people` is a JSON file {"alice": {"groups": [...],
// "email": "...", "username": "..."}, ...}, read again at every sign-in, so a test
// changes a person's groups by rewriting it. The login name is the subject (`sub`);
// `username` (else the login name) is `preferred_username`. The provider's own development login form takes any
// name and password; a name not in the file signs in with no groups, and one
// marked {"gone": true} is a person the provider no longer has: it refuses their
// refresh tokens (`invalid_grant`) and their sign-in. Refresh tokens are given at
// every sign-in (as Keycloak does, without offline_access), live on after the
// provider's own session, and are rotated at every use (as Okta and Entra ID do).
// Prints "listening on PORT" once it answers.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import Provider from 'oidc-provider';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));

function person(name) {
  const people = JSON.parse(readFileSync(settings.people, 'utf8'));
  return Object.hasOwn(people, name) ? people[name] : {};
}

const SCOPES = 'openid profile email';

const provider = new Provider(settings.issuer, {
  clients: [
    {
      client_id: settings.client_id,
      client_secret: settings.client_secret,
      redirect_uris: [settings.redirect_uri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  // Every client must send a PKCE challenge (S256 is the only method offered).
  pkce: { required: () => true },
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name', 'groups'],
    email: ['email', 'email_verified'],
  },
  // The claims in the ID token itself, as most providers send groups.
  conformIdTokenClaims: false,
  // The sign-in's subject is the login name typed; its claims are read now.
  async findAccount(_ctx, sub) {
    if (person(sub).gone) {
      return undefined;
    }
    return {
      accountId: sub,
      async claims() {
        const found = person(sub);
        return {
          sub,
          preferred_username: found.username ?? sub,
          name: sub,
          email: found.email ?? `${sub}@example.test`,
          email_verified: true,
          groups: found.groups ?? [],
        };
      },
    };
  },
  // A first-party client: no consent page, every scope asked for is granted.
  async loadExistingGrant(ctx) {
    const existing =
      ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (existing) {
      return ctx.oidc.provider.Grant.find(existing);
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(SCOPES);
    grant.addOIDCClaims(['preferred_username', 'name', 'groups', 'email', 'email_verified']);
    await grant.save();
    return grant;
  },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  expiresWithSession: async () => false,
  rotateRefreshToken: () => true,
  cookies: { keys: [settings.client_secret + '-cookies'] },
  features: { devInteractions: { enabled: true } },
});

const tls = { cert: readFileSync(settings.cert), key: readFileSync(settings.key) };
https.createServer(tls, provider.callback()).listen(settings.port, '127.0.0.1', () => {
  console.log(`listening on ${settings.port}`);
});
