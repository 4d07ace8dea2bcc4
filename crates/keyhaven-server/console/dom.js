// A few DOM helpers. Elements are built with h(), never from HTML strings, so an API
// string is always text, never markup.

/** h('a', {href: '/x', class: 'name'}, 'text', child, ...). `on*` keys add listeners. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Sets text only when it changed (no flicker, no lost selection). */
export function setText(el, text) {
  const t = String(text ?? '');
  if (el.textContent !== t) el.textContent = t;
}

/**
 * Keeps a list's rows in the order of `items` without rebuilding rows that stay: a row's
 * element (and whatever has focus in it) survives a poll. `create(item)` makes a row,
 * `update(row, item)` refreshes it.
 */
export function syncRows(parent, items, key, create, update) {
  const have = new Map();
  for (const row of [...parent.children]) have.set(row.dataset.key, row);
  let prev = null;
  for (const item of items) {
    const k = key(item);
    let row = have.get(k);
    if (row) have.delete(k); else { row = create(item); row.dataset.key = k; }
    update(row, item);
    const want = prev ? prev.nextSibling : parent.firstChild;
    if (want !== row) parent.insertBefore(row, want);
    prev = row;
  }
  for (const row of have.values()) row.remove();
}

/** Copies text; answers whether it worked. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const ta = h('textarea', { class: 'offscreen', 'aria-hidden': 'true' });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch { ok = false; }
    ta.remove();
    return ok;
  }
}

let toastTimer;
/** Clears the toast (a page change). */
export function clearToast() {
  const el = document.getElementById('toast');
  if (el) el.textContent = '';
}

/** A short confirmation, read out by screen readers. */
export function toast(message) {
  let el = document.getElementById('toast');
  if (!el) {
    el = h('div', { id: 'toast', class: 'toast', role: 'status', 'aria-live': 'polite' });
    document.body.append(el);
  }
  el.textContent = message;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.textContent = ''; }, 4000);
}

/** An error box in the words of the API (`message`), with an optional hint. */
export function errorBox(err, hint) {
  return h('div', { class: 'alert alert-error', role: 'alert' },
    h('strong', { text: err.message || String(err) }),
    hint ? h('p', { text: hint }) : null);
}

/**
 * Calls `fn` now and then every `every` ms after each call settles (never two at once);
 * answers a function that stops it.
 */
export function poll(fn, every = 1000) {
  let stopped = false;
  let timer;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); } catch { /* fn shows its own errors */ }
    if (!stopped) timer = setTimeout(tick, every);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}
