package agent

import (
	"slices"
	"testing"

	"github.com/vk-applevm/vk-applevm/agent/api/agentgrpc"
	"github.com/vk-applevm/vk-applevm/agent/grpcserver"
)

// The guest serves with its own gRPC server, so nothing generated ties
// its methods to the service the host calls: compare with the descriptor.
func TestRegisterServesEveryAgentMethod(t *testing.T) {
	gs := grpcserver.New(grpcserver.Options{})
	(&Server{}).register(gs)
	desc := agentgrpc.Agent_ServiceDesc
	var want []string
	for _, m := range desc.Methods {
		want = append(want, "/"+desc.ServiceName+"/"+m.MethodName)
	}
	for _, st := range desc.Streams {
		if !st.ClientStreams || !st.ServerStreams {
			t.Errorf("%s streams one way only; register has HandleBidi alone", st.StreamName)
		}
		want = append(want, "/"+desc.ServiceName+"/"+st.StreamName)
	}
	slices.Sort(want)
	if got := gs.Methods(); !slices.Equal(got, want) {
		t.Fatalf("registered %v\nservice has %v", got, want)
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"a": true, "web-1.2_x": true, "A9": true, string(make([]byte, 65)): false,
		"": false, "a/b": false, "a b": false, "ä": false, "a\n": false,
		"0123456789012345678901234567890123456789012345678901234567890123":  true,
		"01234567890123456789012345678901234567890123456789012345678901234": false,
	} {
		if got := validID(id); got != want {
			t.Errorf("validID(%q) = %v, want %v", id, got, want)
		}
	}
}
