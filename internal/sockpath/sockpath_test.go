package sockpath

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckForEachPlatform(t *testing.T) {
	for _, c := range []struct {
		goos string
		n    int
		ok   bool
	}{
		{"linux", 107, true}, {"linux", 108, false},
		{"darwin", 103, true}, {"darwin", 104, false}, {"darwin", 107, false},
	} {
		p := "/" + strings.Repeat("x", c.n-1)
		err := CheckFor(c.goos, p)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrTooLong)) {
			t.Errorf("%s, %d bytes: %v, want ok=%v", c.goos, c.n, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), c.goos) {
			t.Errorf("error does not name the platform: %v", err)
		}
	}
}
