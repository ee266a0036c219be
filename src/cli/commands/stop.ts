import { livePid } from "../../cluster/pid-file.js";

/** `stop`: graceful (SIGTERM), waits for the primary to exit. Not running is not an error. */
export async function stop(pidFile: string, shutdownTimeout: number): Promise<number> {
  const pid = livePid(pidFile);
  if (pid === undefined) {
    process.stdout.write("weigot-ws is not running\n");
    return 0;
  }
  process.kill(pid, "SIGTERM");
  const deadline = Date.now() + (shutdownTimeout + 5) * 1000;
  while (Date.now() < deadline) {
    if (!alive(pid)) {
      process.stdout.write(`weigot-ws stopped (pid ${pid})\n`);
      return 0;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  process.stderr.write(`weigot-ws (pid ${pid}) did not stop within ${shutdownTimeout + 5} s\n`);
  return 1;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
