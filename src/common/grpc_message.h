/* grpc_message.h — protobuf-c messages to and from gRPC byte buffers, and the
 * contract of the daemon's message handlers (grpc_services.h, grpc_reflection.h):
 * a request buffer in; a status, its details and, on OK, a response buffer out.
 * Keeping the handlers at the message level leaves every call's state to
 * grpc_endpoint.c. wsnotifyctl uses the two conversions too. */
#ifndef WSN_GRPC_MESSAGE_H
#define WSN_GRPC_MESSAGE_H

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>

/* Room a handler gets for the status details ("" = none). */
#define GRPC_MESSAGE_DETAILS_MAX 256

/* Decode bb as a desc message (free it with protobuf_c_message_free_unpacked).
 * NULL if bb is NULL or does not decode. */
ProtobufCMessage *grpc_message_unpack(const ProtobufCMessageDescriptor *desc,
                                      grpc_byte_buffer *bb);

/* Encode m into a new byte buffer (the caller destroys it). NULL if it cannot. */
grpc_byte_buffer *grpc_message_pack(const ProtobufCMessage *m);

#endif
