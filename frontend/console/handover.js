// The note a colleague wrote when transferring a case (`handover` in GET /api/staff/cases/{id}).
// It is shown before the conversation until the recipient says they have read it
// (POST /handover/seen), so nobody answers a victim without knowing what was already said.
import { api, ApiError } from './api.js';
import { setT } from './strings.js';
import { h, formatClock } from './dom.js';
import { errorKey } from './dialogs.js';

let counter = 0;

export class HandoverBanner {
  /** pane: the ChatPane; hooks: { onSeen(), onSessionLost() } */
  constructor({ pane, hooks }) {
    this.pane = pane;
    this.hooks = hooks;
    this.handover = null;
    const id = `handover-${++counter}`;
    this.titleEl = h('h3', { class: 'handover-title', id: `${id}-title` });
    this.metaEl = h('p', { class: 'handover-meta' });
    this.noteEl = h('p', { class: 'handover-note', dir: 'auto' });
    this.msg = h('p', { class: 'form-error', role: 'alert', hidden: true });
    this.seenBtn = h('button', { type: 'button', class: 'btn btn-primary handover-seen', i18n: 'handover.seen',
      onclick: () => this.markSeen() }); // prettier-ignore
    this.el = h('section', { class: 'handover', tabindex: '-1', 'aria-labelledby': `${id}-title`, hidden: true },
      this.titleEl, this.metaEl, h('p', { class: 'handover-label', i18n: 'handover.note_label' }), this.noteEl,
      this.msg, h('div', { class: 'handover-actions' }, this.seenBtn)); // prettier-ignore
  }

  get unseen() {
    return Boolean(this.handover);
  }

  /** The case's `handover` (null or absent once seen). */
  show(handover) {
    const hv = handover && typeof handover === 'object' ? handover : null;
    const same = hv && this.handover && hv.event_id === this.handover.event_id;
    this.handover = hv;
    this.el.hidden = !hv;
    if (!hv || same) return;
    const from = (hv.from && hv.from.name) || '?';
    setT(this.titleEl, hv.warm === false || !hv.to ? 'handover.title_cold' : 'handover.title_warm', { name: from });
    this.metaEl.replaceChildren(h('time', { datetime: hv.at || '', text: formatClock(hv.at) }));
    this.noteEl.textContent = String(hv.note ?? '');
    this.msg.hidden = true;
  }

  focus() {
    this.el.focus();
  }

  async markSeen() {
    if (!this.handover) return;
    this.seenBtn.disabled = true;
    try {
      await api('POST', `/api/staff/cases/${encodeURIComponent(this.pane.id)}/handover/seen`);
      this.show(null);
      this.hooks.onSeen();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'handover.error');
      setT(this.msg, key, vars);
      this.msg.hidden = false;
    } finally {
      this.seenBtn.disabled = false;
    }
  }
}
