// Callback requests in the console (docs/api/callback.md, "What the console needs to show"):
// - CallbackBook: every waiting request (GET /api/staff/callbacks, without number or code word),
//   for the queue's row labels (phone icon + first window, "wants a call" on a chat) and the
//   supervisors' list of calls to come;
// - CallbackPanel: the panel at the top of a case pane: the safety instructions first, the
//   windows, the number and code word (only for the staff member who has the case), the four
//   outcomes of a call, the attempts, and a passphrase to read out for continuing in the chat.
// The number and the code word live only in this panel's memory and in the page while shown:
// never in the browser's storage, never in a log line.
import { api, ApiError } from './api.js';
import { setT, has, currentLang } from './strings.js';
import { h, formatClock, confirmDialog } from './dom.js';
import { serverNow } from './sla.js';
import { errorKey } from './dialogs.js';

const DEBOUNCE_MS = 300;
const POLL_MS = 60000;
const MAX_NOTE = 1000;
export const OUTCOMES = ['reached', 'no_answer', 'voicemail', 'wrong_number'];
const FINISHING = new Set(['reached', 'wrong_number']); // the number is deleted after these
const E164 = /^\+[1-9]\d{5,15}$/;

let counter = 0;

// --- the windows, in the helpline's own time ------------------------------------------------

/** "2026-01-02T14:00:00+01:00" -> its wall-clock date and time as written (the helpline's local time). */
function wall(iso) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(String(iso || ''));
  if (!m) return null;
  const off = /([+-])(\d{2}):?(\d{2})$/.exec(String(iso));
  const offsetMin = off ? (off[1] === '-' ? -1 : 1) * (Number(off[2]) * 60 + Number(off[3])) : 0;
  return { y: Number(m[1]), mo: Number(m[2]), d: Number(m[3]), time: `${m[4]}:${m[5]}`, offsetMin, date: `${m[1]}-${m[2]}-${m[3]}` };
}

/** The date (YYYY-MM-DD) it is now at the given UTC offset, by the server's clock. */
function todayAt(offsetMin, plusDays = 0) {
  return new Date(serverNow() + offsetMin * 60000 + plusDays * 86400000).toISOString().slice(0, 10);
}

function dayName(w) {
  const locale = currentLang() === 'en' ? 'en-GB' : 'nl-NL';
  return new Intl.DateTimeFormat(locale, { weekday: 'short', day: 'numeric', month: 'short', timeZone: 'UTC' })
    .format(new Date(Date.UTC(w.y, w.mo - 1, w.d))); // prettier-ignore
}

/** Where a window stands now: 'ended', 'now' or 'later'. */
export function windowWhen(win, now = serverNow()) {
  const start = Date.parse(win && win.start);
  const end = Date.parse(win && win.end);
  if (!Number.isNaN(end) && end <= now) return 'ended';
  if (!Number.isNaN(start) && start <= now) return 'now';
  return 'later';
}

/** A window as words: "today 14:00–16:00", "tomorrow …", "Fri 2 Jan 14:00–16:00". */
export function windowLabel(win, cls = 'cb-window-text') {
  const s = wall(win && win.start);
  const e = wall(win && win.end);
  if (!s || !e) return h('span', { class: cls, text: `${(win && win.start) || ''} – ${(win && win.end) || ''}` });
  const to = e.date === s.date ? e.time : `${dayName(e)} ${e.time}`;
  const vars = { from: s.time, to };
  if (s.date === todayAt(s.offsetMin)) return h('span', { class: cls, i18n: ['callback.window_today', vars] });
  if (s.date === todayAt(s.offsetMin, 1)) return h('span', { class: cls, i18n: ['callback.window_tomorrow', vars] });
  return h('span', { class: cls, i18n: ['callback.window_day', { ...vars, day: dayName(s) }] });
}

/** The window to show first: the current one, else the next, else the last. */
export function firstWindow(windows, now = serverNow()) {
  const list = Array.isArray(windows) ? windows.filter((w) => w && w.start && w.end) : [];
  return list.find((w) => windowWhen(w, now) !== 'ended') || list[list.length - 1] || null;
}

// --- every waiting request --------------------------------------------------------------

export class CallbackBook {
  /** live: ConsoleLive; hooks: { onSessionLost() } */
  constructor({ live, hooks }) {
    this.live = live;
    this.hooks = hooks;
    this.byCase = new Map(); // case id -> the listing's entry
    this.listeners = new Set();
    this.offs = [];
    this.stopped = true;
    this.sig = '';
  }

  start() {
    this.stopped = false;
    this.offs = ['open', 'queue_changed', 'case_changed'].map((t) => this.live.on(t, () => this.refresh()));
    this.load();
    this.poll = setInterval(() => this.load(), POLL_MS);
  }

  stop() {
    this.stopped = true;
    for (const off of this.offs) off();
    this.offs = [];
    clearInterval(this.poll);
    clearTimeout(this.debounce);
    this.listeners.clear();
  }

  onChange(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  get(caseId) {
    return this.byCase.get(caseId) || null;
  }

  /** Requests whose case is not in the queue yet (their first window has not opened). */
  upcoming() {
    return [...this.byCase.values()].filter((c) => !c.in_queue);
  }

  refresh() {
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => this.load(), DEBOUNCE_MS);
  }

  async load() {
    if (this.stopped) return;
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    try {
      const r = await api('GET', '/api/staff/callbacks');
      if (this.stopped) return;
      const list = Array.isArray(r && r.callbacks) ? r.callbacks.filter((c) => c && typeof c.case_id === 'string') : [];
      const sig = JSON.stringify(list);
      if (sig !== this.sig) {
        this.sig = sig;
        this.byCase = new Map(list.map((c) => [c.case_id, c]));
        for (const fn of this.listeners) fn();
      }
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) this.hooks.onSessionLost();
      // otherwise the rows keep what they had; the next change or poll tries again
    } finally {
      this.loading = false;
      if (this.again && !this.stopped) {
        this.again = false;
        this.load();
      }
    }
  }
}

/** The supervisors' list of calls to come (`in_queue: false`), under the queue. */
export class UpcomingCalls {
  constructor({ book, root }) {
    this.book = book;
    this.root = root;
    this.summary = root.querySelector('summary');
    this.list = root.querySelector('ul');
    this.off = book.onChange(() => this.render());
    this.render();
  }

  render() {
    const calls = this.book.upcoming();
    this.root.hidden = calls.length === 0;
    setT(this.summary, 'callback.upcoming', { n: calls.length });
    this.list.replaceChildren(
      ...calls.map((c) => {
        const win = firstWindow(c.windows);
        return h('li', { class: 'upcoming-call', 'data-case-id': c.case_id },
          h('span', { class: 'channel-icon', 'aria-hidden': 'true' }, '\u260e'), ' ',
          h('span', { class: 'ref', text: c.reference || '' }), ' ',
          win ? windowLabel(win) : null,
          c.urgent ? [' ', h('span', { class: 'badge cb-urgent', i18n: 'callback.urgent' })] : null,
          c.source === 'chat' ? [' ', h('span', { class: 'muted', i18n: 'callback.source.chat' })] : null); // prettier-ignore
      }),
    );
  }

  destroy() {
    this.off();
    this.root.hidden = true;
    this.list.replaceChildren();
  }
}

// --- one case's request, in its pane -------------------------------------------------------

export class CallbackPanel {
  /** pane: the ChatPane; hooks: { onSessionLost(), onChanged() } */
  constructor({ pane, hooks }) {
    this.pane = pane;
    this.hooks = hooks;
    this.url = `/api/staff/cases/${encodeURIComponent(pane.id)}/callback`;
    this.data = null;
    this.busy = false;
    this.build();
  }

  build() {
    const id = `callback-${++counter}`;
    this.id = id;
    this.titleEl = h('h3', { class: 'cb-title', id: `${id}-title`, i18n: 'callback.title' });
    this.badgesEl = h('span', { class: 'cb-badges' });
    this.safetyEl = h('div', { class: 'cb-safety', role: 'group', 'aria-labelledby': `${id}-safety` },
      h('p', { class: 'sr-only', id: `${id}-safety`, i18n: 'callback.safety' })); // prettier-ignore
    this.contactEl = h('div', { class: 'cb-contact' });
    this.windowsEl = h('ol', { class: 'cb-windows', 'i18n-aria-label': 'callback.windows' });
    this.msg = h('p', { class: 'panel-msg cb-msg', role: 'status', hidden: true });

    // the outcome of a call: an optional note, then one of four buttons
    this.note = h('textarea', { id: `${id}-note`, class: 'cb-note', rows: '2', maxlength: String(MAX_NOTE),
      'i18n-placeholder': 'callback.note_placeholder' }); // prettier-ignore
    this.outcomeButtons = new Map();
    const buttons = h('div', { class: 'cb-outcomes', role: 'group', 'i18n-aria-label': 'callback.outcome_group' });
    for (const outcome of OUTCOMES) {
      const btn = h('button', { type: 'button', class: `btn cb-outcome cb-outcome-${outcome}`, 'data-outcome': outcome,
        i18n: `callback.outcome.${outcome}`, onclick: () => this.attempt(outcome) }); // prettier-ignore
      this.outcomeButtons.set(outcome, btn);
      buttons.append(btn);
    }
    this.attemptForm = h('div', { class: 'cb-attempt' },
      h('p', { class: 'cb-attempt-title', i18n: 'callback.record' }),
      h('label', { for: this.note.id, class: 'cb-note-label', i18n: 'callback.note' }), this.note, buttons); // prettier-ignore

    this.attemptsEl = h('ol', { class: 'cb-attempts' });
    this.attemptsBox = h('details', { class: 'cb-attempts-box' },
      h('summary', { class: 'cb-attempts-summary' }), this.attemptsEl); // prettier-ignore

    // a passphrase to read out: shown once, never stored
    this.passBtn = h('button', { type: 'button', class: 'btn cb-pass-give', i18n: 'callback.passphrase_give',
      onclick: () => this.givePassphrase() }); // prettier-ignore
    this.passBox = h('div', { class: 'cb-pass', role: 'status', tabindex: '-1', hidden: true });
    this.passEl = h('div', { class: 'cb-pass-wrap' }, this.passBtn, this.passBox);

    this.el = h('section', { class: 'callback', 'aria-labelledby': `${id}-title`, hidden: true },
      h('div', { class: 'cb-head' }, this.titleEl, this.badgesEl),
      this.safetyEl, this.contactEl, this.windowsEl, this.msg, this.attemptForm, this.attemptsBox, this.passEl); // prettier-ignore
  }

  get shown() {
    return Boolean(this.data);
  }

  say(key, vars, tone = 'info') {
    setT(this.msg, key, vars);
    this.msg.dataset.tone = tone;
    this.msg.setAttribute('role', tone === 'error' ? 'alert' : 'status');
    this.msg.hidden = false;
  }

  /** GET the case's request; 404 (none) hides the panel. */
  async load() {
    if (this.destroyed) return;
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    try {
      const r = await api('GET', this.url);
      if (this.destroyed) return;
      this.render(r && typeof r === 'object' ? r : null);
      if (this.msg.dataset.tone === 'error') this.msg.hidden = true;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      if (e instanceof ApiError && (e.status === 404 || e.status === 403)) {
        // no request on this case (or not ours to see any more): nothing to show
        if (!(e.status === 403 && this.data)) this.render(null);
        else this.render({ ...this.data, revealed: false, number: null, number_display: null, code_word: null });
      } else if (this.data) {
        const [key, vars] = errorKey(e, 'callback.error');
        this.say(key, vars, 'error');
      }
    } finally {
      this.loading = false;
      if (this.again) {
        this.again = false;
        this.load();
      }
    }
  }

  render(cb) {
    this.data = cb;
    this.el.hidden = !cb;
    this.pane.el.classList.toggle('has-callback', Boolean(cb));
    if (!cb) {
      this.contactEl.replaceChildren();
      this.clearPassphrase();
      return;
    }
    const pending = cb.state === 'pending';
    this.el.dataset.state = cb.state || '';
    this.badgesEl.replaceChildren(...[
      cb.urgent ? h('span', { class: 'badge cb-urgent', i18n: 'callback.urgent' }) : null,
      h('span', { class: `badge cb-state cb-state-${cb.state}`, i18n: has(`callback.state.${cb.state}`) ? `callback.state.${cb.state}` : null },
        has(`callback.state.${cb.state}`) ? null : String(cb.state || '')),
      cb.source === 'chat' ? h('span', { class: 'muted', i18n: 'callback.source.chat' }) : null].filter(Boolean)); // prettier-ignore
    this.renderSafety(cb.safety || {});
    this.renderContact(cb);
    this.renderWindows(cb.windows);
    this.renderAttempts(Array.isArray(cb.attempts) ? cb.attempts : []);

    const mayAct = (this.pane.mine || this.pane.supervisor) && this.pane.status !== 'closed' && !this.pane.gone;
    this.attemptForm.hidden = !(pending && mayAct);
    for (const btn of this.outcomeButtons.values()) btn.disabled = this.busy;
    this.passBtn.hidden = !this.mayGivePassphrase() || !this.passBox.hidden;
  }

  /** Only the staff member who has the case reads a passphrase out (the server refuses others). */
  mayGivePassphrase() {
    return this.pane.mine && this.pane.status !== 'closed' && !this.pane.gone;
  }

  renderSafety(safety) {
    const voicemail = safety.voicemail_safe === true;
    const name = safety.may_say_name === true;
    const line = (cls, safe, label, yes, no) =>
      h('p', { class: `cb-safe ${cls}`, 'data-safe': safe ? 'yes' : 'no' },
        h('span', { class: 'cb-safe-icon', 'aria-hidden': 'true' }, safe ? '\u2713' : '\u26a0'), ' ',
        h('span', { i18n: label }), ' ',
        h('strong', { i18n: safe ? yes : no })); // prettier-ignore
    const keep = this.safetyEl.firstChild; // the sr-only label
    this.safetyEl.replaceChildren(keep,
      line('cb-voicemail', voicemail, 'callback.voicemail', 'callback.voicemail_safe', 'callback.voicemail_not_safe'),
      line('cb-name', name, 'callback.say_name', 'callback.say_name_yes', 'callback.say_name_no'),
      h('p', { class: 'cb-code-reminder', i18n: 'callback.ask_code_word' })); // prettier-ignore
  }

  renderContact(cb) {
    const el = this.contactEl;
    if (cb.contact_deleted_at || (!cb.number_masked && !cb.number)) {
      const reason = has(`callback.deleted.${cb.state}`) ? `callback.deleted.${cb.state}` : null;
      el.dataset.contact = 'deleted';
      el.replaceChildren(h('p', { class: 'cb-deleted' }, h('span', { i18n: 'callback.number_deleted' }), ' ',
        reason ? h('span', { class: 'cb-deleted-reason', i18n: reason }) : null,
        cb.contact_deleted_at ? [' \u00b7 ', h('time', { datetime: cb.contact_deleted_at, text: formatClock(cb.contact_deleted_at) })] : null)); // prettier-ignore
      return;
    }
    if (cb.revealed && cb.number_display) {
      el.dataset.contact = 'revealed';
      const number = String(cb.number || '');
      const link = E164.test(number)
        ? h('a', { class: 'cb-number', href: `tel:${number}`, translate: 'no', 'i18n-aria-label': ['callback.call_label', { number: cb.number_display }] },
          String(cb.number_display)) // prettier-ignore
        : h('span', { class: 'cb-number', translate: 'no', text: String(cb.number_display) });
      el.replaceChildren(
        h('p', { class: 'cb-number-line' }, h('span', { class: 'cb-label', i18n: 'callback.number' }), ' ', link),
        h('p', { class: 'cb-code-line' }, h('span', { class: 'cb-label', i18n: 'callback.code_word' }), ' ',
          h('strong', { class: 'cb-code-word', translate: 'no', dir: 'auto', text: String(cb.code_word || '') }))); // prettier-ignore
      return;
    }
    el.dataset.contact = 'masked';
    el.replaceChildren(
      h('p', { class: 'cb-number-line' }, h('span', { class: 'cb-label', i18n: 'callback.number' }), ' ',
        h('span', { class: 'cb-number-masked', translate: 'no', text: String(cb.number_masked || '') })),
      h('p', { class: 'help cb-claim-hint', i18n: 'callback.claim_to_see' })); // prettier-ignore
  }

  renderWindows(windows) {
    const list = Array.isArray(windows) ? windows.filter((w) => w && w.start) : [];
    const now = serverNow();
    this.windowsEl.replaceChildren(
      ...list.map((w) => {
        const when = windowWhen(w, now);
        const text = windowLabel(w);
        return h('li', { class: `cb-window is-${when}`, 'data-when': when },
          when === 'ended' ? h('s', {}, text) : text,
          when === 'now' ? [' ', h('span', { class: 'badge cb-now', i18n: 'callback.window_now' })] : null,
          when === 'ended' ? [' ', h('span', { class: 'sr-only', i18n: 'callback.window_ended' })] : null); // prettier-ignore
      }),
    );
  }

  renderAttempts(attempts) {
    setT(this.attemptsBox.querySelector('summary'), 'callback.attempts', { n: attempts.length });
    this.attemptsBox.hidden = attempts.length === 0;
    if (attempts.length && !this.attemptsSeen) {
      this.attemptsBox.open = true; // shown the first time there are any; the agent may fold it
      this.attemptsSeen = true;
    }
    this.attemptsEl.replaceChildren(
      ...attempts.map((a) =>
        h('li', { class: `cb-attempt-entry cb-attempt-${a.outcome}`, 'data-outcome': a.outcome || '' },
          h('time', { datetime: a.at || '', text: formatClock(a.at) }), ' ',
          h('strong', { i18n: has(`callback.outcome.${a.outcome}`) ? `callback.outcome.${a.outcome}` : null },
            has(`callback.outcome.${a.outcome}`) ? null : String(a.outcome || '')), ' ',
          a.by && a.by.name ? h('span', { class: 'who', text: a.by.name }) : null,
          a.note ? h('p', { class: 'text', dir: 'auto', text: String(a.note) }) : null), // prettier-ignore
      ),
    );
  }

  async attempt(outcome) {
    if (this.busy || !this.data) return;
    const note = this.note.value.trim();
    if (note.length > MAX_NOTE) {
      this.say('callback.note_too_long', { n: MAX_NOTE }, 'error');
      this.note.focus();
      return;
    }
    if (FINISHING.has(outcome)) {
      const ok = await confirmDialog({ title: 'callback.confirm_title', text: `callback.confirm_${outcome}`,
        yes: `callback.confirm_yes_${outcome}`, vars: { ref: this.pane.reference } }); // prettier-ignore
      if (!ok) return;
    }
    this.busy = true;
    for (const btn of this.outcomeButtons.values()) btn.disabled = true;
    this.attemptForm.setAttribute('aria-busy', 'true');
    try {
      const r = await api('POST', `${this.url}/attempts`, note ? { outcome, note } : { outcome });
      const answer = r && typeof r === 'object' ? r : {};
      // the answer never reveals the number; while it exists, the agent keeps seeing it
      const keep = this.data && this.data.revealed && answer.state === 'pending' && !answer.contact_deleted_at;
      const next = keep
        ? { ...answer, revealed: true, number: this.data.number, number_display: this.data.number_display, code_word: this.data.code_word }
        : answer; // prettier-ignore
      this.note.value = '';
      this.busy = false;
      this.render(next);
      this.say(FINISHING.has(outcome) ? 'callback.recorded_deleted' : 'callback.recorded', undefined, 'ok');
      this.hooks.onChanged();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'callback.error');
      this.say(key, vars, 'error');
    } finally {
      this.busy = false;
      for (const btn of this.outcomeButtons.values()) btn.disabled = false;
      this.attemptForm.setAttribute('aria-busy', 'false');
    }
  }

  async givePassphrase() {
    if (this.passBusy) return;
    this.passBusy = true;
    this.passBtn.disabled = true;
    try {
      const r = await api('POST', `${this.url}/passphrase`);
      if (!r || typeof r.passphrase !== 'string') throw new ApiError(500, 'invalid_answer');
      this.showPassphrase(String(r.reference || this.pane.reference), r.passphrase);
      this.hooks.onChanged();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'callback.passphrase_error');
      this.say(key, vars, 'error');
    } finally {
      this.passBusy = false;
      this.passBtn.disabled = false;
    }
  }

  /** Large, once, to read out on the phone; "read out — hide" removes it from the page. */
  showPassphrase(reference, passphrase) {
    const hide = h('button', { type: 'button', class: 'btn btn-primary cb-pass-hide', i18n: 'callback.passphrase_hide',
      onclick: () => {
        this.clearPassphrase();
        this.passBtn.focus();
      } }); // prettier-ignore
    this.passBox.replaceChildren(
      h('p', { class: 'cb-pass-intro', i18n: 'callback.passphrase_intro' }),
      h('dl', { class: 'cb-pass-values' },
        h('dt', { i18n: 'callback.passphrase_reference' }), h('dd', { class: 'cb-pass-reference', translate: 'no', text: reference }),
        h('dt', { i18n: 'callback.passphrase_label' }), h('dd', { class: 'cb-pass-phrase', translate: 'no', text: passphrase })),
      h('p', { class: 'help', i18n: 'callback.passphrase_once' }),
      hide); // prettier-ignore
    this.passBox.hidden = false;
    this.passBtn.hidden = true;
    this.passBox.focus();
  }

  clearPassphrase() {
    this.passBox.replaceChildren();
    this.passBox.hidden = true;
    if (this.data) this.passBtn.hidden = !this.mayGivePassphrase();
  }

  destroy() {
    this.destroyed = true;
    this.clearPassphrase();
    this.data = null;
  }
}
