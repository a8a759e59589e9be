/* queue.c — datagram encoding and the slot socket pairs (see queue.h).
 *
 * Wire format, little endian:
 *   u16 magic, u8 version, u8 type, u32 payload_len, i64 user, u64 generation,
 *   u64 accepted_ns, i64 id, u64 seq, u32 reserved (0), payload.
 * A mark: i64 user, i64 id, u8 state, u64 at_ms. */
#include "shm/queue.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define QUEUE_VERSION 2u
#define QUEUE_SNDBUF (4 * 1024 * 1024)

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int type_valid(uint8_t type)
{
    return type == QMSG_NOTIFY || type == QMSG_EVICT || type == QMSG_BROADCAST ||
           type == QMSG_MARKS || type == QMSG_ROUTED || type == QMSG_SIGNAL;
}

static void encode_header(uint8_t *out, const queue_msg *m)
{
    put_u16(out, QUEUE_MAGIC);
    out[2] = QUEUE_VERSION;
    out[3] = m->type;
    put_u32(out + 4, m->payload_len);
    put_u64(out + 8, (uint64_t)m->user);
    put_u64(out + 16, m->generation);
    put_u64(out + 24, m->accepted_ns);
    put_u64(out + 32, (uint64_t)m->id);
    put_u64(out + 40, m->seq);
    put_u32(out + 48, 0); /* reserved */
}

static int msg_valid(const queue_msg *m)
{
    if (!type_valid(m->type) || m->payload_len > QUEUE_MAX_PAYLOAD)
        return 0;
    if (m->payload_len > 0 && m->payload == NULL)
        return 0;
    switch (m->type) {
    case QMSG_NOTIFY:
    case QMSG_ROUTED:
        return m->user > 0;
    case QMSG_EVICT:
        return m->user > 0 && m->payload_len == 0;
    case QMSG_SIGNAL:
        return m->user > 0 && m->payload_len == 0 &&
               (m->seq == QSIGNAL_RELEASED || m->seq == QSIGNAL_BARRIER);
    case QMSG_BROADCAST:
        return m->user == 0 && m->payload_len > 0;
    default: /* QMSG_MARKS */
        return m->user == 0 && m->payload_len > 0 && m->payload_len % QUEUE_MARK_LEN == 0;
    }
}

size_t queue_msg_encode(uint8_t *out, size_t out_size, const queue_msg *m)
{
    if (!msg_valid(m) || out_size < QUEUE_HEADER_LEN + (size_t)m->payload_len)
        return 0;
    encode_header(out, m);
    if (m->payload_len > 0)
        memcpy(out + QUEUE_HEADER_LEN, m->payload, m->payload_len);
    return QUEUE_HEADER_LEN + m->payload_len;
}

int queue_msg_decode(const uint8_t *buf, size_t len, queue_msg *m)
{
    if (len < QUEUE_HEADER_LEN || get_u16(buf) != QUEUE_MAGIC || buf[2] != QUEUE_VERSION)
        return -1;
    memset(m, 0, sizeof *m);
    m->type = buf[3];
    m->payload_len = get_u32(buf + 4);
    m->user = (int64_t)get_u64(buf + 8);
    m->generation = get_u64(buf + 16);
    m->accepted_ns = get_u64(buf + 24);
    m->id = (int64_t)get_u64(buf + 32);
    m->seq = get_u64(buf + 40);
    if (get_u32(buf + 48) != 0 || (size_t)m->payload_len != len - QUEUE_HEADER_LEN)
        return -1;
    m->payload = m->payload_len ? buf + QUEUE_HEADER_LEN : NULL;
    return msg_valid(m) ? 0 : -1;
}

void queue_mark_encode(uint8_t *out, const queue_mark *m)
{
    put_u64(out, (uint64_t)m->user);
    put_u64(out + 8, (uint64_t)m->id);
    out[16] = m->state;
    put_u64(out + 17, m->at_ms);
}

void queue_mark_decode(const uint8_t *in, queue_mark *m)
{
    m->user = (int64_t)get_u64(in);
    m->id = (int64_t)get_u64(in + 8);
    m->state = in[16];
    m->at_ms = get_u64(in + 17);
}

int queue_pair_create(queue_pair *q)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0)
        return -1;
    /* The kernel charges queued datagrams to the sending socket: a large send
     * buffer is the queue's depth. SO_SNDBUFFORCE passes wmem_max when we may. */
    int size = QUEUE_SNDBUF;
    if (setsockopt(fds[1], SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) != 0 &&
        setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof size) != 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        errno = e;
        return -1;
    }
    q->worker_end = fds[0];
    q->sender_end = fds[1];
    return 0;
}

int queue_send(int sender_end, const queue_msg *m)
{
    uint8_t header[QUEUE_HEADER_LEN];
    if (!msg_valid(m)) {
        errno = EINVAL;
        return -1;
    }
    encode_header(header, m);
    /* Gather write: the payload is not copied into a staging buffer. */
    struct iovec iov[2] = {
        {.iov_base = header, .iov_len = sizeof header},
        {.iov_base = (void *)m->payload, .iov_len = m->payload_len},
    };
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = m->payload_len ? 2 : 1};
    ssize_t n;
    do {
        n = sendmsg(sender_end, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if ((size_t)n != sizeof header + m->payload_len) {
        errno = EMSGSIZE;
        return -1;
    }
    return 0;
}
