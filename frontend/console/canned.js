// Canned responses in a pane: a filterable list (GET /api/staff/cases/{id}/canned, the
// placeholders already filled in for this case, its language first). Picking one puts its text
// into the reply box to be edited; nothing is sent until the agent sends it.
import { api, ApiError } from './api.js';
import { setT } from './strings.js';
import { h } from './dom.js';
import { errorKey } from './dialogs.js';

const STALE_MS = 60000;
let counter = 0;

export class CannedPicker {
  /** pane: the ChatPane; reply: its textarea; hooks: { onSessionLost(), onInserted() } */
  constructor({ pane, reply, hooks }) {
    this.pane = pane;
    this.reply = reply;
    this.hooks = hooks;
    this.url = `/api/staff/cases/${encodeURIComponent(pane.id)}/canned`;
    this.responses = [];
    this.loadedAt = 0;
    this.build();
  }

  build() {
    const id = `canned-${++counter}`;
    this.toggle = h('button', { type: 'button', class: 'btn btn-link canned-toggle', 'aria-expanded': 'false',
      'aria-controls': id, i18n: 'canned.toggle', onclick: () => this.setOpen(!this.open) }); // prettier-ignore
    this.filter = h('input', { type: 'search', id: `${id}-filter`, class: 'canned-filter', autocomplete: 'off',
      'i18n-placeholder': 'canned.filter_placeholder' }); // prettier-ignore
    this.filter.addEventListener('input', () => this.render());
    this.filter.addEventListener('keydown', (e) => {
      if (e.key === 'ArrowDown') {
        const first = this.list.querySelector('button');
        if (first) {
          e.preventDefault();
          first.focus();
        }
      }
    });
    this.list = h('ul', { class: 'canned-list', 'i18n-aria-label': 'canned.list_label' });
    this.list.addEventListener('keydown', (e) => this.moveFocus(e));
    this.msg = h('p', { class: 'panel-msg', role: 'status', hidden: true });
    this.el = h('div', { class: 'canned', id, hidden: true },
      h('div', { class: 'canned-head' },
        h('label', { for: this.filter.id, i18n: 'canned.filter' }), this.filter,
        h('button', { type: 'button', class: 'btn btn-icon canned-close', 'i18n-aria-label': 'canned.close',
          'i18n-title': 'canned.close', onclick: () => this.setOpen(false, true) }, '\u00d7')),
      this.msg, this.list); // prettier-ignore
    this.el.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') {
        e.preventDefault();
        this.setOpen(false, true);
      }
    });
  }

  setOpen(open, refocus) {
    this.open = open;
    this.toggle.setAttribute('aria-expanded', String(open));
    this.el.hidden = !open;
    if (open) {
      if (Date.now() - this.loadedAt > STALE_MS) this.load();
      this.filter.focus();
    } else if (refocus) {
      this.toggle.focus();
    }
  }

  async load() {
    this.list.setAttribute('aria-busy', 'true');
    try {
      const r = await api('GET', this.url);
      this.responses = Array.isArray(r && r.responses) ? r.responses.filter((x) => x && typeof x.text === 'string') : [];
      this.loadedAt = Date.now();
      this.msg.hidden = true;
      this.render();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'canned.error');
      setT(this.msg, key, vars);
      this.msg.dataset.tone = 'error';
      this.msg.hidden = false;
    } finally {
      this.list.setAttribute('aria-busy', 'false');
    }
  }

  render() {
    const q = this.filter.value.trim().toLocaleLowerCase();
    const shown = this.responses.filter(
      (r) => !q || String(r.title || '').toLocaleLowerCase().includes(q) || r.text.toLocaleLowerCase().includes(q),
    );
    this.list.replaceChildren(
      ...shown.map((r) =>
        h('li', {},
          h('button', { type: 'button', class: 'canned-item', 'data-canned-id': r.id || '', onclick: () => this.insert(r) },
            h('span', { class: 'canned-title' },
              h('abbr', { class: 'lang', 'i18n-title': `language.${r.language}` }, String(r.language || '').toUpperCase()), ' ',
              h('span', { text: r.title || '' })),
            h('span', { class: 'canned-text', text: r.text }))), // prettier-ignore
      ),
    );
    if (!shown.length && this.loadedAt) {
      setT(this.msg, q ? 'canned.none_match' : 'canned.none', undefined);
      this.msg.dataset.tone = 'info';
      this.msg.hidden = false;
    } else if (this.msg.dataset.tone === 'info') {
      this.msg.hidden = true;
    }
  }

  moveFocus(e) {
    if (e.key !== 'ArrowDown' && e.key !== 'ArrowUp') return;
    const buttons = [...this.list.querySelectorAll('button')];
    const i = buttons.indexOf(document.activeElement);
    if (i < 0) return;
    e.preventDefault();
    if (e.key === 'ArrowUp' && i === 0) this.filter.focus();
    else buttons[Math.min(buttons.length - 1, Math.max(0, i + (e.key === 'ArrowDown' ? 1 : -1)))].focus();
  }

  /** Into the reply box at the cursor (replacing a selection); the agent edits and sends it. */
  insert(r) {
    const box = this.reply;
    if (box.disabled) return;
    const start = box.selectionStart ?? box.value.length;
    const end = box.selectionEnd ?? box.value.length;
    const before = box.value.slice(0, start);
    const after = box.value.slice(end);
    const sep = before && !/\s$/.test(before) ? ' ' : '';
    box.value = `${before}${sep}${r.text}${after}`;
    const caret = before.length + sep.length + r.text.length;
    this.setOpen(false, false);
    box.focus();
    box.setSelectionRange(caret, caret);
    box.dispatchEvent(new Event('input', { bubbles: true }));
    this.hooks.onInserted();
  }
}
