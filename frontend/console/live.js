// The console's own websocket (/ws/console): the server's frames go to whoever listens
// (queue, panes, supervisor view); this console says which cases it has open ("viewing")
// whenever that changes and every 20 s, which also keeps its staff member "online".
import { h, wsUrl, Backoff } from './dom.js';

const HEARTBEAT_MS = 20000;
const STALE_MS = 70000; // nothing heard (not even a ping) for this long: reconnect

export class ConsoleLive {
  constructor({ hooks }) {
    this.hooks = hooks; // { onCheckSession() }
    this.listeners = new Map(); // frame type (or 'open' / 'live') -> Set of functions
    this.backoff = new Backoff(500, 10000);
    this.viewing = [];
    this.sentViewing = null;
    this.stopped = true;
    this.ws = null;
    this.lastFrameAt = 0;
  }

  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type).delete(fn);
  }

  emit(type, frame) {
    for (const fn of this.listeners.get(type) || []) {
      try {
        fn(frame);
      } catch (e) {
        // one listener's bug must not silence the others
        setTimeout(() => {
          throw e;
        });
      }
    }
  }

  get connected() {
    return Boolean(this.ws && this.ws.readyState === WebSocket.OPEN);
  }

  start() {
    this.stopped = false;
    this.connect();
    this.heartbeat = setInterval(() => this.beat(), HEARTBEAT_MS);
  }

  stop() {
    this.stopped = true;
    clearInterval(this.heartbeat);
    clearTimeout(this.reconnectTimer);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000);
  }

  connect() {
    if (this.stopped) return;
    let ws;
    try {
      ws = new WebSocket(wsUrl('/ws/console'));
    } catch {
      this.reconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.backoff.reset();
      this.lastFrameAt = Date.now();
      this.sentViewing = null;
      this.sendViewing(true);
      this.emit('live', true);
      this.emit('open', null); // anything missed while we were away: listeners re-fetch
    };
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.lastFrameAt = Date.now();
      let frame = null;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (frame && typeof frame === 'object' && typeof frame.type === 'string') this.emit(frame.type, frame);
    };
    ws.onclose = (ev) => {
      if (ws !== this.ws) return;
      this.ws = null;
      this.emit('live', false);
      if (ev.code === 4401) this.hooks.onCheckSession();
      this.reconnect();
    };
  }

  reconnect() {
    if (this.stopped) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => this.connect(), this.backoff.next());
  }

  beat() {
    if (this.connected && Date.now() - this.lastFrameAt > STALE_MS) {
      const ws = this.ws;
      this.ws = null;
      ws.close();
      this.emit('live', false);
      this.reconnect();
      return;
    }
    this.sendViewing(true);
  }

  /** The cases open at this console; sent now if that changed. */
  setViewing(ids) {
    this.viewing = [...new Set(ids)].sort();
    this.sendViewing(false);
  }

  sendViewing(always) {
    if (!this.connected) return;
    const sig = this.viewing.join(',');
    if (!always && sig === this.sentViewing) return;
    this.ws.send(JSON.stringify({ type: 'viewing', case_ids: this.viewing }));
    this.sentViewing = sig;
  }
}

/**
 * Who has which case open: from `presence` frames, and the `viewers` a case answer carries.
 * The server sends a frame when someone's presence changes (also when they go: a console that
 * stopped beating is expired there), and everyone online when the socket (re)connects; so the
 * picture is dropped on reconnect and rebuilt from that snapshot.
 */
export class Presence {
  constructor(me) {
    this.me = me;
    this.staff = new Map(); // id -> {id, name, online, viewing: Set}
    this.listeners = new Set();
  }

  /** The console socket (re)connected: a snapshot follows. */
  reset() {
    if (!this.staff.size) return;
    this.staff.clear();
    this.changed();
  }

  onChange(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  changed() {
    for (const fn of this.listeners) fn();
  }

  /** A `presence` frame. */
  update(frame) {
    const s = frame && frame.staff;
    if (!s || typeof s.id !== 'string') return;
    const viewing = Array.isArray(frame.viewing) ? frame.viewing.filter((x) => typeof x === 'string') : [];
    this.staff.set(s.id, { id: s.id, name: String(s.name || ''), online: frame.online !== false,
      viewing: new Set(frame.online === false ? [] : viewing) }); // prettier-ignore
    this.changed();
  }

  /** A case answer's `viewers`: they had it open when the server answered. */
  seed(caseId, viewers) {
    if (!Array.isArray(viewers)) return;
    let any = false;
    for (const v of viewers) {
      if (!v || typeof v.id !== 'string') continue;
      const known = this.staff.get(v.id);
      if (known && known.viewing.has(caseId)) continue;
      const entry = known || { id: v.id, name: String(v.name || ''), online: true, viewing: new Set() };
      entry.viewing.add(caseId);
      entry.online = true;
      this.staff.set(v.id, entry);
      any = true;
    }
    if (any) this.changed();
  }

  /** Colleagues (not me) who have this case open now. */
  viewersOf(caseId) {
    const out = [];
    for (const s of this.staff.values()) {
      if (s.id !== this.me.id && s.online && s.viewing.has(caseId)) out.push({ id: s.id, name: s.name });
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  destroy() {
    this.listeners.clear();
  }
}

/** The console's polite announcer (one aria-live region for breaches and other news). */
export class Announcer {
  constructor(el) {
    this.el = el;
  }

  say(key, vars) {
    // a fresh node each time, so the same words twice are read twice
    this.el.replaceChildren(h('span', { i18n: [key, vars] }));
  }
}
