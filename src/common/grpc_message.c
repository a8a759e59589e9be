/* grpc_message.c — protobuf-c messages to and from gRPC byte buffers, and the
 * wire check for NUL bytes in string fields.
 *
 * Why a walk over the wire bytes: protobuf-c copies a string field into a
 * buffer of its wire length + 1 and NUL-terminates it, so an embedded NUL
 * leaves a shorter C string and nothing in the unpacked message says so
 * (bytes fields would keep the length, but changing the proto's types would
 * change the API for every client). The walk reads the same bytes protobuf-c
 * just accepted, using the message descriptors for the field types, so it
 * sees exactly the fields protobuf-c decoded, in the same order. */
#include "src/common/grpc_message.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define NESTING_MAX 16   /* our messages nest 2 deep; protobuf-c allows more */

ProtobufCMessage *grpc_message_unpack(const ProtobufCMessageDescriptor *desc,
                                      grpc_byte_buffer *bb)
{
    grpc_byte_buffer_reader reader;
    if (bb == NULL || !grpc_byte_buffer_reader_init(&reader, bb))
        return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(desc, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
    grpc_slice_unref(s);
    return m;
}

ProtobufCMessage *grpc_message_unpack_checked(const ProtobufCMessageDescriptor *desc,
                                              grpc_byte_buffer *bb, char *nul_field,
                                              size_t nul_field_size)
{
    nul_field[0] = '\0';
    grpc_byte_buffer_reader reader;
    if (bb == NULL || !grpc_byte_buffer_reader_init(&reader, bb))
        return NULL;
    grpc_slice s = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    const uint8_t *data = GRPC_SLICE_START_PTR(s);
    size_t len = GRPC_SLICE_LENGTH(s);
    ProtobufCMessage *m = protobuf_c_message_unpack(desc, NULL, len, data);
    if (m != NULL && grpc_message_find_nul(desc, data, len, nul_field, nul_field_size) < 0)
        nul_field[0] = '\0'; /* cannot happen: protobuf-c accepted these bytes */
    grpc_slice_unref(s);
    return m;
}

/* A base-128 varint at *p (< end); false if truncated or over 10 bytes. */
static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Occurrences of each repeated message field so far: its next index. */
typedef struct {
    uint32_t number;
    size_t next;
} field_count;

static int walk(const ProtobufCMessageDescriptor *desc, const uint8_t *p, const uint8_t *end,
                int depth, char *out, size_t out_size, size_t used)
{
    field_count counts[8];
    size_t n_counts = 0;
    while (p < end) {
        uint64_t tag = 0;
        if (!read_varint(&p, end, &tag) || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX)
            return -1;
        uint64_t skip = 0;
        switch (tag & 7) {
        case 0: /* varint */
            if (!read_varint(&p, end, &skip))
                return -1;
            continue;
        case 1: skip = 8; break;
        case 5: skip = 4; break;
        case 2: if (!read_varint(&p, end, &skip)) return -1; break;
        default: return -1; /* groups: protobuf-c does not accept them either */
        }
        if (skip > (uint64_t)(end - p))
            return -1;
        const ProtobufCFieldDescriptor *f =
            (tag & 7) == 2 ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(tag >> 3))
                           : NULL;
        if (f != NULL && f->type == PROTOBUF_C_TYPE_STRING && memchr(p, '\0', skip) != NULL) {
            snprintf(out + used, out_size - used, "%s", f->name);
            return 1;
        }
        if (f != NULL && f->type == PROTOBUF_C_TYPE_MESSAGE && depth < NESTING_MAX) {
            size_t index = 0;
            if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                size_t i = 0;
                while (i < n_counts && counts[i].number != f->id)
                    i++;
                if (i == n_counts && n_counts < sizeof counts / sizeof counts[0])
                    counts[n_counts++] = (field_count){f->id, 0};
                if (i < n_counts)
                    index = counts[i].next++;
            }
            int w = f->label == PROTOBUF_C_LABEL_REPEATED
                        ? snprintf(out + used, out_size - used, "%s[%zu]: ", f->name, index)
                        : snprintf(out + used, out_size - used, "%s: ", f->name);
            size_t now = w < 0 || (size_t)w >= out_size - used ? out_size - 1 : used + (size_t)w;
            int r = walk(f->descriptor, p, p + skip, depth + 1, out, out_size, now);
            if (r != 0)
                return r;
            out[used] = '\0';
        }
        p += skip;
    }
    return 0;
}

int grpc_message_find_nul(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                          size_t len, char *nul_field, size_t nul_field_size)
{
    if (nul_field_size == 0)
        return -1;
    nul_field[0] = '\0';
    int r = walk(desc, data, data + len, 0, nul_field, nul_field_size, 0);
    if (r != 1)
        nul_field[0] = '\0';
    return r;
}

grpc_byte_buffer *grpc_message_pack(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(n); /* gRPC aborts rather than return NULL */
    size_t packed = protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = packed == n ? grpc_raw_byte_buffer_create(&s, 1) : NULL;
    grpc_slice_unref(s);
    return bb;
}
