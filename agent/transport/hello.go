package transport

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The handshake that starts every session on the agent port. The guest
// speaks first, once its end of the port is open: a hello carrying the
// protocol version, a nonce drawn at boot and a session number counting the
// guest's connects. The host discards every byte before a valid hello,
// answers with an ack echoing nonce and session, and only then starts yamux;
// the guest in turn discards every byte before that ack. Neither end relies
// on the hypervisor delivering or dropping what was written before the
// other end was open (see docs/decisions.md, "The agent port's handshake").
//
// Wire format of a hello or an ack (36 bytes, big-endian):
//
//	magic    [8]byte  0x7f "VKAV" + "HLO" (hello) or "ACK" (ack)
//	version  uint16   ProtocolVersion
//	reserved uint16   zero
//	nonce    [16]byte drawn once per guest boot
//	session  uint32   the guest's connect count in this boot, from 1
//	crc      uint32   IEEE CRC-32 of the 32 bytes before it
//
// The first byte, 0x7f, is never a yamux frame's first byte (its version,
// 0), so at a frame boundary one byte tells a hello from a frame.

// ProtocolVersion is the version of the handshake and of what follows it
// (yamux v0 carrying one gRPC connection per stream).
const ProtocolVersion = 1

const (
	helloSize = 36
	// yamuxHeaderSize is yamux's frame header (version, type, flags,
	// stream id, length; hashicorp/yamux const.go).
	yamuxHeaderSize = 12
	yamuxVersion    = 0
	yamuxTypeData   = 0
	yamuxTypeGoAway = 3
	// maxFramePayload bounds a data frame's length: yamux sends at most the
	// peer's stream window (maxStreamWindow) per frame. Anything larger is
	// not a frame of ours: the stream is out of step.
	maxFramePayload = maxStreamWindow
)

var (
	helloMagic = [8]byte{0x7f, 'V', 'K', 'A', 'V', 'H', 'L', 'O'}
	ackMagic   = [8]byte{0x7f, 'V', 'K', 'A', 'V', 'A', 'C', 'K'}
)

// errBadHello reports bytes that start like a hello or ack but are not one.
var errBadHello = errors.New("not a valid handshake message")

// hello is the content of a hello or an ack.
type hello struct {
	Version uint16
	Nonce   [16]byte
	Session uint32
}

func (h hello) String() string {
	return fmt.Sprintf("v%d nonce %x session %d", h.Version, h.Nonce[:4], h.Session)
}

// encode writes h with the given magic.
func (h hello) encode(magic [8]byte) []byte {
	b := make([]byte, helloSize)
	copy(b, magic[:])
	binary.BigEndian.PutUint16(b[8:], h.Version)
	copy(b[12:28], h.Nonce[:])
	binary.BigEndian.PutUint32(b[28:], h.Session)
	binary.BigEndian.PutUint32(b[32:], crc32.ChecksumIEEE(b[:32]))
	return b
}

// decodeHello parses b (helloSize bytes) as a message with the given magic.
func decodeHello(b []byte, magic [8]byte) (hello, error) {
	if len(b) < helloSize || !bytes.Equal(b[:8], magic[:]) {
		return hello{}, errBadHello
	}
	if crc32.ChecksumIEEE(b[:32]) != binary.BigEndian.Uint32(b[32:36]) {
		return hello{}, errBadHello
	}
	var h hello
	h.Version = binary.BigEndian.Uint16(b[8:])
	copy(h.Nonce[:], b[12:28])
	h.Session = binary.BigEndian.Uint32(b[28:])
	return h, nil
}

// scanFor discards bytes from r until a valid message with magic starts
// and returns it, with the number of bytes discarded before it. r's buffer
// must hold at least helloSize bytes.
func scanFor(r *bufio.Reader, magic [8]byte) (hello, int, error) {
	discarded := 0
	for {
		// Skip to the next byte that can start a message.
		for {
			b, err := r.Peek(1)
			if err != nil {
				return hello{}, discarded, err
			}
			if b[0] == magic[0] {
				break
			}
			// Discard the whole run of non-candidates that is buffered.
			buf, _ := r.Peek(r.Buffered())
			n := bytes.IndexByte(buf, magic[0])
			if n < 0 {
				n = len(buf)
			}
			_, _ = r.Discard(n)
			discarded += n
		}
		b, err := r.Peek(helloSize)
		if err != nil {
			return hello{}, discarded, err
		}
		if h, err := decodeHello(b, magic); err == nil {
			_, _ = r.Discard(helloSize)
			return h, discarded, nil
		}
		_, _ = r.Discard(1)
		discarded++
	}
}
