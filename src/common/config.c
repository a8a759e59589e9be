/* config.c — parse and validate wsnotifyd's flags. Every bad value produces a
 * single line naming the flag; the caller prints it and exits 2. */
#include "src/common/config.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include <config.h>

#include "src/common/decimal.h"

enum {
    OPT_GRPC_BIND = 256,
    OPT_HEARTBEAT,
    OPT_MAX_CONNECTS,
    OPT_MAX_MESSAGES,
    OPT_MAX_HANDSHAKES,
    OPT_MAX_PENDING_OUTPUT,
    OPT_LOG_LEVEL_FILE,
    OPT_TLS_CERT,
    OPT_TLS_KEY,
    OPT_DATA_DIR,
    OPT_HISTORY_SIZE,
    OPT_HISTORY_TTL,
    OPT_DATA_MAX_SIZE,
    OPT_USERS_FILE,
    OPT_TOKEN_TTL,
    OPT_DEMO,
    OPT_REDIS,
    OPT_NODE_ID,
    OPT_GRPC_TOKEN_FILE,
    OPT_GRPC_TLS_CERT,
    OPT_GRPC_TLS_KEY,
    OPT_GRPC_CLIENT_CA,
    OPT_JWT_PUBLIC_KEY_FILE,
    OPT_JWT_AUDIENCE,
    OPT_JWT_ISSUER,
};

static const struct option long_options[] = {
    {"workers", required_argument, NULL, 'w'},
    {"port", required_argument, NULL, 'p'},
    {"bind", required_argument, NULL, 'b'},
    {"grpc-port", required_argument, NULL, 'g'},
    {"grpc-bind", required_argument, NULL, OPT_GRPC_BIND},
    {"jwt-secret-file", required_argument, NULL, 's'},
    {"max-connections", required_argument, NULL, 'm'},
    {"heartbeat", required_argument, NULL, OPT_HEARTBEAT},
    {"log-level", required_argument, NULL, 'l'},
    {"max-connects-per-minute", required_argument, NULL, OPT_MAX_CONNECTS},
    {"max-messages-per-second", required_argument, NULL, OPT_MAX_MESSAGES},
    {"max-handshakes", required_argument, NULL, OPT_MAX_HANDSHAKES},
    {"max-pending-output", required_argument, NULL, OPT_MAX_PENDING_OUTPUT},
    {"log-level-file", required_argument, NULL, OPT_LOG_LEVEL_FILE},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"data-dir", required_argument, NULL, OPT_DATA_DIR},
    {"history-size", required_argument, NULL, OPT_HISTORY_SIZE},
    {"history-ttl", required_argument, NULL, OPT_HISTORY_TTL},
    {"data-max-size", required_argument, NULL, OPT_DATA_MAX_SIZE},
    {"users-file", required_argument, NULL, OPT_USERS_FILE},
    {"token-ttl", required_argument, NULL, OPT_TOKEN_TTL},
    {"demo", no_argument, NULL, OPT_DEMO},
    {"redis", required_argument, NULL, OPT_REDIS},
    {"node-id", required_argument, NULL, OPT_NODE_ID},
    {"grpc-token-file", required_argument, NULL, OPT_GRPC_TOKEN_FILE},
    {"grpc-tls-cert", required_argument, NULL, OPT_GRPC_TLS_CERT},
    {"grpc-tls-key", required_argument, NULL, OPT_GRPC_TLS_KEY},
    {"grpc-client-ca", required_argument, NULL, OPT_GRPC_CLIENT_CA},
    {"jwt-public-key-file", required_argument, NULL, OPT_JWT_PUBLIC_KEY_FILE},
    {"jwt-audience", required_argument, NULL, OPT_JWT_AUDIENCE},
    {"jwt-issuer", required_argument, NULL, OPT_JWT_ISSUER},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

void config_print_help(FILE *out)
{
    fprintf(out,
            "Usage: wsnotifyd [OPTION]...\n"
            "Real-time notification gateway: gRPC SendNotification in, WebSocket out.\n"
            "\n"
            "  -w, --workers N             worker processes to fork, 1..256 (default: online CPUs)\n"
            "  -p, --port PORT             HTTP/WebSocket port (default: 8080)\n"
            "  -b, --bind ADDR             address for the HTTP/WebSocket port (default: 0.0.0.0)\n"
            "  -g, --grpc-port PORT        gRPC port (default: 50056)\n"
            "      --grpc-bind ADDR        address for the gRPC port (default: 127.0.0.1)\n"
            "  -s, --jwt-secret-file PATH  HS256 secrets, one per line: the first signs, all verify\n"
            "                              (default: the JWT_SECRET environment variable)\n"
            "  -m, --max-connections N     capacity of the user directory, whole server (default: 100000)\n"
            "      --heartbeat SECONDS     server ping interval; silent for 2 intervals = closed (default: 50)\n"
            "  -l, --log-level LEVEL       error, warn, info or debug (default: info)\n"
            "      --max-connects-per-minute N\n"
            "                              connection attempts with a valid token per user per\n"
            "                              minute, 0..1000, over it: HTTP 429; 0 = no limit (default: 5)\n"
            "      --max-messages-per-second N\n"
            "                              client messages per connection per second, 0..10000,\n"
            "                              over it: close 1008; 0 = no limit (default: 10)\n"
            "      --max-handshakes N      per worker, connections still in TLS or the HTTP\n"
            "                              request; one more closes the oldest (default: 4096)\n"
            "      --max-pending-output MIB\n"
            "                              per worker, unsent output of all its connections;\n"
            "                              the one going over it is dropped (default: 256)\n"
            "      --log-level-file PATH   file whose first word is the log level; overrides\n"
            "                              --log-level and is re-read on SIGHUP (default: none)\n"
            "      --tls-cert FILE         PEM certificate (chain): the HTTP/WebSocket port then\n"
            "                              speaks TLS only, wss:// and https:// (default: none)\n"
            "      --tls-key FILE          PEM private key of --tls-cert (default: none)\n"
            "      --data-dir DIR          the history store (history, acks, id counter), created\n"
            "                              mode 0700 if missing (default: a private temporary\n"
            "                              store that lives as long as the process)\n"
            "      --history-size N        notifications kept per user for replay, 0..10000;\n"
            "                              0 = no history, no replay, acks or status (default: 100)\n"
            "      --history-ttl SECONDS   a stored notification older than this is dropped\n"
            "                              (default: 604800, a week)\n"
            "      --data-max-size MIB     bound on the store's size; when full the oldest\n"
            "                              notifications go first (default: 1024)\n"
            "      --users-file PATH       enables POST /api/v1/auth/login; lines USER_ID:EMAIL:HASH\n"
            "                              (crypt(3), see wsnotifyctl user); re-read on SIGHUP\n"
            "      --token-ttl SECONDS     lifetime of the tokens the login endpoint issues\n"
            "                              (default: 3600)\n"
            "      --demo                  also serve the browser test page at\n"
            "                              GET /test_websocket.html (default: off)\n"
            "      --redis URL             cluster mode: redis://[:PASSWORD@]HOST:PORT[/DB] or\n"
            "                              unix:///PATH; every node given the same URL is one\n"
            "                              cluster (default: a single node)\n"
            "      --node-id NAME          this node's name in the cluster (default: HOSTNAME:PORT)\n"
            "      --grpc-token-file PATH  bearer tokens accepted on the gRPC port, one per line;\n"
            "                              re-read on SIGHUP (default: none asked for)\n"
            "      --grpc-tls-cert FILE    PEM certificate (chain): the gRPC port then speaks TLS\n"
            "                              only (default: plaintext)\n"
            "      --grpc-tls-key FILE     PEM private key of --grpc-tls-cert\n"
            "      --grpc-client-ca FILE   with the two above: require a client certificate\n"
            "                              signed by this CA (mTLS)\n"
            "      --jwt-public-key-file PATH\n"
            "                              PEM public keys for RS256, ES256 and EdDSA tokens,\n"
            "                              several in one file; re-read on SIGHUP\n"
            "      --jwt-audience AUD      a token's aud (string or array) must contain AUD\n"
            "      --jwt-issuer ISS        a token's iss must equal ISS\n"
            "  -h, --help                  print this help and exit\n"
            "  -V, --version               print the version and exit\n"
            "\n"
            "Signals: TERM/INT stop gracefully (clients get close 1001).\n"
            "         HUP re-reads the secrets, the TLS certificate and key, and the\n"
            "         --log-level-file, without dropping any connection.\n"
            "See wsnotifyd(8).\n");
}

void config_defaults(wsn_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->workers = cpus < 1 ? 1 : cpus > CONFIG_MAX_WORKERS ? CONFIG_MAX_WORKERS : (int)cpus;
    cfg->port = 8080;
    snprintf(cfg->bind, sizeof cfg->bind, "%s", "0.0.0.0");
    cfg->grpc_port = 50056;
    snprintf(cfg->grpc_bind, sizeof cfg->grpc_bind, "%s", "127.0.0.1");
    cfg->jwt_secret_file = NULL;
    cfg->max_connections = 100000;
    cfg->heartbeat = 50;
    cfg->log_level = LOG_INFO;
    cfg->max_connects_per_minute = 5;
    cfg->max_messages_per_second = 10;
    cfg->max_handshakes = 4096;
    cfg->max_pending_output = 256;
    cfg->data_dir = NULL;
    cfg->history_size = 100;
    cfg->history_ttl = 604800;
    cfg->data_max_size = 1024;
    cfg->users_file = NULL;
    cfg->token_ttl = 3600;
    cfg->demo = false;
    cfg->redis_url = NULL;
    cfg->node_id[0] = '\0';
}

/* Printable ASCII without blanks, quotes or backslashes: it goes verbatim
 * into /health's JSON, a metrics label and log lines. */
static bool node_id_valid(const char *s)
{
    for (; *s != '\0'; s++)
        if (*s <= ' ' || *s > '~' || *s == '"' || *s == '\\')
            return false;
    return true;
}

static bool parse_address(const char *s, char *out, size_t out_size)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (strlen(s) >= out_size)
        return false;
    if (inet_pton(AF_INET, s, buf) != 1 && inet_pton(AF_INET6, s, buf) != 1)
        return false;
    snprintf(out, out_size, "%s", s);
    return true;
}

static config_status bad_value(char *err, size_t err_size, const char *flag, const char *value,
                               const char *expected)
{
    snprintf(err, err_size, "%s: invalid value '%s' (expected %s)", flag, value, expected);
    return CONFIG_USAGE;
}

config_status config_parse(wsn_config *cfg, int argc, char **argv, FILE *out, char *err,
                           size_t err_size)
{
    uint64_t v;
    int opt;
    int index = 0;
    optind = 0; /* GNU: full re-initialisation, so tests can parse repeatedly */
    opterr = 0; /* our own messages name the flag */
    while ((opt = getopt_long(argc, argv, ":w:p:b:g:s:m:l:hV", long_options, &index)) != -1) {
        switch (opt) {
        case 'w':
            if (!decimal_parse_range(optarg, 1, CONFIG_MAX_WORKERS, &v))
                return bad_value(err, err_size, "--workers", optarg, "1..256");
            cfg->workers = (int)v;
            break;
        case 'p':
            if (!decimal_parse_range(optarg, 1, 65535, &v))
                return bad_value(err, err_size, "--port", optarg, "1..65535");
            cfg->port = (uint16_t)v;
            break;
        case 'g':
            if (!decimal_parse_range(optarg, 1, 65535, &v))
                return bad_value(err, err_size, "--grpc-port", optarg, "1..65535");
            cfg->grpc_port = (uint16_t)v;
            break;
        case 'b':
            if (!parse_address(optarg, cfg->bind, sizeof cfg->bind))
                return bad_value(err, err_size, "--bind", optarg, "an IPv4 or IPv6 address");
            break;
        case OPT_GRPC_BIND:
            if (!parse_address(optarg, cfg->grpc_bind, sizeof cfg->grpc_bind))
                return bad_value(err, err_size, "--grpc-bind", optarg, "an IPv4 or IPv6 address");
            break;
        case 's':
            if (optarg[0] == '\0')
                return bad_value(err, err_size, "--jwt-secret-file", optarg, "a file path");
            cfg->jwt_secret_file = optarg;
            break;
        case 'm':
            if (!decimal_parse_range(optarg, 1, 16777216, &v))
                return bad_value(err, err_size, "--max-connections", optarg, "1..16777216");
            cfg->max_connections = (uint32_t)v;
            break;
        case OPT_HEARTBEAT:
            if (!decimal_parse_range(optarg, 1, 3600, &v))
                return bad_value(err, err_size, "--heartbeat", optarg, "1..3600 seconds");
            cfg->heartbeat = (unsigned)v;
            break;
        case 'l':
            if (log_level_parse(optarg, &cfg->log_level) != 0)
                return bad_value(err, err_size, "--log-level", optarg, "error, warn, info or debug");
            break;
        case OPT_LOG_LEVEL_FILE:
            if (optarg[0] == '\0')
                return bad_value(err, err_size, "--log-level-file", optarg, "a file path");
            cfg->log_level_file = optarg;
            break;
        case OPT_TLS_CERT:
            if (optarg[0] == '\0')
                return bad_value(err, err_size, "--tls-cert", optarg, "a PEM file path");
            cfg->tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            if (optarg[0] == '\0')
                return bad_value(err, err_size, "--tls-key", optarg, "a PEM file path");
            cfg->tls_key = optarg;
            break;
        case OPT_MAX_CONNECTS:
            if (!decimal_parse_range(optarg, 0, CONFIG_MAX_CONNECTS_PER_MINUTE, &v))
                return bad_value(err, err_size, "--max-connects-per-minute", optarg,
                                 "0..1000, 0 = no limit");
            cfg->max_connects_per_minute = (uint32_t)v;
            break;
        case OPT_DATA_DIR:
            if (optarg[0] == '\0')
                return bad_value(err, err_size, "--data-dir", optarg, "a directory path");
            cfg->data_dir = optarg;
            break;
        case OPT_HISTORY_SIZE:
            if (!decimal_parse_range(optarg, 0, CONFIG_MAX_HISTORY, &v))
                return bad_value(err, err_size, "--history-size", optarg, "0..10000");
            cfg->history_size = (uint32_t)v;
            break;
        case OPT_HISTORY_TTL:
            if (!decimal_parse_range(optarg, 1, 315360000, &v))
                return bad_value(err, err_size, "--history-ttl", optarg,
                                 "1..315360000 seconds");
            cfg->history_ttl = (uint32_t)v;
            break;
        case OPT_DATA_MAX_SIZE:
            if (!decimal_parse_range(optarg, 1, 1048576, &v))
                return bad_value(err, err_size, "--data-max-size", optarg, "1..1048576 MiB");
            cfg->data_max_size = (uint32_t)v;
            break;
        case OPT_USERS_FILE:
            if (optarg[0] == '\0')
                return bad_value(err, err_size, "--users-file", optarg, "a file path");
            cfg->users_file = optarg;
            break;
        case OPT_TOKEN_TTL:
            if (!decimal_parse_range(optarg, 1, 31536000, &v))
                return bad_value(err, err_size, "--token-ttl", optarg, "1..31536000 seconds");
            cfg->token_ttl = (uint32_t)v;
            break;
        case OPT_DEMO:
            cfg->demo = true;
            break;
        case OPT_REDIS:
            if (optarg[0] == '\0')
                return bad_value(err, err_size, "--redis", optarg,
                                 "redis://[:PASSWORD@]HOST:PORT[/DB] or unix:///PATH");
            cfg->redis_url = optarg;
            break;
        case OPT_NODE_ID:
            if (optarg[0] == '\0' || strlen(optarg) >= sizeof cfg->node_id ||
                !node_id_valid(optarg))
                return bad_value(err, err_size, "--node-id", optarg,
                                 "1..127 printable characters, no blanks, quotes or backslashes");
            snprintf(cfg->node_id, sizeof cfg->node_id, "%s", optarg);
            break;
        case OPT_GRPC_TOKEN_FILE:
        case OPT_GRPC_TLS_CERT:
        case OPT_GRPC_TLS_KEY:
        case OPT_GRPC_CLIENT_CA:
        case OPT_JWT_PUBLIC_KEY_FILE:
        case OPT_JWT_AUDIENCE:
        case OPT_JWT_ISSUER: {
            if (optarg[0] == '\0') {
                char flag[48];
                snprintf(flag, sizeof flag, "--%s", long_options[index].name);
                return bad_value(err, err_size, flag, optarg, "a non-empty value");
            }
            const char **field = opt == OPT_GRPC_TOKEN_FILE       ? &cfg->grpc_token_file
                                 : opt == OPT_GRPC_TLS_CERT       ? &cfg->grpc_tls_cert
                                 : opt == OPT_GRPC_TLS_KEY        ? &cfg->grpc_tls_key
                                 : opt == OPT_GRPC_CLIENT_CA      ? &cfg->grpc_client_ca
                                 : opt == OPT_JWT_PUBLIC_KEY_FILE ? &cfg->jwt_public_key_file
                                 : opt == OPT_JWT_AUDIENCE        ? &cfg->jwt_audience
                                                                  : &cfg->jwt_issuer;
            *field = optarg;
            break;
        }
        case OPT_MAX_HANDSHAKES:
            if (!decimal_parse_range(optarg, 1, 1048576, &v))
                return bad_value(err, err_size, "--max-handshakes", optarg, "1..1048576");
            cfg->max_handshakes = (uint32_t)v;
            break;
        case OPT_MAX_PENDING_OUTPUT:
            if (!decimal_parse_range(optarg, 1, 1048576, &v))
                return bad_value(err, err_size, "--max-pending-output", optarg,
                                 "1..1048576 MiB");
            cfg->max_pending_output = (uint32_t)v;
            break;
        case OPT_MAX_MESSAGES:
            if (!decimal_parse_range(optarg, 0, CONFIG_MAX_MESSAGES_PER_SECOND, &v))
                return bad_value(err, err_size, "--max-messages-per-second", optarg,
                                 "0..10000, 0 = no limit");
            cfg->max_messages_per_second = (uint32_t)v;
            break;
        case 'h':
            config_print_help(out);
            return CONFIG_EXIT_OK;
        case 'V':
            fprintf(out, "wsnotifyd %s\n", PACKAGE_VERSION);
            return CONFIG_EXIT_OK;
        case ':':
            snprintf(err, err_size, "%s: missing value (see --help)", argv[optind - 1]);
            return CONFIG_USAGE;
        default:
            snprintf(err, err_size, "%s: unknown option (see --help)", argv[optind - 1]);
            return CONFIG_USAGE;
        }
    }
    if (optind < argc) {
        snprintf(err, err_size, "%s: unexpected argument (see --help)", argv[optind]);
        return CONFIG_USAGE;
    }
    if (cfg->redis_url != NULL && cfg->data_dir != NULL) {
        snprintf(err, err_size, "--data-dir: not used with --redis (in cluster mode the "
                                "history lives in Redis): give one or the other");
        return CONFIG_USAGE;
    }
    if ((cfg->grpc_tls_cert == NULL) != (cfg->grpc_tls_key == NULL)) {
        snprintf(err, err_size, "%s: needs %s too (both or neither)",
                 cfg->grpc_tls_cert ? "--grpc-tls-cert" : "--grpc-tls-key",
                 cfg->grpc_tls_cert ? "--grpc-tls-key" : "--grpc-tls-cert");
        return CONFIG_USAGE;
    }
    if (cfg->grpc_client_ca != NULL && cfg->grpc_tls_cert == NULL) {
        snprintf(err, err_size, "--grpc-client-ca: needs --grpc-tls-cert and --grpc-tls-key");
        return CONFIG_USAGE;
    }
    if (cfg->node_id[0] == '\0') {
        char host[64] = "localhost";
        if (gethostname(host, sizeof host) != 0)
            snprintf(host, sizeof host, "localhost");
        host[sizeof host - 1] = '\0';
        snprintf(cfg->node_id, sizeof cfg->node_id, "%s:%u", host, (unsigned)cfg->port);
    }
    if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
        snprintf(err, err_size, "%s: needs %s too (both or neither)",
                 cfg->tls_cert ? "--tls-cert" : "--tls-key",
                 cfg->tls_cert ? "--tls-key" : "--tls-cert");
        return CONFIG_USAGE;
    }
    return CONFIG_OK;
}
