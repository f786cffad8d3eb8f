// Package grpcserver serves gRPC — HTTP/2 with protobuf messages — on
// plain connections, and nothing more: no TLS, no name resolution, no
// balancers, no compression, no client. It is the guest agent's server.
//
// Why not grpc-go: the agent is PID 1 of every VM and its start is on the
// critical path of every container start. Linking grpc-go also links
// net/http, crypto/tls and x509, whose package initialisation alone costs
// ~50 ms of a boot under QEMU's TCG (GODEBUG=inittrace=1 in the guest;
// hack/bench compares the boot with a trivial init). Kata's agent speaks
// ttrpc for the same reason; this package keeps the gRPC wire protocol, so
// the host stays on grpc-go's client and any gRPC tool can talk to the
// agent.
//
// What it implements of HTTP/2 (RFC 9113) is what a gRPC server needs:
// the connection preface and SETTINGS, HPACK headers (with CONTINUATION),
// DATA with both levels of flow control, PING, RST_STREAM, WINDOW_UPDATE
// and GOAWAY. Of gRPC (PROTOCOL-HTTP2.md in grpc/grpc): length-prefixed
// uncompressed messages, grpc-timeout, and the status trailers
// grpc-status, grpc-message and grpc-status-details-bin, as a
// Trailers-Only response when the handler fails before sending anything.
// Streams are bidirectional at the wire; a handler decides what it reads
// and writes. Request metadata is not passed to handlers (the agent uses
// none).
package grpcserver
