/* grpc_access.h — who may call the master's gRPC port: the bearer tokens of
 * --grpc-token-file and the TLS (or mutual TLS) credentials of
 * --grpc-tls-cert, --grpc-tls-key and --grpc-client-ca.
 *
 * One per process (the master has one gRPC port): loaded and checked at start
 * before any worker is forked (grpc_access_load, no gRPC call: grpc_init
 * comes later), re-read on SIGHUP from the master's loop (grpc_access_reload),
 * and used by the gRPC endpoint's threads. Every part is swapped under a
 * mutex only once the new version loaded completely; a part that fails to
 * reload is logged and the old one stays. Tokens never reach a log line. */
#ifndef WSN_GRPC_ACCESS_H
#define WSN_GRPC_ACCESS_H

#include <stdbool.h>
#include <stddef.h>

#include "src/common/config.h"

struct grpc_server_credentials;

typedef enum {
    GRPC_ACCESS_OK = 0,        /* a token is not required, or an accepted one was sent */
    GRPC_ACCESS_NO_TOKEN,      /* no authorization metadata */
    GRPC_ACCESS_NOT_BEARER,    /* authorization is not "Bearer TOKEN" */
    GRPC_ACCESS_WRONG_TOKEN,   /* a bearer token that is not in the file */
} grpc_access_result;

/* Read every file the flags name: the token file, the certificate and key
 * (which must match) and the client CA. Returns 0, or -1 with err naming the
 * flag and the file (the caller exits 1). Logs what it loaded. */
int grpc_access_load(const wsn_config *cfg, char *err, size_t err_size);

/* SIGHUP: re-read the token file and the TLS files; each swapped in only when
 * complete, each problem logged. New TLS connections get the new certificate
 * (and client CA); open connections keep their session. */
void grpc_access_reload(const wsn_config *cfg);

/* The credentials for grpc_server_add_http2_port, after grpc_init: insecure,
 * or TLS only (with a client certificate required and verified when a client
 * CA is set) through a certificate fetcher, so that a reload takes effect
 * without a restart. The caller releases them. NULL when gRPC cannot make them. */
struct grpc_server_credentials *grpc_access_server_credentials(void);

/* true when calls must carry a token (--grpc-token-file). */
bool grpc_access_tokens_required(void);

/* One "authorization" metadata value (len bytes, not NUL-terminated):
 * "Bearer TOKEN" (scheme in any case) with a token of the file, compared in
 * constant time. */
grpc_access_result grpc_access_check_bearer(const char *value, size_t len);

/* Words for a refusal, for the UNAUTHENTICATED details and the log. */
const char *grpc_access_reason(grpc_access_result r);

/* Forget everything (tests; the process exit does not need it). */
void grpc_access_free(void);

#endif
