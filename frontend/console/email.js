// E-mail cases in a pane (docs/email.md, "Replies" and "Delivery"). There is no live chat with
// the victim: the pane shows the case's messages (the chat socket still brings new ones in
// order), and a reply goes out by POST …/email/reply with the console's client_id, so a retry
// after a lost answer never sends a mail twice. Each outgoing mail shows its delivery state
// from GET …/email (queued, sent, retrying, failed with the reason), fetched again whenever the
// case changes (every delivery outcome is a `case_changed`); a failed delivery shows on the
// case, and — through MailFailures — as a badge on its queue row.
import { api, ApiError } from './api.js';
import { setT, has } from './strings.js';
import { h, formatClock } from './dom.js';
import { errorKey } from './dialogs.js';

const STATUSES = ['queued', 'retrying', 'sent', 'failed'];
const REASONS = ['refused', 'retries_exhausted', 'bounced', 'SMTP'];
// a reply refused for what it is (or where it goes): retrying cannot help
const FINAL = new Set(['not_email', 'no_address', 'ended', 'invalid', 'forbidden', 'not_found']);
const UNKNOWN_RELOAD_MS = 1500;
let counter = 0;

/** "refused 550" -> i18n key + vars for the words; an unknown text stays as it is. */
export function reasonLabel(error, cls = 'mail-reason') {
  const text = String(error || '').trim();
  if (!text) return h('span', { class: cls, i18n: 'mail.reason.unknown' });
  const [word, ...rest] = text.split(/\s+/);
  const code = rest.join(' ');
  if (REASONS.includes(word) && has(`mail.reason.${word}`)) {
    return h('span', { class: cls, i18n: [code ? `mail.reason.${word}_code` : `mail.reason.${word}`, { code }] });
  }
  return h('span', { class: cls, text });
}

/** Which cases have a mail that was not delivered, as far as this console has seen: for the queue. */
export class MailFailures {
  constructor() {
    this.byCase = new Map(); // case id -> number of failed mails
    this.listeners = new Set();
  }

  get(caseId) {
    return this.byCase.get(caseId) || 0;
  }

  set(caseId, n) {
    const before = this.get(caseId);
    if (n > 0) this.byCase.set(caseId, n);
    else this.byCase.delete(caseId);
    if (before !== n) for (const fn of this.listeners) fn();
  }

  onChange(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  clear() {
    this.byCase.clear();
    this.listeners.clear();
  }
}

export class EmailPanel {
  /** pane: the ChatPane; failures: MailFailures; hooks: { onSessionLost(), onSent() } */
  constructor({ pane, failures, hooks }) {
    this.pane = pane;
    this.failures = failures;
    this.hooks = hooks;
    this.base = `/api/staff/cases/${encodeURIComponent(pane.id)}/email`;
    this.bySeq = new Map(); // message seq -> its outgoing mail
    this.loaded = false;
    this.canReply = true;
    this.failedSig = '';
    this.build();
  }

  build() {
    const id = `mail-${++counter}`;
    // the option of item 7: the reference and a new passphrase to continue in the chat
    this.chatAccess = h('input', { type: 'checkbox', id: `${id}-chat`, class: 'mail-chat-access', 'aria-describedby': `${id}-chat-help` });
    this.option = h('div', { class: 'mail-option' },
      this.chatAccess, h('label', { for: this.chatAccess.id, i18n: 'mail.chat_access' }),
      h('p', { class: 'help', id: `${id}-chat-help`, i18n: 'mail.chat_access_help' })); // prettier-ignore
    this.noAddress = h('p', { class: 'mail-no-address', role: 'status', i18n: 'mail.no_address', hidden: true });
    // shown at pane level, above the tabs: a mail the victim never got must not be missed
    this.failedList = h('ul', { class: 'mail-failed-list' });
    this.banner = h('div', { class: 'mail-failed', role: 'alert', hidden: true },
      h('p', { class: 'mail-failed-title', i18n: 'mail.failed_title' }), this.failedList,
      h('p', { class: 'help', i18n: 'mail.failed_help' })); // prettier-ignore
  }

  get wantsChatAccess() {
    return this.chatAccess.checked;
  }

  /** GET …/email: whether the case can be answered by mail, and every mail sent with its state. */
  async load() {
    if (this.destroyed) return;
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    try {
      const r = await api('GET', this.base);
      if (this.destroyed) return;
      const outgoing = Array.isArray(r && r.outgoing) ? r.outgoing.filter((o) => o && typeof o.id === 'string') : [];
      this.bySeq = new Map(outgoing.filter((o) => Number.isInteger(o.seq)).map((o) => [o.seq, o]));
      this.outgoing = outgoing;
      this.canReply = !(r && r.can_reply === false);
      this.loaded = true;
      this.render();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      // 403 (not ours any more) or 409 (not an e-mail case): nothing to show; the pane says why
    } finally {
      this.loading = false;
      if (this.again) {
        this.again = false;
        this.load();
      }
    }
  }

  render() {
    this.noAddress.hidden = this.canReply;
    this.pane.setReplyAllowed(this.canReply);
    for (const el of this.pane.list.querySelectorAll('.message.from-staff[data-seq]')) this.decorate(el, Number(el.dataset.seq));
    const failed = (this.outgoing || []).filter((o) => o.status === 'failed');
    this.failures.set(this.pane.id, failed.length);
    const sig = JSON.stringify(failed.map((o) => [o.id, o.error]));
    if (sig === this.failedSig) return;
    this.failedSig = sig;
    this.banner.hidden = failed.length === 0;
    this.failedList.replaceChildren(
      ...failed.map((o) =>
        h('li', { class: 'mail-failed-entry', 'data-outgoing-id': o.id },
          h('span', { i18n: [o.automatic ? 'mail.failed_entry_auto' : 'mail.failed_entry', { time: formatClock(o.created_at) }] }),
          ' ', reasonLabel(o.error)), // prettier-ignore
      ),
    );
  }

  /** A staff message of this case: its mail's delivery state in place of the chat's read mark. */
  decorate(el, seq) {
    if (!el || !Number.isInteger(seq)) return;
    const o = this.bySeq.get(seq);
    let state;
    if (o && STATUSES.includes(o.status)) state = `mail_${o.status}`;
    else if (o) state = 'mail_unknown';
    else if (this.loaded && this.checkedUpTo >= seq) state = 'mail_none'; // stored, but never mailed
    else {
      state = 'mail_checking';
      this.reloadSoon(seq);
    }
    this.pane.msgs.setMark(el, state);
    el.dataset.delivery = o ? o.status : '';
    let why = el.querySelector('.delivery-detail');
    const detail = o && (o.status === 'failed' || o.status === 'retrying');
    if (!detail) {
      if (why) why.remove();
      return;
    }
    if (!why) {
      why = h('p', { class: 'delivery-detail' });
      el.append(why);
    }
    const attempts = Number(o.attempts) || 0;
    const parts = [h('span', { i18n: o.status === 'failed' ? 'mail.detail_failed' : 'mail.detail_retrying' }), ' ', reasonLabel(o.error)];
    if (attempts) parts.push(' \u00b7 ', h('span', { i18n: ['mail.attempts', { n: attempts }] }));
    why.replaceChildren(...parts);
  }

  /** A staff message whose mail is not known yet (a colleague's reply): look again shortly. */
  reloadSoon(seq) {
    this.wanted = Math.max(this.wanted || 0, seq);
    if (this.reloadTimer) return;
    this.reloadTimer = setTimeout(async () => {
      this.reloadTimer = null;
      const upTo = this.wanted;
      await this.load();
      this.checkedUpTo = Math.max(this.checkedUpTo || 0, upTo);
      for (const el of this.pane.list.querySelectorAll('.message.from-staff[data-seq]')) {
        const s = Number(el.dataset.seq);
        if (s <= upTo && !this.bySeq.has(s)) this.decorate(el, s);
      }
    }, UNKNOWN_RELOAD_MS);
  }

  /**
   * Send one reply (the pane's pending entry `p`, with its client_id). A network failure or a
   * server error leaves it pending: the pane tries again with the same client_id. A refusal
   * ends it: the message is marked "not sent" and the pane says why.
   */
  async send(clientId, p) {
    p.inflight = true;
    p.sentAt = Date.now();
    try {
      const r = await api('POST', `${this.base}/reply`, { text: p.text, client_id: clientId, chat_access: Boolean(p.chatAccess) });
      p.inflight = false;
      const seq = Number(r && r.seq);
      if (r && r.outgoing && typeof r.outgoing === 'object' && Number.isInteger(seq)) {
        this.bySeq.set(seq, { ...r.outgoing, seq });
        this.outgoing = [...(this.outgoing || []).filter((o) => o.id !== r.outgoing.id), { ...r.outgoing, seq }];
      }
      this.pane.settle(clientId, seq, null);
      const el = Number.isInteger(seq) ? this.pane.list.querySelector(`.message[data-seq="${seq}"]`) : null;
      if (el) this.decorate(el, seq);
      this.hooks.onSent();
    } catch (e) {
      p.inflight = false;
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const final = e instanceof ApiError && (FINAL.has(e.code) || (e.status >= 400 && e.status < 500 && e.status !== 429));
      if (!final) return; // kept pending: tried again with the same client_id
      this.pane.dropPending(clientId);
      const [key, vars] = errorKey(e, 'mail.error');
      this.pane.banner(key, vars);
      if (e.code === 'no_address') {
        this.canReply = false;
        this.render();
      }
    }
  }

  /** The reply box: the option to add the reference and a passphrase, and whether mail is possible. */
  tools() {
    return [this.option, this.noAddress];
  }

  destroy() {
    this.destroyed = true;
    clearTimeout(this.reloadTimer);
  }
}
