// Helpline staff console: entry point.
import { initStrings, setLang, currentLang, applyStrings, setT, onLangChange } from './strings.js';
import { api, fetchMe, clearCsrf, ApiError } from './api.js';
import { $ } from './dom.js';
import { Auth } from './auth.js';
import { Queue } from './queue.js';
import { Panes } from './panes.js';
import { ConsoleLive, Presence, Announcer } from './live.js';
import { loadVocabulary, forgetVocabulary } from './vocab.js';
import { refreshTimers } from './sla.js';
import { TeamView } from './supervisor.js';
import { CannedEditor } from './cannededit.js';
import { CallbackBook, UpcomingCalls } from './callback.js';
import { MailFailures } from './email.js';
import { QuarantineView } from './quarantine.js';
import { NoticesView } from './notices.js';
import { PlatformsView } from './platforms.js';
import { FiguresView } from './figures.js';
import { PartnersView } from './partners.js';
import { confirmFromLink, handoverInLink } from './partner-handover.js';
import { RetentionView } from './retention.js';
import { AwaitingConfirmations } from './confirmations.js';

const SUPERVISOR_ROLES = new Set(['supervisor', 'admin']);
const MAIN_STORE = 'helpline.console.main';
const AGENT_VIEWS = new Set(['notices', 'platforms', 'partners', 'retention']); // main views every role has
const OWN_VIEWS = ['notices', 'platforms', 'figures', 'partners', 'retention']; // built by their modules, hidden in the page

const state = { me: null, queue: null, panes: null, auth: null, live: null, presence: null, team: null, canned: null,
  callbacks: null, mailFailures: null, upcoming: null, quarantine: null, notices: null, platforms: null, figures: null, partners: null, retention: null, confirmations: null }; // prettier-ignore

async function showConsole(me) {
  state.me = me;
  $('#me-name').textContent = me.display_name || me.username || '';
  setT($('#me-role'), `role.${me.role}`);
  $('#view-auth').hidden = true;
  $('#boot').hidden = false;
  let vocab;
  try {
    vocab = await loadVocabulary();
  } catch (e) {
    $('#boot').hidden = true;
    if (e instanceof ApiError && e.status === 401) state.auth.show('login', 'login.error.expired');
    return;
  }
  if (state.me !== me) return; // logged out meanwhile
  $('#boot').hidden = true;
  $('#view-console').hidden = false;

  const live = new ConsoleLive({ hooks: { onCheckSession: () => checkSession() } });
  const presence = new Presence(me);
  const announcer = new Announcer($('#announcer'));
  live.on('open', () => presence.reset());
  live.on('presence', (f) => presence.update(f));
  // a warm handover to a partner changed: the case's pane (if open) shows it again
  live.on('handover', (f) => {
    const p = f && state.panes && state.panes.panes.get(f.case_id);
    if (p) p.handoversChanged();
  });
  // what the queue rows and the panes know of the other channels: waiting callback requests,
  // and mails that were not delivered
  const callbacks = new CallbackBook({ live, hooks: { onSessionLost: () => sessionLost() } });
  const mailFailures = new MailFailures();
  const channels = { callbacks, mailFailures };
  const panes = new Panes({
    me,
    vocab,
    presence,
    live,
    channels,
    hooks: {
      onSessionLost: () => sessionLost(),
      onCheckSession: () => checkSession(),
      onQueueHint: () => state.queue && state.queue.refresh(),
      onNotice: (key, vars) => state.queue && state.queue.notice(key, vars),
      // a pane opened or closed: the queue's "Open"/"Show" buttons follow, and so does presence
      onChanged: () => {
        if (state.queue) state.queue.render();
        live.setViewing(state.panes ? [...state.panes.panes.keys()] : []);
      },
    },
  });
  const queue = new Queue({
    me,
    panes,
    live,
    presence,
    vocab,
    announcer,
    channels,
    hooks: { onSessionLost: () => sessionLost(), onCheckSession: () => checkSession() },
  });
  Object.assign(state, { panes, queue, live, presence, callbacks, mailFailures });
  callbacks.start();
  queue.start();
  panes.restore();
  live.setViewing([...panes.panes.keys()]);
  live.start();

  const supervisor = SUPERVISOR_ROLES.has(me.role);
  $('#views').hidden = !supervisor;
  $('#views-takedown').hidden = false;
  $('#view-btn-work-agent').hidden = supervisor; // supervisors have theirs among their views
  const lost = () => sessionLost();
  state.notices = new NoticesView({ me, live, hooks: { onSessionLost: lost, onOpenCase: (id) => openCase(id) } });
  state.platforms = new PlatformsView({ me, hooks: { onSessionLost: lost } });
  state.partners = new PartnersView({ me, live, hooks: { onSessionLost: lost } });
  state.retention = new RetentionView({ me, hooks: { onSessionLost: lost, onOpenCase: (id) => openCase(id, 'retention') } });
  state.confirmations = new AwaitingConfirmations({ me, live, announcer, hooks: { onSessionLost: lost } });
  state.confirmations.start();
  reportLinks();
  if (supervisor) {
    state.team = new TeamView({ me, live, presence,
      hooks: { onSessionLost: () => sessionLost(), cases: () => (state.queue ? state.queue.cases : []) } }); // prettier-ignore
    state.canned = new CannedEditor({ hooks: { onSessionLost: () => sessionLost() } });
    state.quarantine = new QuarantineView({ hooks: { onSessionLost: () => sessionLost() } });
    state.upcoming = new UpcomingCalls({ book: callbacks, root: $('#upcoming-calls') });
    state.figures = new FiguresView({ hooks: { onSessionLost: lost } });
  }
  let main = 'work';
  try {
    main = sessionStorage.getItem(MAIN_STORE) || 'work';
  } catch {
    main = 'work';
  }
  showMain(supervisor || AGENT_VIEWS.has(main) ? main : 'work', false);
  if (!panes.active && main === 'work') $('#queue-title').focus();
  confirmFromAddress();
}

/** A colleague's link (#confirm-handover=…): confirm the consent they recorded, as the second staff member. */
async function confirmFromAddress() {
  const id = handoverInLink();
  if (!id || !state.me) return;
  history.replaceState(null, '', location.pathname + location.search); // once: a reload does not ask again
  showMain('work', false);
  await confirmFromLink({ id, me: state.me,
    hooks: { onSessionLost: () => sessionLost(), onNotice: (key, vars) => state.queue && state.queue.notice(key, vars) } }); // prettier-ignore
}

/** The console's main views: the work (queue + panes), the team, the canned responses. */
function showMain(name, focus) {
  const views = { work: null, team: state.team, canned: state.canned, quarantine: state.quarantine,
    notices: state.notices, platforms: state.platforms, figures: state.figures, partners: state.partners,
    retention: state.retention }; // prettier-ignore
  if (!(name in views) || (name !== 'work' && !views[name])) name = 'work';
  const shell = $('#view-console');
  shell.dataset.main = name;
  $('#view-team').hidden = name !== 'team';
  $('#view-canned').hidden = name !== 'canned';
  $('#view-quarantine').hidden = name !== 'quarantine';
  for (const v of OWN_VIEWS) $(`#view-${v}`).hidden = name !== v;
  for (const btn of document.querySelectorAll('.view-btn')) {
    if (btn.dataset.main === name) btn.setAttribute('aria-current', 'page');
    else btn.removeAttribute('aria-current');
  }
  for (const [key, view] of Object.entries(views)) {
    if (!view) continue;
    if (key === name) view.show();
    else view.hide();
  }
  try {
    sessionStorage.setItem(MAIN_STORE, name);
  } catch {
    /* not remembered */
  }
  if (focus) {
    const heading = { work: '#queue-title', team: '#team-title', canned: '#canned-view-title', quarantine: '#quarantine-title',
      notices: '#notices-title', platforms: '#platforms-title', figures: '#figures-title', partners: '#partners-title',
      retention: '#retention-title' }[name]; // prettier-ignore
    $(heading).focus();
  }
}

function teardown({ forget }) {
  if (state.queue) state.queue.stop();
  if (state.panes) state.panes.destroy({ forget });
  if (state.live) state.live.stop();
  if (state.presence) state.presence.destroy();
  if (state.team) state.team.destroy();
  if (state.callbacks) state.callbacks.stop();
  if (state.mailFailures) state.mailFailures.clear();
  if (state.upcoming) state.upcoming.destroy();
  if (state.quarantine) state.quarantine.destroy();
  if (state.confirmations) state.confirmations.destroy();
  for (const v of OWN_VIEWS) {
    if (state[v]) state[v].destroy();
    $(`#view-${v}`).hidden = true;
  }
  Object.assign(state, { queue: null, panes: null, live: null, presence: null, team: null, canned: null, me: null,
    callbacks: null, mailFailures: null, upcoming: null, quarantine: null, notices: null, platforms: null, figures: null,
    partners: null, retention: null, confirmations: null }); // prettier-ignore
  $('#view-quarantine').hidden = true;
  $('#views-takedown').hidden = true;
  forgetVocabulary();
  $('#view-console').hidden = true;
  $('#views').hidden = true;
  if (forget) {
    try {
      sessionStorage.removeItem(MAIN_STORE);
    } catch {
      /* nothing */
    }
  }
}

/** The supervisors' server-rendered pages (statistics, the annual report), in the console's language. */
function reportLinks() {
  const lang = `?lang=${currentLang()}`;
  const year = new Date().getFullYear();
  for (const a of document.querySelectorAll('#view-link-statistics, .figures-statistics')) a.href = `/staff/statistics${lang}`;
  for (const [sel, y] of [['#figures-annual-last', year - 1], ['#figures-annual-this', year]]) {
    const a = $(sel);
    a.href = `/staff/report/${y}${lang}`;
    a.textContent = String(y);
  }
}

/** From the notices (or retention) view: the case, in a pane, on its "Notices" (or "Retention") tab. */
function openCase(caseId, tab = 'notices') {
  if (!state.panes) return;
  const known = state.queue && Array.isArray(state.queue.cases) ? state.queue.cases.find((c) => c && c.id === caseId) : null;
  showMain('work', false);
  let pane = state.panes.panes.get(caseId);
  if (pane) state.panes.activate(caseId, false);
  else pane = state.panes.open(known || { id: caseId });
  if (pane && typeof pane.showTab === 'function') pane.showTab(tab, true);
}

/** The session is gone (expired, idle timeout, logged out elsewhere): back to the login form. */
function sessionLost() {
  if (!state.me) return;
  teardown({ forget: false });
  clearCsrf();
  state.auth.show('login', 'login.error.expired');
}

/** A socket was refused: find out whether the whole session has gone. */
async function checkSession() {
  try {
    const me = await fetchMe();
    if (me.stage !== 'done') sessionLost();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) sessionLost();
  }
}

async function logout() {
  const btn = $('#logout');
  btn.disabled = true;
  try {
    await api('POST', '/api/staff/logout');
  } catch {
    /* the session is forgotten here either way */
  }
  btn.disabled = false;
  teardown({ forget: true });
  clearCsrf();
  state.auth.show('login');
}

function wireLanguage() {
  for (const btn of document.querySelectorAll('.lang-switch')) {
    btn.addEventListener('click', async () => {
      const next = currentLang() === 'nl' ? 'en' : 'nl';
      try {
        await setLang(next);
      } catch {
        return;
      }
      for (const b of document.querySelectorAll('.lang-switch')) b.setAttribute('lang', currentLang() === 'nl' ? 'en' : 'nl');
      if (state.queue) state.queue.updateTimes();
      refreshTimers();
    });
    btn.setAttribute('lang', currentLang() === 'nl' ? 'en' : 'nl');
  }
}

async function boot() {
  try {
    await initStrings();
    applyStrings(document);
  } catch {
    /* the Dutch text in the page stays */
  }
  wireLanguage();
  state.auth = new Auth({ onDone: (me) => showConsole(me) });
  $('#logout').addEventListener('click', logout);
  for (const btn of document.querySelectorAll('.view-btn')) {
    btn.addEventListener('click', () => showMain(btn.dataset.main, true));
  }
  window.addEventListener('hashchange', () => confirmFromAddress());
  onLangChange(() => reportLinks());
  let me = null;
  let failed = false;
  try {
    me = await fetchMe();
  } catch (e) {
    failed = !(e instanceof ApiError && e.status === 401);
  }
  $('#boot').hidden = true;
  if (me && me.stage === 'done') showConsole(me);
  else if (me && (me.stage === 'totp' || me.stage === 'enrol')) state.auth.show(me.stage);
  else state.auth.show('login', failed ? 'error.network' : undefined);
}

boot();
