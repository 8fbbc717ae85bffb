// Supervisors edit the canned responses (GET/POST /api/staff/canned, PUT/DELETE
// /api/staff/canned/{id}): Dutch and English texts with {placeholders} the server fills in
// per case. The server refuses unknown placeholders; the form lists the ones it knows.
import { api, ApiError } from './api.js';
import { setT, has } from './strings.js';
import { $, h, confirmDialog, formatClock } from './dom.js';
import { errorKey } from './dialogs.js';

const FALLBACK_PLACEHOLDERS = ['reference', 'agent_name', 'helpline_name', 'opening_hours'];
const LANGUAGES = ['nl', 'en'];

export class CannedEditor {
  constructor({ hooks }) {
    this.hooks = hooks; // { onSessionLost() }
    this.el = $('#view-canned');
    this.list = $('#canned-list');
    this.emptyEl = $('#canned-empty');
    this.msg = $('#canned-msg');
    this.form = $('#canned-form');
    this.formTitle = $('#canned-form-title');
    this.language = $('#canned-language');
    this.title = $('#canned-title');
    this.body = $('#canned-body');
    this.placeholdersEl = $('#canned-placeholders');
    this.saveBtn = $('#canned-save');
    this.cancelBtn = $('#canned-cancel');
    this.responses = [];
    this.placeholders = FALLBACK_PLACEHOLDERS;
    this.editing = null; // id being edited, or null for a new one
    this.language.replaceChildren(...LANGUAGES.map((l) => h('option', { value: l, i18n: `language.${l}` })));
    this.form.onsubmit = (e) => {
      e.preventDefault();
      this.save();
    };
    this.cancelBtn.onclick = () => this.edit(null);
    $('#canned-new').onclick = () => this.edit(null, true);
    this.renderPlaceholders();
    this.edit(null);
  }

  show() {
    this.load();
  }

  hide() {}

  say(key, vars, tone) {
    setT(this.msg, key, vars);
    this.msg.dataset.tone = tone;
    this.msg.setAttribute('role', tone === 'error' ? 'alert' : 'status');
    this.msg.hidden = false;
  }

  async load() {
    this.list.setAttribute('aria-busy', 'true');
    try {
      const r = await api('GET', '/api/staff/canned');
      this.responses = Array.isArray(r && r.responses) ? r.responses.filter((x) => x && typeof x.id === 'string') : [];
      if (Array.isArray(r && r.placeholders) && r.placeholders.length) {
        this.placeholders = r.placeholders.filter((p) => typeof p === 'string');
        this.renderPlaceholders();
      }
      if (this.msg.dataset.tone === 'error') this.msg.hidden = true;
      this.render();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'cannededit.error');
      this.say(key, vars, 'error');
    } finally {
      this.list.setAttribute('aria-busy', 'false');
    }
  }

  render() {
    const sorted = [...this.responses].sort(
      (a, b) => String(a.language).localeCompare(String(b.language)) || String(a.title).localeCompare(String(b.title)),
    );
    this.list.replaceChildren(
      ...sorted.map((r) =>
        h('li', { class: 'canned-entry', 'data-canned-id': r.id },
          h('div', { class: 'canned-entry-head' },
            h('abbr', { class: 'lang', 'i18n-title': `language.${r.language}` }, String(r.language || '').toUpperCase()),
            h('h3', { class: 'canned-entry-title', text: r.title || '' }),
            r.updated_at ? h('span', { class: 'muted' }, h('span', { i18n: 'cannededit.updated' }), ' ',
              h('time', { datetime: r.updated_at, text: formatClock(r.updated_at) })) : null),
          h('p', { class: 'canned-entry-body', text: r.body || '' }),
          h('div', { class: 'canned-entry-actions' },
            h('button', { type: 'button', class: 'btn edit', i18n: 'cannededit.edit',
              'i18n-aria-label': ['cannededit.edit_label', { title: r.title || '' }], onclick: () => this.edit(r, true) }),
            h('button', { type: 'button', class: 'btn btn-quiet-danger delete', i18n: 'cannededit.delete',
              'i18n-aria-label': ['cannededit.delete_label', { title: r.title || '' }], onclick: () => this.remove(r) }))), // prettier-ignore
      ),
    );
    this.emptyEl.hidden = sorted.length > 0;
  }

  renderPlaceholders() {
    this.placeholdersEl.replaceChildren(
      ...this.placeholders.map((p) =>
        h('li', {},
          h('button', { type: 'button', class: 'btn btn-link placeholder', 'data-placeholder': p,
            'i18n-aria-label': ['cannededit.insert_placeholder', { name: `{${p}}` }], onclick: () => this.insertPlaceholder(p) },
            h('code', { text: `{${p}}` })),
          has(`placeholder.${p}`) ? h('span', { class: 'muted', i18n: `placeholder.${p}` }) : null), // prettier-ignore
      ),
    );
  }

  insertPlaceholder(p) {
    const box = this.body;
    const start = box.selectionStart ?? box.value.length;
    const end = box.selectionEnd ?? box.value.length;
    const token = `{${p}}`;
    box.value = box.value.slice(0, start) + token + box.value.slice(end);
    box.focus();
    box.setSelectionRange(start + token.length, start + token.length);
  }

  /** Fill the form with a response to edit (null: a new one). */
  edit(r, focus) {
    this.editing = r ? r.id : null;
    setT(this.formTitle, r ? 'cannededit.edit_title' : 'cannededit.new_title', r ? { title: r.title || '' } : undefined);
    this.language.value = r && LANGUAGES.includes(r.language) ? r.language : 'nl';
    this.title.value = r ? r.title || '' : '';
    this.body.value = r ? r.body || '' : '';
    this.cancelBtn.hidden = !r;
    setT(this.saveBtn, r ? 'cannededit.save' : 'cannededit.create');
    if (focus) this.title.focus();
  }

  async save() {
    const body = { language: this.language.value, title: this.title.value.trim(), body: this.body.value.trim() };
    if (!body.title) {
      this.say('cannededit.title_missing', undefined, 'error');
      this.title.focus();
      return;
    }
    if (!body.body) {
      this.say('cannededit.body_missing', undefined, 'error');
      this.body.focus();
      return;
    }
    // the same check as the server's, so a typo is caught before sending
    const unknown = [...body.body.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).filter((p) => !this.placeholders.includes(p));
    if (unknown.length) {
      this.say('cannededit.unknown_placeholder', { names: unknown.map((p) => `{${p}}`).join(', ') }, 'error');
      this.body.focus();
      return;
    }
    this.saveBtn.disabled = true;
    this.form.setAttribute('aria-busy', 'true');
    try {
      if (this.editing) await api('PUT', `/api/staff/canned/${encodeURIComponent(this.editing)}`, body);
      else await api('POST', '/api/staff/canned', body);
      this.say(this.editing ? 'cannededit.saved' : 'cannededit.created', { title: body.title }, 'ok');
      this.edit(null);
      await this.load();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'cannededit.error');
      this.say(key, { ...vars, message: e.message || '' }, 'error');
    } finally {
      this.saveBtn.disabled = false;
      this.form.setAttribute('aria-busy', 'false');
    }
  }

  async remove(r) {
    const ok = await confirmDialog({ title: 'cannededit.delete_title', text: 'cannededit.delete_text',
      yes: 'cannededit.delete', vars: { title: r.title || '' } }); // prettier-ignore
    if (!ok) return;
    try {
      await api('DELETE', `/api/staff/canned/${encodeURIComponent(r.id)}`);
      if (this.editing === r.id) this.edit(null);
      this.say('cannededit.deleted', { title: r.title || '' }, 'ok');
      await this.load();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'cannededit.error');
      this.say(key, vars, 'error');
    }
  }
}
