/*
 * An upload's data written to its spool file and added to its SHA-256, on the libuv thread pool.
 *
 *   sha256(): a new SHA-256 state (OpenSSL's, as linked into Node)
 *   writeRun(fd, buffer, position, state | null): Promise<number>
 *       adds the buffer to the state (when given), then writes all of it at `position` (short
 *       writes continued, EINTR retried) and starts writing it back to the disk; resolves to 0,
 *       an errno value, or -1 if the hash failed
 *   digest(state): the hex SHA-256; the state is finished and takes nothing more
 *
 * Why: the event loop serves every SFTP connection, and a client that waits for acknowledgements
 * (curl/libssh2 has 64 KiB in flight) waits for whatever the loop does in between. Hashing there
 * costs about 0.6 ms per MiB, a quarter of rosterd's own CPU time for an upload. Here the hash
 * runs beside the loop, in the same pass over the data as the write: in paired benchmark rounds
 * curl's uploads got 6 % (as deployed) to 11 % (same memory) faster (README, Benchmarks).
 *
 * Write-back starts as each run is written (sync_file_range WRITE starts the I/O without waiting
 * for it), because
 * every upload ends with an fdatasync before the client is told it arrived (spool.ts): left to
 * the end, that sync wrote the whole file at once (about 0.1 s per 200 MB here, seconds for a
 * large file, while the client waits on its CLOSE); started early, the disk works while the data
 * still arrives and the final sync finds little left. Durability still rests on that fdatasync
 * alone: this is scheduling, and its errors show there.
 *
 * The caller writes one run at a time per state (spool.ts does, in order), so no two threads ever
 * touch one state. Each job holds references to its buffer and its state until it completes: neither
 * can be collected or reused while a thread reads it.
 */
#define _GNU_SOURCE /* sync_file_range */
#include <fcntl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "addon.h"

typedef struct {
  EVP_MD_CTX *ctx;
  int busy;     /* a writeRun using it is in progress */
  int finished; /* digest() was called */
  int failed;   /* a writeRun that added to it failed: it no longer matches any file */
} HashState;

/* Marks the externals sha256() makes, so that no other external passes for a HashState. */
static const napi_type_tag HASH_STATE_TAG = {0x726f73746572645fULL, 0x73686132353673ULL};

typedef struct {
  int fd;
  const unsigned char *data;
  size_t length;
  off_t position;
  HashState *hash;
  int result;
  napi_ref buffer_ref;
  napi_ref hash_ref;
  napi_deferred deferred;
  napi_async_work work;
} Job;

/* Why `hash` cannot be used now, or NULL if it can. */
static const char *unusable(const HashState *hash) {
  if (hash->busy) return "a write is still adding to this SHA-256";
  if (hash->finished) return "this SHA-256 is already finished";
  if (hash->failed) return "a write that added to this SHA-256 failed: it no longer matches any file";
  return NULL;
}

/* Throws `message` (a call into N-API itself failed) and returns NULL. */
static napi_value fail(napi_env env, const char *message) {
  napi_throw_error(env, NULL, message);
  return NULL;
}

static void finalize_hash(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  HashState *state = data;
  EVP_MD_CTX_free(state->ctx);
  free(state);
}

napi_value spool_write_sha256(napi_env env, napi_callback_info info) {
  (void)info;
  HashState *state = calloc(1, sizeof *state);
  if (state == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  state->ctx = EVP_MD_CTX_new();
  if (state->ctx == NULL || EVP_DigestInit_ex(state->ctx, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(state->ctx);
    free(state);
    napi_throw_error(env, NULL, "OpenSSL could not start a SHA-256");
    return NULL;
  }
  napi_value external;
  if (napi_create_external(env, state, finalize_hash, NULL, &external) != napi_ok) {
    EVP_MD_CTX_free(state->ctx);
    free(state);
    napi_throw_error(env, NULL, "could not create the SHA-256 state");
    return NULL;
  }
  if (napi_type_tag_object(env, external, &HASH_STATE_TAG) != napi_ok) {
    napi_throw_error(env, NULL, "could not tag the SHA-256 state");
    return NULL; /* the finalizer frees it */
  }
  return external;
}

/* The HashState in `value`, or NULL with a TypeError thrown. */
static HashState *hash_state(napi_env env, napi_value value) {
  napi_valuetype type;
  void *data = NULL;
  bool tagged = false;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external ||
      napi_check_object_type_tag(env, value, &HASH_STATE_TAG, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, value, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "expected a SHA-256 state from sha256()");
    return NULL;
  }
  return data;
}

static void execute(napi_env env, void *data) {
  (void)env;
  Job *job = data;
  if (job->hash != NULL && EVP_DigestUpdate(job->hash->ctx, job->data, job->length) != 1) {
    job->result = -1;
    return;
  }
  size_t done = 0;
  while (done < job->length) {
    ssize_t n = pwrite(job->fd, job->data + done, job->length - done, job->position + (off_t)done);
    if (n < 0) {
      if (errno == EINTR) continue;
      job->result = errno;
      return;
    }
    if (n == 0) {
      job->result = EIO; /* the kernel took nothing and said nothing: do not spin */
      return;
    }
    done += (size_t)n;
  }
#ifdef SYNC_FILE_RANGE_WRITE
  /* Length 0 would mean "to the end of the file". */
  if (job->length > 0) (void)sync_file_range(job->fd, job->position, (off_t)job->length, SYNC_FILE_RANGE_WRITE);
#endif
  job->result = 0;
}

static void release(napi_env env, Job *job) {
  if (job->hash != NULL) {
    job->hash->busy = 0;
    if (job->result != 0) job->hash->failed = 1;
  }
  if (job->buffer_ref != NULL) napi_delete_reference(env, job->buffer_ref);
  if (job->hash_ref != NULL) napi_delete_reference(env, job->hash_ref);
  if (job->work != NULL) napi_delete_async_work(env, job->work);
  free(job);
}

static void complete(napi_env env, napi_status status, void *data) {
  Job *job = data;
  if (status != napi_ok) job->result = ECANCELED;
  napi_value result;
  napi_create_int32(env, job->result, &result);
  napi_resolve_deferred(env, job->deferred, result);
  release(env, job);
}

napi_value spool_write_run(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_valuetype type;
  int32_t fd;
  double position;
  bool is_buffer = false;
  void *data = NULL;
  size_t length = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return fail(env, "could not read the arguments");
  if (argc < 4 || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_number ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_is_buffer(env, argv[1], &is_buffer) != napi_ok || !is_buffer ||
      napi_get_buffer_info(env, argv[1], &data, &length) != napi_ok ||
      napi_typeof(env, argv[2], &type) != napi_ok || type != napi_number ||
      napi_get_value_double(env, argv[2], &position) != napi_ok || !(position >= 0) ||
      position > 9007199254740991.0 || position != (double)(int64_t)position) {
    napi_throw_type_error(env, NULL, "writeRun(fd, buffer, position, state | null) takes an open file descriptor, a Buffer, a whole position and a state from sha256() or null");
    return NULL;
  }
  HashState *hash = NULL;
  if (napi_typeof(env, argv[3], &type) != napi_ok) return fail(env, "could not read the arguments");
  if (type != napi_null && type != napi_undefined) {
    hash = hash_state(env, argv[3]);
    if (hash == NULL) return NULL;
    const char *why = unusable(hash);
    if (why != NULL) return fail(env, why);
  }
  Job *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  job->fd = fd;
  job->data = data;
  job->length = length;
  job->position = (off_t)position;
  job->hash = hash;
  napi_value promise, name;
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok) {
    free(job);
    napi_throw_error(env, NULL, "could not create a promise");
    return NULL;
  }
  if (napi_create_reference(env, argv[1], 1, &job->buffer_ref) == napi_ok &&
      (hash == NULL || napi_create_reference(env, argv[3], 1, &job->hash_ref) == napi_ok) &&
      napi_create_string_utf8(env, "rosterd.spool.writeRun", NAPI_AUTO_LENGTH, &name) == napi_ok &&
      napi_create_async_work(env, NULL, name, execute, complete, job, &job->work) == napi_ok &&
      napi_queue_async_work(env, job->work) == napi_ok) {
    if (hash != NULL) hash->busy = 1;
    return promise;
  }
  /* Not queued: settle the promise here (ECANCELED), so that no caller waits forever. */
  napi_value result;
  napi_create_int32(env, ECANCELED, &result);
  napi_resolve_deferred(env, job->deferred, result);
  job->hash = NULL; /* it was never marked busy */
  release(env, job);
  return promise;
}

napi_value spool_write_digest(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return fail(env, "could not read the arguments");
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "digest(state) takes a state from sha256()");
    return NULL;
  }
  HashState *hash = hash_state(env, argv[0]);
  if (hash == NULL) return NULL;
  const char *why = unusable(hash);
  if (why != NULL) return fail(env, why);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_length = 0;
  hash->finished = 1;
  if (EVP_DigestFinal_ex(hash->ctx, md, &md_length) != 1) {
    napi_throw_error(env, NULL, "OpenSSL could not finish the SHA-256");
    return NULL;
  }
  static const char hex[] = "0123456789abcdef";
  char text[2 * EVP_MAX_MD_SIZE + 1];
  for (unsigned int i = 0; i < md_length; i++) {
    text[2 * i] = hex[md[i] >> 4];
    text[2 * i + 1] = hex[md[i] & 15];
  }
  napi_value result;
  if (napi_create_string_latin1(env, text, 2 * md_length, &result) != napi_ok) return fail(env, "could not return the digest");
  return result;
}
