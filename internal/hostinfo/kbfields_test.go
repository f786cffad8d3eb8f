package hostinfo

import (
	"strings"
	"testing"
)

func TestParseKBFields(t *testing.T) {
	data := []byte("Name:\tqemu\nVmRSS:\t  2048 kB\nRss:   12 kB\nPss:    7 kB\nPss_Anon: 3 kB\n")
	f, err := ParseKBFields(data, "VmRSS", "Pss")
	if err != nil || f["VmRSS"] != 2048<<10 || f["Pss"] != 7<<10 || len(f) != 2 {
		t.Fatalf("fields %v, %v", f, err)
	}
	if _, err := ParseKBFields(data, "Swap"); err == nil || !strings.Contains(err.Error(), "no Swap") {
		t.Fatalf("missing key: %v", err)
	}
	if _, err := ParseKBFields([]byte("Rss: many kB\n"), "Rss"); err == nil {
		t.Fatal("a non-number parsed")
	}
}
