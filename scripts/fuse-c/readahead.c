// The read-ahead of a FUSE mount, set through sysfs by the server that serves it: the mount's
// device number comes from /proc/self/mountinfo, never from a stat of the mount point.

#include "readahead.h"

#include <stdio.h>
#include <string.h>

void set_read_ahead(const char *mountpoint, unsigned kb) {
  FILE *f = fopen("/proc/self/mountinfo", "r");
  char line[4096], dev[64] = "", point[4096];
  while (f && fgets(line, sizeof(line), f)) {
    // id parent-id MAJ:MIN root mount-point ...; the last match is the newest mount there
    char d[64];
    if (sscanf(line, "%*s %*s %63s %*s %4095s", d, point) == 2 && strcmp(point, mountpoint) == 0)
      strcpy(dev, d);
  }
  if (f) fclose(f);
  char path[128];
  snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
  FILE *ra = dev[0] ? fopen(path, "w") : NULL;
  if (!ra || fprintf(ra, "%u\n", kb) < 0 || fclose(ra) != 0)
    fprintf(stderr, "read_ahead_kb of %s not set (%s)\n", mountpoint, dev[0] ? path : "not found");
}
