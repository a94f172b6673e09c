/*
 * rosterd's Node addon: the few system facilities rosterd needs on the libuv thread pool that
 * Node's own modules do not offer. Each lives in its own file; this one only exports them.
 *   page_cache.c   dontNeed(fd): posix_fadvise DONTNEED (src/sftp/page-cache.ts)
 *   spool_write.c  sha256(), writeRun(...), digest(...): an upload's data written and hashed off
 *                  the event loop (src/sftp/run-writer.ts)
 */

#include "addon.h"

NAPI_MODULE_INIT() {
  static const struct {
    const char *name;
    napi_callback fn;
  } functions[] = {
      {"dontNeed", page_cache_dont_need},
      {"sha256", spool_write_sha256},
      {"writeRun", spool_write_run},
      {"digest", spool_write_digest},
  };
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].fn, NULL, &fn) != napi_ok ||
        napi_set_named_property(env, exports, functions[i].name, fn) != napi_ok) {
      /* Thrown, so that require() fails and rosterd runs without the addon rather than half of it. */
      napi_throw_error(env, NULL, "rosterd addon: could not export its functions");
      return NULL;
    }
  }
  return exports;
}
