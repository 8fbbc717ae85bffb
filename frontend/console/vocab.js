// The triage vocabulary (GET /api/staff/triage/vocabulary): codes for categories, risk flags,
// priorities, statuses and outcomes, the SLA targets and the hotline referral. Loaded once per
// login. Until the server has the endpoint, the codes of docs/api/console.md stand in, so the
// console still shows its controls; `missing` says the SLA targets and the referral are unknown.
import { api, ApiError } from './api.js';
import { currentLang } from './strings.js';

const FALLBACK = {
  categories: ['intimate_images', 'sextortion', 'deepfake', 'doxxing', 'impersonation', 'harassment', 'privacy',
    'grooming', 'possible_minor', 'other'], // prettier-ignore
  flags: ['minor_involved', 'self_harm', 'extortion_deadline', 'spreading_now', 'physical_danger', 'wants_police'],
  priorities: [1, 2, 3, 4],
  statuses: ['new', 'in_conversation', 'waiting_victim', 'waiting_platform', 'handed_over', 'closed'],
  outcomes: ['advice_only', 'removal_requested', 'referred', 'no_action', 'no_contact'],
};

/** The statuses staff pick themselves (claiming, releasing and closing set the others). */
export const SETTABLE_STATUSES = ['in_conversation', 'waiting_victim', 'waiting_platform', 'handed_over'];
export const OPEN_STATUSES = ['new', 'in_conversation', 'waiting_victim', 'waiting_platform', 'handed_over'];
export const PRIORITY_NAMES = { 1: 'urgent', 2: 'high', 3: 'normal', 4: 'low' };

const codes = (list, fallback) => {
  if (!Array.isArray(list)) return fallback;
  const out = list
    .map((x) => (typeof x === 'string' ? x : x && typeof x.code === 'string' ? x.code : null))
    .filter((x) => typeof x === 'string' && /^[a-z_]+$/.test(x));
  return out.length ? out : fallback;
};

export class Vocabulary {
  constructor(raw) {
    const v = raw && typeof raw === 'object' ? raw : {};
    this.missing = !raw;
    this.categories = codes(v.categories, FALLBACK.categories);
    this.flags = codes(v.flags, FALLBACK.flags);
    this.statuses = codes(v.statuses, FALLBACK.statuses);
    this.outcomes = codes(v.outcomes, FALLBACK.outcomes);
    this.priorities = FALLBACK.priorities;
    if (Array.isArray(v.priorities)) {
      const levels = v.priorities.map((p) => Number(p && typeof p === 'object' ? p.level : p)).filter((n) => n >= 1 && n <= 9);
      if (levels.length) this.priorities = levels;
      for (const p of v.priorities) {
        if (p && typeof p === 'object' && typeof p.name === 'string') PRIORITY_NAMES[Number(p.level)] = p.name;
      }
    }
    this.sla = v.sla && typeof v.sla === 'object' ? v.sla : null;
    this.referral = v.hotline_referral ?? null;
  }

  /** The target of an SLA kind at a priority, in milliseconds; null if unknown. */
  slaTarget(kind, priority) {
    const table = this.sla && this.sla[`${kind}_minutes`];
    const minutes = table && Number(table[String(priority)]);
    return Number.isFinite(minutes) && minutes > 0 ? minutes * 60000 : null;
  }
}

let cached = null;

/** The vocabulary; on any failure but a lost session, the fallback (and a later call tries again). */
export async function loadVocabulary() {
  if (cached) return cached;
  try {
    cached = new Vocabulary(await api('GET', '/api/staff/triage/vocabulary'));
    return cached;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) throw e;
    return new Vocabulary(null);
  }
}

export function forgetVocabulary() {
  cached = null;
}

/** Priority level -> its name (urgent, high, normal, low). */
export function priorityName(level) {
  return PRIORITY_NAMES[Number(level)] || 'normal';
}

/**
 * The hotline referral as text, whatever shape the server gives it: a string, a text per
 * language ({"nl": …, "en": …}), or {name, url, phone, text}.
 */
export function referralText(ref) {
  if (!ref) return '';
  if (typeof ref === 'string') return ref;
  if (typeof ref !== 'object') return '';
  const lang = currentLang();
  if (typeof ref[lang] === 'string') return ref[lang];
  if (ref.text && typeof ref.text === 'object' && typeof ref.text[lang] === 'string') return ref.text[lang];
  const parts = [];
  for (const key of ['text', 'message', 'name', 'phone', 'url']) {
    if (typeof ref[key] === 'string' && ref[key]) parts.push(ref[key]);
  }
  return parts.join(' \u00b7 ');
}
