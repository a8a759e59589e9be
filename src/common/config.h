/* config.h — wsnotifyd's command line: the flags of SPEC.md, their defaults,
 * validation, and the --help text (kept here so --help and parsing agree). */
#ifndef WSN_CONFIG_H
#define WSN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "src/common/log.h"

#define CONFIG_MAX_WORKERS 256
#define CONFIG_ADDR_MAX 64
/* The largest limits the rate limiters can count (shm/ratelimit.c checks them). */
#define CONFIG_MAX_CONNECTS_PER_MINUTE 1000u
#define CONFIG_MAX_MESSAGES_PER_SECOND 10000u
#define CONFIG_MAX_HISTORY 10000u
#define CONFIG_NODE_ID_MAX 128

typedef struct {
    int workers;
    uint16_t port;
    char bind[CONFIG_ADDR_MAX];
    uint16_t grpc_port;
    char grpc_bind[CONFIG_ADDR_MAX];
    const char *jwt_secret_file;   /* NULL: env JWT_SECRET */
    uint32_t max_connections;
    unsigned heartbeat;            /* seconds */
    log_level log_level;
    uint32_t max_connects_per_minute;  /* per user, attempts with a valid token; 0 = no limit */
    uint32_t max_messages_per_second;  /* per connection, data messages; 0 = no limit */
    uint32_t max_handshakes;       /* per worker, connections not yet upgraded */
    uint32_t max_pending_output;   /* per worker, MiB of unsent output, all connections */
    const char *data_dir;          /* --data-dir; NULL: a private temporary store */
    uint32_t history_size;         /* per user, 0..CONFIG_MAX_HISTORY; 0 = no history */
    uint32_t history_ttl;          /* seconds */
    uint32_t data_max_size;        /* MiB: bound on the store's total size */
    const char *users_file;        /* --users-file: enables POST /api/v1/auth/login */
    uint32_t token_ttl;            /* seconds: lifetime of the login endpoint's tokens */
    bool demo;                     /* also serve the browser test page */
    const char *redis_url;         /* --redis: cluster mode; NULL: a single node */
    char node_id[CONFIG_NODE_ID_MAX]; /* --node-id, default HOSTNAME:PORT */
    const char *grpc_token_file;   /* bearer tokens the gRPC port accepts; NULL: none asked */
    const char *grpc_tls_cert;     /* the gRPC port speaks TLS only when set */
    const char *grpc_tls_key;
    const char *grpc_client_ca;    /* mTLS: client certificates must be signed by it */
    const char *jwt_public_key_file; /* RS256/ES256/EdDSA keys, several in one PEM file */
    const char *jwt_audience;      /* a token's aud must contain it, when set */
    const char *jwt_issuer;        /* a token's iss must equal it, when set */
    const char *log_level_file;    /* NULL: none; else its first word overrides log_level (re-read on SIGHUP) */
    const char *tls_cert;          /* PEM certificate (chain); NULL: plain HTTP/WebSocket */
    const char *tls_key;           /* PEM private key; set exactly when tls_cert is */
} wsn_config;

typedef enum {
    CONFIG_OK = 0,     /* run */
    CONFIG_EXIT_OK,    /* --help or --version printed: exit 0 */
    CONFIG_USAGE,      /* bad command line: err holds the one-line message, exit 2 */
} config_status;

void config_defaults(wsn_config *cfg);

/* Parse argv (getopt_long; may be called more than once per process). */
config_status config_parse(wsn_config *cfg, int argc, char **argv, FILE *out, char *err,
                           size_t err_size);

void config_print_help(FILE *out);

#endif
