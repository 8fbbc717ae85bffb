// The supervisor's view of the team (GET /api/staff/overview): who is online and what each
// carries and has open, the queue per priority, the oldest wait, SLA breaches today and now,
// and reassigning a case. Refreshed live while it is shown.
import { api, ApiError } from './api.js';
import { setT, currentLang } from './strings.js';
import { $, h, durationKey } from './dom.js';
import { errorKey, assignDialog } from './dialogs.js';
import { priorityBadge, statusBadge, codeLabel } from './badges.js';
import { syncServerClock } from './sla.js';

const DEBOUNCE_MS = 400;
const POLL_MS = 30000;

export class TeamView {
  /** hooks: { onSessionLost(), cases() -> the queue's open cases, onOpenCase(case) } */
  constructor({ me, live, presence, hooks }) {
    this.me = me;
    this.live = live;
    this.presence = presence;
    this.hooks = hooks;
    this.el = $('#view-team');
    this.msg = $('#team-msg');
    this.stats = $('#team-stats');
    this.staffBody = $('#team-staff');
    this.updated = $('#team-updated');
    this.data = null;
    this.visible = false;
    this.offs = [
      ...['queue_changed', 'case_changed', 'presence', 'sla_breach', 'open'].map((t) => live.on(t, () => this.refresh())),
    ];
    $('#team-assign').onclick = () => this.reassign(null);
    $('#team-refresh').onclick = () => this.load();
  }

  show() {
    this.visible = true;
    this.load();
    clearInterval(this.poll);
    this.poll = setInterval(() => this.load(), POLL_MS);
    this.tick = setInterval(() => this.renderOldest(), 15000);
  }

  hide() {
    this.visible = false;
    clearInterval(this.poll);
    clearInterval(this.tick);
  }

  destroy() {
    this.hide();
    clearTimeout(this.debounce);
    for (const off of this.offs) off();
  }

  refresh() {
    if (!this.visible) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => this.load(), DEBOUNCE_MS);
  }

  async load() {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    this.el.setAttribute('aria-busy', 'true');
    try {
      const data = await api('GET', '/api/staff/overview');
      if (data && data.now) syncServerClock(data.now);
      this.data = data && typeof data === 'object' ? data : {};
      this.fetchedAt = Date.now();
      if (this.msg.dataset.tone === 'error') this.msg.hidden = true;
      this.render();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'team.error');
      setT(this.msg, key, vars);
      this.msg.dataset.tone = 'error';
      this.msg.hidden = false;
    } finally {
      this.loading = false;
      this.el.setAttribute('aria-busy', 'false');
      if (this.again) {
        this.again = false;
        this.load();
      }
    }
  }

  /** Case id -> reference, from the overview and the queue. */
  references() {
    const refs = new Map();
    for (const c of this.hooks.cases()) refs.set(c.id, c.reference);
    for (const s of (this.data && this.data.staff) || []) {
      for (const c of Array.isArray(s.cases) ? s.cases : []) if (c && c.id) refs.set(c.id, c.reference);
    }
    return refs;
  }

  render() {
    const d = this.data || {};
    const q = d.queue && typeof d.queue === 'object' ? d.queue : {};
    const sla = d.sla && typeof d.sla === 'object' ? d.sla : {};
    const byPrio = q.by_priority && typeof q.by_priority === 'object' ? q.by_priority : {};

    const prio = h('ul', { class: 'team-prio' });
    for (const level of [1, 2, 3, 4]) {
      const n = Number(byPrio[String(level)]) || 0;
      prio.append(h('li', { 'data-level': String(level), class: n ? 'has-cases' : null },
        priorityBadge(level, false), ' ', h('span', { class: 'count', text: String(n) }))); // prettier-ignore
    }
    this.oldestEl = h('dd', { class: 'team-oldest' });
    const breachedNow = Number(sla.breached_now) || 0;
    this.stats.replaceChildren(
      h('div', { class: 'stat' }, h('dt', { i18n: 'team.queue_total' }), h('dd', { class: 'big', text: String(Number(q.total) || 0) })),
      h('div', { class: 'stat stat-prio' }, h('dt', { i18n: 'team.by_priority' }), h('dd', {}, prio)),
      h('div', { class: 'stat' }, h('dt', { i18n: 'team.oldest' }), this.oldestEl),
      h('div', { class: 'stat' }, h('dt', { i18n: 'team.breaches_today' }),
        h('dd', { class: 'big', text: String(Number(sla.breaches_today) || 0) })),
      h('div', { class: `stat ${breachedNow ? 'is-breached' : ''}` }, h('dt', { i18n: 'team.breached_now' }),
        h('dd', { class: 'big' }, String(breachedNow), breachedNow ? h('span', { class: 'sla-flag', i18n: 'sla.breached' }) : null)),
    ); // prettier-ignore
    this.renderOldest();

    const refs = this.references();
    const staff = Array.isArray(d.staff) ? d.staff.filter((s) => s && typeof s.id === 'string') : [];
    staff.sort((a, b) => Number(Boolean(b.online)) - Number(Boolean(a.online)) || String(a.name).localeCompare(String(b.name)));
    this.staffBody.replaceChildren(...staff.map((s) => this.staffRow(s, refs)));
    $('#team-staff-empty').hidden = staff.length > 0;
    const locale = currentLang() === 'en' ? 'en-GB' : 'nl-NL';
    const time = new Intl.DateTimeFormat(locale, { hour: '2-digit', minute: '2-digit', second: '2-digit' }).format(new Date());
    setT(this.updated, 'team.updated', { time });
  }

  renderOldest() {
    if (!this.oldestEl || !this.data) return;
    const o = this.data.queue && this.data.queue.oldest;
    if (!o) {
      setT(this.oldestEl, 'team.oldest_none');
      return;
    }
    const elapsed = Date.now() - (this.fetchedAt || Date.now());
    const [key, vars] = durationKey((Number(o.waiting_seconds) || 0) * 1000 + elapsed);
    this.oldestEl.removeAttribute('data-i18n');
    this.oldestEl.replaceChildren(h('span', { class: 'ref', text: o.reference || '' }), ' \u00b7 ', h('span', { i18n: [key, vars] }));
  }

  staffRow(s, refs) {
    const cases = Array.isArray(s.cases) ? s.cases.filter((c) => c && c.id) : [];
    const carried = h('ul', { class: 'team-cases' });
    for (const c of cases) {
      carried.append(h('li', { 'data-case-id': c.id },
        priorityBadge(c.priority ?? 3, false), ' ', h('span', { class: 'ref', text: c.reference || '' }), ' ',
        statusBadge(c.status), ' ',
        h('button', { type: 'button', class: 'btn btn-link reassign', i18n: 'team.reassign',
          'i18n-aria-label': ['team.reassign_label', { ref: c.reference || '' }], onclick: () => this.reassign(c.id) }))); // prettier-ignore
    }
    if (!cases.length) carried.append(h('li', { class: 'none', i18n: 'team.carries_none' }));
    const viewing = Array.isArray(s.viewing) ? s.viewing : [];
    const viewingEl = h('ul', { class: 'team-viewing' });
    for (const id of viewing) viewingEl.append(h('li', { class: 'ref', text: refs.get(id) || '\u2026' }));
    if (!viewing.length) viewingEl.append(h('li', { class: 'none', i18n: 'team.viewing_none' }));
    return h('tr', { 'data-staff-id': s.id, 'data-online': s.online ? 'yes' : 'no' },
      h('th', { scope: 'row' }, h('span', { text: s.name || '?' }), s.id === this.me.id ? h('span', { class: 'me-tag', i18n: 'team.you' }) : null),
      h('td', {}, codeLabel('', `role.${s.role}`, s.role || '')),
      h('td', {}, h('span', { class: `presence-dot ${s.online ? 'is-online' : ''}`, 'aria-hidden': 'true' }),
        h('span', { i18n: s.online ? 'colleague.online' : 'colleague.offline' })),
      h('td', {}, h('span', { class: 'count', i18n: ['team.carries_count', { n: cases.length }] }), carried),
      h('td', {}, viewingEl)); // prettier-ignore
  }

  async reassign(caseId) {
    const seen = new Map();
    for (const c of this.hooks.cases()) seen.set(c.id, c);
    for (const s of (this.data && this.data.staff) || []) {
      for (const c of Array.isArray(s.cases) ? s.cases : []) {
        if (c && c.id && !seen.has(c.id)) seen.set(c.id, { ...c, assigned_to: { id: s.id, name: s.name } });
      }
    }
    const cases = [...seen.values()].filter((c) => c.status !== 'closed')
      .sort((a, b) => (a.priority ?? 3) - (b.priority ?? 3) || String(a.reference).localeCompare(String(b.reference))); // prettier-ignore
    const done = await assignDialog({ cases, caseId, me: this.me, onSessionLost: () => this.hooks.onSessionLost() });
    if (done) {
      const c = seen.get(typeof done === 'object' && done.id ? done.id : caseId);
      setT(this.msg, 'team.assigned', { ref: (c && c.reference) || '' });
      this.msg.dataset.tone = 'ok';
      this.msg.hidden = false;
      this.load();
    }
  }
}
