// The console's shell: client-side routing under /console, the top bar (project switcher,
// sign-out) and the session. Pages are modules with mount(main, params, ctx) → unmount.
import { api, session, whenSignedOut } from './api.js';
import { h, fill, toast, clearToast } from './dom.js';
import * as signin from './signin.js';
import * as services from './services.js';
import * as overview from './overview.js';

const main = document.getElementById('main');
const tools = document.getElementById('topbar-tools');
const projectSelect = document.getElementById('project-select');
const who = document.getElementById('who');

let unmount = null;
let projects = null; // names, loaded once per sign-in
let current = null;  // the project of the page shown

const ROUTES = [
  [/^\/console\/signin\/?$/, 'signin'],
  [/^\/console\/?$/, 'home'],
  [/^\/console\/project\/([^/]+)\/?$/, 'project'],
  [/^\/console\/project\/([^/]+)\/services\/?$/, 'services'],
  [/^\/console\/project\/([^/]+)\/services\/([^/]+)\/?$/, 'overview'],
];

export function navigate(path, { replace = false, keepToast = false } = {}) {
  route.keepToast = keepToast;
  if (replace) history.replaceState(null, '', path); else history.pushState(null, '', path);
  route();
}

function closeDialogs() {
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
}

async function signOut(message) {
  const token = session.token;
  const minted = session.minted;
  session.clear();
  projects = null;
  // A token this console minted at sign-in is revoked; a pasted one is the user's to keep.
  if (token && minted) api.revoke(token).catch(() => {});
  closeDialogs();
  const next = location.pathname.startsWith('/console/signin') ? '' : `?next=${encodeURIComponent(location.pathname)}`;
  navigate(`/console/signin${next}`, { replace: true });
  if (message) signin.notice(message);
}

whenSignedOut(() => {
  if (session.token) signOut('Your session has ended (the token is no longer valid). Sign in again.');
});

document.getElementById('sign-out').addEventListener('click', () => signOut('You are signed out.'));

projectSelect.addEventListener('change', () => {
  navigate(`/console/project/${encodeURIComponent(projectSelect.value)}/services`);
});

// Links inside the console change the page without a reload.
document.addEventListener('click', (ev) => {
  const a = ev.target.closest('a[href]');
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith('/console') || a.target) return;
  ev.preventDefault();
  navigate(url.pathname + url.search);
});
window.addEventListener('popstate', route);

async function loadProjects() {
  if (projects) return projects;
  const { body } = await api.projects();
  projects = (body.projects || []).map((p) => p.project_name);
  return projects;
}

function showShell(project) {
  tools.hidden = false;
  who.textContent = session.email;
  const names = projects || [];
  if (projectSelect.options.length !== names.length || [...projectSelect.options].some((o, i) => o.value !== names[i])) {
    fill(projectSelect, names.map((n) => h('option', { value: n }, n)));
  }
  if (project) projectSelect.value = project;
}

function page(title, ...children) {
  return h('div', { class: 'page' }, h('div', { class: 'page-head' }, h('h1', {}, title)), children);
}

async function route() {
  if (unmount) { unmount(); unmount = null; }
  closeDialogs();
  if (!route.keepToast) clearToast();
  route.keepToast = false;
  const path = location.pathname;
  const match = ROUTES.map(([re, name]) => [name, path.match(re)]).find(([, m]) => m);
  const [name, m] = match || ['missing', null];
  const params = m ? m.slice(1).map(decodeURIComponent) : [];

  if (name === 'signin') {
    tools.hidden = true;
    document.title = 'Sign in · Keyhaven';
    const next = new URLSearchParams(location.search).get('next');
    unmount = signin.mount(main, { next: next && next.startsWith('/console') ? next : null }, { navigate });
    return;
  }
  if (!session.token) {
    navigate(`/console/signin?next=${encodeURIComponent(path)}`, { replace: true });
    return;
  }
  fill(main, h('p', { class: 'loading', role: 'status' }, 'Loading…'));
  try {
    await loadProjects();
  } catch (err) {
    if (err.signedOut) return;
    fill(main, page('The console could not load your projects',
      h('div', { class: 'alert alert-error', role: 'alert' }, h('strong', {}, err.message)),
      h('button', { class: 'btn', type: 'button', onclick: route }, 'Try again')));
    return;
  }
  if (name === 'home' || name === 'project') {
    const first = name === 'project' ? params[0] : (current && projects.includes(current) ? current : projects[0]);
    if (!first) {
      showShell(null);
      fill(main, page('No projects', h('div', { class: 'card' }, h('div', { class: 'empty' },
        h('h2', {}, 'You are not a member of any project'),
        h('p', {}, 'Ask an administrator to invite you to one (POST /v1/project/PROJECT/invite).')))));
      return;
    }
    navigate(`/console/project/${encodeURIComponent(first)}/services`, { replace: true });
    return;
  }
  if (name === 'missing') {
    showShell(current);
    document.title = 'Not found · Keyhaven';
    fill(main, page('Page not found', h('div', { class: 'card' }, h('div', { class: 'empty' },
      h('h2', {}, 'There is no page at this address'),
      h('p', {}, path),
      h('a', { class: 'btn', href: '/console' }, 'Go to your services')))));
    return;
  }
  current = params[0];
  showShell(current);
  if (!projects.includes(current)) {
    const opt = h('option', { value: current }, current);
    projectSelect.append(opt);
    projectSelect.value = current;
  }
  const ctx = { navigate, project: current, toast };
  unmount = name === 'services' ? services.mount(main, params, ctx) : overview.mount(main, params, ctx);
  main.focus({ preventScroll: true });
}

route();
