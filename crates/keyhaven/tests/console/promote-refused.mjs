// A promotion the API refuses with 503 (the primary runs but does not answer: it is
// frozen with SIGSTOP right before the click): the dialog explains it in the API's words
// and what to do, and offers "Promote anyway" (DELETE ...?lossy=true) with the possible
// loss spelled out; promoting anyway makes the replica a primary.
import { BASE, TOKEN, withBrowser, until, check, log } from './lib.mjs';

const PRIMARY = 'origin';
const REPLICA = 'standby';
const PRIMARY_PID = Number(process.env.PRIMARY_PID);

let frozen = false;
try {
  await withBrowser('promote-refused', async (page, shot) => {
    await page.goto(`${BASE}/console/project/default/services/${REPLICA}`);
    await page.waitForURL(/\/console\/signin/);
    await page.getByRole('tab', { name: 'Token' }).click();
    await page.getByLabel('Access token').fill(TOKEN);
    await page.keyboard.press('Enter');
    await page.waitForURL(new RegExp(`/services/${REPLICA}$`));
    const chip = page.locator('.title-row .chip');
    await until('the Replica chip', async () => (await chip.textContent()) === `Replica of ${PRIMARY}`);
    await until('RUNNING', async () => (await page.locator('.title-row .state').textContent()) === 'Running', 30_000);

    await page.getByRole('button', { name: 'Promote to primary' }).click();
    const dlg = page.getByRole('dialog', { name: `Promote ${REPLICA} to primary?` });
    await dlg.waitFor();
    process.kill(PRIMARY_PID, 'SIGSTOP');
    frozen = true;
    log('primary frozen');
    await dlg.getByRole('button', { name: 'Promote', exact: true }).click();
    const alert = dlg.getByRole('alert');
    await alert.waitFor({ timeout: 30_000 });
    const text = await alert.textContent();
    check(/does not answer|nothing was changed/i.test(text), `the API's message: ${text}`);
    check(/Try again in a moment/.test(text), `what to do: ${text}`);
    const anyway = dlg.getByTestId('promote-anyway');
    await anyway.waitFor();
    const loss = await dlg.getByText('Promote anyway?').locator('..').textContent();
    check(/are lost/.test(loss) && loss.includes(PRIMARY), `the possible loss is spelled out: ${loss}`);
    check((await chip.textContent()) === `Replica of ${PRIMARY}`, 'nothing changed');
    await shot('promote-503');

    await anyway.click();
    await dlg.waitFor({ state: 'detached', timeout: 30_000 });
    await until('the Primary chip', async () => (await chip.textContent()) === 'Primary', 20_000);
    await page.getByText(`${REPLICA} is now an independent primary.`).waitFor();
    await shot('promoted-anyway');
    log('promote-refused: ok');
  });
} finally {
  if (frozen) process.kill(PRIMARY_PID, 'SIGCONT');
}
