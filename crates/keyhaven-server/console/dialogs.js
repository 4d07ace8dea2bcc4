// Modal dialogs: native <dialog> with showModal(), so the page behind is inert, focus stays
// inside, Escape closes it and focus returns to the button that opened it.
import { h, errorBox } from './dom.js';

let seq = 0;

/**
 * Opens a dialog. `content` is a list of nodes for its body; `onSubmit(d)` runs on the
 * submit button (or Enter in a field) and closes the dialog unless it returns false or
 * throws (an ApiError is shown in the dialog, in the API's words).
 * Answers the dialog's handle: {el, body, error(err, hint), clearError(), close(), submit}.
 */
export function modal({ title, content, submitLabel, busyLabel, submitClass = 'btn-primary', onSubmit, errorHint, cancelLabel = 'Cancel' }) {
  const id = `dlg-${++seq}`;
  const opener = document.activeElement;
  const errorSlot = h('div', { class: 'dialog-error', 'aria-live': 'assertive' });
  const body = h('div', { class: 'dialog-body' }, errorSlot, content);
  const submit = h('button', { type: 'submit', class: `btn ${submitClass}`, 'data-role': 'submit' }, submitLabel);
  const cancel = h('button', { type: 'button', class: 'btn', 'data-role': 'cancel' }, cancelLabel);
  const form = h('form', { method: 'dialog' },
    h('div', { class: 'dialog-head' }, h('h2', { id: `${id}-title` }, title)),
    body,
    h('div', { class: 'dialog-foot actions' }, cancel, submit));
  const el = h('dialog', { 'aria-labelledby': `${id}-title` }, form);

  let busy = false;
  const d = {
    el, body, submit, cancel,
    error(err, hint) {
      errorSlot.replaceChildren(errorBox(err, hint ?? (errorHint ? errorHint(err) : null)));
    },
    clearError() { errorSlot.replaceChildren(); },
    close() { if (el.open) el.close(); },
    setBusy(on, label) {
      busy = on;
      submit.disabled = on;
      submit.textContent = on ? (label || busyLabel || submitLabel) : submitLabel;
      el.setAttribute('aria-busy', on ? 'true' : 'false');
    },
    get busy() { return busy; },
    /** A new label for the submit button (e.g. "Try again" after a refusal). */
    relabel(text) { submitLabel = text; if (!busy) submit.textContent = text; },
  };

  cancel.addEventListener('click', () => d.close());
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (busy) return;
    d.clearError();
    d.setBusy(true);
    let keep = false;
    try {
      keep = (await onSubmit(d)) === false;
    } catch (err) {
      keep = true;
      if (!err.signedOut) d.error(err);
    } finally {
      d.setBusy(false);
    }
    if (!keep) d.close();
  });
  // showModal() makes the page inert, but Tab from the last control would leave for the
  // browser's own UI: wrap it around, so focus stays in the dialog until it closes.
  el.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Tab') return;
    const focusable = [...el.querySelectorAll('button, input, select, textarea, a[href], [tabindex]:not([tabindex="-1"])')]
      .filter((x) => !x.disabled && !x.hidden && x.getClientRects().length > 0);
    if (!focusable.length) return;
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    if (ev.shiftKey && (document.activeElement === first || !el.contains(document.activeElement))) {
      ev.preventDefault();
      last.focus();
    } else if (!ev.shiftKey && (document.activeElement === last || !el.contains(document.activeElement))) {
      ev.preventDefault();
      first.focus();
    }
  });
  el.addEventListener('close', () => {
    el.remove();
    if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
    else document.getElementById('main')?.focus();
  });

  document.body.append(el);
  el.showModal();
  const first = body.querySelector('input:not([type=hidden]):not([disabled]), select, textarea');
  (first || submit).focus();
  return d;
}

/** A labelled field: label + control + optional hint, wired for screen readers. */
export function field(label, control, hint) {
  const id = control.id || `f-${++seq}`;
  control.id = id;
  const parts = [h('label', { for: id }, label), control];
  if (hint) {
    const hid = `${id}-hint`;
    control.setAttribute('aria-describedby', hid);
    parts.push(h('p', { class: 'hint', id: hid }, hint));
  }
  return h('div', { class: 'field' }, parts);
}
