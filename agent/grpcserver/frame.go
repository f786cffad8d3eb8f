package grpcserver

import (
	"encoding/binary"
	"fmt"
	"io"
)

// HTTP/2 frame types, flags, settings and error codes (RFC 9113 §6, §7,
// §11.2).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20

	settingHeaderTableSize      = 0x1
	settingMaxConcurrentStreams = 0x3
	settingInitialWindowSize    = 0x4
	settingMaxFrameSize         = 0x5
	settingMaxHeaderListSize    = 0x6

	errCodeNo           = 0x0
	errCodeProtocol     = 0x1
	errCodeInternal     = 0x2
	errCodeFlowControl  = 0x3
	errCodeStreamClosed = 0x5
	errCodeRefused      = 0x7
	errCodeFrameSize    = 0x6
	errCodeCompression  = 0x9
)

const (
	frameHeaderLen = 9
	// defaultMaxFrameSize is the largest frame either side may send until
	// told otherwise (SETTINGS_MAX_FRAME_SIZE's initial value); this
	// server never raises its own.
	defaultMaxFrameSize = 16384
	maxFrameSizeLimit   = 1<<24 - 1
	// defaultWindow is every flow-control window's size until SETTINGS or
	// WINDOW_UPDATE change it.
	defaultWindow = 65535
	maxWindow     = 1<<31 - 1
	clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
)

type frameHeader struct {
	length uint32
	typ    uint8
	flags  uint8
	stream uint32
}

func (h frameHeader) has(flag uint8) bool { return h.flags&flag != 0 }

// connError ends the connection with a GOAWAY carrying code.
type connError struct {
	code uint32
	why  string
}

func (e connError) Error() string { return fmt.Sprintf("http2 connection error %d: %s", e.code, e.why) }

// readFrame reads one frame into buf (grown as needed) and returns its
// header and payload, which is valid until the next call.
func readFrame(r io.Reader, buf *[]byte, maxSize uint32) (frameHeader, []byte, error) {
	var hb [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return frameHeader{}, nil, err
	}
	h := frameHeader{
		length: uint32(hb[0])<<16 | uint32(hb[1])<<8 | uint32(hb[2]),
		typ:    hb[3],
		flags:  hb[4],
		stream: binary.BigEndian.Uint32(hb[5:]) & (1<<31 - 1),
	}
	if h.length > maxSize {
		return h, nil, connError{errCodeFrameSize, fmt.Sprintf("frame of %d bytes exceeds %d", h.length, maxSize)}
	}
	if cap(*buf) < int(h.length) {
		*buf = make([]byte, h.length)
	}
	p := (*buf)[:h.length]
	if _, err := io.ReadFull(r, p); err != nil {
		return h, nil, fmt.Errorf("read %d-byte frame payload: %w", h.length, err)
	}
	return h, p, nil
}

// appendFrameHeader appends the 9-byte header of a frame.
func appendFrameHeader(b []byte, length int, typ, flags uint8, stream uint32) []byte {
	b = append(b, byte(length>>16), byte(length>>8), byte(length), typ, flags)
	return binary.BigEndian.AppendUint32(b, stream)
}

// unpad strips the padding of a DATA or HEADERS payload that has the
// PADDED flag.
func unpad(h frameHeader, p []byte) ([]byte, error) {
	if !h.has(flagPadded) {
		return p, nil
	}
	if len(p) < 1 || int(p[0]) >= len(p) {
		return nil, connError{errCodeProtocol, "padding longer than the frame"}
	}
	return p[1 : len(p)-int(p[0])], nil
}
