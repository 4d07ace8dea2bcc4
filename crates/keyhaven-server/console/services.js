// The services page: every service of the project, live (polled every second), with its
// state, plan, cloud and role, a name filter and the "Create service" dialog.
import { api } from './api.js';
import { h, fill, setText, syncRows, poll, errorBox } from './dom.js';
import { stateBadge, updateStateBadge, roleChip, updateRoleChip, bytes } from './format.js';
import { modal, field } from './dialogs.js';

const POLL_MS = 1000;

/** Plans and clouds of a project, for the create dialogs (fetched once per page). */
export async function catalog(project) {
  const [type, clouds] = await Promise.all([api.serviceType(project), api.clouds(project)]);
  return { plans: type.body.service_plans || [], clouds: clouds.body.clouds || [] };
}

export function planLabel(p) {
  return `${p.service_plan} (${bytes(p.node_memory_mb * 1024 * 1024)} memory)`;
}

export function cloudLabel(c) {
  return c.cloud_description ? `${c.cloud_name} — ${c.cloud_description}` : c.cloud_name;
}

const enc = encodeURIComponent;

export function mount(main, [project], { navigate }) {
  document.title = `Services · ${project} · Keyhaven`;
  const count = h('p', { class: 'subtitle', 'aria-live': 'polite' }, 'Loading services…');
  const createBtn = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'create-service' }, 'Create service');
  const filter = h('input', { type: 'search', placeholder: 'Filter by name', 'aria-label': 'Filter services by name', autocomplete: 'off' });
  const toolbar = h('div', { class: 'toolbar', hidden: true }, filter);
  const errorSlot = h('div');
  const tbody = h('tbody');
  const table = h('table', { class: 'list', 'aria-label': 'Services' },
    h('thead', {}, h('tr', {}, ['Name', 'State', 'Role', 'Plan', 'Cloud'].map((t) => h('th', { scope: 'col' }, t)))),
    tbody);
  const emptySlot = h('div');
  const loading = h('div', { class: 'card-body', 'aria-busy': 'true' },
    h('span', { class: 'skeleton' }), h('span', { class: 'skeleton' }), h('span', { class: 'skeleton' }));
  const tableWrap = h('div', { class: 'table-wrap', hidden: true }, table);

  main.replaceChildren(h('div', { class: 'page' },
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Services'), count),
      createBtn),
    errorSlot,
    h('section', { class: 'card', 'aria-label': 'Service list' },
      toolbar,
      loading, tableWrap, emptySlot)));

  let services = null;

  const render = () => {
    if (!services) return;
    loading.hidden = true;
    const q = filter.value.trim().toLowerCase();
    const shown = services.filter((s) => s.service_name.toLowerCase().includes(q));
    setText(count, `${project} · ${services.length} ${services.length === 1 ? 'service' : 'services'}`);
    syncRows(tbody, shown, (s) => s.service_name, (s) => {
      const link = h('a', { class: 'name', href: `/console/project/${enc(project)}/services/${enc(s.service_name)}` }, s.service_name);
      return h('tr', {},
        h('td', { 'data-label': 'Name' }, link),
        h('td', { 'data-label': 'State' }, stateBadge(s.state)),
        h('td', { 'data-label': 'Role' }, roleChip(s)),
        h('td', { 'data-label': 'Plan' }),
        h('td', { 'data-label': 'Cloud' }));
    }, (row, s) => {
      const [, state, role, plan, cloud] = row.children;
      updateStateBadge(state.firstChild, s.state);
      updateRoleChip(role.firstChild, s);
      setText(plan, s.plan);
      setText(cloud, s.cloud_name);
    });
    tableWrap.hidden = shown.length === 0;
    toolbar.hidden = services.length === 0;
    if (services.length === 0) {
      if (!emptySlot.firstChild || emptySlot.dataset.kind !== 'none') {
        emptySlot.dataset.kind = 'none';
        fill(emptySlot, h('div', { class: 'empty' },
          h('h2', {}, 'No services yet'),
          h('p', {}, 'A service is one Valkey node. Create one, then give it read replicas from its page.'),
          h('button', { type: 'button', class: 'btn btn-primary', onclick: () => openCreate() }, 'Create your first service')));
      }
    } else if (shown.length === 0) {
      emptySlot.dataset.kind = 'filtered';
      fill(emptySlot, h('div', { class: 'empty' }, h('h2', {}, 'No service matches'), h('p', {}, `No service name contains “${filter.value.trim()}”.`)));
    } else {
      emptySlot.dataset.kind = '';
      emptySlot.replaceChildren();
    }
  };

  filter.addEventListener('input', render);

  const refresh = async () => {
    try {
      const { body } = await api.services(project);
      services = (body.services || []).slice().sort((a, b) => a.service_name.localeCompare(b.service_name));
      errorSlot.replaceChildren();
      render();
    } catch (err) {
      if (err.signedOut) return;
      fill(errorSlot, errorBox(err, 'The list is not up to date; the console keeps trying.'));
      if (!services) { loading.hidden = true; setText(count, 'Could not load the services'); }
    }
  };

  function openCreate() {
    const name = h('input', { type: 'text', name: 'service_name', required: true, autocomplete: 'off', spellcheck: 'false',
      maxlength: '63' });
    const plan = h('select', { name: 'plan', required: true }, h('option', { value: '' }, 'Loading plans…'));
    const cloud = h('select', { name: 'cloud', required: true }, h('option', { value: '' }, 'Loading clouds…'));
    const d = modal({
      title: 'Create service',
      submitLabel: 'Create service',
      busyLabel: 'Creating…',
      content: [
        field('Service name', name, 'Lower-case letters, digits and dashes; it starts with a letter.'),
        field('Service plan', plan),
        field('Cloud', cloud),
      ],
      onSubmit: async () => {
        const { body } = await api.createService(project, {
          service_name: name.value.trim(), service_type: 'valkey', plan: plan.value, cloud: cloud.value,
        });
        navigate(`/console/project/${enc(project)}/services/${enc(body.service.service_name)}`);
      },
    });
    d.submit.disabled = true;
    catalog(project).then(({ plans, clouds }) => {
      fill(plan, plans.map((p) => h('option', { value: p.service_plan }, planLabel(p))));
      plan.value = (plans.find((p) => p.service_plan === 'startup-4') || plans[0] || {}).service_plan || '';
      fill(cloud, clouds.map((c) => h('option', { value: c.cloud_name }, cloudLabel(c))));
      d.submit.disabled = false;
    }, (err) => { if (!err.signedOut) d.error(err, 'The plans and clouds could not be loaded; close the dialog and try again.'); });
  }
  createBtn.addEventListener('click', openCreate);

  const stop = poll(refresh, POLL_MS);
  return stop;
}
