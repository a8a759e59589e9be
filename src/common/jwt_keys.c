/* jwt_keys.c — loading the PEM public keys of --jwt-public-key-file and
 * verifying JWS signatures with them, and signing with a private key for
 * wsnotifyctl (see jwt_keys.h). OpenSSL 3 EVP throughout.
 *
 * The file is read whole by us (rfile.h: a regular file, bounded size) and
 * walked block by block with PEM_read_bio, so that every refusal can name the
 * block at fault, and a private key pasted by mistake is refused rather than
 * silently used as a public one. */
#include "src/common/jwt_keys.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/common/errbuf.h"
#include "src/common/rfile.h"

#define P256_COORD 32          /* bytes of r and of s in an ES256 signature */
#define JOSE_EC_SIG (2 * P256_COORD)
#define ED25519_SIG 64
#define DER_EC_SIG_MAX 80      /* SEQUENCE of two INTEGERs of up to 33 bytes */

struct jwt_keys {
    size_t count[JWT_KEY_KINDS];
    EVP_PKEY *key[JWT_KEY_KINDS][JWT_KEYS_MAX];
};

struct jwt_signer {
    jwt_key_kind kind;
    EVP_PKEY *key;
};

const char *jwt_key_alg(jwt_key_kind kind)
{
    switch (kind) {
    case JWT_KEY_RSA: return "RS256";
    case JWT_KEY_P256: return "ES256";
    case JWT_KEY_ED25519: return "EdDSA";
    default: return "?";
    }
}

static const char *openssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    return r != NULL ? r : "unknown OpenSSL error";
}

/* Never prompt for a passphrase: an encrypted key is refused instead. */
static int no_password(char *buf, int size, int rwflag, void *userdata)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)userdata;
    return 0;
}

/* The kind a key may be used as, or -1 with why (a static string or written
 * into why_buf). */
static int classify(EVP_PKEY *pkey, char *why_buf, size_t why_size, const char **why)
{
    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA: {
        int bits = EVP_PKEY_get_bits(pkey);
        if (bits < JWT_RSA_MIN_BITS || bits > JWT_RSA_MAX_BITS) {
            snprintf(why_buf, why_size, "an RSA key of %d bits (%d..%d allowed)", bits,
                     JWT_RSA_MIN_BITS, JWT_RSA_MAX_BITS);
            *why = why_buf;
            return -1;
        }
        return JWT_KEY_RSA;
    }
    case EVP_PKEY_EC: {
        char group[64] = "";
        size_t n = 0;
        if (EVP_PKEY_get_group_name(pkey, group, sizeof group, &n) != 1 ||
            strcmp(group, SN_X9_62_prime256v1) != 0) {
            snprintf(why_buf, why_size, "an EC key on curve %s (ES256 needs P-256)",
                     group[0] ? group : "(unnamed)");
            *why = why_buf;
            return -1;
        }
        return JWT_KEY_P256;
    }
    case EVP_PKEY_ED25519:
        return JWT_KEY_ED25519;
    case EVP_PKEY_ED448:
        *why = "an Ed448 key (EdDSA here means Ed25519)";
        return -1;
    case EVP_PKEY_RSA_PSS:
        *why = "an RSA-PSS key (RS256 needs a plain RSA key)";
        return -1;
    default:
        *why = "not an RSA, EC P-256 or Ed25519 key";
        return -1;
    }
}

/* The public key of one PEM block, or NULL with why. *skip: a block that
 * holds no key and is harmless (EC parameters). */
static EVP_PKEY *block_key(const char *name, const unsigned char *der, long len, bool *skip,
                           const char **why)
{
    const unsigned char *p = der;
    EVP_PKEY *pkey = NULL;
    *skip = false;
    if (strcmp(name, PEM_STRING_PUBLIC) == 0) {
        pkey = d2i_PUBKEY(NULL, &p, len);
    } else if (strcmp(name, PEM_STRING_RSA_PUBLIC) == 0) {
        pkey = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, len);
    } else if (strcmp(name, PEM_STRING_X509) == 0 || strcmp(name, PEM_STRING_X509_OLD) == 0) {
        X509 *x = d2i_X509(NULL, &p, len);
        if (x != NULL)
            pkey = X509_get_pubkey(x);
        X509_free(x);
    } else if (strstr(name, "PRIVATE KEY") != NULL) {
        *why = "a private key: the file must hold public keys only "
               "(openssl pkey -in KEY -pubout)";
        return NULL;
    } else if (strcmp(name, PEM_STRING_ECPARAMETERS) == 0) {
        *skip = true;
        return NULL;
    } else {
        *why = "not a public key or a certificate";
        return NULL;
    }
    if (pkey == NULL) {
        *why = "not valid DER";
        return NULL;
    }
    if (p != der + len) {
        EVP_PKEY_free(pkey);
        *why = "a key followed by stray bytes";
        return NULL;
    }
    return pkey;
}

static int add_key(jwt_keys *k, EVP_PKEY *pkey, size_t block, const char *path, char *err,
                   size_t err_size)
{
    char why_buf[96];
    const char *why = NULL;
    int kind = classify(pkey, why_buf, sizeof why_buf, &why);
    if (kind < 0) {
        errbuf_set(err, err_size, "%s: PEM block %zu is %s", path, block, why);
        return -1;
    }
    size_t total = 0;
    for (int i = 0; i < JWT_KEY_KINDS; i++)
        total += k->count[i];
    if (total == JWT_KEYS_MAX) {
        errbuf_set(err, err_size, "%s: more than %d keys", path, JWT_KEYS_MAX);
        return -1;
    }
    k->key[kind][k->count[kind]++] = pkey;
    return 0;
}

/* Walk the PEM blocks of buf into k. */
static int load_blocks(jwt_keys *k, const unsigned char *buf, size_t len, const char *path,
                       char *err, size_t err_size)
{
    BIO *bio = BIO_new_mem_buf(buf, (int)len);
    if (bio == NULL) {
        errbuf_set(err, err_size, "%s: %s", path, openssl_reason());
        return -1;
    }
    int rc = 0;
    for (size_t block = 1;; block++) {
        char *name = NULL;
        char *header = NULL;
        unsigned char *der = NULL;
        long der_len = 0;
        if (PEM_read_bio(bio, &name, &header, &der, &der_len) != 1) {
            unsigned long e = ERR_peek_last_error();
            bool at_end = ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
            if (!at_end) {
                errbuf_set(err, err_size, "%s: PEM block %zu: bad PEM (%s)", path, block,
                           openssl_reason());
                rc = -1;
            }
            break;
        }
        bool skip = false;
        const char *why = "a block with headers (encrypted?)";
        EVP_PKEY *pkey = NULL;
        if (header[0] == '\0') /* public keys never carry RFC 1421 headers */
            pkey = block_key(name, der, der_len, &skip, &why);
        if (pkey != NULL && add_key(k, pkey, block, path, err, err_size) != 0) {
            EVP_PKEY_free(pkey);
            rc = -1;
        } else if (pkey == NULL && !skip) {
            errbuf_set(err, err_size, "%s: PEM block %zu (%s) is %s", path, block, name, why);
            rc = -1;
        }
        OPENSSL_free(name);
        OPENSSL_free(header);
        OPENSSL_clear_free(der, (size_t)der_len);
        if (rc != 0)
            break;
    }
    BIO_free(bio);
    return rc;
}

int jwt_keys_load(jwt_keys **out, const char *path, char *err, size_t err_size)
{
    *out = NULL;
    if (path == NULL) {
        errbuf_set(err, err_size, "no public key file given");
        return -1;
    }
    unsigned char *buf = NULL;
    size_t len = 0;
    const char *why = NULL;
    if (rfile_read_all(path, JWT_KEYS_FILE_MAX, &buf, &len, &why) != 0) {
        errbuf_set(err, err_size, "cannot read %s: %s", path, why);
        return -1;
    }
    jwt_keys *k = calloc(1, sizeof *k);
    int rc = -1;
    if (k == NULL)
        errbuf_set(err, err_size, "%s: out of memory", path);
    else if (load_blocks(k, buf, len, path, err, err_size) == 0)
        rc = 0;
    if (rc == 0 &&
        k->count[JWT_KEY_RSA] + k->count[JWT_KEY_P256] + k->count[JWT_KEY_ED25519] == 0) {
        errbuf_set(err, err_size, "no PEM public key in %s", path);
        rc = -1;
    }
    ERR_clear_error(); /* the decoders leave notes behind even on success */
    free(buf); /* public keys: nothing to wipe */
    if (rc != 0) {
        jwt_keys_free(k);
        return -1;
    }
    *out = k;
    return 0;
}

void jwt_keys_free(jwt_keys *k)
{
    if (k == NULL)
        return;
    for (int kind = 0; kind < JWT_KEY_KINDS; kind++)
        for (size_t i = 0; i < k->count[kind]; i++)
            EVP_PKEY_free(k->key[kind][i]);
    free(k);
}

size_t jwt_keys_count(const jwt_keys *k, jwt_key_kind kind)
{
    if (k == NULL || (unsigned)kind >= JWT_KEY_KINDS)
        return 0;
    return k->count[kind];
}

void jwt_keys_describe(const jwt_keys *k, char *out, size_t out_size)
{
    size_t n[JWT_KEY_KINDS];
    size_t total = 0;
    for (int i = 0; i < JWT_KEY_KINDS; i++)
        total += n[i] = jwt_keys_count(k, (jwt_key_kind)i);
    snprintf(out, out_size, "%zu key%s: %zu RSA (RS256), %zu P-256 (ES256), %zu Ed25519 (EdDSA)",
             total, total == 1 ? "" : "s", n[JWT_KEY_RSA], n[JWT_KEY_P256], n[JWT_KEY_ED25519]);
}

/* JOSE r||s (RFC 7518 §3.4) to the DER ECDSA-Sig-Value OpenSSL verifies.
 * Returns the DER length, or 0. */
static int jose_to_der(const unsigned char *sig, unsigned char der[DER_EC_SIG_MAX])
{
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, P256_COORD, NULL);
    BIGNUM *s = BN_bin2bn(sig + P256_COORD, P256_COORD, NULL);
    int n = 0;
    if (es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL; /* owned by es now */
        if (i2d_ECDSA_SIG(es, NULL) <= DER_EC_SIG_MAX) {
            unsigned char *p = der;
            n = i2d_ECDSA_SIG(es, &p);
        }
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return n > 0 ? n : 0;
}

/* One EVP verification: md NULL for Ed25519 (its hash is part of the scheme). */
static bool evp_verify(EVP_PKEY *pkey, const EVP_MD *md, const unsigned char *msg,
                       size_t msg_len, const unsigned char *sig, size_t sig_len)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, md, NULL, pkey) == 1 &&
              EVP_DigestVerify(ctx, sig, sig_len, msg, msg_len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

bool jwt_keys_verify(const jwt_keys *k, jwt_key_kind kind, const unsigned char *msg,
                     size_t msg_len, const unsigned char *sig, size_t sig_len)
{
    if (jwt_keys_count(k, kind) == 0 || sig == NULL || sig_len == 0)
        return false;
    unsigned char der[DER_EC_SIG_MAX];
    int der_len = 0;
    /* Exact lengths only: a DER-encoded ES256 signature (what some libraries
     * wrongly emit), a truncated or a zero-padded one is refused outright. */
    if (kind == JWT_KEY_P256) {
        if (sig_len != JOSE_EC_SIG || (der_len = jose_to_der(sig, der)) == 0)
            return false;
    } else if (kind == JWT_KEY_ED25519 && sig_len != ED25519_SIG) {
        return false;
    }
    bool ok = false;
    for (size_t i = 0; i < k->count[kind] && !ok; i++) {
        EVP_PKEY *pkey = k->key[kind][i];
        switch (kind) {
        case JWT_KEY_RSA:
            ok = sig_len == (size_t)EVP_PKEY_get_size(pkey) &&
                 evp_verify(pkey, EVP_sha256(), msg, msg_len, sig, sig_len);
            break;
        case JWT_KEY_P256:
            ok = evp_verify(pkey, EVP_sha256(), msg, msg_len, der, (size_t)der_len);
            break;
        default:
            ok = evp_verify(pkey, NULL, msg, msg_len, sig, sig_len);
            break;
        }
    }
    ERR_clear_error(); /* a failed verification queues errors: keep the queue empty */
    return ok;
}

/* ---- signing (wsnotifyctl) ---------------------------------------------- */

int jwt_signer_load(jwt_signer **out, const char *path, char *err, size_t err_size)
{
    *out = NULL;
    unsigned char *buf = NULL;
    size_t len = 0;
    const char *why = NULL;
    if (rfile_read_all(path, JWT_KEYS_FILE_MAX, &buf, &len, &why) != 0) {
        errbuf_set(err, err_size, "cannot read %s: %s", path, why);
        return -1;
    }
    int rc = -1;
    BIO *bio = BIO_new_mem_buf(buf, (int)len);
    EVP_PKEY *pkey = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL) : NULL;
    char why_buf[96];
    int kind = -1;
    if (pkey == NULL)
        errbuf_set(err, err_size, "%s: not an unencrypted PEM private key (%s)", path,
                   openssl_reason());
    else if ((kind = classify(pkey, why_buf, sizeof why_buf, &why)) < 0)
        errbuf_set(err, err_size, "%s: %s", path, why);
    else if ((*out = calloc(1, sizeof **out)) == NULL)
        errbuf_set(err, err_size, "%s: out of memory", path);
    else
        rc = 0;
    if (rc == 0) {
        (*out)->kind = (jwt_key_kind)kind;
        (*out)->key = pkey;
        pkey = NULL;
    }
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    OPENSSL_cleanse(buf, len);
    free(buf);
    ERR_clear_error();
    return rc;
}

void jwt_signer_free(jwt_signer *s)
{
    if (s == NULL)
        return;
    EVP_PKEY_free(s->key);
    free(s);
}

jwt_key_kind jwt_signer_kind(const jwt_signer *s)
{
    return s->kind;
}

/* DER ECDSA-Sig-Value to JOSE r||s, each left-padded to 32 bytes. */
static size_t der_to_jose(const unsigned char *der, size_t der_len, unsigned char *out)
{
    const unsigned char *p = der;
    ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    const BIGNUM *r = NULL;
    const BIGNUM *s = NULL;
    size_t n = 0;
    if (es != NULL) {
        ECDSA_SIG_get0(es, &r, &s);
        if (BN_bn2binpad(r, out, P256_COORD) == P256_COORD &&
            BN_bn2binpad(s, out + P256_COORD, P256_COORD) == P256_COORD)
            n = JOSE_EC_SIG;
    }
    ECDSA_SIG_free(es);
    return n;
}

size_t jwt_signer_sign(const jwt_signer *s, const unsigned char *msg, size_t msg_len,
                       unsigned char sig[JWT_SIG_MAX])
{
    const EVP_MD *md = s->kind == JWT_KEY_ED25519 ? NULL : EVP_sha256();
    unsigned char der[DER_EC_SIG_MAX];
    unsigned char *dst = s->kind == JWT_KEY_P256 ? der : sig;
    size_t cap = s->kind == JWT_KEY_P256 ? sizeof der : JWT_SIG_MAX;
    size_t n = cap; /* room enough: the key sizes are bounded at load */
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = ctx != NULL && EVP_DigestSignInit(ctx, NULL, md, NULL, s->key) == 1 &&
              EVP_DigestSign(ctx, dst, &n, msg, msg_len) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    if (!ok)
        return 0;
    return s->kind == JWT_KEY_P256 ? der_to_jose(der, n, sig) : n;
}
