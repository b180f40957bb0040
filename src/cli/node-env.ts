// The environment the daemon starts in: the command's own, less what only slows Node's start.
// It never adds to the environment, and never drops what a shadowfs process reads.

/**
 * `env` without NODE_EXTRA_CA_CERTS. With it set, Node 20 parses every CA certificate as it
 * starts (nodejs/node#40524): 45 ms of a 67-ms start of `node -e 0` with Debian's 220-KB bundle
 * named there, and 43 of the 111 ms of `shadowfs --help`. shadowfs makes no TLS connection, so
 * the daemon starts without it, as the installed `shadowfs` command does (the `env -u` on the
 * first line of main.ts).
 */
export function withoutExtraCaCerts(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const { NODE_EXTRA_CA_CERTS: _, ...rest } = env;
  return rest;
}
