/**
 * Allow and deny lists of CIDR blocks, matched with node:net's BlockList (C++, no per-call
 * allocation). IPv4-mapped IPv6 clients are matched as IPv4, so "192.0.2.0/24" covers
 * "::ffff:192.0.2.7" too.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { normaliseAddress } from './addresses.js';
import { parseCidr } from '../config/values.js';

export class CidrList {
  readonly #list = new BlockList();
  readonly size: number;

  /** Throws on a block that is not CIDR (config validation has normally caught it already). */
  constructor(blocks: readonly string[]) {
    for (const text of blocks) {
      const parsed = parseCidr(text);
      if (!parsed.ok) throw new Error(`CIDR ${JSON.stringify(text)} ${parsed.problem}`);
      this.#list.addSubnet(parsed.value.address, parsed.value.prefix, parsed.value.family);
    }
    this.size = blocks.length;
  }

  has(address: string): boolean {
    if (this.size === 0) return false;
    const plain = normaliseAddress(address);
    if (isIPv4(plain)) return this.#list.check(plain, 'ipv4');
    if (isIPv6(plain)) return this.#list.check(plain, 'ipv6');
    return false;
  }
}
