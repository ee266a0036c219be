import winston from "winston";
import type { Config } from "../config/config.js";

export type Logger = winston.Logger;

/**
 * The root logger of a process. Components log through children (`logger.child({ component })`),
 * so every line says where it came from. JSON unless the output is a terminal (or told otherwise).
 */
export function createLogger(
  config: Pick<Config, "logLevel" | "logFormat" | "logFile">,
  meta: Record<string, unknown> = {},
): Logger {
  const toFile = config.logFile !== "";
  const json =
    config.logFormat === "json" ||
    (config.logFormat === "auto" && (toFile || !process.stdout.isTTY));
  const format = json
    ? winston.format.combine(winston.format.timestamp(), winston.format.json())
    : winston.format.combine(
        winston.format.timestamp({ format: "HH:mm:ss.SSS" }),
        winston.format.colorize(),
        winston.format.printf(({ timestamp, level, message, component, worker, ...rest }) => {
          const where = [component, worker === undefined ? undefined : `w${worker}`]
            .filter(Boolean)
            .join("/");
          const extra = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : "";
          return `${timestamp} ${level} [${where}] ${message}${extra}`;
        }),
      );
  const transport = toFile
    ? new winston.transports.File({ filename: config.logFile })
    : new winston.transports.Console();
  return winston.createLogger({
    level: config.logLevel,
    format,
    defaultMeta: meta,
    transports: [transport],
  });
}
