package network

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestMACForIsStableLocalUnicast(t *testing.T) {
	seen := map[string]string{}
	for _, id := range []string{"0123456789ab", "a", "b", "pod-x-container-y", strings.Repeat("z", 32)} {
		mac := MACFor(id)
		if len(mac) != 6 {
			t.Fatalf("MACFor(%q) = %v: want 6 bytes", id, mac)
		}
		if mac[0]&0x02 == 0 || mac[0]&0x01 != 0 {
			t.Errorf("MACFor(%q) = %v: first octet %#02x must be locally administered (bit 1 set) and unicast (bit 0 clear)", id, mac, mac[0])
		}
		if again := MACFor(id); again.String() != mac.String() {
			t.Errorf("MACFor(%q) not stable: %v then %v", id, mac, again)
		}
		if other, dup := seen[mac.String()]; dup {
			t.Errorf("MACFor(%q) = MACFor(%q) = %v", id, other, mac)
		}
		seen[mac.String()] = id
		// The vm package's spec validation wants lower-case hex octets.
		if !regexp.MustCompile(`^([0-9a-f]{2}:){5}[0-9a-f]{2}$`).MatchString(mac.String()) {
			t.Errorf("MACFor(%q).String() = %q: not the form vm.Spec accepts", id, mac)
		}
	}
}

func TestTapName(t *testing.T) {
	if got := TapName("0123456789ab"); got != "vkt0123456789ab" {
		t.Errorf("TapName of a 12-character VM id = %q, want vkt + id", got)
	}
	long1, long2 := strings.Repeat("a", 20)+"1", strings.Repeat("a", 20)+"2"
	n1, n2 := TapName(long1), TapName(long2)
	if len(n1) > 15 || len(n2) > 15 {
		t.Errorf("tap names %q, %q exceed IFNAMSIZ-1 (15)", n1, n2)
	}
	if n1 == n2 {
		t.Errorf("ids with a common 20-character prefix share tap name %q", n1)
	}
	if !strings.HasPrefix(n1, "vkt") {
		t.Errorf("TapName(%q) = %q lacks the vkt prefix", long1, n1)
	}
}

func TestValidateID(t *testing.T) {
	for _, id := range []string{"0123456789ab", "a", "a-b"} {
		if err := ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v, want nil", id, err)
		}
	}
	for _, id := range []string{"", "-a", "A", "a/b", "a b", strings.Repeat("a", 33)} {
		if err := ValidateID(id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("ValidateID(%q) = %v, want ErrInvalidID", id, err)
		}
	}
}
