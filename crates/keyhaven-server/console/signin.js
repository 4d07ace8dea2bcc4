// Sign in with email and password (POST /v1/userauth) or with a token (checked with
// GET /v1/me).
import { api, session } from './api.js';
import { h, errorBox } from './dom.js';
import { field } from './dialogs.js';

let pendingNotice = null;
/** A message shown above the form (e.g. why the session ended). */
export function notice(message) {
  pendingNotice = message;
  const slot = document.getElementById('signin-notice');
  if (slot) show(slot);
}

function show(slot) {
  if (!pendingNotice) return;
  slot.replaceChildren(h('div', { class: 'alert alert-info', role: 'status' }, pendingNotice));
  pendingNotice = null;
}

export function mount(main, { next }, { navigate }) {
  const errorSlot = h('div', { 'aria-live': 'assertive' });
  const noticeSlot = h('div', { id: 'signin-notice' });

  const email = h('input', { type: 'email', name: 'email', autocomplete: 'username', required: true });
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const token = h('input', { type: 'password', name: 'token', autocomplete: 'off', required: true, spellcheck: 'false' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Sign in');

  const passwordPanel = h('div', { id: 'panel-password', role: 'tabpanel', 'aria-labelledby': 'tab-password' },
    field('Email', email), field('Password', password));
  const tokenPanel = h('div', { id: 'panel-token', role: 'tabpanel', 'aria-labelledby': 'tab-token', hidden: true },
    field('Access token', token, 'An API token, as avn uses (keyhaven-data/admin-token holds the first admin\u2019s).'));

  let mode = 'password';
  const tabPassword = h('button', { type: 'button', role: 'tab', id: 'tab-password', 'aria-controls': 'panel-password' }, 'Email and password');
  const tabToken = h('button', { type: 'button', role: 'tab', id: 'tab-token', 'aria-controls': 'panel-token' }, 'Token');
  const select = (m, focus) => {
    mode = m;
    const pw = m === 'password';
    tabPassword.setAttribute('aria-selected', String(pw));
    tabToken.setAttribute('aria-selected', String(!pw));
    tabPassword.tabIndex = pw ? 0 : -1;
    tabToken.tabIndex = pw ? -1 : 0;
    passwordPanel.hidden = !pw;
    tokenPanel.hidden = pw;
    for (const i of [email, password]) i.disabled = !pw;
    token.disabled = pw;
    errorSlot.replaceChildren();
    if (focus) (pw ? tabPassword : tabToken).focus();
  };
  tabPassword.addEventListener('click', () => select('password'));
  tabToken.addEventListener('click', () => select('token'));
  const tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'How to sign in' }, tabPassword, tabToken);
  tabs.addEventListener('keydown', (ev) => {
    if (ev.key === 'ArrowRight' || ev.key === 'ArrowLeft') {
      ev.preventDefault();
      select(mode === 'password' ? 'token' : 'password', true);
    }
  });
  select('password');

  const form = h('form', { class: 'card-body', novalidate: false },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'hint' }, 'to the Keyhaven console'),
    tabs, noticeSlot, errorSlot, passwordPanel, tokenPanel, submit);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    errorSlot.replaceChildren();
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      if (mode === 'password') {
        const { body } = await api.signIn(email.value.trim(), password.value);
        session.set(body.token, body.user_email, true);
      } else {
        const t = token.value.trim();
        const { body } = await api.me(t);
        session.set(t, body.user.user, false);
      }
      navigate(next || '/console', { replace: true });
    } catch (err) {
      const hint = mode === 'password'
        ? 'Check the email and password and try again.'
        : 'Check that the token is complete and has not been revoked.';
      errorSlot.replaceChildren(errorBox(err, err.status === 0 ? null : hint));
      (mode === 'password' ? password : token).focus();
      (mode === 'password' ? password : token).select();
    } finally {
      submit.disabled = false;
      submit.textContent = 'Sign in';
    }
  });

  main.replaceChildren(h('div', { class: 'signin' }, h('div', { class: 'card' }, form)));
  show(noticeSlot);
  email.focus();
  return () => {};
}
