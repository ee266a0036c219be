import net from "node:net";

/**
 * Who a request comes from, for per-address limits. `X-Forwarded-For` is believed only from a
 * peer in --trusted-proxies (behind nginx every client has nginx's address); anyone else could
 * write any address there.
 */
export class ClientAddresses {
  private readonly trusted = new net.BlockList();
  readonly hasTrusted: boolean;

  /** `list`: comma-separated IPs and CIDRs (IPv4, IPv6) and the keyword `loopback`. */
  constructor(list: string) {
    let any = false;
    for (const raw of list.split(",")) {
      const entry = raw.trim();
      if (entry === "") continue;
      any = true;
      if (entry === "loopback") {
        this.trusted.addSubnet("127.0.0.0", 8, "ipv4");
        this.trusted.addAddress("::1", "ipv6");
        continue;
      }
      const [ip, bits] = entry.split("/");
      const address = plainIp(ip);
      if (!address)
        throw new Error(`--trusted-proxies: not an IP address or CIDR: ${JSON.stringify(entry)}`);
      const family = net.isIPv4(address) ? "ipv4" : "ipv6";
      if (bits === undefined) {
        this.trusted.addAddress(address, family);
        continue;
      }
      const prefix = Number(bits);
      const max = family === "ipv4" ? 32 : 128;
      if (!/^\d+$/.test(bits) || prefix > max) {
        throw new Error(`--trusted-proxies: bad prefix length in ${JSON.stringify(entry)}`);
      }
      this.trusted.addSubnet(address, prefix, family);
    }
    this.hasTrusted = any;
  }

  isTrusted(address: string | undefined): boolean {
    const ip = plainIp(address);
    if (!ip || !this.hasTrusted) return false;
    return this.trusted.check(ip, net.isIPv4(ip) ? "ipv4" : "ipv6");
  }

  /**
   * The client's address: the peer's, or, when the peer is a trusted proxy, the right-most
   * entry of `X-Forwarded-For` that is not itself a trusted proxy (proxies append the address
   * they saw; what is left of it the client may have written). A malformed entry where the
   * proxy should have written the real address means a misconfigured proxy: the peer is used.
   */
  clientOf(peer: string | undefined, forwardedFor: string | string[] | undefined): string {
    const own = plainIp(peer) ?? "unknown";
    if (!this.isTrusted(own) || forwardedFor === undefined) return own;
    const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(",") : forwardedFor)
      .split(",")
      .map((h) => h.trim())
      .filter((h) => h !== "");
    let last = own;
    for (let i = hops.length - 1; i >= 0; i--) {
      const ip = plainIp(hops[i]);
      if (!ip) return last;
      if (!this.isTrusted(ip)) return ip;
      last = ip;
    }
    return last;
  }
}

/** An IP without IPv4-mapping, zone or brackets; undefined when it is not an IP. */
export function plainIp(value: string | undefined): string | undefined {
  if (!value) return undefined;
  let ip = value.trim();
  if (ip.startsWith("[") && ip.endsWith("]")) ip = ip.slice(1, -1);
  const zone = ip.indexOf("%");
  if (zone !== -1) ip = ip.slice(0, zone);
  if (/^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(ip)) ip = ip.slice(7);
  return net.isIP(ip) === 0 ? undefined : ip.toLowerCase();
}

/**
 * The key per-address limits count under: the IPv4 address, or the /64 of an IPv6 address
 * (one subscriber gets a whole /64, so counting single IPv6 addresses would limit nothing).
 */
export function addressKey(ip: string): string {
  if (!net.isIPv6(ip)) return ip;
  const sl = new net.SocketAddress({ address: ip, family: "ipv6" });
  // Expand `::` to eight groups, then keep the first four.
  const [head, tail = ""] = sl.address.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === "" ? [] : tail.split(":");
  const groups = sl.address.includes("::")
    ? [...left, ...Array(8 - left.length - right.length).fill("0"), ...right]
    : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ""))
    .join(":")}::/64`;
}
