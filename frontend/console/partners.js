// The partner directory for warm handovers (docs/api/handover.md, "Partners"): everyone reads
// it; admins add and edit partners, import a partner's age recipient and confirm it. Importing
// shows the key's fingerprint to read out to the partner by phone; the admin then types or
// pastes the fingerprint the partner read back, and only a confirmed key can receive a packet.
// Supervisors also see the figures: handovers per partner and per kind of partner, counts only.
import { api, ApiError } from './api.js';
import { setT } from './strings.js';
import { $, h, formatClock } from './dom.js';
import { errorKey } from './dialogs.js';
import { KINDS, STATUSES, kindLabel, label } from './partner-handover.js';

const BASE = '/api/staff/partners';
const FIGURES = '/api/staff/handovers/figures';
const TEXT_FIELDS = ['name', 'contact_email', 'contact_phone', 'website'];
const REQUIRED = new Set(['name', 'contact_email']);
const RECIPIENT = /^age1\S{10,}$/i; // the server checks it in full (400 invalid_recipient)
let counter = 0;

function languagesText(v) {
  if (Array.isArray(v)) return v.join(', ');
  return String(v || '');
}

/** What an admin typed or pasted as the fingerprint read back: hex digits only, lower case. */
export function normaliseFingerprint(raw) {
  return String(raw || '')
    .toLowerCase()
    .replace(/[\s:.\-_]/g, '');
}

/** The fingerprint as 16 groups of 4 hex digits (the API's `fingerprint_words`, or made from the hex). */
function fingerprintWords(key) {
  if (key.fingerprint_words) return Array.isArray(key.fingerprint_words) ? key.fingerprint_words.join(' ') : String(key.fingerprint_words);
  return (String(key.fingerprint || '').match(/.{1,4}/g) || []).join(' ');
}

function count(v) {
  return Number.isFinite(Number(v)) ? String(Number(v)) : '0';
}

export class PartnersView {
  /** hooks: { onSessionLost() } */
  constructor({ me, live, hooks }) {
    this.me = me;
    this.hooks = hooks;
    this.admin = me.role === 'admin';
    this.supervisor = me.role === 'supervisor' || me.role === 'admin';
    this.el = $('#view-partners');
    this.list = $('#partners-list');
    this.msg = $('#partners-msg');
    this.emptyEl = $('#partners-empty');
    this.formSlot = $('#partners-form-slot');
    this.figuresEl = $('#partners-figures');
    this.figuresOut = $('#partners-figures-out');
    this.newBtn = $('#partners-new');
    this.newBtn.hidden = !this.admin;
    this.newBtn.onclick = () => this.edit(null);
    this.figuresEl.hidden = !this.supervisor;
    this.items = [];
    this.keySlots = new Map(); // partner id -> the key box open for it (kept across reloads)
    // a handover changed somewhere: the counts follow, while this view is shown
    this.off = live ? live.on('handover', () => this.visible && this.soon()) : null;
  }

  show() {
    this.visible = true;
    this.load();
  }

  hide() {
    this.visible = false;
    clearTimeout(this.soonTimer);
  }

  destroy() {
    this.hide();
    if (this.off) this.off();
    this.list.replaceChildren();
    this.formSlot.replaceChildren();
    this.figuresOut.replaceChildren();
    this.keySlots.clear();
  }

  soon() {
    clearTimeout(this.soonTimer);
    this.soonTimer = setTimeout(() => this.load(), 300);
  }

  say(key, vars, tone) {
    setT(this.msg, key, vars);
    this.msg.dataset.tone = tone;
    this.msg.setAttribute('role', tone === 'error' ? 'alert' : 'status');
    this.msg.hidden = false;
  }

  fail(e, where) {
    if (e instanceof ApiError && e.status === 401) {
      this.hooks.onSessionLost();
      return;
    }
    const [key, vars] = errorKey(e, 'partners.error');
    const out = [key, { ...(vars || {}), message: (e && e.message) || '' }];
    if (where) {
      setT(where, ...out);
      where.hidden = false;
    } else this.say(...out, 'error');
  }

  /** GET the directory (and the figures); resolves once what was asked for is shown. */
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
      const r = await api('GET', BASE);
      this.items = Array.isArray(r && r.partners) ? r.partners.filter((p) => p && typeof p.id === 'string') : [];
      if (this.msg.dataset.tone === 'error') this.msg.hidden = true;
      this.render();
      if (this.supervisor) await this.loadFigures();
    } catch (e) {
      this.fail(e);
    } finally {
      this.el.setAttribute('aria-busy', 'false');
    }
  }

  render() {
    const focused = document.activeElement && this.list.contains(document.activeElement) ? document.activeElement : null;
    const focusRow = focused ? focused.closest('.partner-row') : null;
    const focusSig = focused ? focused.className : null;
    this.list.replaceChildren(...this.items.map((p) => this.row(p)));
    this.emptyEl.hidden = this.items.length > 0;
    if (focusRow) {
      const row = this.list.querySelector(`.partner-row[data-partner-id="${CSS.escape(focusRow.dataset.partnerId)}"]`);
      const again = row && [...row.querySelectorAll('button, input, textarea')].find((b) => b.className === focusSig);
      if (again) again.focus();
    }
  }

  row(p) {
    const key = p.key || null;
    const facts = h('dl', { class: 'platform-facts partner-facts' },
      h('dt', { i18n: 'partners.kind' }), h('dd', {}, kindLabel(p.kind)),
      h('dt', { i18n: 'partners.contact_email' }), h('dd', { class: 'partner-email', translate: 'no', text: p.contact_email || '' }),
      p.contact_phone ? h('dt', { i18n: 'partners.contact_phone' }) : null,
      p.contact_phone ? h('dd', { translate: 'no', text: p.contact_phone }) : null,
      p.website ? h('dt', { i18n: 'partners.website' }) : null,
      p.website ? h('dd', { translate: 'no', dir: 'ltr', text: p.website }) : null,
      h('dt', { i18n: 'partners.languages' }), h('dd', { text: languagesText(p.languages) }),
      h('dt', { i18n: 'partners.delivery' }), h('dd', {}, label('partners.delivery', p.delivery)),
      h('dt', { i18n: 'partners.key' }), h('dd', {}, this.keyNode(key))); // prettier-ignore
    const tid = `partner-${p.id}-title`;
    const li = h('li', { class: 'platform-row partner-row', 'data-partner-id': p.id, 'data-active': p.active ? 'yes' : 'no',
      'data-key': key ? (key.confirmed ? 'confirmed' : 'unconfirmed') : 'none', 'aria-labelledby': tid },
      h('h2', { class: 'platform-name partner-name', id: tid }, h('span', { text: p.name || '' }),
        p.active ? null : h('span', { class: 'badge', i18n: 'partners.inactive' })),
      p.description ? h('p', { class: 'help partner-description', dir: 'auto', text: p.description }) : null,
      facts, this.countsNode(p.counts)); // prettier-ignore
    if (this.admin) {
      const keySlot = h('div', { class: 'partner-key-slot' });
      const edit = h('button', { type: 'button', class: 'btn partner-edit', i18n: 'partners.edit', onclick: () => this.edit(p) });
      const importBtn = h('button', { type: 'button', class: 'btn partner-key-import', 'aria-expanded': 'false',
        i18n: key ? 'partners.key_replace' : 'partners.key_import' }); // prettier-ignore
      importBtn.addEventListener('click', () => this.importForm(p, keySlot, importBtn));
      const actions = h('div', { class: 'platform-actions partner-actions' }, edit, importBtn);
      if (key && !key.confirmed) {
        const confirmBtn = h('button', { type: 'button', class: 'btn btn-primary partner-key-confirm', 'aria-expanded': 'false',
          i18n: 'partners.key_confirm' }); // prettier-ignore
        confirmBtn.addEventListener('click', () => this.confirmForm(p, key, keySlot, confirmBtn));
        actions.append(confirmBtn);
      }
      li.append(actions, keySlot);
      const open = this.keySlots.get(p.id);
      if (open === 'confirm' && key && !key.confirmed) this.confirmForm(p, key, keySlot, actions.querySelector('.partner-key-confirm'), false);
    }
    return li;
  }

  keyNode(key) {
    if (!key) return h('span', { class: 'partner-key-none', i18n: 'partners.no_key' });
    const words = h('code', { class: 'partner-fingerprint', translate: 'no', text: fingerprintWords(key) });
    if (key.confirmed) {
      return h('span', { class: 'partner-key-state' }, words, ' ',
        h('span', { class: 'partner-key-ok', i18n: ['partners.key_confirmed', { when: formatClock(key.confirmed_at) }] })); // prettier-ignore
    }
    return h('span', { class: 'partner-key-state' }, words, ' ',
      h('strong', { class: 'warning partner-key-unconfirmed', i18n: 'partners.key_unconfirmed' })); // prettier-ignore
  }

  countsNode(counts) {
    const c = counts && typeof counts === 'object' ? counts : {};
    const shown = STATUSES.filter((s) => s in c);
    if (!shown.length) return null;
    return h('div', { class: 'partner-counts-box' }, h('p', { class: 'sr-only', i18n: 'partners.counts' }),
      h('dl', { class: 'partner-counts' },
        ...shown.flatMap((s) => [h('dt', {}, label('partner_handover.status', s)), h('dd', { 'data-status': s, text: count(c[s]) })]))); // prettier-ignore
  }

  edit(p) {
    const n = ++counter;
    const id = (f) => `ptf-${n}-${f}`;
    const inputs = {};
    const errorEl = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const fields = TEXT_FIELDS.map((f) => {
      const type = f === 'contact_email' ? 'email' : f === 'contact_phone' ? 'tel' : f === 'website' ? 'url' : 'text';
      inputs[f] = h('input', { type, id: id(f), class: `ptf-${f}`, autocomplete: 'off', spellcheck: 'false',
        required: REQUIRED.has(f), maxlength: f === 'website' ? '300' : '254' }); // prettier-ignore
      inputs[f].value = (p && p[f]) || '';
      return h('div', { class: 'field' }, h('label', { for: id(f), i18n: `partners.${f}` }), inputs[f]);
    });
    const kind = h('select', { id: id('kind'), class: 'ptf-kind' }, ...KINDS.map((k) => h('option', { value: k, i18n: `partner.kind.${k}` })));
    kind.value = (p && p.kind) || 'sexual_violence_care';
    const description = h('textarea', { id: id('description'), class: 'ptf-description', rows: '3', maxlength: '500',
      'aria-describedby': id('description-help') }); // prettier-ignore
    description.value = (p && p.description) || '';
    const languages = h('input', { type: 'text', id: id('languages'), class: 'ptf-languages', autocomplete: 'off' });
    languages.value = languagesText((p && p.languages) || ['nl']);
    const active = h('input', { type: 'checkbox', id: id('active'), class: 'ptf-active' });
    active.checked = p ? Boolean(p.active) : true;
    const save = h('button', { type: 'submit', class: 'btn btn-primary ptf-save', i18n: p ? 'partners.save' : 'partners.create' });
    const cancel = h('button', { type: 'button', class: 'btn ptf-cancel', i18n: 'confirm.no', onclick: () => this.closeForm() });
    const form = h('form', { class: 'platform-form partner-form', novalidate: true, 'aria-labelledby': id('title') },
      h('h2', { id: id('title'), i18n: p ? ['partners.edit_title', { name: p.name }] : 'partners.new_title' }), errorEl,
      fields[0],
      h('div', { class: 'field' }, h('label', { for: id('kind'), i18n: 'partners.kind' }), kind),
      ...fields.slice(1),
      h('div', { class: 'field' }, h('label', { for: id('description'), i18n: 'partners.description' }), description,
        h('p', { class: 'help', id: id('description-help'), i18n: 'partners.description_help' })),
      h('div', { class: 'field' }, h('label', { for: id('languages'), i18n: 'partners.languages' }), languages),
      p ? h('div', { class: 'ph-check' }, active, h('label', { for: id('active'), i18n: 'partners.active' })) : null,
      h('div', { class: 'confirm-actions' }, cancel, save)); // prettier-ignore
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      errorEl.hidden = true;
      // on an update an empty field is sent as "" (cleared); left out it would stay as it was
      const body = { kind: kind.value, description: description.value.trim() };
      for (const f of TEXT_FIELDS) {
        const v = inputs[f].value.trim();
        if (!v && REQUIRED.has(f)) {
          setT(errorEl, 'partners.required', { field: f });
          errorEl.hidden = false;
          inputs[f].focus();
          return;
        }
        body[f] = v;
      }
      if (!p) for (const f of Object.keys(body)) if (body[f] === '') delete body[f];
      body.languages = languages.value.split(/[\s,]+/).filter(Boolean);
      if (p) body.active = active.checked;
      save.disabled = true;
      try {
        await api(p ? 'PUT' : 'POST', p ? `${BASE}/${encodeURIComponent(p.id)}` : BASE, body);
        this.closeForm();
        this.say(p ? 'partners.saved' : 'partners.created', { name: body.name }, 'ok');
        await this.load();
      } catch (err) {
        this.fail(err, errorEl);
      } finally {
        if (save.isConnected) save.disabled = false;
      }
    });
    this.formBefore = document.activeElement;
    this.formSlot.replaceChildren(form);
    inputs.name.focus();
  }

  closeForm() {
    this.formSlot.replaceChildren();
    const back = this.formBefore;
    this.formBefore = null;
    if (back && back.isConnected) back.focus();
  }

  /** Import a partner's age recipient ("age1…"); the answer's fingerprint is read out next. */
  importForm(p, slot, btn) {
    if (slot.dataset.open === 'import') {
      slot.replaceChildren();
      slot.dataset.open = '';
      btn.setAttribute('aria-expanded', 'false');
      return;
    }
    const n = ++counter;
    const rid = `pk-${n}-recipient`;
    const errorEl = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const input = h('input', { type: 'text', id: rid, class: 'partner-recipient', autocomplete: 'off', spellcheck: 'false',
      translate: 'no', dir: 'ltr', maxlength: '200', 'aria-describedby': `${rid}-help` }); // prettier-ignore
    const submit = h('button', { type: 'submit', class: 'btn btn-primary partner-recipient-save', i18n: 'partners.key_import_submit' });
    const form = h('form', { class: 'platform-key-once partner-key-form', novalidate: true },
      h('h3', { i18n: ['partners.key_import_title', { name: p.name }] }), errorEl,
      h('div', { class: 'field' }, h('label', { for: rid, i18n: 'partners.recipient' }), input,
        h('p', { class: 'help', id: `${rid}-help`, i18n: 'partners.recipient_help' })),
      p.key && p.key.confirmed ? h('p', { class: 'warning', i18n: 'partners.key_replace_warning' }) : null,
      h('div', { class: 'confirm-actions' }, submit)); // prettier-ignore
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      errorEl.hidden = true;
      const recipient = input.value.trim();
      if (!RECIPIENT.test(recipient)) {
        setT(errorEl, 'partners.error.invalid_recipient');
        errorEl.hidden = false;
        input.focus();
        return;
      }
      submit.disabled = true;
      try {
        const answer = await api('POST', `${BASE}/${encodeURIComponent(p.id)}/key`, { recipient });
        const partner = answer && answer.key ? answer : { ...p, key: null };
        this.keySlots.set(p.id, 'confirm');
        this.say('partners.key_imported', { name: p.name }, 'ok');
        await this.load();
        const row = this.list.querySelector(`.partner-row[data-partner-id="${CSS.escape(p.id)}"]`);
        const heading = row && row.querySelector('.partner-read-title');
        if (heading) heading.focus();
        else if (!partner.key) this.say('action.failed', { code: 'no_key' }, 'error');
      } catch (err) {
        this.fail(err, errorEl);
      } finally {
        if (submit.isConnected) submit.disabled = false;
      }
    });
    slot.replaceChildren(form);
    slot.dataset.open = 'import';
    btn.setAttribute('aria-expanded', 'true');
    input.focus();
  }

  /** Read the fingerprint out to the partner by phone; type or paste what they read back. */
  confirmForm(p, key, slot, btn, focus = true) {
    if (focus && slot.dataset.open === 'confirm') {
      slot.replaceChildren();
      slot.dataset.open = '';
      this.keySlots.delete(p.id);
      if (btn) btn.setAttribute('aria-expanded', 'false');
      return;
    }
    const n = ++counter;
    const fid = `pkc-${n}-fingerprint`;
    const errorEl = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const input = h('input', { type: 'text', id: fid, class: 'partner-fingerprint-input', autocomplete: 'off', spellcheck: 'false',
      translate: 'no', dir: 'ltr', maxlength: '120', 'aria-describedby': `${fid}-help` }); // prettier-ignore
    const submit = h('button', { type: 'submit', class: 'btn btn-primary partner-fingerprint-save', i18n: 'partners.key_confirm_submit' });
    const later = h('button', { type: 'button', class: 'btn', i18n: 'partners.key_confirm_later' });
    later.addEventListener('click', () => {
      slot.replaceChildren();
      slot.dataset.open = '';
      this.keySlots.delete(p.id);
      if (btn && btn.isConnected) {
        btn.setAttribute('aria-expanded', 'false');
        btn.focus();
      }
    });
    const form = h('form', { class: 'platform-key-once partner-key-form', novalidate: true },
      h('h3', { class: 'partner-read-title', tabindex: '-1', i18n: ['partners.key_read_title', { name: p.name }] }),
      h('p', { class: 'help', i18n: 'partners.key_read_help' }),
      h('p', { class: 'partner-fingerprint-big', translate: 'no' }, h('span', { class: 'sr-only', i18n: 'partners.fingerprint' }), ' ',
        h('code', { class: 'partner-fingerprint', text: fingerprintWords(key) })),
      h('p', { class: 'warning', i18n: 'partners.key_unconfirmed_help' }),
      errorEl,
      h('div', { class: 'field' }, h('label', { for: fid, i18n: 'partners.fingerprint_read_back' }), input,
        h('p', { class: 'help', id: `${fid}-help`, i18n: 'partners.fingerprint_read_back_help' })),
      h('div', { class: 'confirm-actions' }, later, submit)); // prettier-ignore
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      errorEl.hidden = true;
      const fingerprint = normaliseFingerprint(input.value);
      if (!/^[0-9a-f]{64}$/.test(fingerprint)) {
        setT(errorEl, 'partners.fingerprint_format');
        errorEl.hidden = false;
        input.focus();
        return;
      }
      submit.disabled = true;
      try {
        await api('POST', `${BASE}/${encodeURIComponent(p.id)}/key/confirm`, { fingerprint });
        this.keySlots.delete(p.id);
        this.say('partners.key_confirmed_ok', { name: p.name }, 'ok');
        await this.load();
        const row = this.list.querySelector(`.partner-row[data-partner-id="${CSS.escape(p.id)}"] .partner-name`);
        if (row) {
          row.setAttribute('tabindex', '-1');
          row.focus();
        }
      } catch (err) {
        this.fail(err, errorEl);
        input.focus();
      } finally {
        if (submit.isConnected) submit.disabled = false;
      }
    });
    slot.replaceChildren(form);
    slot.dataset.open = 'confirm';
    this.keySlots.set(p.id, 'confirm');
    if (btn) btn.setAttribute('aria-expanded', 'true');
    if (focus) input.focus();
  }

  // --- the figures (supervisors) ---------------------------------------------------------------

  async loadFigures() {
    try {
      const f = await api('GET', FIGURES);
      this.renderFigures(f || {});
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        this.hooks.onSessionLost();
        return;
      }
      const [key, vars] = errorKey(e, 'partners.error');
      this.figuresOut.replaceChildren(h('p', { class: 'form-error', i18n: [key, vars] }));
    }
  }

  renderFigures(f) {
    const partners = Array.isArray(f.partners) ? f.partners.filter((p) => p && typeof p === 'object') : [];
    const kinds = f.kinds && typeof f.kinds === 'object' ? f.kinds : {};
    const seen = new Set();
    for (const p of partners) for (const k of Object.keys(p.counts || {})) seen.add(k);
    for (const c of Object.values(kinds)) for (const k of Object.keys(c || {})) seen.add(k);
    const cols = [...STATUSES.filter((s) => seen.has(s)), ...[...seen].filter((s) => !STATUSES.includes(s)).sort()];
    const table = (captionKey, rows) => h('div', { class: 'table-wrap' },
      h('table', { class: 'figures-table partner-figures-table' },
        h('caption', { i18n: captionKey }),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col', i18n: 'partners.figures_name' }),
          ...cols.map((s) => h('th', { scope: 'col' }, label('partner_handover.status', s))))),
        h('tbody', {}, ...rows.map(([head, counts, attrs]) => h('tr', attrs,
          h('th', { scope: 'row' }, head), ...cols.map((s) => h('td', { 'data-status': s, text: count((counts || {})[s]) }))))))); // prettier-ignore
    if (!partners.length && !Object.keys(kinds).length) {
      this.figuresOut.replaceChildren(h('p', { class: 'empty', i18n: 'partners.figures_empty' }));
      return;
    }
    this.figuresOut.replaceChildren(
      table('partners.figures_by_partner', partners.map((p) => [
        h('span', {}, h('span', { text: p.name || '' }), ' ', kindLabel(p.kind)), p.counts, { 'data-partner-id': p.partner_id || '' }])),
      table('partners.figures_by_kind', Object.entries(kinds).map(([k, c]) => [kindLabel(k), c, { 'data-kind': k }]))); // prettier-ignore
  }
}
