/* jwt_keys.h — the public keys that verify RS256, ES256 and EdDSA tokens
 * (--jwt-public-key-file: several PEM keys in one file), and a private key
 * that signs such tokens (wsnotifyctl token --key-file, for demos and tests).
 *
 * A key set is immutable once loaded: a reload loads a new set and swaps the
 * pointer only when the whole file loaded, like the HS256 secrets. Each key's
 * type fixes the one algorithm it verifies (RSA → RS256, EC P-256 → ES256,
 * Ed25519 → EdDSA), so a token can never pick how its key is used. OpenSSL's
 * types stay inside jwt_keys.c. */
#ifndef WSN_JWT_KEYS_H
#define WSN_JWT_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#define JWT_KEYS_MAX 64                   /* keys in one file */
#define JWT_KEYS_FILE_MAX (1024 * 1024)   /* bigger is not a key file */
#define JWT_RSA_MIN_BITS 2048
#define JWT_RSA_MAX_BITS 8192             /* bounds the cost of one verification */
#define JWT_SIG_MAX (JWT_RSA_MAX_BITS / 8) /* the longest signature, in bytes */

typedef enum {
    JWT_KEY_RSA = 0,   /* RS256: RSASSA-PKCS1-v1_5 with SHA-256 */
    JWT_KEY_P256,      /* ES256: ECDSA P-256 with SHA-256, JOSE r||s signature */
    JWT_KEY_ED25519,   /* EdDSA: Ed25519 */
    JWT_KEY_KINDS
} jwt_key_kind;

typedef struct jwt_keys jwt_keys;
typedef struct jwt_signer jwt_signer;

/* Every key of the PEM file at path: "PUBLIC KEY" (SubjectPublicKeyInfo),
 * "RSA PUBLIC KEY" (PKCS#1) or "CERTIFICATE" blocks (the certificate's key);
 * text between blocks is ignored. Refused, with err naming the file and the
 * block: no key at all, a private key, an RSA key under JWT_RSA_MIN_BITS or
 * over JWT_RSA_MAX_BITS, a curve other than P-256, any other key type, bad
 * PEM or DER, more than JWT_KEYS_MAX keys. Returns 0 (free with
 * jwt_keys_free) or -1; the file must be a regular file (rfile.h). */
int jwt_keys_load(jwt_keys **out, const char *path, char *err, size_t err_size);
void jwt_keys_free(jwt_keys *k);

/* Keys of that kind in k (0 for NULL). */
size_t jwt_keys_count(const jwt_keys *k, jwt_key_kind kind);

/* "3 keys: 1 RSA (RS256), 1 P-256 (ES256), 1 Ed25519 (EdDSA)", for log lines. */
void jwt_keys_describe(const jwt_keys *k, char *out, size_t out_size);

/* True when one of k's keys of that kind verifies sig over msg. sig is the
 * JWS signature as decoded from the token: for RSA exactly the modulus size,
 * for P-256 and Ed25519 exactly 64 bytes (ES256's is r||s, never DER). */
bool jwt_keys_verify(const jwt_keys *k, jwt_key_kind kind, const unsigned char *msg,
                     size_t msg_len, const unsigned char *sig, size_t sig_len);

/* The JWS "alg" of a kind: "RS256", "ES256", "EdDSA". */
const char *jwt_key_alg(jwt_key_kind kind);

/* An unencrypted PEM private key (RSA of JWT_RSA_MIN_BITS..JWT_RSA_MAX_BITS,
 * EC P-256 or Ed25519) from path. Returns 0 (free with jwt_signer_free) or -1
 * with err naming the file. */
int jwt_signer_load(jwt_signer **out, const char *path, char *err, size_t err_size);
void jwt_signer_free(jwt_signer *s);
jwt_key_kind jwt_signer_kind(const jwt_signer *s);

/* The JWS signature of msg (ES256 as r||s) into sig (JWT_SIG_MAX bytes).
 * Returns its length, or 0 on failure. */
size_t jwt_signer_sign(const jwt_signer *s, const unsigned char *msg, size_t msg_len,
                       unsigned char sig[JWT_SIG_MAX]);

#endif
