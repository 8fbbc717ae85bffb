// Service-level timers. The server says what time it is (`now` in the queue and overview
// answers); the console keeps the offset to its own clock, so a timer counts down the same on
// every screen however wrong the laptop's clock is. Timers recompute every second.
import { h } from './dom.js';
import { setT } from './strings.js';

let offsetMs = 0;
const timers = new Set(); // elements made by slaTimer(), still in the page
let ticking = null;

/** Take the server's "now" (ISO) as the time it is at this moment. */
export function syncServerClock(nowIso) {
  const server = Date.parse(nowIso);
  if (!Number.isNaN(server)) offsetMs = server - Date.now();
}

export function serverNow() {
  return Date.now() + offsetMs;
}

/** "4:05", "1:02:09": a countdown (or overrun) in minutes and seconds. */
export function clockText(ms) {
  const total = Math.floor(Math.abs(ms) / 1000);
  const s = String(total % 60).padStart(2, '0');
  const m = Math.floor(total / 60) % 60;
  const hrs = Math.floor(total / 3600);
  return hrs ? `${hrs}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

/**
 * The state of a case's SLA: 'none' (no target running), 'ok', 'warning' (less than 25% of
 * the target left), 'breached' (past due, or the server says so).
 */
export function slaState(sla, targetMs, now = serverNow()) {
  if (!sla || !sla.due_at) return { state: sla && sla.breached ? 'breached' : 'none', left: null };
  const due = Date.parse(sla.due_at);
  if (Number.isNaN(due)) return { state: 'none', left: null };
  const left = due - now;
  if (left <= 0 || sla.breached) return { state: 'breached', left };
  const quarter = targetMs ? targetMs * 0.25 : 2 * 60000; // unknown target: the last two minutes
  return { state: left < quarter ? 'warning' : 'ok', left };
}

/**
 * A live timer for a case's SLA: <span class="sla" data-state=…>. The kind and the state are
 * in the text (screen readers and colour-blind eyes get them too), not in colour alone.
 * `target(kind, priority)` gives the target in ms (from the vocabulary).
 */
export function slaTimer(c, target) {
  const el = h('span', { class: 'sla' });
  el.slaCase = { sla: c.sla || null, priority: c.priority };
  el.slaTarget = target;
  renderTimer(el);
  timers.add(el);
  startTicking();
  return el;
}

function renderTimer(el) {
  const { sla, priority } = el.slaCase;
  const kind = sla && sla.kind ? sla.kind : null;
  const targetMs = kind && el.slaTarget ? el.slaTarget(kind, priority) : null;
  const { state, left } = slaState(sla, targetMs);
  el.dataset.state = state;
  el.hidden = state === 'none';
  if (state === 'none') return;
  const sig = `${state}|${kind}|${left === null ? '' : Math.floor(left / 1000)}`;
  if (el.sig === sig) return;
  el.sig = sig;
  const kindKey = kind === 'next_response' ? 'sla.next_response' : 'sla.first_response';
  const shortKey = `${kindKey}_short`;
  const time = left === null ? '' : clockText(left);
  if (!el.firstChild) {
    el.kindEl = h('span', { class: 'sla-kind' });
    el.timeEl = h('span', { class: 'sla-time' });
    el.stateEl = h('span', { class: 'sla-state' });
    el.append(el.kindEl, ' ', el.timeEl, el.stateEl);
  }
  setT(el.kindEl, shortKey);
  setT(el, kindKey, undefined, 'title');
  if (state === 'breached') {
    setT(el.stateEl, 'sla.breached');
    el.timeEl.textContent = time ? `+${time}` : '';
  } else {
    setT(el.stateEl, state === 'warning' ? 'sla.warning' : 'sla.ok');
    el.timeEl.textContent = time;
  }
  // "on time" is for screen readers only; "almost due" and "breached" are seen as well
  el.stateEl.className = state === 'ok' ? 'sla-state sr-only' : 'sla-state';
}

function startTicking() {
  if (ticking) return;
  ticking = setInterval(() => {
    for (const el of timers) {
      if (!el.isConnected) {
        // not in the page (a row being re-rendered, or gone): drop it once it has been out a while
        el.outTicks = (el.outTicks || 0) + 1;
        if (el.outTicks > 2) timers.delete(el);
        continue;
      }
      el.outTicks = 0;
      renderTimer(el);
    }
    if (!timers.size) {
      clearInterval(ticking);
      ticking = null;
    }
  }, 1000);
}

/** Re-render every timer now (e.g. after a language switch). */
export function refreshTimers() {
  for (const el of timers) {
    el.sig = null;
    if (el.isConnected) renderTimer(el);
  }
}
