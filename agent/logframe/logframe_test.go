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

func TestWriteRejectsBadFrames(t *testing.T) {
	if err := Write(io.Discard, Frame{Name: "", Stream: Stdout}); err == nil {
		t.Fatal("empty name accepted")
	}
	if err := Write(io.Discard, Frame{Name: "x", Stream: 7}); err == nil {
		t.Fatal("unknown stream accepted")
	}
}
