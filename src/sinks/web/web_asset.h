/* web_asset: the dashboard's static files, embedded at build time by cmake/embed_web.cmake
 * (web/ and the pinned uPlot from node_modules). Read-only; any thread. */
#ifndef BJ_WEB_ASSET_H
#define BJ_WEB_ASSET_H

#include <stddef.h>

struct bj_web_asset {
    const char *path;  /* URL path, e.g. "/app.js" */
    const char *ctype; /* Content-Type */
    const unsigned char *data;
    size_t len;
};
/* Terminated by an entry with path NULL. */
extern const struct bj_web_asset bj_web_assets[];

/* The asset served at path, or NULL. */
const struct bj_web_asset *bj_web_asset_find(const char *path);

#endif
