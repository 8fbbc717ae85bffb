// Supervisors: the e-mail quarantine (docs/email.md, "Quarantine"): mail the helpline could
// not read, or that was automatic (bounces, auto-replies), kept encrypted so nothing is lost.
// A supervisor sees why it was kept, its size and when it came; downloads the raw mail (as a
// file, never shown in the page: it may carry anything); releases it into a case; or deletes it
// after a confirmation. Every one of these is audited by the server.
import { api, ApiError } from './api.js';
import { setT, has, currentLang } from './strings.js';
import { $, h, formatClock, confirmDialog } from './dom.js';
import { errorKey } from './dialogs.js';

const POLL_MS = 60000;
const BASE = '/api/staff/email/quarantine';

function sizeText(bytes) {
  const n = Number(bytes);
  if (!Number.isFinite(n) || n < 0) return '';
  const fmt = (v, digits) => new Intl.NumberFormat(currentLang() === 'en' ? 'en-GB' : 'nl-NL', { maximumFractionDigits: digits }).format(v);
  if (n < 1024) return `${fmt(n, 0)} B`;
  if (n < 1024 * 1024) return `${fmt(n / 1024, 1)} KB`;
  return `${fmt(n / (1024 * 1024), 1)} MB`;
}

export class QuarantineView {
  /** hooks: { onSessionLost() } */
  constructor({ hooks }) {
    this.hooks = hooks;
    this.el = $('#view-quarantine');
    this.list = $('#quarantine-list');
    this.msg = $('#quarantine-msg');
    this.emptyEl = $('#quarantine-empty');
    this.items = [];
    this.visible = false;
    $('#quarantine-refresh').onclick = () => this.load();
  }

  show() {
    this.visible = true;
    this.load();
    clearInterval(this.poll);
    this.poll = setInterval(() => this.load(), POLL_MS);
  }

  hide() {
    this.visible = false;
    clearInterval(this.poll);
  }

  destroy() {
    this.hide();
    this.list.replaceChildren();
    this.items = [];
  }

  say(key, vars, tone) {
    setT(this.msg, key, vars);
    this.msg.dataset.tone = tone;
    this.msg.setAttribute('role', tone === 'error' ? 'alert' : 'status');
    this.msg.hidden = false;
  }

  async load() {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    this.el.setAttribute('aria-busy', 'true');
    try {
      const r = await api('GET', BASE);
      this.items = Array.isArray(r && r.items) ? r.items.filter((x) => x && typeof x.id === 'string') : [];
      if (this.msg.dataset.tone === 'error' && this.msg.dataset.kind === 'load') this.msg.hidden = true;
      this.render();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'quarantine.error');
      this.say(key, vars, 'error');
      this.msg.dataset.kind = 'load';
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
    const active = document.activeElement;
    const focusRow = active && this.list.contains(active) ? active.closest('tr') : null;
    this.list.replaceChildren(...this.items.map((item) => this.row(item)));
    this.emptyEl.hidden = this.items.length > 0;
    if (focusRow && !this.list.contains(document.activeElement)) $('#quarantine-title').focus();
  }

  row(item) {
    const ref = { id: item.id.slice(0, 8) };
    const reasonKey = `quarantine.reason.${item.reason}`;
    const reason = h('td', { class: 'q-reason' },
      has(reasonKey) ? h('strong', { i18n: reasonKey }) : h('strong', { text: String(item.reason || '') }),
      item.detail ? h('p', { class: 'q-detail', dir: 'auto', translate: 'no', text: String(item.detail) }) : null); // prettier-ignore
    const mail = h('td', { class: 'q-mail' },
      h('p', { class: 'q-from' }, h('span', { class: 'q-label', i18n: 'quarantine.from' }), ' ',
        item.from ? h('span', { dir: 'auto', translate: 'no', text: String(item.from) }) : h('span', { class: 'muted', i18n: 'quarantine.unknown' })),
      h('p', { class: 'q-subject' }, h('span', { class: 'q-label', i18n: 'quarantine.subject' }), ' ',
        item.subject ? h('span', { dir: 'auto', text: String(item.subject) }) : h('span', { class: 'muted', i18n: 'quarantine.unknown' })),
      Number.isInteger(item.attachments)
        ? h('p', { class: 'q-attachments', i18n: ['quarantine.attachments', { n: item.attachments }] })
        : null); // prettier-ignore
    // the raw mail as a file: the server answers with Content-Disposition: attachment
    const download = h('a', { class: 'btn q-download', href: `${BASE}/${encodeURIComponent(item.id)}/raw`,
      download: `quarantine-${item.id}.eml`, i18n: 'quarantine.download',
      'i18n-aria-label': ['quarantine.download_label', ref] }); // prettier-ignore
    const release = h('button', { type: 'button', class: 'btn q-release', i18n: 'quarantine.release',
      'i18n-aria-label': ['quarantine.release_label', ref], onclick: (e) => this.release(item, e.currentTarget) }); // prettier-ignore
    const remove = h('button', { type: 'button', class: 'btn btn-quiet-danger q-delete', i18n: 'quarantine.delete',
      'i18n-aria-label': ['quarantine.delete_label', ref], onclick: (e) => this.remove(item, e.currentTarget) }); // prettier-ignore
    return h('tr', { 'data-quarantine-id': item.id, 'data-reason': item.reason || '' },
      h('td', {}, h('time', { datetime: item.received_at || '', text: formatClock(item.received_at) })),
      reason, mail,
      h('td', { class: 'q-size', text: sizeText(item.size) }),
      h('td', { class: 'q-actions' }, h('div', { class: 'q-actions-wrap' }, download, release, remove))); // prettier-ignore
  }

  async release(item, btn) {
    const ok = await confirmDialog({ title: 'quarantine.release_title', text: 'quarantine.release_text',
      yes: 'quarantine.release_yes', vars: { id: item.id.slice(0, 8) } }); // prettier-ignore
    if (!ok) return;
    btn.disabled = true;
    try {
      const r = await api('POST', `${BASE}/${encodeURIComponent(item.id)}/release`);
      const key = r && r.duplicate ? 'quarantine.released_duplicate' : r && r.new_case ? 'quarantine.released_new' : 'quarantine.released_existing';
      this.say(key, { ref: (r && r.reference) || '' }, 'ok');
      this.msg.dataset.kind = '';
      this.load();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'quarantine.error');
      this.say(key, vars, 'error');
      this.msg.dataset.kind = '';
      if (btn.isConnected) btn.disabled = false;
    }
  }

  async remove(item, btn) {
    const ok = await confirmDialog({ title: 'quarantine.delete_title', text: 'quarantine.delete_text',
      yes: 'quarantine.delete_yes', vars: { id: item.id.slice(0, 8) } }); // prettier-ignore
    if (!ok) return;
    btn.disabled = true;
    try {
      await api('DELETE', `${BASE}/${encodeURIComponent(item.id)}`);
      this.say('quarantine.deleted', undefined, 'ok');
      this.msg.dataset.kind = '';
      this.items = this.items.filter((x) => x.id !== item.id);
      this.render();
      this.load();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'quarantine.error');
      this.say(key, vars, 'error');
      this.msg.dataset.kind = '';
      if (btn.isConnected) btn.disabled = false;
    }
  }
}
