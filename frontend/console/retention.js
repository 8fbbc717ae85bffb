// Retention (docs/api/retention.md, docs/privacy.md): what of a case is purged when, and the legal
// hold that stops it. Two places: the case pane's "Retention" tab (the schedule; supervisors
// place and lift the hold, with a reason), and the "Retention" view (the purges of the coming
// week, each case opening in a pane; admins also see the purge runs and run the purge now, a
// dry run first showing what would go). Dates, kinds and counts only: no personal data here
// except the hold's reason, which the API shows to whoever may see the case.
import { api, ApiError } from './api.js';
import { setT, has, currentLang } from './strings.js';
import { $, h, confirmDialog } from './dom.js';
import { errorKey, formDialog } from './dialogs.js';

const DAYS = 7; // "a week ahead"
const MAX_REASON = 2000;
const COUNT_KEYS = ['cases', 'messages', 'evidence_items', 'blobs', 'callbacks', 'notices', 'handovers', 'keys', 'audit_lines'];
const DAY_MS = 86400000;
let counter = 0;

function locale() {
  return currentLang() === 'en' ? 'en-GB' : 'nl-NL';
}

/** A date with its year (retention dates lie months ahead); the time only where it matters. */
function dateNode(iso, withTime = false) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return h('span', { i18n: 'retention.never' });
  const opts = { day: 'numeric', month: 'short', year: 'numeric' };
  if (withTime) Object.assign(opts, { hour: '2-digit', minute: '2-digit' });
  return h('time', { datetime: iso, text: new Intl.DateTimeFormat(locale(), opts).format(d) });
}

/** "in 3 days", "today", "overdue" for a moment relative to `now` (the server's, where known). */
function dueNode(iso, now) {
  const at = new Date(iso).getTime();
  if (Number.isNaN(at)) return null;
  const days = Math.ceil((at - now) / DAY_MS);
  if (at <= now) return h('span', { class: 'rt-due rt-overdue', 'data-due': 'overdue', i18n: 'retention.overdue' });
  if (days <= 1) return h('span', { class: 'rt-due', 'data-due': 'soon', i18n: 'retention.within_day' });
  return h('span', { class: 'rt-due', 'data-due': 'later', i18n: ['retention.in_days', { n: days }] });
}

function kindLabel(kind) {
  const key = `retention.kind.${kind}`;
  return has(key) ? h('span', { class: 'rt-kind', 'data-kind': kind, i18n: key }) : h('span', { class: 'rt-kind', 'data-kind': kind, text: kind });
}

function statusLabel(prefix, status) {
  const key = `${prefix}.${status}`;
  return has(key) ? h('span', { i18n: key }) : h('span', { text: String(status ?? '') });
}

function countsList(counts) {
  const c = counts && typeof counts === 'object' ? counts : {};
  const dl = h('dl', { class: 'rt-counts' });
  for (const k of COUNT_KEYS) {
    dl.append(h('div', { class: 'rt-count', 'data-count': k },
      h('dt', { i18n: `retention.count.${k}` }), h('dd', { text: String(Number(c[k]) || 0) }))); // prettier-ignore
  }
  return dl;
}

function say(el, key, vars, tone) {
  setT(el, key, vars);
  el.dataset.tone = tone;
  el.setAttribute('role', tone === 'error' ? 'alert' : 'status');
  el.hidden = false;
}

// --- the case pane's tab -------------------------------------------------------------------

export class RetentionPanel {
  /** pane: the ChatPane; hooks: { onSessionLost() } */
  constructor({ pane, hooks }) {
    this.pane = pane;
    this.hooks = hooks;
    this.url = `${pane.base}/retention`;
    const n = ++counter;
    this.idBase = `rt-${n}`;
    this.msg = h('p', { class: 'panel-msg rt-msg', role: 'status', hidden: true });
    this.out = h('div', { class: 'rt-out' });
    this.el = h('div', { class: 'rt-panel', 'aria-busy': 'false' },
      h('h3', { class: 'rt-title', id: `${this.idBase}-title`, i18n: 'retention.case_title' }),
      h('p', { class: 'help rt-intro', i18n: 'retention.case_intro' }), this.msg, this.out); // prettier-ignore
  }

  fail(e, prefix = 'retention.error') {
    if (e instanceof ApiError && e.status === 401) {
      this.hooks.onSessionLost();
      return;
    }
    const [key, vars] = errorKey(e, prefix);
    say(this.msg, key, vars, 'error');
  }

  async load() {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    this.el.setAttribute('aria-busy', 'true');
    try {
      const r = await api('GET', this.url);
      this.data = r && typeof r === 'object' ? r : {};
      if (this.msg.dataset.tone === 'error') this.msg.hidden = true;
      this.render();
    } catch (e) {
      this.fail(e);
    } finally {
      this.loading = false;
      this.el.setAttribute('aria-busy', 'false');
      if (this.again) {
        this.again = false;
        this.load();
      }
    }
  }

  render() {
    const d = this.data || {};
    const now = Date.now();
    const held = Boolean(d.hold);
    const from = d.counted_from === 'closure' ? 'retention.counted_from_closure' : 'retention.counted_from_activity';
    const rows = (Array.isArray(d.schedule) ? d.schedule : []).filter((s) => s && s.kind);
    const table = h('table', { class: 'rt-schedule' },
      h('caption', { i18n: 'retention.schedule_caption' }),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', i18n: 'retention.col_what' }), h('th', { scope: 'col', i18n: 'retention.col_when' }))),
      h('tbody', {}, ...rows.map((s) => h('tr', { 'data-kind': s.kind, 'data-has-data': s.has_data ? 'yes' : 'no' },
        h('th', { scope: 'row' }, kindLabel(s.kind)),
        h('td', {}, dateNode(s.at), ' ',
          s.has_data ? (held ? h('span', { class: 'rt-held', i18n: 'retention.held_short' }) : dueNode(s.at, now))
            : h('span', { class: 'muted', i18n: 'retention.nothing_held' })))))); // prettier-ignore
    const extra = [];
    const notices = Array.isArray(d.notices) ? d.notices : [];
    const handovers = Array.isArray(d.handovers) ? d.handovers : [];
    if (notices.length || handovers.length) {
      extra.push(h('ul', { class: 'rt-own-clocks' },
        ...notices.map((x) => h('li', { 'data-kind': 'notice' }, kindLabel('notice'), ' ',
          h('span', { class: 'ref', translate: 'no', text: x.reference || '' }), ' (', statusLabel('notice.status', x.status), ') \u00b7 ', dateNode(x.at))),
        ...handovers.map((x) => h('li', { 'data-kind': 'handover' }, kindLabel('handover'), ' ',
          h('span', { class: 'ref', translate: 'no', text: x.reference || '' }), ' (', statusLabel('partner_handover.status', x.status), ') \u00b7 ',
          dateNode(x.at))))); // prettier-ignore
    }
    this.out.replaceChildren(
      h('p', { class: 'rt-from' }, h('span', { i18n: from }), ' ', dateNode(d.closure, true)),
      h('div', { class: 'table-wrap' }, table),
      ...extra,
      this.holdNode(d.hold)); // prettier-ignore
  }

  holdNode(hold) {
    const supervisor = this.pane.supervisor;
    const box = h('section', { class: 'rt-hold', 'data-hold': hold ? 'on' : 'off', 'aria-labelledby': `${this.idBase}-hold` },
      h('h4', { id: `${this.idBase}-hold`, i18n: 'retention.hold_title' }),
      h('p', { class: 'help', id: `${this.idBase}-hold-help`, i18n: 'retention.hold_explain' })); // prettier-ignore
    if (hold) {
      const who = hold.placed_by && hold.placed_by.name ? h('span', { text: hold.placed_by.name }) : h('span', { i18n: 'retention.someone' });
      box.append(h('p', { class: 'rt-hold-state' }, h('strong', { i18n: 'retention.on_hold' }), ' \u00b7 ', who, ' \u00b7 ', dateNode(hold.placed_at, true)),
        h('p', { class: 'rt-hold-reason' }, h('span', { class: 'muted', i18n: 'retention.reason' }), ' ',
          h('span', { dir: 'auto', text: String(hold.reason || '') }))); // prettier-ignore
      if (supervisor) {
        box.append(h('button', { type: 'button', class: 'btn btn-quiet-danger rt-lift', i18n: 'retention.lift',
          'aria-describedby': `${this.idBase}-hold-help`, onclick: (e) => this.lift(e.currentTarget) })); // prettier-ignore
      }
    } else {
      box.append(h('p', { class: 'rt-hold-state', i18n: 'retention.no_hold' }));
      if (supervisor) {
        box.append(h('button', { type: 'button', class: 'btn rt-place', i18n: 'retention.place',
          'aria-describedby': `${this.idBase}-hold-help`, onclick: () => this.place() })); // prettier-ignore
      }
    }
    if (!supervisor) box.append(h('p', { class: 'muted', i18n: 'retention.hold_supervisors' }));
    return box;
  }

  async place() {
    const ref = { ref: this.pane.reference };
    const done = await formDialog({
      title: 'retention.place_title',
      titleVars: ref,
      intro: 'retention.place_intro',
      submitLabel: 'retention.place_submit',
      onSessionLost: () => this.hooks.onSessionLost(),
      fields(body, id) {
        const reason = h('textarea', { id: `${id}-reason`, class: 'rt-reason', rows: '3', maxlength: String(MAX_REASON), required: true,
          'aria-describedby': `${id}-reason-help` }); // prettier-ignore
        body.append(h('div', { class: 'field' }, h('label', { for: `${id}-reason`, i18n: 'retention.reason_label' }), reason,
          h('p', { class: 'help', id: `${id}-reason-help`, i18n: 'retention.reason_help' }))); // prettier-ignore
        return () => {
          const text = reason.value.trim();
          if (!text) {
            reason.focus();
            throw ['retention.reason_missing', undefined];
          }
          return text;
        };
      },
      submit: async (reason) => {
        try {
          return await api('POST', `${this.pane.base}/legal-hold`, { reason });
        } catch (e) {
          if (e instanceof ApiError && e.status === 401) throw e;
          throw errorKey(e, 'retention.error');
        }
      },
    });
    if (!done) return;
    say(this.msg, 'retention.placed_ok', ref, 'ok');
    await this.load();
    const lift = this.el.querySelector('.rt-lift');
    if (lift) lift.focus();
  }

  async lift(btn) {
    const ref = { ref: this.pane.reference };
    const ok = await confirmDialog({ title: 'retention.lift_title', text: 'retention.lift_text', yes: 'retention.lift_yes', vars: ref });
    if (!ok) return;
    btn.disabled = true;
    try {
      await api('DELETE', `${this.pane.base}/legal-hold`);
      say(this.msg, 'retention.lifted_ok', ref, 'ok');
      await this.load();
      const place = this.el.querySelector('.rt-place');
      if (place) place.focus();
    } catch (e) {
      this.fail(e);
    } finally {
      if (btn.isConnected) btn.disabled = false;
    }
  }
}

// --- the view: upcoming purges, and for admins the purge runs --------------------------------

export class RetentionView {
  /** hooks: { onSessionLost(), onOpenCase(caseId) } */
  constructor({ me, hooks }) {
    this.me = me;
    this.hooks = hooks;
    this.admin = me.role === 'admin';
    this.el = $('#view-retention');
    this.msg = $('#retention-msg');
    this.list = $('#retention-list');
    this.empty = $('#retention-empty');
    this.range = $('#retention-range');
    this.notices = $('#retention-notices');
    this.runsBox = $('#retention-runs');
    $('#retention-refresh').onclick = () => this.load();
    if (this.admin) this.buildRuns();
  }

  show() {
    this.visible = true;
    this.load();
    if (this.admin) this.loadRuns();
  }

  hide() {
    this.visible = false;
  }

  destroy() {
    this.hide();
    this.list.replaceChildren();
    this.notices.replaceChildren();
    this.notices.hidden = true;
    this.runsBox.replaceChildren();
    this.runsBox.hidden = true;
    this.msg.hidden = true;
  }

  fail(e, el, prefix = 'retention.error') {
    if (e instanceof ApiError && e.status === 401) {
      this.hooks.onSessionLost();
      return;
    }
    const [key, vars] = errorKey(e, prefix);
    say(el, key, vars, 'error');
  }

  async load() {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    this.el.setAttribute('aria-busy', 'true');
    try {
      const r = await api('GET', `/api/staff/retention/upcoming?days=${DAYS}`);
      if (this.msg.dataset.tone === 'error') this.msg.hidden = true;
      this.render(r && typeof r === 'object' ? r : {});
    } catch (e) {
      this.fail(e, this.msg);
    } finally {
      this.loading = false;
      this.el.setAttribute('aria-busy', 'false');
      if (this.again) {
        this.again = false;
        this.load();
      }
    }
  }

  render(r) {
    const now = new Date(r.now || Date.now()).getTime();
    setT(this.range, this.me.role === 'agent' ? 'retention.range_mine' : 'retention.range_all', { n: Number(r.days) || DAYS });
    const cases = (Array.isArray(r.cases) ? r.cases : []).filter((c) => c && typeof c.case_id === 'string');
    this.list.replaceChildren(...cases.map((c) => this.caseRow(c, now)));
    this.empty.hidden = cases.length > 0;
    const notices = (Array.isArray(r.notices) ? r.notices : []).filter((x) => x && x.reference);
    this.notices.hidden = notices.length === 0;
    this.notices.replaceChildren(h('h2', { id: 'retention-notices-title', i18n: 'retention.notices_title' }),
      h('ul', { class: 'rt-notice-list', 'aria-labelledby': 'retention-notices-title' },
        ...notices.map((x) => h('li', { 'data-reference': x.reference },
          h('span', { class: 'ref', translate: 'no', text: x.reference }), ' (', statusLabel('notice.status', x.status), ') \u00b7 ',
          dateNode(x.at), ' ', dueNode(x.at, now))))); // prettier-ignore
  }

  caseRow(c, now) {
    const ref = { ref: c.reference || '' };
    const purges = (Array.isArray(c.purges) ? c.purges : []).filter((p) => p && p.kind);
    const what = h('ul', { class: 'rt-purges' },
      ...purges.map((p) => h('li', { 'data-kind': p.kind }, kindLabel(p.kind),
        p.reference ? [' ', h('span', { class: 'ref', translate: 'no', text: p.reference })] : null, ' \u00b7 ', dateNode(p.at), ' ',
        c.on_hold ? null : dueNode(p.at, now)))); // prettier-ignore
    return h('tr', { class: 'rt-case', 'data-case-id': c.case_id, 'data-reference': c.reference || '', 'data-hold': c.on_hold ? 'on' : 'off' },
      h('th', { scope: 'row' },
        h('button', { type: 'button', class: 'btn btn-link rt-open', 'i18n-aria-label': ['retention.open_case', ref],
          onclick: () => this.hooks.onOpenCase(c.case_id) }, h('span', { class: 'ref', text: c.reference || '' })), ' ',
        statusLabel('status', c.status)),
      h('td', {}, what),
      h('td', { class: 'rt-hold-cell' }, c.on_hold
        ? h('span', { class: 'rt-held badge', i18n: 'retention.on_hold' })
        : h('span', { class: 'muted', i18n: 'retention.not_held' }))); // prettier-ignore
  }

  // --- purge runs (admins) -----------------------------------------------------------------

  buildRuns() {
    this.runsMsg = h('p', { class: 'panel-msg', id: 'retention-runs-msg', role: 'status', hidden: true });
    this.runBtn = h('button', { type: 'button', id: 'retention-run', class: 'btn btn-primary', i18n: 'retention.run_now',
      'aria-describedby': 'retention-runs-help', onclick: () => this.runNow() }); // prettier-ignore
    this.resultEl = h('div', { id: 'retention-result', class: 'rt-result', 'aria-live': 'polite', hidden: true });
    this.runsBody = h('tbody', { id: 'retention-runs-list' });
    this.runsEmpty = h('p', { class: 'empty', i18n: 'retention.runs_empty', hidden: true });
    this.runsBox.replaceChildren(
      h('div', { class: 'view-head' }, h('h2', { id: 'retention-runs-title', i18n: 'retention.runs_title' }), this.runBtn),
      h('p', { class: 'help', id: 'retention-runs-help', i18n: 'retention.runs_help' }),
      this.runsMsg, this.resultEl,
      h('div', { class: 'table-wrap' }, h('table', { class: 'rt-runs' },
        h('caption', { i18n: 'retention.runs_caption' }),
        h('thead', {}, h('tr', {}, ...['started', 'trigger', 'status', 'counts'].map((c) => h('th', { scope: 'col', i18n: `retention.runs_col_${c}` })))),
        this.runsBody)),
      this.runsEmpty); // prettier-ignore
    this.runsBox.hidden = false;
  }

  async loadRuns() {
    try {
      const r = await api('GET', '/api/staff/retention/runs');
      const runs = (Array.isArray(r && r.runs) ? r.runs : []).filter((x) => x && typeof x.id === 'string');
      this.runsBody.replaceChildren(...runs.map((run) => this.runRow(run)));
      this.runsEmpty.hidden = runs.length > 0;
    } catch (e) {
      this.fail(e, this.runsMsg);
    }
  }

  runRow(run) {
    const c = run.counts && typeof run.counts === 'object' ? run.counts : {};
    const nonzero = COUNT_KEYS.filter((k) => Number(c[k]) > 0);
    return h('tr', { class: 'rt-run', 'data-run-id': run.id, 'data-dry-run': run.dry_run ? 'yes' : 'no', 'data-status': run.status || '' },
      h('td', {}, dateNode(run.started_at, true)),
      h('td', {}, statusLabel('retention.trigger', run.trigger), run.dry_run ? [' \u00b7 ', h('span', { i18n: 'retention.dry_run' })] : null),
      h('td', {}, statusLabel('retention.run_status', run.status), run.error ? [' ', h('code', { text: String(run.error) })] : null),
      h('td', {}, nonzero.length
        ? h('span', {}, ...nonzero.flatMap((k, i) => [i ? ', ' : null, h('span', { 'data-count': k, i18n: [`retention.count_n.${k}`, { n: Number(c[k]) }] })]))
        : h('span', { class: 'muted', i18n: 'retention.nothing_removed' }))); // prettier-ignore
  }

  showResult(titleKey, run) {
    this.resultEl.replaceChildren(h('h3', { i18n: titleKey }), countsList(run && run.counts));
    this.resultEl.dataset.dryRun = run && run.dry_run ? 'yes' : 'no';
    this.resultEl.hidden = false;
  }

  /** A dry run first: what would go is shown, and only then asked whether to purge for real. */
  async runNow() {
    this.runBtn.disabled = true;
    this.runsBox.setAttribute('aria-busy', 'true');
    this.runsMsg.hidden = true;
    try {
      say(this.runsMsg, 'retention.dry_running', undefined, 'info');
      const dry = await api('POST', '/api/staff/retention/purge', { dry_run: true });
      this.showResult('retention.dry_result', dry);
      this.runsMsg.hidden = true;
      await this.loadRuns();
      const c = (dry && dry.counts) || {};
      if (!COUNT_KEYS.some((k) => Number(c[k]) > 0)) {
        say(this.runsMsg, 'retention.nothing_due', undefined, 'ok');
        return;
      }
      const ok = await confirmDialog({ title: 'retention.run_title', text: 'retention.run_text', yes: 'retention.run_yes',
        vars: { cases: Number(c.cases) || 0, messages: Number(c.messages) || 0, evidence: Number(c.evidence_items) || 0 } }); // prettier-ignore
      if (!ok) {
        say(this.runsMsg, 'retention.run_cancelled', undefined, 'info');
        return;
      }
      say(this.runsMsg, 'retention.running', undefined, 'info');
      const run = await api('POST', '/api/staff/retention/purge', { dry_run: false });
      this.showResult('retention.run_result', run);
      const failed = run && run.status === 'failed';
      say(this.runsMsg, failed ? 'retention.run_failed' : 'retention.run_done', { error: (run && run.error) || '' }, failed ? 'error' : 'ok');
      await Promise.all([this.loadRuns(), this.load()]);
    } catch (e) {
      this.fail(e, this.runsMsg);
    } finally {
      this.runBtn.disabled = false;
      this.runsBox.setAttribute('aria-busy', 'false');
    }
  }
}
