// The queue: GET /api/staff/cases in the server's order (priority, then waiting time), with
// filters (remembered for this tab), a live SLA timer per case, and updates over /ws/console
// (debounced), polled every 30 s as a fallback.
import { api, ApiError } from './api.js';
import { has, setT, t } from './strings.js';
import { $, h, durationKey } from './dom.js';
import { slaTimer, syncServerClock, serverNow } from './sla.js';
import { OPEN_STATUSES } from './vocab.js';
import { codeLabel, priorityBadge, flagBadges, statusBadge, channelLabel } from './badges.js';
import { firstWindow, windowLabel } from './callback.js';

const DEBOUNCE_MS = 300;
const POLL_MS = 30000;
const TICK_MS = 15000;
const FILTER_STORE = 'helpline.console.filters';
const FILTERS = ['channel', 'category', 'language', 'status', 'assigned'];
const CHANNELS = ['chat', 'email', 'callback'];
const LANGUAGES = ['nl', 'en'];

export class Queue {
  constructor({ me, panes, live, presence, vocab, announcer, channels, hooks }) {
    this.me = me;
    this.channels = channels; // { callbacks: CallbackBook, mailFailures: MailFailures }
    this.panes = panes;
    this.live = live;
    this.presence = presence;
    this.vocab = vocab;
    this.announcer = announcer;
    this.hooks = hooks;
    this.list = $('#queue');
    this.summary = $('#queue-summary');
    this.noticeEl = $('#queue-notice');
    this.emptyEl = $('#queue-empty');
    this.liveEl = $('#queue-live');
    this.queueBadge = $('#tab-queue-count');
    this.filterForm = $('#queue-filters');
    this.rows = new Map();
    this.cases = [];
    this.all = new Map(); // id -> case, from every answer (for announcing a breach by reference)
    this.stopped = true;
    this.filters = this.readFilters();
    this.offs = [];
  }

  get supervisor() {
    return this.me.role === 'supervisor' || this.me.role === 'admin';
  }

  start() {
    this.stopped = false;
    this.buildFilters();
    this.offs.push(
      this.live.on('live', (on) => this.setLive(on)),
      this.live.on('open', () => this.refresh()),
      this.live.on('queue_changed', () => this.refresh()),
      this.live.on('case_changed', () => this.refresh()),
      this.live.on('sla_breach', (f) => this.onBreach(f)),
      this.presence.onChange(() => this.render()),
      this.channels.callbacks.onChange(() => this.render()),
      this.channels.mailFailures.onChange(() => this.render()),
    );
    this.setLive(this.live.connected);
    this.load();
    this.poll = setInterval(() => this.load(), POLL_MS);
    this.tick = setInterval(() => this.updateTimes(), TICK_MS);
  }

  stop() {
    this.stopped = true;
    for (const off of this.offs) off();
    this.offs = [];
    clearInterval(this.poll);
    clearInterval(this.tick);
    clearTimeout(this.debounce);
    this.list.replaceChildren();
    this.rows.clear();
  }

  setLive(live) {
    this.liveEl.dataset.live = live ? 'yes' : 'no';
    setT(this.liveEl, live ? 'queue.live' : 'queue.offline');
  }

  // --- filters -------------------------------------------------------------------------------

  readFilters() {
    let stored = {};
    try {
      stored = JSON.parse(sessionStorage.getItem(FILTER_STORE) || '{}') || {};
    } catch {
      stored = {};
    }
    const out = {};
    for (const k of FILTERS) out[k] = typeof stored[k] === 'string' ? stored[k] : '';
    if (!['', 'me', 'none', 'any'].includes(out.assigned)) out.assigned = '';
    return out;
  }

  saveFilters() {
    try {
      sessionStorage.setItem(FILTER_STORE, JSON.stringify(this.filters));
    } catch {
      /* not remembered */
    }
  }

  buildFilters() {
    const options = {
      channel: CHANNELS.map((c) => [c, `channel.${c}`]),
      category: this.vocab.categories.map((c) => [c, `category.${c}`]),
      language: LANGUAGES.map((l) => [l, `language.${l}`]),
      status: OPEN_STATUSES.map((s) => [s, `status.${s}`]),
      assigned: [['me', 'filter.assigned_me'], ['none', 'filter.assigned_none']],
    };
    for (const k of FILTERS) {
      const select = $(`#filter-${k}`);
      const keep = this.filters[k];
      select.replaceChildren(h('option', { value: '', i18n: k === 'assigned' ? 'filter.assigned_any' : 'filter.all' }));
      for (const [value, key] of options[k]) {
        select.append(has(key) ? h('option', { value, i18n: key }) : h('option', { value, text: value }));
      }
      select.value = options[k].some(([v]) => v === keep) ? keep : '';
      this.filters[k] = select.value;
      select.onchange = () => {
        this.filters[k] = select.value;
        this.saveFilters();
        this.showFilterState();
        this.load();
      };
    }
    $('#filter-reset').onclick = () => {
      for (const k of FILTERS) {
        this.filters[k] = '';
        $(`#filter-${k}`).value = '';
      }
      this.saveFilters();
      this.showFilterState();
      this.load();
      $('#filter-channel').focus();
    };
    this.showFilterState();
  }

  showFilterState() {
    const n = FILTERS.filter((k) => this.filters[k]).length;
    const btn = $('#filter-reset');
    btn.hidden = n === 0;
    this.filterForm.dataset.active = String(n);
    const box = $('#queue-filter-box');
    setT(box.querySelector('summary'), n ? 'filter.title_active' : 'filter.title', { n });
    if (n && !this.filtersShown) box.open = true; // filters left on from before: show them
    this.filtersShown = true;
  }

  query() {
    const q = new URLSearchParams();
    for (const k of FILTERS) if (this.filters[k]) q.set(k, this.filters[k]);
    const s = q.toString();
    return s ? `?${s}` : '';
  }

  /** The filters again on this side: the list is right even if the server ignored one. */
  matches(c) {
    const f = this.filters;
    if (f.channel && c.channel !== f.channel) return false;
    if (f.category && c.category !== f.category) return false;
    if (f.language && c.language !== f.language) return false;
    if (f.status && c.status !== f.status) return false;
    const owner = c.assigned_to && c.assigned_to.id;
    if (f.assigned === 'me' && owner !== this.me.id) return false;
    if (f.assigned === 'none' && owner) return false;
    return true;
  }

  // --- loading -------------------------------------------------------------------------------

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
    this.list.setAttribute('aria-busy', 'true');
    try {
      const data = await api('GET', `/api/staff/cases${this.query()}`);
      if (this.stopped) return;
      if (data && data.now) syncServerClock(data.now);
      const cases = Array.isArray(data && data.cases) ? data.cases.filter((c) => c && typeof c.id === 'string') : [];
      for (const c of cases) this.all.set(c.id, c);
      this.cases = cases.filter((c) => this.matches(c) && c.status !== 'closed');
      this.render();
      if (this.noticeEl.dataset.kind === 'load') this.clearNotice();
      this.panes.sync(cases);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) this.hooks.onSessionLost();
      else if (e instanceof ApiError && e.status === 400) this.notice('queue.filter_refused', { code: e.code }, 'load');
      else this.notice('queue.load_failed', undefined, 'load');
    } finally {
      this.loading = false;
      this.list.setAttribute('aria-busy', 'false');
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

  onBreach(f) {
    const c = f && this.all.get(f.case_id);
    const kind = t(f && f.kind === 'next_response' ? 'sla.next_response' : 'sla.first_response');
    // a polite announcement, once per frame; the row turns red with the next load
    this.announcer.say(c ? 'sla.breach_announce' : 'sla.breach_announce_unknown', { ref: c ? c.reference : '', kind });
    this.refresh();
  }

  // --- rendering -----------------------------------------------------------------------------

  render() {
    const cases = this.cases;
    // keep keyboard focus on the same control across a refresh
    const active = document.activeElement;
    const focusRow = active && this.list.contains(active) ? active.closest('.queue-row') : null;
    const cls = focusRow ? ['claim', 'open'].find((k) => active.classList.contains(k)) : null;
    const focusInfo = focusRow ? { id: focusRow.dataset.caseId, cls: cls || 'btn' } : null;

    const seen = new Set();
    let prev = null;
    for (const c of cases) {
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
    const waiting = cases.filter((c) => c.status === 'new').length;
    // a live region: re-set only when the counts change, so it speaks only then
    const counts = `${waiting}/${cases.length}`;
    if (this.summary.dataset.counts !== counts) {
      this.summary.dataset.counts = counts;
      setT(this.summary, 'queue.summary', { waiting, total: cases.length });
    }
    this.queueBadge.textContent = String(waiting);
    this.queueBadge.hidden = waiting === 0;
    this.emptyEl.hidden = cases.length > 0;
    setT(this.emptyEl, FILTERS.some((k) => this.filters[k]) ? 'queue.empty_filtered' : 'queue.empty');
  }

  fill(row, c) {
    const owner = c.assigned_to || null;
    const mine = Boolean(owner && owner.id === this.me.id);
    const open = this.panes.has(c.id);
    const viewers = this.presence.viewersOf(c.id);
    const callback = this.channels.callbacks.get(c.id);
    const mailFailed = Number(c.email_failed) > 0 || this.channels.mailFailures.get(c.id);
    const sig = JSON.stringify([c, mine, open, this.supervisor, viewers, callback, mailFailed]);
    if (row.sig === sig) return;
    row.sig = sig;
    const ref = { ref: c.reference || '' };
    row.dataset.caseId = c.id;
    row.dataset.reference = c.reference || '';
    row.dataset.status = c.status || '';
    row.dataset.priority = String(c.priority ?? '');
    row.dataset.sla = c.sla && c.sla.breached ? 'breached' : '';
    row.classList.toggle('is-mine', mine);
    row.classList.toggle('is-open', open);

    const unread = Number(c.unread) || 0;
    const top = h('div', { class: 'row-top' },
      priorityBadge(c.priority ?? 3, c.priority_overridden),
      h('span', { class: 'ref', text: c.reference || '' }),
      statusBadge(c.status),
      unread > 0 ? h('span', { class: 'badge unread' }, String(unread), h('span', { class: 'sr-only', i18n: 'tab.unread' })) : null,
      // a chat (or mail) whose victim also asked to be called back
      callback && c.channel !== 'callback' ? h('span', { class: 'badge wants-call' },
        h('span', { 'aria-hidden': 'true' }, '\u260e'), ' ', h('span', { i18n: 'callback.wants_call' })) : null,
      mailFailed ? h('span', { class: 'badge mail-failed-badge', i18n: 'mail.failed_badge' }) : null,
      slaTimer(c, (kind, p) => this.vocab.slaTarget(kind, p))); // prettier-ignore

    const meta = h('div', { class: 'row-meta' });
    const parts = [];
    if (c.channel) {
      const win = c.channel === 'callback' && callback ? firstWindow(callback.windows) : null;
      parts.push(win ? h('span', { class: 'channel-with-window' }, channelLabel(c.channel), ' ', windowLabel(win, 'row-window')) : channelLabel(c.channel));
    }
    if (c.language) parts.push(h('abbr', { class: 'lang', 'i18n-title': `language.${c.language}` }, String(c.language).toUpperCase()));
    if (c.category) parts.push(codeLabel('category', `category.${c.category}`, c.category));
    else if (c.topic) {
      // the victim's own pick, not yet confirmed by staff
      parts.push(h('span', { class: 'category is-topic' }, h('span', { i18n: 'queue.topic' }), ' ',
        codeLabel('', `category.${c.topic}`, c.topic))); // prettier-ignore
    } else parts.push(h('span', { class: 'category is-none', i18n: 'category.none' }));
    parts.forEach((p, i) => {
      if (i) meta.append(' \u00b7 ');
      meta.append(p);
    });
    const since = c.status === 'new' ? c.queued_at || c.created_at : c.last_activity_at || c.created_at;
    const wait = h('span', { class: 'wait', 'data-since': since || '', 'data-kind': c.status === 'new' ? 'waiting' : 'active' });
    this.setWait(wait);
    meta.append(' \u00b7 ', wait);

    const who = mine
      ? h('span', { class: 'owner is-you', i18n: 'queue.owner_you' })
      : owner
        ? h('span', { class: 'owner', i18n: ['queue.owner', { name: owner.name || '?' }] })
        : h('span', { class: 'owner is-none', i18n: 'queue.unassigned' });
    const info = h('div', { class: 'row-info' }, meta, flagBadges(c.risk_flags), h('p', { class: 'row-who' }, who,
      viewers.length ? h('span', { class: 'viewers', i18n: ['viewers.open_by', { names: viewers.map((v) => v.name).join(', ') }] }) : null)); // prettier-ignore

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
    row.replaceChildren(top, h('div', { class: 'row-bottom' }, info, actions));
  }

  setWait(el) {
    const since = Date.parse(el.dataset.since);
    if (Number.isNaN(since)) {
      el.textContent = '';
      return;
    }
    const [key, vars] = durationKey(serverNow() - since);
    const prefix = el.dataset.kind === 'waiting' ? 'queue.waiting_for' : 'queue.idle_for';
    el.replaceChildren(h('span', { i18n: prefix }), ' ', h('span', { i18n: [key, vars] }));
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
