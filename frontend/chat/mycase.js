// "Your data": the victim downloads a copy of their case (a readable page or JSON) and can
// delete everything, both on one page reached from the chat. API: docs/api/chat.md, the
// sections on `POST /api/chat/delete` and "The victim's own copy".
//
// A copy is fetched with the Bearer token (never a URL that carries it), not cached, handed to
// the browser as a Blob behind an object URL that is revoked right after the click, and kept
// nowhere else: nothing of it goes into sessionStorage or localStorage.

import { setText, getLang } from '../common/i18n.js';
import { api } from '../common/api.js';

const $ = (id) => document.getElementById(id);

const EXPORT_PATH = '/api/chat/case/export';
const FORMATS = {
  html: { query: '?format=html', accept: 'text/html', extension: 'html' },
  json: { query: '', accept: 'application/json', extension: 'json' },
};

const M = {
  token: () => null,
  reference: () => null,
  showView: () => {},
  onBack: () => {},
  onDeleted: () => {},
  onLostAccess: () => {},
  generation: 0, // bumped by reset: answers for a forgotten conversation are dropped
  busy: false,
};

// ---------------------------------------------------------------- helpers

function clearText(node) {
  node.removeAttribute('data-i18n');
  node.removeAttribute('data-i18n-args');
  node.textContent = '';
}

function downloadButtons() {
  return [$('mycase-download-html'), $('mycase-download-json')];
}

function renderDownloadButtons() {
  const allowed = $('mycase-understood').checked && !M.busy;
  for (const b of downloadButtons()) b.disabled = !allowed;
}

// The name the server gives the file, reduced to safe characters; else one made here.
function fileName(res, format) {
  const header = res.headers.get('Content-Disposition') || '';
  const found = /filename="?([^";]+)"?/i.exec(header);
  const given = found ? found[1].replace(/[^A-Za-z0-9._-]/g, '') : '';
  if (given && !given.startsWith('.')) return given;
  const ref = (M.reference() || '').replace(/[^A-Za-z0-9-]/g, '');
  return `case${ref ? `-${ref}` : ''}.${FORMATS[format].extension}`;
}

// Hand the file to the browser's own download; the object URL lives only for the click.
function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  link.rel = 'noopener';
  link.hidden = true;
  document.body.append(link);
  try {
    link.click();
  } finally {
    link.remove();
    URL.revokeObjectURL(url);
  }
}

// ---------------------------------------------------------------- download

async function download(format, button) {
  if (M.busy || !$('mycase-understood').checked) return;
  const tok = M.token();
  if (!tok) {
    M.onLostAccess();
    return;
  }
  const generation = M.generation;
  const { accept } = FORMATS[format];
  // the readable page comes in the language the victim reads the chat in
  const query = format === 'html' ? `${FORMATS.html.query}&lang=${encodeURIComponent(getLang())}` : FORMATS[format].query;
  clearText($('mycase-download-status'));
  clearText($('mycase-download-error'));
  M.busy = true;
  renderDownloadButtons();
  button.setAttribute('aria-busy', 'true');
  setText($('mycase-download-status'), 'mycase.download_busy');
  try {
    const res = await fetch(`${EXPORT_PATH}${query}`, {
      headers: { Accept: accept, Authorization: `Bearer ${tok}` },
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
    if (generation !== M.generation) return;
    if (res.status === 401 || res.status === 404) {
      // the token no longer works, or the case is gone
      M.onLostAccess();
      return;
    }
    if (!res.ok) {
      clearText($('mycase-download-status'));
      setText($('mycase-download-error'), 'mycase.download_failed');
      return;
    }
    const blob = await res.blob();
    if (generation !== M.generation) return;
    const name = fileName(res, format);
    save(blob, name);
    setText($('mycase-download-status'), 'mycase.downloaded', { name });
  } catch {
    if (generation !== M.generation) return;
    clearText($('mycase-download-status'));
    setText($('mycase-download-error'), 'common.error_network');
  } finally {
    if (generation === M.generation) {
      M.busy = false;
      button.removeAttribute('aria-busy');
      renderDownloadButtons();
    }
  }
}

// ---------------------------------------------------------------- delete

function showDeleteConfirm() {
  clearText($('mycase-delete-error'));
  $('mycase-delete-yes').disabled = false;
  $('mycase-confirm').hidden = false;
  $('mycase-delete').setAttribute('aria-expanded', 'true');
  $('mycase-confirm').scrollIntoView({ block: 'nearest' });
  $('mycase-confirm-title').focus();
}

function hideDeleteConfirm({ restoreFocus = true } = {}) {
  $('mycase-confirm').hidden = true;
  $('mycase-delete').setAttribute('aria-expanded', 'false');
  if (restoreFocus) $('mycase-delete').focus();
}

async function deleteCase() {
  const tok = M.token();
  if (!tok) {
    M.onLostAccess();
    return;
  }
  const generation = M.generation;
  const yes = $('mycase-delete-yes');
  yes.disabled = true;
  yes.setAttribute('aria-busy', 'true');
  clearText($('mycase-delete-error'));
  try {
    const { status } = await api('/api/chat/delete', { method: 'POST', body: { confirm: true }, token: tok });
    if (generation !== M.generation) return; // the "deleted" frame got here first
    if (status === 200 || status === 401 || status === 404 || status === 410) {
      // 401/404/410: the case is gone already; forget it here as well.
      M.onDeleted();
      return;
    }
    setText($('mycase-delete-error'), 'chat.delete_failed');
  } catch {
    if (generation !== M.generation) return;
    setText($('mycase-delete-error'), 'chat.delete_failed');
  } finally {
    if (generation === M.generation) {
      yes.disabled = false;
      yes.removeAttribute('aria-busy');
    }
  }
}

// ---------------------------------------------------------------- the page

function clearPage() {
  $('mycase-understood').checked = false;
  M.busy = false;
  for (const b of downloadButtons()) b.removeAttribute('aria-busy');
  renderDownloadButtons();
  clearText($('mycase-download-status'));
  clearText($('mycase-download-error'));
  clearText($('mycase-delete-error'));
  $('mycase-delete-yes').disabled = false;
  $('mycase-delete-yes').removeAttribute('aria-busy');
  hideDeleteConfirm({ restoreFocus: false });
}

/** Show the page for the conversation this tab is logged in to. */
export function openMycase() {
  if (!M.token()) {
    M.onLostAccess();
    return;
  }
  clearPage();
  const ref = M.reference();
  if (ref) setText($('mycase-reference'), 'chat.reference', { reference: ref });
  else clearText($('mycase-reference'));
  M.showView('mycase');
}

/** Forget everything on the page (the conversation was left, deleted or lost). */
export function resetMycase() {
  M.generation += 1;
  clearPage();
  clearText($('mycase-reference'));
}

export function initMycase({ token, reference, showView, onBack, onDeleted, onLostAccess }) {
  Object.assign(M, { token, reference, showView, onBack, onDeleted, onLostAccess });
  $('mycase-understood').addEventListener('change', renderDownloadButtons);
  $('mycase-download-html').addEventListener('click', (e) => download('html', e.currentTarget));
  $('mycase-download-json').addEventListener('click', (e) => download('json', e.currentTarget));
  $('mycase-delete').addEventListener('click', () => {
    if ($('mycase-confirm').hidden) showDeleteConfirm();
    else hideDeleteConfirm();
  });
  $('mycase-delete-yes').addEventListener('click', deleteCase);
  $('mycase-delete-no').addEventListener('click', () => hideDeleteConfirm());
  $('mycase-confirm').addEventListener('keydown', (e) => {
    if (e.key === 'Escape') hideDeleteConfirm();
  });
  $('mycase-back').addEventListener('click', () => M.onBack());
}
