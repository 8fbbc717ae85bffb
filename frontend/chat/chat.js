// Victim chat: one page, one URL, views switched here. Protocol: docs/api/chat.md.
// All text that comes from the server or the user is rendered with textContent.

import { initI18n, t, getLang, getLocale, onLangChange, setText } from '../common/i18n.js';
import { initQuickExit } from '../common/quick-exit.js';
import { getInfo } from '../common/info.js';
import { api, errorOf } from '../common/api.js';
import { KEYS, getItem, setItem, removeItem, getJSON, setJSON, forgetConversation } from '../common/session.js';
import { initEvidence, refreshEvidence, resetEvidence } from './evidence.js';
import { initCallback, openCallback, refreshCallback, resetCallback } from './callback.js';
import { initHandover, refreshHandovers, resetHandover } from './handover.js';
import { initMycase, openMycase, resetMycase } from './mycase.js';

const TOPICS = [
  'intimate_images',
  'sextortion',
  'deepfake',
  'doxxing',
  'impersonation',
  'harassment',
  'privacy',
  'grooming',
  'other',
];
const FROM = new Set(['victim', 'staff', 'system']);
const MAX_LEN = 4000;
const BACKOFF_MIN = 500;
const BACKOFF_MAX = 10000;
const PING_EVERY = 25000;
const DEAD_AFTER = 70000; // no frame at all for this long: treat the socket as dead
const RESEND_AFTER = 10000; // unacked message on a live socket: send again
const TYPING_EVERY = 2000;
const TYPING_SHOWN = 5000;
const OFFLINE_NOTICE_AFTER = 2000;

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- state

const S = {
  view: null,
  info: null,
  // websocket
  ws: null,
  wanted: false, // should a socket be open?
  ready: false, // welcome received on the current socket
  backoff: BACKOFF_MIN,
  reconnectTimer: null,
  pingTimer: null,
  offlineTimer: null,
  lastFrameAt: 0,
  // conversation
  rendered: new Set(), // seqs on screen
  contiguous: 0, // every seq 1..contiguous is on screen -> `after` for hello
  status: null, // waiting | active | ended
  staffJoined: false,
  queue: null,
  endedBy: null,
  readByStaff: 0,
  lastReadSent: 0,
  visibleSeqs: new Set(),
  historyUntil: 0,
  lastTypingSent: 0,
  typingTimer: null,
  sentAt: new Map(), // client_id -> time last sent
  confirmAction: null,
  confirmOpener: null,
};

let observer = null;

// ---------------------------------------------------------------- helpers

function uuid() {
  if (window.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function token() {
  return getItem(KEYS.token);
}

function formatWhen(iso) {
  if (!iso) return null;
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return null;
  const locale = getLocale();
  const time = d.toLocaleTimeString(locale, { hour: '2-digit', minute: '2-digit' });
  const day = (x) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  const days = Math.round((day(d) - day(new Date())) / 86400000);
  if (days <= 0) return t('time.today', { time });
  if (days === 1) return t('time.tomorrow', { time });
  const date = d.toLocaleDateString(locale, { weekday: 'long', day: 'numeric', month: 'long' });
  return t('time.other', { date, time });
}

function formatTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleTimeString(getLocale(), { hour: '2-digit', minute: '2-digit' });
}

function setError(el, key, vars) {
  if (!key) {
    el.removeAttribute('data-i18n');
    el.removeAttribute('data-i18n-args');
    el.textContent = '';
    return;
  }
  setText(el, key, vars);
}

// ---------------------------------------------------------------- views

const VIEWS = ['start', 'receipt', 'chat', 'mycase', 'resume', 'goodbye', 'callback', 'callback-done'];

function showView(name, { focus = true } = {}) {
  for (const v of VIEWS) $(`view-${v}`).hidden = v !== name;
  document.body.dataset.view = name;
  S.view = name;
  if (focus) {
    window.scrollTo(0, 0);
    const h = $(`view-${name}`).querySelector('h1');
    if (h) h.focus();
  }
}

// ---------------------------------------------------------------- start view

function renderTopics() {
  const select = $('topic');
  const current = select.value;
  const codes = S.info && Array.isArray(S.info.topics) && S.info.topics.length ? S.info.topics : TOPICS;
  while (select.options.length > 1) select.remove(1);
  const seenLabels = new Set();
  const known = codes.filter((c) => TOPICS.includes(c));
  for (const code of codes) {
    if (typeof code !== 'string') continue;
    const labelKey = TOPICS.includes(code) ? code : 'other';
    // an unknown code is shown as "other", unless "other" is offered already
    if (labelKey === 'other' && code !== 'other' && (known.includes('other') || seenLabels.has('other'))) continue;
    seenLabels.add(labelKey);
    const opt = document.createElement('option');
    opt.value = code;
    opt.setAttribute('data-i18n', `topics.${labelKey}`);
    opt.textContent = t(`topics.${labelKey}`);
    select.append(opt);
  }
  select.value = [...select.options].some((o) => o.value === current) ? current : '';
}

function renderClosedNote() {
  const note = $('closed-note');
  if (!S.info || S.info.open !== false) {
    note.hidden = true;
    return;
  }
  const when = formatWhen(S.info.opens_at);
  note.textContent = when ? t('start.closed_at', { time: when }) : t('start.closed');
  note.hidden = false;
}

async function startChat() {
  const btn = $('start-chat');
  const err = $('start-error');
  setError(err, null);
  btn.disabled = true;
  btn.setAttribute('aria-busy', 'true');
  try {
    const topic = $('topic').value || null;
    const { status, data } = await api('/api/chat/start', {
      method: 'POST',
      body: { language: getLang(), topic },
    });
    if ((status === 201 || status === 200) && data && data.token) {
      forgetConversation();
      resetChat();
      setItem(KEYS.token, data.token);
      setItem(KEYS.reference, data.reference || '');
      // Kept only until "I saved it", so a reload does not lose the passphrase.
      setJSON(KEYS.receipt, { reference: data.reference || '', passphrase: data.passphrase || '' });
      showReceipt();
    } else if (status === 429 || status === 503) {
      setError(err, 'start.start_busy');
    } else {
      setError(err, 'start.start_error');
    }
  } catch {
    setError(err, 'common.error_network');
  } finally {
    btn.disabled = false;
    btn.removeAttribute('aria-busy');
  }
}

// ---------------------------------------------------------------- receipt view

function showReceipt({ focus = true } = {}) {
  const r = getJSON(KEYS.receipt, null);
  if (!r) {
    openChat({ focus });
    return;
  }
  $('receipt-reference').textContent = r.reference;
  $('receipt-passphrase').textContent = r.passphrase;
  $('saved-check').checked = false;
  $('receipt-continue').disabled = true;
  setError($('copy-status'), null);
  showView('receipt', { focus });
}

async function copyReceipt() {
  const r = getJSON(KEYS.receipt, null);
  if (!r) return;
  const status = $('copy-status');
  const text = t('receipt.copy_text', { reference: r.reference, passphrase: r.passphrase });
  try {
    if (!navigator.clipboard || !window.isSecureContext) throw new Error('no clipboard');
    await navigator.clipboard.writeText(text);
    setText(status, 'receipt.copied');
  } catch {
    const sel = window.getSelection();
    const range = document.createRange();
    range.selectNodeContents($('receipt-box'));
    sel.removeAllRanges();
    sel.addRange(range);
    setText(status, 'receipt.copy_selected');
  }
}

function leaveReceipt() {
  if (!$('saved-check').checked) return;
  removeItem(KEYS.receipt);
  $('receipt-reference').textContent = '';
  $('receipt-passphrase').textContent = '';
  const sel = window.getSelection();
  if (sel) sel.removeAllRanges();
  openChat();
}

// ---------------------------------------------------------------- resume view

function showResume() {
  setError($('resume-error'), null);
  $('resume-reference').value = '';
  $('resume-passphrase').value = '';
  showView('resume');
}

async function submitResume(e) {
  e.preventDefault();
  const err = $('resume-error');
  const reference = $('resume-reference').value.trim();
  const passphrase = $('resume-passphrase').value.trim();
  setError(err, null);
  if (!reference || !passphrase) {
    setError(err, 'resume.missing');
    (reference ? $('resume-passphrase') : $('resume-reference')).focus();
    return;
  }
  const btn = $('resume-submit');
  btn.disabled = true;
  btn.setAttribute('aria-busy', 'true');
  try {
    const { status, data } = await api('/api/chat/resume', { method: 'POST', body: { reference, passphrase } });
    if (status === 200 && data && data.token) {
      forgetConversation();
      resetChat();
      setItem(KEYS.token, data.token);
      setItem(KEYS.reference, data.reference || reference);
      $('resume-passphrase').value = '';
      $('resume-reference').value = '';
      openChat();
      return;
    }
    if (status === 401) {
      setError(err, 'resume.wrong');
    } else if (status === 423) {
      const secs = Number(errorOf(data).details && errorOf(data).details.retry_after);
      if (Number.isFinite(secs) && secs > 0) {
        const minutes = Math.max(1, Math.ceil(secs / 60));
        setError(err, minutes === 1 ? 'resume.locked_one' : 'resume.locked_other', { minutes });
      } else {
        setError(err, 'resume.locked');
      }
    } else if (status === 429) {
      setError(err, 'resume.rate_limited');
    } else {
      setError(err, 'common.error_generic');
    }
  } catch {
    setError(err, 'common.error_network');
  } finally {
    btn.disabled = false;
    btn.removeAttribute('aria-busy');
  }
}

// ---------------------------------------------------------------- goodbye view

function showGoodbye(kind) {
  setText($('goodbye-title'), `goodbye.${kind}_title`);
  setText($('goodbye-text'), `goodbye.${kind}_text`);
  showView('goodbye');
}

// ---------------------------------------------------------------- chat view: rendering

function pending() {
  const list = getJSON(KEYS.pending, []);
  return Array.isArray(list) ? list.filter((p) => p && typeof p.client_id === 'string' && typeof p.text === 'string') : [];
}

function savePending(list) {
  if (list.length) setJSON(KEYS.pending, list);
  else removeItem(KEYS.pending);
}

function dropPending(clientId) {
  savePending(pending().filter((p) => p.client_id !== clientId));
  S.sentAt.delete(clientId);
}

function updateEmpty() {
  $('chat-empty').hidden = $('messages').querySelector('.message') !== null;
}

function markOf(el) {
  return el.querySelector('.mark');
}

function setMark(el, state) {
  const mark = markOf(el);
  if (!mark) return;
  el.dataset.state = state;
  setText(mark, `chat.mark_${state}`);
}

function refreshReadMarks() {
  for (const el of $('messages').querySelectorAll('.message.from-victim[data-seq]')) {
    const seq = Number(el.dataset.seq);
    if (el.dataset.state !== 'read' && seq <= S.readByStaff) setMark(el, 'read');
  }
}

function buildMessage({ from, text, at, seq, clientId }) {
  const el = document.createElement('div');
  el.className = `message from-${from}`;
  if (seq != null) el.dataset.seq = String(seq);
  if (clientId) el.dataset.clientId = clientId;

  const who = document.createElement('span');
  who.className = 'sr-only';
  setText(who, `chat.who_${from}`);

  const body = document.createElement('p');
  body.className = 'message-text';
  body.textContent = text;

  const meta = document.createElement('p');
  meta.className = 'message-meta';
  const time = document.createElement('span');
  time.className = 'time';
  if (at) {
    time.dataset.at = at;
    time.textContent = formatTime(at);
  }
  meta.append(time);
  el.append(who, body, meta);

  if (from === 'victim') {
    const mark = document.createElement('span');
    mark.className = 'mark';
    meta.append(mark);
    if (seq == null) setMark(el, 'sending');
    else setMark(el, seq <= S.readByStaff ? 'read' : 'sent');
  }
  return el;
}

// The node before which a message with this seq belongs: the first one with a
// larger seq, else the first unacked own message, else the end.
function slotFor(seq) {
  for (const child of $('messages').children) {
    if (child.dataset.seq && Number(child.dataset.seq) > seq) return child;
    if (child.classList.contains('pending')) return child;
  }
  return null;
}

function nearBottom() {
  const list = $('messages');
  return list.scrollHeight - list.scrollTop - list.clientHeight < 120;
}

function scrollToEnd() {
  const list = $('messages');
  list.scrollTop = list.scrollHeight;
}

function noteRendered(seq) {
  S.rendered.add(seq);
  while (S.rendered.has(S.contiguous + 1)) S.contiguous += 1;
  if (S.historyUntil && seq >= S.historyUntil) endHistory();
}

function insertBySeq(el, seq) {
  const list = $('messages');
  const slot = slotFor(seq);
  if (slot === el) return;
  if (slot) {
    if (el.nextSibling === slot) return;
    list.insertBefore(el, slot);
  } else if (el.parentNode !== list || el !== list.lastElementChild) {
    list.append(el);
  }
}

function observe(el) {
  if (observer) observer.observe(el);
}

function renderStored(frame) {
  const seq = Number(frame.seq);
  if (!Number.isInteger(seq) || seq < 1) return;
  if (S.rendered.has(seq)) return; // strictly once per seq
  const from = FROM.has(frame.from) ? frame.from : 'system';
  const text = typeof frame.text === 'string' ? frame.text : '';
  const stick = nearBottom();

  // Our own message whose ack we may have missed: turn the pending bubble into it.
  if (frame.client_id && from === 'victim') {
    const el = pendingElement(frame.client_id);
    if (el) {
      confirmOwn(el, seq, frame.at);
      dropPending(frame.client_id);
      return;
    }
  }

  const el = buildMessage({ from, text, at: frame.at, seq, clientId: frame.client_id });
  const slot = slotFor(seq);
  if (slot) $('messages').insertBefore(el, slot);
  else $('messages').append(el);
  noteRendered(seq);
  observe(el);
  updateEmpty();
  if (from === 'staff') hideTyping();
  if (stick || from === 'victim') scrollToEnd();
}

function pendingElement(clientId) {
  for (const el of $('messages').querySelectorAll('.message.pending')) {
    if (el.dataset.clientId === clientId) return el;
  }
  return null;
}

function confirmOwn(el, seq, at) {
  if (S.rendered.has(seq)) {
    // Already on screen under this seq (should not happen): drop the duplicate bubble.
    el.remove();
    updateEmpty();
    return;
  }
  el.classList.remove('pending');
  el.dataset.seq = String(seq);
  if (at) {
    const time = el.querySelector('.time');
    time.dataset.at = at;
    time.textContent = formatTime(at);
  }
  setMark(el, seq <= S.readByStaff ? 'read' : 'sent');
  insertBySeq(el, seq);
  noteRendered(seq);
  observe(el);
}

function renderPending(item, { scroll = true } = {}) {
  const el = buildMessage({ from: 'victim', text: item.text, clientId: item.client_id });
  el.classList.add('pending');
  $('messages').append(el);
  updateEmpty();
  if (scroll) scrollToEnd();
  return el;
}

function addNotice(key) {
  const p = document.createElement('p');
  p.className = 'notice-item';
  setText(p, key);
  const list = $('messages');
  const firstPending = list.querySelector('.message.pending');
  if (firstPending) list.insertBefore(p, firstPending);
  else list.append(p);
  scrollToEnd();
}

function showTyping() {
  $('typing').hidden = false;
  clearTimeout(S.typingTimer);
  S.typingTimer = setTimeout(hideTyping, TYPING_SHOWN);
}

function hideTyping() {
  clearTimeout(S.typingTimer);
  $('typing').hidden = true;
}

function renderStatus() {
  const line = $('status-line');
  let key;
  let vars;
  if (S.status === 'ended') {
    key = 'chat.status_ended';
  } else if (S.status === 'active' || S.staffJoined) {
    key = 'chat.status_active';
  } else if (S.status === 'waiting') {
    const closed = S.queue ? S.queue.open === false : S.info && S.info.open === false;
    const opensAt = S.queue ? S.queue.opens_at : S.info && S.info.opens_at;
    if (closed) {
      const when = formatWhen(opensAt);
      key = when ? 'chat.status_closed_at' : 'chat.status_closed';
      vars = when ? { time: when } : undefined;
    } else if (S.queue && Number.isInteger(S.queue.position) && S.queue.position > 0) {
      key = S.queue.position === 1 ? 'chat.status_queue_next' : 'chat.status_queue';
      vars = { position: S.queue.position };
    } else {
      key = 'chat.status_waiting';
    }
  } else {
    key = 'chat.status_connecting';
  }
  const text = t(key, vars);
  if (line.textContent !== text) line.textContent = text; // announce only real changes
  line.dataset.status = S.status || 'connecting';

  const ended = S.status === 'ended';
  $('ended-panel').hidden = !ended;
  $('composer').hidden = ended;
  $('end-chat').hidden = ended;
  $('callback-chat-button').hidden = ended;
  if (ended) $('callback-line').hidden = true; // a closed case calls nobody back
  if (ended) {
    const by = S.endedBy === 'staff' ? 'chat.ended_by_staff' : S.endedBy === 'victim' ? 'chat.ended_by_victim' : null;
    if (by) setText($('ended-by'), by);
    else setError($('ended-by'), null);
    hideTyping();
  }
}

function renderConnection(offline) {
  const line = $('connection-line');
  if (offline) {
    if (!line.getAttribute('data-i18n')) setText(line, 'chat.offline');
  } else {
    setError(line, null);
  }
}

function refreshTimes() {
  for (const el of $('messages').querySelectorAll('.time[data-at]')) el.textContent = formatTime(el.dataset.at);
}

// ---------------------------------------------------------------- chat view: lifecycle

function resetChat() {
  closeSocket();
  S.rendered = new Set();
  S.contiguous = 0;
  S.status = null;
  S.staffJoined = false;
  S.queue = null;
  S.endedBy = null;
  S.readByStaff = 0;
  S.lastReadSent = 0;
  S.visibleSeqs = new Set();
  S.historyUntil = 0;
  S.sentAt = new Map();
  S.backoff = BACKOFF_MIN;
  hideTyping();
  hideConfirm({ restoreFocus: false });
  resetEvidence();
  resetCallback();
  resetHandover();
  resetMycase();
  disarmOfflineNotice();
  if (observer) observer.disconnect();
  $('messages').replaceChildren();
  $('messages').removeAttribute('aria-busy');
  $('message-input').value = '';
  $('chat-reference').textContent = '';
  $('status-line').textContent = '';
  setError($('chat-error'), null);
  $('ended-panel').hidden = true;
  $('composer').hidden = false;
  $('end-chat').hidden = false;
  updateEmpty();
}

function openChat({ focus = true } = {}) {
  if (!token()) {
    showView('start', { focus });
    return;
  }
  const ref = getItem(KEYS.reference);
  if (ref) setText($('chat-reference'), 'chat.reference', { reference: ref });
  // Unsent messages from before a reload are shown (and re-sent after hello).
  if (!$('messages').querySelector('.message.pending')) {
    for (const item of pending()) renderPending(item, { scroll: false });
  }
  updateEmpty();
  renderStatus();
  showView('chat', { focus });
  scrollToEnd();
  S.wanted = true;
  if (!S.ws) connect();
  refreshEvidence();
  refreshCallback();
}

// From the "your data" page back to the conversation (still connected): focus where we left.
function backToChat() {
  if (!token()) {
    showView('start');
    return;
  }
  showView('chat', { focus: false });
  scrollToEnd();
  $('mycase-open').focus();
  maybeSendRead();
}

// Forget everything about this conversation in this tab.
function forgetAll() {
  S.wanted = false;
  resetChat();
  forgetConversation();
}

// ---------------------------------------------------------------- websocket

function wsUrl() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}/ws/chat`;
}

function connect() {
  clearTimeout(S.reconnectTimer);
  S.reconnectTimer = null;
  const tok = token();
  if (!S.wanted || !tok) return;
  let ws;
  try {
    ws = new WebSocket(wsUrl());
  } catch {
    scheduleReconnect();
    return;
  }
  S.ws = ws;
  S.ready = false;
  armOfflineNotice();

  ws.onopen = () => {
    S.lastFrameAt = Date.now();
    ws.send(JSON.stringify({ type: 'hello', token: tok, after: S.contiguous }));
  };
  ws.onmessage = (ev) => {
    if (ws !== S.ws) return;
    S.lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (frame && typeof frame === 'object') handleFrame(frame);
  };
  ws.onclose = (ev) => {
    if (ws !== S.ws) return;
    S.ws = null;
    S.ready = false;
    stopPing();
    if (ev.code === 4401) {
      lostAccess();
      return;
    }
    // An ended conversation gets no new messages: no need to keep reconnecting.
    if (S.wanted && S.status !== 'ended') scheduleReconnect();
    else disarmOfflineNotice();
  };
  ws.onerror = () => {
    /* onclose follows */
  };
}

function scheduleReconnect() {
  if (!S.wanted || S.reconnectTimer) return;
  armOfflineNotice();
  const delay = Math.min(BACKOFF_MAX, S.backoff) * (0.8 + Math.random() * 0.4);
  S.backoff = Math.min(BACKOFF_MAX, S.backoff * 2);
  S.reconnectTimer = setTimeout(() => {
    S.reconnectTimer = null;
    connect();
  }, delay);
}

// Say "no connection" once we have been without a working socket for a moment.
function armOfflineNotice() {
  if (S.offlineTimer) return;
  S.offlineTimer = setTimeout(() => renderConnection(true), OFFLINE_NOTICE_AFTER);
}

function disarmOfflineNotice() {
  clearTimeout(S.offlineTimer);
  S.offlineTimer = null;
  renderConnection(false);
}

function closeSocket() {
  clearTimeout(S.reconnectTimer);
  S.reconnectTimer = null;
  stopPing();
  const ws = S.ws;
  S.ws = null;
  S.ready = false;
  if (ws) {
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    try {
      ws.close(1000);
    } catch {
      /* ignore */
    }
  }
}

// The socket looks dead (or the phone woke up): drop it and connect again now.
function reconnectNow() {
  if (!S.wanted) return;
  closeSocket();
  S.backoff = BACKOFF_MIN;
  connect();
}

function startPing() {
  stopPing();
  S.pingTimer = setInterval(() => {
    if (Date.now() - S.lastFrameAt > DEAD_AFTER) {
      reconnectNow();
      return;
    }
    sendFrame({ type: 'ping' });
    resendStale();
  }, PING_EVERY);
}

function stopPing() {
  clearInterval(S.pingTimer);
  S.pingTimer = null;
}

function sendFrame(frame) {
  const ws = S.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN || !S.ready) return false;
  try {
    ws.send(JSON.stringify(frame));
    return true;
  } catch {
    return false;
  }
}

function sendPendingItem(item) {
  if (sendFrame({ type: 'send', client_id: item.client_id, text: item.text })) {
    S.sentAt.set(item.client_id, Date.now());
  }
}

function resendAll() {
  for (const item of pending()) sendPendingItem(item);
}

function resendStale() {
  const now = Date.now();
  for (const item of pending()) {
    const last = S.sentAt.get(item.client_id) || 0;
    if (now - last > RESEND_AFTER) sendPendingItem(item);
  }
}

function endHistory() {
  S.historyUntil = 0;
  $('messages').removeAttribute('aria-busy');
}

function handleFrame(f) {
  switch (f.type) {
    case 'welcome': {
      S.ready = true;
      S.backoff = BACKOFF_MIN;
      disarmOfflineNotice();
      if (typeof f.reference === 'string' && f.reference) {
        setItem(KEYS.reference, f.reference);
        setText($('chat-reference'), 'chat.reference', { reference: f.reference });
      }
      if (f.status === 'waiting' || f.status === 'active' || f.status === 'ended') S.status = f.status;
      S.staffJoined = Boolean(f.staff_joined);
      const last = Number(f.last_seq);
      if (Number.isInteger(last) && last > S.contiguous) {
        // Replaying history: keep screen readers from reading it all out.
        S.historyUntil = last;
        $('messages').setAttribute('aria-busy', 'true');
        setTimeout(endHistory, 4000);
      }
      renderStatus();
      startPing();
      resendAll();
      maybeSendRead();
      refreshHandovers(); // frames missed while away: fetch what is open now
      break;
    }
    case 'message':
      renderStored(f);
      maybeSendRead();
      break;
    case 'ack': {
      const seq = Number(f.seq);
      if (typeof f.client_id !== 'string' || !Number.isInteger(seq)) break;
      const el = pendingElement(f.client_id);
      // The ack carries no time; the stored message's own frame may follow with it.
      if (el) confirmOwn(el, seq, f.at || new Date().toISOString());
      dropPending(f.client_id);
      maybeSendRead();
      break;
    }
    case 'typing':
      if (f.from === 'staff') showTyping();
      break;
    case 'read': {
      const seq = Number(f.seq);
      if (f.by === 'staff' && Number.isInteger(seq) && seq > S.readByStaff) {
        S.readByStaff = seq;
        refreshReadMarks();
      }
      break;
    }
    case 'joined':
      if (!S.staffJoined) addNotice('chat.joined');
      S.staffJoined = true;
      if (S.status !== 'ended') S.status = 'active';
      renderStatus();
      break;
    case 'queue':
      S.queue = {
        position: Number.isInteger(f.position) ? f.position : null,
        open: f.open !== false,
        opens_at: f.opens_at || null,
      };
      renderStatus();
      break;
    case 'ended':
      S.status = 'ended';
      S.endedBy = f.by === 'staff' || f.by === 'victim' ? f.by : null;
      hideConfirm({ restoreFocus: false });
      renderStatus();
      break;
    case 'handover':
      refreshHandovers();
      break;
    case 'deleted':
      forgetAll();
      showGoodbye('deleted');
      break;
    case 'error':
      if (f.code === 'unauthorized') {
        lostAccess();
      } else if (typeof f.client_id === 'string') {
        // A message the server refuses for good: stop retrying it, say so.
        const el = pendingElement(f.client_id);
        if (el) {
          el.classList.remove('pending');
          el.classList.add('failed');
          setMark(el, 'failed');
        }
        dropPending(f.client_id);
      }
      break;
    case 'pong':
    default:
      break;
  }
}

function lostAccess() {
  forgetAll();
  showGoodbye('gone');
}

// ---------------------------------------------------------------- sending, typing, read

function sendMessage() {
  const input = $('message-input');
  const text = input.value;
  setError($('chat-error'), null);
  if (!text.trim()) return;
  if ([...text].length > MAX_LEN) {
    setError($('chat-error'), 'chat.too_long');
    return;
  }
  const item = { client_id: uuid(), text };
  const list = pending();
  list.push(item);
  savePending(list);
  renderPending(item);
  input.value = '';
  sendPendingItem(item);
  input.focus();
}

function onInputTyping() {
  const now = Date.now();
  if (now - S.lastTypingSent < TYPING_EVERY) return;
  if (!$('message-input').value) return;
  if (sendFrame({ type: 'typing' })) S.lastTypingSent = now;
}

function maybeSendRead() {
  if (S.view !== 'chat' || document.visibilityState !== 'visible' || !S.ready) return;
  let max = 0;
  for (const seq of S.visibleSeqs) if (seq > max) max = seq;
  if (max > S.lastReadSent && sendFrame({ type: 'read', seq: max })) S.lastReadSent = max;
}

function setupObserver() {
  if (!('IntersectionObserver' in window)) return;
  observer = new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        const seq = Number(entry.target.dataset.seq);
        if (!Number.isInteger(seq)) continue;
        if (entry.isIntersecting) S.visibleSeqs.add(seq);
        else S.visibleSeqs.delete(seq);
      }
      maybeSendRead();
    },
    { root: $('messages'), threshold: 0.01 },
  );
}

// ---------------------------------------------------------------- end
// (Deleting everything lives on the "your data" page, next to the download: mycase.js.)

function showConfirm(kind, opener) {
  S.confirmAction = kind;
  S.confirmOpener = opener;
  setText($('confirm-title'), 'chat.confirm_end_title');
  setText($('confirm-text'), 'chat.confirm_end_text');
  const yes = $('confirm-yes');
  setText(yes, 'chat.confirm_end_yes');
  yes.disabled = false;
  setError($('chat-error'), null);
  $('confirm').hidden = false;
  $('confirm').scrollIntoView({ block: 'nearest' });
  $('confirm-title').focus();
}

function hideConfirm({ restoreFocus = true } = {}) {
  $('confirm').hidden = true;
  const opener = S.confirmOpener;
  S.confirmAction = null;
  S.confirmOpener = null;
  if (restoreFocus && opener && !opener.hidden) opener.focus();
}

async function confirmYes() {
  const kind = S.confirmAction;
  const yes = $('confirm-yes');
  yes.disabled = true;
  try {
    if (kind === 'end') {
      const { status } = await api('/api/chat/end', { method: 'POST', token: token() });
      if (status === 200 || status === 409) {
        S.status = 'ended';
        S.endedBy = S.endedBy || 'victim';
        hideConfirm({ restoreFocus: false });
        renderStatus();
        $('ended-title').focus();
        return;
      }
      if (status === 401) {
        lostAccess();
        return;
      }
      setError($('chat-error'), 'chat.end_failed');
    }
  } catch {
    setError($('chat-error'), 'common.error_network');
  }
  yes.disabled = false;
}

function closeChat() {
  const tok = token();
  if (tok) api('/api/chat/logout', { method: 'POST', token: tok }).catch(() => {});
  forgetAll();
  showView('start');
}

// ---------------------------------------------------------------- wiring

function wire() {
  $('start-chat').addEventListener('click', startChat);
  $('continue-link').addEventListener('click', showResume);
  $('resume-back').addEventListener('click', () => showView('start'));
  $('resume-form').addEventListener('submit', submitResume);
  $('goodbye-home').addEventListener('click', () => showView('start'));

  $('copy-receipt').addEventListener('click', copyReceipt);
  $('saved-check').addEventListener('change', (e) => {
    $('receipt-continue').disabled = !e.target.checked;
  });
  $('receipt-continue').addEventListener('click', leaveReceipt);

  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    sendMessage();
  });
  const input = $('message-input');
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      sendMessage();
    }
  });
  input.addEventListener('input', onInputTyping);

  $('end-chat').addEventListener('click', (e) => showConfirm('end', e.currentTarget));
  $('mycase-open').addEventListener('click', () => openMycase());
  $('confirm-yes').addEventListener('click', confirmYes);
  $('confirm-no').addEventListener('click', () => hideConfirm());
  $('confirm').addEventListener('keydown', (e) => {
    if (e.key === 'Escape') hideConfirm();
  });
  $('close-chat').addEventListener('click', closeChat);
  initEvidence({ token, onLostAccess: lostAccess });
  initHandover({ token, onLostAccess: lostAccess });
  initMycase({
    token,
    reference: () => getItem(KEYS.reference),
    showView,
    onBack: backToChat,
    onDeleted: () => {
      forgetAll();
      showGoodbye('deleted');
    },
    onLostAccess: lostAccess,
  });

  $('start-callback').addEventListener('click', () => openCallback('start'));
  $('callback-chat-button').addEventListener('click', () => openCallback('chat'));
  initCallback({
    token,
    showView,
    onBackToChat: () => openChat(),
    onLostAccess: lostAccess,
    // asked to continue in the chat as well: the same receipt as a chat start
    onFiledWithChat: (data) => {
      forgetConversation();
      resetChat();
      setItem(KEYS.token, data.token);
      setItem(KEYS.reference, data.reference || '');
      setJSON(KEYS.receipt, { reference: data.reference || '', passphrase: data.passphrase || '' });
      showReceipt();
    },
  });

  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState !== 'visible' || S.view !== 'chat') return;
    if (S.wanted && (!S.ws || Date.now() - S.lastFrameAt > DEAD_AFTER)) reconnectNow();
    maybeSendRead();
  });
  window.addEventListener('online', () => {
    if (S.wanted && !S.ready) reconnectNow();
  });
  // Back/forward cache: never show a conversation this tab has forgotten.
  window.addEventListener('pageshow', (e) => {
    if (!e.persisted) return;
    if (!token()) {
      forgetAll();
      showView('start', { focus: false });
    } else if (S.view === 'chat' && S.wanted && !S.ws) {
      reconnectNow();
    }
  });

  onLangChange(() => {
    renderTopics();
    renderClosedNote();
    if (S.view === 'chat') renderStatus();
    refreshTimes();
  });
}

function route() {
  if (!token()) {
    showView('start', { focus: false });
  } else if (getJSON(KEYS.receipt, null)) {
    showReceipt({ focus: false });
  } else {
    openChat({ focus: false });
  }
}

async function main() {
  initQuickExit(); // first, so it works even if anything below fails
  await initI18n();
  setupObserver();
  wire();
  renderTopics();
  route();
  S.info = await getInfo();
  renderTopics();
  renderClosedNote();
  if (S.view === 'chat') renderStatus();
}

main().catch((e) => console.error(e));
