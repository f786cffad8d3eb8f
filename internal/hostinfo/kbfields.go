package hostinfo

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// ParseKBFields reads the "Key:   N kB" lines of a /proc file
// (/proc/meminfo, /proc/<pid>/status, /proc/<pid>/smaps_rollup) and
// returns the asked keys in bytes; every key must be present.
func ParseKBFields(data []byte, keys ...string) (map[string]uint64, error) {
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	out := make(map[string]uint64, len(keys))
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || !want[key] {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parse %s %q: %w", key, strings.TrimSpace(rest), err)
		}
		out[key] = kb << 10
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, k := range keys {
		if _, ok := out[k]; !ok {
			return nil, fmt.Errorf("no %s field", k)
		}
	}
	return out, nil
}
