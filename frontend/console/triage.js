// A pane's triage controls: category, risk flags, priority (computed, or overridden with a
// reason) and status. Each change is one POST; the answer (the case) updates the pane, a
// refusal puts the control back and says why, inline.
import { api, ApiError } from './api.js';
import { setT, has } from './strings.js';
import { h, confirmDialog } from './dom.js';
import { errorKey } from './dialogs.js';
import { SETTABLE_STATUSES, priorityName } from './vocab.js';
import { priorityBadge, codeLabel } from './badges.js';

const OPEN_STORE = 'helpline.console.triage_open';
let counter = 0;

function option(value, key, raw) {
  return has(key) ? h('option', { value, i18n: key }) : h('option', { value, text: raw });
}

export class TriageBar {
  /** pane: the ChatPane; vocab: the Vocabulary; hooks: { onCase(caseObject, answer), onSessionLost() } */
  constructor({ pane, vocab, hooks }) {
    this.pane = pane;
    this.vocab = vocab;
    this.hooks = hooks;
    this.base = `/api/staff/cases/${encodeURIComponent(pane.id)}`;
    this.info = {};
    this.busy = false;
    this.build();
    let open = false;
    try {
      open = sessionStorage.getItem(OPEN_STORE) === '1';
    } catch {
      open = false;
    }
    this.setOpen(open, false);
  }

  build() {
    const id = `triage-${++counter}`;
    this.toggle = h('button', { type: 'button', class: 'btn triage-toggle', 'aria-expanded': 'false', 'aria-controls': id,
      i18n: 'triage.toggle', onclick: () => this.setOpen(!this.open, true) }); // prettier-ignore

    this.category = h('select', { id: `${id}-category`, class: 'triage-category' },
      h('option', { value: '', i18n: 'category.none' }),
      ...this.vocab.categories.map((c) => option(c, `category.${c}`, c))); // prettier-ignore
    this.category.addEventListener('change', () => this.changeCategory());

    this.status = h('select', { id: `${id}-status`, class: 'triage-status' });
    this.status.addEventListener('change', () => this.changeStatus());

    this.flagBoxes = new Map();
    const flags = h('fieldset', { class: 'triage-flags' }, h('legend', { i18n: 'flags.label' }));
    for (const f of this.vocab.flags) {
      const box = h('input', { type: 'checkbox', id: `${id}-flag-${f}`, value: f, class: `flag-box flag-box-${f}` });
      box.addEventListener('change', () => this.changeFlags());
      this.flagBoxes.set(f, box);
      flags.append(h('div', { class: 'flag-choice' }, box, h('label', { for: box.id }, codeLabel('', `flag.${f}`, f))));
    }

    // priority: what it is now, an override with a reason, the way back to the computed one
    this.prioNow = h('span', { class: 'prio-now' });
    this.prioWhy = h('span', { class: 'prio-why' });
    this.prioSelect = h('select', { id: `${id}-prio`, class: 'prio-select' },
      ...this.vocab.priorities.map((p) => option(String(p), `priority.${priorityName(p)}`, String(p)))); // prettier-ignore
    this.prioReason = h('input', { type: 'text', id: `${id}-reason`, class: 'prio-reason', maxlength: '500',
      autocomplete: 'off', 'i18n-placeholder': 'priority.reason_placeholder' }); // prettier-ignore
    this.prioApply = h('button', { type: 'submit', class: 'btn prio-apply', i18n: 'priority.override' });
    this.prioReset = h('button', { type: 'button', class: 'btn btn-link prio-reset', i18n: 'priority.back_to_computed',
      hidden: true, onclick: () => this.resetPriority() }); // prettier-ignore
    this.prioForm = h('form', { class: 'prio-form', novalidate: true, onsubmit: (e) => { e.preventDefault(); this.overridePriority(); } },
      h('div', { class: 'field-inline' }, h('label', { for: this.prioSelect.id, i18n: 'priority.new' }), this.prioSelect),
      h('div', { class: 'field-inline grow' }, h('label', { for: this.prioReason.id, i18n: 'priority.reason' }), this.prioReason),
      this.prioApply); // prettier-ignore

    this.msg = h('p', { class: 'triage-msg', role: 'status', hidden: true });
    this.el = h('section', { class: 'triage', id, 'i18n-aria-label': ['triage.label', { ref: this.pane.reference }], hidden: true },
      h('div', { class: 'triage-row' },
        h('div', { class: 'field-inline' }, h('label', { for: this.category.id, i18n: 'triage.category' }), this.category),
        h('div', { class: 'field-inline' }, h('label', { for: this.status.id, i18n: 'triage.status' }), this.status)),
      flags,
      h('div', { class: 'triage-prio' },
        h('p', { class: 'prio-line' }, h('span', { i18n: 'priority.label' }), ' ', this.prioNow, ' ', this.prioWhy, this.prioReset),
        this.prioForm),
      this.msg); // prettier-ignore
  }

  setOpen(open, remember) {
    this.open = open;
    this.toggle.setAttribute('aria-expanded', String(open));
    this.el.hidden = !open;
    if (remember) {
      try {
        sessionStorage.setItem(OPEN_STORE, open ? '1' : '0');
      } catch {
        /* not remembered */
      }
    }
  }

  /** Fresh case data: show it, unless the person is changing that very control right now. */
  update(info) {
    this.info = { ...this.info, ...info };
    const i = this.info;
    if (!this.busy) {
      this.category.value = i.category || '';
      const flags = new Set(Array.isArray(i.risk_flags) ? i.risk_flags : []);
      for (const [f, box] of this.flagBoxes) box.checked = flags.has(f);
      this.fillStatus(i.status);
    }
    const level = Number(i.priority) || 3;
    this.prioNow.replaceChildren(priorityBadge(level, i.priority_overridden));
    setT(this.prioWhy, i.priority_overridden ? 'priority.is_overridden' : 'priority.is_computed');
    this.prioReset.hidden = !i.priority_overridden;
    // not while someone is choosing an override
    if (document.activeElement !== this.prioSelect && !this.prioReason.value) this.prioSelect.value = String(level);
    const closed = i.status === 'closed';
    for (const el of this.controls()) el.disabled = closed || this.busy || this.pane.gone;
  }

  controls() {
    return [this.category, this.status, ...this.flagBoxes.values(), this.prioSelect, this.prioReason, this.prioApply, this.prioReset];
  }

  fillStatus(current) {
    const list = SETTABLE_STATUSES.includes(current) || !current ? SETTABLE_STATUSES : [current, ...SETTABLE_STATUSES];
    const sig = list.join(',');
    if (this.status.dataset.sig !== sig) {
      this.status.replaceChildren(...list.map((s) => {
        const o = option(s, `status.${s}`, s);
        if (!SETTABLE_STATUSES.includes(s)) o.disabled = true; // new / closed: shown, not chosen here
        return o;
      })); // prettier-ignore
      this.status.dataset.sig = sig;
    }
    this.status.value = current || '';
  }

  say(key, vars, tone) {
    setT(this.msg, key, vars);
    this.msg.dataset.tone = tone;
    this.msg.setAttribute('role', tone === 'error' ? 'alert' : 'status');
    this.msg.hidden = false;
  }

  quiet() {
    this.msg.hidden = true;
  }

  /** One POST; on success the case answer goes to the pane; on failure the controls go back. */
  async post(path, body, okKey) {
    if (this.busy) return null;
    this.busy = true;
    for (const el of this.controls()) el.disabled = true;
    this.el.setAttribute('aria-busy', 'true');
    let answer = null;
    try {
      answer = await api('POST', `${this.base}/${path}`, body);
      this.busy = false;
      this.hooks.onCase(answer && typeof answer === 'object' ? answer : {}, answer);
      if (okKey) this.say(okKey, undefined, 'ok');
      else this.quiet();
    } catch (e) {
      this.busy = false;
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return null;
      }
      const [key, vars] = errorKey(e, `triage.error`);
      this.say(key, vars, 'error');
      answer = null;
    } finally {
      this.busy = false;
      this.el.setAttribute('aria-busy', 'false');
      this.update({}); // re-show the case as it is (reverts a refused change)
    }
    return answer;
  }

  async changeCategory() {
    const value = this.category.value || null;
    if (value === 'possible_minor' && !this.info.possible_minor) {
      const ok = await confirmDialog({ title: 'evidence.minor_title', text: 'triage.minor_text',
        yes: 'triage.minor_yes', vars: { ref: this.pane.reference } }); // prettier-ignore
      if (!ok) {
        this.category.value = this.info.category || '';
        return;
      }
    }
    await this.post('triage', { category: value }, 'triage.saved');
  }

  async changeFlags() {
    const flags = [...this.flagBoxes].filter(([, box]) => box.checked).map(([f]) => f);
    await this.post('triage', { risk_flags: flags }, 'triage.saved');
  }

  async changeStatus() {
    const status = this.status.value;
    if (!SETTABLE_STATUSES.includes(status) || status === this.info.status) return;
    await this.post('status', { status }, 'triage.status_saved');
  }

  async overridePriority() {
    const reason = this.prioReason.value.trim();
    if (!reason) {
      this.say('priority.reason_missing', undefined, 'error');
      this.prioReason.focus();
      return;
    }
    const priority = Number(this.prioSelect.value);
    const r = await this.post('priority', { priority, reason }, 'priority.saved');
    if (r) this.prioReason.value = '';
  }

  async resetPriority() {
    await this.post('priority', { priority: null }, 'priority.reset_done');
    this.prioSelect.focus();
  }

  relabel() {
    setT(this.el, 'triage.label', { ref: this.pane.reference }, 'aria-label');
  }
}
