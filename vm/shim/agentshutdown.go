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
	if _, err := agentCall(ctx, conn, agentShutdownPath, shutdownRequest(grace)); err != nil {
		return fmt.Errorf("agent Shutdown: %w", err)
	}
	// The answer (an empty ShutdownResponse) matters only by its status.
	return nil
}

// agentCall makes one unary gRPC call over conn and returns the answer's
// message, undecoded.
func agentCall(ctx context.Context, conn net.Conn, path string, msg []byte) ([]byte, error) {
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
		URL:    &url.URL{Scheme: "http", Host: "vkav.agent", Path: path},
		Header: http.Header{"Content-Type": {"application/grpc"}, "Te": {"trailers"}},
		Body:   io.NopCloser(bytes.NewReader(grpcMessage(msg))),
	}
	resp, err := tr.RoundTrip(req.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	// Trailers, or the headers of a Trailers-Only answer.
	status, text := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
	if status == "" {
		status, text = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	}
	if status != "0" {
		if m, err := url.PathUnescape(text); err == nil { // grpc-message is percent-encoded
			text = m
		}
		return nil, fmt.Errorf("grpc-status %q: %s", status, text)
	}
	return grpcUnframe(body)
}

// grpcUnframe takes the one message out of a unary answer's body.
func grpcUnframe(body []byte) ([]byte, error) {
	if len(body) == 0 {
		return nil, nil
	}
	if len(body) < 5 || body[0] != 0 {
		return nil, fmt.Errorf("answer is not one uncompressed gRPC message (%d bytes)", len(body))
	}
	n := binary.BigEndian.Uint32(body[1:5])
	if uint64(n) != uint64(len(body)-5) {
		return nil, fmt.Errorf("answer frames %d bytes and holds %d", n, len(body)-5)
	}
	return body[5:], nil
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
