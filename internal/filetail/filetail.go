// Package filetail reads the end of a log file for an error message: a
// machine's console, QEMU's log, a helper's output.
package filetail

import (
	"io"
	"os"
)

// Last returns at most the last n bytes of the file at path, reading only
// those (logs can be large). A missing file is an error, an empty one is
// not.
func Last(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if size := info.Size(); size > n {
		if _, err := f.Seek(size-n, io.SeekStart); err != nil {
			return nil, err
		}
	}
	return io.ReadAll(io.LimitReader(f, n))
}
