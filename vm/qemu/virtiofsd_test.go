package qemu

import (
	"strings"
	"testing"

	"github.com/vk-applevm/vk-applevm/vm"
)

func TestVirtiofsdArgs(t *testing.T) {
	tests := []struct {
		name  string
		share vm.Share
		want  string
	}{
		{"plain", vm.Share{Tag: "t", HostPath: "/pods/a/vol"},
			"--fd=3 -o source=/pods/a/vol -o cache=none -o sandbox=namespace -o modcaps=-mknod:-fsetid"},
		{"read-only is not an option (the driver gives a read-only view)", vm.Share{Tag: "t", HostPath: "/v", ReadOnly: true},
			"--fd=3 -o source=/v -o cache=none -o sandbox=namespace -o modcaps=-mknod:-fsetid"},
		{"cleaned", vm.Share{Tag: "t", HostPath: "/v//x/../y/"},
			"--fd=3 -o source=/v/y -o cache=none -o sandbox=namespace -o modcaps=-mknod:-fsetid"},
		{"libfuse escapes for comma and backslash", vm.Share{Tag: "t", HostPath: `/v/a,b\c`},
			`--fd=3 -o source=/v/a\,b\\c -o cache=none -o sandbox=namespace -o modcaps=-mknod:-fsetid`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(VirtiofsdArgs(tt.share), " "); got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}
