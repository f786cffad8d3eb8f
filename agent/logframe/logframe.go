// Package logframe is the wire format of the "vkav.log" console port: the
// guest agent frames every chunk a logged process writes to stdout or stderr,
// and the host shim, which owns the port for the machine's whole life,
// timestamps the chunks on arrival and persists them. Keeping logs off the
// agent API means output keeps flowing to disk while the node process is
// down or restarting.
//
// A frame is an 8-byte header — name length (uint16), stream (uint8), a
// zero byte, data length (uint32), all big-endian — then the name, then the
// data.
//
// Stream 1 is stdout and 2 stderr. Stream 3 (End) carries no data: it says
// that the named log is complete — the process has exited and every byte of
// its output was framed before it. The end of a log travels in-band because
// the host learns a process's exit on another channel (the agent API): only
// a marker in this stream's own order tells the host that nothing of the
// output is still on its way. An End frame with data is corrupt.
package logframe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Stream says which output a frame carries.
type Stream uint8

const (
	Stdout Stream = 1
	Stderr Stream = 2
	// End marks the end of a log: no data, and no more frames under that
	// name from the process that wrote it.
	End Stream = 3
)

func (s Stream) String() string {
	switch s {
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	case End:
		return "end"
	}
	return fmt.Sprintf("stream(%d)", uint8(s))
}

const (
	headerSize = 8
	// MaxName bounds a log name; names are short ids like "main/3".
	MaxName = 128
	// MaxData bounds one frame's payload; writers split larger chunks.
	MaxData = 64 << 10
)

// Frame is one chunk of output of a logged process, or the end of its log.
type Frame struct {
	Name   string
	Stream Stream
	Data   []byte
}

// ErrCorrupt reports a frame that cannot have been written by Writer.
var ErrCorrupt = errors.New("corrupt log frame")

// Write encodes f onto w, splitting data larger than MaxData into several
// frames. It is not safe for concurrent use; callers serialise writes.
func Write(w io.Writer, f Frame) error {
	if len(f.Name) == 0 || len(f.Name) > MaxName {
		return fmt.Errorf("log name %q: length must be 1-%d", f.Name, MaxName)
	}
	switch {
	case f.Stream == End && len(f.Data) > 0:
		return fmt.Errorf("end frame for %q: carries %d bytes of data", f.Name, len(f.Data))
	case f.Stream != Stdout && f.Stream != Stderr && f.Stream != End:
		return fmt.Errorf("log frame for %q: unknown %v", f.Name, f.Stream)
	}
	data := f.Data
	for {
		n := min(len(data), MaxData)
		buf := make([]byte, headerSize+len(f.Name)+n)
		binary.BigEndian.PutUint16(buf[0:2], uint16(len(f.Name)))
		buf[2] = byte(f.Stream)
		binary.BigEndian.PutUint32(buf[4:8], uint32(n))
		copy(buf[headerSize:], f.Name)
		copy(buf[headerSize+len(f.Name):], data[:n])
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("write log frame for %q: %w", f.Name, err)
		}
		data = data[n:]
		if len(data) == 0 {
			return nil
		}
	}
}

// Reader decodes frames from a stream.
type Reader struct {
	r   io.Reader
	hdr [headerSize]byte
}

// NewReader returns a Reader decoding frames from r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r} }

// Next returns the next frame. It returns io.EOF at a clean end of stream,
// io.ErrUnexpectedEOF inside a frame and an error wrapping ErrCorrupt for a
// header no Writer produces.
func (r *Reader) Next() (Frame, error) {
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return Frame{}, err
	}
	nameLen := int(binary.BigEndian.Uint16(r.hdr[0:2]))
	stream := Stream(r.hdr[2])
	dataLen := int(binary.BigEndian.Uint32(r.hdr[4:8]))
	known := stream == Stdout || stream == Stderr || (stream == End && dataLen == 0)
	if nameLen == 0 || nameLen > MaxName || !known || r.hdr[3] != 0 || dataLen > MaxData {
		return Frame{}, fmt.Errorf("%w: header %x", ErrCorrupt, r.hdr)
	}
	buf := make([]byte, nameLen+dataLen)
	if _, err := io.ReadFull(r.r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return Frame{Name: string(buf[:nameLen]), Stream: stream, Data: buf[nameLen:]}, nil
}
