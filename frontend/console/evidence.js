// A case's evidence, inside its chat pane: the list (blurred previews, revealed only on request),
// adding a file, a URL or an image's hashes only, "possible minor depicted", and the export
// (supervisors and admins). Every preview and reveal is recorded server-side, so previews load
// only while the section is open, each at most once, and the unblurred one only after a confirm.
import { api, ApiError } from './api.js';
import { setT, has, currentLang } from './strings.js';
import { h, formatClock, confirmDialog } from './dom.js';

const EXPORT_ROLES = new Set(['supervisor', 'admin']);
const SNAPSHOT_TYPE = 'application/x-helpline-snapshot';

let counter = 0;

/** A span labelled by an i18n key if there is one, else the raw server value as text. */
function label(cls, key, raw) {
  return has(key) ? h('span', { class: cls, i18n: key }) : h('span', { class: cls, text: raw || '' });
}

function shortHash(hex, keep = 16) {
  const s = String(hex || '');
  return s.length > keep + 1 ? `${s.slice(0, keep)}\u2026` : s;
}

function sizeText(bytes) {
  const n = Number(bytes);
  if (!Number.isFinite(n) || n < 0) return '';
  const fmt = (v, digits) =>
    new Intl.NumberFormat(currentLang() === 'en' ? 'en-GB' : 'nl-NL', { maximumFractionDigits: digits }).format(v);
  if (n < 1024) return `${fmt(n, 0)} B`;
  if (n < 1024 * 1024) return `${fmt(n / 1024, 1)} KB`;
  if (n < 1024 * 1024 * 1024) return `${fmt(n / (1024 * 1024), 1)} MB`;
  return `${fmt(n / (1024 * 1024 * 1024), 2)} GB`;
}

export class EvidenceSection {
  /**
   * pane: the ChatPane (for its id, reference and element); me: GET /api/staff/me;
   * hooks: { onSessionLost() }.
   */
  constructor({ pane, me, hooks }) {
    this.pane = pane;
    this.me = me || {};
    this.hooks = hooks;
    this.base = `/api/staff/cases/${encodeURIComponent(pane.id)}`;
    this.items = [];
    this.rows = new Map(); // item id -> {sig, el, ...}
    this.loaded = false;
    this.loading = false;
    this.again = false;
    this.busy = false;
    this.open = false;
    this.minor = Boolean(pane.info && pane.info.possible_minor);
    this.referral = '';
    this.destroyedCount = null;
    this.forbidden = false;
    this.disabled = false;
    this.build();
    this.applyMinor(); // again by the pane once its element exists
    this.load();
  }

  get ref() {
    return { ref: this.pane.reference };
  }

  // --- building ----------------------------------------------------------------------------

  build() {
    const n = ++counter;
    const id = `evidence-${n}`;
    this.toggle = h('button', { type: 'button', class: 'btn evidence-toggle', 'aria-expanded': 'false',
      'aria-controls': id, i18n: 'evidence.toggle_unknown', onclick: () => this.setOpen(!this.open) }); // prettier-ignore

    // shown at pane level (not inside the collapsible section): it must not be missed
    this.minorDestroyedEl = h('p', { class: 'minor-banner-destroyed', hidden: true });
    this.minorReferralEl = h('p', { class: 'minor-referral', lang: 'en', hidden: true });
    this.banner = h('div', { class: 'minor-banner', role: 'alert', tabindex: '-1', hidden: true },
      h('p', { class: 'minor-banner-title', i18n: 'evidence.minor_banner_title' }),
      h('p', { class: 'minor-banner-text', i18n: 'evidence.minor_banner_text' }),
      this.minorDestroyedEl, this.minorReferralEl); // prettier-ignore

    this.refreshBtn = h('button', { type: 'button', class: 'btn btn-link evidence-refresh', i18n: 'evidence.refresh',
      onclick: () => this.load() }); // prettier-ignore
    this.exportLink = null;
    if (EXPORT_ROLES.has(this.me.role)) {
      this.exportLink = h('a', { class: 'btn evidence-export', href: `${this.base}/evidence/export`, download: true,
        i18n: 'evidence.export', 'i18n-title': ['evidence.export_title', this.ref] }); // prettier-ignore
    }
    this.msgEl = h('p', { class: 'evidence-msg', role: 'status', 'aria-live': 'polite', hidden: true });
    this.listEl = h('ul', { class: 'evidence-list', 'aria-labelledby': `${id}-title` });
    this.emptyEl = h('p', { class: 'evidence-empty', i18n: 'evidence.empty', hidden: true });

    // add a file (stored encrypted, hashed)
    const fileId = `${id}-file`;
    this.fileInput = h('input', { type: 'file', id: fileId, class: 'evidence-file',
      'aria-describedby': `${fileId}-hint`, onchange: () => this.uploadFile() }); // prettier-ignore
    this.fileHint = h('p', { class: 'evidence-hint', id: `${fileId}-hint`, i18n: 'evidence.file_hint' });
    this.fileField = h('div', { class: 'evidence-field evidence-add-file' },
      h('label', { for: fileId, i18n: 'evidence.file_label' }), this.fileInput, this.fileHint); // prettier-ignore
    this.filesOffEl = h('p', { class: 'evidence-hint evidence-files-off', i18n: 'evidence.files_off', hidden: true });

    // add a URL (snapshot, unless a minor may be depicted)
    const urlId = `${id}-url`;
    this.urlInput = h('input', { type: 'url', id: urlId, class: 'evidence-url', inputmode: 'url', autocomplete: 'off',
      spellcheck: 'false', autocapitalize: 'none', 'i18n-placeholder': 'evidence.url_placeholder',
      'aria-describedby': `${urlId}-hint` }); // prettier-ignore
    this.urlBtn = h('button', { type: 'submit', class: 'btn evidence-url-submit', i18n: 'evidence.url_submit' });
    this.urlHint = h('p', { class: 'evidence-hint', id: `${urlId}-hint`, i18n: 'evidence.url_hint' });
    this.urlForm = h('form', { class: 'evidence-field evidence-add-url', novalidate: true,
      onsubmit: (e) => { e.preventDefault(); this.addUrl(); } },
      h('label', { for: urlId, i18n: 'evidence.url_label' }),
      h('div', { class: 'evidence-row' }, this.urlInput, this.urlBtn), this.urlHint); // prettier-ignore

    // register an image by its hashes only (the server hashes and discards it)
    const hashId = `${id}-hash`;
    this.hashInput = h('input', { type: 'file', id: hashId, class: 'evidence-hash-file', accept: 'image/*',
      'aria-describedby': `${hashId}-hint`, onchange: () => this.hashFile() }); // prettier-ignore
    this.hashForm = h('details', { class: 'evidence-hash' },
      h('summary', { i18n: 'evidence.hash_title' }),
      h('form', { class: 'evidence-field evidence-hash-form', onsubmit: (e) => e.preventDefault() },
        h('p', { class: 'evidence-hint', id: `${hashId}-hint`, i18n: 'evidence.hash_help' }),
        h('label', { for: hashId, i18n: 'evidence.hash_label' }), this.hashInput)); // prettier-ignore

    // possible minor depicted
    this.minorBtn = h('button', { type: 'button', class: 'btn btn-quiet-danger mark-minor', i18n: 'evidence.mark_minor',
      'aria-describedby': `${id}-minor-hint`, onclick: () => this.markMinor() }); // prettier-ignore
    this.minorBox = h('div', { class: 'evidence-field evidence-minor' }, this.minorBtn,
      h('p', { class: 'evidence-hint', id: `${id}-minor-hint`, i18n: 'evidence.mark_minor_hint' })); // prettier-ignore

    this.addEl = h('div', { class: 'evidence-add' }, this.fileField, this.filesOffEl, this.urlForm, this.hashForm,
      this.minorBox); // prettier-ignore

    this.el = h('section', { class: 'evidence', id, 'aria-labelledby': `${id}-title`, hidden: true },
      h('div', { class: 'evidence-head' },
        h('h3', { class: 'evidence-title', id: `${id}-title`, i18n: ['evidence.title', this.ref] }),
        this.refreshBtn, this.exportLink),
      this.msgEl, this.listEl, this.emptyEl, this.addEl); // prettier-ignore
  }

  setOpen(open) {
    this.open = open;
    this.toggle.setAttribute('aria-expanded', String(open));
    this.el.hidden = !open;
    this.pane.el.classList.toggle('evidence-open', open);
    if (open) {
      this.loadPreviews();
      this.load();
    } else {
      for (const row of this.rows.values()) this.hidePreview(row, false);
    }
  }

  /** The pane's reference changed. */
  relabel() {
    const title = this.el.querySelector('.evidence-title');
    if (title) setT(title, 'evidence.title', this.ref);
    if (this.exportLink) setT(this.exportLink, 'evidence.export_title', this.ref, 'title');
  }

  /** Fresh case info (e.g. the case was just claimed): retry a load that was refused. */
  caseChanged(info) {
    if (info && info.possible_minor && !this.minor) {
      this.minor = true;
      this.applyMinor();
    }
    if (this.forbidden && !this.disabled && this.pane.mine) this.load();
  }

  /** The case is gone or no longer ours: nothing more to show or do. */
  disable(key) {
    this.disabled = true;
    for (const row of this.rows.values()) this.hidePreview(row, false);
    this.rows.clear();
    this.items = [];
    this.listEl.replaceChildren();
    this.emptyEl.hidden = true;
    this.addEl.hidden = true;
    this.refreshBtn.hidden = true;
    if (this.exportLink) this.exportLink.hidden = true;
    setT(this.toggle, 'evidence.toggle_unknown');
    this.say(key, undefined, 'info');
  }

  destroy() {
    for (const row of this.rows.values()) this.hidePreview(row, false);
    this.banner.remove();
  }

  // --- messages ----------------------------------------------------------------------------

  say(key, vars, tone = 'info') {
    setT(this.msgEl, key, vars);
    this.msgEl.dataset.tone = tone;
    this.msgEl.hidden = false;
  }

  quiet() {
    this.msgEl.hidden = true;
  }

  /** An API failure: the session may be gone, else a message per error code. */
  fail(e, overrides = {}) {
    if (e instanceof ApiError && e.status === 401) {
      this.hooks.onSessionLost();
      return;
    }
    const code = (e && e.code) || 'error';
    if (e instanceof ApiError && e.status === 403 && code !== 'possible_minor') {
      this.say('evidence.error.forbidden', undefined, 'error');
      return;
    }
    const key = overrides[code] || `evidence.error.${code}`;
    if (has(key)) this.say(key, { code }, 'error');
    else this.say('evidence.error', { code }, 'error');
  }

  // --- the list ----------------------------------------------------------------------------

  async load() {
    if (this.disabled) return;
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    this.el.setAttribute('aria-busy', 'true');
    try {
      const data = await api('GET', `${this.base}/evidence`);
      this.items = Array.isArray(data && data.items) ? data.items.filter((i) => i && typeof i.id === 'string') : [];
      this.loaded = true;
      if (this.forbidden) this.quiet();
      this.forbidden = false;
      if (!this.disabled) this.render();
    } catch (e) {
      this.forbidden = e instanceof ApiError && e.status === 403;
      if (!this.disabled) this.fail(e);
    } finally {
      this.loading = false;
      this.el.setAttribute('aria-busy', 'false');
      if (this.again) {
        this.again = false;
        this.load();
      }
    }
  }

  render() {
    const items = this.items;
    setT(this.toggle, 'evidence.toggle', { n: items.length });
    if (items.some((i) => i.possible_minor)) this.minor = true;
    this.applyMinor();
    const next = new Map();
    const els = [];
    for (const item of items) {
      const sig = JSON.stringify(item);
      const old = this.rows.get(item.id);
      const row = old && old.sig === sig ? old : this.buildRow(item, sig);
      next.set(item.id, row);
      els.push(row.el);
    }
    for (const [itemId, row] of this.rows) if (next.get(itemId) !== row) this.hidePreview(row, false);
    this.rows = next;
    // put the rows in order without detaching the ones that stay (keeps focus and loaded previews)
    let cursor = this.listEl.firstChild;
    for (const el of els) {
      if (el === cursor) cursor = cursor.nextSibling;
      else this.listEl.insertBefore(el, cursor);
    }
    while (cursor) {
      const after = cursor.nextSibling;
      cursor.remove();
      cursor = after;
    }
    this.emptyEl.hidden = items.length > 0;
    if (this.open) this.loadPreviews();
  }

  buildRow(item, sig) {
    const kind = String(item.kind || '');
    const status = String(item.status || '');
    const media = typeof item.media_type === 'string' ? item.media_type : '';
    const isImage = media.startsWith('image/');
    const row = { sig, item, previewUrl: null, blurred: null, revealed: null };
    const el = h('li', { class: 'evidence-item', 'data-item-id': item.id, 'data-kind': kind, 'data-status': status });
    row.el = el;

    const head = h('div', { class: 'evidence-item-head' },
      label('evidence-kind', `evidence.kind.${kind}`, kind),
      label(`evidence-state evidence-state-${status}`, `evidence.status.${status}`, status),
      item.possible_minor ? h('span', { class: 'evidence-minor-tag', i18n: 'evidence.minor_tag' }) : null); // prettier-ignore

    let name;
    if (kind === 'url' && item.url) name = h('p', { class: 'evidence-name', dir: 'auto', translate: 'no', text: item.url });
    else if (item.filename) name = h('p', { class: 'evidence-name', dir: 'auto', translate: 'no', text: item.filename });
    else if (kind === 'hash_only') name = h('p', { class: 'evidence-name is-none', i18n: 'evidence.name_hash_only' });
    else name = h('p', { class: 'evidence-name is-none', i18n: 'evidence.name_none' });

    const facts = h('dl', { class: 'evidence-facts' });
    const fact = (key, ...dd) => facts.append(h('dt', { i18n: key }), h('dd', {}, ...dd));
    if (media) {
      fact('evidence.fact.type', media === SNAPSHOT_TYPE ? h('span', { i18n: 'evidence.snapshot' }) : h('span', { text: media }));
    }
    if (item.size !== null && item.size !== undefined) fact('evidence.fact.size', sizeText(item.size));
    const by = String(item.captured_by || '');
    const captured = [label('evidence-by', `evidence.by.${by}`, by)];
    if (item.channel) captured.push(' \u00b7 ', label('evidence-channel', `evidence.channel.${item.channel}`, item.channel));
    if (item.captured_at) captured.push(' \u00b7 ', h('time', { datetime: item.captured_at, text: formatClock(item.captured_at) }));
    fact('evidence.fact.captured', ...captured);
    if (item.sha256) {
      fact('evidence.fact.sha256', h('code', { class: 'evidence-hash-value', title: item.sha256, translate: 'no',
        text: shortHash(item.sha256) })); // prettier-ignore
    }
    if (item.pdq) {
      const q = Number(item.pdq_quality);
      const low = Number.isFinite(q) && q < 50;
      fact('evidence.fact.pdq',
        h('code', { class: 'evidence-hash-value', title: item.pdq, translate: 'no', text: shortHash(item.pdq) }),
        ' \u00b7 ',
        h('span', { class: low ? 'evidence-quality is-low' : 'evidence-quality',
          i18n: [low ? 'evidence.pdq_quality_low' : 'evidence.pdq_quality', { n: Number.isFinite(q) ? q : '?' }] })); // prettier-ignore
    }

    const body = h('div', { class: 'evidence-item-body' }, facts);
    if (status === 'stored' && isImage && !item.possible_minor) body.append(this.buildPreview(row));
    el.append(head, name, body);
    return row;
  }

  buildPreview(row) {
    const item = row.item;
    row.previewUrl = `/api/staff/evidence/${encodeURIComponent(item.id)}/preview`;
    const what = { name: item.filename || '' };
    row.blurred = h('img', { class: 'evidence-preview', decoding: 'async', 'data-blurred': 'true',
      'i18n-alt': ['evidence.preview_alt', what] }); // prettier-ignore
    row.blurred.addEventListener('error', () => this.previewFailed(row, row.blurred));
    row.caption = h('figcaption', { class: 'evidence-preview-caption', i18n: 'evidence.preview_blurred' });
    row.revealBtn = h('button', { type: 'button', class: 'btn reveal', i18n: 'evidence.reveal',
      'i18n-aria-label': ['evidence.reveal_label', what], onclick: () => this.reveal(row) }); // prettier-ignore
    row.hideBtn = h('button', { type: 'button', class: 'btn hide-preview', i18n: 'evidence.hide',
      'i18n-aria-label': ['evidence.hide_label', what], hidden: true, onclick: () => this.hidePreview(row, true) }); // prettier-ignore
    row.fig = h('figure', { class: 'evidence-figure', 'data-revealed': 'false' }, row.blurred, row.caption,
      h('div', { class: 'evidence-preview-actions' }, row.revealBtn, row.hideBtn)); // prettier-ignore
    return row.fig;
  }

  /** Load the blurred previews that are not loaded yet (only while the section is open). */
  loadPreviews() {
    for (const row of this.rows.values()) {
      if (row.blurred && !row.blurred.getAttribute('src') && !row.failed) row.blurred.src = row.previewUrl;
    }
  }

  previewFailed(row, img) {
    if (!img.isConnected || !img.getAttribute('src')) return;
    row.failed = true;
    img.removeAttribute('src');
    setT(row.caption, 'evidence.preview_failed');
    row.revealBtn.hidden = true;
  }

  async reveal(row) {
    if (!row.blurred || row.revealed) return;
    const ok = await confirmDialog({ title: 'evidence.reveal_title', text: 'evidence.reveal_text',
      yes: 'evidence.reveal_yes', vars: this.ref }); // prettier-ignore
    if (!ok || !row.el.isConnected || row.revealed || !this.open) return;
    const img = h('img', { class: 'evidence-preview', decoding: 'async', 'data-blurred': 'false',
      'i18n-alt': ['evidence.revealed_alt', { name: row.item.filename || '' }] }); // prettier-ignore
    img.addEventListener('error', () => {
      if (row.revealed !== img) return;
      this.hidePreview(row, false);
      this.say('evidence.reveal_failed', undefined, 'error');
    });
    img.src = `${row.previewUrl}?reveal=1`;
    row.revealed = img;
    row.blurred.replaceWith(img); // the blurred one is kept (loaded) to swap back without a new request
    row.fig.dataset.revealed = 'true';
    setT(row.caption, 'evidence.preview_revealed');
    row.revealBtn.hidden = true;
    row.hideBtn.hidden = false;
    row.hideBtn.focus();
  }

  hidePreview(row, focus) {
    if (!row.revealed) return;
    const img = row.revealed;
    row.revealed = null;
    img.replaceWith(row.blurred);
    img.removeAttribute('src');
    row.fig.dataset.revealed = 'false';
    setT(row.caption, row.failed ? 'evidence.preview_failed' : 'evidence.preview_blurred');
    row.hideBtn.hidden = true;
    row.revealBtn.hidden = Boolean(row.failed);
    if (focus) row.revealBtn.focus();
  }

  // --- possible minor ----------------------------------------------------------------------

  applyMinor() {
    const m = this.minor;
    this.banner.hidden = !m;
    this.toggle.classList.toggle('has-minor', m);
    if (this.pane.el) this.pane.el.classList.toggle('is-minor', m);
    this.fileField.hidden = m;
    this.filesOffEl.hidden = !m;
    this.minorBox.hidden = m;
    setT(this.urlHint, m ? 'evidence.url_hint_minor' : 'evidence.url_hint');
    this.minorReferralEl.textContent = this.referral;
    this.minorReferralEl.hidden = !this.referral;
    if (this.destroyedCount !== null) setT(this.minorDestroyedEl, 'evidence.minor_destroyed', { n: this.destroyedCount });
    this.minorDestroyedEl.hidden = this.destroyedCount === null;
  }

  async markMinor() {
    if (this.busy || this.minor || this.disabled) return;
    const stored = this.items.filter((i) => i.status === 'stored').length;
    const ok = await confirmDialog({ title: 'evidence.minor_title', text: 'evidence.minor_text',
      yes: 'evidence.minor_yes', vars: { ...this.ref, n: stored } }); // prettier-ignore
    if (!ok) return;
    await this.act('evidence.minor_busy', undefined, () => api('POST', `${this.base}/possible-minor`), (r) => {
      this.minor = true;
      this.referral = r && typeof r.referral === 'string' ? r.referral : '';
      this.destroyedCount = r && Number.isInteger(r.destroyed) ? r.destroyed : null;
      this.applyMinor();
      this.quiet();
      this.banner.focus();
    });
  }

  // --- adding ------------------------------------------------------------------------------

  /** One POST: a busy message, the call, then a refreshed list; false if it failed or was refused. */
  async act(busyKey, busyVars, call, done, overrides) {
    if (this.busy) {
      this.say('evidence.wait', undefined, 'info');
      return false;
    }
    this.busy = true;
    this.el.classList.add('is-busy');
    this.say(busyKey, busyVars, 'info');
    let ok = false;
    try {
      const r = await call();
      ok = true;
      done(r);
    } catch (e) {
      this.fail(e, overrides);
    } finally {
      this.busy = false;
      this.el.classList.remove('is-busy');
    }
    await this.load();
    return ok;
  }

  async uploadFile() {
    const file = this.fileInput.files && this.fileInput.files[0];
    if (!file) return;
    if (this.busy) {
      this.say('evidence.wait', undefined, 'info');
      this.fileInput.value = '';
      return;
    }
    const fd = new FormData();
    fd.append('file', file, file.name);
    const name = { name: file.name };
    await this.act('evidence.uploading', name, () => api('POST', `${this.base}/evidence/files`, fd),
      () => this.say('evidence.uploaded', name, 'ok')); // prettier-ignore
    this.fileInput.value = '';
  }

  async addUrl() {
    const raw = this.urlInput.value.trim();
    if (!raw) {
      this.say('evidence.url_empty', undefined, 'error');
      this.urlInput.focus();
      return;
    }
    let valid = false;
    try {
      const u = new URL(raw);
      valid = (u.protocol === 'http:' || u.protocol === 'https:') && Boolean(u.hostname);
    } catch {
      valid = false;
    }
    if (!valid) {
      this.say('evidence.url_invalid', undefined, 'error');
      this.urlInput.focus();
      return;
    }
    const ok = await this.act(this.minor ? 'evidence.url_busy_minor' : 'evidence.url_busy', undefined,
      () => api('POST', `${this.base}/evidence/urls`, { url: raw }),
      (r) => this.say(r && r.status === 'stored' ? 'evidence.url_stored' : 'evidence.url_recorded', undefined, 'ok')); // prettier-ignore
    if (ok) this.urlInput.value = '';
  }

  async hashFile() {
    const file = this.hashInput.files && this.hashInput.files[0];
    if (!file) return;
    if (this.busy) {
      this.say('evidence.wait', undefined, 'info');
      this.hashInput.value = '';
      return;
    }
    const fd = new FormData();
    fd.append('file', file, file.name);
    await this.act('evidence.hashing', undefined, () => api('POST', `${this.base}/evidence/hashes`, fd),
      () => this.say('evidence.hashed', undefined, 'ok'), { not_found: 'evidence.error.no_pdq' }); // prettier-ignore
    this.hashInput.value = '';
  }
}
