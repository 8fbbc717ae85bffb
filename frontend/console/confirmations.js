// "Waiting for your confirmation": consents to a warm handover that a colleague recorded (by
// phone or in writing) and that a second staff member must confirm. A colleague who does not
// hold the case cannot list its handovers, so the server lists them for everyone
// (GET /api/staff/handovers/awaiting-confirmation: not the ones this staff member recorded).
// A badge in the top bar shows how many; it opens a list whose entries open the confirmation
// dialog of partner-handover.js through its #confirm-handover=<id> link. Fetched again on every
// `handover` frame and whenever the console socket (re)connects.
import { api, ApiError } from './api.js';
import { setT } from './strings.js';
import { $, h, formatClock } from './dom.js';
import { errorKey } from './dialogs.js';

const URL = '/api/staff/handovers/awaiting-confirmation';
const DEBOUNCE_MS = 300;

function timeNode(iso) {
  return iso ? h('time', { datetime: iso, text: formatClock(iso) }) : h('span', { text: '\u2014' });
}

export class AwaitingConfirmations {
  /** live: ConsoleLive; announcer: Announcer; hooks: { onSessionLost() } */
  constructor({ me, live, announcer, hooks }) {
    this.me = me;
    this.hooks = hooks;
    this.announcer = announcer;
    this.root = $('#confirmations');
    this.toggle = $('#confirmations-toggle');
    this.count = $('#confirmations-count');
    this.panel = $('#confirmations-panel');
    this.list = $('#confirmations-list');
    this.msg = $('#confirmations-msg');
    this.items = [];
    this.known = null; // ids shown last time: a new one is announced
    this.toggle.onclick = () => this.setOpen(this.panel.hidden, true);
    $('#confirmations-close').onclick = () => this.setOpen(false, true);
    this.panel.onkeydown = (e) => {
      if (e.key === 'Escape') this.setOpen(false, true);
    };
    this.offs = ['handover', 'open'].map((t) => live.on(t, () => this.refresh()));
  }

  start() {
    this.load();
  }

  destroy() {
    clearTimeout(this.debounce);
    for (const off of this.offs) off();
    this.root.hidden = true;
    this.panel.hidden = true;
    this.toggle.setAttribute('aria-expanded', 'false');
    this.list.replaceChildren();
  }

  refresh() {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => this.load(), DEBOUNCE_MS);
  }

  setOpen(open, focus) {
    this.panel.hidden = !open;
    this.toggle.setAttribute('aria-expanded', String(open));
    if (!focus) return;
    if (open) $('#confirmations-title').focus();
    else this.toggle.focus();
  }

  async load() {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    this.list.setAttribute('aria-busy', 'true');
    try {
      const r = await api('GET', URL);
      const raw = Array.isArray(r) ? r : r && Array.isArray(r.handovers) ? r.handovers : [];
      this.items = raw.filter((x) => x && typeof x.id === 'string');
      this.msg.hidden = true;
      this.render();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      if (e instanceof ApiError && (e.status === 404 || e.status === 405)) {
        this.items = []; // a server without the list: nothing to show
        this.render();
        return;
      }
      const [key, vars] = errorKey(e, 'confirmations.error');
      setT(this.msg, key, vars);
      this.msg.hidden = false;
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
    const n = this.items.length;
    const ids = new Set(this.items.map((x) => x.id));
    const fresh = this.known ? this.items.filter((x) => !this.known.has(x.id)) : [];
    this.known = ids;
    this.root.hidden = n === 0;
    this.root.dataset.count = String(n);
    this.count.textContent = String(n);
    setT(this.toggle, 'confirmations.toggle_label', { n }, 'aria-label');
    // the dialog gives focus back to the entry it was opened from; if that is gone, somewhere near
    const inside = this.panel.contains(document.activeElement) || document.activeElement === document.body;
    this.list.replaceChildren(...this.items.map((x) => this.entry(x)));
    if (!n && !this.panel.hidden) {
      this.setOpen(false, false);
      if (inside) $('#queue-title').focus();
    } else if (inside && !this.panel.hidden && !this.panel.contains(document.activeElement)) {
      $('#confirmations-title').focus();
    }
    if (fresh.length) this.announcer.say('confirmations.announce', { n: fresh.length });
  }

  entry(x) {
    const partner = (x.partner && x.partner.name) || '';
    const recorder = x.consent && x.consent.recorded_by ? x.consent.recorded_by : x.recorded_by;
    const recordedAt = (x.consent && x.consent.recorded_at) || x.recorded_at;
    const expires = (x.consent && x.consent.expires_at) || x.expires_at;
    const name = recorder && typeof recorder === 'object' ? recorder.name : null;
    const ref = { ref: x.reference || '', partner };
    const link = h('a', { href: `#confirm-handover=${encodeURIComponent(x.id)}`, class: 'btn btn-primary cf-open',
      'i18n-aria-label': ['confirmations.open_label', ref], i18n: 'confirmations.open' }); // prettier-ignore
    return h('li', { class: 'cf-item', 'data-handover-id': x.id },
      h('p', { class: 'cf-title' }, h('span', { class: 'ref', translate: 'no', text: x.reference || '' }), ' \u2192 ',
        h('span', { class: 'cf-partner', text: partner })),
      h('p', { class: 'cf-meta muted' },
        name ? h('span', { i18n: ['confirmations.recorded_by', { name }] }) : h('span', { i18n: 'confirmations.recorded' }), ' ',
        timeNode(recordedAt),
        expires ? [' \u00b7 ', h('span', { i18n: 'confirmations.until' }), ' ', timeNode(expires)] : null),
      link); // prettier-ignore
  }
}
