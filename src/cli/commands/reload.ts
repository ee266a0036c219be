import { livePid } from "../../cluster/pid-file.js";
import type { Status } from "../../cluster/primary.js";
import { callControl } from "../control-client.js";
import { formatStatus } from "./status.js";

/** `reload`: rolling restart of the workers; returns when every worker has been replaced. */
export async function reload(pidFile: string): Promise<number> {
  if (livePid(pidFile) === undefined) {
    process.stderr.write("weigot-ws is not running\n");
    return 1;
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
