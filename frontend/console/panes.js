// The open conversations: a column each on a wide screen, one at a time (with the switcher) on a narrow one.
import { ChatPane } from './pane.js';
import { $, h } from './dom.js';

const STORE = 'helpline.console.panes';
const NARROW = '(max-width: 899px)';

export class Panes {
  constructor({ me, vocab, presence, live, channels, hooks }) {
    this.me = me;
    this.channels = channels; // { mailFailures }
    this.vocab = vocab;
    this.presence = presence;
    this.hooks = hooks;
    this.root = $('#panes');
    this.tabs = $('#tabs');
    this.queueTab = $('#tab-queue');
    this.shell = $('#view-console');
    this.empty = $('#panes-empty');
    this.panes = new Map();
    this.active = null;
    this.narrow = matchMedia(NARROW);
    this.byEl = new Map();
    this.io = new IntersectionObserver(
      (entries) => {
        for (const e of entries) {
          const p = this.byEl.get(e.target);
          if (p) p.setInView(e.isIntersecting && e.intersectionRatio >= 0.5);
        }
      },
      { threshold: [0, 0.5, 1] },
    );
    this.onVisibility = () => this.panes.forEach((p) => p.refreshSeen());
    this.onOnline = () => this.panes.forEach((p) => p.nudge());
    this.onQueueTab = () => this.showQueue(true);
    this.onMedia = () => this.layout();
    document.addEventListener('visibilitychange', this.onVisibility);
    window.addEventListener('focus', this.onVisibility);
    window.addEventListener('online', this.onOnline);
    this.queueTab.addEventListener('click', this.onQueueTab);
    this.narrow.addEventListener('change', this.onMedia);
    this.offs = [
      // a case changed (triage, status, assignment, a note, a mail's delivery, a callback):
      // its pane fetches it again
      live.on('case_changed', (f) => {
        const p = f && this.panes.get(f.case_id);
        if (p) p.caseChanged();
      }),
      live.on('open', () => this.panes.forEach((p) => p.caseChanged())),
    ];
    this.layout();
  }

  has(id) {
    return this.panes.has(id);
  }

  open(info, { focus = true } = {}) {
    let p = this.panes.get(info.id);
    if (!p) {
      p = new ChatPane({
        info,
        me: this.me,
        vocab: this.vocab,
        presence: this.presence,
        channels: this.channels,
        hooks: {
          isActive: (pane) => this.active === pane.id && (!this.narrow.matches || this.shell.dataset.view === 'pane'),
          // released or transferred: not ours any more, the pane goes
          onGone: (pane, key) => {
            const ref = pane.reference;
            pane.destroy();
            this.remove(pane);
            this.hooks.onNotice(key, { ref });
          },
          onUnread: (pane) => this.updateTab(pane),
          onStatus: (pane) => this.updateTab(pane),
          onReference: (pane) => {
            this.updateTab(pane);
            this.persist();
          },
          onFocus: (pane) => this.mark(pane.id),
          onClose: (pane) => this.remove(pane),
          onRefused: () => this.hooks.onCheckSession(),
          onSessionLost: () => this.hooks.onSessionLost(),
          onQueueHint: () => this.hooks.onQueueHint(),
        },
      });
      p.tab = h('button', { type: 'button', class: 'tab', 'data-case-id': info.id,
        onclick: () => this.activate(info.id, true) }); // prettier-ignore
      this.panes.set(info.id, p);
      this.byEl.set(p.el, p);
      this.root.append(p.el);
      this.tabs.append(p.tab);
      this.io.observe(p.el);
      this.updateTab(p);
      this.persist();
    } else {
      p.updateInfo(info);
    }
    this.activate(info.id, focus);
    return p;
  }

  activate(id, focus) {
    const p = this.panes.get(id);
    if (!p) return;
    this.mark(id);
    this.shell.dataset.view = 'pane';
    if (!this.narrow.matches) p.el.scrollIntoView({ block: 'nearest', inline: 'nearest' });
    if (focus) p.focusReply();
  }

  /** Highlight a pane and its tab without moving focus. */
  mark(id) {
    this.active = id;
    for (const [pid, p] of this.panes) {
      const on = pid === id;
      p.el.classList.toggle('is-active', on);
      if (on) p.tab.setAttribute('aria-current', 'true');
      else p.tab.removeAttribute('aria-current');
    }
    this.queueTab.removeAttribute('aria-current');
  }

  showQueue(focus) {
    this.shell.dataset.view = 'queue';
    this.queueTab.setAttribute('aria-current', 'true');
    for (const p of this.panes.values()) p.tab.removeAttribute('aria-current');
    if (focus) $('#queue-title').focus();
  }

  layout() {
    this.shell.dataset.panes = String(this.panes.size);
    this.empty.hidden = this.panes.size > 0;
    if (this.panes.size === 0) this.shell.dataset.view = 'queue';
  }

  updateTab(p) {
    const tab = p.tab;
    if (!tab) return;
    const children = [h('span', { class: `dot status-${p.status}` }), h('span', { class: 'ref', text: p.reference }),
      h('span', { class: 'sr-only', i18n: `status.${p.status}` })]; // prettier-ignore
    if (p.unread > 0) {
      children.push(h('span', { class: 'badge unread' }, String(p.unread),
        h('span', { class: 'sr-only', i18n: 'tab.unread' }))); // prettier-ignore
    }
    tab.replaceChildren(...children);
    tab.classList.toggle('has-unread', p.unread > 0);
  }

  remove(p) {
    this.io.unobserve(p.el);
    this.byEl.delete(p.el);
    p.tab.remove();
    this.panes.delete(p.id);
    this.persist();
    this.layout();
    if (this.active === p.id) {
      const rest = [...this.panes.keys()];
      if (rest.length) this.activate(rest[rest.length - 1], true);
      else this.showQueue(true);
    }
  }

  /** Fresh queue data: keep open panes' assignment and status current. */
  sync(cases) {
    for (const c of cases) {
      const p = this.panes.get(c.id);
      if (p) p.updateInfo(c);
    }
  }

  persist() {
    const list = [...this.panes.values()].map((p) => ({ ...p.info, reference: p.reference }));
    try {
      sessionStorage.setItem(STORE, JSON.stringify(list));
    } catch {
      /* not remembered */
    }
    this.layout();
    this.hooks.onChanged();
  }

  restore() {
    let list = [];
    try {
      list = JSON.parse(sessionStorage.getItem(STORE) || '[]');
    } catch {
      list = [];
    }
    if (!Array.isArray(list)) return;
    for (const info of list) if (info && typeof info.id === 'string') this.open(info, { focus: false });
    if (this.narrow.matches) this.showQueue(false);
  }

  destroy({ forget }) {
    for (const p of this.panes.values()) {
      p.destroy();
      p.tab.remove();
    }
    this.panes.clear();
    this.io.disconnect();
    for (const off of this.offs) off();
    document.removeEventListener('visibilitychange', this.onVisibility);
    window.removeEventListener('focus', this.onVisibility);
    window.removeEventListener('online', this.onOnline);
    this.queueTab.removeEventListener('click', this.onQueueTab);
    this.narrow.removeEventListener('change', this.onMedia);
    if (forget) {
      try {
        sessionStorage.removeItem(STORE);
      } catch {
        /* nothing */
      }
    }
  }
}
