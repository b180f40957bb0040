// A tree of every kind of thing a volume holds (hard links, symlinks, a sparse file, xattrs, odd
// names, owners), changed a little more at each step; and the comparison of two trees with
// `rsync -aHAXc`. It asserts nothing.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { run } from "./mounted.js";

/** `rsync -aHAXc` dry run from `a` to `b`: what it would change (nothing when they are equal). */
export const differences = (a: string, b: string) =>
  run(`rsync -aHAXcn --delete -i ${JSON.stringify(`${a}/`)} ${JSON.stringify(`${b}/`)}`);

/** A tree of every kind of thing a volume holds, changed a little more at each `step`. */
export function change(mnt: string, step: number): void {
  const q = (p: string) => JSON.stringify(join(mnt, p));
  if (step === 0) {
    run(`mkdir -p ${q("dir/sub")} ${q("odd names")}`);
    run(`head -c 300000 /dev/urandom > ${q("dir/random")}`);
    run(`echo hello > ${q("dir/sub/hello")} && ln ${q("dir/sub/hello")} ${q("dir/hard")}`);
    run(`ln -s sub/hello ${q("dir/link")}`);
    run(
      `truncate -s 40M ${q("sparse")} && echo tail | dd of=${q("sparse")} bs=1 seek=30000000 conv=notrunc status=none`,
    );
    run(`setfattr -n user.colour -v blue ${q("dir/random")}`);
    for (const name of ["with space", "-dash", "caf\u00e9", "tab\there", "new\nline"])
      writeFileSync(join(mnt, "odd names", name), name);
    run(`chmod 640 ${q("dir/random")} && chown 65534:65534 ${q("dir/sub/hello")}`);
    return;
  }
  run(`echo step ${step} >> ${q(step > 3 ? "moved/hello" : "dir/sub/hello")}`);
  run(`head -c ${20000 * step} /dev/urandom > ${q(`file-${step}`)}`);
  if (step === 2)
    run(`dd if=/dev/zero of=${q("dir/random")} bs=65536 count=3 conv=notrunc status=none`);
  if (step === 3) run(`mv ${q("dir/sub")} ${q("moved")} && rm ${q("file-1")}`);
  if (step === 4)
    run(`setfattr -x user.colour ${q("dir/random")} && ln ${q("file-2")} ${q("second")}`);
}
