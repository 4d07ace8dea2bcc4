// A service's overview page: state, plan, cloud, created time, connection information,
// the Read replica section (a primary's replicas with their lag and "Create replica"; a
// replica's primary, lag and "Promote to primary"), settings (PUT service) and deletion.
// Everything is refreshed from the project's service list every second.
import { api } from './api.js';
import { h, fill, setText, syncRows, poll, errorBox, copyText, toast } from './dom.js';
import {
  bytes, ms, time, lag, linkText, stateBadge, updateStateBadge, roleChip, updateRoleChip, primaryOf, stateText,
} from './format.js';
import { modal, field } from './dialogs.js';
import { catalog, planLabel } from './services.js';

const POLL_MS = 1000;
/** A primary's read replicas at most (Aiven's documented limit, which the API enforces). */
const MAX_REPLICAS = 5;
const enc = encodeURIComponent;
const MASK = '••••••••••••';

function card(title, id, ...children) {
  return h('section', { class: 'card', 'aria-labelledby': id },
    h('div', { class: 'card-head' }, h('h2', { id }, title)),
    h('div', { class: 'card-body' }, children));
}

/** A message as a sentence: with its final full stop. */
function sentence(text) {
  const t = (text || '').trim();
  return !t || /[.!?]$/.test(t) ? t : `${t}.`;
}

function fact(label, value) {
  return [h('dt', {}, label), h('dd', {}, value)];
}

function copyButton(label, getText) {
  const b = h('button', { type: 'button', class: 'btn btn-small', 'aria-label': `Copy ${label}` }, 'Copy');
  b.addEventListener('click', async () => {
    const ok = await copyText(getText());
    toast(ok ? `${label} copied` : `Could not copy the ${label.toLowerCase()}; select it and copy it by hand`);
  });
  return b;
}

export function mount(main, [project, name], { navigate }) {
  document.title = `${name} · ${project} · Keyhaven`;
  const servicesHref = `/console/project/${enc(project)}/services`;
  const serviceHref = (s) => `/console/project/${enc(project)}/services/${enc(s)}`;

  let all = null;  // the project's services, by name
  let svc = null;  // this service
  let pending = new Map(); // replicas created here that the list does not show yet
  let revealed = false;
  let finishing = null; // a 202 promotion being finished in the background

  // Head
  const chip = h('span', { class: 'chip' });
  const badge = h('span', { class: 'state' });
  const subtitle = h('p', { class: 'subtitle' });
  const statusSlot = h('div', { 'aria-live': 'polite', 'data-testid': 'status' });
  const errorSlot = h('div');

  // Overview facts
  const fState = h('span');
  const fPlan = h('span');
  const fCloud = h('span');
  const fCreated = h('span');
  const fRole = h('span');
  // Why the node is not as it should be (its cloud lost, a full disk), or that a promoted
  // node's first AOF is still being written.
  const nodeNote = h('div', { 'data-testid': 'node-note', 'aria-live': 'polite' });

  // Connection information
  const cHost = h('span', { class: 'mono' });
  const cPort = h('span', { class: 'mono' });
  const cUser = h('span', { class: 'mono' });
  const cPassword = h('span', { class: 'mono', 'data-testid': 'password' }, MASK);
  const cUri = h('span', { class: 'mono', 'data-testid': 'service-uri' });
  const cReader = h('span', { class: 'mono', 'data-testid': 'reader-uri' });
  const cTls = h('span', { 'data-testid': 'conn-tls' });
  const reveal = h('button', { type: 'button', class: 'btn btn-small', 'aria-pressed': 'false' }, 'Show');
  reveal.addEventListener('click', () => {
    revealed = !revealed;
    reveal.setAttribute('aria-pressed', String(revealed));
    reveal.textContent = revealed ? 'Hide' : 'Show';
    reveal.setAttribute('aria-label', revealed ? 'Hide password' : 'Show password');
    render();
  });
  reveal.setAttribute('aria-label', 'Show password');

  // Read replica section
  const replicaBody = h('div', { 'data-testid': 'read-replica' });
  const replicaHead = h('div', { class: 'card-head' }, h('h2', { id: 'rr-title' }, 'Read replica'));
  const createReplicaBtn = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'create-replica' }, 'Create replica');
  const createWhy = h('p', { class: 'why', id: 'create-replica-why' });
  const promoteBtn = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'promote' }, 'Promote to primary');
  const replicaActions = h('div', {});
  replicaHead.append(replicaActions);

  // Settings (PUT service)
  const settingsError = h('div');
  const planSelect = h('select', { id: 'plan-change' });
  const planApply = h('button', { type: 'button', class: 'btn' }, 'Change plan');
  const protect = h('input', { type: 'checkbox', id: 'protect' });
  const powerBtn = h('button', { type: 'button', class: 'btn' }, 'Power off');
  const powerWhy = h('p', { class: 'hint' });

  // Delete
  const deleteBtn = h('button', { type: 'button', class: 'btn btn-danger', 'data-testid': 'delete-service' }, 'Delete service');
  const deleteWhy = h('p', { class: 'hint', id: 'delete-why' });

  const content = h('div', { hidden: true },
    h('div', { class: 'grid-2' },
      card('Overview', 'ov-title', h('dl', { class: 'facts' },
        fact('State', fState), fact('Role', fRole), fact('Plan', fPlan), fact('Cloud', fCloud), fact('Created', fCreated)),
        nodeNote),
      card('Connection information', 'conn-title', h('dl', { class: 'facts' },
        fact('Host', h('span', { class: 'secret-row' }, cHost, copyButton('Host', () => svc.service_uri_params.host))),
        fact('Port', h('span', { class: 'secret-row' }, cPort, copyButton('Port', () => String(svc.service_uri_params.port)))),
        fact('User', cUser),
        fact('Password', h('span', { class: 'secret-row' }, cPassword, reveal, copyButton('Password', () => svc.service_uri_params.password))),
        fact('Service URI', h('span', { class: 'secret-row' }, cUri, copyButton('Service URI', () => svc.service_uri))),
        fact('TLS', cTls),
        fact('Reader URI', h('span', { class: 'secret-row' }, cReader,
          copyButton('Reader URI', () => svc.connection_info?.valkey_replica_uri || '')))))),
    h('section', { class: 'card', id: 'read-replica', 'aria-labelledby': 'rr-title' }, replicaHead, h('div', { class: 'card-body' }, replicaBody)),
    card('Settings', 'settings-title', settingsError,
      h('div', { class: 'field' }, h('label', { for: 'plan-change' }, 'Service plan'),
        h('div', { class: 'inline-control' }, planSelect, planApply),
        h('p', { class: 'hint' }, 'Applied live: the node gets the new memory limit, connections stay open.')),
      h('div', { class: 'field' }, h('span', { class: 'label' }, 'Termination protection'),
        h('label', { class: 'check' }, protect, 'Protect this service from deletion and power-off')),
      h('div', { class: 'field' }, h('span', { class: 'label' }, 'Power'), h('div', {}, powerBtn), powerWhy)),
    h('section', { class: 'card', 'aria-labelledby': 'del-title' },
      h('div', { class: 'card-head' }, h('h2', { id: 'del-title' }, 'Delete service'), deleteBtn),
      h('div', { class: 'card-body' }, h('p', { class: 'card-note' }, 'Deleting stops the Valkey node and deletes its data. It cannot be undone.'), deleteWhy)));

  const loading = h('div', { class: 'card' }, h('div', { class: 'card-body', 'aria-busy': 'true' },
    h('p', { class: 'hint', role: 'status' }, 'Loading the service…'),
    h('span', { class: 'skeleton' }), h('span', { class: 'skeleton' }), h('span', { class: 'skeleton' })));
  const missing = h('div', { class: 'card', hidden: true }, h('div', { class: 'empty' },
    h('h2', {}, `There is no service “${name}” in ${project}`),
    h('p', {}, 'It may have been deleted.'),
    h('a', { class: 'btn', href: servicesHref }, 'Back to services')));

  main.replaceChildren(h('div', { class: 'page' },
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: servicesHref }, 'Services'), ' / ', name),
    h('div', { class: 'page-head' },
      h('div', {}, h('div', { class: 'title-row' }, h('h1', {}, name), chip, badge), subtitle)),
    statusSlot, errorSlot, loading, missing, content));
  chip.hidden = true;
  badge.hidden = true;

  function replicasOf(s) {
    const listed = (s.keyhaven_replication?.replicas || []).map((r) => ({ ...r, svc: all.get(r.service_name) }));
    for (const [n, created] of pending) {
      if (listed.some((r) => r.service_name === n)) { pending.delete(n); continue; }
      listed.push({ service_name: n, state: created.state, link_status: null, bytes_behind: null, lag_ms: null, svc: created });
    }
    return listed.sort((a, b) => a.service_name.localeCompare(b.service_name));
  }

  function syncCell(r) {
    const rep = r.svc?.keyhaven_replication;
    if (r.state === 'RUNNING') return 'In sync';
    if (r.state === 'POWEROFF') return 'Powered off';
    if (rep?.sync_in_progress) {
      const pct = rep.sync_progress_percent;
      const upd = (r.svc.node_states?.[0]?.progress_updates || [])[0];
      const label = pct === null || pct === undefined ? 'Syncing' : `Syncing ${pct} %`;
      return h('span', { class: 'secret-row' },
        h('progress', { max: '100', value: String(pct ?? 0), 'aria-label': `Sync progress of ${r.service_name}` }),
        h('span', { 'data-testid': 'sync-progress' }, upd && upd.max ? `${label} (${bytes(upd.current)} of ${bytes(upd.max)})` : label));
    }
    return h('span', { 'data-testid': 'sync-progress' }, 'Starting the first sync…');
  }

  function renderPrimarySection(s) {
    const replicas = replicasOf(s);
    fill(replicaActions, h('div', {}, createReplicaBtn, createWhy));
    let why = '';
    if (replicas.length >= MAX_REPLICAS) why = `A primary can have at most ${MAX_REPLICAS} read replicas; ${name} has ${replicas.length}.`;
    else if (s.state === 'POWEROFF') why = `${name} is powered off; power it on to create replicas.`;
    createReplicaBtn.disabled = Boolean(why);
    if (why) createReplicaBtn.setAttribute('aria-describedby', 'create-replica-why'); else createReplicaBtn.removeAttribute('aria-describedby');
    setText(createWhy, why);
    createWhy.hidden = !why;

    let table = replicaBody.querySelector('table');
    if (!replicas.length) {
      fill(replicaBody,
        h('p', { class: 'card-note', 'data-testid': 'no-primary' }, `${name} is a primary: it has no primary of its own.`),
        h('div', { class: 'empty' }, h('h3', {}, 'No read replicas yet'),
          h('p', {}, 'A read replica follows every write of this service and serves reads; it can be promoted to an independent primary later.')));
      return;
    }
    if (!table) {
      table = h('table', { class: 'list', 'aria-label': `Read replicas of ${name}` },
        h('thead', {}, h('tr', {}, ['Replica', 'State', 'Link', 'Lag (bytes · ms)', 'Sync'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody'));
      fill(replicaBody, h('p', { class: 'card-note', 'data-testid': 'no-primary' }, `${name} is a primary: it has no primary of its own. Its read replicas:`), h('div', { class: 'table-wrap' }, table));
    }
    syncRows(table.tBodies[0], replicas, (r) => r.service_name, (r) => h('tr', {},
      h('td', { 'data-label': 'Replica' }, h('a', { class: 'name', href: serviceHref(r.service_name) }, r.service_name)),
      h('td', { 'data-label': 'State' }, stateBadge(r.state)),
      h('td', { 'data-label': 'Link' }),
      h('td', { 'data-label': 'Lag', class: 'num', 'data-testid': 'lag' }),
      h('td', { 'data-label': 'Sync' })), (row, r) => {
      const [, st, link, lagCell, sync] = row.children;
      updateStateBadge(st.firstChild, r.state);
      setText(link, linkText(r.link_status));
      setText(lagCell, lag(r.bytes_behind, r.lag_ms));
      const next = syncCell(r);
      if (typeof next === 'string') setText(sync, next); else fill(sync, next);
    });
  }

  function renderReplicaSection(s, primary) {
    const rep = s.keyhaven_replication || {};
    fill(replicaActions, promoteBtn);
    const promoting = (s.service_integrations || []).some((i) => i.dest_service === name && !i.active);
    promoteBtn.disabled = promoting || Boolean(finishing);
    setText(promoteBtn, promoting || finishing ? 'Promotion in progress…' : 'Promote to primary');
    let dl = replicaBody.querySelector('dl');
    if (!dl || dl.dataset.primary !== primary) {
      dl = h('dl', { class: 'facts', 'data-primary': primary },
        fact('Primary', h('a', { href: serviceHref(primary), 'data-testid': 'primary-link' }, primary)),
        fact('Link', h('span', { 'data-f': 'link' })),
        fact('Lag', h('span', { 'data-f': 'lag', 'data-testid': 'lag', class: 'num' })),
        fact('Last contact', h('span', { 'data-f': 'contact' })),
        fact('Sync', h('span', { 'data-f': 'sync' })));
      fill(replicaBody, h('p', { class: 'card-note' }, `${name} is a read replica: it follows every write of its primary and serves reads.`), dl);
    }
    const f = (k) => dl.querySelector(`[data-f="${k}"]`);
    setText(f('link'), linkText(rep.link_status));
    const behind = rep.bytes_behind === null || rep.bytes_behind === undefined ? 'bytes behind not measured' : `${bytes(rep.bytes_behind)} behind`;
    setText(f('lag'), `${behind} · ${ms(rep.lag_ms)}`);
    setText(f('contact'), rep.seconds_since_last_contact === null || rep.seconds_since_last_contact === undefined ? '—' : `${rep.seconds_since_last_contact} s ago`);
    const sync = syncCell({ service_name: name, state: s.state, svc: s });
    if (typeof sync === 'string') setText(f('sync'), sync); else fill(f('sync'), sync);
  }

  function render() {
    if (!all) return;
    const s = all.get(name) || null;
    loading.hidden = true;
    missing.hidden = Boolean(s);
    content.hidden = !s;
    chip.hidden = !s;
    badge.hidden = !s;
    svc = s;
    if (!s) return;
    updateRoleChip(chip, s);
    updateStateBadge(badge, s.state);
    setText(subtitle, `Valkey · ${s.plan} · ${s.cloud_name}`);
    setText(fState, stateText(s.state));
    setText(fPlan, s.plan);
    setText(fCloud, s.cloud_description ? `${s.cloud_name} (${s.cloud_description})` : s.cloud_name);
    setText(fCreated, time(s.create_time));
    const rep = s.keyhaven_replication || {};
    const note = rep.error
      ? h('div', { class: 'alert alert-warn', role: 'status' }, h('strong', {}, 'The node needs attention'), h('p', {}, sentence(rep.error)))
      : rep.aof_pending
        ? h('p', { class: 'hint' }, 'Its first AOF is being written: until it is, a crash of the node restarts it from its last snapshot.')
        : null;
    if ((nodeNote.textContent || '') !== (note?.textContent || '')) fill(nodeNote, note ? [note] : []);
    const primary = primaryOf(s);
    setText(fRole, primary ? `Read replica of ${primary}` : 'Primary');
    const p = s.service_uri_params || {};
    setText(cHost, p.host);
    setText(cPort, p.port);
    setText(cUser, p.user);
    setText(cPassword, revealed ? p.password : MASK);
    setText(cUri, revealed ? s.service_uri : s.service_uri.replace(`:${p.password}@`, `:${MASK}@`));
    const tls = (s.components || [])[0]?.ssl;
    setText(cTls, tls ? 'On: verify with the project CA (avn project ca-get)' : 'Off (valkey_ssl: false)');
    const reader = s.connection_info?.valkey_replica_uri;
    setText(cReader, !reader
      ? 'None (a read replica has no reader endpoint)'
      : revealed ? reader : reader.replace(`:${p.password}@`, `:${MASK}@`));

    if (finishing && !primary) {
      finishing = null;
      fill(statusSlot, h('div', { class: 'alert alert-ok', role: 'status' },
        h('strong', {}, `${name} is now an independent primary.`),
        h('p', {}, 'Keyhaven finished the promotion in the background.')));
    }
    if (primary) renderReplicaSection(s, primary); else renderPrimarySection(s);

    // Settings
    if (document.activeElement !== planSelect && planSelect.dataset.plan !== s.plan) {
      planSelect.dataset.plan = s.plan;
      planSelect.value = s.plan;
    }
    protect.checked = Boolean(s.termination_protection);
    // A primary's replicas, with those just created here that the list does not show yet.
    const replicaNames = primary ? [] : replicasOf(s).map((r) => r.service_name);
    const hasReplicas = replicaNames.length > 0;
    setText(powerBtn, s.state === 'POWEROFF' ? 'Power on' : 'Power off');
    powerBtn.disabled = s.state !== 'POWEROFF' && hasReplicas;
    setText(powerWhy, powerBtn.disabled ? `${name} has read replicas; a primary with replicas keeps running.` :
      (s.state === 'POWEROFF' ? 'Powered off: no process runs; its data and port are kept.' : 'Powering off stops the node and keeps its data and port.'));

    // Delete
    deleteBtn.disabled = replicaNames.length > 0;
    setText(deleteWhy, replicaNames.length ? `${name} has read replicas (${replicaNames.join(', ')}); promote or delete them first.` : '');
    if (replicaNames.length) deleteBtn.setAttribute('aria-describedby', 'delete-why'); else deleteBtn.removeAttribute('aria-describedby');
  }

  const refresh = async () => {
    try {
      const { body } = await api.services(project);
      all = new Map((body.services || []).map((s) => [s.service_name, s]));
      errorSlot.replaceChildren();
      render();
    } catch (err) {
      if (err.signedOut) return;
      fill(errorSlot, errorBox(err, 'What this page shows may be out of date; the console keeps trying.'));
      if (!all) loading.hidden = true;
    }
  };

  // Create replica
  createReplicaBtn.addEventListener('click', () => {
    const taken = new Set(all ? all.keys() : []);
    let n = 1;
    while (taken.has(`${name}-replica-${n}`)) n += 1;
    const nameInput = h('input', { type: 'text', name: 'service_name', required: true, autocomplete: 'off', spellcheck: 'false', maxlength: '63', value: `${name}-replica-${n}` });
    const provider = h('select', { name: 'provider', required: true }, h('option', { value: '' }, 'Loading…'));
    const region = h('select', { name: 'cloud', required: true }, h('option', { value: '' }, 'Loading…'));
    const plan = h('select', { name: 'plan', required: true }, h('option', { value: '' }, 'Loading…'));
    const primaryMem = svc.node_memory_mb;
    const d = modal({
      title: `Create a read replica of ${name}`,
      submitLabel: 'Create',
      busyLabel: 'Creating…',
      content: [
        h('p', {}, `The replica copies all data of ${name}, then follows its writes. It shows REBUILDING until it has caught up.`),
        field('Service name', nameInput),
        h('div', { class: 'row-2' }, field('Cloud provider', provider), field('Region', region)),
        field('Service plan', plan, `Read replicas run on Startup plans with at least the memory of ${name} (${bytes(primaryMem * 1024 * 1024)}).`),
      ],
      onSubmit: async () => {
        const { body } = await api.createService(project, {
          service_name: nameInput.value.trim(), service_type: 'valkey', plan: plan.value, cloud: region.value,
          service_integrations: [{ integration_type: 'read_replica', source_service: name }],
        });
        pending.set(body.service.service_name, body.service);
        all.set(body.service.service_name, body.service);
        render();
        toast(`Creating ${body.service.service_name}`);
      },
    });
    d.submit.disabled = true;
    catalog(project).then(({ plans, clouds }) => {
      const providers = [...new Set(clouds.map((c) => c.provider || 'local'))];
      fill(provider, providers.map((p) => h('option', { value: p }, p)));
      const primaryCloud = clouds.find((c) => c.cloud_name === svc.cloud_name);
      provider.value = primaryCloud?.provider || providers[0];
      const fillRegions = () => {
        const here = clouds.filter((c) => (c.provider || 'local') === provider.value);
        // A cloud whose host is lost (no heartbeat) can take no new node.
        fill(region, here.map((c) => h('option', { value: c.cloud_name, disabled: c.keyhaven_alive === false },
          `${c.geo_region || c.cloud_name} — ${c.cloud_name}${c.keyhaven_host ? ` (${c.keyhaven_host})` : ''}${c.keyhaven_alive === false ? ', host lost' : ''}`)));
        if (here.some((c) => c.cloud_name === svc.cloud_name)) region.value = svc.cloud_name;
      };
      provider.addEventListener('change', fillRegions);
      fillRegions();
      const allowed = plans.filter((p) => p.read_replica_allowed && p.node_memory_mb >= primaryMem);
      fill(plan, allowed.map((p) => h('option', { value: p.service_plan }, planLabel(p))));
      if (allowed.some((p) => p.service_plan === svc.plan)) plan.value = svc.plan;
      d.submit.disabled = allowed.length === 0;
      if (!allowed.length) d.error({ message: 'No plan can hold a replica of this service.' });
    }, (err) => { if (!err.signedOut) d.error(err, 'The plans and clouds could not be loaded; close the dialog and try again.'); });
  });

  // Promote
  promoteBtn.addEventListener('click', () => {
    const primary = primaryOf(svc);
    const anyway = h('button', { type: 'button', class: 'btn btn-danger', hidden: true, 'data-testid': 'promote-anyway' }, 'Promote anyway');
    const lossNote = h('div');
    let result = null;
    const promote = async (lossy) => {
      const { body } = await api.integrations(project, name);
      const link = (body.service_integrations || []).find((i) => i.integration_type === 'read_replica' && i.dest_service === name);
      if (!link) {
        result = { status: 200, body: { message: `${name} has no primary any more.` } };
        return;
      }
      result = await api.deleteIntegration(project, link.service_integration_id, lossy);
    };
    const after = () => {
      if (result.status === 202 || result.body?.state === 'promoting') {
        finishing = true;
        fill(statusSlot, h('div', { class: 'alert alert-info', role: 'status', 'data-testid': 'promotion-finishing' },
          h('strong', {}, `${name} is being promoted: Keyhaven is finishing the last step in the background.`),
          h('p', {}, `${sentence(result.body?.message)} This page shows it as a primary when it is done.`)));
      } else {
        fill(statusSlot, h('div', { class: 'alert alert-ok', role: 'status' },
          h('strong', {}, `${name} is now an independent primary.`), h('p', {}, sentence(result.body?.message))));
      }
      refresh();
    };
    const explain = (d, err) => {
      const rep = svc?.keyhaven_replication || {};
      const canForce = ['replica_behind', 'primary_unresponsive', 'primary_unavailable'].includes(err.code);
      const what = {
        replica_behind: `${name} did not catch up with ${primary} in time (it was behind by ${bytes(rep.bytes_behind)}, ${ms(rep.lag_ms)}). Nothing was changed and writes on ${primary} resumed. Try again when ${name}'s lag is low, or reduce the write load on ${primary}.`,
        primary_unresponsive: `${primary} runs but does not answer, so its last writes cannot be confirmed. Nothing was changed. Try again in a moment.`,
        primary_unavailable: `${primary} is not running, so its last writes cannot be confirmed. Nothing was changed.`,
        promotion_in_progress: 'A promotion of this replica is running right now; it finishes by itself.',
        replica_not_ready: `${name} is still in its first sync; wait until it is RUNNING.`,
      }[err.code] || (err.status === 503 ? 'Nothing was changed; try again in a moment.' : null);
      d.error(err, what);
      anyway.hidden = !canForce;
      if (canForce) {
        const behind = rep.bytes_behind === null || rep.bytes_behind === undefined ? ''
          : ` At last look ${name} was ${bytes(rep.bytes_behind)} behind${rep.lag_ms === null || rep.lag_ms === undefined ? '' : ` (${ms(rep.lag_ms)})`}.`;
        fill(lossNote, h('div', { class: 'alert alert-warn' },
          h('strong', {}, 'Promote anyway?'),
          h('p', {}, `Promoting anyway detaches ${name} at once, without waiting for the last writes of ${primary}. Writes that ${primary} accepted and ${name} has not received yet are lost, although their clients were told they succeeded.${behind}`)));
      }
    };
    const d = modal({
      title: `Promote ${name} to primary?`,
      submitLabel: 'Promote',
      busyLabel: 'Promoting…',
      content: [
        h('p', {}, 'What happens:'),
        h('ul', {},
          h('li', {}, `Writes on ${primary} pause briefly (well under a second) while ${name} receives the last of them; no acknowledged write is lost.`),
          h('li', {}, `${name} stops replicating and becomes an independent primary that accepts writes.`),
          h('li', {}, `${primary} keeps running with its data; the two no longer share writes.`),
          h('li', {}, h('strong', {}, 'This cannot be undone.'), ' To replicate again, create a new replica.')),
        lossNote,
      ],
      onSubmit: async (dd) => {
        try {
          await promote(false);
        } catch (err) {
          if (err.signedOut) throw err;
          explain(dd, err);
          dd.relabel('Try again');
          return false;
        }
        after();
        return true;
      },
    });
    d.el.querySelector('.dialog-foot').prepend(anyway);
    anyway.addEventListener('click', async () => {
      d.clearError();
      anyway.disabled = true;
      anyway.textContent = 'Promoting…';
      try {
        await promote(true);
        d.close();
        after();
      } catch (err) {
        if (!err.signedOut) explain(d, err);
      } finally {
        anyway.disabled = false;
        anyway.textContent = 'Promote anyway';
      }
    });
  });

  // Settings
  catalogPlans();
  async function catalogPlans() {
    try {
      const { plans } = await catalog(project);
      fill(planSelect, plans.map((p) => h('option', { value: p.service_plan }, planLabel(p))));
      if (svc) planSelect.value = svc.plan;
    } catch { /* the plan field stays empty; the list error shows elsewhere */ }
  }
  const update = async (req, what) => {
    settingsError.replaceChildren();
    try {
      const { body } = await api.updateService(project, name, req);
      all.set(name, body.service);
      render();
      toast(what);
    } catch (err) {
      if (err.signedOut) return;
      fill(settingsError, errorBox(err));
      render();
    }
  };
  planApply.addEventListener('click', () => update({ plan: planSelect.value }, `Plan changed to ${planSelect.value}`));
  protect.addEventListener('change', () => update({ termination_protection: protect.checked },
    protect.checked ? 'Termination protection on' : 'Termination protection off'));
  powerBtn.addEventListener('click', () => {
    const on = svc.state === 'POWEROFF';
    update({ powered: on }, on ? 'Powering on' : 'Powering off');
  });

  // Delete
  deleteBtn.addEventListener('click', () => {
    const confirmInput = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false' });
    const d = modal({
      title: `Delete ${name}?`,
      submitLabel: 'Delete service',
      busyLabel: 'Deleting…',
      submitClass: 'btn-danger',
      content: [
        h('p', {}, `This stops the Valkey node of ${name} and deletes all its data. It cannot be undone.`),
        field(`Type ${name} to confirm`, confirmInput),
      ],
      errorHint: (err) => err.code === 'termination_protected'
        ? 'Turn termination protection off in Settings first, then delete the service.'
        : (err.code === 'service_has_replicas' ? 'Promote or delete its replicas first.' : null),
      onSubmit: async () => {
        await api.deleteService(project, name);
        toast(`${name} deleted`);
        navigate(servicesHref, { keepToast: true });
      },
    });
    d.submit.disabled = true;
    confirmInput.addEventListener('input', () => { d.submit.disabled = confirmInput.value !== name; });
  });

  const stop = poll(refresh, POLL_MS);
  return stop;
}
