/* grpc_reflection.h — gRPC server reflection (grpc.reflection.v1 and v1alpha,
 * which share one wire format) answered from the FileDescriptorSet that make
 * embeds (proto/descriptor_set.pb-c.c): an index of its files, imports and
 * symbols, built once at start, and one answer per ServerReflectionRequest.
 * The stream itself (one answer per request until the client half-closes) is
 * grpc_endpoint.c's. */
#ifndef WSN_GRPC_REFLECTION_H
#define WSN_GRPC_REFLECTION_H

#include <grpc/byte_buffer.h>
#include <grpc/status.h>
#include <stddef.h>

typedef struct grpc_reflection grpc_reflection;

/* Index the embedded descriptor set. NULL if it is malformed, lacks one of the
 * services list_services names, or memory runs out. */
grpc_reflection *grpc_reflection_create(void);

/* NULL is a no-op. */
void grpc_reflection_free(grpc_reflection *x);

/* One ServerReflectionRequest in, its ServerReflectionResponse out (a request
 * the index cannot answer gets an ErrorResponse, still OK). Not OK: the request
 * does not decode or the answer cannot be encoded, with details; the stream ends. */
grpc_status_code grpc_reflection_answer(const grpc_reflection *x, grpc_byte_buffer *request,
                                        grpc_byte_buffer **response, char *details,
                                        size_t details_size);

#endif
