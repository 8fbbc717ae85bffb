// Callback requests: the form (from the start page, or from inside the chat), the
// "we'll call you" confirmation, and the line in the chat that shows a waiting request.
// API: docs/api/callback.md. Everything from the server or the user is rendered
// with textContent; the phone number is never kept in sessionStorage.

import { t, getLang, getLocale, onLangChange, setText } from '../common/i18n.js';
import { api, errorOf } from '../common/api.js';

const $ = (id) => document.getElementById(id);
const MIN_MINUTES = 15;
const DEFAULT_MINUTES = 120;

const C = {
  mode: 'start', // start | chat
  info: null,
  infoPending: null,
  rowSeq: 0,
  busy: false,
  done: null, // the answer shown on the confirmation view
  request: null, // the chat's latest request (GET /api/chat/callback)
  lineNote: null, // a one-off note on the chat line (sent / withdrawn)
  token: () => null,
  showView: () => {},
  onFiledWithChat: () => {},
  onBackToChat: () => {},
  onLostAccess: () => {},
};

// ---------------------------------------------------------------- info and formatting

function loadInfo() {
  if (!C.infoPending) {
    C.infoPending = api('/api/callback/info')
      .then(({ status, data }) => {
        if (status === 200 && data && Array.isArray(data.days)) C.info = data;
        else C.infoPending = null;
        return C.info;
      })
      .catch(() => {
        C.infoPending = null;
        return null;
      });
  }
  return C.infoPending;
}

function zone() {
  return (C.info && C.info.timezone) || 'Europe/Amsterdam';
}

function minutesOf(hhmm) {
  const m = /^(\d{1,2}):(\d{2})$/.exec(hhmm || '');
  return m ? Number(m[1]) * 60 + Number(m[2]) : null;
}

function hhmm(minutes) {
  const m = Math.max(0, Math.min(minutes, 23 * 60 + 59));
  return `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
}

// "2026-01-02" -> "vrijdag 2 januari" (a calendar date: formatted at noon UTC)
function dateLabel(date) {
  const d = new Date(`${date}T12:00:00Z`);
  if (Number.isNaN(d.getTime())) return date;
  return d.toLocaleDateString(getLocale(), { weekday: 'long', day: 'numeric', month: 'long', timeZone: 'UTC' });
}

function todayInZone() {
  return C.info && typeof C.info.now === 'string' ? C.info.now.slice(0, 10) : null;
}

function nowMinutesInZone() {
  const m = C.info && typeof C.info.now === 'string' ? /T(\d{2}):(\d{2})/.exec(C.info.now) : null;
  return m ? Number(m[1]) * 60 + Number(m[2]) : 0;
}

function windowText(w) {
  const start = new Date(w.start);
  const end = new Date(w.end);
  if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime())) return '';
  const opts = { timeZone: zone() };
  const day = start.toLocaleDateString(getLocale(), { ...opts, weekday: 'long', day: 'numeric', month: 'long' });
  const time = (d) => d.toLocaleTimeString(getLocale(), { ...opts, hour: '2-digit', minute: '2-digit' });
  return t('callback.window_text', { day, from: time(start), to: time(end) });
}

// ---------------------------------------------------------------- the days a victim can pick

// The usable part of a day: its opening hours, from now on if it is today.
function usableSpan(day) {
  const spans = (Array.isArray(day.hours) ? day.hours : [])
    .map((h) => ({ start: minutesOf(h.start), end: h.end === '24:00' ? 24 * 60 : minutesOf(h.end) }))
    .filter((h) => h.start != null && h.end != null && h.end > h.start);
  if (!spans.length) return null;
  let start = Math.min(...spans.map((s) => s.start));
  const end = Math.max(...spans.map((s) => s.end));
  if (day.date === todayInZone()) start = Math.max(start, Math.ceil((nowMinutesInZone() + 1) / 15) * 15);
  return end - start >= MIN_MINUTES ? { start, end } : null;
}

function usableDays() {
  const days = C.info && Array.isArray(C.info.days) ? C.info.days : [];
  return days.filter((d) => typeof d.date === 'string' && usableSpan(d));
}

function nextDate(date) {
  const d = new Date(`${date}T12:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

function dayOptionText(day) {
  const date = dateLabel(day.date);
  const today = todayInZone();
  let label = date;
  if (today && day.date === today) label = t('callback.day_today', { date });
  else if (today && day.date === nextDate(today)) label = t('callback.day_tomorrow', { date });
  const hours = day.hours.map((h) => `${h.start}–${h.end}`).join(', ');
  return t('callback.day_hours', { date: label, hours });
}

function fillDays(select) {
  const current = select.value;
  const days = usableDays();
  select.replaceChildren();
  for (const day of days) {
    const option = document.createElement('option');
    option.value = day.date;
    option.textContent = dayOptionText(day);
    select.append(option);
  }
  if ([...select.options].some((o) => o.value === current)) select.value = current;
}

function setDefaultTimes(row) {
  const day = usableDays().find((d) => d.date === row.querySelector('.callback-day').value);
  const span = day ? usableSpan(day) : null;
  if (!span) return;
  row.querySelector('.callback-from').value = hhmm(span.start);
  row.querySelector('.callback-to').value = hhmm(Math.min(span.end, span.start + DEFAULT_MINUTES));
}

// ---------------------------------------------------------------- window rows

function rows() {
  return [...$('callback-windows').querySelectorAll('.callback-window')];
}

function labelled(text, control, id) {
  const wrap = document.createElement('div');
  wrap.className = 'callback-part';
  const label = document.createElement('label');
  label.setAttribute('for', id);
  setText(label, text);
  control.id = id;
  wrap.append(label, control);
  return wrap;
}

function addRow() {
  const max = (C.info && C.info.max_windows) || 5;
  if (rows().length >= max || !usableDays().length) return;
  C.rowSeq += 1;
  const n = C.rowSeq;
  const row = document.createElement('li');
  row.className = 'callback-window';
  const title = document.createElement('p');
  title.className = 'callback-window-title';

  const day = document.createElement('select');
  day.className = 'callback-day';
  fillDays(day);
  const previous = rows().at(-1);
  if (previous) {
    // a next window: the next day offered after the previous row's day
    const options = [...day.options].map((o) => o.value);
    const after = options.indexOf(previous.querySelector('.callback-day').value) + 1;
    if (after > 0 && after < options.length) day.value = options[after];
  }
  const from = document.createElement('input');
  from.type = 'time';
  from.className = 'callback-from';
  from.step = '900';
  const to = document.createElement('input');
  to.type = 'time';
  to.className = 'callback-to';
  to.step = '900';

  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'link-button callback-remove';
  setText(remove, 'callback.remove_window');
  remove.addEventListener('click', () => {
    row.remove();
    renumber();
    $('callback-add-window').focus();
  });
  day.addEventListener('change', () => setDefaultTimes(row));

  const times = document.createElement('div');
  times.className = 'callback-times';
  times.append(labelled('callback.from_label', from, `callback-from-${n}`), labelled('callback.to_label', to, `callback-to-${n}`));
  row.append(title, labelled('callback.day_label', day, `callback-day-${n}`), times, remove);
  $('callback-windows').append(row);
  setDefaultTimes(row);
  renumber();
}

function renumber() {
  const all = rows();
  const max = (C.info && C.info.max_windows) || 5;
  all.forEach((row, index) => {
    setText(row.querySelector('.callback-window-title'), 'callback.window_label', { n: index + 1 });
    row.querySelector('.callback-remove').hidden = all.length === 1;
  });
  $('callback-add-window').hidden = all.length >= max || !usableDays().length;
}

function refreshDayLabels() {
  for (const row of rows()) fillDays(row.querySelector('.callback-day'));
}

// ---------------------------------------------------------------- the form

function setError(key, vars) {
  const el = $('callback-error');
  if (!key) {
    el.removeAttribute('data-i18n');
    el.removeAttribute('data-i18n-args');
    el.textContent = '';
    return;
  }
  setText(el, key, vars);
}

function copyTopics() {
  const source = $('topic');
  const target = $('callback-topic');
  const current = target.value;
  target.replaceChildren();
  for (const opt of source.options) {
    const copy = document.createElement('option');
    copy.value = opt.value;
    const key = opt.getAttribute('data-i18n');
    if (key) copy.setAttribute('data-i18n', key);
    copy.textContent = opt.textContent;
    target.append(copy);
  }
  target.value = [...target.options].some((o) => o.value === current) ? current : source.value;
}

function resetForm() {
  $('callback-form').reset();
  $('callback-windows').replaceChildren();
  setError(null);
}

export async function openCallback(mode) {
  C.mode = mode === 'chat' ? 'chat' : 'start';
  resetForm();
  $('callback-topic-field').hidden = C.mode === 'chat';
  $('callback-chat-field').hidden = C.mode === 'chat';
  if (C.mode === 'start') copyTopics();
  C.showView('callback');
  await loadInfo();
  const none = !usableDays().length;
  $('callback-no-days').hidden = !none;
  $('callback-submit').disabled = none;
  if (!rows().length) addRow();
  renumber();
}

function fieldToFocus(field) {
  if (field === 'phone') return $('callback-phone');
  if (field === 'code_word') return $('callback-code-word');
  const m = /^windows\.(\d+)$/.exec(field || '');
  const row = m ? rows()[Number(m[1])] : rows()[0];
  return row ? row.querySelector('.callback-day') : $('callback-add-window');
}

function showFailure(status, data) {
  const error = errorOf(data);
  const details = error.details || {};
  const m = /^windows\.(\d+)$/.exec(details.field || '');
  const vars = { n: m ? Number(m[1]) + 1 : 1, max: details.max || (C.info && C.info.max_windows) || 5 };
  let key = 'callback.errors.generic';
  if (status === 429) key = 'callback.errors.rate_limited';
  else if (error.code && t(`callback.errors.${error.code}`) !== `callback.errors.${error.code}`) key = `callback.errors.${error.code}`;
  setError(key, vars);
  const target = fieldToFocus(details.field);
  if (target && key !== 'callback.errors.generic') target.focus();
}

function body() {
  const windows = rows().map((row) => {
    const day = row.querySelector('.callback-day').value;
    return { start: `${day}T${row.querySelector('.callback-from').value}`, end: `${day}T${row.querySelector('.callback-to').value}` };
  });
  const result = {
    phone: $('callback-phone').value,
    windows,
    voicemail_safe: $('callback-voicemail-yes').checked,
    may_say_name: $('callback-name-yes').checked,
    code_word: $('callback-code-word').value,
    urgent: $('callback-urgent').checked,
  };
  if (C.mode === 'start') {
    result.language = getLang();
    result.topic = $('callback-topic').value || null;
    result.continue_in_chat = $('callback-chat').checked;
  }
  return result;
}

async function submit(e) {
  e.preventDefault();
  if (C.busy) return;
  setError(null);
  if (!$('callback-phone').value.trim()) {
    setError('callback.errors.number_missing');
    $('callback-phone').focus();
    return;
  }
  if (!$('callback-code-word').value.trim()) {
    setError('callback.errors.code_word_missing');
    $('callback-code-word').focus();
    return;
  }
  const btn = $('callback-submit');
  C.busy = true;
  btn.disabled = true;
  btn.setAttribute('aria-busy', 'true');
  try {
    const chat = C.mode === 'chat';
    const { status, data } = await api(chat ? '/api/chat/callback' : '/api/callback/request', {
      method: 'POST',
      body: body(),
      token: chat ? C.token() : undefined,
    });
    if (status === 201 && data) {
      $('callback-phone').value = '';
      $('callback-code-word').value = '';
      if (chat) {
        C.request = data;
        C.lineNote = 'callback.filed_in_chat';
        C.onBackToChat();
        renderLine();
      } else if (data.token) {
        C.onFiledWithChat(data);
      } else {
        C.done = data;
        renderDone();
        C.showView('callback-done');
      }
      return;
    }
    if (status === 401 && chat) {
      C.onLostAccess();
      return;
    }
    showFailure(status, data);
  } catch {
    setError('common.error_network');
  } finally {
    C.busy = false;
    btn.disabled = false;
    btn.removeAttribute('aria-busy');
  }
}

// ---------------------------------------------------------------- confirmation view

function renderDone() {
  const d = C.done;
  if (!d) return;
  setText($('callback-done-number'), 'callback.done_number', { number: d.number || '' });
  const list = $('callback-done-windows');
  list.replaceChildren();
  for (const w of Array.isArray(d.windows) ? d.windows : []) {
    const li = document.createElement('li');
    li.textContent = windowText(w);
    list.append(li);
  }
  setText($('callback-done-voicemail'), d.voicemail_safe ? 'callback.done_voicemail_yes' : 'callback.done_voicemail_no');
  setText($('callback-done-name'), d.may_say_name ? 'callback.done_name_yes' : 'callback.done_name_no');
  $('callback-done-reference').textContent = d.reference || '';
}

function leaveDone() {
  C.done = null;
  $('callback-done-number').textContent = '';
  $('callback-done-windows').replaceChildren();
  $('callback-done-reference').textContent = '';
  C.showView('start');
}

// ---------------------------------------------------------------- the line in the chat

function renderLine() {
  const line = $('callback-line');
  const text = $('callback-line-text');
  const request = C.request;
  if (C.lineNote === 'callback.withdrawn') {
    setText(text, C.lineNote);
    $('callback-withdraw').hidden = true;
    line.hidden = false;
    return;
  }
  if (!request || request.state !== 'pending') {
    line.hidden = true;
    text.textContent = '';
    return;
  }
  const windows = (Array.isArray(request.windows) ? request.windows : []).map(windowText).join('; ');
  text.textContent = `${C.lineNote ? `${t(C.lineNote)} ` : ''}${t('callback.chat_line', { windows })}`;
  $('callback-withdraw').hidden = false;
  line.hidden = false;
}

export async function refreshCallback() {
  const token = C.token();
  if (!token) return;
  try {
    const [{ status, data }] = await Promise.all([api('/api/chat/callback', { token }), loadInfo()]);
    if (token !== C.token()) return; // another conversation by now
    if (status === 200 && data) {
      C.request = data.callback || null;
      renderLine();
    }
  } catch {
    /* the line is a convenience: the chat works without it */
  }
}

async function withdraw() {
  const btn = $('callback-withdraw');
  btn.disabled = true;
  try {
    const { status } = await api('/api/chat/callback/withdraw', { method: 'POST', token: C.token() });
    if (status === 200 || status === 404) {
      C.request = null;
      C.lineNote = 'callback.withdrawn';
      renderLine();
    } else if (status === 401) {
      C.onLostAccess();
    }
  } catch {
    /* nothing changed; the button stays */
  } finally {
    btn.disabled = false;
  }
}

export function resetCallback() {
  C.request = null;
  C.lineNote = null;
  C.done = null;
  $('callback-line').hidden = true;
  $('callback-line-text').textContent = '';
  resetForm();
}

// ---------------------------------------------------------------- wiring

export function initCallback(options) {
  Object.assign(C, options);
  $('callback-form').addEventListener('submit', submit);
  $('callback-add-window').addEventListener('click', () => {
    addRow();
    const last = rows().at(-1);
    if (last) last.querySelector('.callback-day').focus();
  });
  $('callback-back').addEventListener('click', () => {
    if (C.mode === 'chat') C.onBackToChat();
    else C.showView('start');
  });
  $('callback-done-home').addEventListener('click', leaveDone);
  $('callback-withdraw').addEventListener('click', withdraw);
  onLangChange(() => {
    refreshDayLabels();
    renderDone();
    renderLine();
  });
}
