#ifndef ROSTERD_ADDON_H
#define ROSTERD_ADDON_H
#include <node_api.h>

napi_value page_cache_dont_need(napi_env env, napi_callback_info info);
napi_value spool_write_sha256(napi_env env, napi_callback_info info);
napi_value spool_write_run(napi_env env, napi_callback_info info);
napi_value spool_write_digest(napi_env env, napi_callback_info info);

#endif
