// Login: password -> TOTP code, or first-time TOTP enrolment.
import { api, fetchMe, ApiError } from './api.js';
import { setT } from './strings.js';
import { $, formatSeconds } from './dom.js';

const MAX_LOCK_MS = 60 * 60 * 1000;

export class Auth {
  constructor({ onDone }) {
    this.onDone = onDone;
    this.view = $('#view-auth');
    this.errorEl = $('#login-error');
    this.forms = { login: $('#form-login'), totp: $('#form-totp'), enrol: $('#form-enrol') };
    this.submits = { login: $('#login-submit'), totp: $('#totp-submit'), enrol: $('#enrol-submit') };
    this.lockTimer = null;
    this.forms.login.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submitLogin();
    });
    this.forms.totp.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submitCode('totp', '/api/staff/login/totp', $('#totp-code'));
    });
    this.forms.enrol.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submitCode('enrol', '/api/staff/totp/enrol', $('#enrol-code'));
    });
    for (const btn of document.querySelectorAll('.auth-restart')) {
      btn.addEventListener('click', () => this.restart());
    }
  }

  show(stage, errorKey, vars) {
    this.stage = stage;
    this.view.hidden = false;
    for (const [name, form] of Object.entries(this.forms)) form.hidden = name !== stage;
    this.clearError();
    if (errorKey) this.error(errorKey, vars);
    if (stage === 'enrol') this.loadEnrolment();
    const first = {
      login: $('#login-username').value ? $('#login-password') : $('#login-username'),
      totp: $('#totp-code'),
      enrol: $('#enrol-code'),
    }[stage];
    if (first) first.focus();
  }

  hide() {
    this.view.hidden = true;
    this.clearError();
    $('#login-password').value = '';
    $('#totp-code').value = '';
    $('#enrol-code').value = '';
    $('#enrol-secret').textContent = '';
    $('#enrol-qr').removeAttribute('src');
  }

  error(key, vars) {
    setT(this.errorEl, key, vars);
    this.errorEl.hidden = false;
  }

  clearError() {
    this.errorEl.hidden = true;
    this.errorEl.textContent = '';
    this.errorEl.removeAttribute('data-i18n');
  }

  setBusy(stage, busy) {
    this.forms[stage].setAttribute('aria-busy', busy ? 'true' : 'false');
    if (!this.lockTimer) this.submits[stage].disabled = busy;
  }

  async submitLogin() {
    const user = $('#login-username');
    const pass = $('#login-password');
    const username = user.value.trim();
    if (!username || !pass.value) {
      this.error('login.error.missing');
      (username ? pass : user).focus();
      return;
    }
    this.clearError();
    this.setBusy('login', true);
    try {
      const r = await api('POST', '/api/staff/login', { username, password: pass.value });
      pass.value = '';
      await this.refreshCsrf();
      await this.next(r && r.stage);
    } catch (e) {
      this.fail(e, 'login');
    } finally {
      this.setBusy('login', false);
    }
  }

  async submitCode(stage, path, input) {
    const code = input.value.replace(/\D/g, '');
    if (code.length !== 6) {
      this.error('login.error.code_format');
      input.focus();
      return;
    }
    this.clearError();
    this.setBusy(stage, true);
    try {
      const r = await api('POST', path, { code });
      input.value = '';
      await this.next(r && r.stage);
    } catch (e) {
      this.fail(e, stage);
    } finally {
      this.setBusy(stage, false);
    }
  }

  async refreshCsrf() {
    try {
      await fetchMe();
    } catch {
      /* not fatal here: the next POST will say so */
    }
  }

  async next(stage) {
    if (stage === 'done') {
      const me = await fetchMe();
      this.hide();
      this.onDone(me);
    } else if (stage === 'totp' || stage === 'enrol') {
      this.show(stage);
    } else {
      this.show('login', 'error.generic', { code: String(stage) });
    }
  }

  async loadEnrolment() {
    const secretEl = $('#enrol-secret');
    secretEl.textContent = '';
    $('#enrol-qr').setAttribute('src', '/api/staff/totp/qr.svg');
    try {
      const r = await api('GET', '/api/staff/totp/enrolment');
      const secret = String((r && r.secret) || '').replace(/\s+/g, '');
      secretEl.textContent = (secret.match(/.{1,4}/g) || []).join(' ');
    } catch (e) {
      this.fail(e, 'enrol');
    }
  }

  /** Back to username + password (also forgets a half-finished session). */
  async restart() {
    try {
      await api('POST', '/api/staff/logout');
    } catch {
      /* nothing to forget */
    }
    this.show('login');
  }

  lockFor(stage, seconds) {
    const ms = Math.min(MAX_LOCK_MS, Math.max(1, Number(seconds) || 0) * 1000);
    clearTimeout(this.lockTimer);
    for (const b of Object.values(this.submits)) b.disabled = true;
    this.lockTimer = setTimeout(() => {
      this.lockTimer = null;
      for (const b of Object.values(this.submits)) b.disabled = false;
      this.clearError();
    }, ms);
  }

  fail(e, stage) {
    if (!(e instanceof ApiError)) {
      this.error('error.generic', { code: 'client' });
      return;
    }
    const retry = e.details && e.details.retry_after;
    if (e.status === 0) {
      this.error('error.network');
    } else if (e.code === 'wrong_credentials') {
      this.error('login.error.credentials');
      $('#login-password').value = '';
      $('#login-password').focus();
    } else if (e.code === 'wrong_code') {
      this.error('login.error.code');
      const input = stage === 'enrol' ? $('#enrol-code') : $('#totp-code');
      input.value = '';
      input.focus();
    } else if (e.status === 423) {
      if (retry) {
        const [unit, vars] = formatSeconds(retry);
        this.error(`login.error.locked_${unit}`, vars);
        this.lockFor(stage, retry);
      } else this.error('login.error.locked');
    } else if (e.status === 429) {
      if (retry) {
        const [unit, vars] = formatSeconds(retry);
        this.error(`login.error.rate_${unit}`, vars);
        this.lockFor(stage, retry);
      } else this.error('login.error.rate');
    } else if (e.status === 401 && stage !== 'login') {
      // the half-finished login expired: start again
      this.show('login', 'login.error.expired');
    } else {
      this.error('error.generic', { code: e.code });
    }
  }
}
