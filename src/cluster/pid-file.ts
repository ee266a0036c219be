import { readFileSync, rmSync, writeFileSync } from "node:fs";

/** The pid recorded in the file when that process is alive, else undefined. */
export function livePid(pidFile: string): number | undefined {
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(pidFile, "utf8").trim(), 10);
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    // EPERM: alive but someone else's.
    return (err as NodeJS.ErrnoException).code === "EPERM" ? pid : undefined;
  }
}

export function writePidFile(pidFile: string): void {
  writeFileSync(pidFile, `${process.pid}\n`);
}

/** Removes the file only if it still names this process (a new instance may have taken it). */
export function removePidFile(pidFile: string, pid: number = process.pid): void {
  try {
    if (Number.parseInt(readFileSync(pidFile, "utf8"), 10) === pid) rmSync(pidFile);
  } catch {
    // already gone
  }
}

/** The control socket of the instance that owns a pid file. */
export function controlSocketPath(pidFile: string): string {
  return `${pidFile}.sock`;
}
