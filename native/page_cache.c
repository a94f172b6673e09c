/*
 * dontNeed(fd): Promise<number> -- posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) on the libuv thread
 * pool; resolves to 0 or the errno value (ENOSYS where the system has no posix_fadvise).
 *
 * Node's fs module has no fadvise. rosterd uses it to hand back the memory a superseded upload
 * holds in the page cache just as the next upload starts (src/sftp/page-cache.ts says why). On
 * the thread pool because dropping a large file's pages takes milliseconds the event loop, which
 * serves every SFTP connection, should not wait for. Advice only: the kernel never drops dirty
 * pages for it, so no data can be lost.
 */
#define _POSIX_C_SOURCE 200112L
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>

#include "addon.h"

typedef struct {
  int fd;
  int result;
  napi_deferred deferred;
  napi_async_work work;
} Job;

static void execute(napi_env env, void *data) {
  (void)env;
  Job *job = data;
#ifdef POSIX_FADV_DONTNEED
  job->result = posix_fadvise(job->fd, 0, 0, POSIX_FADV_DONTNEED);
#else
  job->result = ENOSYS;
#endif
}

static void complete(napi_env env, napi_status status, void *data) {
  Job *job = data;
  napi_value result;
  napi_create_int32(env, status == napi_ok ? job->result : ECANCELED, &result);
  napi_resolve_deferred(env, job->deferred, result);
  napi_delete_async_work(env, job->work);
  free(job);
}

napi_value page_cache_dont_need(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_valuetype type;
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc < 1 || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_number ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, NULL, "dontNeed(fd) takes an open file descriptor");
    return NULL;
  }
  Job *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  job->fd = fd;
  napi_value promise, name;
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok) {
    free(job);
    napi_throw_error(env, NULL, "could not create a promise");
    return NULL;
  }
  if (napi_create_string_utf8(env, "rosterd.pageCache.dontNeed", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, execute, complete, job, &job->work) != napi_ok) {
    job->work = NULL;
  } else if (napi_queue_async_work(env, job->work) != napi_ok) {
    napi_delete_async_work(env, job->work);
    job->work = NULL;
  } else {
    return promise;
  }
  /* Not queued: settle the promise here (ECANCELED), so that no caller waits forever. */
  napi_value result;
  napi_create_int32(env, ECANCELED, &result);
  napi_resolve_deferred(env, job->deferred, result);
  free(job);
  return promise;
}
