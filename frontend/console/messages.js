// A pane's message list: each stored message shown once, in seq order; unacked own messages at the end.
import { setT } from './strings.js';
import { h, formatClock } from './dom.js';

export class MessageList {
  /** isOwn(clientId) says whether a staff message was written by the person at this console. */
  constructor(el, isOwn) {
    this.el = el;
    this.isOwn = isOwn;
    this.bySeq = new Map(); // seq -> element
    this.maxSeq = 0; // highest seq shown
    this.victimRead = 0; // the victim has seen everything up to here
    this.decorate = null; // (el, seq): an e-mail case shows each staff message's delivery state instead
  }

  has(seq) {
    return this.bySeq.has(seq);
  }

  /** Show a stored message (a `message` frame). */
  add({ from, text, at, seq, clientId }) {
    const el = this.build({ from, text, at, clientId });
    if (el.classList.contains('from-staff')) this.setMark(el, seq <= this.victimRead ? 'read' : 'sent');
    this.insert(el, seq);
    if (this.decorate && el.classList.contains('from-staff')) this.decorate(el, seq);
    return el;
  }

  /** Show an own message that is not acked yet. */
  addPending(clientId, text) {
    const el = this.build({ from: 'staff', text, at: new Date().toISOString(), clientId });
    el.classList.add('is-pending');
    this.setMark(el, 'sending');
    this.insert(el, null);
    this.scrollToEnd();
    return el;
  }

  /** A pending message got its seq; false if that seq was already shown (the element is dropped). */
  settle(el, seq, at) {
    el.remove();
    if (this.bySeq.has(seq)) return false;
    el.classList.remove('is-pending');
    if (at) {
      const time = el.querySelector('time');
      time.setAttribute('datetime', at);
      time.textContent = formatClock(at);
    }
    this.insert(el, seq);
    this.setMark(el, seq <= this.victimRead ? 'read' : 'sent');
    if (this.decorate) this.decorate(el, seq);
    return true;
  }

  /** The stored text of a shown message (an e-mail reply is stored with more than was typed). */
  setText(seq, text) {
    const el = this.bySeq.get(seq);
    const p = el && el.querySelector('.text');
    if (p && typeof text === 'string' && p.textContent !== text) p.textContent = text;
  }

  fail(el) {
    el.classList.remove('is-pending');
    this.setMark(el, 'failed');
  }

  markRead(seq) {
    if (!Number.isInteger(seq) || seq <= this.victimRead) return;
    this.victimRead = seq;
    for (const [s, el] of this.bySeq) {
      if (s <= seq && el.classList.contains('from-staff') && el.dataset.mark !== 'read') this.setMark(el, 'read');
    }
  }

  clear() {
    this.bySeq.clear();
    this.el.replaceChildren();
  }

  build({ from, text, at, clientId }) {
    const kind = from === 'victim' ? 'victim' : from === 'system' ? 'system' : 'staff';
    const who =
      kind === 'victim'
        ? 'sender.victim'
        : kind === 'system'
          ? 'sender.system'
          : this.isOwn(clientId)
            ? 'sender.you'
            : 'sender.staff';
    const el = h('li', { class: `message from-${kind}` });
    if (clientId) el.dataset.clientId = clientId;
    const meta = h('p', { class: 'meta' },
      h('span', { class: 'who', i18n: who }), ' ',
      h('time', { datetime: at || '', text: formatClock(at) })); // prettier-ignore
    if (kind === 'staff') meta.append(' ', h('span', { class: 'mark' }));
    el.append(meta, h('p', { class: 'text', text: String(text ?? '') }));
    return el;
  }

  setMark(el, state) {
    el.dataset.mark = state;
    const mark = el.querySelector('.mark');
    if (mark) setT(mark, `mark.${state}`);
  }

  /** Insert in seq order (scanning from the end: the usual case is an append). */
  insert(el, seq) {
    const stick = this.nearEnd();
    if (seq === null || seq === undefined) {
      this.el.append(el);
    } else {
      el.dataset.seq = String(seq);
      this.bySeq.set(seq, el);
      let before = null;
      let c = this.el.lastElementChild;
      while (c && (c.dataset.seq === undefined || Number(c.dataset.seq) > seq)) {
        before = c;
        c = c.previousElementSibling;
      }
      this.el.insertBefore(el, before);
      if (seq > this.maxSeq) this.maxSeq = seq;
    }
    if (stick) this.scrollToEnd();
  }

  nearEnd() {
    return this.el.scrollHeight - this.el.scrollTop - this.el.clientHeight < 80;
  }

  scrollToEnd() {
    this.el.scrollTop = this.el.scrollHeight;
  }
}
