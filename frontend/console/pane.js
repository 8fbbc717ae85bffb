// One open conversation: its own /ws/chat socket, messages in seq order exactly once,
// unacked sends kept in memory and re-sent until acked.
import { api, ApiError } from './api.js';
import { setT, has } from './strings.js';
import { h, uuid, wsUrl, Backoff, confirmDialog } from './dom.js';
import { MessageList } from './messages.js';
import { EvidenceSection } from './evidence.js';

const RETRY_MS = 4000; // re-send an unacked message after this long
const TYPING_SEND_MS = 2000; // at most one typing frame per 2 s
const TYPING_SHOW_MS = 5000; // hide the victim's typing indicator after this
const PING_MS = 25000;
const STALE_MS = 65000; // nothing heard for this long: the socket is dead, reconnect
const MAX_TEXT = 4000;

let counter = 0;

export class ChatPane {
  constructor({ info, me, hooks }) {
    this.id = info.id;
    this.info = info;
    this.reference = info.reference || '';
    this.me = me;
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
    this.build();
    this.setStatus(info.status || 'waiting');
    this.connect();
    this.retryTimer = setInterval(() => this.retryPending(), 1000);
    this.pingTimer = setInterval(() => this.ping(), PING_MS);
  }

  get mine() {
    const a = this.info.assigned_to;
    return Boolean(a && a.id === this.me.id);
  }

  build() {
    const n = ++counter;
    const ref = { ref: this.reference };
    this.refEl = h('span', { class: 'ref', text: this.reference });
    this.statusEl = h('span', { class: 'status' });
    this.unreadEl = h('span', { class: 'badge unread', hidden: true });
    this.connEl = h('span', { class: 'conn', role: 'status' });
    this.metaEl = h('p', { class: 'pane-meta' });
    this.endBtn = h('button', { type: 'button', class: 'btn btn-quiet-danger end-chat', i18n: 'pane.end',
      onclick: () => this.endChat() }); // prettier-ignore
    this.closeBtn = h('button', { type: 'button', class: 'btn btn-icon close-pane', 'i18n-aria-label': ['pane.close', ref],
      'i18n-title': ['pane.close', ref], onclick: () => this.requestClose() }, '\u00d7'); // prettier-ignore
    this.bannerEl = h('p', { class: 'pane-banner', role: 'status', hidden: true });
    this.list = h('ol', { class: 'messages', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions',
      'aria-busy': 'true', tabindex: '0', 'i18n-aria-label': ['pane.messages', ref] }); // prettier-ignore
    this.msgs = new MessageList(this.list, (clientId) => this.sentIds.has(clientId) || this.mine);
    this.typingEl = h('p', { class: 'typing', hidden: true, i18n: 'pane.typing' });
    const rid = `pane-${n}-reply`;
    this.reply = h('textarea', { class: 'reply', id: rid, rows: '2', maxlength: String(MAX_TEXT),
      'i18n-placeholder': 'pane.reply_placeholder', 'aria-describedby': `pane-${n}-hint` }); // prettier-ignore
    this.sendBtn = h('button', { type: 'submit', class: 'btn btn-primary send', i18n: 'pane.send' });
    this.form = h('form', { class: 'reply-form', onsubmit: (e) => { e.preventDefault(); this.sendFromBox(); } },
      h('label', { for: rid, class: 'sr-only', i18n: ['pane.reply_label', ref] }),
      this.reply, this.sendBtn,
      h('p', { class: 'hint', id: `pane-${n}-hint`, i18n: 'pane.reply_hint' })); // prettier-ignore
    this.evidence = new EvidenceSection({ pane: this, me: this.me,
      hooks: { onSessionLost: () => this.hooks.onSessionLost() } }); // prettier-ignore
    this.titleEl = h('h2', { class: 'pane-title', id: `pane-${n}-title` }, this.refEl, this.statusEl, this.unreadEl);
    this.el = h('section', { class: 'pane', 'data-case-id': this.id, 'aria-labelledby': `pane-${n}-title` },
      h('header', { class: 'pane-head' },
        h('div', { class: 'pane-head-text' }, this.titleEl, this.metaEl),
        this.connEl, this.evidence.toggle, this.endBtn, this.closeBtn),
      this.bannerEl, this.evidence.banner, this.evidence.el, this.list, this.typingEl, this.form); // prettier-ignore
    this.reply.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.altKey && !e.isComposing) {
        e.preventDefault();
        this.sendFromBox();
      }
    });
    this.reply.addEventListener('input', () => {
      this.fitReply();
      this.sendTyping();
    });
    this.el.addEventListener('focusin', () => this.hooks.onFocus(this));
    this.evidence.applyMinor();
    this.updateMeta();
  }

  updateInfo(info) {
    this.info = { ...this.info, ...info };
    if (info.reference) this.setReference(info.reference);
    if (info.status && this.status !== 'ended') this.setStatus(info.status);
    this.updateMeta();
    this.evidence.caseChanged(this.info);
  }

  updateMeta() {
    const i = this.info;
    this.metaEl.replaceChildren();
    const parts = [];
    if (i.channel) parts.push(has(`channel.${i.channel}`) ? h('span', { i18n: `channel.${i.channel}` }) : i.channel);
    if (i.language) parts.push(String(i.language).toUpperCase());
    if (i.topic) parts.push(has(`topic.${i.topic}`) ? h('span', { i18n: `topic.${i.topic}` }) : i.topic);
    parts.forEach((p, idx) => {
      if (idx) this.metaEl.append(' \u00b7 ');
      this.metaEl.append(p);
    });
  }

  setReference(ref) {
    if (!ref || ref === this.reference) return;
    this.reference = ref;
    this.refEl.textContent = ref;
    this.evidence.relabel();
    this.hooks.onReference(this);
  }

  setStatus(status) {
    // the case's own statuses, as the chat's three: waiting (new), active, ended (closed)
    if (status === 'new') status = 'waiting';
    else if (status === 'closed') status = 'ended';
    else if (status !== 'waiting' && status !== 'ended') status = 'active';
    this.status = status;
    this.el.dataset.status = status;
    this.statusEl.className = `status status-${status}`;
    setT(this.statusEl, `status.${status}`);
    const ended = status === 'ended';
    this.reply.disabled = ended || this.gone;
    this.sendBtn.disabled = ended || this.gone;
    this.endBtn.hidden = ended || this.gone;
    if (ended) this.typingEl.hidden = true;
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
    if (this.status === 'ended' && this.pending.size === 0) {
      this.setConn('closed');
      return;
    }
    this.setConn('offline');
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.connect(), this.backoff.next());
  }

  /** Reconnect now (e.g. the browser came back online). */
  nudge() {
    if (!this.ws && !this.closed && !this.gone && this.status !== 'ended') this.connect();
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
        break;
      case 'ended':
        this.setStatus('ended');
        this.banner(f.by === 'victim' ? 'pane.ended_by_victim' : 'pane.ended_by_staff');
        this.hooks.onQueueHint();
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
    this.clearBanner();
    if (f.reference) this.setReference(f.reference);
    if (f.status) this.setStatus(f.status);
    if (this.status === 'ended') this.banner('pane.ended');
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
    this.setStatus(this.status || 'ended');
    this.setConn('closed');
    this.banner('pane.unauthorized');
    this.evidence.disable('evidence.unavailable');
    this.hooks.onRefused(this);
  }

  deleted() {
    this.gone = true;
    this.pending.clear();
    this.msgs.clear();
    this.reply.value = '';
    this.setStatus('ended');
    this.setConn('closed');
    this.banner('pane.deleted');
    this.evidence.disable('evidence.deleted');
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
    if (!text || this.status === 'ended' || this.gone) return;
    if (text.length > MAX_TEXT) {
      this.banner('pane.too_long', { n: MAX_TEXT });
      return;
    }
    const clientId = uuid();
    this.sentIds.add(clientId);
    const el = this.msgs.addPending(clientId, text);
    this.pending.set(clientId, { text, el, sentAt: 0 });
    this.reply.value = '';
    this.fitReply();
    this.trySend(clientId);
  }

  trySend(clientId) {
    const p = this.pending.get(clientId);
    if (!p) return;
    if (this.sendFrame({ type: 'send', client_id: clientId, text: p.text })) p.sentAt = Date.now();
  }

  retryPending() {
    const now = Date.now();
    for (const [cid, p] of this.pending) if (now - p.sentAt > RETRY_MS) this.trySend(cid);
  }

  sendTyping() {
    const now = Date.now();
    if (!this.reply.value || now - this.lastTypingSent < TYPING_SEND_MS) return;
    if (this.sendFrame({ type: 'typing' })) this.lastTypingSent = now;
  }

  fitReply() {
    const lines = this.reply.value.split('\n').length;
    this.reply.rows = Math.max(2, Math.min(6, lines));
  }

  showTyping() {
    if (this.status === 'ended') return;
    this.typingEl.hidden = false;
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => {
      this.typingEl.hidden = true;
    }, TYPING_SHOW_MS);
  }

  // --- being looked at ----------------------------------------------------------------------

  isSeen() {
    return this.inView && document.visibilityState === 'visible';
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

  focusReply() {
    if (!this.reply.disabled) this.reply.focus();
    else this.list.focus();
  }

  // --- ending and closing ---------------------------------------------------------------------

  async endChat() {
    const ok = await confirmDialog({ title: 'confirm.end_title', text: 'confirm.end_text', yes: 'confirm.end_yes',
      vars: { ref: this.reference } }); // prettier-ignore
    if (!ok) return;
    this.endBtn.disabled = true;
    try {
      await api('POST', `/api/staff/cases/${encodeURIComponent(this.id)}/end`);
      this.setStatus('ended');
      this.banner('pane.ended_by_staff');
      this.hooks.onQueueHint();
      this.closeBtn.focus();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) this.hooks.onSessionLost();
      else this.banner('pane.end_failed', { code: e.code || '' });
    } finally {
      this.endBtn.disabled = false;
    }
  }

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
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000);
    this.evidence.destroy();
    this.el.remove();
  }
}
