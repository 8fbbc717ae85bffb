// Evidence in the victim chat: files and URLs go to /api/chat/evidence/* (see
// helpline/evidence/routes.py), and the list of what was received is shown.
// Everything from the server or the user is rendered with textContent. No
// previews or thumbnails of the victim's own files: nothing is kept on the device.

import { t, getLocale, onLangChange, setText } from '../common/i18n.js';
import { api, errorOf } from '../common/api.js';

const $ = (id) => document.getElementById(id);

const E = {
  token: () => null,
  onLostAccess: () => {},
  items: [], // last list from the server
  loaded: false,
  listSeq: 0, // newest list request; older answers are dropped
  queue: [], // [{file, line}] waiting for upload, one after another
  running: false,
  xhr: null,
  generation: 0, // bumped by reset: answers of a forgotten conversation are dropped
  urlBusy: false,
};

// ---------------------------------------------------------------- formatting

function formatSize(bytes) {
  const n = Number(bytes);
  if (!Number.isFinite(n) || n < 0) return '';
  const fmt = (x) => new Intl.NumberFormat(getLocale(), { maximumFractionDigits: 1 }).format(x);
  if (n < 1024 * 1024) return t('evidence.size_kb', { n: fmt(Math.max(1, Math.round(n / 1024))) });
  return t('evidence.size_mb', { n: fmt(Math.round((n / (1024 * 1024)) * 10) / 10) });
}

function formatWhen(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const locale = getLocale();
  const time = d.toLocaleTimeString(locale, { hour: '2-digit', minute: '2-digit' });
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return t('evidence.time_today', { time });
  const date = d.toLocaleDateString(locale, {
    day: 'numeric',
    month: 'short',
    year: d.getFullYear() === now.getFullYear() ? undefined : 'numeric',
  });
  return t('evidence.time_other', { date, time });
}

function typeKey(item) {
  const media = typeof item.media_type === 'string' ? item.media_type : '';
  if (item.kind === 'url') {
    if (item.status === 'stored') return 'evidence.type_url_snapshot';
    if (item.status === 'destroyed') return 'evidence.type_url_destroyed';
    return 'evidence.type_url';
  }
  if (item.kind === 'hash_only') return 'evidence.type_hash_only';
  if (item.status === 'destroyed') return 'evidence.type_destroyed';
  if (media.startsWith('image/')) return 'evidence.type_image';
  if (media.startsWith('video/')) return 'evidence.type_video';
  if (media === 'application/pdf') return 'evidence.type_pdf';
  if (media.startsWith('text/')) return 'evidence.type_text';
  return 'evidence.type_file';
}

// ---------------------------------------------------------------- panel

function isOpen() {
  return !$('evidence-panel').hidden;
}

function openPanel() {
  $('evidence-panel').hidden = false;
  $('view-chat').classList.add('evidence-open');
  $('attach-button').setAttribute('aria-expanded', 'true');
  $('evidence-panel').scrollIntoView({ block: 'nearest' });
  $('evidence-title').focus();
  refreshEvidence();
}

function closePanel({ restoreFocus = true } = {}) {
  $('evidence-panel').hidden = true;
  $('view-chat').classList.remove('evidence-open');
  $('attach-button').setAttribute('aria-expanded', 'false');
  const btn = $('attach-button');
  if (restoreFocus && btn && !btn.hidden && btn.offsetParent !== null) btn.focus();
}

// ---------------------------------------------------------------- list of what was received

function renderList() {
  const list = $('evidence-list');
  const state = $('evidence-list-state');
  const items = [...E.items].reverse(); // newest first
  const rows = items.map((item) => {
    const li = document.createElement('li');
    li.className = 'evidence-item';
    li.dataset.kind = typeof item.kind === 'string' ? item.kind : '';
    if (item.status === 'destroyed') li.classList.add('destroyed');

    const name = document.createElement('p');
    name.className = 'evidence-name';
    const label =
      (typeof item.filename === 'string' && item.filename) || (typeof item.url === 'string' && item.url) || '';
    if (label) name.textContent = label;
    else setText(name, 'evidence.no_name');

    const meta = document.createElement('p');
    meta.className = 'evidence-meta';
    const type = document.createElement('span');
    type.textContent = t(typeKey(item));
    meta.append(type);
    if (item.kind === 'file' && item.status === 'stored' && item.size != null) {
      const size = formatSize(item.size);
      if (size) {
        const s = document.createElement('span');
        s.textContent = size;
        meta.append(s);
      }
    }
    const when = formatWhen(item.captured_at);
    if (when) {
      const time = document.createElement('span');
      time.textContent = when;
      meta.append(time);
    }
    li.append(name, meta);
    return li;
  });
  list.replaceChildren(...rows);
  if (rows.length) {
    state.removeAttribute('data-i18n');
    state.textContent = '';
  } else if (E.loaded) {
    setText(state, 'evidence.list_empty');
  }
}

export async function refreshEvidence() {
  const tok = E.token();
  if (!tok) return;
  const seq = ++E.listSeq;
  const generation = E.generation;
  const state = $('evidence-list-state');
  if (!E.loaded) setText(state, 'evidence.list_loading');
  try {
    const { status, data } = await api('/api/chat/evidence', { token: tok });
    if (seq !== E.listSeq || generation !== E.generation) return;
    if (status === 200 && data && Array.isArray(data.items)) {
      E.items = data.items.filter((i) => i && typeof i === 'object');
      E.loaded = true;
      renderList();
    } else if (status !== 401) {
      // 401: the chat's own connection notices a lost conversation and handles it.
      if (!E.items.length) setText(state, 'evidence.list_failed');
    }
  } catch {
    if (seq === E.listSeq && generation === E.generation && !E.items.length) setText(state, 'evidence.list_failed');
  }
}

// ---------------------------------------------------------------- files

function fileErrorKey(status, code) {
  if (status === 0) return 'evidence.error_network';
  if (status === 413 || code === 'too_large') return 'evidence.error_too_large';
  if (code === 'unsupported_type') return 'evidence.error_unsupported';
  if (code === 'possible_minor') return 'evidence.error_possible_minor';
  if (status === 429 || code === 'rate_limited') return 'evidence.error_rate_limited';
  if (status === 422 || code === 'invalid') return 'evidence.error_invalid_file';
  return 'evidence.error_generic';
}

function progressLine(file) {
  const li = document.createElement('li');
  li.className = 'evidence-upload';
  li.dataset.state = 'queued';

  const name = document.createElement('span');
  name.className = 'evidence-upload-name';
  name.textContent = file.name || '';
  if (!file.name) setText(name, 'evidence.no_name');

  const size = document.createElement('span');
  size.className = 'evidence-upload-size';
  size.dataset.bytes = String(file.size);
  size.textContent = formatSize(file.size);

  const bar = document.createElement('progress');
  bar.className = 'evidence-bar';
  bar.max = 100;
  bar.setAttribute('aria-hidden', 'true');
  bar.hidden = true;

  const state = document.createElement('span');
  state.className = 'evidence-upload-state';
  setText(state, 'evidence.upload_queued');

  const pct = document.createElement('span');
  pct.className = 'evidence-upload-pct';
  pct.setAttribute('aria-hidden', 'true');

  li.append(name, size, bar, state, pct);
  return li;
}

function setLineState(li, state, key) {
  li.dataset.state = state;
  setText(li.querySelector('.evidence-upload-state'), key);
  const bar = li.querySelector('.evidence-bar');
  bar.hidden = state !== 'uploading';
  if (state !== 'uploading') li.querySelector('.evidence-upload-pct').textContent = '';
}

function setLineProgress(li, fraction) {
  const pct = Math.max(0, Math.min(100, Math.round(fraction * 100)));
  li.querySelector('.evidence-bar').value = pct;
  li.querySelector('.evidence-upload-pct').textContent = `${pct}%`;
}

function sendFile(file, tok, onProgress) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    E.xhr = xhr;
    const done = (result) => {
      if (E.xhr === xhr) E.xhr = null;
      resolve(result);
    };
    xhr.open('POST', '/api/chat/evidence/files');
    xhr.withCredentials = false;
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.setRequestHeader('Authorization', `Bearer ${tok}`);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && e.total > 0) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => {
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        data = null;
      }
      done({ status: xhr.status, data });
    };
    xhr.onerror = () => done({ status: 0, data: null });
    xhr.ontimeout = () => done({ status: 0, data: null });
    xhr.onabort = () => done({ status: -1, data: null });
    const form = new FormData();
    form.append('file', file, file.name || 'file');
    try {
      xhr.send(form); // the browser sets the multipart Content-Type with its boundary
    } catch {
      done({ status: 0, data: null });
    }
  });
}

async function runQueue() {
  if (E.running) return;
  E.running = true;
  const generation = E.generation;
  try {
    while (E.queue.length && generation === E.generation) {
      const { file, line } = E.queue.shift();
      const tok = E.token();
      if (!tok) {
        E.onLostAccess();
        return;
      }
      setLineState(line, 'uploading', 'evidence.upload_busy');
      setLineProgress(line, 0);
      const { status, data } = await sendFile(file, tok, (f) => setLineProgress(line, f));
      if (generation !== E.generation || status === -1) return;
      if (status === 201 || status === 200) {
        setLineState(line, 'done', 'evidence.upload_done');
        refreshEvidence();
        continue;
      }
      if (status === 401) {
        E.onLostAccess();
        return;
      }
      const code = errorOf(data).code;
      const key = fileErrorKey(status, code);
      setLineState(line, 'failed', key);
      if (code === 'possible_minor') {
        // No file will be stored for this case: say so for the rest as well.
        for (const rest of E.queue) setLineState(rest.line, 'failed', key);
        E.queue = [];
      }
    }
  } finally {
    if (generation === E.generation) E.running = false;
  }
}

function onFilesChosen() {
  const input = $('evidence-file');
  const files = input.files ? [...input.files] : [];
  if (!files.length) return;
  const progress = $('evidence-progress');
  // A new batch while nothing is running: the lines of the previous one go.
  if (!E.running && !E.queue.length) progress.replaceChildren();
  for (const file of files) {
    const line = progressLine(file);
    progress.append(line);
    E.queue.push({ file, line });
  }
  input.value = ''; // lets the same file be chosen again, and keeps no reference around
  runQueue();
}

// ---------------------------------------------------------------- URLs

function normaliseUrl(raw) {
  let value = raw.trim();
  if (!value) return null;
  // "instagram.com/…" pasted without a scheme: assume https.
  if (!/^[a-z][a-z0-9+.-]*:/i.test(value)) value = `https://${value.replace(/^\/+/, '')}`;
  try {
    const u = new URL(value);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return { error: 'evidence.url_invalid' };
    if (!u.hostname) return { error: 'evidence.url_invalid' };
    return { url: value };
  } catch {
    return { error: 'evidence.url_invalid' };
  }
}

function urlErrorKey(status, code) {
  if (code === 'url_refused') return 'evidence.error_url_refused';
  if (status === 502 || code === 'snapshot_failed') return 'evidence.error_snapshot_failed';
  if (status === 413 || code === 'too_large') return 'evidence.error_url_too_large';
  if (status === 429 || code === 'rate_limited') return 'evidence.error_rate_limited';
  if (status === 422 || code === 'invalid') return 'evidence.error_url_refused';
  return 'evidence.error_url_generic';
}

async function submitUrl(e) {
  e.preventDefault();
  if (E.urlBusy) return;
  const input = $('evidence-url');
  const status = $('evidence-url-status');
  const btn = $('evidence-url-submit');
  status.classList.remove('error', 'ok');
  const checked = normaliseUrl(input.value);
  if (!checked || checked.error) {
    status.classList.add('error');
    setText(status, checked ? checked.error : 'evidence.url_missing');
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    return;
  }
  input.removeAttribute('aria-invalid');
  const tok = E.token();
  if (!tok) {
    E.onLostAccess();
    return;
  }
  const generation = E.generation;
  E.urlBusy = true;
  btn.disabled = true;
  btn.setAttribute('aria-busy', 'true');
  setText(status, 'evidence.url_busy');
  try {
    const res = await api('/api/chat/evidence/urls', { method: 'POST', body: { url: checked.url }, token: tok });
    if (generation !== E.generation) return;
    if (res.status === 201 || res.status === 200) {
      status.classList.add('ok');
      const stored = res.data && res.data.status === 'stored';
      setText(status, stored ? 'evidence.url_done_stored' : 'evidence.url_done_recorded');
      input.value = '';
      refreshEvidence();
    } else if (res.status === 401) {
      E.onLostAccess();
    } else {
      status.classList.add('error');
      setText(status, urlErrorKey(res.status, errorOf(res.data).code));
    }
  } catch {
    if (generation !== E.generation) return;
    status.classList.add('error');
    setText(status, 'evidence.error_network');
  } finally {
    if (generation === E.generation) {
      E.urlBusy = false;
      btn.disabled = false;
      btn.removeAttribute('aria-busy');
    }
  }
}

// ---------------------------------------------------------------- lifecycle

// Forget everything shown about the evidence of this conversation.
export function resetEvidence() {
  E.generation += 1;
  E.listSeq += 1;
  const xhr = E.xhr;
  E.xhr = null;
  if (xhr) {
    try {
      xhr.abort();
    } catch {
      /* ignore */
    }
  }
  E.queue = [];
  E.running = false;
  E.urlBusy = false;
  E.items = [];
  E.loaded = false;
  $('evidence-file').value = '';
  $('evidence-url').value = '';
  $('evidence-url').removeAttribute('aria-invalid');
  const status = $('evidence-url-status');
  status.classList.remove('error', 'ok');
  status.removeAttribute('data-i18n');
  status.textContent = '';
  const btn = $('evidence-url-submit');
  btn.disabled = false;
  btn.removeAttribute('aria-busy');
  $('evidence-progress').replaceChildren();
  $('evidence-list').replaceChildren();
  const state = $('evidence-list-state');
  state.removeAttribute('data-i18n');
  state.textContent = '';
  closePanel({ restoreFocus: false });
}

export function initEvidence({ token, onLostAccess }) {
  E.token = token;
  E.onLostAccess = onLostAccess;
  $('attach-button').addEventListener('click', () => (isOpen() ? closePanel() : openPanel()));
  $('evidence-close').addEventListener('click', () => closePanel());
  $('evidence-panel').addEventListener('keydown', (e) => {
    if (e.key === 'Escape' || e.key === 'Esc') closePanel();
  });
  $('evidence-file').addEventListener('change', onFilesChosen);
  $('evidence-url-form').addEventListener('submit', submitUrl);
  $('evidence-url').addEventListener('input', () => $('evidence-url').removeAttribute('aria-invalid'));
  onLangChange(() => {
    if (E.items.length) renderList();
    for (const el of $('evidence-progress').querySelectorAll('.evidence-upload-size')) {
      el.textContent = formatSize(el.dataset.bytes);
    }
  });
}
