package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// errSessionCut is what a session's writes return once a newer session (or
// a reset) has taken the port over.
var errSessionCut = errors.New("agent transport session was superseded")

// portWriter serialises everything written to one end of the port: the
// current session's yamux frames and the handshake's messages. Each write
// happens under mu, and a session is cut off only between two of its
// frames (frameWriter pads a frame it was in the middle of), so the byte
// stream the other end reads is whole messages and whole frames at every
// boundary and the reader can tell a new hello from a frame by one byte.
type portWriter struct {
	mu  sync.Mutex
	w   io.Writer
	cur *frameWriter // the session whose frames go out now; nil between sessions
}

// handOver cuts the current session off (completing its frame in flight)
// and writes msg; then next, which may be nil, owns the port.
func (p *portWriter) handOver(msg []byte, next *frameWriter) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var err error
	if p.cur != nil {
		err = p.cur.cutLocked()
	}
	p.cur = next
	if err != nil {
		return err
	}
	if len(msg) > 0 {
		if _, err := p.w.Write(msg); err != nil {
			return fmt.Errorf("write handshake message: %w", err)
		}
	}
	return nil
}

// frameWriter is one session's writer: it passes yamux's bytes on and
// keeps track of where the current frame ends (yamux writes a frame's
// header and body with separate writes).
type frameWriter struct {
	p      *portWriter
	hdr    [yamuxHeaderSize]byte
	hdrLen int    // header bytes of the current frame written so far
	body   uint32 // body bytes of the current frame still to write
	isCut  bool
}

func newFrameWriter(p *portWriter) *frameWriter { return &frameWriter{p: p} }

func (f *frameWriter) Write(b []byte) (int, error) {
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	if f.isCut {
		return 0, errSessionCut
	}
	n, err := f.p.w.Write(b)
	f.track(b[:n])
	return n, err
}

// track advances the frame position over b, bytes that reached the port.
func (f *frameWriter) track(b []byte) {
	for len(b) > 0 {
		if f.hdrLen == 0 && f.body > 0 {
			k := min(uint32(len(b)), f.body)
			f.body -= k
			b = b[k:]
			continue
		}
		k := copy(f.hdr[f.hdrLen:], b)
		f.hdrLen += k
		b = b[k:]
		if f.hdrLen == yamuxHeaderSize {
			f.hdrLen = 0
			if f.hdr[1] == yamuxTypeData {
				f.body = binary.BigEndian.Uint32(f.hdr[8:12])
			}
		}
	}
}

// cutLocked ends the session's use of the port; if a frame is half
// written, zeros complete it so the next message starts at a boundary. The
// peer's old session gets the zeros, and that session is being replaced.
// p.mu must be held.
func (f *frameWriter) cutLocked() error {
	if f.isCut {
		return nil
	}
	f.isCut = true
	var pad []byte
	if f.hdrLen > 0 {
		pad = make([]byte, yamuxHeaderSize-f.hdrLen)
		f.track(pad)
	}
	if f.body > 0 {
		pad = append(pad, make([]byte, f.body)...)
		f.body = 0
	}
	if len(pad) == 0 {
		return nil
	}
	if _, err := f.p.w.Write(pad); err != nil {
		return fmt.Errorf("complete the frame in flight: %w", err)
	}
	return nil
}

// cut is cutLocked for callers that do not hold p.mu.
func (f *frameWriter) cut() error {
	f.p.mu.Lock()
	defer f.p.mu.Unlock()
	if f.p.cur == f {
		f.p.cur = nil
	}
	return f.cutLocked()
}

// frameKind is what starts at a boundary of the byte stream a port carries.
type frameKind int

const (
	kindFrame  frameKind = iota // a yamux frame
	kindHello                   // a handshake message (hello, ack or reset)
	kindGarble                  // neither: the stream is out of step
)

// peekKind looks at what starts at the reader's position, which must be a
// boundary, without consuming it. For a frame it returns the header and
// the body length that follows it.
func peekKind(r *bufio.Reader) (frameKind, []byte, uint32, error) {
	b, err := r.Peek(1)
	if err != nil {
		return 0, nil, 0, err
	}
	switch b[0] {
	case helloMagic[0]:
		return kindHello, nil, 0, nil
	case yamuxVersion:
	default:
		return kindGarble, nil, 0, nil
	}
	hdr, err := r.Peek(yamuxHeaderSize)
	if err != nil {
		return 0, nil, 0, err
	}
	if hdr[1] > yamuxTypeGoAway {
		return kindGarble, nil, 0, nil
	}
	var body uint32
	if hdr[1] == yamuxTypeData {
		body = binary.BigEndian.Uint32(hdr[8:12])
		if body > maxFramePayload {
			return kindGarble, nil, 0, nil
		}
	}
	return kindFrame, hdr, body, nil
}

// copyFrame moves one frame (header and body) from r to dst. If dst fails
// (the session it fed has ended) the rest of the frame is discarded, so r
// stays at a boundary; only an error reading r is returned. It reports
// whether dst took the whole frame.
func copyFrame(dst io.Writer, r *bufio.Reader, body uint32) (bool, error) {
	ok := true
	remaining := yamuxHeaderSize + int(body)
	for remaining > 0 {
		if r.Buffered() == 0 {
			if _, err := r.Peek(1); err != nil {
				return false, err
			}
		}
		chunk, _ := r.Peek(min(remaining, r.Buffered()))
		if ok {
			if _, err := dst.Write(chunk); err != nil {
				ok = false
			}
		}
		_, _ = r.Discard(len(chunk))
		remaining -= len(chunk)
	}
	return ok, nil
}
