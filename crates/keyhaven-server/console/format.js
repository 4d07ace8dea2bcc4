// How the console shows figures: bytes, milliseconds, times, states and roles.
import { h } from './dom.js';

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let v = Number(n);
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function ms(n) {
  if (n === null || n === undefined) return '—';
  return n >= 10000 ? `${(n / 1000).toFixed(1)} s` : `${Math.round(n)} ms`;
}

export function time(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

const STATE_CLASS = { RUNNING: 'state-running', REBUILDING: 'state-rebuilding', POWEROFF: 'state-poweroff' };
const STATE_TEXT = { RUNNING: 'Running', REBUILDING: 'Rebuilding', POWEROFF: 'Powered off' };

export function stateText(state) { return STATE_TEXT[state] || state; }

/** The state in colour and in words (never colour alone). */
export function stateBadge(state) {
  const el = h('span', { class: `state ${STATE_CLASS[state] || 'state-bad'}`, 'data-state': state });
  el.textContent = stateText(state);
  return el;
}

export function updateStateBadge(el, state) {
  if (el.dataset.state === state) return;
  el.dataset.state = state;
  el.className = `state ${STATE_CLASS[state] || 'state-bad'}`;
  el.textContent = stateText(state);
}

/** The primary a service replicates from, or null for a primary. */
export function primaryOf(svc) {
  const r = svc.keyhaven_replication || {};
  if (r.primary_service) return r.primary_service;
  const link = (svc.service_integrations || []).find(
    (i) => i.integration_type === 'read_replica' && i.dest_service === svc.service_name);
  return link ? link.source_service : null;
}

/** The role in words: "Primary", or "Replica of NAME". */
export function roleText(svc) {
  const p = primaryOf(svc);
  return p ? `Replica of ${p}` : 'Primary';
}

export function roleChip(svc) {
  const el = h('span', { class: 'chip' });
  updateRoleChip(el, svc);
  return el;
}

export function updateRoleChip(el, svc) {
  const p = primaryOf(svc);
  el.className = `chip ${p ? 'chip-replica' : 'chip-primary'}`;
  el.dataset.role = p ? 'replica' : 'primary';
  const t = roleText(svc);
  if (el.textContent !== t) el.textContent = t;
}

/** The lag of a replica: "12 KB · 3 ms", or what is known of it. */
export function lag(bytesBehind, lagMs) {
  if ((bytesBehind === null || bytesBehind === undefined) && (lagMs === null || lagMs === undefined)) return '—';
  return `${bytes(bytesBehind)} · ${ms(lagMs)}`;
}

export function linkText(status) {
  if (status === 'up') return 'Up';
  if (status === 'down') return 'Down';
  return 'Not connected yet';
}
