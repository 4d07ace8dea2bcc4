// A promotion answered 202 {"state": "promoting"} (the server runs with the fault point
// promotion.detach_unconfirmed): the page says the promotion is finishing in the
// background, then shows the replica as a primary without a reload.
import { BASE, TOKEN, withBrowser, until, log } from './lib.mjs';

const PRIMARY = 'origin';
const REPLICA = 'standby';

await withBrowser('promote-finishing', async (page, shot) => {
  await page.goto(`${BASE}/console/signin`);
  await page.getByRole('tab', { name: 'Token' }).click();
  await page.getByLabel('Access token').fill(TOKEN);
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Services', level: 1 }).waitFor();
  await page.getByRole('link', { name: REPLICA }).click();
  const chip = page.locator('.title-row .chip');
  await until('the Replica chip', async () => (await chip.textContent()) === `Replica of ${PRIMARY}`);
  await until('RUNNING', async () => (await page.locator('.title-row .state').textContent()) === 'Running', 30_000);

  // The status is kept when it changes, so a quick finish cannot hide the 202 step.
  await page.evaluate(() => {
    window.statusSeen = [];
    const slot = document.querySelector('[data-testid="status"]');
    new MutationObserver(() => window.statusSeen.push(slot.textContent)).observe(slot, { childList: true, subtree: true });
  });
  await page.getByRole('button', { name: 'Promote to primary' }).click();
  const dlg = page.getByRole('dialog', { name: `Promote ${REPLICA} to primary?` });
  await dlg.getByRole('button', { name: 'Promote', exact: true }).click();
  await dlg.waitFor({ state: 'detached', timeout: 30_000 });
  await until('the finishing notice', () => page.evaluate(() => window.statusSeen.some((t) => /is being promoted/.test(t))));
  await shot('promotion-finishing');
  await until('the Primary chip', async () => (await chip.textContent()) === 'Primary', 30_000);
  await page.getByText('Keyhaven finished the promotion in the background.').waitFor({ timeout: 10_000 });
  await shot('promotion-finished');
  log('promote-finishing: ok');
});
