package shim

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// agentShutdownPath is the Agent service's Shutdown method
// (agent/api/agentgrpc/agent_service.proto).
const agentShutdownPath = "/vkav.agent.v1.Agent/Shutdown"

// AgentShutdown is the default GuestShutdown: the agent API's Shutdown RPC,
// one gRPC call over conn.
//
// The call is made with net/http's HTTP/2 client (unencrypted, prior
// knowledge), which the shim links anyway for shim.sock, and the request is
// encoded with protowire, not with grpc-go and agent/api: this is the
// shim's only RPC, and grpc-go with protobuf's runtime is about a third of
// the memory every VM's shim holds (docs/decisions.md, "The shim's Shutdown
// call"). A test checks the encoding against agent/api's message and the
// call against grpc-go's server.
func AgentShutdown(ctx context.Context, conn net.Conn, grace time.Duration) error {
	var mu sync.Mutex
	used := false
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols: &protocols,
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			mu.Lock()
			defer mu.Unlock()
			// The stream can carry one connection; a redial has nothing
			// to dial.
			if used {
				return nil, errors.New("agent stream already used")
			}
			used = true
			return conn, nil
		},
	}
	defer tr.CloseIdleConnections()
	req := &http.Request{
		Method: http.MethodPost,
		URL:    &url.URL{Scheme: "http", Host: "vkav.agent", Path: agentShutdownPath},
		Header: http.Header{"Content-Type": {"application/grpc"}, "Te": {"trailers"}},
		Body:   io.NopCloser(bytes.NewReader(grpcMessage(shutdownRequest(grace)))),
	}
	resp, err := tr.RoundTrip(req.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("agent Shutdown: %w", err)
	}
	defer resp.Body.Close()
	// The answer (an empty ShutdownResponse) matters only by its status.
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)); err != nil {
		return fmt.Errorf("agent Shutdown: read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent Shutdown: HTTP status %s", resp.Status)
	}
	// Trailers, or the headers of a Trailers-Only answer.
	status, msg := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
	if status == "" {
		status, msg = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	}
	if status != "0" {
		if m, err := url.PathUnescape(msg); err == nil { // grpc-message is percent-encoded
			msg = m
		}
		return fmt.Errorf("agent Shutdown: grpc-status %q: %s", status, msg)
	}
	return nil
}

// shutdownRequest is agent/api's ShutdownRequest in protobuf's wire format:
// field 1, grace_period_ns, a varint (zero is not sent, as in proto3).
func shutdownRequest(grace time.Duration) []byte {
	if grace == 0 {
		return nil
	}
	b := protowire.AppendTag(nil, 1, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(grace.Nanoseconds()))
}

// grpcMessage frames a message as gRPC does on the wire: uncompressed
// flag, big-endian length, message.
func grpcMessage(msg []byte) []byte {
	b := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
	return append(b, msg...)
}
