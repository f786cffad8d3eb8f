package kernelfetch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// bannerPrefix starts the kernel's linux_banner ("Linux version %s (%s@%s)
// ...", init/version-timestamp.c), which an uncompressed Image carries as
// plain text; the release is the next word.
var bannerPrefix = []byte("Linux version ")

// releaseScanChunk is how much of the kernel is searched at a time.
const releaseScanChunk = 1 << 20

// kernelRelease returns the release (`uname -r`) named in a kernel's
// banner, or "" when the file has none.
func kernelRelease(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read kernel release: %w", err)
	}
	defer f.Close()
	// Keep a tail of each chunk so a banner split across two is found.
	const keep = 256
	buf := make([]byte, 0, releaseScanChunk+keep)
	chunk := make([]byte, releaseScanChunk)
	for {
		n, err := f.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if i := bytes.Index(buf, bannerPrefix); i >= 0 {
			rest := buf[i+len(bannerPrefix):]
			if end := bytes.IndexAny(rest, " \x00\n"); end > 0 {
				return string(rest[:end]), nil
			}
			if errors.Is(err, io.EOF) {
				return "", nil
			}
			continue // the release may continue in the next chunk
		}
		if errors.Is(err, io.EOF) {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("read kernel release: %w", err)
		}
		if len(buf) > keep {
			buf = append(buf[:0], buf[len(buf)-keep:]...)
		}
	}
}
