import { livePid } from "../../cluster/pid-file.js";
import type { Status } from "../../cluster/primary.js";
import { callControl } from "../control-client.js";
import { formatStatus } from "./status.js";

/**
 * `reload`: the apps read again, then a rolling restart of the workers; returns when every worker
 * has been replaced. `reload --apps`: the apps only, applied in place (no connection moves).
 */
export async function reload(pidFile: string, appsOnly = false): Promise<number> {
  if (livePid(pidFile) === undefined) {
    process.stderr.write("weigot-ws is not running\n");
    return 1;
  }
  if (appsOnly) {
    try {
      const r = await callControl<{ apps: string[] }>(pidFile, "POST", "/reload-apps", 30_000);
      process.stdout.write(`apps reloaded: ${r.apps.length > 0 ? r.apps.join(", ") : "(none)"}\n`);
      return 0;
    } catch (err) {
      process.stderr.write(`apps reload failed: ${String(err)}\n`);
      return 1;
    }
  }
  try {
    const s = await callControl<Status>(pidFile, "POST", "/reload", 300_000);
    process.stdout.write(`reload complete\n${formatStatus(s)}`);
    return 0;
  } catch (err) {
    process.stderr.write(`reload failed: ${String(err)}\n`);
    return 1;
  }
}
