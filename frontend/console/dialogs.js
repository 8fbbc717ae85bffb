// Modal forms for the case actions: close with an outcome, transfer, reassign. Each is a
// <dialog> built on demand: its own labelled fields, an inline error (role=alert) for a refused
// or incomplete answer, focus on the first field, and back where it was when it closes.
import { api, ApiError } from './api.js';
import { setT, has } from './strings.js';
import { h } from './dom.js';
import { codeLabel } from './badges.js';

let counter = 0;

/** An API failure as an i18n key + vars: `<prefix>.<code>` if there is one, else the generic text. */
export function errorKey(e, prefix) {
  const code = (e && e.code) || 'error';
  if (e instanceof ApiError && e.status === 0) return ['error.network', undefined];
  if (e instanceof ApiError && (e.status === 404 || e.status === 405) && has(`${prefix}.not_found`)) {
    return [`${prefix}.not_found`, { code }]; // an endpoint the server does not have (yet), or a case that is gone
  }
  if (has(`${prefix}.${code}`)) return [`${prefix}.${code}`, { code }];
  if (e instanceof ApiError && e.status === 403) return ['action.forbidden', { code }];
  if (e instanceof ApiError && e.status === 409) return ['action.conflict', { code, message: e.message }];
  return ['action.failed', { code }];
}

/**
 * Show a modal form. `fields(body, ids)` fills the body and returns a function that reads the
 * answer, or throws [key, vars] for an inline error. `submit(answer)` does the work; its
 * resolved value is what the returned promise resolves to (null when cancelled).
 */
export function formDialog({ title, titleVars, intro, introVars, submitLabel, danger, fields, submit, onSessionLost }) {
  const n = ++counter;
  const id = `dlg-${n}`;
  const errorEl = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const body = h('div', { class: 'dialog-body' });
  const read = fields(body, id);
  const yes = h('button', { type: 'submit', class: danger ? 'btn btn-danger' : 'btn btn-primary', i18n: submitLabel });
  const no = h('button', { type: 'button', class: 'btn', i18n: 'confirm.no' });
  const form = h('form', { method: 'dialog', novalidate: true },
    h('h2', { id: `${id}-title`, i18n: [title, titleVars] }),
    intro ? h('p', { class: 'help', id: `${id}-intro`, i18n: [intro, introVars] }) : null,
    errorEl, body,
    h('div', { class: 'confirm-actions' }, no, yes)); // prettier-ignore
  const dlg = h('dialog', { class: 'confirm form-dialog', 'aria-labelledby': `${id}-title`,
    'aria-describedby': intro ? `${id}-intro` : null }, form); // prettier-ignore
  document.body.append(dlg);
  const before = document.activeElement;

  return new Promise((resolve) => {
    let busy = false;
    const finish = (value) => {
      if (dlg.open) dlg.close();
      dlg.remove();
      if (before && before.isConnected && typeof before.focus === 'function') before.focus();
      resolve(value);
    };
    const fail = (key, vars) => {
      setT(errorEl, key, vars);
      errorEl.hidden = false;
    };
    no.addEventListener('click', () => {
      if (!busy) finish(null);
    });
    dlg.addEventListener('cancel', (e) => {
      e.preventDefault();
      if (!busy) finish(null);
    });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (busy) return;
      let answer;
      try {
        answer = read();
      } catch (err) {
        if (Array.isArray(err)) {
          fail(err[0], err[1]);
          return;
        }
        throw err;
      }
      busy = true;
      yes.disabled = true;
      form.setAttribute('aria-busy', 'true');
      errorEl.hidden = true;
      try {
        const r = await submit(answer);
        finish(r === undefined ? true : r);
      } catch (err) {
        if (err instanceof ApiError && err.status === 401) {
          finish(null);
          onSessionLost();
          return;
        }
        const [key, vars] = Array.isArray(err) ? err : errorKey(err, 'action.error');
        fail(key, vars);
      } finally {
        busy = false;
        yes.disabled = false;
        form.setAttribute('aria-busy', 'false');
      }
    });
    dlg.showModal();
    const first = body.querySelector('input:not([type=hidden]), select, textarea');
    (first || no).focus();
  });
}

/** Close a case: pick an outcome (required). */
export function closeDialog({ pane, vocab, onSessionLost }) {
  return formDialog({
    title: 'close.title',
    titleVars: { ref: pane.reference },
    intro: 'close.intro',
    submitLabel: 'close.submit',
    danger: true,
    onSessionLost,
    fields(body, id) {
      const fs = h('fieldset', { class: 'choices' }, h('legend', { i18n: 'close.outcome' }));
      for (const code of vocab.outcomes) {
        const rid = `${id}-${code}`;
        fs.append(h('div', { class: 'choice' },
          h('input', { type: 'radio', name: 'outcome', id: rid, value: code, required: true }),
          h('label', { for: rid }, codeLabel('', `outcome.${code}`, code)))); // prettier-ignore
      }
      body.append(fs);
      return () => {
        const picked = fs.querySelector('input[name=outcome]:checked');
        if (!picked) {
          fs.querySelector('input').focus();
          throw ['close.pick_outcome', undefined];
        }
        return picked.value;
      };
    },
    submit: async (outcome) => {
      const r = await api('POST', `/api/staff/cases/${encodeURIComponent(pane.id)}/close`, { outcome });
      return { ...(r && typeof r === 'object' ? r : {}), outcome: (r && r.outcome) || outcome };
    },
  });
}

async function colleagueList(me) {
  const r = await api('GET', '/api/staff/colleagues');
  const staff = Array.isArray(r && r.staff) ? r.staff.filter((s) => s && typeof s.id === 'string' && s.id !== me.id) : [];
  // online first, then by name
  return staff.sort((a, b) => Number(Boolean(b.online)) - Number(Boolean(a.online)) || String(a.name).localeCompare(String(b.name)));
}

function colleagueChoice(id, s, name) {
  const rid = `${id}-${s.id}`;
  return h('div', { class: 'choice colleague', 'data-staff-id': s.id, 'data-online': s.online ? 'yes' : 'no' },
    h('input', { type: 'radio', name, id: rid, value: s.id }),
    h('label', { for: rid },
      h('span', { class: 'colleague-name', text: s.name || '?' }), ' ',
      codeLabel('colleague-role', `role.${s.role}`, s.role), ' ',
      h('span', { class: `presence-dot ${s.online ? 'is-online' : ''}`, 'aria-hidden': 'true' }),
      h('span', { class: 'colleague-online', i18n: s.online ? 'colleague.online' : 'colleague.offline' }))); // prettier-ignore
}

/** Transfer: warm to a colleague (they get the case and the note first), or cold back to the queue. */
export function transferDialog({ pane, me, onSessionLost }) {
  return formDialog({
    title: 'transfer.title',
    titleVars: { ref: pane.reference },
    intro: 'transfer.intro',
    submitLabel: 'transfer.submit',
    onSessionLost,
    fields(body, id) {
      const fs = h('fieldset', { class: 'choices colleagues', 'aria-busy': 'true' }, h('legend', { i18n: 'transfer.to' }));
      const cold = h('div', { class: 'choice cold' },
        h('input', { type: 'radio', name: 'to', id: `${id}-cold`, value: '' }),
        h('label', { for: `${id}-cold`, i18n: 'transfer.cold' })); // prettier-ignore
      const loading = h('p', { class: 'help', i18n: 'transfer.loading' });
      fs.append(loading, cold);
      const noteId = `${id}-note`;
      const note = h('textarea', { id: noteId, rows: '4', maxlength: '4000', required: true,
        'aria-describedby': `${noteId}-hint` }); // prettier-ignore
      body.append(fs, h('div', { class: 'field' },
        h('label', { for: noteId, i18n: 'transfer.note' }), note,
        h('p', { class: 'help', id: `${noteId}-hint`, i18n: 'transfer.note_hint' }))); // prettier-ignore
      colleagueList(me)
        .then((staff) => {
          loading.remove();
          if (!staff.length) fs.insertBefore(h('p', { class: 'help', i18n: 'transfer.nobody' }), cold);
          for (const s of staff) fs.insertBefore(colleagueChoice(id, s, 'to'), cold);
          const first = fs.querySelector('input[name=to]');
          if (first && document.activeElement === note && !note.value) first.focus();
        })
        .catch((e) => {
          if (e instanceof ApiError && e.status === 401) return;
          const [key, vars] = errorKey(e, 'transfer.colleagues');
          setT(loading, key, vars);
          loading.className = 'form-error';
        })
        .finally(() => fs.setAttribute('aria-busy', 'false'));
      return () => {
        const picked = fs.querySelector('input[name=to]:checked');
        if (!picked) {
          (fs.querySelector('input[name=to]') || note).focus();
          throw ['transfer.pick', undefined];
        }
        const text = note.value.trim();
        if (!text) {
          note.focus();
          throw ['transfer.note_missing', undefined];
        }
        return { to: picked.value || null, note: text };
      };
    },
    submit: (answer) => api('POST', `/api/staff/cases/${encodeURIComponent(pane.id)}/transfer`, answer),
  });
}

/** Supervisor: give a case to a colleague. `cases` to choose from; `caseId` preselected. */
export function assignDialog({ cases, caseId, onSessionLost }) {
  return formDialog({
    title: 'assign.title',
    intro: 'assign.intro',
    submitLabel: 'assign.submit',
    onSessionLost,
    fields(body, id) {
      const caseSel = h('select', { id: `${id}-case`, required: true });
      caseSel.append(h('option', { value: '', i18n: 'assign.pick_case' }));
      for (const c of cases) {
        const owner = c.assigned_to && c.assigned_to.name;
        caseSel.append(h('option', { value: c.id, i18n: [owner ? 'assign.case_option' : 'assign.case_option_free',
          { ref: c.reference || '', name: owner || '' }] })); // prettier-ignore
      }
      if (caseId) caseSel.value = caseId;
      const fs = h('fieldset', { class: 'choices colleagues', 'aria-busy': 'true' }, h('legend', { i18n: 'assign.to' }));
      const loading = h('p', { class: 'help', i18n: 'transfer.loading' });
      fs.append(loading);
      body.append(h('div', { class: 'field' }, h('label', { for: `${id}-case`, i18n: 'assign.case' }), caseSel), fs);
      colleagueList({ id: null })
        .then((staff) => {
          loading.remove();
          for (const s of staff) fs.append(colleagueChoice(id, s, 'to'));
          if (!staff.length) fs.append(h('p', { class: 'help', i18n: 'transfer.nobody' }));
        })
        .catch((e) => {
          if (e instanceof ApiError && e.status === 401) return;
          const [key, vars] = errorKey(e, 'transfer.colleagues');
          setT(loading, key, vars);
          loading.className = 'form-error';
        })
        .finally(() => fs.setAttribute('aria-busy', 'false'));
      return () => {
        if (!caseSel.value) {
          caseSel.focus();
          throw ['assign.case_missing', undefined];
        }
        const picked = fs.querySelector('input[name=to]:checked');
        if (!picked) {
          (fs.querySelector('input[name=to]') || caseSel).focus();
          throw ['assign.pick', undefined];
        }
        return { caseId: caseSel.value, to: picked.value };
      };
    },
    submit: async ({ caseId: target, to }) => {
      const r = await api('POST', `/api/staff/cases/${encodeURIComponent(target)}/assign`, { to });
      return { ...(r && typeof r === 'object' ? r : {}), id: target };
    },
  });
}
