// The console's only way to the server: the public /v1 API, the calls avn makes.
// The token lives in sessionStorage (one tab, gone when it closes); signing out forgets it.

const TOKEN_KEY = 'keyhaven.token';
const MINTED_KEY = 'keyhaven.token-minted';
const EMAIL_KEY = 'keyhaven.email';

/** An API error: the HTTP status, Aiven's `error_code` and its `message`. */
export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
  /** The token is not (or no longer) valid: the only case that signs the console out. */
  get signedOut() {
    return this.status === 401 || this.code === 'authentication_failed';
  }
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  get email() { return sessionStorage.getItem(EMAIL_KEY) || ''; },
  /** `minted`: the console got this token from a sign-in and revokes it on sign-out. */
  set(token, email, minted) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(EMAIL_KEY, email || '');
    if (minted) sessionStorage.setItem(MINTED_KEY, '1'); else sessionStorage.removeItem(MINTED_KEY);
  },
  get minted() { return sessionStorage.getItem(MINTED_KEY) === '1'; },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(MINTED_KEY);
    sessionStorage.removeItem(EMAIL_KEY);
  },
};

let onSignedOut = () => {};
/** Called when an answer says the token is not valid. */
export function whenSignedOut(f) { onSignedOut = f; }

/**
 * One API call. Resolves to `{status, body}` for a 2xx answer; rejects with an ApiError
 * otherwise (a network failure is an ApiError with status 0).
 */
export async function call(method, path, body, { token = session.token, auth = true } = {}) {
  const headers = { 'Accept': 'application/json' };
  if (auth && token) headers['Authorization'] = `aivenv1 ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, 'network', 'Keyhaven did not answer. Check that the server is running, then try again.');
  }
  const text = await resp.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (resp.ok) return { status: resp.status, body: json };
  const first = json && Array.isArray(json.errors) ? json.errors[0] : null;
  const code = (first && first.error_code) || (json && json.error_code) || `http_${resp.status}`;
  const message = (json && json.message) || `The server answered ${resp.status} ${resp.statusText}`;
  const err = new ApiError(resp.status, code, message, json);
  if (auth && err.signedOut) onSignedOut(err);
  throw err;
}

const enc = encodeURIComponent;

export const api = {
  signIn: (email, password) => call('POST', '/v1/userauth', { email, password }, { auth: false }),
  me: (token) => call('GET', '/v1/me', undefined, token ? { token } : {}),
  revoke: (token) => call('DELETE', `/v1/access_token/${enc(token)}`, undefined, { token }),
  projects: () => call('GET', '/v1/project'),
  services: (p) => call('GET', `/v1/project/${enc(p)}/service`),
  service: (p, s) => call('GET', `/v1/project/${enc(p)}/service/${enc(s)}`),
  createService: (p, req) => call('POST', `/v1/project/${enc(p)}/service`, req),
  updateService: (p, s, req) => call('PUT', `/v1/project/${enc(p)}/service/${enc(s)}`, req),
  deleteService: (p, s) => call('DELETE', `/v1/project/${enc(p)}/service/${enc(s)}`),
  integrations: (p, s) => call('GET', `/v1/project/${enc(p)}/service/${enc(s)}/integration`),
  deleteIntegration: (p, id, lossy) =>
    call('DELETE', `/v1/project/${enc(p)}/integration/${enc(id)}${lossy ? '?lossy=true' : ''}`),
  serviceType: (p) => call('GET', `/v1/project/${enc(p)}/service-types/valkey`),
  clouds: (p) => call('GET', `/v1/project/${enc(p)}/clouds`),
};
