// The console's refusals and the keyboard: a wrong password at sign-in, a user signed in
// with email and password, the keyboard-only path through "Create replica" (Escape closes,
// a taken name shows the API's message in the dialog), the sixth replica refused with a
// disabled button that says why, a termination-protected delete (403, still signed in),
// the delete once protection is off, a token revoked elsewhere (signed out, saying why),
// and sign-out.
import { BASE, withBrowser, until, check, tabTo, log } from './lib.mjs';

const EMAIL = process.env.USER_EMAIL;
const PASSWORD = process.env.USER_PASSWORD;
const PRIMARY = 'main';

await withBrowser('refusals', async (page, shot) => {
  await page.goto(`${BASE}/console/project/default/services`);
  await page.waitForURL(/\/console\/signin\?next=/);

  // A wrong password: the API's message, in the form, and no session.
  await page.getByLabel('Email', { exact: true }).fill(EMAIL);
  await page.getByLabel('Password', { exact: true }).fill('not-the-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const alert = page.getByRole('alert');
  await alert.waitFor();
  check(/Check the email and password/.test(await alert.textContent()), `sign-in error: ${await alert.textContent()}`);
  check(await page.evaluate(() => sessionStorage.getItem('keyhaven.token')) === null, 'no token after a failed sign-in');
  await shot('wrong-password');

  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/console\/project\/default\/services$/);
  await page.getByText(EMAIL).waitFor();
  for (let i = 1; i <= 4; i += 1) {
    const r = page.locator('tbody tr', { has: page.getByRole('link', { name: `${PRIMARY}-replica-${i}` }) });
    await until(`replica ${i} chip`, async () => (await r.locator('.chip').textContent()) === `Replica of ${PRIMARY}`);
  }
  check(await page.getByLabel('Project').inputValue() === 'default', 'the project switcher shows default');

  // The name filter.
  await page.getByLabel('Filter services by name').fill('replica-2');
  await until('one row', async () => (await page.locator('tbody tr').count()) === 1);
  await shot('services-filtered');
  await page.getByLabel('Filter services by name').fill('no-such-service');
  await page.getByText('No service matches').waitFor();
  await page.getByLabel('Filter services by name').fill('');

  // The project switcher: another project, empty, then back.
  await page.getByLabel('Project').selectOption('staging');
  await page.waitForURL(/\/console\/project\/staging\/services$/);
  await page.getByText('No services yet').waitFor();
  await shot('other-project');
  await page.getByLabel('Project').selectOption('default');
  await page.waitForURL(/\/console\/project\/default\/services$/);
  await page.getByRole('link', { name: PRIMARY, exact: true }).waitFor();

  // Keyboard only from here to the dialog's end.
  await page.getByRole('link', { name: PRIMARY, exact: true }).focus();
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: PRIMARY, level: 1 }).waitFor();
  const createBtn = page.getByTestId('create-replica');
  await until('create replica enabled', () => createBtn.isEnabled());
  await tabTo(page, createBtn);
  await page.keyboard.press('Enter');
  const dlg = page.getByRole('dialog', { name: `Create a read replica of ${PRIMARY}` });
  await dlg.waitFor();
  check(await dlg.getByLabel('Service name').evaluate((el) => el === document.activeElement), 'focus starts in the name field');
  check(await dlg.getByLabel('Service name').inputValue() === `${PRIMARY}-replica-5`, 'the suggested name skips taken ones');
  await page.keyboard.press('Escape');
  await dlg.waitFor({ state: 'detached' });
  check(await createBtn.evaluate((el) => el === document.activeElement), 'Escape returns focus to the button');

  await page.keyboard.press('Enter');
  await dlg.waitFor();
  // Focus stays in the dialog: Tab cycles through its controls only.
  for (let i = 0; i < 8; i += 1) {
    await page.keyboard.press('Tab');
    check(await page.evaluate(() => Boolean(document.activeElement.closest('dialog'))), 'focus is trapped in the dialog');
  }
  await dlg.getByLabel('Service name').focus();
  await page.keyboard.press('Control+A');
  await page.keyboard.type(`${PRIMARY}-replica-1`);
  await until('plans loaded', () => dlg.getByRole('button', { name: 'Create' }).isEnabled());
  await page.keyboard.press('Enter');
  const err = dlg.getByRole('alert');
  await err.waitFor();
  check(/already exists/.test(await err.textContent()), `the API's message: ${await err.textContent()}`);
  await shot('name-taken');
  await page.keyboard.press('Control+A');
  await page.keyboard.type(`${PRIMARY}-replica-5`);
  await tabTo(page, dlg.getByRole('button', { name: 'Create' }));
  await page.keyboard.press('Enter');
  await dlg.waitFor({ state: 'detached' });
  await page.locator('#read-replica tbody tr', { has: page.getByRole('link', { name: `${PRIMARY}-replica-5` }) }).waitFor({ timeout: 2_000 });

  // Five replicas: the button is disabled and says why.
  await until('create replica disabled', () => createBtn.isDisabled());
  const why = await page.locator('#create-replica-why').textContent();
  check(/at most 5 read replicas/.test(why), `why: ${why}`);
  check(await createBtn.getAttribute('aria-describedby') === 'create-replica-why', 'the reason is tied to the button');
  // A primary with replicas cannot be deleted either, and says why.
  check(await page.getByTestId('delete-service').isDisabled(), 'delete disabled on a primary with replicas');
  check(/promote or delete them first/.test(await page.locator('#delete-why').textContent()), 'delete says why');
  await shot('five-replicas');

  // Termination protection (PUT service), then a delete: 403, shown, still signed in.
  await page.getByRole('link', { name: `${PRIMARY}-replica-4` }).click();
  await page.getByRole('heading', { name: `${PRIMARY}-replica-4`, level: 1 }).waitFor();
  await page.getByLabel('Protect this service from deletion and power-off').check();
  await page.getByText('Termination protection on').waitFor();
  await page.getByTestId('delete-service').click();
  const del = page.getByRole('dialog', { name: `Delete ${PRIMARY}-replica-4?` });
  check(await del.getByRole('button', { name: 'Delete service' }).isDisabled(), 'delete waits for the typed name');
  await del.getByLabel(`Type ${PRIMARY}-replica-4 to confirm`).fill(`${PRIMARY}-replica-4`);
  await del.getByRole('button', { name: 'Delete service' }).click();
  const delErr = del.getByRole('alert');
  await delErr.waitFor();
  check(/Turn termination protection off/.test(await delErr.textContent()), `delete error: ${await delErr.textContent()}`);
  await shot('termination-protected');
  await page.keyboard.press('Escape');
  await del.waitFor({ state: 'detached' });
  check(await page.evaluate(() => sessionStorage.getItem('keyhaven.token')) !== null, 'a 403 termination_protected does not sign out');
  check(page.url().endsWith(`/services/${PRIMARY}-replica-4`), 'still on the page');

  // Protection off, then the delete goes through: back on the list, without the service.
  await page.getByLabel('Protect this service from deletion and power-off').uncheck();
  await page.getByText('Termination protection off').waitFor();
  await page.getByTestId('delete-service').click();
  await del.getByLabel(`Type ${PRIMARY}-replica-4 to confirm`).fill(`${PRIMARY}-replica-4`);
  await del.getByRole('button', { name: 'Delete service' }).click();
  await page.waitForURL(/\/console\/project\/default\/services$/);
  await page.getByText(`${PRIMARY}-replica-4 deleted`).waitFor();
  await until('the deleted service gone from the list',
    async () => (await page.getByRole('link', { name: `${PRIMARY}-replica-4` }).count()) === 0);
  await page.getByRole('link', { name: `${PRIMARY}-replica-5` }).waitFor();

  // Unknown console paths serve the app, which says so.
  await page.goto(`${BASE}/console/no/such/page`);
  await page.getByRole('heading', { name: 'Page not found', level: 1 }).waitFor();

  // The token revoked elsewhere (as `avn user logout` would): the next answer says it is
  // invalid, and the console signs out, saying why.
  await page.getByRole('link', { name: 'Go to your services' }).click();
  await page.getByRole('heading', { name: 'Services', level: 1 }).waitFor();
  const token = await page.evaluate(() => sessionStorage.getItem('keyhaven.token'));
  const revoked = await fetch(`${BASE}/v1/access_token/${token}`, { method: 'DELETE', headers: { Authorization: `aivenv1 ${token}` } });
  check(revoked.status === 200, `revoking the token: ${revoked.status}`);
  await page.getByText('Your session has ended').waitFor({ timeout: 5_000 });
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
  check(await page.evaluate(() => sessionStorage.getItem('keyhaven.token')) === null, 'an invalid token is forgotten');
  await shot('session-ended');

  // Sign in again; sign out forgets the token.
  await page.getByLabel('Email', { exact: true }).fill(EMAIL);
  await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Services', level: 1 }).waitFor();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
  check(await page.evaluate(() => sessionStorage.getItem('keyhaven.token')) === null, 'sign-out forgets the token');
  await page.getByText('You are signed out.').waitFor();
  await shot('signed-out');
  log('refusals: ok');
});
