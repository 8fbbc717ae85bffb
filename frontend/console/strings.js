// Console strings: Dutch by default, English on request (kept in localStorage).
// Elements carry their key in data attributes so a language switch re-labels everything:
//   data-i18n="key"            -> textContent
//   data-i18n-<attr>="key"     -> that attribute (aria-label, placeholder, title, alt)
//   data-i18n-vars='{"n": 3}'  -> values for {n} placeholders
const STORAGE_KEY = 'helpline.console.lang';
export const LANGS = ['nl', 'en'];
const ATTRS = ['aria-label', 'placeholder', 'title', 'alt'];

let lang = 'nl';
let messages = {};
const listeners = new Set();

export function currentLang() {
  return lang;
}

async function load(wanted) {
  const res = await fetch(`/static/console/i18n/${wanted}.json`, { credentials: 'same-origin' });
  if (!res.ok) throw new Error(`strings ${wanted}: ${res.status}`);
  messages = await res.json();
  lang = wanted;
  document.documentElement.lang = wanted;
}

export async function initStrings() {
  let stored = null;
  try {
    stored = localStorage.getItem(STORAGE_KEY);
  } catch {
    stored = null;
  }
  await load(LANGS.includes(stored) ? stored : 'nl');
}

export async function setLang(wanted) {
  if (!LANGS.includes(wanted)) return;
  await load(wanted);
  try {
    localStorage.setItem(STORAGE_KEY, wanted);
  } catch {
    /* private mode: the choice just isn't remembered */
  }
  applyStrings(document);
  for (const fn of listeners) fn(wanted);
}

export function onLangChange(fn) {
  listeners.add(fn);
}

export function has(key) {
  return typeof messages[key] === 'string';
}

export function t(key, vars) {
  const s = messages[key];
  if (typeof s !== 'string') return key;
  if (!vars) return s;
  return s.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

/** Label an element (textContent, or an attribute) with a key; remembered for language switches. */
export function setT(el, key, vars, attr) {
  if (attr) el.setAttribute(`data-i18n-${attr}`, key);
  else el.setAttribute('data-i18n', key);
  if (vars) el.setAttribute('data-i18n-vars', JSON.stringify(vars));
  else if (!attr) el.removeAttribute('data-i18n-vars');
  render(el);
}

function varsOf(el) {
  const raw = el.getAttribute('data-i18n-vars');
  if (!raw) return undefined;
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}

function render(el) {
  const vars = varsOf(el);
  const key = el.getAttribute('data-i18n');
  if (key) el.textContent = t(key, vars);
  for (const attr of ATTRS) {
    const k = el.getAttribute(`data-i18n-${attr}`);
    if (k) el.setAttribute(attr, t(k, vars));
  }
}

export function applyStrings(root) {
  const sel = ['[data-i18n]', ...ATTRS.map((a) => `[data-i18n-${a}]`)].join(',');
  if (root.nodeType === 1 && root.matches(sel)) render(root);
  for (const el of root.querySelectorAll(sel)) render(el);
}
