/*
 * The dashboard's static files, embedded at build time (scripts/embed-assets.sh
 * turns src/assets/ into a C file), so the binary serves them with no file
 * system and no network.
 */
#ifndef HIGHLANDER_ASSETS_H
#define HIGHLANDER_ASSETS_H

#include <stddef.h>

struct asset {
    const char *name;         /* file name, served at /assets/<name> */
    const char *content_type;
    const unsigned char *data;
    size_t len;
};

extern const struct asset assets[];
extern const unsigned assets_count;

#endif
