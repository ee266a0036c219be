/**
 * docker/docker-compose.yml as `podman run` arguments, one container per service, on one podman
 * network with each service's name as its DNS alias — what `docker compose up` does, by hand,
 * because Debian's podman-compose 1.0.3 garbles this file (empty `${VAR:-}` defaults, list-form
 * healthchecks, `depends_on: condition: service_healthy`).
 *
 * Only what the file uses is translated; anything else fails loudly, so the test notices when the
 * compose file grows a key it does not honour.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";

export interface Service {
  name: string;
  /** `image:` (a public name) or, for `build:`, undefined: the project image. */
  image?: string;
  /** Arguments between `podman run` and the image. */
  runArgs: string[];
  /** Arguments after the image (`command:`). */
  command: string[];
  /** Services this one waits for, healthy. */
  dependsOn: string[];
  /** stop_grace_period in seconds (compose's default: 10). */
  stopGraceS: number;
  /** Container ports published on 127.0.0.1 (ports: and expose:), each to a free host port. */
  ports: number[];
  environment: Record<string, string>;
  /** Has a healthcheck (else it counts as up once running, as in compose). */
  healthcheck: boolean;
}

const KNOWN = new Set([
  "build",
  "image",
  "command",
  "restart",
  "depends_on",
  "stop_grace_period",
  "healthcheck",
  "expose",
  "ports",
  "environment",
  "volumes",
]);

/** Compose's `${VAR:-default}` / `${VAR}` interpolation, from `vars` only (not the caller's env). */
function interpolate(value: string, vars: Record<string, string>): string {
  return value.replace(/\$\{(\w+)(?::-([^}]*))?\}/g, (_, name: string, def?: string) =>
    vars[name] ? vars[name] : (def ?? ""),
  );
}

function seconds(value: unknown): number {
  const m = /^(?:(\d+)m)?(?:(\d+)s)?$/.exec(String(value));
  if (!m || (!m[1] && !m[2])) throw new Error(`duration ${String(value)}: only NmNs supported`);
  return Number(m[1] ?? 0) * 60 + Number(m[2] ?? 0);
}

export function composeServices(file: string, vars: Record<string, string> = {}): Service[] {
  const doc = YAML.parse(readFileSync(file, "utf8"), { merge: true }) as {
    services: Record<string, Record<string, unknown>>;
  };
  const dir = path.dirname(file);
  return Object.entries(doc.services).map(([name, svc]) => {
    for (const key of Object.keys(svc)) {
      if (!KNOWN.has(key)) throw new Error(`compose ${name}: "${key}" is not translated`);
    }
    const runArgs: string[] = ["--network-alias", name];
    const environment: Record<string, string> = {};
    for (const [k, v] of Object.entries((svc.environment ?? {}) as Record<string, unknown>)) {
      environment[k] = interpolate(String(v), vars);
      runArgs.push("--env", `${k}=${environment[k]}`);
    }
    if (svc.restart) runArgs.push("--restart", String(svc.restart));
    const stopGraceS = svc.stop_grace_period === undefined ? 10 : seconds(svc.stop_grace_period);
    runArgs.push("--stop-timeout", String(stopGraceS));
    const hc = svc.healthcheck as Record<string, unknown> | undefined;
    if (hc) {
      const test = hc.test as string[] | string;
      if (Array.isArray(test) && test[0] === "CMD") {
        runArgs.push("--health-cmd", JSON.stringify(test.slice(1)));
      } else if (Array.isArray(test) && test[0] === "CMD-SHELL") {
        runArgs.push("--health-cmd", String(test[1]));
      } else {
        runArgs.push("--health-cmd", String(test));
      }
      if (hc.interval) runArgs.push("--health-interval", String(hc.interval));
      if (hc.timeout) runArgs.push("--health-timeout", String(hc.timeout));
      if (hc.retries) runArgs.push("--health-retries", String(hc.retries));
      if (hc.start_period) runArgs.push("--health-start-period", String(hc.start_period));
    }
    for (const v of (svc.volumes ?? []) as string[]) {
      const [from, to, mode] = v.split(":");
      runArgs.push("--volume", `${path.resolve(dir, from)}:${to}${mode ? `:${mode}` : ""}`);
    }
    const ports = [
      ...((svc.ports ?? []) as string[]).map((p) => Number(String(p).split(":").pop())),
      ...((svc.expose ?? []) as string[]).map(Number),
    ];
    for (const p of ports) runArgs.push("--publish", `127.0.0.1::${p}`);
    const dependsOn = Object.entries(
      (svc.depends_on ?? {}) as Record<string, { condition: string }>,
    )
      .filter(([, d]) => d.condition === "service_healthy")
      .map(([n]) => n);
    return {
      name,
      image: svc.build ? undefined : String(svc.image),
      runArgs,
      command: ((svc.command ?? []) as string[]).map(String),
      dependsOn,
      stopGraceS,
      ports,
      environment,
      healthcheck: hc !== undefined,
    };
  });
}
