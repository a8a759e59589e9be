/* grpc_message.h — protobuf-c messages to and from gRPC byte buffers, and the
 * contract of the daemon's message handlers (grpc_services.h, grpc_reflection.h):
 * a request buffer in; a status, its details and, on OK, a response buffer out.
 * Keeping the handlers at the message level leaves every call's state to
 * grpc_endpoint.c. wsnotifyctl uses the two conversions too. */
#ifndef WSN_GRPC_MESSAGE_H
#define WSN_GRPC_MESSAGE_H

#include <grpc/byte_buffer.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

/* Room a handler gets for the status details ("" = none). */
#define GRPC_MESSAGE_DETAILS_MAX 256

/* Decode bb as a desc message (free it with protobuf_c_message_free_unpacked).
 * NULL if bb is NULL or does not decode. */
ProtobufCMessage *grpc_message_unpack(const ProtobufCMessageDescriptor *desc,
                                      grpc_byte_buffer *bb);

/* grpc_message_unpack, and on success a check of the wire bytes: when a
 * string field (at any depth) holds a NUL byte, nul_field gets its name as
 * "title", or "notifications[3]: title" inside a repeated message field;
 * else nul_field is "". (protobuf-c NUL-terminates the strings it decodes, so
 * an embedded NUL would silently cut the field short: only the wire still
 * says how long it was.) */
ProtobufCMessage *grpc_message_unpack_checked(const ProtobufCMessageDescriptor *desc,
                                              grpc_byte_buffer *bb, char *nul_field,
                                              size_t nul_field_size);

/* The wire check alone, on an encoded desc message: 1 (nul_field named as
 * above), 0 none, -1 not a well-formed encoding. */
int grpc_message_find_nul(const ProtobufCMessageDescriptor *desc, const uint8_t *data,
                          size_t len, char *nul_field, size_t nul_field_size);

/* Encode m into a new byte buffer (the caller destroys it). NULL if it cannot. */
grpc_byte_buffer *grpc_message_pack(const ProtobufCMessage *m);

#endif
