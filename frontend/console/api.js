// Staff HTTP: same-origin cookie session, X-CSRF-Token on every POST. A FormData body goes as multipart.
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

let csrfToken = null;

export function clearCsrf() {
  csrfToken = null;
}

async function request(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (typeof FormData !== 'undefined' && body instanceof FormData) {
    init.body = body; // multipart: the browser sets Content-Type with its boundary
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'network', String(e));
  }
  let data = null;
  if (res.status !== 204) {
    const text = await res.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
  }
  if (!res.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(res.status, err.code || `http_${res.status}`, err.message || '', err.details);
  }
  return data;
}

export async function fetchMe() {
  const me = await request('GET', '/api/staff/me');
  csrfToken = (me && me.csrf_token) || null;
  return me;
}

/** One call; a POST refused for its CSRF token fetches a fresh token and tries once more. */
export async function api(method, path, body) {
  try {
    return await request(method, path, body);
  } catch (e) {
    if (method !== 'GET' && e instanceof ApiError && e.status === 403 && /csrf/i.test(e.code)) {
      await fetchMe();
      return request(method, path, body);
    }
    throw e;
  }
}
