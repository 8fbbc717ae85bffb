// The platform directory (docs/api/takedown.md, "Bodies"): everyone reads it; admins create,
// edit and delete platforms and generate a platform's API key, which is shown once only, with a
// copy button and a warning. Every value goes in as text.
import { api, ApiError } from './api.js';
import { setT } from './strings.js';
import { $, h, confirmDialog } from './dom.js';
import { errorKey } from './dialogs.js';

const BASE = '/api/staff/platforms';
const DELIVERIES = ['email', 'api', 'web_form'];
const TEXT_FIELDS = ['name', 'slug', 'contact_email', 'endpoint_url', 'web_form_url', 'escalation_email', 'complaint_email', 'flagger_reference'];
let counter = 0;

export class PlatformsView {
  /** hooks: { onSessionLost() } */
  constructor({ me, hooks }) {
    this.me = me;
    this.hooks = hooks;
    this.admin = me.role === 'admin';
    this.el = $('#view-platforms');
    this.list = $('#platforms-list');
    this.msg = $('#platforms-msg');
    this.emptyEl = $('#platforms-empty');
    this.formSlot = $('#platforms-form-slot');
    this.newBtn = $('#platforms-new');
    this.newBtn.hidden = !this.admin;
    this.newBtn.onclick = () => this.edit(null);
    this.items = [];
  }

  show() {
    this.load();
  }

  hide() {}

  destroy() {
    this.list.replaceChildren();
    this.formSlot.replaceChildren();
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
    const [key, vars] = errorKey(e, 'platforms.error');
    this.say(key, { ...(vars || {}), message: (e && e.message) || '' }, 'error');
  }

  async load() {
    this.el.setAttribute('aria-busy', 'true');
    try {
      const r = await api('GET', BASE);
      this.items = Array.isArray(r && r.platforms) ? r.platforms.filter((p) => p && typeof p.id === 'string') : [];
      this.render();
    } catch (e) {
      this.fail(e);
    } finally {
      this.el.setAttribute('aria-busy', 'false');
    }
  }

  render() {
    this.list.replaceChildren(...this.items.map((p) => this.row(p)));
    this.emptyEl.hidden = this.items.length > 0;
  }

  row(p) {
    const facts = h('dl', { class: 'platform-facts' },
      h('dt', { i18n: 'platforms.slug' }), h('dd', { translate: 'no', text: p.slug || '' }),
      h('dt', { i18n: 'platforms.delivery' }), h('dd', { i18n: `platform.delivery.${p.delivery}` }),
      p.contact_email ? h('dt', { i18n: 'platforms.contact_email' }) : null,
      p.contact_email ? h('dd', { translate: 'no', text: p.contact_email }) : null,
      h('dt', { i18n: 'platforms.sla_hours' }), h('dd', { text: String(p.sla_hours ?? '') }),
      h('dt', { i18n: 'platforms.languages' }), h('dd', { text: (p.languages || []).join(', ') }),
      h('dt', { i18n: 'platforms.api_key' }),
      h('dd', p.api_key ? { translate: 'no', text: `${p.api_key.prefix}…` } : { i18n: 'platforms.no_key' })); // prettier-ignore
    const li = h('li', { class: 'platform-row', 'data-platform-id': p.id, 'data-slug': p.slug || '', 'data-active': p.active ? 'yes' : 'no' },
      h('h2', { class: 'platform-name' }, h('span', { text: p.name || '' }),
        p.active ? null : h('span', { class: 'badge', i18n: 'platforms.inactive' })),
      facts); // prettier-ignore
    if (this.admin) {
      const keySlot = h('div', { class: 'platform-key-slot' });
      const edit = h('button', { type: 'button', class: 'btn platform-edit', i18n: 'platforms.edit', onclick: () => this.edit(p) });
      const key = h('button', { type: 'button', class: 'btn platform-key', i18n: 'platforms.generate_key' });
      key.addEventListener('click', () => this.generateKey(p, key, keySlot));
      const del = h('button', { type: 'button', class: 'btn btn-quiet-danger platform-delete', i18n: 'platforms.delete' });
      del.addEventListener('click', () => this.remove(p, del));
      li.append(h('div', { class: 'platform-actions' }, edit, key, del), keySlot);
    }
    return li;
  }

  edit(p) {
    const n = ++counter;
    const id = (f) => `pf-${n}-${f}`;
    const inputs = {};
    const errorEl = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const fields = TEXT_FIELDS.map((f) => {
      inputs[f] = h('input', { type: 'text', id: id(f), class: `pf-${f}`, autocomplete: 'off', spellcheck: 'false' });
      inputs[f].value = (p && p[f]) || '';
      return h('div', { class: 'field' }, h('label', { for: id(f), i18n: `platforms.${f}` }), inputs[f]);
    });
    const delivery = h('select', { id: id('delivery'), class: 'pf-delivery' },
      ...DELIVERIES.map((d) => h('option', { value: d, i18n: `platform.delivery.${d}` }))); // prettier-ignore
    delivery.value = (p && p.delivery) || 'email';
    const languages = h('input', { type: 'text', id: id('languages'), class: 'pf-languages', autocomplete: 'off' });
    languages.value = ((p && p.languages) || ['en']).join(', ');
    const sla = h('input', { type: 'number', id: id('sla'), class: 'pf-sla', min: '1', max: '720' });
    sla.value = p && p.sla_hours ? String(p.sla_hours) : '';
    const active = h('input', { type: 'checkbox', id: id('active'), class: 'pf-active' });
    active.checked = p ? Boolean(p.active) : true;
    const save = h('button', { type: 'submit', class: 'btn btn-primary pf-save', i18n: p ? 'platforms.save' : 'platforms.create' });
    const cancel = h('button', { type: 'button', class: 'btn', i18n: 'confirm.no', onclick: () => this.formSlot.replaceChildren() });
    const form = h('form', { class: 'platform-form', novalidate: true, 'aria-labelledby': id('title') },
      h('h2', { id: id('title'), i18n: p ? ['platforms.edit_title', { name: p.name }] : 'platforms.new_title' }), errorEl,
      ...fields.slice(0, 2),
      h('div', { class: 'field' }, h('label', { for: id('delivery'), i18n: 'platforms.delivery' }), delivery),
      ...fields.slice(2),
      h('div', { class: 'field' }, h('label', { for: id('languages'), i18n: 'platforms.languages' }), languages),
      h('div', { class: 'field' }, h('label', { for: id('sla'), i18n: 'platforms.sla_hours' }), sla),
      h('div', { class: 'check' }, active, h('label', { for: id('active'), i18n: 'platforms.active' })),
      h('div', { class: 'confirm-actions' }, cancel, save)); // prettier-ignore
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      errorEl.hidden = true;
      const body = { delivery: delivery.value, active: active.checked };
      for (const f of TEXT_FIELDS) {
        const v = inputs[f].value.trim();
        if (v) body[f] = v;
        else if (f === 'name' || f === 'slug') {
          setT(errorEl, 'platforms.required', { field: f });
          errorEl.hidden = false;
          inputs[f].focus();
          return;
        }
      }
      body.languages = languages.value.split(/[\s,]+/).filter(Boolean);
      if (sla.value) body.sla_hours = Number(sla.value);
      save.disabled = true;
      try {
        await api(p ? 'PUT' : 'POST', p ? `${BASE}/${encodeURIComponent(p.id)}` : BASE, body);
        this.formSlot.replaceChildren();
        this.say(p ? 'platforms.saved' : 'platforms.created', { name: body.name }, 'ok');
        this.load();
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) {
          this.hooks.onSessionLost();
          return;
        }
        const [key, vars] = errorKey(err, 'platforms.error');
        setT(errorEl, key, { ...(vars || {}), message: err.message || '' });
        errorEl.hidden = false;
      } finally {
        save.disabled = false;
      }
    });
    this.formSlot.replaceChildren(form);
    inputs.name.focus();
  }

  async generateKey(p, btn, slot) {
    const ok = await confirmDialog({ title: 'platforms.key_title', text: 'platforms.key_text', yes: 'platforms.generate_key',
      vars: { name: p.name } }); // prettier-ignore
    if (!ok) return;
    btn.disabled = true;
    try {
      const r = await api('POST', `${BASE}/${encodeURIComponent(p.id)}/api-key`);
      const key = String((r && r.api_key) || '');
      const n = ++counter;
      const out = h('input', { type: 'text', id: `pk-${n}`, class: 'platform-key-value', readonly: true, translate: 'no', spellcheck: 'false' });
      out.value = key;
      const copy = h('button', { type: 'button', class: 'btn platform-key-copy', i18n: 'platforms.copy' });
      const copied = h('span', { class: 'muted', role: 'status' });
      copy.addEventListener('click', async () => {
        out.select();
        try {
          await navigator.clipboard.writeText(key);
          setT(copied, 'platforms.copied');
        } catch {
          setT(copied, 'platforms.copy_failed');
        }
      });
      slot.replaceChildren(h('div', { class: 'platform-key-once' },
        h('p', { class: 'warning', role: 'alert', i18n: 'platforms.key_once' }),
        h('label', { for: `pk-${n}`, i18n: 'platforms.api_key' }), out, copy, copied)); // prettier-ignore
      out.focus();
      out.select();
    } catch (e) {
      this.fail(e);
    } finally {
      btn.disabled = false;
    }
  }

  async remove(p, btn) {
    const ok = await confirmDialog({ title: 'platforms.delete_title', text: 'platforms.delete_text', yes: 'platforms.delete',
      vars: { name: p.name } }); // prettier-ignore
    if (!ok) return;
    btn.disabled = true;
    try {
      await api('DELETE', `${BASE}/${encodeURIComponent(p.id)}`);
      this.say('platforms.deleted', { name: p.name }, 'ok');
      this.load();
    } catch (e) {
      this.fail(e);
      if (btn.isConnected) btn.disabled = false;
    }
  }
}
