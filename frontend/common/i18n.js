// Tiny i18n: loads /static/common/i18n/{nl,en}.json (nested objects, flattened
// to dotted keys), fills elements carrying data-i18n / data-i18n-placeholder /
// data-i18n-aria-label (optional data-i18n-args: JSON object of {placeholders}).
// The chosen language lives in sessionStorage only. Default: Dutch.

import { KEYS, getItem, setItem } from './session.js';

export const LANGUAGES = ['nl', 'en'];
const DEFAULT_LANG = 'nl';

let basePath = '/static/common/i18n';
let lang = DEFAULT_LANG;
let dict = {};
let fallback = {};
const cache = new Map();
const listeners = new Set();

function flatten(obj, prefix = '', out = {}) {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v, key, out);
    else out[key] = String(v);
  }
  return out;
}

async function load(code) {
  if (cache.has(code)) return cache.get(code);
  const res = await fetch(`${basePath}/${code}.json`, { cache: 'no-store', credentials: 'omit' });
  if (!res.ok) throw new Error(`i18n ${code}: HTTP ${res.status}`);
  const flat = flatten(await res.json());
  cache.set(code, flat);
  return flat;
}

export function getLang() {
  return lang;
}

export function getLocale() {
  return lang === 'en' ? 'en-GB' : 'nl-NL';
}

export function t(key, vars) {
  let s = dict[key] ?? fallback[key] ?? key;
  if (vars) {
    s = s.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
  }
  return s;
}

function argsOf(el) {
  const raw = el.getAttribute('data-i18n-args');
  if (!raw) return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}

function applyOne(el) {
  const args = argsOf(el);
  const text = el.getAttribute('data-i18n');
  if (text) el.textContent = t(text, args);
  const ph = el.getAttribute('data-i18n-placeholder');
  if (ph) el.setAttribute('placeholder', t(ph, args));
  const aria = el.getAttribute('data-i18n-aria-label');
  if (aria) el.setAttribute('aria-label', t(aria, args));
}

const SELECTOR = '[data-i18n],[data-i18n-placeholder],[data-i18n-aria-label]';

export function applyI18n(root = document) {
  if (root.nodeType === 1 && root.matches(SELECTOR)) applyOne(root);
  for (const el of root.querySelectorAll(SELECTOR)) applyOne(el);
}

// Set data-i18n (+ args) on an element and translate it right away; it will
// follow later language switches by itself.
export function setText(el, key, vars) {
  el.setAttribute('data-i18n', key);
  if (vars) el.setAttribute('data-i18n-args', JSON.stringify(vars));
  else el.removeAttribute('data-i18n-args');
  applyOne(el);
}

function updateSwitch() {
  const btn = document.getElementById('lang-switch');
  if (!btn) return;
  const other = lang === 'nl' ? 'en' : 'nl';
  btn.setAttribute('lang', other);
  btn.textContent = t('common.lang_switch');
  btn.setAttribute('aria-label', t('common.lang_switch_aria'));
}

export function onLangChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export async function setLang(code) {
  const target = LANGUAGES.includes(code) ? code : DEFAULT_LANG;
  try {
    dict = await load(target);
    lang = target;
  } catch {
    dict = fallback;
    lang = DEFAULT_LANG;
  }
  setItem(KEYS.lang, lang);
  document.documentElement.lang = lang;
  applyI18n(document);
  updateSwitch();
  for (const fn of listeners) {
    try {
      fn(lang);
    } catch (e) {
      console.error(e);
    }
  }
}

export async function initI18n(options = {}) {
  if (options.path) basePath = options.path;
  try {
    fallback = await load(DEFAULT_LANG);
  } catch {
    fallback = {};
  }
  const stored = getItem(KEYS.lang);
  await setLang(LANGUAGES.includes(stored) ? stored : DEFAULT_LANG);
  const btn = document.getElementById('lang-switch');
  if (btn && !btn.dataset.wired) {
    btn.dataset.wired = '1';
    btn.addEventListener('click', () => setLang(lang === 'nl' ? 'en' : 'nl'));
  }
}
