// Package api holds the guest agent API's protobuf messages (generated from
// agent.proto by `make proto`). It must not import grpc-go: the guest agent
// links it, and grpc-go's package initialisation (with net/http and
// crypto/tls) costs boot time under TCG. The Agent service's grpc-go stubs
// are in package agentgrpc.
package api
