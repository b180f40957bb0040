// The directory's node layout as docs/format.md writes it down: every offset the code uses is the
// one the page gives, and an image encoded then decoded reads back the same fields.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import * as fmt from "../../src/fs/directory-format.js";

const doc = readFileSync(
  fileURLToPath(new URL("../../docs/format.md", import.meta.url)),
  "utf8",
).replace(/\s+/g, " ");

describe("directory format", () => {
  it("uses the offsets docs/format.md gives", () => {
    const header =
      `"SHDWDIRH" version@${fmt.H_VERSION} depth@${fmt.H_DEPTH} root@${fmt.H_ROOT} ` +
      `freeHead@${fmt.H_FREE_HEAD} freeCount@${fmt.H_FREE_COUNT} entries(u64)@${fmt.H_ENTRIES} ` +
      `sipKey[${fmt.SIP_KEY_BYTES}]@${fmt.H_SIP_KEY} crc32c(0..${fmt.H_CRC - 1})@${fmt.H_CRC}`;
    const leaf =
      `"SHDWDIRL" level=0@${fmt.N_LEVEL} count@${fmt.N_COUNT} self@${fmt.N_SELF} ` +
      `used@${fmt.N_USED} | entries from @${fmt.N_BODY}`;
    const inner = `"SHDWDIRI" level@${fmt.N_LEVEL} count@${fmt.N_COUNT} self@${fmt.N_SELF} | child0 u32 @${fmt.N_BODY}`;
    const free = `"SHDWDIRF" next free block @${fmt.N_NEXT_FREE}`;
    for (const line of [header, leaf, inner, free]) expect(doc).toContain(line);
    expect(doc).toContain(`CRC-32C of its first ${fmt.NODE_CRC} bytes`);
    // {key u64, ino u64, type u8, nameLen u8, name}; {key u64, child u32}
    expect([fmt.E_KEY, fmt.E_INO, fmt.E_TYPE, fmt.E_NAME_LEN, fmt.E_NAME]).toEqual([
      0, 8, 16, 17, 18,
    ]);
    expect([fmt.I_PAIRS, fmt.PAIR_CHILD, fmt.PAIR_SIZE]).toEqual([fmt.N_BODY + 4, 8, 12]);
  });

  it("reads back what it writes, and refuses a changed byte", () => {
    const key = Buffer.alloc(fmt.SIP_KEY_BYTES, 7);
    const head = Buffer.alloc(fmt.BLOCK_SIZE);
    const h = { depth: 1, root: 3, freeHead: 2, freeCount: 1, count: 2 ** 40 + 5, key };
    fmt.writeHeader(head, h, key);
    expect(fmt.headerProblem(head, 4, false)).toBeUndefined();
    expect(fmt.readHeader(head)).toEqual(h);
    head.writeUInt8(head.readUInt8(fmt.H_ROOT + 1) ^ 1, fmt.H_ROOT + 1);
    expect(fmt.headerProblem(head, 4, false)).toBe("checksum mismatch");

    const leaf = Buffer.alloc(fmt.BLOCK_SIZE);
    const a = fmt.encodeEntry(
      { h: 2 ** 45 + 3, m: 2 },
      { ino: 2 ** 33 + 1, type: 8 },
      Buffer.from("a"),
    );
    const b = fmt.encodeEntry({ h: 2 ** 45 + 4, m: 0 }, { ino: 9, type: 4 }, Buffer.from("bee"));
    fmt.writeLeaf(leaf, 5, [a]);
    fmt.leafInsert(leaf, fmt.N_BODY + a.length, b);
    expect(fmt.nodeProblem(leaf, 5, false) ?? fmt.kindProblem(leaf, fmt.LEAF, 0)).toBeUndefined();
    expect(fmt.nodeCount(leaf)).toBe(2);
    const off = fmt.N_BODY + a.length;
    expect(fmt.entryKey(leaf, off)).toEqual({ h: 2 ** 45 + 4, m: 0 });
    expect(fmt.entryName(leaf, off).toString()).toBe("bee");
    expect([fmt.entryIno(leaf, fmt.N_BODY), fmt.entryType(leaf, fmt.N_BODY)]).toEqual([
      2 ** 33 + 1,
      8,
    ]);
    fmt.leafDelete(leaf, fmt.N_BODY, a.length);
    expect(fmt.leafEntries(leaf)).toEqual([b]);
    expect(fmt.nodeProblem(leaf, 6, false)).toBe("written as block 5");

    const inner = Buffer.alloc(fmt.BLOCK_SIZE);
    const keys = [
      { h: 10, m: 0 },
      { h: 20, m: 1 },
    ];
    fmt.writeInner(inner, 4, 2, keys, [7, 8, 9]);
    expect(fmt.kindProblem(inner, fmt.INNER, 2)).toBeUndefined();
    expect(fmt.readInner(inner)).toEqual({ keys, children: [7, 8, 9] });
    expect(fmt.kindProblem(inner, fmt.LEAF, 0)).toBe("a DIRI block where a DIRL was due");
  });
});
