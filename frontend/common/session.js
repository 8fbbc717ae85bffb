// Everything this tab remembers lives in sessionStorage under "helpline.*".
// No cookies, no localStorage, no IndexedDB.

export const KEYS = Object.freeze({
  token: 'helpline.token',
  reference: 'helpline.reference',
  pending: 'helpline.pending',
  receipt: 'helpline.receipt',
  lang: 'helpline.lang',
});

export function getItem(key) {
  try {
    return sessionStorage.getItem(key);
  } catch {
    return null;
  }
}

export function setItem(key, value) {
  try {
    sessionStorage.setItem(key, value);
  } catch {
    /* storage full or blocked: keep going in memory */
  }
}

export function removeItem(key) {
  try {
    sessionStorage.removeItem(key);
  } catch {
    /* ignore */
  }
}

export function getJSON(key, fallback) {
  const raw = getItem(key);
  if (raw == null) return fallback;
  try {
    return JSON.parse(raw);
  } catch {
    return fallback;
  }
}

export function setJSON(key, value) {
  setItem(key, JSON.stringify(value));
}

// Forget the conversation (token, reference, unsent messages, receipt).
// The chosen language is kept unless `everything` is true.
export function forgetConversation(everything = false) {
  if (everything) {
    try {
      sessionStorage.clear();
    } catch {
      /* ignore */
    }
    return;
  }
  for (const key of [KEYS.token, KEYS.reference, KEYS.pending, KEYS.receipt]) removeItem(key);
}
