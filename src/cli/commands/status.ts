import { livePid } from "../../cluster/pid-file.js";
import type { Status } from "../../cluster/primary.js";
import { callControl } from "../control-client.js";

/** LSB: "program is not running". */
export const EXIT_NOT_RUNNING = 3;

export async function status(pidFile: string, json: boolean): Promise<number> {
  if (livePid(pidFile) === undefined) {
    if (json) process.stdout.write(`${JSON.stringify({ running: false })}\n`);
    else process.stdout.write("weigot-ws is not running\n");
    return EXIT_NOT_RUNNING;
  }
  let s: Status;
  try {
    s = await callControl<Status>(pidFile, "GET", "/status", 5000);
  } catch (err) {
    process.stderr.write(`weigot-ws is running but does not answer: ${String(err)}\n`);
    return 1;
  }
  if (json) {
    process.stdout.write(`${JSON.stringify({ running: true, ...s })}\n`);
    return 0;
  }
  process.stdout.write(formatStatus(s));
  return 0;
}

const mb = (bytes?: number) => (bytes === undefined ? "?" : `${(bytes / 1048576).toFixed(1)} MB`);

const counts = (c: Record<string, number> | undefined) => {
  const entries = Object.entries(c ?? {}).filter(([, n]) => n > 0);
  return entries.length === 0 ? "none" : entries.map(([code, n]) => `${code} ${n}`).join(", ");
};

export function formatStatus(s: Status): string {
  const lines = [
    `weigot-ws is running (${s.ready ? "ready" : "NOT ready"})`,
    `  primary pid  ${s.pid}`,
    `  node         ${s.nodeId}`,
    `  uptime       ${s.uptimeSeconds} s`,
    `  adapter      ${s.adapter}`,
    `  listening    ${s.host}:${s.port}`,
    `  connections  ${s.connections}`,
    `  users        ${s.users}`,
    `  refused      ${counts(s.refusals)} (connections); ${counts(s.sessionRefusals)} (in sessions)`,
    ...(s.apps && s.apps.length > 1
      ? [`  apps         ${s.apps.map((a) => `${a.id} (${a.connections})`).join(", ")}`]
      : []),
    "  workers:",
    ...s.workers.map(
      (w) =>
        `    #${w.id} pid ${w.pid} ${w.state}, ${w.connections ?? "?"} connections, ${w.refusals?.E_RATE_LIMITED ?? 0} rate-limited, ${w.historyAppends ?? "?"} history appends, rss ${mb(w.rssBytes)}, heap ${mb(w.heapUsedBytes)}`,
    ),
  ];
  return `${lines.join("\n")}\n`;
}
