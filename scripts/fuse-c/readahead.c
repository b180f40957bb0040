// The read-ahead of a FUSE mount, set through sysfs by the server that serves it: the mount's
// device number comes from /proc/self/mountinfo, never from a stat of the mount point.

#include "readahead.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct {
  char path[128];
  unsigned kb;
} ra;

static void nap(void) { nanosleep(&(struct timespec) {.tv_nsec = 20 * 1000 * 1000}, NULL); }

// Writes the value until it reads back (the INIT reply may lower it once, after a write).
static void *keep_setting(void *arg) {
  (void) arg;
  for (int i = 0; i < 50; i++) {
    nap();
    FILE *f = fopen(ra.path, "w");
    if (f) {
      fprintf(f, "%u\n", ra.kb);
      fclose(f);
    }
    nap();
    unsigned now = 0;
    f = fopen(ra.path, "r");
    if (f && fscanf(f, "%u", &now) != 1) now = 0;
    if (f) fclose(f);
    if (now == ra.kb) return NULL;
  }
  fprintf(stderr, "read_ahead_kb not set: %s\n", ra.path);
  return NULL;
}

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
  if (!dev[0]) {
    fprintf(stderr, "read_ahead_kb not set: %s not in /proc/self/mountinfo\n", mountpoint);
    return;
  }
  snprintf(ra.path, sizeof(ra.path), "/sys/class/bdi/%s/read_ahead_kb", dev);
  ra.kb = kb;
  pthread_t t;
  if (pthread_create(&t, NULL, keep_setting, NULL) == 0) pthread_detach(t);
}
