// A case's timeline: messages, private notes, evidence and events (claims, status, triage,
// priority, transfers, closing), oldest first, each with who and when. Read-only; loaded when
// the tab is shown and again when the case changes while it is shown.
import { api, ApiError } from './api.js';
import { setT, has } from './strings.js';
import { h, formatClock } from './dom.js';
import { errorKey } from './dialogs.js';
import { priorityName } from './vocab.js';

const KINDS = new Set(['message', 'note', 'evidence', 'event']);
const HIDDEN_DETAILS = new Set(['event_id', 'request', 'outgoing_id']); // ids: nothing to read
const NAMES_MS = 60000;
let names = { at: 0, map: new Map() };

/** Staff id -> name (events name people by id), from the colleagues list, kept a minute. */
async function staffNames() {
  if (Date.now() - names.at < NAMES_MS) return names.map;
  try {
    const r = await api('GET', '/api/staff/colleagues');
    const map = new Map();
    for (const s of Array.isArray(r && r.staff) ? r.staff : []) if (s && s.id) map.set(s.id, String(s.name || ''));
    names = { at: Date.now(), map };
  } catch {
    /* ids stay ids */
  }
  return names.map;
}

/** A value from an event's details, by its label where there is one. */
function valueLabel(key, value, people) {
  if (value === null || value === undefined || value === '') return h('span', { i18n: 'timeline.none' });
  if (typeof value === 'boolean') return h('span', { i18n: value ? 'timeline.yes' : 'timeline.no' });
  if (Array.isArray(value)) {
    if (!value.length) return h('span', { i18n: 'timeline.none' });
    const span = h('span');
    value.forEach((v, i) => {
      if (i) span.append(', ');
      span.append(valueLabel(key, v, people));
    });
    return span;
  }
  if (typeof value === 'object') return h('span', { text: value.name || value.id || JSON.stringify(value) });
  const v = String(value);
  const staffId = v.startsWith('staff:') ? v.slice(6) : v;
  if (people && people.has(staffId)) return h('span', { text: people.get(staffId) || '?' });
  if (v === 'victim') return h('span', { i18n: 'sender.victim' });
  const k = key.replace(/^(from|to|old|new|previous)_/, '');
  const guesses = [];
  // the e-mail and callback events (email_failed, callback_*): their own words first
  if (key === 'outcome') guesses.push(`callback.outcome.${v}`);
  if (key === 'reason') guesses.push(`mail.reason.${v}`, `callback.reason.${v}`);
  if (key === 'state') guesses.push(`callback.state.${v}`);
  if (key === 'source') guesses.push(`callback.source.${v}`);
  if (/status/.test(k)) guesses.push(`status.${v}`);
  if (/category|topic/.test(k)) guesses.push(`category.${v}`);
  if (/flag/.test(k)) guesses.push(`flag.${v}`);
  if (/outcome/.test(k)) guesses.push(`outcome.${v}`);
  if (/priority/.test(k) && /^\d$/.test(v)) guesses.push(`priority.${priorityName(v)}`);
  guesses.push(`status.${v}`, `category.${v}`, `flag.${v}`, `outcome.${v}`);
  const key2 = guesses.find((g) => has(g));
  return key2 ? h('span', { i18n: key2 }) : h('span', { text: v });
}

function actorNode(actor) {
  const a = actor && typeof actor === 'object' ? actor : {};
  if (a.kind === 'victim') return h('span', { class: 'who', i18n: 'sender.victim' });
  if (a.kind === 'staff') return a.name ? h('span', { class: 'who', text: a.name }) : h('span', { class: 'who', i18n: 'sender.staff' });
  return h('span', { class: 'who', i18n: 'sender.system' });
}

function eventName(e) {
  for (const k of ['event', 'action', 'type', 'name']) if (typeof e[k] === 'string' && e[k]) return e[k];
  return '';
}

export class TimelinePanel {
  constructor({ pane, hooks }) {
    this.pane = pane;
    this.hooks = hooks;
    this.url = `/api/staff/cases/${encodeURIComponent(pane.id)}/timeline`;
    this.msg = h('p', { class: 'panel-msg', role: 'status', hidden: true });
    this.list = h('ol', { class: 'timeline-list', 'i18n-aria-label': ['timeline.label', { ref: pane.reference }] });
    this.emptyEl = h('p', { class: 'empty-line', i18n: 'timeline.empty', hidden: true });
    this.refreshBtn = h('button', { type: 'button', class: 'btn btn-link timeline-refresh', i18n: 'timeline.refresh',
      onclick: () => this.load() }); // prettier-ignore
    this.el = h('div', { class: 'timeline' }, h('div', { class: 'panel-tools' }, this.refreshBtn), this.msg, this.list, this.emptyEl);
  }

  async load() {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    this.list.setAttribute('aria-busy', 'true');
    try {
      const [r, people] = await Promise.all([api('GET', this.url), staffNames()]);
      this.people = people;
      const entries = Array.isArray(r && r.entries) ? r.entries.filter((e) => e && typeof e === 'object') : [];
      this.msg.hidden = true;
      this.render(entries);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'timeline.error');
      setT(this.msg, key, vars);
      this.msg.dataset.tone = 'error';
      this.msg.hidden = false;
    } finally {
      this.loading = false;
      this.list.setAttribute('aria-busy', 'false');
      if (this.again) {
        this.again = false;
        this.load();
      }
    }
  }

  render(entries) {
    this.list.replaceChildren(...entries.map((e) => this.entry(e)));
    this.emptyEl.hidden = entries.length > 0;
  }

  entry(e) {
    const kind = KINDS.has(e.kind) ? e.kind : 'event';
    const li = h('li', { class: `tl tl-${kind}`, 'data-kind': kind });
    const head = h('p', { class: 'meta' },
      h('time', { datetime: e.at || '', text: formatClock(e.at) }), ' ', actorNode(e.actor), ' ');
    const body = h('div', { class: 'tl-body' });
    if (kind === 'message') {
      head.append(h('span', { class: 'tl-kind', i18n: 'timeline.kind.message' }));
      body.append(h('p', { class: 'text', text: String(e.text ?? '') }));
    } else if (kind === 'note') {
      head.append(h('span', { class: 'tl-kind', i18n: 'timeline.kind.note' }));
      body.append(h('p', { class: 'text', text: String(e.text ?? '') }));
    } else if (kind === 'evidence') {
      head.append(h('span', { class: 'tl-kind', i18n: 'timeline.kind.evidence' }));
      const what = e.filename || e.url || e.name || e.media_type || '';
      if (what) body.append(h('p', { class: 'text', dir: 'auto', translate: 'no', text: String(what) }));
      const kindKey = `evidence.kind.${e.item_kind}`;
      if (e.item_kind) body.append(h('p', { class: 'tl-detail' }, has(kindKey) ? h('span', { i18n: kindKey }) : e.item_kind,
        e.status && has(`evidence.status.${e.status}`) ? [' \u00b7 ', h('span', { i18n: `evidence.status.${e.status}` })] : null)); // prettier-ignore
    } else {
      const name = eventName(e);
      const key = `timeline.event.${name}`;
      head.append(has(key) ? h('span', { class: 'tl-kind', i18n: key }) : h('span', { class: 'tl-kind', text: name || '?' }));
      const details = e.details && typeof e.details === 'object' && !Array.isArray(e.details) ? e.details : {};
      const dl = h('dl', { class: 'tl-details' });
      for (const [k, v] of Object.entries(details)) {
        if (HIDDEN_DETAILS.has(k)) continue;
        const label = `timeline.field.${k}`;
        dl.append(has(label) ? h('dt', { i18n: label }) : h('dt', { text: k }), h('dd', {}, valueLabel(k, v, this.people)));
      }
      if (dl.firstChild) body.append(dl);
      const text = e.text ?? e.note ?? e.reason;
      if (typeof text === 'string' && text) body.append(h('p', { class: 'text', text }));
    }
    li.append(head, body);
    return li;
  }
}
