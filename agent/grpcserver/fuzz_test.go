package grpcserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// FuzzConn feeds a connection arbitrary frames after the client preface:
// whatever arrives, the server must neither panic (the agent is PID 1) nor
// hang; it answers or closes the connection.
//
//	go test -run '^$' -fuzz FuzzConn -fuzztime 60s ./agent/grpcserver/
func FuzzConn(f *testing.F) {
	frame := func(typ, flags uint8, stream uint32, p []byte) []byte {
		return append(appendFrameHeader(nil, len(p), typ, flags, stream), p...)
	}
	settings := frame(frameSettings, 0, 0, binary.BigEndian.AppendUint32([]byte{0, settingInitialWindowSize}, 1<<20))
	// A unary call: HEADERS (literal, not indexed) and one DATA message.
	hdrs := []byte{0x83, 0x86, 0x04, 0x06, '/', 't', '.', 'T', '/', 'E', 0x5f, 0x10}
	hdrs = append(hdrs, "application/grpc"...)
	msg := []byte{0, 0, 0, 0, 3, 0x0a, 0x01, 'x'}
	f.Add(settings)
	f.Add(append(append(settings, frame(frameHeaders, flagEndHeaders, 1, hdrs)...), frame(frameData, flagEndStream, 1, msg)...))
	f.Add(frame(frameHeaders, flagPadded|flagPriority, 1, []byte{200, 0, 0, 0}))
	f.Add(frame(frameWindowUpdate, 0, 0, []byte{0x7f, 0xff, 0xff, 0xff}))
	f.Add(frame(frameSettings, 0, 0, []byte{0, settingInitialWindowSize, 0xff, 0xff, 0xff, 0xff}))
	f.Add(frame(framePing, 0, 0, make([]byte, 8)))
	f.Add(frame(frameContinuation, 0, 1, hdrs))
	// HPACK's other paths: indexed fields (static and dynamic), Huffman
	// strings, a literal added to the dynamic table, table size updates,
	// and a block whose fields exceed the advertised list size.
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "POST"}, {":path", "/t.T/E"}, {"content-type", "application/grpc"}, {"x-huffman-value", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}} {
		enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	huff := append([]byte(nil), hb.Bytes()...)
	f.Add(append(append(settings, frame(frameHeaders, flagEndHeaders, 1, huff)...), frame(frameData, flagEndStream, 1, msg)...))
	indexed := append(append([]byte{0x3f, 0xe1, 0x1f, 0x20, 0x3f, 0xe1, 0x1f}, huff...), 0x82, 0x86, 0xbe, 0xbf, 0xc0)
	f.Add(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, indexed))
	big := append(append([]byte(nil), huff...), bytes.Repeat([]byte{0xbe}, 900)...)
	f.Add(append(frame(frameHeaders, 0, 1, big[:len(big)/2]), frame(frameContinuation, flagEndHeaders, 1, big[len(big)/2:])...))
	f.Add(frame(frameHeaders, flagEndHeaders, 1, []byte{0x3f, 0xff, 0xff, 0xff, 0x0f})) // table size above the limit
	f.Fuzz(func(t *testing.T, in []byte) {
		s := New(Options{})
		HandleUnary(s, "/t.T/E", func(_ context.Context, r *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
			return r, nil
		})
		server, client := net.Pipe()
		done := make(chan struct{})
		c := newConn(s, server)
		go func() {
			c.serve()
			close(done)
		}()
		go io.Copy(io.Discard, client)
		client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		client.Write([]byte(clientPreface))
		client.Write(in)
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the connection did not end after the client closed")
		}
		if c.largestHeaderList > maxHeaderListSize {
			t.Fatalf("kept a header list of %d bytes, above the advertised %d", c.largestHeaderList, maxHeaderListSize)
		}
		c.rmu.Lock()
		buffered, credit := c.buffered, c.credit
		c.rmu.Unlock()
		if buffered+credit > connRecvBudget {
			t.Fatalf("unread %d plus window %d exceed the connection's %d", buffered, credit, connRecvBudget)
		}
	})
}
