// Warm handover in the victim chat: staff propose to pass parts of the case to a partner
// organisation; the victim sees exactly what is asked, as a card in the conversation, and
// answers yes or no (and may withdraw a yes until the packet is sent). API: the section
// "Victim: consent in the chat" of docs/api/handover.md.
//
// Everything from the server or the user is rendered with textContent. Nothing about a
// handover is kept in the browser's storage: the cards are rebuilt from GET /api/chat/handovers
// after every (re)connect and every {"type": "handover"} frame.

import { t, setText } from '../common/i18n.js';
import { api, errorOf } from '../common/api.js';

const $ = (id) => document.getElementById(id);

// the victim may still answer / still take back a yes (the server's can_withdraw decides)
const STATUS_KEYS = {
  proposed: 'waiting',
  consented: 'agreed',
  approved: 'agreed',
  sealed: 'agreed',
  declined: 'declined',
  delivered: 'sent',
  downloaded: 'received',
  withdrawn: 'withdrawn',
  expired: 'expired',
  cancelled: 'cancelled', // no longer listed: staff took the question back
};
// nothing was or will be shared
const NOT_SHARED = new Set(['declined', 'withdrawn', 'expired', 'cancelled']);
const CONTACT_METHODS = new Set(['phone', 'email', 'chat', 'letter']);
const MAX_CONTACT = 200;

const H = {
  token: () => null,
  onLostAccess: () => {},
  cards: new Map(), // handover id -> Card
  waiting: [], // new cards held back while the message history is being replayed
  seq: 0, // newest list request; older answers are dropped
  generation: 0, // bumped by reset: answers for a forgotten conversation are dropped
  counter: 0, // for element ids
  busyObserver: null,
};

// ---------------------------------------------------------------- helpers

function el(tag, className, attrs = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function button(className, key, onClick) {
  const b = el('button', `button ${className}`, { type: 'button' });
  setText(b, key);
  b.addEventListener('click', onClick);
  return b;
}

function clearText(node) {
  node.removeAttribute('data-i18n');
  node.removeAttribute('data-i18n-args');
  node.textContent = '';
}

function lines(value) {
  return Array.isArray(value) ? value.filter((x) => typeof x === 'string' && x.trim()) : [];
}

function partnerName(h) {
  return (h && h.partner && typeof h.partner.name === 'string' && h.partner.name) || t('handover.partner_unknown');
}

// A short message for screen readers (the cards themselves are not read out as they appear).
function announce(key, vars) {
  const live = $('handover-live');
  if (!live) return;
  const text = t(key, vars);
  live.textContent = '';
  // a new text node a moment later: announced even when it equals the previous one
  setTimeout(() => {
    live.textContent = text;
  }, 60);
}

// Is the victim busy with something else (typing a message, the evidence panel, a dialog)?
// Then a new card never takes the focus; it is announced instead.
function victimIsBusy() {
  const active = document.activeElement;
  if ($('view-chat').hidden) return true;
  if (!$('confirm').hidden || !$('evidence-panel').hidden) return true;
  if (!active || active === document.body) return false;
  if (active.closest('.handover-card')) return false;
  return active.matches('textarea, input, select, [contenteditable="true"]') || active.id === 'message-input';
}

function scrollCardIntoView(card) {
  const list = $('messages');
  const delta = card.el.getBoundingClientRect().top - list.getBoundingClientRect().top - 8;
  list.scrollTop += delta;
}

// ---------------------------------------------------------------- one card

class Card {
  constructor(data) {
    H.counter += 1;
    const id = `handover-${H.counter}`;
    this.id = data.id;
    this.data = null;
    this.shownSha = null; // text_sha256 of what is on screen
    this.busy = false;

    this.el = el('article', 'handover-card card', {
      'aria-labelledby': `${id}-title`,
      'aria-live': 'off', // the chat log does not read the whole card out; see announce()
      'data-handover-id': String(data.id),
    });
    this.title = el('h2', 'handover-title', { id: `${id}-title`, tabindex: '-1' });

    this.state = el('div', 'handover-state', { tabindex: '-1' });
    this.badge = el('p', 'handover-badge');
    this.next = el('p', 'handover-next');
    this.state.append(this.badge, this.next);

    this.changed = el('p', 'handover-changed notice', { tabindex: '-1', hidden: '' });
    this.intro = el('p', 'handover-intro');
    this.about = el('p', 'handover-about');

    this.receiveTitle = el('h3', 'handover-list-title', { id: `${id}-receive` });
    this.receive = el('ul', 'handover-list handover-receive', { 'aria-labelledby': `${id}-receive` });
    this.notReceiveTitle = el('h3', 'handover-list-title', { id: `${id}-not-receive` });
    this.notReceive = el('ul', 'handover-list handover-not-receive', { 'aria-labelledby': `${id}-not-receive` });

    this.full = el('details', 'handover-full');
    const summary = el('summary', 'handover-full-toggle');
    setText(summary, 'handover.full_text');
    this.fullText = el('p', 'handover-text');
    this.full.append(summary, this.fullText);

    // optional contact details, only for this purpose
    this.contact = el('div', 'field handover-contact', { hidden: '' });
    this.contactLabel = el('label', '', { for: `${id}-contact` });
    this.contactHint = el('span', 'hint', { id: `${id}-contact-hint` });
    this.contactInput = el('input', 'handover-contact-input', {
      type: 'text',
      id: `${id}-contact`,
      autocomplete: 'off',
      spellcheck: 'false',
      autocapitalize: 'none',
      maxlength: String(MAX_CONTACT),
      'aria-describedby': `${id}-contact-hint`,
    });
    this.contact.append(this.contactLabel, this.contactHint, this.contactInput);

    this.error = el('p', 'error handover-error', { role: 'alert' });

    this.actions = el('div', 'handover-actions');
    this.yes = button('handover-yes', 'handover.yes', () => this.answer('accepted'));
    this.no = button('secondary handover-no', 'handover.no', () => this.answer('declined'));
    this.actions.append(this.yes, this.no);

    this.withdrawBox = el('div', 'handover-withdraw', { hidden: '' });
    this.withdrawButton = button('quiet handover-withdraw-button', 'handover.withdraw', () => this.askWithdraw());
    this.withdrawBox.append(this.withdrawButton);

    this.confirm = el('div', 'handover-confirm', { role: 'group', hidden: '', 'aria-labelledby': `${id}-confirm` });
    this.confirmText = el('p', 'handover-confirm-text', { id: `${id}-confirm`, tabindex: '-1' });
    const confirmActions = el('div', 'handover-actions');
    this.confirmYes = button('danger handover-withdraw-yes', 'handover.withdraw_yes', () => this.withdraw());
    this.confirmNo = button('secondary handover-withdraw-no', 'handover.withdraw_no', () => this.cancelWithdraw());
    confirmActions.append(this.confirmYes, this.confirmNo);
    this.confirm.append(this.confirmText, confirmActions);
    this.confirm.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' || e.key === 'Esc') this.cancelWithdraw();
    });

    this.el.append(
      this.title,
      this.state,
      this.changed,
      this.intro,
      this.about,
      this.receiveTitle,
      this.receive,
      this.notReceiveTitle,
      this.notReceive,
      this.full,
      this.contact,
      this.error,
      this.actions,
      this.withdrawBox,
      this.confirm,
    );
    this.update(data);
  }

  get status() {
    return this.data ? this.data.status : null;
  }

  // the victim can answer now (a yes given on the phone waits for a second staff member)
  get open() {
    return this.status === 'proposed' && this.data.can_answer !== false;
  }

  /** Show the server's VictimHandover. Returns true when the text on screen changed. */
  update(data) {
    const previous = this.data;
    this.data = data;
    const name = partnerName(data);
    const vars = { partner: name };
    const statusKey = statusKeyOf(data);
    this.el.dataset.status = data.status || '';

    setText(this.title, this.open ? 'handover.title_question' : 'handover.title', vars);
    setText(this.badge, `handover.status.${statusKey}`, vars);
    if (this.open) clearText(this.next);
    else setText(this.next, `handover.next.${statusKey}`, vars);

    if (this.open) setText(this.intro, 'handover.intro', vars);
    else clearText(this.intro);
    this.intro.hidden = !this.open;

    // what the server wrote is in the handover's language, whatever the page's language is
    const lang = typeof data.language === 'string' && /^[a-z]{2}(-[A-Za-z]{2})?$/.test(data.language) ? data.language : null;
    for (const node of [this.about, this.receive, this.notReceive, this.fullText]) {
      if (lang) node.setAttribute('lang', lang);
      else node.removeAttribute('lang');
    }

    const description = data.partner && typeof data.partner.description === 'string' ? data.partner.description : '';
    this.about.textContent = description;
    this.about.hidden = !description;

    // once nothing will be shared, the lists say what was asked (not what they "will receive")
    const notShared = NOT_SHARED.has(data.status);
    setText(this.receiveTitle, notShared ? 'handover.was_asked' : 'handover.will_receive', vars);
    setText(this.notReceiveTitle, 'handover.will_not_receive', vars);
    const textChanged = this.shownSha !== null && data.text_sha256 !== this.shownSha;
    if (!previous || textChanged || !sameLines(previous, data)) {
      fill(this.receive, lines(data.will_receive));
      fill(this.notReceive, lines(data.will_not_receive));
      this.fullText.textContent = typeof data.text === 'string' ? data.text : '';
    }
    this.receiveTitle.hidden = this.receive.hidden = !this.receive.children.length;
    this.notReceiveTitle.hidden = this.notReceive.hidden = notShared || !this.notReceive.children.length;
    this.full.hidden = !this.fullText.textContent;
    this.shownSha = typeof data.text_sha256 === 'string' ? data.text_sha256 : null;

    // the contact field: only while the question is open and the proposal shares contact
    const method = CONTACT_METHODS.has(data.contact_method) ? data.contact_method : 'other';
    const contactShown = this.open && Boolean(data.can_add_contact);
    this.contact.hidden = !contactShown;
    if (contactShown) {
      setText(this.contactLabel, `handover.contact_label.${method}`, vars);
      setText(this.contactHint, 'handover.contact_hint', vars);
      this.contactInput.setAttribute('inputmode', method === 'phone' ? 'tel' : method === 'email' ? 'email' : 'text');
    } else {
      this.contactInput.value = ''; // never kept once the question is answered
    }

    this.actions.hidden = !this.open;
    const withdrawable = !this.open && Boolean(data.can_withdraw);
    this.withdrawBox.hidden = !withdrawable || !this.confirm.hidden;
    if (!withdrawable) this.confirm.hidden = true;
    if (!this.open) this.changed.hidden = true;
    this.setBusy(this.busy);
    return textChanged;
  }

  /** Staff took the question back: it is no longer listed. */
  markCancelled() {
    if (this.status === 'cancelled') return;
    this.update({ ...this.data, status: 'cancelled', can_withdraw: false, can_add_contact: false });
  }

  showChanged() {
    setText(this.changed, 'handover.changed');
    this.changed.hidden = false;
  }

  setBusy(busy) {
    this.busy = busy;
    for (const b of [this.yes, this.no, this.withdrawButton, this.confirmYes, this.confirmNo]) {
      b.disabled = busy;
      if (busy) b.setAttribute('aria-busy', 'true');
      else b.removeAttribute('aria-busy');
    }
    this.contactInput.disabled = busy;
  }

  setError(key, vars) {
    if (key) setText(this.error, key, vars);
    else clearText(this.error);
  }

  focusState() {
    scrollCardIntoView(this);
    this.state.focus({ preventScroll: true });
  }

  async answer(decision) {
    if (this.busy || !this.open) return;
    const token = H.token();
    if (!token) return;
    this.setError(null);
    const body = { decision, text_sha256: this.shownSha };
    const details = this.contactInput.value.trim();
    if (decision === 'accepted' && !this.contact.hidden && details) body.contact_details = details;
    const generation = H.generation;
    this.setBusy(true);
    try {
      const { status, data } = await api(`/api/chat/handovers/${encodeURIComponent(this.id)}/consent`, {
        method: 'POST',
        body,
        token,
      });
      if (generation !== H.generation) return;
      if (status === 200 && data && data.id) {
        this.contactInput.value = '';
        this.setBusy(false);
        this.update(data);
        this.focusState();
        return;
      }
      this.setBusy(false);
      await this.failed(status, data);
    } catch {
      if (generation !== H.generation) return;
      this.setBusy(false);
      this.setError('common.error_network');
    }
  }

  askWithdraw() {
    if (this.busy) return;
    this.setError(null);
    setText(this.confirmText, 'handover.withdraw_confirm', { partner: partnerName(this.data) });
    this.withdrawBox.hidden = true;
    this.confirm.hidden = false;
    this.confirmText.focus();
  }

  cancelWithdraw() {
    if (this.confirm.hidden) return;
    this.confirm.hidden = true;
    this.withdrawBox.hidden = !this.data.can_withdraw;
    if (!this.withdrawBox.hidden) this.withdrawButton.focus();
  }

  async withdraw() {
    if (this.busy) return;
    const token = H.token();
    if (!token) return;
    this.setError(null);
    const generation = H.generation;
    this.setBusy(true);
    try {
      const { status, data } = await api(`/api/chat/handovers/${encodeURIComponent(this.id)}/withdraw`, {
        method: 'POST',
        token,
      });
      if (generation !== H.generation) return;
      this.setBusy(false);
      if (status === 200 && data && data.id) {
        this.confirm.hidden = true;
        this.update(data);
        this.focusState();
        return;
      }
      this.confirm.hidden = true;
      await this.failed(status, data);
    } catch {
      if (generation !== H.generation) return;
      this.setBusy(false);
      this.setError('common.error_network');
    }
  }

  // A refused answer: say why in plain words and show the card as it is now.
  async failed(status, data) {
    if (status === 401) {
      H.onLostAccess();
      return;
    }
    const code = errorOf(data).code;
    if (status === 409 && code === 'text_changed') {
      await refreshHandovers();
      if (this.open) {
        this.showChanged();
        scrollCardIntoView(this);
        this.changed.focus({ preventScroll: true });
        return;
      }
      this.setError('handover.errors.not_open');
    } else if (status === 409 && code === 'already_delivered') {
      await refreshHandovers();
      this.setError('handover.errors.already_delivered', { partner: partnerName(this.data) });
    } else if (status === 409 || status === 404) {
      await refreshHandovers();
      this.setError('handover.errors.not_open');
    } else if (status === 429) {
      this.setError('handover.errors.busy');
    } else {
      this.setError('common.error_generic');
    }
    this.withdrawBox.hidden = !(this.data.can_withdraw && this.status !== 'proposed');
    this.focusError();
  }

  focusError() {
    // role="alert" reads it out; the focus stays on the card so nothing is lost
    if (!this.el.contains(document.activeElement) || document.activeElement.disabled) {
      this.title.focus({ preventScroll: true });
    }
    scrollCardIntoView(this);
  }
}

function statusKeyOf(data) {
  if (data.status === 'proposed' && data.can_answer === false) return 'recorded';
  return STATUS_KEYS[data.status] || 'waiting';
}

function sameLines(a, b) {
  const same = (x, y) => JSON.stringify(lines(x)) === JSON.stringify(lines(y));
  return a.text === b.text && same(a.will_receive, b.will_receive) && same(a.will_not_receive, b.will_not_receive);
}

function fill(list, items) {
  list.replaceChildren(
    ...items.map((line) => {
      const li = document.createElement('li');
      li.textContent = line;
      return li;
    }),
  );
}

// ---------------------------------------------------------------- the cards in the conversation

function historyReplaying() {
  return $('messages').getAttribute('aria-busy') === 'true';
}

// A new card goes where the conversation is now: after the stored messages, before any of the
// victim's own messages that are still being sent.
function place(card) {
  const list = $('messages');
  const firstPending = list.querySelector('.message.pending');
  if (firstPending) list.insertBefore(card.el, firstPending);
  else list.append(card.el);
}

function present(newCards) {
  if (!newCards.length) return;
  for (const card of newCards) place(card);
  const asking = newCards.filter((c) => c.open);
  if (!asking.length) return;
  const first = asking[0];
  const vars = { partner: partnerName(first.data) };
  if (victimIsBusy()) {
    announce('handover.announce_new', vars);
    return;
  }
  scrollCardIntoView(first);
  first.title.focus({ preventScroll: true });
}

function flushWaiting() {
  if (historyReplaying() || !H.waiting.length) return;
  const cards = H.waiting.filter((c) => H.cards.get(c.id) === c);
  H.waiting = [];
  present(cards);
}

function render(list) {
  const seen = new Set();
  const fresh = [];
  for (const data of list) {
    if (!data || typeof data !== 'object' || data.id == null) continue;
    const id = String(data.id);
    seen.add(id);
    const card = H.cards.get(id);
    if (!card) {
      const created = new Card({ ...data, id });
      H.cards.set(id, created);
      fresh.push(created);
      continue;
    }
    const before = card.status;
    const wasOpen = card.open;
    const changed = card.update({ ...data, id });
    const vars = { partner: partnerName(card.data) };
    if (changed && card.open) {
      // the question on screen is not the one asked any more
      card.showChanged();
      announce('handover.announce_changed', vars);
    } else if (before !== card.status && !card.busy) {
      if (wasOpen && !card.open) card.contactInput.value = '';
      announce(`handover.status.${statusKeyOf(card.data)}`, vars);
    }
  }
  for (const [id, card] of H.cards) {
    if (!seen.has(id) && card.status !== 'cancelled') {
      card.markCancelled();
      announce('handover.status.cancelled', { partner: partnerName(card.data) });
    }
  }
  if (historyReplaying()) {
    H.waiting.push(...fresh);
  } else {
    present(fresh);
  }
}

export async function refreshHandovers() {
  const token = H.token();
  if (!token) return;
  H.seq += 1;
  const seq = H.seq;
  const generation = H.generation;
  try {
    const { status, data } = await api('/api/chat/handovers', { token });
    if (seq !== H.seq || generation !== H.generation || token !== H.token()) return;
    if (status === 200 && data && Array.isArray(data.handovers)) render(data.handovers);
    else if (status === 401) H.onLostAccess();
  } catch {
    /* the next frame or reconnect fetches again */
  }
}

export function resetHandover() {
  H.generation += 1;
  H.seq += 1;
  for (const card of H.cards.values()) card.el.remove();
  H.cards = new Map();
  H.waiting = [];
  const live = $('handover-live');
  if (live) live.textContent = '';
}

export function initHandover(options) {
  Object.assign(H, options);
  if ('MutationObserver' in window) {
    H.busyObserver = new MutationObserver(flushWaiting);
    H.busyObserver.observe($('messages'), { attributes: true, attributeFilter: ['aria-busy'] });
  }
}
