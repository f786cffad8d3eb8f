package logframe

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestRoundTripSplitsLargeChunks(t *testing.T) {
	var buf bytes.Buffer
	big := bytes.Repeat([]byte("x"), MaxData*2+5)
	in := []Frame{
		{Name: "main/0", Stream: Stdout, Data: []byte("hello\n")},
		{Name: "main/0", Stream: Stderr, Data: []byte("oops")},
		{Name: "main/1", Stream: Stdout, Data: big},
	}
	for _, f := range in {
		if err := Write(&buf, f); err != nil {
			t.Fatal(err)
		}
	}
	r := NewReader(&buf)
	var got []Frame
	for {
		f, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, f)
	}
	if len(got) != 5 {
		t.Fatalf("got %d frames, want 5 (the big chunk split in three)", len(got))
	}
	var joined []byte
	for _, f := range got[2:] {
		if f.Name != "main/1" || f.Stream != Stdout || len(f.Data) > MaxData {
			t.Fatalf("bad split frame %q %v %d", f.Name, f.Stream, len(f.Data))
		}
		joined = append(joined, f.Data...)
	}
	if !bytes.Equal(joined, big) {
		t.Fatal("split frames do not reassemble the chunk")
	}
	if string(got[1].Data) != "oops" || got[1].Stream != Stderr {
		t.Fatalf("second frame = %+v", got[1])
	}
}

func TestReaderRejectsCorruptAndTruncated(t *testing.T) {
	if _, err := NewReader(bytes.NewReader([]byte{0, 0, 1, 0, 0, 0, 0, 1})).Next(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("zero-length name: err = %v, want ErrCorrupt", err)
	}
	if _, err := NewReader(bytes.NewReader([]byte{0, 1, 9, 0, 0, 0, 0, 1, 'a'})).Next(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bad stream: err = %v, want ErrCorrupt", err)
	}
	var buf bytes.Buffer
	if err := Write(&buf, Frame{Name: "n", Stream: Stdout, Data: []byte("abcdef")}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewReader(bytes.NewReader(buf.Bytes()[:buf.Len()-2])).Next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated frame: err = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestEndFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	for _, f := range []Frame{
		{Name: "0", Stream: Stdout, Data: []byte("last")},
		{Name: "0", Stream: End},
	} {
		if err := Write(&buf, f); err != nil {
			t.Fatal(err)
		}
	}
	if buf.Len() != 8+1+4+8+1 {
		t.Fatalf("encoded %d bytes, want a data frame and an 8-byte header plus name", buf.Len())
	}
	r := NewReader(&buf)
	if f, err := r.Next(); err != nil || string(f.Data) != "last" {
		t.Fatalf("first frame %+v %v", f, err)
	}
	f, err := r.Next()
	if err != nil || f.Name != "0" || f.Stream != End || len(f.Data) != 0 {
		t.Fatalf("end frame %+v %v", f, err)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the end frame: %v, want io.EOF", err)
	}
}

func TestEndFrameWithDataIsRejected(t *testing.T) {
	if err := Write(io.Discard, Frame{Name: "0", Stream: End, Data: []byte("x")}); err == nil {
		t.Fatal("Write accepted an end frame with data")
	}
	// Name "a", stream End, one byte of data.
	if _, err := NewReader(bytes.NewReader([]byte{0, 1, 3, 0, 0, 0, 0, 1, 'a', 'x'})).Next(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("end frame with data: err = %v, want ErrCorrupt", err)
	}
	if _, err := NewReader(bytes.NewReader([]byte{0, 1, 3, 1, 0, 0, 0, 0, 'a'})).Next(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("end frame with a non-zero reserved byte: err = %v, want ErrCorrupt", err)
	}
}

func TestWriteRejectsBadFrames(t *testing.T) {
	if err := Write(io.Discard, Frame{Name: "", Stream: Stdout}); err == nil {
		t.Fatal("empty name accepted")
	}
	if err := Write(io.Discard, Frame{Name: "x", Stream: 7}); err == nil {
		t.Fatal("unknown stream accepted")
	}
}
