// The takedown engine in the console (docs/api/takedown.md): a case's removal requests (DSA
// notices) in the pane's "Notices" tab, with their state and clock, the builder, a preview (as
// text and JSON, never as live HTML), sending, four-eyes approval, withdrawal, the web-form text
// to paste, outcomes recorded by hand and the escalation steps; and the "Notices" view of every
// notice, sorted by what is overdue. Everything shown goes in as text.
import { api, ApiError } from './api.js';
import { setT, has } from './strings.js';
import { $, h, formatClock, durationKey, confirmDialog } from './dom.js';
import { errorKey } from './dialogs.js';

const WAITING_ON_PLATFORM = new Set(['sent', 'receipt_confirmed', 'no_response', 'more_info_requested']);
const DECIDED = new Set(['honoured', 'partly_honoured', 'declined', 'withdrawn']);
const OUTCOMES = ['honoured', 'partly_honoured', 'declined'];
const ESCALATION_STEPS = ['escalation_contact', 'internal_complaint', 'dsc_complaint'];
const MAX_URLS = 50;
// confirming an e-mail reply with the decision it states (the answer shape, docs/api/platform.md)
const REPLY_DECISIONS = ['removed', 'access_disabled', 'declined'];
const DECISION_GROUNDS = ['DECISION_GROUND_ILLEGAL_CONTENT', 'DECISION_GROUND_INCOMPATIBLE_CONTENT'];
const AUTOMATED = ['AUTOMATED_DECISION_NOT_AUTOMATED', 'AUTOMATED_DECISION_PARTIALLY', 'AUTOMATED_DECISION_FULLY'];
const DECLINE_REASONS = ['not_illegal', 'not_against_terms', 'content_not_found', 'not_our_service', 'insufficient_information', 'other'];
let counter = 0;

// --- shared pieces ---------------------------------------------------------------------------

let vocabCache = null;

/** GET /api/staff/takedown/vocabulary, once per page. */
export async function takedownVocabulary() {
  if (!vocabCache) {
    vocabCache = api('GET', '/api/staff/takedown/vocabulary').catch((e) => {
      vocabCache = null;
      throw e;
    });
  }
  return vocabCache;
}

function label(prefix, code) {
  const key = `${prefix}.${code}`;
  return has(key) ? h('span', { i18n: key }) : h('span', { text: String(code || '') });
}

export function statusBadge(status) {
  return h('span', { class: `notice-status notice-status-${status}`, 'data-status': status },
    label('notice.status', status)); // prettier-ignore
}

/** The clock of a notice: due time, time left or how long overdue. */
export function clockNode(notice) {
  const c = (notice && notice.clock) || {};
  const due = c.due_at || notice.due_at;
  const el = h('span', { class: 'notice-clock', 'data-overdue': c.overdue ? 'yes' : 'no' });
  if (!due) {
    el.append(h('span', { class: 'muted', i18n: 'notice.clock.none' }));
    return el;
  }
  const seconds = Number(c.seconds_left);
  const [dk, dv] = durationKey(Math.abs(Number.isFinite(seconds) ? seconds : 0) * 1000);
  el.append(h('time', { datetime: due, i18n: ['notice.clock.due', { when: formatClock(due) }] }), ' ');
  if (c.overdue) el.append(h('strong', { class: 'notice-overdue' }, h('span', { i18n: 'notice.clock.overdue' }), ' ', h('span', { i18n: [dk, dv] })));
  else if (c.running) el.append(h('span', { class: 'notice-left' }, h('span', { i18n: [dk, dv] }), ' ', h('span', { i18n: 'notice.clock.left' })));
  return el;
}

function urlStatusesNode(counts) {
  const ul = h('ul', { class: 'notice-url-counts', 'i18n-aria-label': 'notice.url_counts' });
  for (const [status, n] of Object.entries(counts || {})) {
    ul.append(h('li', { 'data-status': status }, label('notice.status', status), ` ${n}`));
  }
  return ul;
}

// --- one notice in full ------------------------------------------------------------------------

/**
 * One notice with its actions (GET /api/staff/notices/{id}); used in the case's tab and in the
 * notices view. hooks: { onSessionLost(), onChanged(notice) }.
 */
export class NoticeDetail {
  constructor({ id, me, hooks }) {
    this.id = id;
    this.me = me;
    this.hooks = hooks;
    this.base = `/api/staff/notices/${encodeURIComponent(id)}`;
    this.msg = h('p', { class: 'notice-msg', role: 'status', hidden: true });
    this.body = h('div', { class: 'notice-detail-body' });
    this.previewEl = h('div', { class: 'notice-preview', hidden: true });
    this.el = h('div', { class: 'notice-detail', 'data-notice-id': id, 'aria-busy': 'true' }, this.msg, this.body, this.previewEl);
  }

  say(key, vars, tone) {
    setT(this.msg, key, vars);
    this.msg.dataset.tone = tone;
    this.msg.setAttribute('role', tone === 'error' ? 'alert' : 'status');
    this.msg.hidden = false;
  }

  fail(e) {
    if (e instanceof ApiError && e.status === 401) {
      this.hooks.onSessionLost();
      return;
    }
    const [key, vars] = errorKey(e, 'notice.error');
    this.say(key, vars, 'error');
  }

  async load() {
    this.el.setAttribute('aria-busy', 'true');
    try {
      const n = await api('GET', this.base);
      // the platform's replies (e-mail, questions) and the portal links: shown when they come
      const [replies, links] = await Promise.all([
        api('GET', `${this.base}/replies`).catch(() => null),
        api('GET', `${this.base}/portal-links`).catch(() => null),
      ]);
      this.replies = Array.isArray(replies && replies.replies) ? replies.replies : [];
      this.links = Array.isArray(links && links.links) ? links.links : [];
      if (n && typeof n === 'object') this.render(n);
    } catch (e) {
      this.fail(e);
    } finally {
      this.el.setAttribute('aria-busy', 'false');
    }
  }

  /** POST an action; the answer is the notice. */
  async act(path, body, btn, okKey) {
    if (btn) btn.disabled = true;
    try {
      const n = await api('POST', `${this.base}${path}`, body);
      if (okKey) this.say(okKey, undefined, 'ok');
      if (n && typeof n === 'object' && n.id === this.id) this.render(n);
      else this.load();
      this.hooks.onChanged(n);
      return n;
    } catch (e) {
      this.fail(e);
      return null;
    } finally {
      if (btn && btn.isConnected) btn.disabled = false;
    }
  }

  render(n) {
    this.notice = n;
    const focusedClass = document.activeElement && this.body.contains(document.activeElement) ? document.activeElement.className : null;
    const mine = n.created_by && n.created_by.id === this.me.id;
    const facts = h('dl', { class: 'notice-facts' },
      h('dt', { i18n: 'notice.platform' }), h('dd', { class: 'notice-platform', text: (n.platform && n.platform.name) || '' }),
      h('dt', { i18n: 'notice.status_label' }), h('dd', {}, statusBadge(n.status)),
      h('dt', { i18n: 'notice.clock_label' }), h('dd', {}, clockNode(n)),
      h('dt', { i18n: 'notice.category' }), h('dd', {}, label('category', n.category)),
      h('dt', { i18n: 'notice.legal_basis' }), h('dd', { text: n.legal_basis || '' }),
      h('dt', { i18n: 'notice.language' }), h('dd', {}, label('notice.lang', n.language)),
      h('dt', { i18n: 'notice.delivery' }), h('dd', {}, label('platform.delivery', n.delivery)),
      h('dt', { i18n: 'notice.notifier' }), h('dd', { i18n: n.notifier_included ? 'notice.notifier_yes' : 'notice.notifier_omitted' }),
      h('dt', { i18n: 'notice.created_by' }), h('dd', { text: (n.created_by && n.created_by.name) || '' }),
      n.approval && n.approval.required ? h('dt', { i18n: 'notice.approval' }) : null,
      n.approval && n.approval.required
        ? h('dd', n.approval.approved_by ? { text: n.approval.approved_by.name || '' } : { i18n: 'notice.approval_needed' })
        : null); // prettier-ignore

    const actions = h('div', { class: 'notice-actions', role: 'group', 'i18n-aria-label': ['notice.actions', { ref: n.reference }] });
    const btn = (cls, key, fn) => {
      const b = h('button', { type: 'button', class: `btn ${cls}`, i18n: key });
      b.addEventListener('click', () => fn(b));
      actions.append(b);
      return b;
    };
    btn('notice-preview-btn', 'notice.preview', (b) => this.preview(b));
    if (n.status === 'draft') btn('btn-primary notice-send', 'notice.send', (b) => this.act('/send', undefined, b, 'notice.sent_ok'));
    if (n.status === 'awaiting_approval') {
      if (!mine) btn('btn-primary notice-approve', 'notice.approve', (b) => this.act('/approve', undefined, b, 'notice.approved_ok'));
      btn('notice-reject', 'notice.reject', (b) => this.act('/reject', undefined, b, 'notice.rejected_ok'));
    }
    if (n.status === 'queued' && n.delivery === 'web_form') {
      btn('btn-primary notice-submitted', 'notice.submitted', (b) => this.act('/submitted', undefined, b, 'notice.submitted_ok'));
    }
    if (n.status === 'sent') btn('notice-receipt', 'notice.receipt', (b) => this.act('/receipt', undefined, b, 'notice.receipt_ok'));
    if (WAITING_ON_PLATFORM.has(n.status) || n.status === 'queued') {
      btn('notice-portal-link', 'notice.portal_link', (b) => this.portalLink(b));
    }
    if (WAITING_ON_PLATFORM.has(n.status) || n.status === 'declined' || n.status === 'partly_honoured') {
      btn('notice-recheck', 'notice.recheck', (b) => this.act('/recheck', undefined, b, 'notice.recheck_ok'));
    }
    if (!DECIDED.has(n.status)) btn('btn-quiet-danger notice-withdraw', 'notice.withdraw', (b) => this.withdraw(b));

    const parts = [facts, actions];
    this.linkEl = this.linkEl || h('p', { class: 'notice-link', hidden: true });
    parts.push(this.linkEl);
    if (n.web_form) parts.push(this.webForm(n.web_form));
    parts.push(this.urlList(n));
    parts.push(this.repliesNode());
    parts.push(this.escalations(n));
    parts.push(this.linksNode());
    parts.push(this.history(n));
    const wasOpen = new Set([...this.body.querySelectorAll('details[open][data-key]')].map((d) => d.dataset.key));
    this.body.replaceChildren(...parts);
    for (const d of this.body.querySelectorAll('details[data-key]')) if (wasOpen.has(d.dataset.key)) d.open = true;
    if (focusedClass) {
      const again = [...this.body.querySelectorAll('button')].find((b) => b.className === focusedClass);
      if (again) again.focus();
    }
  }

  webForm(wf) {
    const n = ++counter;
    const area = h('textarea', { id: `notice-wf-${n}`, class: 'notice-webform-text', readonly: true, rows: '10' });
    area.value = String(wf.text || '');
    const copy = h('button', { type: 'button', class: 'btn notice-copy', i18n: 'notice.copy' });
    copy.addEventListener('click', async () => {
      area.select();
      try {
        await navigator.clipboard.writeText(area.value);
        this.say('notice.copied', undefined, 'ok');
      } catch {
        this.say('notice.copy_failed', undefined, 'error');
      }
    });
    return h('div', { class: 'notice-webform' },
      h('h4', { i18n: 'notice.webform_title' }),
      h('p', { class: 'help', i18n: 'notice.webform_help' }),
      wf.url ? h('p', {}, h('a', { href: String(wf.url), target: '_blank', rel: 'noopener noreferrer', translate: 'no', text: String(wf.url) })) : null,
      h('label', { for: `notice-wf-${n}`, i18n: 'notice.webform_label' }), area, copy); // prettier-ignore
  }

  urlList(n) {
    const ul = h('ul', { class: 'notice-urls' });
    const open = WAITING_ON_PLATFORM.has(n.status) || n.status === 'partly_honoured' || n.status === 'declined';
    for (const u of Array.isArray(n.urls) ? n.urls : []) {
      const li = h('li', { class: 'notice-url', 'data-url-id': u.id, 'data-status': u.status },
        h('p', { class: 'notice-url-text', dir: 'ltr', translate: 'no', text: String(u.url || '') }),
        h('p', {}, statusBadge(u.status))); // prettier-ignore
      const a = u.answer;
      if (a) {
        li.append(h('p', { class: 'notice-answer' },
          h('span', { i18n: ['notice.answered', { when: formatClock(a.answered_at), via: a.answered_via || '' }] }),
          a.decision_visibility ? ` · ${a.decision_visibility}` : '',
          a.explanation ? h('span', { class: 'notice-answer-text', dir: 'auto', text: ` · ${a.explanation}` }) : null)); // prettier-ignore
      }
      if (u.recheck) {
        const r = u.recheck;
        li.append(h('p', { class: 'notice-recheck-result', 'data-suggests-removal': r.suggests_removal ? 'yes' : 'no',
          i18n: [r.suggests_removal ? 'notice.recheck_gone' : 'notice.recheck_seen', { status: r.status || r.error || '?', when: formatClock(r.at) }] })); // prettier-ignore
      }
      if (open && !DECIDED.has(u.status)) li.append(this.outcomeForm(u));
      ul.append(li);
    }
    return h('div', { class: 'notice-urls-wrap' }, h('h4', { i18n: 'notice.urls' }), ul);
  }

  outcomeForm(u) {
    const n = ++counter;
    const sel = h('select', { id: `notice-oc-${n}`, class: 'notice-outcome-status' },
      ...OUTCOMES.map((s) => h('option', { value: s, i18n: `notice.status.${s}` }))); // prettier-ignore
    const text = h('input', { type: 'text', id: `notice-oe-${n}`, class: 'notice-outcome-text', maxlength: '2000' });
    const submit = h('button', { type: 'submit', class: 'btn notice-outcome-save', i18n: 'notice.outcome_save' });
    const form = h('form', { class: 'notice-outcome', novalidate: true },
      h('label', { for: `notice-oc-${n}`, i18n: 'notice.outcome_label' }), sel,
      h('label', { for: `notice-oe-${n}`, i18n: 'notice.outcome_explanation' }), text, submit); // prettier-ignore
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const body = { status: sel.value };
      if (text.value.trim()) body.explanation = text.value.trim();
      this.act(`/urls/${encodeURIComponent(u.id)}/outcome`, body, submit, 'notice.outcome_ok');
    });
    return h('details', { class: 'notice-outcome-box', 'data-key': `outcome-${u.id}` }, h('summary', { i18n: 'notice.outcome_title' }), form);
  }

  escalations(n) {
    const list = Array.isArray(n.escalations) ? n.escalations : [];
    const wrap = h('div', { class: 'notice-escalations' }, h('h4', { i18n: 'notice.escalations' }));
    if (!list.length) wrap.append(h('p', { class: 'muted', i18n: 'notice.escalations_none' }));
    const taken = new Set(list.map((s) => s.step));
    const open = ESCALATION_STEPS.filter((s) => !taken.has(s));
    if (open.length && (WAITING_ON_PLATFORM.has(n.status) || n.status === 'declined' || n.status === 'partly_honoured')) {
      const cid = `notice-esc-${++counter}`;
      const sel = h('select', { id: cid, class: 'notice-escalation-step' },
        ...open.map((s) => h('option', { value: s, i18n: `notice.step.${s}` }))); // prettier-ignore
      const draft = h('button', { type: 'button', class: 'btn notice-escalation-draft', i18n: 'notice.escalation_draft' });
      draft.addEventListener('click', () => this.act('/escalations', { step: sel.value }, draft, 'notice.escalation_drafted'));
      wrap.append(h('div', { class: 'notice-outcome' }, h('label', { for: cid, i18n: 'notice.escalation_step' }), sel, draft));
    }
    for (const step of list) {
      const item = h('div', { class: 'notice-escalation', 'data-step': step.step, 'data-status': step.status },
        h('p', {}, h('strong', {}, label('notice.step', step.step)), ' · ', label('notice.escalation_status', step.status),
          step.recipient ? h('span', { translate: 'no', text: ` · ${step.recipient}` }) : null)); // prettier-ignore
      if (typeof step.text === 'string') {
        item.append(h('pre', { class: 'notice-escalation-text', dir: 'auto', text: step.text }));
      } else if (step.dossier) {
        item.append(h('pre', { class: 'notice-escalation-text', text: JSON.stringify(step.dossier, null, 2) }));
      }
      if (step.status === 'drafted') {
        const approve = h('button', { type: 'button', class: 'btn btn-primary notice-escalation-approve', i18n: 'notice.escalation_approve' });
        const dismiss = h('button', { type: 'button', class: 'btn notice-escalation-dismiss', i18n: 'notice.escalation_dismiss' });
        const path = `/escalations/${encodeURIComponent(step.step)}`;
        approve.addEventListener('click', () => this.act(`${path}/approve`, {}, approve, 'notice.escalation_approved'));
        dismiss.addEventListener('click', () => this.act(`${path}/dismiss`, undefined, dismiss, 'notice.escalation_dismissed'));
        item.append(h('div', { class: 'notice-actions' }, approve, dismiss));
      }
      wrap.append(item);
    }
    return wrap;
  }

  repliesNode() {
    const list = this.replies || [];
    const wrap = h('div', { class: 'notice-replies' }, h('h4', { i18n: 'notice.replies' }));
    if (!list.length) wrap.append(h('p', { class: 'muted', i18n: 'notice.replies_none' }));
    for (const r of list) {
      const item = h('div', { class: 'notice-reply', 'data-reply-id': r.id || '', 'data-kind': r.kind || '' },
        h('p', {}, h('strong', { i18n: r.kind === 'question' ? 'notice.reply_question' : 'notice.reply_reply' }), ' ',
          h('time', { datetime: r.received_at || '', text: formatClock(r.received_at) }), ` · ${r.via || ''}`),
        h('pre', { class: 'notice-reply-text', dir: 'auto', text: String(r.text || '') })); // prettier-ignore
      if (r.confirmed_at) item.append(h('p', { class: 'muted', i18n: ['notice.reply_read', { when: formatClock(r.confirmed_at) }] }));
      else {
        const read = h('button', { type: 'button', class: 'btn notice-reply-read', i18n: 'notice.reply_mark_read' });
        read.addEventListener('click', () => this.act(`/replies/${encodeURIComponent(r.id)}/confirm`, {}, read, 'notice.reply_marked'));
        item.append(read);
        const open = (Array.isArray(this.notice && this.notice.urls) ? this.notice.urls : []).filter((u) => u && !DECIDED.has(u.status));
        if (r.kind === 'reply' && open.length && WAITING_ON_PLATFORM.has(this.notice.status)) item.append(this.replyDecisionForm(r, open));
      }
      wrap.append(item);
    }
    return wrap;
  }

  /** Confirm a reply and apply the decision it states, per URL, as the platform's answer. */
  replyDecisionForm(r, urls) {
    const n = ++counter;
    const errorEl = h('p', { class: 'form-error notice-decide-error', role: 'alert', hidden: true });
    const select = (cls, id, values, prefix, blank) => h('select', { id, class: cls },
      blank ? h('option', { value: '', i18n: blank }) : null,
      ...values.map((v) => h('option', { value: v }, label(prefix, v)))); // prettier-ignore
    const field = (id, key, control) => h('div', { class: 'field' }, h('label', { for: id, i18n: key }), control);
    const rows = urls.map((u, i) => {
      const id = (f) => `notice-rd-${n}-${i}-${f}`;
      const decision = select('notice-decide-decision', id('decision'), REPLY_DECISIONS, 'notice.decide_decision', 'notice.decide_no_decision');
      const ground = select('notice-decide-ground', id('dground'), DECISION_GROUNDS, 'notice.decide_ground');
      const legal = h('input', { type: 'text', id: id('ground'), class: 'notice-decide-legal', maxlength: '500' });
      const puid = h('input', { type: 'text', id: id('puid'), class: 'notice-decide-puid', maxlength: '500', translate: 'no' });
      const scope = h('input', { type: 'text', id: id('scope'), class: 'notice-decide-scope', maxlength: '120', value: 'NL' });
      const reason = select('notice-decide-reason', id('reason'), DECLINE_REASONS, 'notice.decide_reason');
      const automated = select('notice-decide-automated', id('auto'), AUTOMATED, 'notice.decide_automated');
      const explanation = h('textarea', { id: id('expl'), class: 'notice-decide-explanation', rows: '2', maxlength: '2000' });
      const removal = h('div', { class: 'notice-decide-removal', hidden: true },
        field(id('dground'), 'notice.decide_ground_label', ground), field(id('ground'), 'notice.decide_legal_label', legal),
        field(id('scope'), 'notice.decide_scope_label', scope), field(id('puid'), 'notice.decide_puid_label', puid)); // prettier-ignore
      const decline = h('div', { class: 'notice-decide-decline', hidden: true }, field(id('reason'), 'notice.decide_reason_label', reason));
      const common = h('div', { class: 'notice-decide-common', hidden: true },
        field(id('expl'), 'notice.decide_explanation_label', explanation), field(id('auto'), 'notice.decide_automated_label', automated)); // prettier-ignore
      const sync = () => {
        removal.hidden = !['removed', 'access_disabled'].includes(decision.value);
        decline.hidden = decision.value !== 'declined';
        common.hidden = !decision.value;
      };
      decision.addEventListener('change', sync);
      const read = () => {
        const d = decision.value;
        if (!d) return null;
        const answer = { url_id: u.id, decision: d, explanation: explanation.value.trim(), automated_decision: automated.value };
        if (d === 'declined') answer.reason = reason.value;
        else {
          answer.decision_ground = ground.value;
          answer.ground = legal.value.trim();
          answer.puid = puid.value.trim();
          answer.territorial_scope = scope.value.split(/[\s,;]+/).map((c) => c.trim().toUpperCase()).filter(Boolean);
        }
        return answer;
      };
      const box = h('fieldset', { class: 'notice-decide-url', 'data-url-id': u.id },
        h('legend', { dir: 'ltr', translate: 'no', text: String(u.url || '') }),
        field(id('decision'), 'notice.decide_decision_label', decision), removal, decline, common); // prettier-ignore
      return { box, read };
    });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary notice-decide-save', i18n: 'notice.decide_apply' });
    const form = h('form', { class: 'notice-decide', novalidate: true },
      h('p', { class: 'help', i18n: 'notice.decide_help' }), ...rows.map((x) => x.box), errorEl, submit); // prettier-ignore
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      errorEl.hidden = true;
      const answers = rows.map((x) => x.read()).filter(Boolean);
      if (!answers.length) {
        setT(errorEl, 'notice.decide_none');
        errorEl.hidden = false;
        return;
      }
      submit.disabled = true;
      try {
        const done = await api('POST', `${this.base}/replies/${encodeURIComponent(r.id)}/confirm`, { answers });
        this.say('notice.decide_applied', { count: answers.length }, 'ok');
        this.load();
        this.hooks.onChanged(done);
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) {
          this.hooks.onSessionLost();
          return;
        }
        if (err instanceof ApiError && err.status === 422) {
          setT(errorEl, 'notice.decide_invalid', { message: err.message || '' });
          errorEl.hidden = false;
        } else this.fail(err);
      } finally {
        if (submit.isConnected) submit.disabled = false;
      }
    });
    return h('details', { class: 'notice-decide-box', 'data-key': `decide-${r.id}` }, h('summary', { i18n: 'notice.decide_title' }), form);
  }

  linksNode() {
    const list = (this.links || []).filter((l) => l && l.id);
    const ul = h('ul', { class: 'notice-links' });
    for (const l of list) {
      const li = h('li', { 'data-link-id': l.id, 'data-active': l.active ? 'yes' : 'no' },
        h('span', { i18n: [l.active ? 'notice.link_active' : 'notice.link_inactive',
          { made: formatClock(l.created_at), until: formatClock(l.expires_at) }] })); // prettier-ignore
      if (l.active) {
        const revoke = h('button', { type: 'button', class: 'btn btn-link notice-link-revoke', i18n: 'notice.link_revoke' });
        revoke.addEventListener('click', () => this.act(`/portal-links/${encodeURIComponent(l.id)}/revoke`, undefined, revoke, 'notice.link_revoked'));
        li.append(' ', revoke);
      }
      ul.append(li);
    }
    return h('details', { class: 'notice-links-box', 'data-key': 'links' }, h('summary', { i18n: ['notice.links', { n: list.length }] }), ul);
  }

  history(n) {
    const ol = h('ol', { class: 'notice-history' });
    for (const row of Array.isArray(n.history) ? n.history : []) {
      ol.append(h('li', {},
        h('time', { datetime: row.at || '', text: formatClock(row.at) }), ' ',
        row.url ? h('span', { i18n: ['notice.history_url', { n: row.url }] }) : null, row.url ? ' ' : null,
        row.from ? label('notice.status', row.from) : null, row.from ? ' → ' : null,
        label('notice.status', row.to))); // prettier-ignore
    }
    return h('details', { class: 'notice-history-box', 'data-key': 'history' }, h('summary', { i18n: 'notice.history' }), ol);
  }

  async preview(btn) {
    btn.disabled = true;
    try {
      const p = await api('GET', `${this.base}/preview`);
      const mail = (p && p.email) || {};
      this.previewEl.replaceChildren(
        h('h4', { i18n: p && p.signed ? 'notice.preview_signed' : 'notice.preview_unsigned' }),
        h('dl', { class: 'notice-facts' },
          h('dt', { i18n: 'notice.preview_to' }), h('dd', { translate: 'no', text: String(mail.to || '') }),
          h('dt', { i18n: 'notice.preview_subject' }), h('dd', { class: 'notice-preview-subject', text: String(mail.subject || '') })),
        h('pre', { class: 'notice-preview-text', dir: 'auto', text: String(mail.text || '') }),
        h('details', {}, h('summary', { i18n: 'notice.preview_json' }),
          h('pre', { class: 'notice-preview-json', text: JSON.stringify((p && p.document) || {}, null, 2) }))); // prettier-ignore
      this.previewEl.hidden = false;
    } catch (e) {
      this.fail(e);
    } finally {
      if (btn.isConnected) btn.disabled = false;
    }
  }

  async portalLink(btn) {
    btn.disabled = true;
    try {
      const r = await api('POST', `${this.base}/portal-link`);
      this.linkEl.replaceChildren(h('span', { i18n: 'notice.portal_link_once' }), ' ',
        h('code', { class: 'notice-portal-url', translate: 'no', text: String((r && r.url) || '') })); // prettier-ignore
      this.linkEl.hidden = false;
    } catch (e) {
      this.fail(e);
    } finally {
      if (btn.isConnected) btn.disabled = false;
    }
  }

  async withdraw(btn) {
    const ok = await confirmDialog({ title: 'notice.withdraw_title', text: 'notice.withdraw_text', yes: 'notice.withdraw',
      vars: { ref: (this.notice && this.notice.reference) || '' } }); // prettier-ignore
    if (ok) await this.act('/withdraw', undefined, btn, 'notice.withdrawn_ok');
  }
}

// --- a case's notices (the pane's tab) ---------------------------------------------------------

export class NoticesPanel {
  /** pane: the ChatPane; hooks: { onSessionLost() } */
  constructor({ pane, hooks }) {
    this.pane = pane;
    this.hooks = hooks;
    this.url = `/api/staff/cases/${encodeURIComponent(pane.id)}/notices`;
    this.details = new Map(); // notice id -> NoticeDetail (open ones)
    this.msg = h('p', { class: 'notices-msg', role: 'status', hidden: true });
    this.list = h('ul', { class: 'notices-list' });
    this.emptyEl = h('p', { class: 'empty notices-empty', i18n: 'notice.none', hidden: true });
    this.newBtn = h('button', { type: 'button', class: 'btn notice-new', 'aria-expanded': 'false', i18n: 'notice.new',
      onclick: () => this.toggleBuilder() }); // prettier-ignore
    this.builderEl = h('div', { class: 'notice-builder-slot', hidden: true });
    this.el = h('div', { class: 'notices-panel', 'aria-busy': 'false' },
      h('div', { class: 'notices-head' }, this.newBtn), this.builderEl, this.msg, this.list, this.emptyEl); // prettier-ignore
  }

  say(key, vars, tone) {
    setT(this.msg, key, vars);
    this.msg.dataset.tone = tone;
    this.msg.setAttribute('role', tone === 'error' ? 'alert' : 'status');
    this.msg.hidden = false;
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
      this.notices = Array.isArray(r && r.notices) ? r.notices.filter((x) => x && typeof x.id === 'string') : [];
      if (this.msg.dataset.kind === 'load') this.msg.hidden = true;
      this.render();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'notice.error');
      this.say(key, vars, 'error');
      this.msg.dataset.kind = 'load';
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
    const rows = this.notices.map((n) => this.row(n));
    this.list.replaceChildren(...rows);
    this.emptyEl.hidden = this.notices.length > 0;
    for (const d of this.details.values()) d.load();
  }

  row(n) {
    let detail = this.details.get(n.id);
    const toggle = h('button', { type: 'button', class: 'btn btn-link notice-toggle', 'aria-expanded': detail ? 'true' : 'false',
      i18n: ['notice.details', { ref: n.reference }] }); // prettier-ignore
    const slot = h('div', { class: 'notice-detail-slot' });
    if (detail) slot.append(detail.el);
    toggle.addEventListener('click', () => {
      detail = this.details.get(n.id);
      if (detail) {
        this.details.delete(n.id);
        slot.replaceChildren();
        toggle.setAttribute('aria-expanded', 'false');
      } else {
        this.openDetail(n.id, slot);
        toggle.setAttribute('aria-expanded', 'true');
      }
    });
    return h('li', { class: 'notice-row', 'data-notice-id': n.id, 'data-status': n.status, 'data-overdue': n.clock && n.clock.overdue ? 'yes' : 'no' },
      h('p', { class: 'notice-summary' },
        h('span', { class: 'notice-ref', translate: 'no', text: n.reference || '' }), ' ',
        h('span', { class: 'notice-platform', text: (n.platform && n.platform.name) || '' }), ' ',
        statusBadge(n.status), ' ', clockNode(n),
        n.escalation_pending ? h('span', { class: 'badge notice-escalation-pending', i18n: 'notice.escalation_pending' }) : null),
      urlStatusesNode(n.url_statuses), toggle, slot); // prettier-ignore
  }

  openDetail(id, slot) {
    const detail = new NoticeDetail({ id, me: this.pane.me,
      hooks: { onSessionLost: () => this.hooks.onSessionLost(), onChanged: () => this.changed(id) } }); // prettier-ignore
    this.details.set(id, detail);
    slot.replaceChildren(detail.el);
    detail.load();
    return detail;
  }

  /** An action answered: the list follows (the detail already shows the answer). */
  changed(id) {
    const d = this.details.get(id);
    this.details.delete(id); // not loaded twice by the list's render
    this.load().finally(() => {
      if (!d) return;
      this.details.set(id, d);
      const row = this.list.querySelector(`.notice-row[data-notice-id="${CSS.escape(id)}"]`);
      if (row) {
        row.querySelector('.notice-detail-slot').replaceChildren(d.el);
        row.querySelector('.notice-toggle').setAttribute('aria-expanded', 'true');
      }
    });
  }

  async toggleBuilder() {
    const open = this.builderEl.hidden;
    this.newBtn.setAttribute('aria-expanded', String(open));
    if (!open) {
      this.builderEl.hidden = true;
      return;
    }
    this.builder = new NoticeBuilder({ pane: this.pane,
      hooks: { onSessionLost: () => this.hooks.onSessionLost(), onCreated: (n) => this.created(n),
        onCancel: () => this.toggleBuilder() } }); // prettier-ignore
    this.builderEl.replaceChildren(this.builder.el);
    this.builderEl.hidden = false;
    await this.builder.init();
  }

  created(n) {
    this.builderEl.hidden = true;
    this.builderEl.replaceChildren();
    this.newBtn.setAttribute('aria-expanded', 'false');
    this.say('notice.created', { ref: n.reference || '' }, 'ok');
    const detail = new NoticeDetail({ id: n.id, me: this.pane.me,
      hooks: { onSessionLost: () => this.hooks.onSessionLost(), onChanged: () => this.changed(n.id) } }); // prettier-ignore
    this.details.set(n.id, detail);
    this.load();
  }
}

// --- the builder -------------------------------------------------------------------------------

class NoticeBuilder {
  constructor({ pane, hooks }) {
    this.pane = pane;
    this.hooks = hooks;
    const n = ++counter;
    const id = (name) => `nb-${n}-${name}`;
    this.errorEl = h('p', { class: 'form-error', role: 'alert', hidden: true });
    this.platform = h('select', { id: id('platform'), class: 'nb-platform', required: true });
    this.category = h('select', { id: id('category'), class: 'nb-category' });
    this.basis = h('select', { id: id('basis'), class: 'nb-basis' });
    this.ground = h('input', { type: 'text', id: id('ground'), class: 'nb-ground', maxlength: '2000' });
    this.explanation = h('textarea', { id: id('explanation'), class: 'nb-explanation', rows: '3', maxlength: '8000',
      'aria-describedby': id('explanation-help') }); // prettier-ignore
    this.language = h('select', { id: id('language'), class: 'nb-language' });
    this.urlsTyped = h('textarea', { id: id('urls'), class: 'nb-urls', rows: '3', spellcheck: 'false', dir: 'ltr',
      'aria-describedby': id('urls-help') }); // prettier-ignore
    this.evidenceUrls = h('fieldset', { class: 'nb-evidence-urls' }, h('legend', { i18n: 'notice.b.evidence_urls' }));
    this.hashItems = h('fieldset', { class: 'nb-hash-items' }, h('legend', { i18n: 'notice.b.hash_items' }));
    this.submit = h('button', { type: 'submit', class: 'btn btn-primary nb-create', i18n: 'notice.b.create' });
    const cancel = h('button', { type: 'button', class: 'btn nb-cancel', i18n: 'confirm.no', onclick: () => this.hooks.onCancel() });
    const field = (name, key, control, help) => h('div', { class: 'field' },
      h('label', { for: id(name), i18n: key }), control,
      help ? h('p', { class: 'help', id: id(`${name}-help`), i18n: help }) : null); // prettier-ignore
    this.el = h('form', { class: 'notice-builder', novalidate: true, 'aria-labelledby': id('title') },
      h('h3', { id: id('title'), i18n: 'notice.b.title' }), this.errorEl,
      field('platform', 'notice.platform', this.platform),
      field('category', 'notice.category', this.category),
      field('basis', 'notice.legal_basis', this.basis),
      field('ground', 'notice.b.ground', this.ground),
      field('explanation', 'notice.b.explanation', this.explanation, 'notice.b.explanation_help'),
      this.evidenceUrls,
      field('urls', 'notice.b.urls', this.urlsTyped, 'notice.b.urls_help'),
      this.hashItems,
      field('language', 'notice.language', this.language),
      h('div', { class: 'confirm-actions' }, cancel, this.submit)); // prettier-ignore
    this.el.addEventListener('submit', (e) => {
      e.preventDefault();
      this.create();
    });
    this.category.addEventListener('change', () => this.fillBases());
  }

  fail(key, vars) {
    setT(this.errorEl, key, vars);
    this.errorEl.hidden = false;
  }

  async init() {
    this.el.setAttribute('aria-busy', 'true');
    try {
      const [vocab, platforms, evidence] = await Promise.all([
        takedownVocabulary(),
        api('GET', '/api/staff/platforms'),
        api('GET', `/api/staff/cases/${encodeURIComponent(this.pane.id)}/evidence`).catch(() => ({ items: [] })),
      ]);
      this.vocab = vocab || {};
      const active = (Array.isArray(platforms && platforms.platforms) ? platforms.platforms : []).filter((p) => p && p.active);
      this.platform.replaceChildren(h('option', { value: '', i18n: 'notice.b.choose' }),
        ...active.map((p) => h('option', { value: p.id, text: p.name }))); // prettier-ignore
      const caseCategory = this.pane.info && this.pane.info.category;
      const cats = Array.isArray(this.vocab.categories) ? this.vocab.categories : [];
      this.category.replaceChildren(...cats.map((c) => h('option', { value: c.code }, label('category', c.code))));
      if (cats.some((c) => c.code === caseCategory)) this.category.value = caseCategory;
      this.fillBases();
      this.language.replaceChildren(h('option', { value: '', i18n: 'notice.b.lang_default' }),
        ...(this.vocab.languages || []).map((l) => h('option', { value: l }, label('notice.lang', l)))); // prettier-ignore
      const items = Array.isArray(evidence && evidence.items) ? evidence.items : [];
      const urlItems = items.filter((i) => i && i.kind === 'url' && i.url);
      const hashable = items.filter((i) => i && i.kind !== 'url' && i.sha256);
      this.fillChecks(this.evidenceUrls, urlItems, (i) => String(i.url), 'nb-evidence-url', 'notice.b.no_evidence_urls');
      this.fillChecks(this.hashItems, hashable, (i) => String(i.filename || i.name || i.sha256.slice(0, 16)), 'nb-hash-item', 'notice.b.no_hash_items');
      this.addRedactChecks(hashable, !!(this.pane.info && this.pane.info.possible_minor));
      if (!active.length) this.fail('notice.b.no_platforms');
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'notice.error');
      this.fail(key, vars);
    } finally {
      this.el.setAttribute('aria-busy', 'false');
    }
    this.platform.focus();
  }

  fillChecks(box, items, text, cls, emptyKey) {
    const legend = box.querySelector('legend');
    box.replaceChildren(legend);
    if (!items.length) box.append(h('p', { class: 'help', i18n: emptyKey }));
    for (const item of items) {
      const cid = `nb-${++counter}`;
      box.append(h('div', { class: 'check' },
        h('input', { type: 'checkbox', id: cid, class: cls, value: item.id }),
        h('label', { for: cid, dir: 'auto', translate: 'no', text: text(item) }))); // prettier-ignore
    }
  }

  // per stored image (never on a possible-minor case or item): "attach a blurred copy"
  addRedactChecks(items, caseMinor) {
    for (const item of items) {
      const image = String(item.media_type || '').startsWith('image/') && item.status === 'stored';
      if (!image || caseMinor || item.possible_minor) continue;
      const box = this.hashItems.querySelector(`input.nb-hash-item[value="${CSS.escape(item.id)}"]`);
      if (!box) continue;
      const cid = `nb-${++counter}`;
      box.parentElement.append(h('span', { class: 'check nb-redact' },
        h('input', { type: 'checkbox', id: cid, class: 'nb-redact-item', value: item.id }),
        h('label', { for: cid, i18n: 'notice.b.attach_redacted' }))); // prettier-ignore
    }
  }

  fillBases() {
    const cat = (this.vocab.categories || []).find((c) => c.code === this.category.value);
    const bases = (this.vocab.legal_bases || []).filter((b) => !cat || !Array.isArray(b.categories) || !b.categories.length || b.categories.includes(cat.code));
    const lang = document.documentElement.lang === 'en' ? 'en' : 'nl';
    this.basis.replaceChildren(...bases.map((b) => {
      const cite = b.citation && typeof b.citation === 'object' ? b.citation[lang] || b.citation.en : b.citation;
      return h('option', { value: b.code, text: cite ? `${b.code} — ${cite}` : b.code });
    })); // prettier-ignore
    if (cat && cat.legal_basis) this.basis.value = cat.legal_basis;
  }

  async create() {
    this.errorEl.hidden = true;
    if (!this.platform.value) {
      this.fail('notice.b.need_platform');
      this.platform.focus();
      return;
    }
    const urls = [];
    for (const box of this.evidenceUrls.querySelectorAll('input:checked')) urls.push({ evidence_item_id: box.value });
    for (const line of this.urlsTyped.value.split(/\n/)) if (line.trim()) urls.push({ url: line.trim() });
    if (!urls.length) {
      this.fail('notice.b.need_url');
      this.urlsTyped.focus();
      return;
    }
    if (urls.length > MAX_URLS) {
      this.fail('notice.b.too_many', { n: MAX_URLS });
      return;
    }
    const body = { platform_id: this.platform.value, urls, category: this.category.value, legal_basis: this.basis.value };
    const redact = new Set([...this.hashItems.querySelectorAll('input.nb-redact-item:checked')].map((b) => b.value));
    const items = [...this.hashItems.querySelectorAll('input.nb-hash-item:checked')].map((b) => ({ evidence_item_id: b.value, share_hashes: true, attach_redacted: redact.has(b.value) }));
    if (items.length) body.items = items;
    if (this.ground.value.trim()) body.ground = this.ground.value.trim();
    if (this.explanation.value.trim()) body.explanation = this.explanation.value.trim();
    if (this.language.value) body.language = this.language.value;
    this.submit.disabled = true;
    try {
      const n = await api('POST', `/api/staff/cases/${encodeURIComponent(this.pane.id)}/notices`, body);
      this.hooks.onCreated(n);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const field = e && e.details && (e.details.field || e.details.loc);
      const [key, vars] = errorKey(e, 'notice.b.error');
      this.fail(key, { ...(vars || {}), field: field ? String(field) : '', message: (e && e.message) || '' });
    } finally {
      if (this.submit.isConnected) this.submit.disabled = false;
    }
  }
}

// --- the notices view --------------------------------------------------------------------------

const POLL_MS = 60000;

export class NoticesView {
  /** hooks: { onSessionLost(), onOpenCase(caseId) } */
  constructor({ me, live, hooks }) {
    this.me = me;
    this.hooks = hooks;
    this.el = $('#view-notices');
    this.list = $('#notices-list');
    this.msg = $('#notices-msg');
    this.emptyEl = $('#notices-empty');
    this.scope = $('#notices-scope');
    this.details = new Map();
    this.notices = [];
    this.scope.onchange = () => this.load();
    $('#notices-refresh').onclick = () => this.load();
    this.off = live ? live.on('notice_changed', () => this.visible && this.load()) : null;
  }

  show() {
    this.visible = true;
    this.load();
    clearInterval(this.poll);
    this.poll = setInterval(() => this.load(), POLL_MS);
  }

  hide() {
    this.visible = false;
    clearInterval(this.poll);
  }

  destroy() {
    this.hide();
    if (this.off) this.off();
    this.list.replaceChildren();
    this.details.clear();
  }

  say(key, vars, tone) {
    setT(this.msg, key, vars);
    this.msg.dataset.tone = tone;
    this.msg.setAttribute('role', tone === 'error' ? 'alert' : 'status');
    this.msg.hidden = false;
  }

  async load() {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    this.el.setAttribute('aria-busy', 'true');
    try {
      const r = await api('GET', `/api/staff/notices?scope=${this.scope.value === 'all' ? 'all' : 'active'}`);
      this.notices = Array.isArray(r && r.notices) ? r.notices.filter((x) => x && typeof x.id === 'string') : [];
      this.msg.hidden = true;
      if (r && r.truncated) this.say('notices.truncated', undefined, 'info');
      this.render();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'notice.error');
      this.say(key, vars, 'error');
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
    this.list.replaceChildren(...this.notices.map((n) => this.row(n)));
    this.emptyEl.hidden = this.notices.length > 0;
  }

  row(n) {
    const slotRow = h('tr', { class: 'notices-detail-row', hidden: true }, h('td', { colspan: '5' }));
    const open = h('button', { type: 'button', class: 'btn btn-link notices-details', 'aria-expanded': 'false',
      i18n: ['notice.details', { ref: n.reference }] }); // prettier-ignore
    open.addEventListener('click', () => {
      const shown = !slotRow.hidden;
      slotRow.hidden = shown;
      open.setAttribute('aria-expanded', String(!shown));
      if (!shown) {
        const d = new NoticeDetail({ id: n.id, me: this.me,
          hooks: { onSessionLost: () => this.hooks.onSessionLost(), onChanged: () => this.load() } }); // prettier-ignore
        slotRow.firstChild.replaceChildren(d.el);
        d.load();
      }
    });
    const caseBtn = n.case_id
      ? h('button', { type: 'button', class: 'btn notices-open-case', i18n: 'notices.open_case', onclick: () => this.hooks.onOpenCase(n.case_id) })
      : null; // prettier-ignore
    const main = h('tr', { class: 'notices-row', 'data-notice-id': n.id, 'data-status': n.status,
      'data-overdue': n.clock && n.clock.overdue ? 'yes' : 'no' },
      h('td', { class: 'notices-ref', translate: 'no', text: n.reference || '' }),
      h('td', { class: 'notices-platform', text: (n.platform && n.platform.name) || '' }),
      h('td', {}, statusBadge(n.status), urlStatusesNode(n.url_statuses)),
      h('td', {}, clockNode(n)),
      h('td', { class: 'notices-actions' }, open, caseBtn)); // prettier-ignore
    const frag = document.createDocumentFragment();
    frag.append(main, slotRow);
    return frag;
  }
}
