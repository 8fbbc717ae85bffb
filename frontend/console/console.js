// Helpline staff console: entry point.
import { initStrings, setLang, currentLang, applyStrings, setT } from './strings.js';
import { api, fetchMe, clearCsrf, ApiError } from './api.js';
import { $ } from './dom.js';
import { Auth } from './auth.js';
import { Queue } from './queue.js';
import { Panes } from './panes.js';

const state = { me: null, queue: null, panes: null, auth: null };

function showConsole(me) {
  state.me = me;
  $('#me-name').textContent = me.display_name || me.username || '';
  setT($('#me-role'), `role.${me.role}`);
  $('#view-auth').hidden = true;
  $('#view-console').hidden = false;
  const panes = new Panes({
    me,
    hooks: {
      onSessionLost: () => sessionLost(),
      onCheckSession: () => checkSession(),
      onQueueHint: () => state.queue && state.queue.refresh(),
      // a pane opened or closed: the queue's "Open"/"Show" buttons follow
      onChanged: () => state.queue && state.queue.render(),
    },
  });
  const queue = new Queue({
    me,
    panes,
    hooks: { onSessionLost: () => sessionLost(), onCheckSession: () => checkSession() },
  });
  state.panes = panes;
  state.queue = queue;
  queue.start();
  panes.restore();
  if (!panes.active) $('#queue-title').focus();
}

function teardown({ forget }) {
  if (state.queue) state.queue.stop();
  if (state.panes) state.panes.destroy({ forget });
  state.queue = null;
  state.panes = null;
  state.me = null;
  $('#view-console').hidden = true;
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
