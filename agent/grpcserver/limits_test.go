package grpcserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// rawClient speaks HTTP/2 frames to a connection of s.
type rawClient struct {
	t      *testing.T
	fr     *http2.Framer
	frames chan http2.Frame
	henc   *hpack.Encoder
	hbuf   bytes.Buffer
	hdec   *hpack.Decoder // the connection's responses, in order
	fields []hpack.HeaderField
}

func newRawClient(t *testing.T, s *Server) *rawClient {
	server, client := net.Pipe()
	c := newConn(s, server)
	go c.serve()
	t.Cleanup(func() { client.Close() })
	r := &rawClient{t: t, fr: http2.NewFramer(client, client), frames: make(chan http2.Frame, 4096)}
	r.fr.SetMaxReadFrameSize(1 << 20)
	r.henc = hpack.NewEncoder(&r.hbuf)
	r.hdec = hpack.NewDecoder(4096, func(hf hpack.HeaderField) { r.fields = append(r.fields, hf) })
	go func() {
		defer close(r.frames)
		for {
			f, err := r.fr.ReadFrame()
			if err != nil {
				return
			}
			// The framer reuses frames' buffers: keep copies of what
			// tests read.
			switch f := f.(type) {
			case *http2.HeadersFrame:
				b := append([]byte(nil), f.HeaderBlockFragment()...)
				r.frames <- &decodedHeaders{stream: f.StreamID, block: b}
			case *http2.DataFrame:
			case *http2.SettingsFrame:
				sc := &settingsCopy{ack: f.IsAck(), vals: map[http2.SettingID]uint32{}}
				f.ForeachSetting(func(s http2.Setting) error { sc.vals[s.ID] = s.Val; return nil })
				r.frames <- sc
			case *http2.WindowUpdateFrame:
				c := *f
				r.frames <- &c
			case *http2.RSTStreamFrame:
				c := *f
				r.frames <- &c
			case *http2.GoAwayFrame:
				c := *f
				r.frames <- &c
			}
		}
	}()
	client.SetWriteDeadline(time.Now().Add(20 * time.Second))
	if _, err := client.Write([]byte(clientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := r.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return r
}

// settingsCopy is a SETTINGS frame's content.
type settingsCopy struct {
	http2.Frame
	ack  bool
	vals map[http2.SettingID]uint32
}

// decodedHeaders is a HEADERS frame's block (responses fit one frame).
type decodedHeaders struct {
	http2.Frame
	stream uint32
	block  []byte
}

func (r *rawClient) headers(fields ...string) []byte {
	r.hbuf.Reset()
	for i := 0; i < len(fields); i += 2 {
		r.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return append([]byte(nil), r.hbuf.Bytes()...)
}

func (r *rawClient) call(stream uint32, method string, endStream bool) {
	block := r.headers(":method", "POST", ":scheme", "http", ":path", method, "content-type", "application/grpc")
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: stream, BlockFragment: block, EndHeaders: true, EndStream: endStream}); err != nil {
		r.t.Fatal(err)
	}
}

// next returns the next frame matching keep, failing after a while.
func (r *rawClient) next(keep func(http2.Frame) bool) http2.Frame {
	r.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case f, ok := <-r.frames:
			if !ok {
				r.t.Fatal("connection closed")
			}
			if keep(f) {
				return f
			}
		case <-timeout:
			r.t.Fatal("no such frame")
		}
	}
}

// responseOn collects a stream's response headers and trailers.
func (r *rawClient) responseOn(stream uint32) map[string]string {
	r.t.Helper()
	out := map[string]string{}
	for out["grpc-status"] == "" && (out[":status"] == "" || out[":status"] == "200") {
		f := r.next(func(f http2.Frame) bool { h, ok := f.(*decodedHeaders); return ok && h.stream == stream }).(*decodedHeaders)
		if _, err := r.hdec.Write(f.block); err != nil {
			r.t.Fatal(err)
		}
		for _, hf := range r.fields {
			out[hf.Name] = hf.Value
		}
		r.fields = nil
	}
	return out
}

func echoServer(opts Options) *Server {
	s := New(opts)
	HandleUnary(s, "/t.T/E", func(_ context.Context, r *wrapperspb.StringValue) (*wrapperspb.StringValue, error) { return r, nil })
	s.HandleStream("/t.T/Hold", func(st *Stream) error { <-st.Context().Done(); return nil })
	return s
}

// TestHeaderListBoundWhileDecoding: a block of one-byte references to a
// 4 KB dynamic table entry would decode to ~240 MB of fields; the server
// keeps none of them past its advertised list size, answers 431, and the
// connection stays usable (its decoder followed the whole block).
func TestHeaderListBoundWhileDecoding(t *testing.T) {
	r := newRawClient(t, echoServer(Options{}))
	settings := r.next(func(f http2.Frame) bool { s, ok := f.(*settingsCopy); return ok && !s.ack }).(*settingsCopy)
	if v, ok := settings.vals[http2.SettingMaxHeaderListSize]; !ok || v != maxHeaderListSize {
		t.Errorf("SETTINGS_MAX_HEADER_LIST_SIZE %d %v", v, ok)
	}
	if v, ok := settings.vals[http2.SettingMaxConcurrentStreams]; !ok || v != maxConcurrentStreams {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS %d %v", v, ok)
	}
	block := r.headers(":method", "POST", ":path", "/t.T/E", "x-big", strings.Repeat("a", 4000))
	block = append(block, bytes.Repeat([]byte{0xbe}, maxHeaderBlock-len(block))...) // index 62: x-big
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:16000], EndStream: true}); err != nil {
		t.Fatal(err)
	}
	for rest := block[16000:]; len(rest) > 0; {
		n := min(len(rest), 16000)
		if err := r.fr.WriteContinuation(1, n == len(rest), rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if got := r.responseOn(1)[":status"]; got != "431" {
		t.Fatalf(":status %q, want 431", got)
	}
	runtime.ReadMemStats(&after)
	// Keeping every field would take ~4 MB of HeaderFields alone.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2<<20 {
		t.Errorf("decoding the block allocated %d KiB", alloc>>10)
	}
	r.call(3, "/t.T/E", false)
	msg := []byte{0, 0, 0, 0, 3, 0x0a, 0x01, 'x'}
	if err := r.fr.WriteData(3, true, msg); err != nil {
		t.Fatal(err)
	}
	if got := r.responseOn(3)["grpc-status"]; got != "0" {
		t.Fatalf("call after the refused block: grpc-status %q", got)
	}
	// A block larger than the list could be ends the connection.
	big := bytes.Repeat([]byte{0x82}, maxHeaderBlock+1)
	r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: big[:16000]})
	for rest := big[16000:]; len(rest) > 0; {
		n := min(len(rest), 16000)
		if r.fr.WriteContinuation(5, n == len(rest), rest[:n]) != nil {
			break
		}
		rest = rest[n:]
	}
	g := r.next(func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
	if g.ErrCode != http2.ErrCodeProtocol {
		t.Fatalf("GOAWAY %v", g.ErrCode)
	}
}

func TestConcurrentStreamLimit(t *testing.T) {
	r := newRawClient(t, echoServer(Options{}))
	for i := uint32(0); i <= maxConcurrentStreams; i++ {
		r.call(1+2*i, "/t.T/Hold", false)
	}
	last := uint32(1 + 2*maxConcurrentStreams)
	rst := r.next(func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok }).(*http2.RSTStreamFrame)
	if rst.StreamID != last || rst.ErrCode != http2.ErrCodeRefusedStream {
		t.Fatalf("RST_STREAM %d %v, want %d REFUSED_STREAM", rst.StreamID, rst.ErrCode, last)
	}
}

// TestMessageMemoryBound: messages are counted against the connection
// before they are allocated, so prefixes announcing large messages cannot
// make the agent allocate them all.
func TestMessageMemoryBound(t *testing.T) {
	r := newRawClient(t, echoServer(Options{MaxRecvMsgSize: 1 << 20, MaxConnMessageBytes: 3 << 20}))
	prefix := binary.BigEndian.AppendUint32([]byte{0}, 1<<20)
	for i := uint32(0); i < 4; i++ {
		r.call(1+2*i, "/t.T/E", false)
		if err := r.fr.WriteData(1+2*i, false, prefix); err != nil {
			t.Fatal(err)
		}
		if i < 3 {
			time.Sleep(50 * time.Millisecond) // the first three reserve in order
		}
	}
	h := r.responseOn(7)
	if h["grpc-status"] != "8" || !strings.Contains(h["grpc-message"], "exceed") {
		t.Fatalf("fourth message: %v, want ResourceExhausted", h)
	}
}

// TestUnreadDataBound: handlers that do not read hold at most
// connRecvBudget; the client gets no more connection window, and data
// beyond it ends the connection.
func TestUnreadDataBound(t *testing.T) {
	r := newRawClient(t, echoServer(Options{}))
	chunk := make([]byte, 16000)
	sent := 0
	for i := uint32(0); sent+streamRecvWindow <= connRecvBudget; i++ {
		id := 1 + 2*i
		r.call(id, "/t.T/Hold", false)
		for n := 0; n+len(chunk) <= streamRecvWindow; n += len(chunk) {
			if err := r.fr.WriteData(id, false, chunk); err != nil {
				t.Fatal(err)
			}
			sent += len(chunk)
		}
	}
	// Everything the server granted on the connection so far.
	granted := int64(65535)
	deadline := time.After(2 * time.Second)
	for done := false; !done; {
		select {
		case f := <-r.frames:
			if w, ok := f.(*http2.WindowUpdateFrame); ok && w.StreamID == 0 {
				granted += int64(w.Increment)
			}
		case <-deadline:
			done = true
		}
	}
	if granted != connRecvBudget {
		t.Fatalf("connection window granted %d with %d unread, want %d", granted, sent, connRecvBudget)
	}
	r.call(999, "/t.T/Hold", false)
	for rest := int(granted) - sent + 1; rest > 0; rest -= len(chunk) {
		if r.fr.WriteData(999, false, chunk[:min(rest, len(chunk))]) != nil {
			break
		}
	}
	g := r.next(func(f http2.Frame) bool { _, ok := f.(*http2.GoAwayFrame); return ok }).(*http2.GoAwayFrame)
	if g.ErrCode != http2.ErrCodeFlowControl {
		t.Fatalf("GOAWAY %v, want FLOW_CONTROL_ERROR", g.ErrCode)
	}
}
