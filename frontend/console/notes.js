// A case's private notes: staff only, never sent to the victim. Loaded when the tab is shown
// (and again when the case changes while it is shown); one POST per new note.
import { api, ApiError } from './api.js';
import { setT } from './strings.js';
import { h, formatClock } from './dom.js';
import { errorKey } from './dialogs.js';

const MAX_NOTE = 4000;
let counter = 0;

export class NotesPanel {
  /** pane: the ChatPane; hooks: { onSessionLost(), onAdded() } */
  constructor({ pane, hooks }) {
    this.pane = pane;
    this.hooks = hooks;
    this.base = `/api/staff/cases/${encodeURIComponent(pane.id)}/notes`;
    this.notes = [];
    this.loaded = false;
    this.build();
  }

  build() {
    const id = `notes-${++counter}`;
    this.msg = h('p', { class: 'panel-msg', role: 'status', hidden: true });
    this.list = h('ol', { class: 'notes-list', 'aria-labelledby': `${id}-title`, 'aria-live': 'polite', 'aria-relevant': 'additions' });
    this.emptyEl = h('p', { class: 'empty-line', i18n: 'notes.empty', hidden: true });
    this.input = h('textarea', { id: `${id}-text`, class: 'note-input', rows: '3', maxlength: String(MAX_NOTE),
      'aria-describedby': `${id}-private` }); // prettier-ignore
    this.saveBtn = h('button', { type: 'submit', class: 'btn btn-primary note-save', i18n: 'notes.save' });
    this.form = h('form', { class: 'note-form', novalidate: true, onsubmit: (e) => { e.preventDefault(); this.add(); } },
      h('label', { for: this.input.id, i18n: 'notes.new' }), this.input,
      h('div', { class: 'note-form-actions' }, this.saveBtn)); // prettier-ignore
    this.el = h('div', { class: 'notes' },
      h('p', { class: 'private-banner', id: `${id}-private` },
        h('strong', { i18n: 'notes.private_title' }), ' ', h('span', { i18n: 'notes.private_text' })),
      h('h3', { class: 'sr-only', id: `${id}-title`, i18n: 'notes.title' }),
      this.msg, this.list, this.emptyEl, this.form); // prettier-ignore
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
    this.list.setAttribute('aria-busy', 'true');
    try {
      const r = await api('GET', this.base);
      this.notes = Array.isArray(r && r.notes) ? r.notes.filter((n) => n && typeof n.id === 'string') : [];
      this.loaded = true;
      if (this.msg.dataset.tone === 'error') this.msg.hidden = true;
      this.render();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'notes.error');
      this.say(key, vars, 'error');
    } finally {
      this.loading = false;
      this.list.setAttribute('aria-busy', 'false');
      if (this.again) {
        this.again = false;
        this.load();
      }
    }
  }

  render() {
    const have = new Map([...this.list.children].map((li) => [li.dataset.noteId, li]));
    for (const n of this.notes) {
      if (have.has(n.id)) continue;
      const by = n.by && n.by.name ? n.by.name : '';
      this.list.append(h('li', { class: 'note', 'data-note-id': n.id },
        h('p', { class: 'meta' }, h('span', { class: 'who', text: by }), ' ',
          h('time', { datetime: n.at || '', text: formatClock(n.at) })),
        h('p', { class: 'text', text: String(n.text ?? '') }))); // prettier-ignore
    }
    const ids = new Set(this.notes.map((n) => n.id));
    for (const [nid, li] of have) if (!ids.has(nid)) li.remove();
    this.emptyEl.hidden = this.notes.length > 0;
  }

  async add() {
    const text = this.input.value.trim();
    if (!text) {
      this.say('notes.empty_text', undefined, 'error');
      this.input.focus();
      return;
    }
    if (text.length > MAX_NOTE) {
      this.say('notes.too_long', { n: MAX_NOTE }, 'error');
      return;
    }
    this.saveBtn.disabled = true;
    this.form.setAttribute('aria-busy', 'true');
    try {
      const note = await api('POST', this.base, { text });
      this.input.value = '';
      if (note && typeof note.id === 'string' && !this.notes.some((n) => n.id === note.id)) {
        this.notes.push({ ...note, text: note.text ?? text });
        this.render();
      }
      this.say('notes.saved', undefined, 'ok');
      this.hooks.onAdded();
      this.load();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'notes.error');
      this.say(key, vars, 'error');
    } finally {
      this.saveBtn.disabled = false;
      this.form.setAttribute('aria-busy', 'false');
    }
  }
}
