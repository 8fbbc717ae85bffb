// Small DOM helpers. Text only ever goes in through textContent / text nodes.
import { setT, currentLang } from './strings.js';

export const $ = (sel, root = document) => root.querySelector(sel);

/**
 * h('button', {class: 'x', i18n: 'key', 'i18n-aria-label': ['key', {ref}], onclick: fn}, child...)
 * Strings among the children become text nodes. No innerHTML, no style attributes.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'i18n' || k.startsWith('i18n-')) {
      const [key, vars] = Array.isArray(v) ? v : [v, undefined];
      setT(el, key, vars, k === 'i18n' ? undefined : k.slice(5));
    } else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'style' || k.startsWith('on')) throw new Error(`refusing attribute ${k}`);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function wsUrl(path) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}${path}`;
}

export function uuid() {
  if (globalThis.crypto && typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((n) => n.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** Reconnect delays: 0.5 s doubling to 10 s, with jitter. */
export class Backoff {
  constructor(min = 500, max = 10000) {
    this.min = min;
    this.max = max;
    this.cur = min;
  }
  next() {
    const d = this.cur;
    this.cur = Math.min(this.max, this.cur * 2);
    return Math.round(d * (0.8 + Math.random() * 0.4));
  }
  reset() {
    this.cur = this.min;
  }
}

/** An i18n key + vars for an elapsed time: "< 1 min", "3 min", "1 u 05 min". */
export function durationKey(ms) {
  const min = Math.max(0, Math.floor(ms / 60000));
  if (min < 1) return ['time.lt_min', undefined];
  if (min < 60) return ['time.min', { n: min }];
  const hours = Math.floor(min / 60);
  if (hours < 48) return ['time.hour_min', { h: hours, m: String(min % 60).padStart(2, '0') }];
  return ['time.days', { n: Math.floor(hours / 24) }];
}

export function formatClock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const locale = currentLang() === 'en' ? 'en-GB' : 'nl-NL';
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  const opts = sameDay
    ? { hour: '2-digit', minute: '2-digit' }
    : { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' };
  return new Intl.DateTimeFormat(locale, opts).format(d);
}

export function formatSeconds(seconds) {
  const s = Math.max(1, Math.ceil(Number(seconds) || 0));
  if (s < 90) return ['seconds', { n: s }];
  return ['minutes', { n: Math.ceil(s / 60) }];
}

let closeCurrent = null;

/** A modal yes/no question (#confirm, #confirm-yes, #confirm-no). Resolves true on yes. */
export function confirmDialog({ title, text, yes, vars }) {
  if (closeCurrent) closeCurrent(false);
  const dlg = $('#confirm');
  const yesBtn = $('#confirm-yes');
  const noBtn = $('#confirm-no');
  setT($('#confirm-title'), title, vars);
  setT($('#confirm-text'), text, vars);
  setT(yesBtn, yes, vars);
  const before = document.activeElement;
  return new Promise((resolve) => {
    const finish = (answer) => {
      yesBtn.removeEventListener('click', onYes);
      noBtn.removeEventListener('click', onNo);
      dlg.removeEventListener('cancel', onCancel);
      closeCurrent = null;
      if (dlg.open) dlg.close();
      if (before && before.isConnected && typeof before.focus === 'function') before.focus();
      resolve(answer);
    };
    const onYes = () => finish(true);
    const onNo = () => finish(false);
    const onCancel = (e) => {
      e.preventDefault();
      finish(false);
    };
    yesBtn.addEventListener('click', onYes);
    noBtn.addEventListener('click', onNo);
    dlg.addEventListener('cancel', onCancel);
    closeCurrent = finish;
    dlg.showModal();
    noBtn.focus();
  });
}
