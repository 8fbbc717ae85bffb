// Shared, memoised GET /api/chat/info. Resolves to the info object or null
// (never rejects), so callers can always fall back to sensible defaults.

let pending = null;

export function getInfo() {
  if (!pending) {
    pending = fetch('/api/chat/info', { cache: 'no-store', credentials: 'omit' })
      .then((r) => (r.ok ? r.json() : null))
      .catch(() => null);
  }
  return pending;
}
