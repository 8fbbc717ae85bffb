// Warm handover to a partner organisation (docs/api/handover.md), the case pane's "Handover"
// tab: the case's handovers with their state and history, and the proposal form. Nothing is
// shared until the victim agrees to exactly what is proposed: right after proposing, the tab
// shows the text the victim will see. For e-mail and callback cases an agent may record a
// consent given by phone or in writing (with the hash of the text read out); a second staff
// member confirms it, and a handover to the police also needs a supervisor's approval.
// (Not to be confused with handover.js: the transfer note between colleagues.)
import { api, ApiError } from './api.js';
import { setT, has } from './strings.js';
import { h, formatClock } from './dom.js';
import { errorKey, formDialog } from './dialogs.js';

export const PARTS = ['summary', 'categories', 'timeline', 'contact', 'evidence'];
export const STATUSES = ['proposed', 'consented', 'declined', 'approved', 'sealed', 'delivered', 'downloaded', 'expired', 'withdrawn'];
export const KINDS = ['sexual_violence_care', 'victim_support', 'police', 'gp', 'other'];
export const CONTACT_METHODS = ['phone', 'email', 'chat', 'letter', 'none'];
const LANGUAGES = ['nl', 'en'];
const CANCELLABLE = new Set(['proposed', 'consented', 'approved', 'sealed']); // until delivered
const RECORDABLE_CHANNELS = new Set(['email', 'callback']); // consent by phone or in writing
const CONFIRM_HASH = /^#confirm-handover=([A-Za-z0-9_-]{1,64})$/;
let counter = 0;

// --- shared pieces (also used by partners.js) --------------------------------------------------

/** The i18n label of a code (`prefix.code`), or the code itself when there is none. */
export function label(prefix, code) {
  const key = `${prefix}.${code}`;
  return has(key) ? h('span', { i18n: key }) : h('span', { text: String(code ?? '') });
}

export function kindLabel(kind) {
  return h('span', { class: 'partner-kind', 'data-kind': kind || '' }, label('partner.kind', kind));
}

export function handoverStatusBadge(status) {
  return h('span', { class: `ph-status ph-status-${status}`, 'data-status': status }, label('partner_handover.status', status));
}

/** Whether a partner can receive a handover now, and if not the i18n key saying why. */
export function partnerReadiness(p) {
  if (!p || !p.active) return 'partner_handover.why.inactive';
  if (!p.key) return 'partner_handover.why.no_key';
  if (!p.key.confirmed) return 'partner_handover.why.unconfirmed';
  return null;
}

/** SHA-256 hex of the UTF-8 bytes of `text` (crypto.subtle: a secure context, which localhost is). */
export async function sha256Hex(text) {
  if (!(globalThis.crypto && crypto.subtle && typeof crypto.subtle.digest === 'function')) return null;
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** An actor as the API gives it: {kind, id, name} (history, consent), {id, name} (a person) or a code. */
function actorOf(who) {
  if (!who) return { kind: null, id: null, name: null };
  if (typeof who === 'object') return { kind: who.kind || 'staff', id: who.id || null, name: who.name || null };
  const s = String(who);
  if (s.startsWith('staff:')) return { kind: 'staff', id: s.slice(6), name: null };
  return ['victim', 'partner', 'system'].includes(s) ? { kind: s, id: null, name: null } : { kind: 'staff', id: s, name: null };
}

function isMe(who, me) {
  const a = actorOf(who);
  return a.kind === 'staff' && Boolean(a.id) && a.id === me.id;
}

function whoNode(who, me) {
  const a = actorOf(who);
  if (!a.kind) return h('span', { i18n: 'partner_handover.nobody' });
  if (a.kind !== 'staff') return label('partner_handover.actor', a.kind);
  if (isMe(who, me)) return h('span', { i18n: 'partner_handover.actor.you' });
  return a.name ? h('span', { text: String(a.name) }) : h('span', { i18n: 'partner_handover.actor.colleague' });
}

function timeNode(iso) {
  return iso ? h('time', { datetime: iso, text: formatClock(iso) }) : h('span', { i18n: 'partner_handover.nobody' });
}

function evidenceText(item) {
  return String(item.label || item.filename || item.url || (item.sha256 ? `${String(item.sha256).slice(0, 16)}…` : item.id || ''));
}

// --- the tab -------------------------------------------------------------------------------------

export class PartnerHandoverPanel {
  /** pane: the ChatPane; hooks: { onSessionLost() } */
  constructor({ pane, hooks }) {
    this.pane = pane;
    this.hooks = hooks;
    this.url = `/api/staff/cases/${encodeURIComponent(pane.id)}/handovers`;
    this.handovers = [];
    this.statuses = new Map(); // id -> status last shown: a change is announced
    this.previews = new Map(); // id -> consent text shown (kept open across reloads)
    this.links = new Set(); // ids whose confirmation link for a colleague is shown
    const n = ++counter;
    this.idBase = `ph-${n}`;
    this.msg = h('p', { class: 'ph-msg panel-msg', role: 'status', hidden: true });
    this.announcer = h('p', { class: 'sr-only', role: 'status', 'aria-live': 'polite', 'aria-atomic': 'true' });
    this.newBtn = h('button', { type: 'button', class: 'btn ph-new', 'aria-expanded': 'false', 'aria-controls': `${this.idBase}-form`,
      i18n: 'partner_handover.new', onclick: () => this.toggleForm() }); // prettier-ignore
    this.formSlot = h('div', { class: 'ph-form-slot', id: `${this.idBase}-form`, hidden: true });
    this.list = h('ul', { class: 'ph-list', 'aria-labelledby': `${this.idBase}-title` });
    this.emptyEl = h('p', { class: 'empty ph-empty', i18n: 'partner_handover.none', hidden: true });
    this.el = h('div', { class: 'ph-panel', 'aria-busy': 'false' },
      h('div', { class: 'ph-head' }, h('h3', { id: `${this.idBase}-title`, class: 'ph-title', i18n: 'partner_handover.title' }), this.newBtn),
      h('p', { class: 'help ph-intro', i18n: 'partner_handover.intro' }),
      this.formSlot, this.msg, this.announcer, this.list, this.emptyEl); // prettier-ignore
  }

  get recordable() {
    return RECORDABLE_CHANNELS.has(this.pane.info && this.pane.info.channel);
  }

  say(key, vars, tone, kind = '') {
    setT(this.msg, key, vars);
    this.msg.dataset.tone = tone;
    this.msg.dataset.kind = kind;
    this.msg.setAttribute('role', tone === 'error' ? 'alert' : 'status');
    this.msg.hidden = false;
  }

  fail(e, prefix = 'partner_handover.error') {
    if (e instanceof ApiError && e.status === 401) {
      this.hooks.onSessionLost();
      return;
    }
    const [key, vars] = errorKey(e, prefix);
    this.say(key, { ...(vars || {}), message: (e && e.message) || '' }, 'error');
  }

  /** GET the case's handovers; resolves once what was asked for (also a load asked meanwhile) is shown. */
  load() {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    this.loading = (async () => {
      do {
        this.again = false;
        await this.loadOnce();
      } while (this.again);
    })().finally(() => {
      this.loading = null;
    });
    return this.loading;
  }

  async loadOnce() {
    this.el.setAttribute('aria-busy', 'true');
    try {
      const r = await api('GET', this.url);
      this.handovers = Array.isArray(r && r.handovers) ? r.handovers.filter((x) => x && typeof x.id === 'string') : [];
      if (this.msg.dataset.kind === 'load') this.msg.hidden = true;
      this.render();
    } catch (e) {
      this.fail(e);
      this.msg.dataset.kind = 'load';
    } finally {
      this.el.setAttribute('aria-busy', 'false');
    }
  }

  render() {
    const focused = document.activeElement && this.list.contains(document.activeElement) ? document.activeElement : null;
    const focusRow = focused ? focused.closest('.ph-row') : null;
    const focusSig = focused ? focused.className : null;
    const wasOpen = new Set([...this.list.querySelectorAll('details[open][data-key]')].map((d) => d.dataset.key));
    // a status that changed while shown is said aloud (the victim answered, the packet went out)
    for (const ho of this.handovers) {
      const before = this.statuses.get(ho.id);
      if (before && before !== ho.status) {
        this.announcer.replaceChildren(h('span', { i18n: ['partner_handover.changed', { ref: ho.reference || '',
          partner: (ho.partner && ho.partner.name) || '' }] }), ' ', label('partner_handover.status', ho.status)); // prettier-ignore
      }
      this.statuses.set(ho.id, ho.status);
    }
    this.list.replaceChildren(...this.handovers.map((ho) => this.row(ho)));
    this.emptyEl.hidden = this.handovers.length > 0;
    for (const d of this.list.querySelectorAll('details[data-key]')) if (wasOpen.has(d.dataset.key)) d.open = true;
    if (focusRow) {
      const row = this.list.querySelector(`.ph-row[data-handover-id="${CSS.escape(focusRow.dataset.handoverId)}"]`);
      const again = row && [...row.querySelectorAll('button, summary, input, [tabindex]')].find((b) => b.className === focusSig);
      if (again) again.focus();
      else if (row) row.querySelector('.ph-row-title').focus();
    }
  }

  row(ho) {
    const me = this.pane.me;
    const ref = { ref: ho.reference || '' };
    const partner = ho.partner || {};
    const consent = ho.consent || null;
    const tid = `${this.idBase}-${ho.id}-title`;
    const li = h('li', { class: 'ph-row', 'data-handover-id': ho.id, 'data-status': ho.status, 'aria-labelledby': tid });
    li.append(h('h4', { class: 'ph-row-title', id: tid, tabindex: '-1' },
      h('span', { class: 'ph-ref', translate: 'no', text: ho.reference || '' }), ' ',
      h('span', { class: 'ph-partner', text: partner.name || '' }), ' ',
      kindLabel(partner.kind), ' ', handoverStatusBadge(ho.status))); // prettier-ignore

    const facts = h('dl', { class: 'ph-facts' });
    const fact = (key, ...dd) => facts.append(h('dt', { i18n: key }), h('dd', {}, ...dd));
    const parts = Array.isArray(ho.parts) ? ho.parts : [];
    const partList = h('ul', { class: 'ph-parts-list' }, ...parts.map((p) => h('li', { 'data-part': p }, label('partner_handover.part', p))));
    fact('partner_handover.parts', parts.length ? partList : h('span', { i18n: 'partner_handover.nobody' }));
    if (parts.includes('contact')) fact('partner_handover.contact_method', label('partner_handover.contact', ho.contact_method || 'none'));
    if (Array.isArray(ho.evidence) && ho.evidence.length) {
      fact('partner_handover.evidence', h('ul', { class: 'ph-evidence-list' },
        ...ho.evidence.map((e) => h('li', { dir: 'auto', translate: 'no', text: evidenceText(e) })))); // prettier-ignore
    }
    fact('partner_handover.language', label('language', ho.language));
    fact('partner_handover.proposed_by', whoNode(ho.created_by, me), ' \u00b7 ', timeNode(ho.created_at));
    if (consent) {
      fact('partner_handover.consent', h('span', { class: 'ph-consent', 'data-decision': consent.decision || '' },
        label('partner_handover.decision', consent.decision), ' \u00b7 ', label('partner_handover.method', consent.method), ' \u00b7 ',
        whoNode(consent.method === 'chat' ? 'victim' : consent.recorded_by, me), ' \u00b7 ', timeNode(consent.recorded_at))); // prettier-ignore
      if (consent.method !== 'chat' && consent.decision === 'accepted') {
        fact('partner_handover.confirmed', consent.confirmed
          ? h('span', {}, whoNode(consent.confirmed_by, me), ' \u00b7 ', timeNode(consent.confirmed_at))
          : h('span', { class: 'ph-waiting', i18n: 'partner_handover.not_yet' })); // prettier-ignore
      }
      if (consent.expires_at && !consent.withdrawn_at) fact('partner_handover.consent_until', timeNode(consent.expires_at));
      if (consent.withdrawn_at) fact('partner_handover.withdrawn_at', timeNode(consent.withdrawn_at));
    }
    if (ho.approval_required) {
      fact('partner_handover.approval', ho.approved
        ? h('span', {}, whoNode(ho.approved.by, me), ' \u00b7 ', timeNode(ho.approved.at))
        : h('span', { class: 'ph-waiting', i18n: 'partner_handover.not_yet' })); // prettier-ignore
    }
    if (ho.delivered_at) fact('partner_handover.delivered_at', timeNode(ho.delivered_at));
    if (ho.link && ho.link.expires_at && !ho.downloaded_at) fact('partner_handover.link_until', timeNode(ho.link.expires_at));
    if (ho.downloaded_at) fact('partner_handover.downloaded_at', timeNode(ho.downloaded_at));
    li.append(facts);

    // what happens next, in words, and the buttons for it
    const next = this.nextStep(ho);
    if (next) li.append(h('p', { class: 'ph-next', 'data-next': next }, h('span', { i18n: next })));
    li.append(this.actions(ho, ref));
    const waiting = ho.status === 'proposed' && consent && consent.decision === 'accepted' && !consent.confirmed;
    if (this.links.has(ho.id) && waiting && isMe(consent.recorded_by, me)) li.append(this.linkNode(ho));
    const preview = this.previews.get(ho.id);
    if (preview !== undefined) li.append(this.previewNode(ho, preview, false));
    li.append(this.history(ho));
    return li;
  }

  /** The i18n key for what the handover waits for, from this staff member's point of view. */
  nextStep(ho) {
    const me = this.pane.me;
    const c = ho.consent;
    if (ho.status === 'proposed') {
      if (c && c.decision === 'accepted' && !c.confirmed && c.method !== 'chat') {
        return isMe(c.recorded_by, me) ? 'partner_handover.next.colleague_confirms' : 'partner_handover.next.you_may_confirm';
      }
      return this.recordable ? 'partner_handover.next.record' : 'partner_handover.next.victim_chat';
    }
    if (ho.status === 'consented' && ho.approval_required && !ho.approved) {
      return this.pane.supervisor ? 'partner_handover.next.you_may_approve' : 'partner_handover.next.supervisor_approves';
    }
    if (ho.status === 'consented' || ho.status === 'approved' || ho.status === 'sealed') return 'partner_handover.next.delivering';
    if (ho.status === 'delivered') return 'partner_handover.next.waiting_download';
    return null;
  }

  actions(ho, ref) {
    const me = this.pane.me;
    const c = ho.consent;
    const box = h('div', { class: 'ph-actions', role: 'group', 'i18n-aria-label': ['partner_handover.actions', ref] });
    const btn = (cls, key, fn) => {
      const b = h('button', { type: 'button', class: `btn ${cls}`, i18n: key });
      b.addEventListener('click', () => fn(b));
      box.append(b);
      return b;
    };
    const shown = this.previews.has(ho.id);
    const toggle = btn('ph-preview-btn', shown ? 'partner_handover.preview_hide' : 'partner_handover.preview_show', (b) => this.togglePreview(ho, b));
    toggle.setAttribute('aria-expanded', String(shown));
    const pendingConfirm = ho.status === 'proposed' && c && c.decision === 'accepted' && c.method !== 'chat' && !c.confirmed;
    if (ho.status === 'proposed' && this.recordable && !pendingConfirm) {
      btn('btn-primary ph-record', 'partner_handover.record', () => this.recordConsent(ho));
    }
    if (pendingConfirm && isMe(c.recorded_by, me)) {
      // a colleague who does not hold the case cannot open it: this link opens the confirmation
      const linkBtn = btn('ph-copy-link', 'partner_handover.copy_link', () => this.copyLink(ho));
      linkBtn.setAttribute('aria-expanded', String(this.links.has(ho.id)));
    }
    if (pendingConfirm && !isMe(c.recorded_by, me)) {
      btn('btn-primary ph-confirm', 'partner_handover.confirm', (b) => this.act(ho, '/consent/confirm', undefined, b, 'partner_handover.confirmed_ok'));
    }
    if (ho.status === 'consented' && ho.approval_required && !ho.approved && this.pane.supervisor) {
      btn('btn-primary ph-approve', 'partner_handover.approve', (b) => this.act(ho, '/approve', undefined, b, 'partner_handover.approved_ok'));
    }
    if (ho.status === 'expired' && ho.delivered_at && !ho.downloaded_at && this.pane.supervisor) {
      btn('ph-reissue', 'partner_handover.reissue', (b) => this.act(ho, '/reissue', undefined, b, 'partner_handover.reissued_ok'));
    }
    if (CANCELLABLE.has(ho.status)) btn('btn-quiet-danger ph-cancel', 'partner_handover.cancel', () => this.cancel(ho));
    return box;
  }

  /** The link for a colleague: kept open across reloads (the list is rebuilt on every change). */
  async copyLink(ho) {
    if (this.links.has(ho.id)) {
      this.links.delete(ho.id);
      this.render();
      return;
    }
    this.links.add(ho.id);
    this.render();
    const row = this.list.querySelector(`.ph-row[data-handover-id="${CSS.escape(ho.id)}"]`);
    const out = row && row.querySelector('.ph-link');
    if (!out) return;
    out.focus();
    out.select();
    const said = row.querySelector('.ph-link-said');
    try {
      await navigator.clipboard.writeText(out.value);
      setT(said, 'partner_handover.link_copied');
    } catch {
      setT(said, 'partner_handover.link_copy_yourself');
    }
  }

  linkNode(ho) {
    const lid = `${this.idBase}-${ho.id}-link`;
    const out = h('input', { type: 'text', id: lid, class: 'ph-link', readonly: true, translate: 'no', spellcheck: 'false', dir: 'ltr' });
    out.value = confirmLink(ho.id);
    return h('div', { class: 'ph-link-box' }, h('label', { for: lid, i18n: 'partner_handover.link_label' }), out,
      h('p', { class: 'help', i18n: 'partner_handover.link_help' }), h('p', { class: 'help ph-link-said', role: 'status' })); // prettier-ignore
  }

  history(ho) {
    const me = this.pane.me;
    const ol = h('ol', { class: 'ph-history' });
    for (const row of Array.isArray(ho.history) ? ho.history : []) {
      // a step within a state (an answer recorded, a delivery retried) says what happened instead
      const step = row.event && row.from === row.to && has(`partner_handover.event.${row.event}`);
      const what = step
        ? [h('span', { i18n: `partner_handover.event.${row.event}` })]
        : [row.from ? label('partner_handover.status', row.from) : null, row.from ? ' \u2192 ' : null, label('partner_handover.status', row.to)];
      ol.append(h('li', { 'data-event': row.event || '' }, timeNode(row.at), ' ', ...what, ' \u00b7 ', whoNode(row.actor, me)));
    }
    return h('details', { class: 'ph-history-box', 'data-key': `history-${ho.id}` },
      h('summary', { class: 'ph-history-toggle', i18n: 'partner_handover.history' }), ol); // prettier-ignore
  }

  /** The text the victim sees (or has read out), in full, with the rule above it. */
  previewNode(ho, text, justProposed) {
    const pid = `${this.idBase}-${ho.id}-preview`;
    const rule = this.recordable ? 'partner_handover.preview_rule_record' : 'partner_handover.preview_rule_chat';
    return h('section', { class: 'ph-preview', 'aria-labelledby': pid, 'data-new': justProposed ? 'yes' : 'no' },
      h('h5', { id: pid, class: 'ph-preview-title', tabindex: '-1', i18n: 'partner_handover.preview_title' }),
      h('p', { class: 'ph-nothing-shared', i18n: 'partner_handover.nothing_shared' }),
      h('p', { class: 'help', i18n: rule }),
      h('pre', { class: 'ph-consent-text', dir: 'auto', tabindex: '0', role: 'region', 'aria-labelledby': pid, text: String(text || '') })); // prettier-ignore
  }

  async fetchOne(id) {
    return api('GET', `/api/staff/handovers/${encodeURIComponent(id)}`);
  }

  async togglePreview(ho, btn) {
    if (this.previews.has(ho.id)) {
      this.previews.delete(ho.id);
      this.render();
      return;
    }
    btn.disabled = true;
    try {
      const full = await this.fetchOne(ho.id);
      this.previews.set(ho.id, String((full && full.consent_text) || ''));
      this.render();
    } catch (e) {
      this.fail(e);
    } finally {
      if (btn.isConnected) btn.disabled = false;
    }
  }

  /** POST an action on one handover; the list follows. */
  async act(ho, path, body, btn, okKey) {
    if (btn) btn.disabled = true;
    try {
      await api('POST', `/api/staff/handovers/${encodeURIComponent(ho.id)}${path}`, body);
      this.say(okKey, { ref: ho.reference || '' }, 'ok');
      await this.load();
    } catch (e) {
      this.fail(e);
      if (e instanceof ApiError && e.status === 409) this.load(); // it changed meanwhile: show it as it is
    } finally {
      if (btn && btn.isConnected) btn.disabled = false;
    }
  }

  async cancel(ho) {
    const done = await formDialog({
      title: 'partner_handover.cancel_title',
      titleVars: { ref: ho.reference || '' },
      intro: 'partner_handover.cancel_intro',
      submitLabel: 'partner_handover.cancel',
      danger: true,
      onSessionLost: () => this.hooks.onSessionLost(),
      fields(body, id) {
        const reason = h('input', { type: 'text', id: `${id}-reason`, class: 'ph-cancel-reason', maxlength: '40', autocomplete: 'off' });
        body.append(h('div', { class: 'field' }, h('label', { for: `${id}-reason`, i18n: 'partner_handover.cancel_reason' }), reason));
        return () => (reason.value.trim() ? { reason: reason.value.trim() } : {});
      },
      submit: async (answer) => {
        try {
          return await api('POST', `/api/staff/handovers/${encodeURIComponent(ho.id)}/cancel`, answer);
        } catch (e) {
          if (e instanceof ApiError && e.status === 401) throw e;
          throw errorKey(e, 'partner_handover.error');
        }
      },
    });
    if (!done) return;
    this.say('partner_handover.cancelled_ok', { ref: ho.reference || '' }, 'ok');
    await this.load();
    this.focusRow(ho.id);
  }

  focusRow(id) {
    // the dialog gave focus back to a button the new list replaced: the handover's heading instead
    const title = this.list.querySelector(`.ph-row[data-handover-id="${CSS.escape(id)}"] .ph-row-title`);
    const at = document.activeElement;
    if (title && (!at || at === document.body || !at.isConnected)) title.focus();
  }

  /** E-mail and callback cases: the agent records the victim's answer given by phone or in writing. */
  async recordConsent(ho) {
    let full;
    try {
      full = await this.fetchOne(ho.id);
    } catch (e) {
      this.fail(e);
      return;
    }
    const panel = this;
    const withContact = Array.isArray(full && full.parts) && full.parts.includes('contact');
    let shown = full; // the answer whose text is on screen: its hash is what is sent
    const done = await formDialog({
      title: 'partner_handover.record_title',
      titleVars: { ref: ho.reference || '', partner: (ho.partner && ho.partner.name) || '' },
      intro: 'partner_handover.record_intro',
      submitLabel: 'partner_handover.record_submit',
      onSessionLost: () => this.hooks.onSessionLost(),
      fields(body, id) {
        const text = h('pre', { class: 'ph-consent-text ph-readout', id: `${id}-text`, dir: 'auto', tabindex: '0', role: 'region',
          'aria-labelledby': `${id}-text-label`, text: String((full && full.consent_text) || '') }); // prettier-ignore
        const radio = (name, value, key) => {
          const rid = `${id}-${name}-${value}`;
          return h('div', { class: 'choice' }, h('input', { type: 'radio', name, id: rid, value, class: `ph-${name}-${value}` }),
            h('label', { for: rid, i18n: key })); // prettier-ignore
        };
        const method = h('fieldset', { class: 'choices ph-method' }, h('legend', { i18n: 'partner_handover.record_method' }),
          radio('method', 'verbal', 'partner_handover.method.verbal'), radio('method', 'written', 'partner_handover.method.written')); // prettier-ignore
        const decision = h('fieldset', { class: 'choices ph-decision' }, h('legend', { i18n: 'partner_handover.record_decision' }),
          radio('decision', 'accepted', 'partner_handover.decision_said.accepted'),
          radio('decision', 'declined', 'partner_handover.decision_said.declined')); // prettier-ignore
        const defaultMethod = panel.pane.info && panel.pane.info.channel === 'email' ? 'written' : 'verbal';
        method.querySelector(`input[value="${defaultMethod}"]`).checked = true;
        const contact = withContact
          ? h('input', { type: 'text', id: `${id}-contact`, class: 'ph-contact-details', maxlength: '300', autocomplete: 'off',
              'aria-describedby': `${id}-contact-help` })
          : null; // prettier-ignore
        body.append(h('p', { id: `${id}-text-label`, class: 'ph-readout-label', i18n: 'partner_handover.record_text' }), text,
          h('p', { class: 'ph-nothing-shared', i18n: 'partner_handover.record_rule' }), method, decision); // prettier-ignore
        if (contact) {
          body.append(h('div', { class: 'field' },
            h('label', { for: `${id}-contact`, i18n: 'partner_handover.contact_details' }), contact,
            h('p', { class: 'help', id: `${id}-contact-help`, i18n: 'partner_handover.contact_details_help' }))); // prettier-ignore
        }
        panel.readoutEl = text;
        return () => {
          const m = method.querySelector('input:checked');
          const d = decision.querySelector('input:checked');
          if (!d) {
            decision.querySelector('input').focus();
            throw ['partner_handover.record_pick', undefined];
          }
          const answer = { method: m ? m.value : defaultMethod, decision: d.value };
          if (contact && d.value === 'accepted' && contact.value.trim()) answer.contact_details = contact.value.trim();
          return answer;
        };
      },
      submit: async (answer) => {
        const textNow = String((shown && shown.consent_text) || '');
        // the API's own hash of this very answer when it offers one; else the browser computes it
        let digest = shown && typeof shown.consent_text_sha256 === 'string' ? shown.consent_text_sha256 : null;
        if (!digest) digest = await sha256Hex(textNow);
        if (!digest) throw ['partner_handover.no_hash', undefined];
        try {
          return await api('POST', `/api/staff/handovers/${encodeURIComponent(ho.id)}/consent`, { ...answer, text_sha256: digest });
        } catch (e) {
          if (e instanceof ApiError && e.status === 401) throw e;
          if (e instanceof ApiError && e.code === 'text_changed') {
            // the text changed: show the current one; the agent reads it again before recording
            try {
              shown = await panel.fetchOne(ho.id);
              if (panel.readoutEl) panel.readoutEl.textContent = String((shown && shown.consent_text) || '');
            } catch {
              /* the error below says enough */
            }
          }
          throw errorKey(e, 'partner_handover.error');
        }
      },
    });
    this.readoutEl = null;
    if (!done) return;
    const accepted = done && done.consent ? done.consent.decision === 'accepted' : true;
    this.say(accepted ? 'partner_handover.recorded_ok' : 'partner_handover.recorded_declined', { ref: ho.reference || '' }, 'ok');
    await this.load();
    this.focusRow(ho.id);
  }

  // --- the proposal --------------------------------------------------------------------------

  async toggleForm() {
    const open = this.formSlot.hidden;
    this.newBtn.setAttribute('aria-expanded', String(open));
    if (!open) {
      this.closeForm(true);
      return;
    }
    this.form = new ProposalForm({ panel: this,
      hooks: { onSessionLost: () => this.hooks.onSessionLost(), onCreated: (ho) => this.created(ho),
        onCancel: () => this.closeForm(true) } }); // prettier-ignore
    this.formSlot.replaceChildren(this.form.el);
    this.formSlot.hidden = false;
    await this.form.init();
  }

  closeForm(focus) {
    this.formSlot.hidden = true;
    this.formSlot.replaceChildren();
    this.form = null;
    this.newBtn.setAttribute('aria-expanded', 'false');
    if (focus) this.newBtn.focus();
  }

  /** Proposed: the text the victim will see is shown at once, with the rule above it. */
  async created(ho) {
    this.closeForm(false);
    this.say('partner_handover.proposed_ok', { ref: ho.reference || '', partner: (ho.partner && ho.partner.name) || '' }, 'ok');
    try {
      const full = await this.fetchOne(ho.id);
      this.previews.set(ho.id, String((full && full.consent_text) || ''));
    } catch (e) {
      this.fail(e);
    }
    await this.load();
    const title = this.list.querySelector(`.ph-row[data-handover-id="${CSS.escape(ho.id)}"] .ph-preview-title`);
    if (title) {
      title.closest('.ph-preview').dataset.new = 'yes';
      title.focus();
    } else this.newBtn.focus();
  }
}

class ProposalForm {
  constructor({ panel, hooks }) {
    this.panel = panel;
    this.pane = panel.pane;
    this.hooks = hooks;
    const n = ++counter;
    const id = (name) => `phf-${n}-${name}`;
    this.id = id;
    this.errorEl = h('p', { class: 'form-error', role: 'alert', hidden: true });
    this.partner = h('select', { id: id('partner'), class: 'phf-partner', required: true, 'aria-describedby': id('partner-help') });
    this.partnerHelp = h('div', { class: 'help phf-partner-help', id: id('partner-help') });
    this.parts = h('fieldset', { class: 'phf-parts' }, h('legend', { i18n: 'partner_handover.form.parts' }));
    this.partBoxes = new Map();
    for (const p of PARTS) {
      const cid = id(`part-${p}`);
      const box = h('input', { type: 'checkbox', id: cid, class: `phf-part phf-part-${p}`, value: p, 'aria-describedby': `${cid}-help` });
      this.partBoxes.set(p, box);
      this.parts.append(h('div', { class: 'ph-check' }, box,
        h('label', { for: cid }, h('span', { i18n: `partner_handover.part.${p}` })),
        h('p', { class: 'help', id: `${cid}-help`, i18n: `partner_handover.part_help.${p}` }))); // prettier-ignore
      box.addEventListener('change', () => this.sync());
    }
    this.summary = h('textarea', { id: id('summary'), class: 'phf-summary', rows: '5', maxlength: '4000', 'aria-describedby': id('summary-help') });
    this.summaryField = h('div', { class: 'field phf-summary-field', hidden: true },
      h('label', { for: id('summary'), i18n: 'partner_handover.form.summary' }), this.summary,
      h('p', { class: 'help', id: id('summary-help'), i18n: 'partner_handover.form.summary_help' })); // prettier-ignore
    this.contact = h('select', { id: id('contact'), class: 'phf-contact' },
      ...CONTACT_METHODS.map((m) => h('option', { value: m, i18n: `partner_handover.contact.${m}` }))); // prettier-ignore
    this.contactField = h('div', { class: 'field phf-contact-field', hidden: true },
      h('label', { for: id('contact'), i18n: 'partner_handover.form.contact' }), this.contact); // prettier-ignore
    this.evidence = h('fieldset', { class: 'phf-evidence', hidden: true }, h('legend', { i18n: 'partner_handover.form.evidence' }));
    this.language = h('select', { id: id('language'), class: 'phf-language', 'aria-describedby': id('language-help') },
      ...LANGUAGES.map((l) => h('option', { value: l, i18n: `language.${l}` }))); // prettier-ignore
    const caseLang = this.pane.info && this.pane.info.language;
    this.language.value = LANGUAGES.includes(caseLang) ? caseLang : 'nl';
    this.submit = h('button', { type: 'submit', class: 'btn btn-primary phf-create', i18n: 'partner_handover.form.create' });
    const cancel = h('button', { type: 'button', class: 'btn phf-cancel', i18n: 'confirm.no', onclick: () => this.hooks.onCancel() });
    this.el = h('form', { class: 'ph-form', novalidate: true, 'aria-labelledby': id('title'), 'aria-describedby': id('rule') },
      h('h4', { id: id('title'), i18n: 'partner_handover.form.title' }),
      h('p', { class: 'ph-nothing-shared', id: id('rule'), i18n: 'partner_handover.form.rule' }),
      this.errorEl,
      h('div', { class: 'field' }, h('label', { for: id('partner'), i18n: 'partner_handover.form.partner' }), this.partner, this.partnerHelp),
      this.parts, this.summaryField, this.contactField, this.evidence,
      h('div', { class: 'field' }, h('label', { for: id('language'), i18n: 'partner_handover.form.language' }), this.language,
        h('p', { class: 'help', id: id('language-help'), i18n: 'partner_handover.form.language_help' })),
      h('div', { class: 'confirm-actions' }, cancel, this.submit)); // prettier-ignore
    this.el.addEventListener('submit', (e) => {
      e.preventDefault();
      this.create();
    });
  }

  fail(key, vars) {
    setT(this.errorEl, key, vars);
    this.errorEl.hidden = false;
  }

  sync() {
    this.summaryField.hidden = !this.partBoxes.get('summary').checked;
    this.contactField.hidden = !this.partBoxes.get('contact').checked;
    this.evidence.hidden = !this.partBoxes.get('evidence').checked;
  }

  async init() {
    this.el.setAttribute('aria-busy', 'true');
    try {
      const [partners, evidence] = await Promise.all([
        api('GET', '/api/staff/partners'),
        api('GET', `/api/staff/cases/${encodeURIComponent(this.pane.id)}/evidence`).catch((e) => {
          if (e instanceof ApiError && e.status === 401) throw e;
          return { items: [], failed: true };
        }),
      ]);
      const all = Array.isArray(partners && partners.partners) ? partners.partners.filter((p) => p && typeof p.id === 'string') : [];
      const ready = all.filter((p) => !partnerReadiness(p));
      const notReady = all.filter((p) => partnerReadiness(p));
      const option = (p) => {
        const why = partnerReadiness(p);
        const o = h('option', { value: p.id, disabled: Boolean(why), 'data-kind': p.kind || '' });
        o.append(p.name || '', ' (', label('partner.kind', p.kind), ')');
        if (why) o.append(' \u2014 ', h('span', { i18n: why }));
        return o;
      };
      this.partner.replaceChildren(h('option', { value: '', i18n: 'partner_handover.form.choose' }),
        ...ready.map(option), ...notReady.map(option)); // prettier-ignore
      // options cannot say much: why the others cannot be chosen, in a list under the field
      this.partnerHelp.replaceChildren(h('p', { i18n: 'partner_handover.form.partner_help' }));
      if (notReady.length) {
        this.partnerHelp.append(h('p', { i18n: 'partner_handover.form.not_selectable' }),
          h('ul', { class: 'phf-not-ready' }, ...notReady.map((p) => h('li', { 'data-partner-id': p.id },
            h('span', { text: p.name || '' }), ': ', h('span', { i18n: partnerReadiness(p) }))))); // prettier-ignore
      }
      if (!ready.length) this.fail('partner_handover.form.no_partners');
      const items = Array.isArray(evidence && evidence.items) ? evidence.items.filter((i) => i && typeof i.id === 'string') : [];
      this.fillEvidence(items, evidence && evidence.failed);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'partner_handover.error');
      this.fail(key, vars);
    } finally {
      this.el.setAttribute('aria-busy', 'false');
    }
    this.partner.focus();
  }

  fillEvidence(items, failed) {
    const legend = this.evidence.querySelector('legend');
    this.evidence.replaceChildren(legend);
    if (failed) this.evidence.append(h('p', { class: 'form-error', i18n: 'partner_handover.form.evidence_failed' }));
    else if (!items.length) this.evidence.append(h('p', { class: 'help', i18n: 'partner_handover.form.no_evidence' }));
    for (const item of items) {
      const cid = `phf-${++counter}`;
      // a possible minor's material goes to the hotline, never in a packet; gone files cannot go at all
      let why = null;
      if (item.possible_minor) why = 'partner_handover.form.evidence_minor';
      else if (item.status === 'destroyed') why = 'partner_handover.form.evidence_gone';
      const name = item.kind === 'url' ? item.url : item.filename;
      const lab = h('label', { for: cid },
        label('evidence.kind', item.kind), ': ',
        name ? h('span', { dir: 'auto', translate: 'no', text: String(name) }) : h('span', { i18n: 'partner_handover.form.evidence_unnamed' }),
        item.captured_at ? h('span', { class: 'muted' }, ' \u00b7 ', timeNode(item.captured_at)) : null,
        why ? h('span', { class: 'muted' }, ' \u2014 ', h('span', { i18n: why })) : null); // prettier-ignore
      this.evidence.append(h('div', { class: 'ph-check' },
        h('input', { type: 'checkbox', id: cid, class: 'phf-evidence-item', value: item.id, disabled: Boolean(why) }), lab)); // prettier-ignore
    }
  }

  async create() {
    this.errorEl.hidden = true;
    if (!this.partner.value) {
      this.fail('partner_handover.form.need_partner');
      this.partner.focus();
      return;
    }
    const parts = PARTS.filter((p) => this.partBoxes.get(p).checked);
    if (!parts.length) {
      this.fail('partner_handover.form.need_parts');
      this.partBoxes.get('summary').focus();
      return;
    }
    const body = { partner_id: this.partner.value, parts, language: this.language.value };
    if (parts.includes('summary')) {
      const text = this.summary.value.trim();
      if (!text) {
        this.fail('partner_handover.error.summary_required');
        this.summary.focus();
        return;
      }
      body.summary = text;
    }
    if (parts.includes('contact')) body.contact_method = this.contact.value;
    if (parts.includes('evidence')) {
      const ids = [...this.evidence.querySelectorAll('input.phf-evidence-item:checked')].map((b) => b.value);
      if (!ids.length) {
        this.fail('partner_handover.error.evidence_required');
        (this.evidence.querySelector('input:not([disabled])') || this.partBoxes.get('evidence')).focus();
        return;
      }
      body.evidence_ids = ids;
    }
    this.submit.disabled = true;
    this.el.setAttribute('aria-busy', 'true');
    try {
      const ho = await api('POST', this.panel.url, body);
      this.hooks.onCreated(ho);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'partner_handover.error');
      this.fail(key, { ...(vars || {}), message: (e && e.message) || '' });
    } finally {
      if (this.submit.isConnected) this.submit.disabled = false;
      this.el.setAttribute('aria-busy', 'false');
    }
  }
}

// --- confirming from a link (a colleague who does not hold the case) ---------------------------

/** The link a recorder gives a colleague: the console opens the confirmation for that handover. */
export function confirmLink(id) {
  return `${location.origin}${location.pathname}#confirm-handover=${encodeURIComponent(id)}`;
}

/** The handover id in the page's address (#confirm-handover=…), if any. */
export function handoverInLink() {
  const m = CONFIRM_HASH.exec(location.hash || '');
  return m ? m[1] : null;
}

/**
 * The second staff member confirms a recorded consent (POST …/consent/confirm) after reading the
 * text the victim agreed to. hooks: { onSessionLost(), onNotice(key, vars) }. Resolves true when
 * confirmed.
 */
export async function confirmFromLink({ id, me, hooks }) {
  let ho;
  try {
    ho = await api('GET', `/api/staff/handovers/${encodeURIComponent(id)}`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      hooks.onSessionLost();
      return false;
    }
    const [key, vars] = errorKey(e, 'partner_handover.error');
    hooks.onNotice(key, vars);
    return false;
  }
  const c = ho && ho.consent;
  const pending = ho && ho.status === 'proposed' && c && c.decision === 'accepted' && c.method !== 'chat' && !c.confirmed;
  const ref = { ref: (ho && ho.reference) || '', partner: (ho && ho.partner && ho.partner.name) || '' };
  if (!pending) {
    hooks.onNotice('partner_handover.link_nothing', ref);
    return false;
  }
  if (isMe(c.recorded_by, me)) {
    hooks.onNotice('partner_handover.error.same_person', ref);
    return false;
  }
  const done = await formDialog({
    title: 'partner_handover.confirm_title',
    titleVars: ref,
    intro: 'partner_handover.confirm_intro',
    submitLabel: 'partner_handover.confirm',
    onSessionLost: () => hooks.onSessionLost(),
    fields(body, fid) {
      const facts = h('dl', { class: 'ph-facts' },
        h('dt', { i18n: 'partner_handover.consent' }),
        h('dd', {}, label('partner_handover.decision', c.decision), ' \u00b7 ', label('partner_handover.method', c.method), ' \u00b7 ',
          whoNode(c.recorded_by, me), ' \u00b7 ', timeNode(c.recorded_at)),
        h('dt', { i18n: 'partner_handover.parts' }),
        h('dd', {}, ...(ho.parts || []).flatMap((p, i) => [i ? ', ' : null, label('partner_handover.part', p)]))); // prettier-ignore
      body.append(facts, h('p', { id: `${fid}-text-label`, class: 'ph-readout-label', i18n: 'partner_handover.confirm_text' }),
        h('pre', { class: 'ph-consent-text ph-confirm-text', dir: 'auto', tabindex: '0', role: 'region', 'aria-labelledby': `${fid}-text-label`,
          text: String(ho.consent_text || '') })); // prettier-ignore
      return () => ({});
    },
    submit: async () => {
      try {
        return await api('POST', `/api/staff/handovers/${encodeURIComponent(id)}/consent/confirm`);
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) throw e;
        throw errorKey(e, 'partner_handover.error');
      }
    },
  });
  if (done) hooks.onNotice('partner_handover.confirmed_ok', ref);
  return Boolean(done);
}
