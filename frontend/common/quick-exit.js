// Quick exit: the visible #quick-exit button, or Escape pressed twice within
// one second. Best-effort logout, forget this tab's session storage, blank the
// page and replace it (no history entry) with a neutral site.

import { getInfo } from './info.js';
import { KEYS } from './session.js';

export const FALLBACK_EXIT_URL = 'https://www.weeronline.nl/';

let exitUrl = FALLBACK_EXIT_URL;
let lastEscape = -Infinity;
let leaving = false;
let wired = false;

function usableUrl(value) {
  if (typeof value !== 'string' || !value) return null;
  try {
    const u = new URL(value);
    return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
  } catch {
    return null;
  }
}

export function quickExit() {
  if (leaving) return;
  leaving = true;
  let token = null;
  try {
    token = sessionStorage.getItem(KEYS.token);
  } catch {
    /* ignore */
  }
  if (token) {
    try {
      fetch('/api/chat/logout', {
        method: 'POST',
        keepalive: true,
        cache: 'no-store',
        credentials: 'omit',
        headers: { Authorization: `Bearer ${token}` },
      }).catch(() => {});
    } catch {
      /* best effort */
    }
  }
  try {
    sessionStorage.clear();
  } catch {
    /* ignore */
  }
  try {
    document.title = '';
    document.body.replaceChildren();
  } catch {
    /* ignore */
  }
  location.replace(exitUrl);
}

export function initQuickExit() {
  if (wired) return;
  wired = true;
  getInfo().then((info) => {
    const url = usableUrl(info && info.quick_exit_url);
    if (url) exitUrl = url;
  });
  const btn = document.getElementById('quick-exit');
  if (btn) btn.addEventListener('click', quickExit);
  document.addEventListener(
    'keydown',
    (e) => {
      if (e.key !== 'Escape' && e.key !== 'Esc') return;
      if (e.repeat) return;
      const now = performance.now();
      if (now - lastEscape <= 1000) quickExit();
      else lastEscape = now;
    },
    true,
  );
}
