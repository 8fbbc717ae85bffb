// Supervisors: the takedown figures (docs/api/takedown-figures.md) over a chosen period: a small
// table overall and per platform, the server's SVG charts (same origin, as <img>), and links to
// the yearly DSA art. 22(3) report as a page, CSV and JSON. Counts and codes only: no personal data.
// Below them, the four-eyes rules (GET/PUT /api/staff/takedown/approval-rules, docs/api/takedown.md):
// the categories whose removal requests need a colleague's approval before they go out.
import { api, ApiError } from './api.js';
import { setT, currentLang } from './strings.js';
import { $, h } from './dom.js';
import { errorKey } from './dialogs.js';
import { loadVocabulary } from './vocab.js';

const CHARTS = ['honour-rate', 'time-to-removal', 'categories', 'actions'];
const BASE = '/api/staff/takedown';
const RULES = `${BASE}/approval-rules`;

function day(d) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** The date (YYYY-MM-DD) of an ISO moment in the helpline's time zone, as the server counts. */
function dayIn(iso, timeZone) {
  try {
    return new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date(iso));
  } catch {
    return day(new Date(iso));
  }
}

function locale() {
  return currentLang() === 'en' ? 'en-GB' : 'nl-NL';
}

function pct(v) {
  if (v === null || v === undefined || !Number.isFinite(Number(v))) return '—';
  return new Intl.NumberFormat(locale(), { style: 'percent', maximumFractionDigits: 1 }).format(Number(v));
}

function hours(v) {
  if (v === null || v === undefined || !Number.isFinite(Number(v))) return '—';
  return new Intl.NumberFormat(locale(), { maximumFractionDigits: 1 }).format(Number(v));
}

function count(v) {
  return Number.isFinite(Number(v)) ? String(Number(v)) : '0';
}

export class FiguresView {
  /** hooks: { onSessionLost() } */
  constructor({ hooks }) {
    this.hooks = hooks;
    this.el = $('#view-figures');
    this.from = $('#figures-from');
    this.to = $('#figures-to');
    this.msg = $('#figures-msg');
    this.out = $('#figures-out');
    // until the first answer, the browser's dates; the first load asks for the server's
    // default period (the last 30 days up to now) and shows its dates in the helpline's time
    // zone, which is how the server reads them (a browser elsewhere would be a day off)
    const now = new Date();
    this.to.value = day(now);
    this.from.value = day(new Date(now.getTime() - 30 * 86400000));
    this.serverDefault = true;
    $('#figures-form').onsubmit = (e) => {
      e.preventDefault();
      this.load();
    };
    this.buildRules();
  }

  show() {
    if (!this.loaded) this.load();
    if (!this.rulesLoaded) this.loadRules();
  }

  // ------------------------------------------------------------ four-eyes rules

  buildRules() {
    this.rulesBoxes = h('div', { class: 'figures-rules-boxes' });
    this.rulesMsg = h('p', { id: 'figures-rules-msg', class: 'panel-msg', role: 'status', hidden: true });
    this.rulesSave = h('button', { type: 'submit', id: 'figures-rules-save', class: 'btn btn-primary', i18n: 'figures.rules.save', disabled: true });
    this.rulesForm = h('form', { id: 'figures-rules-form', class: 'figures-rules-form', novalidate: true },
      h('fieldset', {}, h('legend', { i18n: 'figures.rules.legend' }), this.rulesBoxes),
      this.rulesSave); // prettier-ignore
    this.rulesForm.addEventListener('submit', (e) => {
      e.preventDefault();
      this.saveRules();
    });
    this.el.append(h('section', { class: 'figures-rules', 'aria-labelledby': 'figures-rules-title' },
      h('h2', { id: 'figures-rules-title', i18n: 'figures.rules.title' }),
      h('p', { class: 'hint', i18n: 'figures.rules.help' }),
      this.rulesMsg, this.rulesForm)); // prettier-ignore
  }

  sayRules(key, vars, tone) {
    setT(this.rulesMsg, key, vars);
    this.rulesMsg.dataset.tone = tone;
    this.rulesMsg.setAttribute('role', tone === 'error' ? 'alert' : 'status');
    this.rulesMsg.hidden = false;
  }

  renderRules(categories, chosen) {
    const on = new Set(Array.isArray(chosen) ? chosen : []);
    // a rule for a category the vocabulary no longer lists stays visible (and can be removed)
    const all = [...categories, ...[...on].filter((c) => !categories.includes(c))];
    this.rulesBoxes.replaceChildren(...all.map((c) => {
      const id = `figures-rule-${c}`;
      return h('div', { class: 'check' },
        h('input', { type: 'checkbox', id, value: c, class: 'figures-rule', checked: on.has(c) }),
        h('label', { for: id, i18n: `category.${c}` }));
    })); // prettier-ignore
    this.rulesSave.disabled = false;
  }

  checkedRules() {
    return [...this.rulesBoxes.querySelectorAll('input.figures-rule')].filter((b) => b.checked).map((b) => b.value);
  }

  async loadRules() {
    try {
      const [vocab, rules] = await Promise.all([loadVocabulary(), api('GET', RULES)]);
      this.rulesLoaded = true;
      this.renderRules(vocab.categories, rules && rules.categories);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'figures.rules.error');
      this.sayRules(key, vars, 'error');
    }
  }

  async saveRules() {
    this.rulesSave.disabled = true;
    try {
      const r = await api('PUT', RULES, { categories: this.checkedRules() });
      const vocab = await loadVocabulary();
      this.renderRules(vocab.categories, r && r.categories);
      this.sayRules('figures.rules.saved', { count: (r && r.categories ? r.categories.length : 0) }, 'ok');
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'figures.rules.error');
      this.sayRules(key, vars, 'error');
    } finally {
      this.rulesSave.disabled = false;
    }
  }

  hide() {}

  destroy() {
    this.out.replaceChildren();
  }

  say(key, vars, tone) {
    setT(this.msg, key, vars);
    this.msg.dataset.tone = tone;
    this.msg.setAttribute('role', tone === 'error' ? 'alert' : 'status');
    this.msg.hidden = false;
  }

  async load() {
    const from = this.from.value;
    const to = this.to.value;
    if (!from || !to || from > to) {
      this.say('figures.bad_period', undefined, 'error');
      return;
    }
    let query = `from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`;
    if (this.serverDefault) query = '';
    this.el.setAttribute('aria-busy', 'true');
    try {
      const r = await api('GET', `${BASE}/figures${query ? `?${query}` : ''}`);
      const period = (r && r.period) || null;
      if (this.serverDefault && period && period.from && period.to) {
        this.from.value = dayIn(period.from, period.timezone);
        this.to.value = dayIn(period.to, period.timezone);
      }
      this.serverDefault = false;
      this.loaded = true;
      this.msg.hidden = true;
      this.render(r || {}, query, Number(this.to.value.slice(0, 4)));
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'figures.error');
      this.say(key, vars, 'error');
    } finally {
      this.el.setAttribute('aria-busy', 'false');
    }
  }

  render(r, query, year) {
    const rows = [{ name: null, f: r.overall || {} }];
    for (const p of Array.isArray(r.platforms) ? r.platforms : []) rows.push({ name: (p.platform && p.platform.name) || '', f: p });
    const cols = ['sent', 'honour_rate', 'partly', 'declined', 'no_response', 'median', 'p90', 'within_24h', 'overdue'];
    const table = h('table', { class: 'figures-table' },
      h('caption', { i18n: 'figures.caption' }),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', i18n: 'figures.col_platform' }),
        ...cols.map((c) => h('th', { scope: 'col', i18n: `figures.col_${c}` })))),
      h('tbody', {}, ...rows.map(({ name, f }) => {
        const n = f.notices || {};
        const t = f.time_to_removal || {};
        const w = f.within_24h || {};
        return h('tr', { class: name === null ? 'figures-overall' : 'figures-platform' },
          name === null ? h('th', { scope: 'row', i18n: 'figures.overall' }) : h('th', { scope: 'row', text: name }),
          h('td', { class: 'figures-sent', text: count(n.sent) }),
          h('td', { class: 'figures-honour', text: pct(f.honour_rate) }),
          h('td', { text: pct(f.partly_honoured_rate) }),
          h('td', { text: pct(f.decline_rate) }),
          h('td', { text: pct(f.no_response_rate) }),
          h('td', { text: hours(t.median_hours) }),
          h('td', { text: hours(t.p90_hours) }),
          h('td', { text: pct(w.share_of_removed) }),
          h('td', { text: count(f.overdue_now) }));
      }))); // prettier-ignore
    const charts = h('div', { class: 'figures-charts' },
      ...CHARTS.map((c) => h('figure', { class: 'figures-chart' },
        h('img', { src: `${BASE}/charts/${c}.svg?${query}`, class: `figures-chart-${c}`, 'i18n-alt': `figures.chart.${c}` }),
        h('figcaption', { i18n: `figures.chart.${c}` })))); // prettier-ignore
    const y = Number.isInteger(year) && year >= 2000 ? year : new Date().getFullYear();
    const lang = currentLang() === 'nl' ? '?lang=nl' : ''; // the page also comes in Dutch
    const report = h('p', { class: 'figures-report' },
      h('span', { i18n: ['figures.report', { year: y }] }), ' ',
      h('a', { href: `${BASE}/report/${y}.html${lang}`, target: '_blank', rel: 'noopener', class: 'figures-report-html', i18n: 'figures.report_html' }), ' · ',
      h('a', { href: `${BASE}/report/${y}.csv`, download: `trusted-flagger-report-${y}.csv`, class: 'figures-report-csv', i18n: 'figures.report_csv' }), ' · ',
      h('a', { href: `${BASE}/report/${y}`, target: '_blank', rel: 'noopener', class: 'figures-report-json', i18n: 'figures.report_json' })); // prettier-ignore
    this.out.replaceChildren(h('div', { class: 'table-wrap' }, table), charts, report);
  }
}
