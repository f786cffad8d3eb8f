// Package agentgrpc holds the grpc-go stubs of the guest agent's Agent
// service (generated from agent_service.proto by `make proto`) for the host
// side: agent/client, vm/shim and tests. The messages stay in package
// agent/api, which does not import grpc-go, so the guest agent can serve the
// same service ("/vkav.agent.v1.Agent/<Method>") with a smaller server.
package agentgrpc
