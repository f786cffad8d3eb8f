package agentgrpc_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/vk-applevm/vk-applevm/agent/api"
	"github.com/vk-applevm/vk-applevm/agent/api/agentgrpc"
)

// wireService is the service name on the wire; the guest's own server
// routes by it, so moving the service must not change it.
const wireService = "vkav.agent.v1.Agent"

func TestServiceKeepsItsWireNames(t *testing.T) {
	services := agentgrpc.File_agentgrpc_agent_service_proto.Services()
	if services.Len() != 1 {
		t.Fatalf("agent_service.proto declares %d services, want 1", services.Len())
	}
	svc := services.Get(0)
	if string(svc.FullName()) != wireService || agentgrpc.Agent_ServiceDesc.ServiceName != wireService {
		t.Fatalf("service %q (desc %q), want %q", svc.FullName(), agentgrpc.Agent_ServiceDesc.ServiceName, wireService)
	}
	stubs := map[string]bool{}
	for _, m := range agentgrpc.Agent_ServiceDesc.Methods {
		stubs[m.MethodName] = true
	}
	for _, s := range agentgrpc.Agent_ServiceDesc.Streams {
		stubs[s.StreamName] = true
	}
	methods := svc.Methods()
	if methods.Len() != len(stubs) {
		t.Errorf("descriptor has %d methods, stubs %d", methods.Len(), len(stubs))
	}
	for i := range methods.Len() {
		m := methods.Get(i)
		if !stubs[string(m.Name())] {
			t.Errorf("method %s has no stub", m.Name())
		}
		// The messages must be the ones package api registers, not copies.
		for _, msg := range []string{m.Input().ParentFile().Path(), m.Output().ParentFile().Path()} {
			if msg != "agent.proto" {
				t.Errorf("method %s uses a message from %q, want agent.proto", m.Name(), msg)
			}
		}
	}
}

type infoOnly struct {
	agentgrpc.UnimplementedAgentServer
}

func (infoOnly) Info(context.Context, *api.InfoRequest) (*api.InfoResponse, error) {
	return &api.InfoResponse{Version: "split"}, nil
}

// A client that names the method by its literal wire path reaches a server
// registered through the new package: the split changed no path.
func TestLiteralMethodPathReachesTheServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen on loopback: %v", err)
	}
	gs := grpc.NewServer()
	agentgrpc.RegisterAgentServer(gs, infoOnly{})
	go func() { _ = gs.Serve(l) }()
	defer gs.Stop()

	cc, err := grpc.NewClient("passthrough:///"+l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("create client: %v", err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var info api.InfoResponse
	if err := cc.Invoke(ctx, "/vkav.agent.v1.Agent/Info", &api.InfoRequest{}, &info); err != nil {
		t.Fatalf("invoke /vkav.agent.v1.Agent/Info: %v", err)
	}
	if info.GetVersion() != "split" {
		t.Fatalf("Info answered version %q, want the fake server's", info.GetVersion())
	}
}
