// Runs a batch of file operations as whoever started it (setpriv sets the user and groups) and
// prints, as one JSON array, "OK" or the errno code of each. Reads {ops: [...]} on stdin.
// umask is 0: modes are given exactly, as the kernel hands them to a filesystem.

import { execFileSync } from "node:child_process";
import * as fs from "node:fs";

process.umask(0);
const { ops } = JSON.parse(fs.readFileSync(0, "utf8"));
const { O_CREAT, O_EXCL, O_WRONLY, O_RDWR, O_RDONLY, O_TRUNC, O_APPEND } = fs.constants;
const FLAGS = { r: O_RDONLY, w: O_WRONLY, rw: O_RDWR, trunc: O_WRONLY | O_TRUNC };

/** A tool's failure, by the message strerror gave it. */
function tool(cmd, args) {
  try {
    execFileSync(cmd, args, { stdio: ["ignore", "ignore", "pipe"] });
  } catch (e) {
    const msg = String(e.stderr);
    const known = [
      ["Permission denied", "EACCES"],
      ["Operation not permitted", "EPERM"],
      ["File exists", "EEXIST"],
      ["No such file or directory", "ENOENT"],
      ["Not a directory", "ENOTDIR"],
      ["No such attribute", "ENODATA"],
    ].find(([m]) => msg.includes(m));
    throw Object.assign(new Error(msg), { code: known ? known[1] : `?${msg}` });
  }
}

function run(o) {
  const p = o.path;
  switch (o.op) {
    case "create":
      return fs.closeSync(fs.openSync(p, O_CREAT | O_EXCL | O_WRONLY, o.mode));
    case "mkdir":
      return fs.mkdirSync(p, o.mode);
    case "fifo":
      return tool("mknod", [p, "p"]);
    case "chr":
      return tool("mknod", [p, "c", "1", "3"]);
    case "symlink":
      return fs.symlinkSync(o.target, p);
    case "link":
      return fs.linkSync(p, o.to);
    case "rename":
      return fs.renameSync(p, o.to);
    case "unlink":
      return fs.unlinkSync(p);
    case "rmdir":
      return fs.rmdirSync(p);
    case "chmod":
      return fs.chmodSync(p, o.mode);
    case "chown":
      return fs.chownSync(p, o.uid ?? -1, o.gid ?? -1);
    case "truncate":
      return fs.truncateSync(p, 0);
    case "utime":
      return fs.utimesSync(p, 1000, 2000);
    case "touch": // utimensat(NULL): both times now
      return tool("touch", ["-c", p]);
    case "open":
      return fs.closeSync(fs.openSync(p, FLAGS[o.flags]));
    case "write": {
      const fd = fs.openSync(p, O_WRONLY | O_APPEND);
      try {
        fs.writeSync(fd, "x");
      } finally {
        fs.closeSync(fd);
      }
      return;
    }
    case "access":
      return fs.accessSync(p, o.mask);
    case "stat":
      return fs.lstatSync(p);
    case "setx":
      return tool("setfattr", ["-n", o.name, "-v", "1", p]);
    case "getx":
      return tool("getfattr", ["-n", o.name, p]);
    case "rmx":
      return tool("setfattr", ["-x", o.name, p]);
    default:
      throw new Error(`unknown op ${o.op}`);
  }
}

const out = [];
for (const o of ops) {
  try {
    run(o);
    out.push("OK");
  } catch (e) {
    out.push(e.code ?? String(e));
  }
}
process.stdout.write(JSON.stringify(out));
