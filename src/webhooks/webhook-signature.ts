import { createHmac, timingSafeEqual } from "node:crypto";

/** The signature header's name and value format, GitHub's and Pusher's style. */
export const SIGNATURE_HEADER = "X-Weigot-Signature";

/** `sha256=<hex HMAC-SHA256 of the raw body>`. */
export function signBody(body: string | Buffer, secret: string): string {
  return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/** Constant-time check of a received signature header against the raw body. */
export function verifySignature(
  body: string | Buffer,
  secret: string,
  header: string | undefined,
): boolean {
  if (typeof header !== "string") return false;
  const want = Buffer.from(signBody(body, secret));
  const got = Buffer.from(header);
  return want.length === got.length && timingSafeEqual(want, got);
}
