// The queue: GET /api/staff/cases, live through /ws/console (debounced), polled every 30 s as a fallback.
import { api, ApiError } from './api.js';
import { has, setT } from './strings.js';
import { $, h, wsUrl, Backoff, durationKey } from './dom.js';

const DEBOUNCE_MS = 300;
const POLL_MS = 30000;
const TICK_MS = 15000;
const RANK = { new: 0 };

export class Queue {
  constructor({ me, panes, hooks }) {
    this.me = me;
    this.panes = panes;
    this.hooks = hooks;
    this.list = $('#queue');
    this.summary = $('#queue-summary');
    this.noticeEl = $('#queue-notice');
    this.emptyEl = $('#queue-empty');
    this.liveEl = $('#queue-live');
    this.queueBadge = $('#tab-queue-count');
    this.rows = new Map();
    this.cases = [];
    this.backoff = new Backoff(500, 10000);
    this.stopped = true;
  }

  get supervisor() {
    return this.me.role === 'supervisor' || this.me.role === 'admin';
  }

  start() {
    this.stopped = false;
    this.connect();
    this.load();
    this.poll = setInterval(() => this.load(), POLL_MS);
    this.tick = setInterval(() => this.updateTimes(), TICK_MS);
  }

  stop() {
    this.stopped = true;
    clearInterval(this.poll);
    clearInterval(this.tick);
    clearTimeout(this.debounce);
    clearTimeout(this.reconnectTimer);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000);
    this.list.replaceChildren();
    this.rows.clear();
  }

  connect() {
    if (this.stopped) return;
    let ws;
    try {
      ws = new WebSocket(wsUrl('/ws/console'));
    } catch {
      this.reconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.backoff.reset();
      this.setLive(true);
      this.refresh(); // anything missed while we were away
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      let frame = null;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (frame && frame.type === 'queue_changed') this.refresh();
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.setLive(false);
      if (ev.code === 4401) this.hooks.onCheckSession();
      this.reconnect();
    };
  }

  reconnect() {
    if (this.stopped) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.connect(), this.backoff.next());
  }

  setLive(live) {
    this.liveEl.dataset.live = live ? 'yes' : 'no';
    setT(this.liveEl, live ? 'queue.live' : 'queue.offline');
  }

  /** Re-fetch soon; several changes in a burst cost one request. */
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
      const data = await api('GET', '/api/staff/cases');
      if (this.stopped) return;
      this.cases = Array.isArray(data && data.cases) ? data.cases : [];
      this.render();
      if (this.noticeEl.dataset.kind === 'load') this.clearNotice();
      this.panes.sync(this.cases);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) this.hooks.onSessionLost();
      else this.notice('queue.load_failed', undefined, 'load');
    } finally {
      this.loading = false;
      if (this.again && !this.stopped) {
        this.again = false;
        this.load();
      }
    }
  }

  notice(key, vars, kind = 'info') {
    this.noticeEl.dataset.kind = kind;
    setT(this.noticeEl, key, vars);
    this.noticeEl.hidden = false;
    clearTimeout(this.noticeTimer);
    if (kind !== 'load') this.noticeTimer = setTimeout(() => this.clearNotice(), 12000);
  }

  clearNotice() {
    this.noticeEl.hidden = true;
    this.noticeEl.dataset.kind = '';
  }

  render() {
    const sorted = this.cases
      .map((c, i) => [c, i])
      .sort(([a, i], [b, j]) => (RANK[a.status] ?? 2) - (RANK[b.status] ?? 2) || i - j)
      .map(([c]) => c);
    // keep keyboard focus on the same control across a refresh
    const active = document.activeElement;
    const focusRow = active && this.list.contains(active) ? active.closest('.queue-row') : null;
    const cls = focusRow ? ['claim', 'open'].find((k) => active.classList.contains(k)) : null;
    const focusInfo = focusRow ? { id: focusRow.dataset.caseId, cls: cls || 'btn' } : null;

    const seen = new Set();
    let prev = null;
    for (const c of sorted) {
      if (!c || typeof c.id !== 'string') continue;
      let row = this.rows.get(c.id);
      if (!row) {
        row = h('li', { class: 'queue-row' });
        this.rows.set(c.id, row);
      }
      this.fill(row, c);
      const want = prev ? prev.nextElementSibling : this.list.firstElementChild;
      if (want !== row) this.list.insertBefore(row, want);
      prev = row;
      seen.add(c.id);
    }
    for (const [id, row] of this.rows) {
      if (!seen.has(id)) {
        row.remove();
        this.rows.delete(id);
      }
    }
    if (focusInfo && !this.list.contains(document.activeElement)) {
      const row = this.rows.get(focusInfo.id);
      const target = row && (row.querySelector(`button.${focusInfo.cls}`) || row.querySelector('button'));
      if (target) target.focus();
      else $('#queue-title').focus();
    }
    const waiting = sorted.filter((c) => c.status === 'new').length;
    const activeCount = sorted.filter((c) => c.status !== 'new').length;
    setT(this.summary, 'queue.summary', { waiting, active: activeCount });
    this.queueBadge.textContent = String(waiting);
    this.queueBadge.hidden = waiting === 0;
    this.emptyEl.hidden = sorted.length > 0;
  }

  fill(row, c) {
    const owner = c.assigned_to || null;
    const mine = Boolean(owner && owner.id === this.me.id);
    const open = this.panes.has(c.id);
    const sig = JSON.stringify([c, mine, open, this.supervisor]);
    if (row.sig === sig) return;
    row.sig = sig;
    const ref = { ref: c.reference || '' };
    row.dataset.caseId = c.id;
    row.dataset.reference = c.reference || '';
    row.dataset.status = c.status || '';
    row.classList.toggle('is-mine', mine);
    row.classList.toggle('is-open', open);

    const since = c.status === 'new' ? c.queued_at || c.created_at : c.last_activity_at || c.created_at;
    const wait = h('span', { class: 'wait', 'data-since': since || '', 'data-kind': c.status === 'new' ? 'waiting' : 'active' });
    this.setWait(wait);
    const unread = Number(c.unread) || 0;
    const top = h('div', { class: 'row-top' },
      h('span', { class: 'ref', text: c.reference || '' }),
      h('span', { class: `status status-${c.status}`, i18n: has(`status.${c.status}`) ? `status.${c.status}` : null,
        text: has(`status.${c.status}`) ? null : c.status }),
      unread > 0 ? h('span', { class: 'badge unread' }, String(unread), h('span', { class: 'sr-only', i18n: 'tab.unread' })) : null,
      wait); // prettier-ignore

    const meta = h('div', { class: 'row-meta' });
    const parts = [];
    if (c.channel) parts.push(has(`channel.${c.channel}`) ? h('span', { i18n: `channel.${c.channel}` }) : c.channel);
    if (c.language) parts.push(h('abbr', { class: 'lang', 'i18n-title': `language.${c.language}` }, String(c.language).toUpperCase()));
    if (c.topic) parts.push(has(`topic.${c.topic}`) ? h('span', { i18n: `topic.${c.topic}` }) : c.topic);
    parts.forEach((p, i) => {
      if (i) meta.append(' \u00b7 ');
      meta.append(p);
    });

    const who = mine
      ? h('span', { class: 'owner is-you', i18n: 'queue.owner_you' })
      : owner
        ? h('span', { class: 'owner', i18n: ['queue.owner', { name: owner.name || '?' }] })
        : h('span', { class: 'owner is-none', i18n: 'queue.unassigned' });

    const actions = h('div', { class: 'row-actions' });
    if (c.status === 'new' && !owner) {
      actions.append(h('button', { type: 'button', class: 'btn btn-primary claim', i18n: 'queue.claim',
        'i18n-aria-label': ['queue.claim_label', ref], onclick: (e) => this.claim(c, e.currentTarget) })); // prettier-ignore
    }
    if (mine || this.supervisor) {
      actions.append(h('button', { type: 'button', class: 'btn open', i18n: open ? 'queue.show' : 'queue.open',
        'i18n-aria-label': [open ? 'queue.show_label' : 'queue.open_label', ref],
        onclick: () => this.panes.open(c) })); // prettier-ignore
    }
    row.replaceChildren(top, h('div', { class: 'row-bottom' }, h('div', { class: 'row-info' }, meta, who), actions));
  }

  setWait(el) {
    const since = Date.parse(el.dataset.since);
    if (Number.isNaN(since)) {
      el.textContent = '';
      return;
    }
    const [key, vars] = durationKey(Date.now() - since);
    const prefix = el.dataset.kind === 'waiting' ? 'queue.waiting_for' : 'queue.idle_for';
    // screen readers hear "waiting 3 min"; the eye sees "3 min"
    el.replaceChildren(h('span', { class: 'sr-only', i18n: prefix }), h('span', { i18n: [key, vars] }));
  }

  updateTimes() {
    for (const el of this.list.querySelectorAll('.wait')) this.setWait(el);
  }

  async claim(c, btn) {
    btn.disabled = true;
    try {
      const claimed = await api('POST', `/api/staff/cases/${encodeURIComponent(c.id)}/claim`);
      this.panes.open({ ...c, ...(claimed && typeof claimed === 'object' ? claimed : {}), id: c.id });
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) {
        this.notice('queue.already_claimed', { ref: c.reference || '' });
      } else if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      } else {
        this.notice('queue.claim_failed', { ref: c.reference || '', code: (e && e.code) || '' });
      }
      if (btn.isConnected) btn.disabled = false;
    }
    this.refresh();
  }
}
