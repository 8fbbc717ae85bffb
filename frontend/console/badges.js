// Small labelled pieces shared by the queue, the panes and the supervisor view: a code shown
// by its label, the priority (colour and word), risk flags, a status.
import { has } from './strings.js';
import { h } from './dom.js';
import { priorityName } from './vocab.js';

/** A span labelled by an i18n key if there is one, else the raw code as text. */
export function codeLabel(cls, key, raw) {
  return has(key) ? h('span', { class: cls, i18n: key }) : h('span', { class: cls, text: raw || '' });
}

/** A priority badge: colour and the word (never colour alone). */
export function priorityBadge(level, overridden) {
  const name = priorityName(level);
  return h('span', { class: `prio prio-${name}`, 'data-level': String(level) },
    h('span', { class: 'sr-only', i18n: 'priority.label' }),
    h('span', { i18n: `priority.${name}` }),
    overridden ? h('span', { class: 'prio-manual', 'i18n-title': 'priority.overridden', 'aria-hidden': 'true' }, '*') : null,
    overridden ? h('span', { class: 'sr-only', i18n: 'priority.overridden' }) : null); // prettier-ignore
}

/** Risk flags as compact badges: a short visible label, the full one for screen readers and on hover. */
export function flagBadges(flags) {
  const list = h('ul', { class: 'flags', 'i18n-aria-label': 'flags.label' });
  for (const f of Array.isArray(flags) ? flags : []) {
    if (typeof f !== 'string') continue;
    list.append(h('li', { class: `flag flag-${f}`, 'i18n-title': has(`flag.${f}`) ? `flag.${f}` : null },
      has(`flag_short.${f}`) ? h('span', { 'aria-hidden': 'true', i18n: `flag_short.${f}` }) : null,
      has(`flag.${f}`) ? h('span', { class: has(`flag_short.${f}`) ? 'sr-only' : null, i18n: `flag.${f}` }) : f)); // prettier-ignore
  }
  list.hidden = !list.firstChild;
  return list;
}

export function statusBadge(status) {
  return codeLabel(`status status-${status}`, `status.${status}`, status);
}

const CHANNEL_ICONS = { email: '\u2709', callback: '\u260e', chat: null };

/** The channel a case came by: an icon (decoration only) and its name in words. */
export function channelLabel(channel) {
  const icon = CHANNEL_ICONS[channel];
  return h('span', { class: `channel channel-${channel}`, 'data-channel': channel || '' },
    icon ? h('span', { class: 'channel-icon', 'aria-hidden': 'true' }, icon) : null,
    icon ? ' ' : null,
    codeLabel('channel-name', `channel.${channel}`, channel)); // prettier-ignore
}
