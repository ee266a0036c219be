import { request } from "node:http";
import { controlSocketPath } from "../cluster/pid-file.js";

/** Calls the running primary's control socket; rejects when nothing answers. */
export function callControl<T>(
  pidFile: string,
  method: "GET" | "POST",
  path: string,
  timeoutMs = 60_000,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const req = request(
      { socketPath: controlSocketPath(pidFile), method, path, timeout: timeoutMs },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk) => {
          body += chunk;
        });
        res.on("end", () => {
          try {
            const parsed = JSON.parse(body) as T & { error?: string };
            if ((res.statusCode ?? 500) >= 400)
              reject(new Error(parsed.error ?? `HTTP ${res.statusCode}`));
            else resolve(parsed);
          } catch (err) {
            reject(err);
          }
        });
      },
    );
    req.on("timeout", () =>
      req.destroy(new Error(`no answer from the control socket in ${timeoutMs} ms`)),
    );
    req.on("error", reject);
    req.end();
  });
}
