// One open case: its header (priority, status, SLA, who else has it open), triage controls and
// the case actions (transfer, release, close); the handover note first when there is one; then
// tabs for the conversation, the private notes, the timeline, the removal requests and the warm
// handovers to partner organisations (partner-handover.js), and what is purged when, with the
// legal hold (retention.js). The conversation has its own
// /ws/chat socket: messages in seq order exactly once, unacked sends kept and re-sent until acked.
// A callback request shows in a panel at the top (callback.js); an e-mail case answers by mail
// (email.js) instead of over the socket, which then only brings the case's messages in.
import { api, ApiError } from './api.js';
import { setT, has } from './strings.js';
import { h, uuid, wsUrl, Backoff, confirmDialog } from './dom.js';
import { MessageList } from './messages.js';
import { EvidenceSection } from './evidence.js';
import { TriageBar } from './triage.js';
import { HandoverBanner } from './handover.js';
import { NotesPanel } from './notes.js';
import { TimelinePanel } from './timeline.js';
import { CannedPicker } from './canned.js';
import { closeDialog, transferDialog, errorKey } from './dialogs.js';
import { priorityBadge, flagBadges, codeLabel, channelLabel } from './badges.js';
import { slaTimer } from './sla.js';
import { referralText } from './vocab.js';
import { CallbackPanel } from './callback.js';
import { EmailPanel } from './email.js';
import { NoticesPanel } from './notices.js';
import { PartnerHandoverPanel } from './partner-handover.js';
import { RetentionPanel } from './retention.js';

const RETRY_MS = 4000; // re-send an unacked message after this long
const TYPING_SEND_MS = 2000; // at most one typing frame per 2 s
const TYPING_SHOW_MS = 5000; // hide the victim's typing indicator after this
const PING_MS = 25000;
const STALE_MS = 65000; // nothing heard for this long: the socket is dead, reconnect
const MAX_TEXT = 4000;
const TABS = ['conversation', 'notes', 'timeline', 'notices', 'handover', 'retention'];

let counter = 0;

export class ChatPane {
  /**
   * info: what is known of the case (a queue row, or a claim answer); me: GET /api/staff/me;
   * vocab: the Vocabulary; presence: who has which case open; hooks: see Panes.open.
   */
  constructor({ info, me, vocab, presence, channels, hooks }) {
    this.id = info.id;
    this.channels = channels; // { mailFailures }
    this.info = { ...info };
    this.reference = info.reference || '';
    this.me = me;
    this.vocab = vocab;
    this.presence = presence;
    this.hooks = hooks;
    this.status = null;
    this.lastSeq = 0; // highest seq received as a message frame: the "after" of the next hello
    this.pending = new Map(); // client_id -> {text, el, sentAt}
    this.sentIds = new Set(); // client_ids sent from this tab
    this.readSent = 0;
    this.unread = 0;
    this.baseSeq = null; // last_seq at the first welcome: later victim messages may count as unread
    this.historyUntil = 0;
    this.inView = false;
    this.closed = false;
    this.gone = false; // deleted or not ours: stop reconnecting
    this.ws = null;
    this.welcomed = false;
    this.backoff = new Backoff(500, 10000);
    this.lastTypingSent = 0;
    this.lastFrameAt = 0;
    this.currentTab = 'conversation';
    this.canReply = true;
    this.build();
    this.setStatus(info.status || 'new');
    this.updateInfo(this.info); // a handover note shows only from the case's own answer
    this.connect();
    this.loadCase();
    this.callback.load();
    this.retryTimer = setInterval(() => this.retryPending(), 1000);
    this.pingTimer = setInterval(() => this.ping(), PING_MS);
    this.offPresence = presence.onChange(() => this.showViewers());
  }

  get mine() {
    const a = this.info.assigned_to;
    return Boolean(a && a.id === this.me.id);
  }

  get supervisor() {
    return this.me.role === 'supervisor' || this.me.role === 'admin';
  }

  get base() {
    return `/api/staff/cases/${encodeURIComponent(this.id)}`;
  }

  // --- building ----------------------------------------------------------------------------

  build() {
    const n = ++counter;
    const ref = { ref: this.reference };
    const sessionLost = () => this.hooks.onSessionLost();
    this.refEl = h('span', { class: 'ref', text: this.reference });
    this.prioEl = h('span', { class: 'pane-prio' });
    this.statusEl = h('span', { class: 'status' });
    this.unreadEl = h('span', { class: 'badge unread', hidden: true });
    this.connEl = h('span', { class: 'conn', role: 'status' });
    this.metaEl = h('p', { class: 'pane-meta' });
    this.flagsEl = h('div', { class: 'pane-flags' });
    this.viewersEl = h('p', { class: 'viewers pane-viewers', role: 'status', 'aria-live': 'polite', hidden: true });
    this.closeBtn = h('button', { type: 'button', class: 'btn btn-icon close-pane', 'i18n-aria-label': ['pane.close', ref],
      'i18n-title': ['pane.close', ref], onclick: () => this.requestClose() }, '\u00d7'); // prettier-ignore

    // the case actions
    this.triage = new TriageBar({ pane: this, vocab: this.vocab,
      hooks: { onCase: (c, answer) => this.onTriaged(c, answer), onSessionLost: sessionLost } }); // prettier-ignore
    this.transferBtn = h('button', { type: 'button', class: 'btn transfer', i18n: 'case.transfer', onclick: () => this.transfer() });
    this.releaseBtn = h('button', { type: 'button', class: 'btn release', i18n: 'case.release', onclick: () => this.release() });
    this.closeCaseBtn = h('button', { type: 'button', class: 'btn btn-quiet-danger close-case', i18n: 'case.close',
      onclick: () => this.closeCase() }); // prettier-ignore
    this.paneMsg = h('p', { class: 'pane-msg', role: 'status', hidden: true });

    this.bannerEl = h('p', { class: 'pane-banner', role: 'status', hidden: true });
    this.handover = new HandoverBanner({ pane: this,
      hooks: { onSeen: () => this.handoverSeen(), onSessionLost: sessionLost } }); // prettier-ignore

    // the conversation
    this.list = h('ol', { class: 'messages', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions',
      'aria-busy': 'true', tabindex: '0', 'i18n-aria-label': ['pane.messages', ref] }); // prettier-ignore
    this.msgs = new MessageList(this.list, (clientId) => this.sentIds.has(clientId) || this.mine);
    this.typingEl = h('p', { class: 'typing', hidden: true, i18n: 'pane.typing' });
    const rid = `pane-${n}-reply`;
    this.reply = h('textarea', { class: 'reply', id: rid, rows: '2', maxlength: String(MAX_TEXT),
      'i18n-placeholder': 'pane.reply_placeholder', 'aria-describedby': `pane-${n}-hint` }); // prettier-ignore
    this.sendBtn = h('button', { type: 'submit', class: 'btn btn-primary send', i18n: 'pane.send' });
    this.canned = new CannedPicker({ pane: this, reply: this.reply,
      hooks: { onSessionLost: sessionLost, onInserted: () => this.fitReply() } }); // prettier-ignore
    this.form = h('form', { class: 'reply-form', onsubmit: (e) => { e.preventDefault(); this.sendFromBox(); } },
      h('label', { for: rid, class: 'sr-only', i18n: ['pane.reply_label', ref] }),
      this.reply, this.sendBtn,
      h('div', { class: 'reply-tools' }, this.canned.toggle,
        h('p', { class: 'hint', id: `pane-${n}-hint`, i18n: 'pane.reply_hint' }))); // prettier-ignore
    this.evidence = new EvidenceSection({ pane: this, me: this.me, hooks: { onSessionLost: sessionLost } });
    this.notes = new NotesPanel({ pane: this, hooks: { onSessionLost: sessionLost, onAdded: () => this.refreshPanels() } });
    this.timeline = new TimelinePanel({ pane: this, hooks: { onSessionLost: sessionLost } });
    this.noticesPanel = new NoticesPanel({ pane: this, hooks: { onSessionLost: sessionLost } });
    this.partnerHandover = new PartnerHandoverPanel({ pane: this, hooks: { onSessionLost: sessionLost } });
    this.retention = new RetentionPanel({ pane: this, hooks: { onSessionLost: sessionLost } });
    this.callback = new CallbackPanel({ pane: this,
      hooks: { onSessionLost: sessionLost, onChanged: () => this.somethingRecorded() } }); // prettier-ignore
    this.mailSlot = h('div', { class: 'mail-slot' }); // the e-mail delivery failures, once this is known to be an e-mail case

    // the tabs: conversation, notes, timeline
    this.tabButtons = new Map();
    this.panels = new Map();
    const tablist = h('div', { class: 'pane-tabs', role: 'tablist', 'i18n-aria-label': ['pane.tabs', ref] });
    const contents = {
      conversation: [this.list, this.typingEl, this.canned.el, this.form],
      notes: [this.notes.el],
      timeline: [this.timeline.el],
      notices: [this.noticesPanel.el],
      handover: [this.partnerHandover.el],
      retention: [this.retention.el],
    };
    for (const name of TABS) {
      const tid = `pane-${n}-tab-${name}`;
      const pid = `pane-${n}-panel-${name}`;
      const btn = h('button', { type: 'button', role: 'tab', id: tid, class: `pane-tab pane-tab-${name}`, 'data-tab': name,
        'aria-controls': pid, i18n: `pane.tab.${name}`, onclick: () => this.showTab(name, true) }); // prettier-ignore
      btn.addEventListener('keydown', (e) => this.tabKey(e, name));
      const panel = h('div', { role: 'tabpanel', id: pid, class: `tabpanel tabpanel-${name}`, 'aria-labelledby': tid },
        ...contents[name]); // prettier-ignore
      this.tabButtons.set(name, btn);
      this.panels.set(name, panel);
      tablist.append(btn);
    }

    this.titleEl = h('h2', { class: 'pane-title', id: `pane-${n}-title` }, this.prioEl, this.refEl, this.statusEl, this.unreadEl);
    this.el = h('section', { class: 'pane', 'data-case-id': this.id, 'aria-labelledby': `pane-${n}-title` },
      h('header', { class: 'pane-head' },
        h('div', { class: 'pane-head-text' }, this.titleEl, this.metaEl, this.flagsEl, this.viewersEl),
        this.connEl, this.closeBtn),
      h('div', { class: 'pane-actions', role: 'group', 'i18n-aria-label': ['pane.actions', ref] },
        this.triage.toggle, this.evidence.toggle, this.transferBtn, this.releaseBtn, this.closeCaseBtn),
      this.triage.el, this.paneMsg, this.bannerEl, this.handover.el, this.callback.el, this.mailSlot,
      this.evidence.banner, this.evidence.el, tablist, ...this.panels.values()); // prettier-ignore
    this.reply.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter' || e.shiftKey || e.altKey || e.isComposing) return;
      // a mail is written in paragraphs: Enter is a new line there, Ctrl+Enter sends
      if (this.email && !(e.ctrlKey || e.metaKey)) return;
      e.preventDefault();
      this.sendFromBox();
    });
    this.reply.addEventListener('input', () => {
      this.fitReply();
      this.sendTyping();
    });
    this.el.addEventListener('focusin', () => this.hooks.onFocus(this));
    this.evidence.applyMinor();
    this.showTab('conversation', false);
  }

  // --- e-mail cases ------------------------------------------------------------------------

  /** This case came by e-mail: replies go out as mail, each with its delivery state. */
  enableEmail() {
    const ref = { ref: this.reference };
    this.email = new EmailPanel({ pane: this, failures: this.channels.mailFailures,
      hooks: { onSessionLost: () => this.hooks.onSessionLost(), onSent: () => this.hooks.onQueueHint() } }); // prettier-ignore
    this.el.dataset.channel = 'email';
    this.mailSlot.replaceChildren(this.email.banner);
    this.form.querySelector('.reply-tools').append(...this.email.tools());
    setT(this.reply, 'mail.reply_placeholder', undefined, 'placeholder');
    setT(this.form.querySelector('label.sr-only'), 'mail.reply_label', ref);
    setT(this.sendBtn, 'mail.send');
    setT(this.form.querySelector('.hint'), 'mail.reply_hint');
    this.typingEl.hidden = true;
    this.msgs.decorate = (el, seq) => this.email.decorate(el, seq);
    this.email.load();
  }

  /** Whether the reply box may be used (an e-mail case whose mail named no address may not). */
  setReplyAllowed(allowed) {
    this.canReply = allowed;
    this.setStatus(this.status);
  }

  /** A pending message the server refused for good: marked "not sent", never tried again. */
  dropPending(clientId) {
    const p = this.pending.get(clientId);
    this.pending.delete(clientId);
    if (p) this.msgs.fail(p.el);
  }

  /** A callback attempt or a passphrase was recorded: the timeline and the queue follow. */
  somethingRecorded() {
    this.refreshPanels();
    this.hooks.onQueueHint();
  }

  /** `case_changed` for this case (or the console reconnected): everything shown again. */
  caseChanged() {
    this.loadCase();
    this.refreshPanels();
    this.callback.load();
    if (this.email) this.email.load();
  }

  // --- tabs ----------------------------------------------------------------------------------

  showTab(name, focus) {
    this.currentTab = name;
    for (const [t, btn] of this.tabButtons) {
      const on = t === name;
      btn.setAttribute('aria-selected', String(on));
      btn.tabIndex = on ? 0 : -1;
      this.panels.get(t).hidden = !on;
    }
    this.el.dataset.tab = name;
    if (name === 'notes') this.notes.load();
    if (name === 'timeline') this.timeline.load();
    if (name === 'notices') this.noticesPanel.load();
    if (name === 'handover') this.partnerHandover.load();
    if (name === 'retention') this.retention.load();
    if (name === 'conversation') this.refreshSeen();
    if (focus) this.tabButtons.get(name).focus();
  }

  tabKey(e, name) {
    const i = TABS.indexOf(name);
    let next = null;
    if (e.key === 'ArrowRight') next = TABS[(i + 1) % TABS.length];
    else if (e.key === 'ArrowLeft') next = TABS[(i + TABS.length - 1) % TABS.length];
    else if (e.key === 'Home') next = TABS[0];
    else if (e.key === 'End') next = TABS[TABS.length - 1];
    if (!next) return;
    e.preventDefault();
    this.showTab(next, true);
  }

  /** Notes and timeline, if shown, again (something happened on the case). */
  refreshPanels() {
    if (this.currentTab === 'notes') this.notes.load();
    if (this.currentTab === 'timeline') this.timeline.load();
    if (this.currentTab === 'notices') this.noticesPanel.load();
    if (this.currentTab === 'handover') this.partnerHandover.load();
    if (this.currentTab === 'retention') this.retention.load();
  }

  /** A handover to a partner changed (the victim answered, a colleague confirmed, it was delivered). */
  handoversChanged() {
    if (this.currentTab === 'handover') this.partnerHandover.load();
    if (this.currentTab === 'timeline') this.timeline.load();
  }

  // --- the case ------------------------------------------------------------------------------

  /** GET the case (with its handover note, viewers); audited server-side as an opening. */
  async loadCase() {
    if (this.closed) return;
    if (this.loadingCase) {
      this.loadAgain = true;
      return;
    }
    this.loadingCase = true;
    try {
      const c = await api('GET', this.base);
      if (this.closed || !c || typeof c !== 'object') return;
      this.applyCase(c);
      if (this.paneMsg.dataset.kind === 'load') this.quiet();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      if (e instanceof ApiError && e.status === 403) this.say('case.not_yours', undefined, 'error', 'load');
      else {
        const [key, vars] = errorKey(e, 'case.load_error');
        this.say(key, vars, 'error', 'load');
      }
    } finally {
      this.loadingCase = false;
      if (this.loadAgain) {
        this.loadAgain = false;
        this.loadCase();
      }
    }
  }

  /** Fresh queue data for this case. */
  updateInfo(info) {
    const rest = { ...info };
    delete rest.handover; // only the case answer says whether a note waits
    this.applyCase(rest);
  }

  applyCase(c) {
    const ownerBefore = this.info.assigned_to ? this.info.assigned_to.id : null;
    this.info = { ...this.info, ...c };
    const i = this.info;
    if (i.channel === 'email' && !this.email) this.enableEmail();
    const ownerNow = i.assigned_to ? i.assigned_to.id : null;
    // the number is shown to whoever has the case: a claim, transfer or release changes that
    if (ownerNow !== ownerBefore && this.callback && this.callback.shown) this.callback.load();
    if (i.reference) this.setReference(i.reference);
    if (i.status && (this.status !== 'closed' || i.status === 'closed')) this.setStatus(i.status);
    this.prioEl.replaceChildren(priorityBadge(i.priority ?? 3, i.priority_overridden));
    this.updateMeta();
    this.flagsEl.replaceChildren(flagBadges(i.risk_flags));
    if ('handover' in c) {
      const wasUnseen = this.handover.unseen;
      this.handover.show(c.handover);
      this.el.dataset.handover = this.handover.unseen ? 'unseen' : '';
      // shown first: whoever is at this pane lands on the note (the conversation is hidden until it is read)
      if (this.handover.unseen && !wasUnseen && (this.hooks.isActive(this) || this.el.contains(document.activeElement))) {
        this.handover.focus();
      }
    }
    if (Array.isArray(c.viewers)) this.presence.seed(this.id, c.viewers);
    if (i.possible_minor || i.category === 'possible_minor') this.showMinor(null);
    this.triage.update(i);
    this.evidence.caseChanged(i);
    this.showActions();
    this.showViewers();
  }

  updateMeta() {
    const i = this.info;
    this.metaEl.replaceChildren();
    const parts = [];
    if (i.channel) parts.push(channelLabel(i.channel));
    if (i.language) parts.push(h('abbr', { class: 'lang', 'i18n-title': `language.${i.language}` }, String(i.language).toUpperCase()));
    if (i.category) parts.push(codeLabel('category', `category.${i.category}`, i.category));
    else if (i.topic) parts.push(h('span', { class: 'category is-topic' }, h('span', { i18n: 'queue.topic' }), ' ', codeLabel('', `category.${i.topic}`, i.topic)));
    else parts.push(h('span', { class: 'category is-none', i18n: 'category.none' }));
    const owner = i.assigned_to;
    if (owner && owner.id !== this.me.id) parts.push(h('span', { class: 'owner', i18n: ['queue.owner', { name: owner.name || '?' }] }));
    parts.forEach((p, idx) => {
      if (idx) this.metaEl.append(' \u00b7 ');
      this.metaEl.append(p);
    });
    if (i.status !== 'closed') {
      this.metaEl.append(' ', slaTimer(i, (kind, p) => this.vocab.slaTarget(kind, p)));
    }
  }

  showActions() {
    const open = this.status !== 'closed' && !this.gone;
    const mayAct = this.mine || this.supervisor;
    const assigned = Boolean(this.info.assigned_to);
    this.transferBtn.hidden = !(open && mayAct && assigned);
    this.releaseBtn.hidden = !(open && mayAct && assigned);
    this.closeCaseBtn.hidden = !(open && mayAct);
  }

  showViewers() {
    const viewers = this.presence.viewersOf(this.id);
    const names = viewers.map((v) => v.name).join(', ');
    if (this.viewersEl.dataset.names === names) return;
    this.viewersEl.dataset.names = names;
    this.viewersEl.hidden = !viewers.length;
    if (viewers.length) setT(this.viewersEl, 'viewers.also_open', { names });
    else this.viewersEl.textContent = '';
  }

  /** The triage answer: the case, and (for possible_minor) the hotline referral. */
  onTriaged(c, answer) {
    const wasMinor = this.evidence.minor;
    this.applyCase(c);
    const referral = answer && (answer.referral ?? answer.hotline_referral);
    if (referral) this.showMinor(referral);
    if (!wasMinor && this.evidence.minor) {
      // stored files were just destroyed: show the list as it is now, and the rule first
      this.evidence.load();
      this.evidence.banner.focus();
    }
    this.refreshPanels();
    this.hooks.onQueueHint();
  }

  showMinor(referral) {
    const text = referralText(referral) || referralText(this.vocab.referral) || this.evidence.referral;
    const changed = !this.evidence.minor || (text && text !== this.evidence.referral);
    if (!changed) return;
    this.evidence.minor = true;
    if (text) this.evidence.referral = text;
    this.evidence.applyMinor();
  }

  handoverSeen() {
    this.el.dataset.handover = '';
    this.refreshPanels();
    this.focusReply();
  }

  say(key, vars, tone = 'info', kind = '') {
    setT(this.paneMsg, key, vars);
    this.paneMsg.dataset.tone = tone;
    this.paneMsg.dataset.kind = kind;
    this.paneMsg.setAttribute('role', tone === 'error' ? 'alert' : 'status');
    this.paneMsg.hidden = false;
  }

  quiet() {
    this.paneMsg.hidden = true;
    this.paneMsg.dataset.kind = '';
  }

  failed(e, prefix) {
    if (e instanceof ApiError && e.status === 401) {
      this.hooks.onSessionLost();
      return;
    }
    const [key, vars] = errorKey(e, prefix);
    this.say(key, vars, 'error');
  }

  // --- case actions ----------------------------------------------------------------------------

  async transfer() {
    const r = await transferDialog({ pane: this, me: this.me, onSessionLost: () => this.hooks.onSessionLost() });
    if (!r) return;
    this.hooks.onQueueHint();
    this.hooks.onGone(this, 'case.transferred');
  }

  async release() {
    const ok = await confirmDialog({ title: 'release.title', text: 'release.text', yes: 'release.yes',
      vars: { ref: this.reference } }); // prettier-ignore
    if (!ok) return;
    this.releaseBtn.disabled = true;
    try {
      await api('POST', `${this.base}/release`);
      this.hooks.onQueueHint();
      this.hooks.onGone(this, 'case.released');
    } catch (e) {
      this.failed(e, 'release.error');
    } finally {
      this.releaseBtn.disabled = false;
    }
  }

  async closeCase() {
    const r = await closeDialog({ pane: this, vocab: this.vocab, onSessionLost: () => this.hooks.onSessionLost() });
    if (!r) return;
    const answer = r && typeof r === 'object' ? r : {};
    this.applyCase({ ...(answer.id === this.id ? answer : {}), status: 'closed', outcome: answer.outcome });
    this.showClosed('pane.closed');
    this.hooks.onQueueHint();
    this.refreshPanels();
    this.closeBtn.focus();
  }

  setReference(ref) {
    if (!ref || ref === this.reference) return;
    this.reference = ref;
    this.refEl.textContent = ref;
    this.evidence.relabel();
    this.triage.relabel();
    this.hooks.onReference(this);
  }

  setStatus(status) {
    this.status = status;
    this.info.status = status;
    this.el.dataset.status = status;
    this.statusEl.className = `status status-${status}`;
    if (has(`status.${status}`)) setT(this.statusEl, `status.${status}`);
    else {
      this.statusEl.removeAttribute('data-i18n');
      this.statusEl.textContent = status;
    }
    const closed = status === 'closed';
    const mute = closed || this.gone || !this.canReply;
    this.reply.disabled = mute;
    this.sendBtn.disabled = mute;
    this.canned.toggle.disabled = mute;
    if (this.email) this.email.chatAccess.disabled = mute;
    if (closed) {
      this.typingEl.hidden = true;
      if (this.canned.open) this.canned.setOpen(false, false);
    }
    this.showActions();
    this.hooks.onStatus(this);
  }

  setConn(state) {
    this.el.dataset.conn = state;
    setT(this.connEl, `conn.${state}`);
  }

  banner(key, vars) {
    setT(this.bannerEl, key, vars);
    this.bannerEl.hidden = false;
  }

  /** "This case is closed" (or who ended the chat), with the outcome when there is one. */
  showClosed(key) {
    const outcome = this.info.outcome;
    this.bannerEl.removeAttribute('data-i18n');
    this.bannerEl.replaceChildren(h('span', { i18n: key }));
    if (outcome) {
      this.bannerEl.append(' ', h('span', { i18n: 'pane.outcome' }), ' ', codeLabel('outcome', `outcome.${outcome}`, outcome));
    }
    this.bannerEl.hidden = false;
  }

  clearBanner() {
    this.bannerEl.hidden = true;
  }

  // --- the socket -------------------------------------------------------------------------

  connect() {
    if (this.closed || this.gone) return;
    clearTimeout(this.reconnectTimer);
    this.setConn('connecting');
    let ws;
    try {
      ws = new WebSocket(wsUrl('/ws/chat'));
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.welcomed = false;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.lastFrameAt = Date.now();
      ws.send(JSON.stringify({ type: 'hello', case: this.id, after: this.lastSeq }));
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.lastFrameAt = Date.now();
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (frame && typeof frame === 'object') this.onFrame(frame);
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.welcomed = false;
      if (ev.code === 4401) this.refused();
      else if (ev.code === 4410) this.deleted();
      else this.scheduleReconnect();
    };
  }

  scheduleReconnect() {
    if (this.closed || this.gone) return;
    if (this.status === 'closed' && this.pending.size === 0) {
      this.setConn('closed');
      return;
    }
    this.setConn('offline');
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.connect(), this.backoff.next());
  }

  /** Reconnect now (e.g. the browser came back online). */
  nudge() {
    if (!this.ws && !this.closed && !this.gone && this.status !== 'closed') this.connect();
  }

  ping() {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - this.lastFrameAt > STALE_MS) {
      this.ws = null;
      this.welcomed = false;
      ws.close();
      this.scheduleReconnect();
      return;
    }
    ws.send(JSON.stringify({ type: 'ping' }));
  }

  sendFrame(frame) {
    if (!this.welcomed || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  onFrame(f) {
    switch (f.type) {
      case 'welcome':
        this.onWelcome(f);
        break;
      case 'message':
        this.onMessage(f);
        break;
      case 'ack':
        if (this.pending.has(f.client_id)) this.settle(f.client_id, Number(f.seq), null);
        break;
      case 'typing':
        if (f.from === 'victim') this.showTyping();
        break;
      case 'read':
        if (f.by === 'victim') this.msgs.markRead(Number(f.seq));
        break;
      case 'joined':
        this.hooks.onQueueHint();
        break;
      case 'evidence': // the victim added evidence: show it without a manual refresh
        this.evidence.load();
        this.refreshPanels();
        break;
      case 'handover': // a warm handover of this case changed (consoles also hear it on /ws/console)
        this.handoversChanged();
        break;
      case 'email_status': // a mail's delivery changed (consoles also hear it as case_changed)
        if (this.email) this.email.load();
        break;
      case 'ended':
        if (this.status !== 'closed') {
          this.setStatus('closed');
          this.showClosed(f.by === 'victim' ? 'pane.ended_by_victim' : 'pane.ended_by_staff');
        }
        this.hooks.onQueueHint();
        this.loadCase();
        break;
      case 'deleted':
        this.deleted();
        break;
      case 'error':
        this.onError(f);
        break;
      default:
        break; // pong, queue, future frames
    }
  }

  onWelcome(f) {
    this.welcomed = true;
    this.backoff.reset();
    this.setConn('online');
    if (f.reference) this.setReference(f.reference);
    if (f.status) this.setStatus(f.status);
    if (this.status !== 'closed') this.clearBanner();
    else if (this.bannerEl.hidden) this.showClosed('pane.closed');
    const last = Number(f.last_seq) || 0;
    this.historyUntil = last;
    if (this.baseSeq === null) this.baseSeq = last;
    clearTimeout(this.historyTimer);
    if (this.lastSeq >= last) this.historyDone();
    else this.historyTimer = setTimeout(() => this.historyDone(), 3000);
    for (const cid of this.pending.keys()) this.trySend(cid);
    this.maybeRead();
  }

  historyDone() {
    clearTimeout(this.historyTimer);
    if (this.list.getAttribute('aria-busy') === 'true') {
      this.list.setAttribute('aria-busy', 'false');
      this.msgs.scrollToEnd();
    }
    this.maybeRead();
  }

  onError(f) {
    if (f.code === 'unauthorized') {
      this.refused();
      return;
    }
    if (f.client_id && this.pending.has(f.client_id)) {
      const p = this.pending.get(f.client_id);
      this.pending.delete(f.client_id);
      this.msgs.fail(p.el);
    }
    const key = `pane.error.${f.code}`;
    this.banner(has(key) ? key : 'pane.error', { code: String(f.code || '') });
  }

  refused() {
    this.gone = true;
    this.setStatus(this.status || 'closed');
    this.setConn('closed');
    this.banner('pane.unauthorized');
    this.evidence.disable('evidence.unavailable');
    this.triage.update({});
    this.hooks.onRefused(this);
  }

  deleted() {
    this.gone = true;
    this.pending.clear();
    this.msgs.clear();
    this.reply.value = '';
    this.setStatus('closed');
    this.setConn('closed');
    this.banner('pane.deleted');
    this.evidence.disable('evidence.deleted');
    this.triage.update({});
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
    this.hooks.onQueueHint();
  }

  // --- messages ---------------------------------------------------------------------------

  onMessage(f) {
    const seq = Number(f.seq);
    if (!Number.isInteger(seq) || seq < 1) return;
    if (seq > this.lastSeq) this.lastSeq = seq;
    if (this.msgs.has(seq)) {
      // already shown (our own message, acked before its frame came)
    } else if (f.client_id && this.pending.has(f.client_id)) {
      this.settle(f.client_id, seq, f.at);
    } else {
      this.msgs.add({ from: f.from, text: f.text, at: f.at, seq, clientId: f.client_id });
      if (f.from === 'victim') {
        this.typingEl.hidden = true;
        if (this.baseSeq !== null && seq > this.baseSeq && !this.isSeen()) {
          this.unread += 1;
          this.showUnread();
        }
      }
    }
    // a mail with the chat paragraph is stored (and shown to staff) with its passphrase masked
    if (this.email && f.from === 'staff') this.msgs.setText(seq, f.text);
    if (this.lastSeq >= this.historyUntil) this.historyDone();
    this.maybeRead();
  }

  /** An own message got its seq (by ack or by its message frame). */
  settle(clientId, seq, at) {
    const p = this.pending.get(clientId);
    this.pending.delete(clientId);
    if (!p || !Number.isInteger(seq)) return;
    this.msgs.settle(p.el, seq, at);
    this.maybeRead();
  }

  // --- sending ------------------------------------------------------------------------------

  sendFromBox() {
    const text = this.reply.value.trim();
    if (!text || this.status === 'closed' || this.gone) return;
    if (text.length > MAX_TEXT) {
      this.banner('pane.too_long', { n: MAX_TEXT });
      return;
    }
    if (!this.canReply) return;
    const clientId = uuid();
    this.sentIds.add(clientId);
    const el = this.msgs.addPending(clientId, text);
    const entry = { text, el, sentAt: 0 };
    if (this.email) {
      // decided now, for this mail: a new passphrase each time replaces the one before
      entry.chatAccess = this.email.wantsChatAccess;
      this.email.chatAccess.checked = false;
    }
    this.pending.set(clientId, entry);
    this.reply.value = '';
    this.fitReply();
    this.trySend(clientId);
  }

  trySend(clientId) {
    const p = this.pending.get(clientId);
    if (!p) return;
    if (this.email) {
      if (!p.inflight) this.email.send(clientId, p); // by mail, retried with the same client_id
      return;
    }
    if (this.sendFrame({ type: 'send', client_id: clientId, text: p.text })) p.sentAt = Date.now();
  }

  retryPending() {
    const now = Date.now();
    for (const [cid, p] of this.pending) if (now - p.sentAt > RETRY_MS) this.trySend(cid);
  }

  sendTyping() {
    const now = Date.now();
    if (this.email || !this.reply.value || now - this.lastTypingSent < TYPING_SEND_MS) return;
    if (this.sendFrame({ type: 'typing' })) this.lastTypingSent = now;
  }

  fitReply() {
    const lines = this.reply.value.split('\n').length + Math.floor(this.reply.value.length / 60);
    this.reply.rows = Math.max(2, Math.min(6, lines));
  }

  showTyping() {
    if (this.status === 'closed') return;
    this.typingEl.hidden = false;
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => {
      this.typingEl.hidden = true;
    }, TYPING_SHOW_MS);
  }

  // --- being looked at ----------------------------------------------------------------------

  isSeen() {
    return this.inView && this.currentTab === 'conversation' && !this.handover.unseen && document.visibilityState === 'visible';
  }

  setInView(v) {
    this.inView = v;
    this.refreshSeen();
  }

  refreshSeen() {
    if (!this.isSeen()) return;
    if (this.unread) {
      this.unread = 0;
      this.showUnread();
    }
    this.maybeRead();
  }

  /** Tell the victim's side what has been seen: only while this pane is in view, once the history is in. */
  maybeRead() {
    const top = this.msgs.maxSeq;
    if (!this.isSeen() || top <= this.readSent || this.list.getAttribute('aria-busy') === 'true') return;
    if (this.sendFrame({ type: 'read', seq: top })) this.readSent = top;
  }

  showUnread() {
    this.unreadEl.hidden = this.unread === 0;
    this.unreadEl.textContent = String(this.unread);
    this.el.classList.toggle('has-unread', this.unread > 0);
    this.hooks.onUnread(this);
  }

  /** Where the keyboard goes when this pane is brought forward: the handover note first. */
  focusReply() {
    if (this.handover.unseen) this.handover.focus();
    else if (this.currentTab !== 'conversation') this.tabButtons.get(this.currentTab).focus();
    else if (!this.reply.disabled) this.reply.focus();
    else this.list.focus();
  }

  // --- closing the pane ---------------------------------------------------------------------

  async requestClose() {
    if (this.pending.size) {
      const ok = await confirmDialog({ title: 'confirm.close_title', text: 'confirm.close_text',
        yes: 'confirm.close_yes', vars: { ref: this.reference, n: this.pending.size } }); // prettier-ignore
      if (!ok) return;
    }
    this.destroy();
    this.hooks.onClose(this);
  }

  destroy() {
    this.closed = true;
    clearInterval(this.retryTimer);
    clearInterval(this.pingTimer);
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.typingTimer);
    clearTimeout(this.historyTimer);
    if (this.offPresence) this.offPresence();
    this.callback.destroy();
    if (this.email) this.email.destroy();
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000);
    this.evidence.destroy();
    this.el.remove();
  }
}
