// The console's main path, in a real Chromium against a real Keyhaven: sign in with the
// admin token, create a primary through the dialog, give it data, create a read replica
// through the Read replica dialog, watch it go REBUILDING → RUNNING with its lag, read a
// write on the replica, promote it through the confirmation dialog, write on it.
import { BASE, TOKEN, withBrowser, until, valkey, bulkSets, check, log } from './lib.mjs';

const PRIMARY = 'cache';
const REPLICA = `${PRIMARY}-replica-1`;

await withBrowser('lifecycle', async (page, shot) => {
  // Signed out: /console sends to the sign-in page.
  await page.goto(`${BASE}/`);
  await page.waitForURL(/\/console\/signin/);
  await page.getByRole('heading', { name: 'Sign in', level: 1 }).waitFor();
  await shot('signin');

  await page.getByRole('tab', { name: 'Token' }).click();
  await page.getByLabel('Access token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Services', level: 1 }).waitFor();
  await page.getByText('No services yet').waitFor();
  check(await page.evaluate(() => sessionStorage.getItem('keyhaven.token')) === TOKEN, 'the token is in sessionStorage');
  await shot('services-empty');

  // Create the primary through the dialog.
  await page.getByTestId('create-service').click();
  const create = page.getByRole('dialog', { name: 'Create service' });
  await create.getByLabel('Service name').fill(PRIMARY);
  await until('the plans to load', () => create.getByLabel('Service plan').locator('option[value="startup-4"]').count());
  await create.getByLabel('Service plan').selectOption('startup-4');
  await shot('create-service-dialog');
  await create.getByRole('button', { name: 'Create service' }).click();
  await page.waitForURL(new RegExp(`/console/project/default/services/${PRIMARY}$`));
  await page.getByRole('heading', { name: PRIMARY, level: 1 }).waitFor();
  const chip = page.locator('.title-row .chip');
  await until('the Primary chip', async () => (await chip.textContent()) === 'Primary');
  await until(`${PRIMARY} RUNNING`, async () => (await page.locator('.title-row .state').textContent()) === 'Running', 30_000);

  // Connection information: the password is hidden until revealed.
  check((await page.getByTestId('password').textContent()).startsWith('•'), 'password hidden');
  await page.getByRole('button', { name: 'Show password' }).click();
  const primaryUri = await page.getByTestId('service-uri').textContent();
  check(primaryUri.startsWith('rediss://default:') && !primaryUri.includes('•'), `revealed URI: ${primaryUri}`);
  // TLS is on by default, and a primary has a reader endpoint on its own port.
  check((await page.getByTestId('conn-tls').textContent()).startsWith('On'), 'TLS shown on');
  const readerUri = await page.getByTestId('reader-uri').textContent();
  check(readerUri.startsWith('rediss://default:') && readerUri !== primaryUri, `reader URI: ${readerUri}`);
  await shot('primary-overview');
  await page.getByRole('button', { name: 'Hide password' }).click();

  // ~40 MB of data, so the replica's first sync takes a moment.
  log('populating', PRIMARY);
  valkey(primaryUri, ['--pipe'], { input: bulkSets('bulk', 4000, 10_000) });
  check(valkey(primaryUri, ['DBSIZE']) === '4000', 'the primary holds the data');

  // Create a read replica through the Read replica section.
  const section = page.locator('#read-replica');
  await section.getByText('No read replicas yet').waitFor();
  await section.getByRole('button', { name: 'Create replica' }).click();
  const dlg = page.getByRole('dialog', { name: `Create a read replica of ${PRIMARY}` });
  await until('the suggested name', async () => (await dlg.getByLabel('Service name').inputValue()) === REPLICA);
  await until('the replica plans', () => dlg.getByLabel('Service plan').locator('option').count());
  const plans = await dlg.getByLabel('Service plan').locator('option').allTextContents();
  check(plans.every((p) => p.startsWith('startup-')), `only replica plans are offered: ${plans}`);
  check(await dlg.getByLabel('Cloud provider').locator('option').count() >= 1, 'a cloud provider');
  check(await dlg.getByLabel('Region').locator('option').count() >= 1, 'a region');
  await shot('create-replica-dialog');
  // Every state the replica's row shows, in order, however quickly it changes.
  await page.evaluate((name) => {
    window.replicaStates = [];
    window.syncShown = [];
    const section = document.getElementById('read-replica');
    const look = () => {
      const sync = section.querySelector(`tr[data-key="${name}"] [data-testid="sync-progress"]`);
      if (sync && window.syncShown[window.syncShown.length - 1] !== sync.textContent) window.syncShown.push(sync.textContent);
      const state = section.querySelector(`tr[data-key="${name}"] .state`);
      const text = state && state.textContent;
      if (text && window.replicaStates[window.replicaStates.length - 1] !== text) window.replicaStates.push(text);
    };
    new MutationObserver(look).observe(section, { childList: true, subtree: true, characterData: true });
  }, REPLICA);
  await dlg.getByRole('button', { name: 'Create' }).click();
  await dlg.waitFor({ state: 'detached' });

  // At once: the replica, REBUILDING, with its sync state.
  const row = section.locator('tbody tr', { has: page.getByRole('link', { name: REPLICA }) });
  await row.waitFor({ timeout: 2_000 });
  const first = await page.evaluate(() => window.replicaStates[0]);
  check(first === 'Rebuilding', `the new replica shows REBUILDING at once (first state shown: ${first})`);
  await shot('replica-rebuilding');
  // Then RUNNING, without a reload, with a lag in bytes and milliseconds.
  await until(`${REPLICA} RUNNING`, async () => (await row.locator('.state').textContent()) === 'Running', 60_000);
  const states = await page.evaluate(() => window.replicaStates);
  check(JSON.stringify(states) === '["Rebuilding","Running"]', `states shown: ${states}`);
  const sync = await page.evaluate(() => window.syncShown);
  log('sync progress shown:', JSON.stringify(sync));
  check(sync.length > 0 && sync.every((t) => /^(Starting the first sync…|Syncing)/.test(t)), `the sync state while REBUILDING: ${sync}`);
  await until('a lag figure in ms', async () => /\d+ B · \d+ ms/.test(await row.getByTestId('lag').textContent()), 15_000);
  check(await page.evaluate(() => performance.getEntriesByType('navigation').length) === 1, 'no reload');
  await until('the toast to go', async () => ((await page.locator('#toast').textContent()) || '') === '', 8_000);
  await shot('replica-running');
  // The overview as README shows it (docs/console-overview.png), and in dark mode.
  await page.screenshot({ path: `${process.env.KEYHAVEN_ARTIFACTS}/overview-readme.png` });
  await page.emulateMedia({ colorScheme: 'dark' });
  await shot('replica-running-dark');
  await page.emulateMedia({ colorScheme: 'light' });

  // The replica's own page: Replica chip naming its primary, and its lag.
  await row.getByRole('link', { name: REPLICA }).click();
  await page.getByRole('heading', { name: REPLICA, level: 1 }).waitFor();
  await until('the Replica chip', async () => (await chip.textContent()) === `Replica of ${PRIMARY}`);
  await page.getByTestId('primary-link').waitFor();
  await until('the replica lag', async () => /behind · \d+ ms/.test(await page.locator('#read-replica').getByTestId('lag').textContent()), 15_000);
  await page.getByRole('button', { name: 'Show password' }).click();
  const replicaUri = await page.getByTestId('service-uri').textContent();
  await page.getByRole('button', { name: 'Hide password' }).click();

  // A write on the primary reaches the replica.
  check(valkey(primaryUri, ['SET', 'greeting', 'hello from the primary']) === 'OK', 'SET on the primary');
  await until('the write on the replica', () => valkey(replicaUri, ['GET', 'greeting']) === 'hello from the primary', 10_000);
  check(valkey(replicaUri, ['DBSIZE']) === '4001', 'the replica holds all the data');
  check(/READONLY/.test(valkey(replicaUri, ['SET', 'x', 'y'], { errorReply: true })), 'the replica refuses writes before promotion');
  await shot('replica-overview');

  // Promote through the confirmation dialog.
  await page.getByRole('button', { name: 'Promote to primary' }).click();
  const promote = page.getByRole('dialog', { name: `Promote ${REPLICA} to primary?` });
  await promote.getByText('This cannot be undone.').waitFor();
  await promote.getByText(`Writes on ${PRIMARY} pause briefly`).waitFor();
  await shot('promote-dialog');
  await promote.getByRole('button', { name: 'Promote', exact: true }).click();
  await promote.waitFor({ state: 'detached', timeout: 30_000 });
  await until('the Primary chip after promotion', async () => (await chip.textContent()) === 'Primary', 20_000);
  await page.locator('#read-replica').getByTestId('no-primary').waitFor();
  await page.getByText(`${REPLICA} is now an independent primary.`).waitFor();
  await shot('promoted');

  // It accepts writes now, and kept the data.
  check(valkey(replicaUri, ['SET', 'after', 'promotion']) === 'OK', 'the promoted service accepts writes');
  check(valkey(replicaUri, ['GET', 'greeting']) === 'hello from the primary', 'the promoted service kept the data');

  // The list: both primaries now.
  await page.getByRole('link', { name: 'Services' }).click();
  await page.getByRole('heading', { name: 'Services', level: 1 }).waitFor();
  for (const name of [PRIMARY, REPLICA]) {
    const r = page.locator('tbody tr', { has: page.getByRole('link', { name, exact: true }) });
    await until(`${name} listed as Primary`, async () => (await r.locator('.chip').textContent()) === 'Primary');
  }
  await shot('services-after');
  log('lifecycle: ok');
});
