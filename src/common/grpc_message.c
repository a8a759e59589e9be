/* grpc_message.c — protobuf-c messages to and from gRPC byte buffers. */
#include "src/common/grpc_message.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

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

grpc_byte_buffer *grpc_message_pack(const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(n); /* gRPC aborts rather than return NULL */
    size_t packed = protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = packed == n ? grpc_raw_byte_buffer_create(&s, 1) : NULL;
    grpc_slice_unref(s);
    return bb;
}
