// The platform portal: one notice, opened by the token in this page's path
// (/portal/n/<token>). The token goes to the API as a Bearer token only, never
// in a URL; nothing is stored in the browser but the chosen language.

import { api, errorOf } from '/static/common/api.js';
import { applyI18n, getLocale, initI18n, onLangChange, setText, t } from '/static/common/i18n.js';

const $ = (id) => document.getElementById(id);
const token = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');
let notice = null;

function formatTime(iso) {
  if (!iso) return '—';
  return new Date(iso).toLocaleString(getLocale(), { dateStyle: 'medium', timeStyle: 'short' });
}

function fact(list, labelKey, value, { mono = false } = {}) {
  const dt = document.createElement('dt');
  setText(dt, labelKey);
  const dd = document.createElement('dd');
  if (mono) dd.classList.add('mono');
  dd.textContent = value == null || value === '' ? '—' : String(value);
  list.append(dt, dd);
  return dd;
}

function showProblem(status, data) {
  $('loading').hidden = true;
  $('notice').hidden = true;
  const code = errorOf(data).code;
  let key = 'portal.problem_unknown';
  if (code === 'link_expired') key = 'portal.problem_expired';
  else if (code === 'link_revoked') key = 'portal.problem_revoked';
  else if (status === 401) key = 'portal.problem_invalid';
  else if (status === 404) key = 'portal.problem_gone';
  setText($('problem-text'), key);
  $('problem').hidden = false;
}

function renderFacts() {
  const facts = $('facts');
  facts.replaceChildren();
  fact(facts, 'portal.platform', notice.platform ? notice.platform.name : '');
  fact(facts, 'portal.status', t(`status.${notice.status}`));
  fact(facts, 'portal.sent_at', formatTime(notice.sent_at));
  fact(facts, 'portal.due_at', formatTime(notice.due_at));
  fact(facts, 'portal.receipt', formatTime(notice.receipt_confirmed_at));
  fact(facts, 'portal.flagger', notice.flagger_reference || t('portal.flagger_yes'));
  fact(facts, 'portal.link_expires', formatTime(notice.link_expires_at));

  const legal = $('legal');
  legal.replaceChildren();
  fact(legal, 'portal.dsa_category', notice.dsa_category, { mono: true });
  fact(legal, 'portal.dsa_keywords', (notice.dsa_keywords || []).join(', '), { mono: true });
  const basis = notice.legal_basis || {};
  fact(legal, 'portal.legal_basis', basis.citation || basis.code);
  if (notice.ground) fact(legal, 'portal.ground', notice.ground);
  if (!notice.notifier_included) fact(legal, 'portal.notifier', t('portal.notifier_omitted'));
  $('explanation').textContent = notice.explanation || '';
}

function renderHashes() {
  const rows = notice.hashes || [];
  $('hashes-section').hidden = rows.length === 0;
  const body = $('hashes');
  body.replaceChildren();
  for (const item of rows) {
    const tr = document.createElement('tr');
    const cells = [
      String(item.position),
      item.media_type || '—',
      item.sha256 || '—',
      item.pdq || '—',
      item.pdq == null ? '—' : `${item.pdq_quality}${item.pdq_reliable ? '' : ' ⚠'}`,
    ];
    cells.forEach((text, i) => {
      const td = document.createElement('td');
      td.textContent = text;
      if (i === 2 || i === 3) td.classList.add('mono', 'hash');
      tr.append(td);
    });
    body.append(tr);
    if (item.item_id && item.redacted_sha256) body.append(redactedRow(item));
  }
}

// a blurred copy staff attached: fetched with the Bearer token (never in a URL), shown from
// a blob: URL (the portal's CSP allows img-src blob:); its SHA-256 is in the signed notice
function redactedRow(item) {
  const tr = document.createElement('tr');
  tr.className = 'redacted';
  const td = document.createElement('td');
  td.colSpan = 5;
  const figure = document.createElement('figure');
  const img = document.createElement('img');
  img.className = 'redacted-copy';
  img.alt = t('portal.redacted_alt', { position: item.position });
  const caption = document.createElement('figcaption');
  caption.append(t('portal.redacted_caption'), ' SHA-256 ');
  const code = document.createElement('code');
  code.className = 'mono hash';
  code.textContent = item.redacted_sha256;
  caption.append(code);
  figure.append(img, caption);
  td.append(figure);
  tr.append(td);
  loadRedacted(item, img);
  return tr;
}

const redactedUrls = new Map(); // item id -> blob: URL, fetched once per page

async function loadRedacted(item, img) {
  const known = redactedUrls.get(item.item_id);
  if (known) {
    img.src = known;
    return;
  }
  try {
    const res = await fetch(`/api/portal/items/${encodeURIComponent(item.item_id)}/redacted`, {
      headers: { Authorization: `Bearer ${token}` },
      cache: 'no-store',
    });
    if (!res.ok) throw new Error(String(res.status));
    const url = URL.createObjectURL(await res.blob());
    redactedUrls.set(item.item_id, url);
    img.src = url;
  } catch {
    img.replaceWith(document.createTextNode(t('portal.redacted_failed')));
  }
}

function renderSignature() {
  const list = $('signature');
  list.replaceChildren();
  const sig = notice.signature || {};
  fact(list, 'portal.kid', sig.kid, { mono: true });
  fact(list, 'portal.document_sha256', notice.document_sha256, { mono: true });
  fact(list, 'portal.signature_value', sig.signature, { mono: true });
  const keys = fact(list, 'portal.keys', '');
  const link = document.createElement('a');
  link.href = notice.keys_url;
  link.rel = 'noreferrer noopener';
  link.textContent = notice.keys_url;
  keys.replaceChildren(link);
  $('document').textContent = notice.document ? JSON.stringify(notice.document, null, 2) : '';
}

function answerFacts(list, answer) {
  list.replaceChildren();
  if (!answer) {
    list.hidden = true;
    return;
  }
  list.hidden = false;
  if (answer.decision_visibility) fact(list, 'answer.visibility', answer.decision_visibility, { mono: true });
  if (answer.reason) fact(list, 'answer.reason', t(`answer.r_${answer.reason}`));
  if (answer.decision_ground) fact(list, 'answer.decision_ground', answer.decision_ground, { mono: true });
  if (answer.ground) fact(list, 'answer.ground', answer.ground);
  if (answer.explanation) fact(list, 'answer.explanation', answer.explanation);
  if (answer.territorial_scope && answer.territorial_scope.length) {
    fact(list, 'answer.scope', answer.territorial_scope.join(', '));
  }
  if (answer.puid) fact(list, 'answer.puid', answer.puid, { mono: true });
  fact(list, 'answer.answered_at', formatTime(answer.answered_at));
}

function showParts(form) {
  const decision = form.elements.decision.value;
  const restricting = ['removed', 'access_disabled', 'restricted'].includes(decision);
  form.querySelector('.part-restricted').hidden = decision !== 'restricted';
  form.querySelector('.part-other').hidden =
    decision !== 'restricted' || form.elements.decision_visibility.value !== 'DECISION_VISIBILITY_OTHER';
  form.querySelector('.part-declined').hidden = decision !== 'declined';
  form.querySelector('.part-statement').hidden = !(restricting || decision === 'declined');
  form.querySelector('.part-ground-code').hidden = !restricting;
  form.querySelector('.part-scope').hidden = !restricting;
  form.querySelector('.part-question').hidden = decision !== 'more_information';
}

function answerFrom(form, urlId) {
  const value = (name) => (form.elements[name] ? form.elements[name].value.trim() : '');
  const decision = value('decision');
  const answer = { url_id: urlId, decision };
  if (decision === 'more_information') {
    answer.question = value('question');
    return answer;
  }
  answer.explanation = value('explanation');
  answer.automated_decision = value('automated_decision');
  if (decision === 'declined') {
    answer.reason = value('reason');
    if (value('ground')) answer.ground = value('ground');
    if (value('puid')) answer.puid = value('puid');
    return answer;
  }
  answer.decision_ground = value('decision_ground');
  answer.ground = value('ground');
  answer.puid = value('puid');
  answer.territorial_scope = value('territorial_scope')
    .toUpperCase()
    .split(/[\s,;]+/)
    .filter(Boolean);
  if (decision === 'restricted') {
    answer.decision_visibility = value('decision_visibility');
    if (answer.decision_visibility === 'DECISION_VISIBILITY_OTHER') {
      answer.decision_visibility_other = value('decision_visibility_other');
    }
  }
  return answer;
}

async function send(form, urlId) {
  const error = form.querySelector('.answer-error');
  const done = form.querySelector('.answer-done');
  error.textContent = '';
  done.textContent = '';
  if (!form.elements.decision.value) {
    setText(error, 'answer.choose');
    return;
  }
  const button = form.querySelector('button[type=submit]');
  button.disabled = true;
  try {
    const { status, data } = await api('/api/portal/answers', {
      method: 'POST',
      token,
      body: { answers: [answerFrom(form, urlId)] },
    });
    if (status === 200) {
      setText(done, 'answer.sent');
      await load();
      return;
    }
    const problems = (errorOf(data).details || {}).problems || [];
    error.textContent = problems.length
      ? problems.map((p) => `${p.at.replace(/^answers\[0\]\.?/, '')}: ${p.message}`).join('\n')
      : errorOf(data).message || t('answer.failed');
  } catch {
    setText(error, 'answer.failed');
  } finally {
    button.disabled = false;
  }
}

function renderUrls() {
  const list = $('urls');
  list.replaceChildren();
  const template = $('url-template');
  for (const url of notice.urls) {
    const item = template.content.firstElementChild.cloneNode(true);
    setText(item.querySelector('.url-title'), 'portal.url_title', { n: url.position });
    const link = item.querySelector('.url-link');
    link.textContent = url.url;
    if (/^https?:\/\//i.test(url.url)) link.href = url.url;
    setText(item.querySelector('.url-status'), 'portal.url_status', {
      status: t(`status.${url.status}`),
    });
    answerFacts(item.querySelector('.url-answer'), url.answer);
    const form = item.querySelector('form');
    form.hidden = !notice.answerable || url.status === 'withdrawn' || url.status === 'honoured';
    form.addEventListener('change', () => showParts(form));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      send(form, url.id);
    });
    for (const el of form.querySelectorAll('input[type=text], textarea, select')) {
      const label = el.closest('.field')?.querySelector('label');
      if (label) {
        el.id = `${el.name}-${url.id}`;
        label.htmlFor = el.id;
      }
    }
    applyI18n(item);
    showParts(form);
    list.append(item);
  }
}

function render() {
  setText($('notice-title'), 'portal.notice_title', { reference: notice.reference });
  renderFacts();
  renderUrls();
  renderHashes();
  renderSignature();
  $('loading').hidden = true;
  $('problem').hidden = true;
  $('notice').hidden = false;
}

async function load() {
  const { status, data } = await api('/api/portal/notice', { token });
  if (status !== 200) {
    showProblem(status, data);
    return false;
  }
  notice = data;
  render();
  return true;
}

async function start() {
  await initI18n({ path: '/static/portal/i18n' });
  onLangChange(() => {
    if (notice) render();
  });
  if (!token || token === 'n') {
    showProblem(401, null);
    return;
  }
  try {
    if (await load()) {
      // opening the notice confirms its receipt (DSA art. 16(4)), once
      if (!notice.receipt_confirmed_at && notice.status !== 'withdrawn') {
        await api('/api/portal/receipt', { method: 'POST', token });
        await load();
      }
    }
  } catch {
    showProblem(0, null);
  }
}

start();
